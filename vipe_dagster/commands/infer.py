"""Annotate a video: intrinsics and per-frame poses (weight-free visual SLAM), dense depth, dynamic masks.

Writes ViPE-format artifacts under ``-o``: rgb/<n>.mp4 (processed frames), pose/<n>.npz, intrinsics/<n>.npz
(+ _camera.txt), depth/<n>.zip, mask/<n>.zip + mask/<n>.txt, vipe/<n>_sparse.npz, vipe/<n>_info.pkl,
vipe/<n>_manifest.json (and vipe/<n>_vis.mp4 with --visualize). Presets: ``default`` (everything),
``pose_only`` (no depth or masks), ``fixed_camera`` (identity poses, background masks; depth only with
--depth_model). Intrinsics given with ``--intrinsics`` are in pixels of the source video and are scaled to
the processing size.
"""

from __future__ import annotations

import json

from ._common import add_depth_model, add_frame_range, add_output, add_wait, learned_depth_config, set_option

NAME = "infer"
HELP = "annotate a video: intrinsics, poses, dense depth, dynamic masks (presets: default, pose_only, fixed_camera)"


def add_arguments(p):
    p.add_argument("video", nargs="?", default=None, help="video file or s3:// URI (or use --image-dir)")
    p.add_argument("--image-dir", "--image_dir", dest="image_dir", default=None,
                   help="folder of jpg/png frames (sorted by name, 30 fps) instead of a video")
    add_output(p)
    add_frame_range(p)
    p.add_argument("-p", "--pipeline", default="default", choices=["default", "pose_only", "fixed_camera"],
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
    p.add_argument("-v", "--visualize", action="store_true", help="also write vipe/<n>_vis.mp4")
    add_depth_model(p)
    m = p.add_mutually_exclusive_group()
    m.add_argument("--metric_scale", "--metric-scale", dest="metric_scale", type=float, default=None,
                   help="metric cue: metres per unit of the relative reconstruction")
    m.add_argument("--known_distance", "--known-distance", dest="known_distance", nargs=3, default=None,
                   metavar=("I", "J", "METRES"), help="metric cue: distance in metres between the camera centres of "
                                                     "processed frames I and J")
    m.add_argument("--camera_height", "--camera-height", dest="camera_height", type=float, default=None,
                   help="metric cue: height in metres of the camera above the ground plane")
    add_wait(p)


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
    from ..io import fs, open_video
    from ..io.locks import sequence_lock
    from ..io.names import check_sequence_name
    from ..pipeline import infer

    if (args.video is None) == (args.image_dir is None):
        raise ConfigError("give exactly one input: a VIDEO path or --image-dir DIR")
    source = args.video or args.image_dir
    # everything that can fail cheaply fails before any work: input, output (credentials, bucket, write
    # permission), options, sequence name
    fs.preflight_read(source, "Video")
    fs.preflight_write(args.output, "output (-o)")
    intr = None
    if args.intrinsics is not None:
        intr = parse_intrinsics(args.intrinsics)
    elif args.intrinsics_file is not None:
        intr = _read_intrinsics_file(args.intrinsics_file)
    cfg = preset(args.pipeline)
    learned = learned_depth_config(args.depth_model, args.hf_cache, None, args.depth_model_metric,
                                   args.depth_model_max_depth)
    from ..depth.config import MetricScaleConfig

    try:
        kd = args.known_distance
        cfg.metric = MetricScaleConfig(
            scale=args.metric_scale, camera_height=args.camera_height,
            known_distance=(int(kd[0]), int(kd[1]), float(kd[2])) if kd else None)
    except ValueError as exc:
        raise ConfigError(f"invalid metric cue: {exc}") from exc
    if learned is not None:
        cfg.depth_config.learned = learned
        cfg.depth = True
    cfg.visualize = args.visualize
    set_option(cfg.pose, "long_side", args.long_side, "--long_side")
    set_option(cfg.pose, "seed", args.seed, "--seed")
    if args.assume_fixed_camera_pose:
        cfg.pose.assume_fixed_camera_pose = True
    # frame range, skip and size are validated before the lock is taken, so a bad request writes nothing
    stream = open_video(source, args.start_frame, args.end_frame, args.frame_skip, cfg.pose.long_side)
    name = check_sequence_name(args.name or stream.name, "--name" if args.name else "video name")
    with sequence_lock(args.output, name, "infer", wait=args.wait):
        res = infer(source, args.output, cfg, name=name, progress=True,
                    start_frame=args.start_frame, end_frame=args.end_frame, frame_skip=args.frame_skip,
                    intrinsics_source_px=intr)
    print(json.dumps(res.summary(), indent=2))
    return 0
