"""Dense depth (and dynamic masks) for sequences that already have poses and intrinsics in an artifact root."""

from __future__ import annotations

from ..depth.config import DepthConfig
from ..options import add_model_arguments, build_model, model_values
from ._common import add_depth_model, add_wait, learned_depth_config

NAME = "depth"
HELP = "dense depth by multi-view stereo (and dynamic masks) from rgb + pose + intrinsics artifacts"


def add_arguments(p):
    p.add_argument("root", help="artifact root (folder or s3://bucket/prefix) holding rgb/, pose/, intrinsics/")
    p.add_argument("--name", action="append", default=None,
                   help="sequence name (repeatable; default: every sequence with a pose file)")
    add_depth_model(p)
    # every DepthConfig setting, declared once in vipe_dagster/depth/config.py (also the depth_maps asset's)
    add_model_arguments(p, DepthConfig, group=p.add_argument_group("depth settings (DepthConfig)"))
    p.add_argument("--masks", action="store_true", help="also write dynamic masks (mask/<n>.zip)")
    add_wait(p)


def run(args) -> int:
    import logging

    from ..depth.run import run_depth
    from ..errors import ConfigError
    from ..io import ArtifactStore, fs
    from ..io.locks import sequence_lock

    log = logging.getLogger("vipe_dagster.depth")
    learned = learned_depth_config(args.depth_model, args.hf_cache, args.device, args.depth_model_metric,
                                   args.depth_model_max_depth)
    cfg = build_model(DepthConfig, model_values(args, DepthConfig), "depth", learned=learned)
    fs.preflight_read(args.root, "artifact root")
    fs.preflight_write(args.root, "artifact root")
    store = ArtifactStore(args.root)
    names = args.name or [n for n in store.sequences() if store.exists("pose", n)]
    if not names:
        raise ConfigError(f"no sequence with pose/<name>.npz under {args.root}")
    for name in names:
        if not store.exists("pose", name):
            raise ConfigError(f"sequence {name!r}: {store.path('pose', name)} not found (run infer first)")
    for name in names:
        with sequence_lock(args.root, name, "depth", wait=args.wait):
            res = run_depth(store, name, cfg, progress=True)
            print(f"{name}: {res.num_frames} frames -> {res.uri} ({res.method}, "
                  f"{res.frames_per_s:.2f} frames/s, MVS kept {100 * res.mvs_valid_fraction:.1f} %, "
                  f"reliable {100 * res.reliable_fraction:.1f} %, range {res.depth_range} from "
                  f"{res.range_source})")
            if args.masks:
                from ..masks import run_masks

                m = run_masks(store, name)
                print(f"{name}: masks -> {m.uri} ({m.method}, {m.num_instances} instances)")
    log.debug("depth done for %s", names)
    return 0
