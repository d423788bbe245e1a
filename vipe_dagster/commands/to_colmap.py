"""Export an artifact sequence as a COLMAP model (``sparse/0`` text or binary, images, PLY).

Poses, intrinsics and the rgb video are required. Points come from the SLAM sparse map with its
real feature tracks (``vipe/<n>_sparse.npz``; with ``--use_slam_map`` the SLAM map ``vipe/<n>_slam_map.pt``
and its multi-view tracks) and from reliable depth (``--dense``; by default when the sequence has depth
maps, ``--no-dense``: sparse only). Artifacts
without a sparse map (e.g. the released ViPE datasets) get a dense-only export, flagged in
``export_stats.json`` and in a warning.
"""

from __future__ import annotations

import json

from ..export.colmap.options import ColmapExportOptions
from ..options import add_model_arguments, build_model, model_values

NAME = "to-colmap"
HELP = "export poses, intrinsics, images and points as a COLMAP reconstruction (sparse/0)"


def add_arguments(p):
    p.add_argument("artifact_dir", help="artifact root (folder or s3://bucket/prefix) in ViPE layout")
    p.add_argument("--sequence", "-s", default=None,
                   help="sequence name; omitted: the only sequence in the artifact root")
    p.add_argument("-o", "--output", default=None,
                   help="output folder; omitted: <artifact_dir>/colmap/<sequence>")
    p.add_argument("--use_slam_map", "--use-slam-map", dest="use_slam_map", action="store_true",
                   help="points and tracks from the SLAM map vipe/<n>_slam_map.pt (infer --save_slam_map) "
                        "instead of the sparse map vipe/<n>_sparse.npz")
    p.add_argument("--start_frame", "--start-frame", dest="start_frame", type=int, default=None,
                   help="first frame to export (inclusive; omitted: the first)")
    p.add_argument("--end_frame", "--end-frame", dest="end_frame", type=int, default=None,
                   help="last frame to export (inclusive; omitted: the last)")
    p.add_argument("--frame_skip", "--frame-skip", dest="frame_skip", type=int, default=1,
                   help="export every k-th frame of the range")
    # the export settings: declared once in vipe_dagster/export/colmap/options.py (also the asset's run config)
    add_model_arguments(p, ColmapExportOptions)
    p.add_argument("--no_manifest", "--no-manifest", dest="no_manifest", action="store_true",
                   help="do not record the export statistics in vipe/<sequence>_manifest.json")


def run(args) -> int:
    import contextlib

    from ..errors import ArtifactError, FrameRangeError
    from ..export.colmap import export_colmap
    from ..io import ArtifactStore, fs, resolve_range
    from ..io.locks import sequence_lock
    from ..io.names import check_sequence_name

    fs.preflight_read(args.artifact_dir, "artifact root")
    if args.output is not None:
        fs.preflight_write(args.output, "output (-o)")
    if args.output is None or not args.no_manifest:
        fs.preflight_write(args.artifact_dir, "artifact root")
    store = ArtifactStore(args.artifact_dir)
    name = args.sequence
    if name is None:
        names = store.sequences()
        if len(names) != 1:
            raise ArtifactError(f"{args.artifact_dir} holds {len(names)} sequences ({', '.join(names) or 'none'}); "
                                f"pick one with --sequence")
        name = names[0]
    check_sequence_name(name, "--sequence")
    frames = None
    if args.start_frame is not None or args.end_frame is not None or args.frame_skip != 1:
        if args.frame_skip < 1:
            raise FrameRangeError(f"--frame_skip must be >= 1, got {args.frame_skip}")
        _, inds = store.read_pose(name)
        start, end = resolve_range(len(inds), args.start_frame, args.end_frame, store.path("pose", name))
        frames = [int(f) for f in inds[start:end + 1:args.frame_skip]]
    # the export records itself in the manifest: hold the sequence's lock so no infer replaces the set
    lock = (contextlib.nullcontext() if args.no_manifest
            else sequence_lock(args.artifact_dir, name, "to-colmap"))
    sparse_map = sparse_source = None
    if args.use_slam_map:
        from ..export.slam_map import read_slam_map

        sparse_map = read_slam_map(store, name).as_sparse_map()
        sparse_source = store.path("slam_map", name)
    opts = build_model(ColmapExportOptions, model_values(args, ColmapExportOptions), "to-colmap")
    with lock:
        res = export_colmap(store, name, args.output, opts, frames=frames, sparse_map=sparse_map,
                            sparse_source=sparse_source, update_manifest=not args.no_manifest, progress=True)
    print(json.dumps(res.summary(), indent=2))
    return 0
