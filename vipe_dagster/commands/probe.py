"""Print what a video file or image folder holds: frames (counted by demuxing), size, fps."""

from __future__ import annotations

import json

NAME = "probe"
HELP = "show frame count, size and fps of a video or image folder"


def add_arguments(p):
    p.add_argument("video", help="video file (mp4/mov/mkv), image folder, or s3:// URI")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from dataclasses import asdict

    from ..io import fs, probe

    fs.preflight_read(args.video, "Video")
    info = probe(args.video)
    if args.json:
        print(json.dumps(asdict(info), indent=2))
    else:
        print(f"{info.name}: {info.num_frames} frames [0, {info.num_frames - 1}], "
              f"{info.width}x{info.height}, {info.fps:.3f} fps ({info.kind})")
    return 0
