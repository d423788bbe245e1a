"""``python scripts/vipe_to_colmap.py VIPE_DIR [-s SEQ] [--use_slam_map] [--depth_step 16] [-o OUT]``.

ViPE's COLMAP converter, with its flags and its output folder ``<OUT>/<sequence>/`` (``OUT`` defaults to
``<VIPE_DIR>_colmap`` beside ``VIPE_DIR``; every sequence when ``-s`` is not given)::

    <OUT>/<seq>/images/frame_%06d.jpg
    <OUT>/<seq>/cameras.txt images.txt points3D.txt    image names images/frame_%06d.jpg (ViPE's layout)
    <OUT>/<seq>/sparse/0/{cameras,images,points3D}.txt the standard layout (names relative to images/)
    <OUT>/<seq>/points.ply, export_stats.json

The export is :func:`vipe_dagster.export.colmap.export_colmap` (the one ``vipe-dagster to-colmap`` runs):
points come from the SLAM tracks plus reliable depth on every ``depth_step``-th frame, or with
``--use_slam_map`` from ``vipe/<seq>_slam_map.pt`` (every map point, with its multi-view track); unlike the
reference, images list their real 2-D observations. The artifact folder is only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from ..errors import ArtifactError, InputError
    from ..export.colmap import ColmapExportOptions, export_colmap
    from ..io import ArtifactStore, fs
    from ..io.names import check_sequence_name

    root = str(args.vipe_path)
    fs.preflight_read(root, "ViPE results directory")
    store = ArtifactStore(root)
    names = [n for n in store.sequences() if store.exists("pose", n)]
    if not names:
        raise ArtifactError(f"No ViPE artifacts found in {root} (expected pose/<name>.npz)")
    if args.sequence is not None:
        check_sequence_name(args.sequence, "--sequence")
        if args.sequence not in names:
            raise InputError(
                f"--sequence {args.sequence!r} not found in {root}; available: {', '.join(names)}"
            )
        names = [args.sequence]
    if args.depth_step < 1:
        raise InputError(f"--depth_step must be >= 1, got {args.depth_step}")
    out = (
        args.output
        if args.output is not None
        else str(Path(root.rstrip("/")).parent / f"{Path(root.rstrip('/')).name}_colmap")
    )
    fs.preflight_write(out, "output (-o)")
    maps = {}
    if args.use_slam_map:  # every map is read and checked before the first export
        from ..export.slam_map import read_slam_map

        maps = {n: read_slam_map(store, n).as_sparse_map() for n in names}
    results = []
    for n in names:
        options = ColmapExportOptions(
            fmt="text",
            dense=not args.use_slam_map and store.exists("depth", n),
            depth_step=args.depth_step,
            min_track_length=1 if args.use_slam_map else 2,
            reference_layout=True,
        )
        res = export_colmap(
            store,
            n,
            fs.join(out, n),
            options,
            sparse_map=maps.get(n),
            sparse_source=store.path("slam_map", n) if n in maps else None,
            update_manifest=False,
            progress=True,
        )
        results.append(res.summary())
    print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ..cli import HelpFormatter

    p = argparse.ArgumentParser(
        prog="vipe_to_colmap.py",
        description="Convert ViPE results to COLMAP format (vipe-dagster engine)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("vipe_path", help="ViPE results directory")
    p.add_argument(
        "--sequence", "-s", default=None, help="sequence name (default: every sequence in the directory)"
    )
    p.add_argument(
        "--use_slam_map",
        action="store_true",
        help="points from the SLAM map vipe/<seq>_slam_map.pt (vipe infer --save_slam_map)",
    )
    p.add_argument("--depth_step", type=int, default=16, help="every k-th frame contributes depth points")
    p.add_argument("--output", "-o", default=None, help="output directory (default: <vipe_path>_colmap)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    from . import run_entry

    return run_entry(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
