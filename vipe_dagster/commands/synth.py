"""Render a synthetic textured scene with exact ground truth (poses, intrinsics, depth, instance masks).

Writes OUT/<name>.mp4, OUT/<name>_scene.json and ViPE-format ground truth under OUT/gt/.
`--preset NAME` starts from a standard benchmark sequence; flags given explicitly override its fields.
"""

from __future__ import annotations

NAME = "synth"
HELP = "generate a synthetic video with ground-truth poses, intrinsics, depth and masks"

_FIELDS = ("trajectory", "scene", "num_frames", "fps", "width", "height", "hfov_deg", "moving_objects", "seed", "k1",
           "xi", "panorama", "name")


def add_arguments(p) -> None:
    from ..synth.trajectory import TRAJECTORIES

    p.add_argument("--preset", default=None, help="start from a standard benchmark sequence (see --list-presets)")
    p.add_argument("--list-presets", "--list_presets", dest="list_presets", action="store_true",
                   help="list the standard benchmark presets and exit")
    p.add_argument("--trajectory", default=None, choices=TRAJECTORIES, help="camera motion [forward]")
    p.add_argument("--scene", default=None, choices=("indoor", "outdoor"),
                   help="indoor: textured room with objects; outdoor: ground, far boxes, backdrop [indoor]")
    p.add_argument("--num_frames", "--num-frames", dest="num_frames", type=int, default=None,
                   help="frames to render [100]")
    p.add_argument("--fps", type=float, default=None, help="frame rate; sets the motion per frame [30]")
    p.add_argument("--width", type=int, default=None, help="image width in pixels, even [512]")
    p.add_argument("--height", type=int, default=None, help="image height in pixels, even [384]")
    p.add_argument("--hfov_deg", "--hfov-deg", dest="hfov_deg", type=float, default=None,
                   help="horizontal field of view in degrees [60]")
    p.add_argument("--moving_objects", "--moving-objects", dest="moving_objects", type=int, default=None,
                   help="independently moving objects, mask ids 1..n [0]")
    p.add_argument("--k1", type=float, default=None,
                   help="radial lens distortion of the video (OpenCV / COLMAP SIMPLE_RADIAL k1, e.g. -0.1 barrel) "
                        "[0: pinhole]; the ground truth keeps the exact geometry")
    p.add_argument("--xi", type=float, default=None,
                   help="MEI (unified) wide-angle lens of the video, e.g. 0.8 with --hfov-deg 150 [0: pinhole]; "
                        "the ground truth is in ViPE's MEI layout (fx fy cx cy xi rows, MEI in _camera.txt, z-depth)")
    p.add_argument("--panorama", action="store_true", default=None,
                   help="equirectangular 360 x 180 deg video (--width = 2 x --height, e.g. 1024x512; --hfov-deg "
                        "unused); the ground truth is in ViPE's panorama layout (all-zero rows, PANORAMA in "
                        "_camera.txt, depth = ray distance)")
    p.add_argument("--seed", type=int, default=None, help="random seed; same seed -> identical output [0]")
    p.add_argument("--name", default=None,
                   help="sequence name [synth_<scene>_<trajectory>_s<seed>, or the preset's name]")
    p.add_argument("-o", "--output", default="synth_out", help="output folder or s3://bucket/prefix")
    p.add_argument("--no-progress", "--no_progress", dest="progress", action="store_false",
                   help="hide the progress bar")


def run(args) -> int:
    import json
    from dataclasses import replace

    from ..io import fs
    from ..synth import SceneConfig, generate, preset, preset_names

    if args.list_presets:
        for name in preset_names():
            c = preset(name)
            print(f"{name:<26} {c.scene}/{c.trajectory}, {c.moving_objects} moving, seed {c.seed}, "
                  f"{c.num_frames} frames {c.width}x{c.height}")
        return 0
    cfg = preset(args.preset) if args.preset else SceneConfig()
    cfg = replace(cfg, **{k: getattr(args, k) for k in _FIELDS if getattr(args, k) is not None})
    res = generate(cfg, args.output, progress=args.progress)
    desc = json.loads(fs.read_text(res.scene_json))
    print(f"{res.name}: {cfg.num_frames} frames {cfg.width}x{cfg.height}, "
          f"path {desc['trajectory_length_m']:.2f} m, depth {desc['depth_range_m'][0]:.2f}-"
          f"{desc['depth_range_m'][1]:.2f} m")
    print(f"  video        {res.video_path}")
    print(f"  ground truth {res.gt.root}")
    print(f"  scene        {res.scene_json}")
    return 0
