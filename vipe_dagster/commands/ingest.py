"""Decode a video (inclusive frame range, skip, resize) into ``<output>/rgb/<name>.mp4`` plus a manifest."""

from __future__ import annotations

import json

from ._common import add_frame_range, add_output, add_wait

NAME = "ingest"
HELP = "copy a video's selected frames into an artifact store (rgb + manifest)"


def add_arguments(p):
    p.add_argument("video", help="video file, image folder, or s3:// URI")
    add_output(p)
    add_frame_range(p)
    p.add_argument("--long_side", "--long-side", dest="long_side", type=int, default=None,
                   help="resize so the long side is about this many px (multiple of 8); default: keep size")
    p.add_argument("--name", default=None, help="sequence name (default: the video's file stem)")
    add_wait(p)


def run(args) -> int:
    from ..ingest import ingest_summary, ingest_video
    from ..io import ArtifactStore, fs, open_video
    from ..io.locks import sequence_lock
    from ..io.names import check_sequence_name

    fs.preflight_read(args.video, "Video")
    fs.preflight_write(args.output, "output (-o)")
    stream = open_video(args.video, args.start_frame, args.end_frame, args.frame_skip, args.long_side)
    name = check_sequence_name(args.name or stream.name, "--name" if args.name else "video name")
    with sequence_lock(args.output, name, "ingest", wait=args.wait):
        res = ingest_video(args.video, ArtifactStore(args.output), name=name, start_frame=args.start_frame,
                           end_frame=args.end_frame, frame_skip=args.frame_skip, long_side=args.long_side,
                           progress=True)
    print(json.dumps(ingest_summary(res), indent=2))
    return 0
