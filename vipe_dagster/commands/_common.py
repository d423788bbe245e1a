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


def add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait when another run holds the sequence's lock (default: fail at once)")


def add_depth_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth_model", "--depth-model", dest="depth_model", default=None,
                   help="learned depth checkpoint as REPO_ID:FILENAME on the Hugging Face Hub (needed for static "
                        "cameras), e.g. depth-anything/Depth-Anything-V2-Small:depth_anything_v2_vits.pth")
    p.add_argument("--hf_cache", "--hf-cache", dest="hf_cache", default=None, help="Hugging Face cache directory")
    p.add_argument("--depth_model_metric", "--depth-model-metric", dest="depth_model_metric", action="store_true",
                   help="the --depth_model checkpoint predicts metric depth (a Depth-Anything-V2 metric model): "
                        "it also sets the metric scale of poses and depth")
    p.add_argument("--depth_model_max_depth", "--depth-model-max-depth", dest="depth_model_max_depth", type=float,
                   default=None, help="metric models: the output range in metres (20 indoor, 80 outdoor models)")


def learned_depth_config(spec: str | None, cache_dir: str | None, device: str | None, metric: bool = False,
                         max_depth: float | None = None):
    """``LearnedDepthConfig`` from ``REPO_ID:FILENAME`` (None when no model is asked for); the encoder size
    and metric variants are read from the Depth-Anything-V2 names (see compat/presets.py); ``metric`` and
    ``max_depth`` override what the name says."""
    from ..compat.presets import learned_config_for

    if not spec:
        return None
    return learned_config_for(spec, cache_dir, device, metric=metric, max_depth=max_depth)
