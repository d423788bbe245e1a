"""Estimate camera intrinsics and per-frame poses of a video (weight-free visual SLAM).

Writes ViPE-format artifacts under ``-o``: rgb/<n>.mp4 (processed frames), pose/<n>.npz, intrinsics/<n>.npz
(+ _camera.txt), vipe/<n>_sparse.npz, vipe/<n>_info.pkl and vipe/<n>_manifest.json. Intrinsics given with
``--intrinsics`` are in pixels of the source video and are scaled to the processing size.
"""

from __future__ import annotations

import json

from ._common import add_frame_range, add_output

NAME = "infer"
HELP = "estimate intrinsics and camera poses of a video (pipeline presets: pose_only, fixed_camera)"


def add_arguments(p):
    p.add_argument("video", nargs="?", default=None, help="video file or s3:// URI (or use --image-dir)")
    p.add_argument("--image-dir", "--image_dir", dest="image_dir", default=None,
                   help="folder of jpg/png frames (sorted by name, 30 fps) instead of a video")
    add_output(p)
    add_frame_range(p)
    p.add_argument("-p", "--pipeline", default="pose_only", choices=["default", "pose_only", "fixed_camera"],
                   help="pipeline preset")
    p.add_argument("--long_side", "--long-side", dest="long_side", type=int, default=512,
                   help="processing size: long side in px (multiple of 8)")
    p.add_argument("--assume_fixed_camera_pose", "--assume-fixed-camera-pose", dest="assume_fixed_camera_pose",
                   action="store_true", help="the camera does not move: identity poses")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--intrinsics", default=None, help="'fx,fy,cx,cy' in source-video pixels (skips focal estimation)")
    g.add_argument("--intrinsics-file", "--intrinsics_file", dest="intrinsics_file", default=None,
                   help="text file holding 'fx fy cx cy' (commas or spaces) in source-video pixels")
    p.add_argument("--name", default=None, help="sequence name (default: the video's file stem)")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def _read_intrinsics_file(path: str):
    from ..config import parse_intrinsics
    from ..errors import ConfigError
    from ..io import fs

    if not fs.exists(path):
        raise ConfigError(f"intrinsics file not found: {path} (expected a text file with 'fx fy cx cy')")
    text = fs.read_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(f"{path}: empty intrinsics file (expected 'fx fy cx cy')")
    return parse_intrinsics(lines[0], source=path)


def run(args) -> int:
    from ..config import parse_intrinsics, preset
    from ..errors import ConfigError
    from ..pipeline import infer

    if (args.video is None) == (args.image_dir is None):
        raise ConfigError("give exactly one input: a VIDEO path or --image-dir DIR")
    intr = None
    if args.intrinsics is not None:
        intr = parse_intrinsics(args.intrinsics)
    elif args.intrinsics_file is not None:
        intr = _read_intrinsics_file(args.intrinsics_file)
    cfg = preset(args.pipeline)
    if cfg.depth:
        raise ConfigError(f"pipeline {args.pipeline!r} needs dense depth, which is not available in this build "
                          "yet; use --pipeline pose_only (or fixed_camera)")
    cfg.pose.long_side = args.long_side
    cfg.pose.seed = args.seed
    if args.assume_fixed_camera_pose:
        cfg.pose.assume_fixed_camera_pose = True
    res = infer(args.video or args.image_dir, args.output, cfg, name=args.name, progress=True,
                start_frame=args.start_frame, end_frame=args.end_frame, frame_skip=args.frame_skip,
                intrinsics_source_px=intr)
    print(json.dumps(res.summary(), indent=2))
    return 0
