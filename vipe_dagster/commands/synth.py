"""Render a synthetic textured scene with exact ground truth (poses, intrinsics, depth, instance masks).

Writes OUT/<name>.mp4, OUT/<name>_scene.json and ViPE-format ground truth under OUT/gt/.
"""

from __future__ import annotations

NAME = "synth"
HELP = "generate a synthetic video with ground-truth poses, intrinsics, depth and masks"


def add_arguments(p) -> None:
    from ..synth.trajectory import TRAJECTORIES

    p.add_argument("--trajectory", default="forward", choices=TRAJECTORIES, help="camera motion")
    p.add_argument("--scene", default="indoor", choices=("indoor", "outdoor"),
                   help="indoor: textured room with objects; outdoor: ground, far boxes, backdrop")
    p.add_argument("--num_frames", "--num-frames", dest="num_frames", type=int, default=100, help="frames to render")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (sets motion per frame)")
    p.add_argument("--width", type=int, default=512, help="image width in pixels (even)")
    p.add_argument("--height", type=int, default=384, help="image height in pixels (even)")
    p.add_argument("--hfov_deg", "--hfov-deg", dest="hfov_deg", type=float, default=60.0,
                   help="horizontal field of view in degrees")
    p.add_argument("--moving_objects", "--moving-objects", dest="moving_objects", type=int, default=0,
                   help="independently moving objects (instance mask ids 1..n)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical output)")
    p.add_argument("--name", default=None, help="sequence name (default synth_<scene>_<trajectory>_s<seed>)")
    p.add_argument("-o", "--output", default="synth_out", help="output folder or s3://bucket/prefix")
    p.add_argument("--no-progress", "--no_progress", dest="progress", action="store_false",
                   help="hide the progress bar")


def run(args) -> int:
    import json

    from ..synth import SceneConfig, generate

    cfg = SceneConfig(trajectory=args.trajectory, scene=args.scene, num_frames=args.num_frames, fps=args.fps,
                      width=args.width, height=args.height, hfov_deg=args.hfov_deg,
                      moving_objects=args.moving_objects, seed=args.seed, name=args.name)
    res = generate(cfg, args.output, progress=args.progress)
    with open(res.scene_json) if "://" not in res.scene_json else _remote(res.scene_json) as f:
        desc = json.load(f)
    print(f"{res.name}: {cfg.num_frames} frames {cfg.width}x{cfg.height}, "
          f"path {desc['trajectory_length_m']:.2f} m, depth {desc['depth_range_m'][0]:.2f}-"
          f"{desc['depth_range_m'][1]:.2f} m")
    print(f"  video        {res.video_path}")
    print(f"  ground truth {res.gt.root}")
    print(f"  scene        {res.scene_json}")
    return 0


def _remote(uri: str):
    from ..io import fs

    return fs.open_read(uri, "r")
