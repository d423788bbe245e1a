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


def add_arguments(p):
    p.add_argument("--input_dir", "--input-dir", required=True, help="ViPE result folder of the exo video")
    p.add_argument("--out_dir", "--out-dir", required=True, help="output root")
    p.add_argument("--meta_json_path", "--meta-json-path", default=None, help="EgoX meta.json (mode a)")
    p.add_argument("--ego_camera_pose_path", "--ego-camera-pose-path", default=None,
                   help="Ego-Exo4D annotations/ego_pose/<split>/camera_pose/<take_uid>.json (mode b)")
    p.add_argument("--exo_camera_pose_path", "--exo-camera-pose-path", default=None,
                   help="takes/<take>/trajectory/gopro_calibs.csv (mode b; default: exo pose from the camera_pose JSON)")
    p.add_argument("--online_calibration_path", "--online-calibration-path", default=None,
                   help="Aria MPS online_calibration.jsonl (default: bundled real Aria RGB calibration)")
    p.add_argument("--point_size", "--point-size", type=float, default=1.5, help="splat radius in output px")
    p.add_argument("--start_frame", "--start-frame", type=int, default=0, help="first ViPE frame (inclusive)")
    p.add_argument("--end_frame", "--end-frame", type=int, default=None,
                   help="last ViPE frame (inclusive; -1 or omitted: the last)")
    p.add_argument("--source_start_frame", "--source-start-frame", type=int, default=None,
                   help="take frame of ViPE frame start_frame (mode b; default: start_frame)")
    p.add_argument("--source_end_frame", "--source-end-frame", type=int, default=None,
                   help="take frame of ViPE frame end_frame (mode b; checked: the take range must be as "
                        "long as the ViPE range; default: derived)")
    p.add_argument("--batch_size", "--batch-size", type=int, default=8,
                   help="accepted for the reference's command lines and ignored: frames are rendered one "
                        "at a time (the reference parses it and never uses it either)")
    p.add_argument("--fish_eye_rendering", "--fish-eye-rendering", action="store_true",
                   help="Aria Fisheye624 model (else pinhole)")
    p.add_argument("--use_mean_bg", "--use-mean-bg", action="store_true", help="per-pixel mean background")
    p.add_argument("--only_bg", "--only-bg", action="store_true", help="skip per-frame dynamic points")
    p.add_argument("--near_clip", "--near-clip", type=float, default=0.0,
                   help="drop points closer than this (m) to the ego camera centre")
    p.add_argument("--resolution", type=int, default=448, help="output width = height in px")
    p.add_argument("--fps", type=float, default=30.0, help="output video fps (also maps take frames to time)")
    p.add_argument("--output", choices=["mp4", "png", "both"], default="both")
    p.add_argument("--voxel_size", "--voxel-size", type=float, default=None, help="voxel de-duplication (m)")
    p.add_argument("--artifact_name", "--artifact-name", default=None, help="sequence inside input_dir")
    p.add_argument("--normalize", action="store_true", help="normalised splat weights (no dark edges)")
    p.add_argument("--backend", choices=["auto", "raster", "splat", "pyrender"], default="auto",
                   help="auto: raster on CPU, splat on CUDA; raster: native CPU rasteriser (the splat's disks, "
                        "fast); splat: exact gpu_kernels disks (any camera, CPU or CUDA); pyrender: OpenGL points "
                        "(pinhole only)")
    p.add_argument("--device", default="cpu", help="torch device of the splat backend (cpu, cuda, ...)")


def run(args) -> int:
    from ..errors import InputError
    from ..render.ego import EgoRenderConfig, render_ego

    if args.batch_size < 1:
        raise InputError(f"--batch_size must be >= 1, got {args.batch_size}")

    cfg = EgoRenderConfig(
        input_dir=args.input_dir, out_dir=args.out_dir, meta_json_path=args.meta_json_path,
        ego_camera_pose_path=args.ego_camera_pose_path, exo_camera_pose_path=args.exo_camera_pose_path,
        online_calibration_path=args.online_calibration_path, start_frame=args.start_frame,
        end_frame=args.end_frame, source_start_frame=args.source_start_frame,
        source_end_frame=args.source_end_frame, point_size=args.point_size,
        fish_eye_rendering=args.fish_eye_rendering, use_mean_bg=args.use_mean_bg, only_bg=args.only_bg,
        near_clip=args.near_clip, resolution=args.resolution, fps=args.fps, output=args.output,
        voxel_size=args.voxel_size, artifact_name=args.artifact_name, normalize=args.normalize,
        backend=args.backend, device=args.device)
    res = render_ego(cfg, progress=True)
    print(json.dumps({"out": res.out_path, "frames": len(res.frames), "mean_coverage": round(res.mean_coverage, 4),
                      "background_points": res.num_background_points, "seconds": round(res.seconds, 2)}, indent=2))
    return 0
