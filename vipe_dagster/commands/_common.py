"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse


def add_frame_range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start_frame", "--start-frame", dest="start_frame", type=int, default=None,
                   help="first frame to process (0-based, inclusive; default: first frame)")
    p.add_argument("--end_frame", "--end-frame", dest="end_frame", type=int, default=None,
                   help="last frame to process (inclusive; default: last frame)")
    p.add_argument("--frame_skip", "--frame-skip", dest="frame_skip", type=int, default=1,
                   help="keep every k-th frame of the range")


def add_output(p: argparse.ArgumentParser, default: str = "vipe_results") -> None:
    p.add_argument("-o", "--output", default=default, help="artifact root: a folder or s3://bucket/prefix")
