"""Annotate a video: intrinsics and per-frame poses (weight-free visual SLAM), dense depth, dynamic masks.

Writes ViPE-format artifacts under ``-o``: rgb/<n>.mp4 (processed frames), pose/<n>.npz, intrinsics/<n>.npz
(+ _camera.txt), depth/<n>.zip, mask/<n>.zip + mask/<n>.txt, vipe/<n>_sparse.npz, vipe/<n>_info.pkl,
vipe/<n>_manifest.json (and vipe/<n>_vis.mp4 with --visualize, vipe/<n>_slam_map.pt with --save_slam_map).
Presets: ``default`` (everything), ``pose_only`` (no depth or masks), ``fixed_camera`` (identity poses,
background masks; depth only with --depth_model) and the reference's names ``no_vda``, ``static_vda``,
``lyra``, ``dav3`` (docs/reference_commands.md says what each runs and which learned checkpoint it can use).
Intrinsics given with ``--intrinsics`` are in pixels of the source video and are scaled to the processing
size; with ``--output_resolution source`` the artifacts are written at the source size (``--long_side 0``
processes at the source size).
"""

from __future__ import annotations

import json

from ..config import PRESETS, PipelineConfig, PoseConfig
from ..depth.config import MetricScaleConfig
from ..options import add_model_arguments
from ._common import add_depth_model, add_frame_range, add_output, add_wait

NAME = "infer"
HELP = "annotate a video: intrinsics, poses, dense depth, dynamic masks (presets: " + ", ".join(PRESETS) + ")"


def add_infer_options(p, output_resolution_default: str) -> None:
    """Options shared by ``vipe-dagster infer`` and ``vipe infer``."""
    pose_opts = p.add_argument_group("pose settings (PoseConfig)")
    add_model_arguments(p, PoseConfig, fields=("long_side",), group=pose_opts)
    p.add_argument("--output_resolution", "--output-resolution", dest="output_resolution",
                   choices=["processing", "source"], default=output_resolution_default,
                   help="size of the written rgb/depth/mask (intrinsics scaled to match): the processing "
                        "size or the source video's size")
    add_model_arguments(p, PoseConfig, fields=("assume_fixed_camera_pose",), group=pose_opts)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--intrinsics", default=None,
                   help="'fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]' in source-video pixels (skips focal estimation); with "
                        "--camera-model fisheye 'fx,fy,cx,cy,k1,k2,k3,k4', mei 'fx,fy,cx,cy,xi'. A given "
                        "distortion is removed at ingest (rectified to a pinhole)")
    g.add_argument("--intrinsics-file", "--intrinsics_file", dest="intrinsics_file", default=None,
                   help="JSON {\"model\": OPENCV|OPENCV_FISHEYE|SIMPLE_RADIAL|RADIAL|PINHOLE|MEI, \"params\": [...] "
                        "(COLMAP's order), \"width\", \"height\"}, or a text line as --intrinsics")
    p.add_argument("--camera-model", "--camera_model", dest="camera_model", default=None,
                   choices=["pinhole", "radial", "fisheye", "mei"],
                   help="lens model: pinhole (no distortion estimated), radial (self-calibrates k1 with the "
                        "focal), fisheye / mei (need the calibration via --intrinsics)")
    g.add_argument("--use_exo_intrinsic_gt", "--use-exo-intrinsic-gt", dest="exo_intrinsic_gt", default=None,
                   help="EgoX: the exo camera's 3x3 K as JSON (or a JSON file) at any resolution with a "
                        "centred principal point; scaled to the video (f * (H/2) / cy, principal point "
                        "W/2, H/2)")
    p.add_argument("--save_slam_map", "--save-slam-map", dest="save_slam_map", action="store_true",
                   help="also write vipe/<n>_slam_map.pt: keyframe points with colours (ViPE's SLAM map)")
    p.add_argument("--name", default=None, help="sequence name (default: the video's file stem)")
    add_model_arguments(p, PoseConfig, fields=("seed",), group=pose_opts)
    add_model_arguments(p, PipelineConfig, fields=("visualize",))
    add_depth_model(p)
    # metric cues: at most one (MetricScaleConfig)
    add_model_arguments(p, MetricScaleConfig, fields=("scale", "known_distance", "camera_height"),
                        group=p.add_mutually_exclusive_group())
    add_wait(p)


def add_arguments(p):
    p.add_argument("video", nargs="?", default=None, help="video file or s3:// URI (or use --image-dir)")
    p.add_argument("--image-dir", "--image_dir", dest="image_dir", default=None,
                   help="folder of jpg/png/bmp/tif frames (sorted by name, 30 fps) instead of a video")
    add_output(p)
    add_frame_range(p)
    p.add_argument("-p", "--pipeline", default="default", help="pipeline preset: " + ", ".join(PRESETS))
    add_infer_options(p, "processing")


def request_from_args(args):
    """``compat.run.prepare`` from the parsed options of either front end."""
    from ..compat.run import prepare
    from ..errors import ConfigError

    if (args.video is None) == (args.image_dir is None):
        raise ConfigError("give exactly one input: a VIDEO path or --image-dir DIR")
    return prepare(args.video or args.image_dir, args.output, args.pipeline, name=args.name,
                   start_frame=args.start_frame, end_frame=args.end_frame, frame_skip=args.frame_skip,
                   long_side=args.long_side, fixed_camera=args.assume_fixed_camera_pose,
                   intrinsics=args.intrinsics, intrinsics_file=args.intrinsics_file,
                   exo_intrinsic_gt=args.exo_intrinsic_gt, seed=args.seed, visualize=args.visualize,
                   depth_model=args.depth_model, hf_cache=args.hf_cache,
                   output_resolution=args.output_resolution, save_slam_map=args.save_slam_map,
                   depth_model_metric=args.depth_model_metric, depth_model_max_depth=args.depth_model_max_depth,
                   metric_scale=args.metric_scale, known_distance=args.known_distance,
                   camera_height=args.camera_height, camera_model=getattr(args, "camera_model", None))


def run(args) -> int:
    from ..compat.run import execute

    # everything that can fail cheaply fails before any work: input, output (credentials, bucket, write
    # permission), preset and its weights, options, frame range, sequence name
    req = request_from_args(args)
    res = execute(req, progress=True, wait=args.wait)
    print(json.dumps(res.summary(), indent=2))
    return 0
