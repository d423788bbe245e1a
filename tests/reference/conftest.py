"""Fixtures of the reference-command tests: tiny real clips, a synthetic Ego-Exo4D take, a local HF cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ref_helpers import METRIC, make_clip, write_hf_checkpoint


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """12 frames of the sample video at 320x180 (real footage, the camera moves)."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="session")
def take(tmp_path_factory):
    """A synthetic Ego-Exo4D take (exact exo result of cam01) plus the exo camera video where Ego-Exo4D keeps
    it: takes/<take>/frame_aligned_videos/downscaled/448/cam01.mp4."""
    from vipe_dagster.synth.egoexo_take import generate_take

    t = generate_take(str(tmp_path_factory.mktemp("take")), num_frames=4, exo_size=(160, 120), resolution=96)
    vdir = Path(t.root) / "takes" / t.take / "frame_aligned_videos" / "downscaled" / "448"
    vdir.mkdir(parents=True)
    shutil.copy(Path(t.vipe_dir) / "rgb" / "cam01.mp4", vdir / "cam01.mp4")
    return t


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> Path:
    """A Hugging Face cache with the metric Depth-Anything-V2 Small checkpoint (random weights, real
    layout)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    write_hf_checkpoint(cache, METRIC)
    return cache
