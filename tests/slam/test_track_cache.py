"""The KLT track cache shared by the focal calibration rounds and the main pass gives, on every pass,
exactly the tracks a fresh tracker gives on the same frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vipe_dagster.config import TrackingConfig
from vipe_dagster.io import open_video
from vipe_dagster.slam.tracker import KLTTracker, TrackCache

DOG = Path(__file__).resolve().parents[2] / "samples" / "dog-example.mp4"


@pytest.fixture(scope="module")
def frames():
    return [f for _, f in open_video(str(DOG), 0, 29, 1, 256)]


def _fresh(frames, cfg):
    h, w = frames[0].shape[:2]
    t = KLTTracker(cfg, w, h)
    return [t.step(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in frames]


def _same(a, b):
    assert len(a) == len(b)
    for (ia, ua), (ib, ub) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ua, ub)


def test_passes_of_different_lengths_see_fresh_tracker_results(frames):
    cfg = TrackingConfig()
    want = _fresh(frames, cfg)
    h, w = frames[0].shape[:2]
    cache = TrackCache(cfg, w, h)
    # calibration rounds stop at different frames; the main pass then runs to the end, releasing as it goes
    for stop in (12, 8, 20):
        _same([cache.get(i, frames[i]) for i in range(stop)], want[:stop])
    got = []
    for i in range(len(frames)):
        got.append(cache.get(i, frames[i]))
        cache.release(i + 1)
    _same(got, want)
    assert len(cache) == 0
    assert got[5][0].size > 50  # real tracks, not an empty comparison


def test_cache_over_its_limit_is_not_used_again_but_the_running_pass_stays_exact(frames):
    cfg = TrackingConfig()
    want = _fresh(frames, cfg)
    h, w = frames[0].shape[:2]
    cache = TrackCache(cfg, w, h, max_frames=10)
    got = [cache.get(i, frames[i]) for i in range(len(frames))]
    _same(got, want)
    assert not cache.usable
    with pytest.raises(ValueError, match="frame 15 requested, but the tracker is at frame 30"):
        cache.get(15, frames[15])
