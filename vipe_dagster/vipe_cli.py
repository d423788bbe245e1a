"""``vipe``: NVIDIA ViPE's command line (``vipe infer``, ``vipe visualize``) on this engine.

The reference's flags, spelled as it spells them, plus the EgoX fork's (``--start_frame/--end_frame``
inclusive, ``--assume_fixed_camera_pose``, ``--use_exo_intrinsic_gt``) and this engine's extras. Both
subcommands call the same functions as ``vipe-dagster infer`` / ``vipe-dagster visualize``.

Differences from the reference, on purpose: artifacts are always written (as ``vipe infer`` does), the
video is streamed rather than cached in memory, presets that need learned weights fail before any work
when the checkpoint is missing, and ``--output_resolution processing`` keeps the processing size.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import __version__
from .cli import HelpFormatter, guarded, use_help_formatter
from .commands._common import add_frame_range
from .config import PRESETS
from .logsetup import configure_logging


def _infer(args: argparse.Namespace) -> int:
    from .commands.infer import request_from_args
    from .compat.run import execute

    req = request_from_args(args)
    res = execute(req, progress=True, wait=args.wait)
    print(json.dumps(res.summary(), indent=2))
    logging.getLogger("vipe").info("Finished")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from .commands import visualize

    args.write_video = False
    return visualize.run(args)


def build_parser() -> argparse.ArgumentParser:
    from .commands.infer import add_infer_options

    parser = argparse.ArgumentParser(
        prog="vipe",
        description="NVIDIA Video Pose Engine (ViPE) command line, run by vipe-dagster's weight-free engine",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vipe (vipe-dagster {__version__})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    fmt = HelpFormatter
    p = sub.add_parser(
        "infer",
        help="run inference on a video file or a directory of images",
        formatter_class=fmt,
        description="Run inference on a video file or a directory of images; writes ViPE's "
        "artifact layout under --output.",
    )
    p.add_argument("video", nargs="?", default=None, help="video file (or use --image-dir)")
    p.add_argument(
        "--image-dir",
        "--image_dir",
        dest="image_dir",
        default=None,
        help="directory of image frames (jpg/png/bmp/tif, sorted by name, 30 fps)",
    )
    p.add_argument("-o", "--output", default="vipe_results", help="output directory")
    p.add_argument("-p", "--pipeline", default="default", help="pipeline preset: " + ", ".join(PRESETS))
    add_frame_range(p)
    add_infer_options(p, "source")
    p.set_defaults(_run=_infer)
    v = sub.add_parser("visualize", help="browser 3D viewer of a result directory", formatter_class=fmt)
    v.add_argument("dir", nargs="?", default="vipe_results", help="result directory (ViPE layout)")
    v.add_argument("-p", "--port", type=int, default=20540, help="port of the visualization server")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to share on the network)")
    v.add_argument("--sequence", default=None, help="show only this sequence")
    v.add_argument(
        "--use_mean_bg",
        "--use-mean-bg",
        dest="use_mean_bg",
        action="store_true",
        help="show the per-pixel mean background from the start (EgoX)",
    )
    v.add_argument(
        "--max_points",
        "--max-points",
        dest="max_points",
        type=int,
        default=60_000,
        help="points per frame at most",
    )
    v.add_argument(
        "--cache_frames",
        "--cache-frames",
        dest="cache_frames",
        type=int,
        default=16,
        help="decoded frames kept in memory",
    )
    v.add_argument(
        "--exit_after",
        "--exit-after",
        dest="exit_after",
        type=float,
        default=None,
        help="stop the server after this many seconds (for scripted checks)",
    )
    v.set_defaults(_run=_visualize)
    return use_help_formatter(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return guarded(args._run, args)


if __name__ == "__main__":
    sys.exit(main())
