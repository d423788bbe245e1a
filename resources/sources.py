"""Where new videos arrive: a local folder and/or an S3 prefix watched by the sensors."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field


class IncomingVideosResource(dg.ConfigurableResource):
    """Watched locations. Videos found there become ``videos`` partitions (see the sensors)."""

    folder: str | None = Field(default="data/incoming", description="local folder to watch (recursive)")
    s3_prefix: str | None = Field(default=None, description="s3://bucket/prefix to watch (recursive)")
    settle_seconds: float = Field(default=10.0, description="ignore local files modified more recently than "
                                                            "this (still being copied)")
    max_per_tick: int = Field(default=50, description="register at most this many new videos per sensor tick")
    long_side: int | None = Field(default=512, description="processing long side recorded for new videos")


def resources() -> dict[str, IncomingVideosResource]:
    """Default resource; ``VIPE_WATCH_DIR`` / ``VIPE_WATCH_S3_PREFIX`` are read when the definitions are built."""
    return {"incoming": IncomingVideosResource(folder=os.environ.get("VIPE_WATCH_DIR", "data/incoming"),
                                               s3_prefix=os.environ.get("VIPE_WATCH_S3_PREFIX") or None)}
