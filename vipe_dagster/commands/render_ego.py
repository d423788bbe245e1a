"""Render the exo point cloud into the egocentric Aria camera (the EgoX "ego prior"), fisheye or pinhole.

Input: a ViPE-format result folder of the static exo video (``--input_dir``) plus either an EgoX meta.json
(``--meta_json_path``) or the Ego-Exo4D native files (``--ego_camera_pose_path`` camera_pose JSON,
``--exo_camera_pose_path`` gopro_calibs.csv, ``--online_calibration_path`` online_calibration.jsonl).
Frame ranges are inclusive and index the ViPE result (0-based).
"""

from __future__ import annotations

import json

NAME = "render-ego"
HELP = "render the exo reconstruction into the ego (Aria) camera: PNG frames and ego_Prior.mp4"


def add_arguments(p, defaults=None):
    """The flags of :class:`~vipe_dagster.render.config.EgoRenderConfig` (the reference renderer's names and
    defaults; ``defaults``: a named preset of that module for another front end), plus ``--batch_size``."""
    from ..options import add_model_arguments
    from ..render.config import EgoRenderConfig

    add_model_arguments(p, EgoRenderConfig, defaults=defaults)
    # not a setting: the reference's command lines pass it, the reference parses it and never uses it
    p.add_argument("--batch_size", "--batch-size", type=int, default=8,
                   help="accepted for the reference's command lines and ignored: frames are rendered one "
                        "at a time (the reference parses it and never uses it either)")


def run(args) -> int:
    from ..errors import InputError
    from ..options import build_model, model_values
    from ..render.config import EgoRenderConfig
    from ..render.ego import render_ego

    if args.batch_size < 1:
        raise InputError(f"--batch_size must be >= 1, got {args.batch_size}")
    cfg = build_model(EgoRenderConfig, model_values(args, EgoRenderConfig), "render-ego")
    res = render_ego(cfg, progress=True)
    print(json.dumps({"out": res.out_path, "frames": len(res.frames), "mean_coverage": round(res.mean_coverage, 4),
                      "background_points": res.num_background_points, "seconds": round(res.seconds, 2)}, indent=2))
    return 0
