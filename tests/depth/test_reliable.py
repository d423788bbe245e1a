"""Reliable-depth mask against a reference built from torch pooling ops the way ViPE/EgoX compute it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vipe_dagster.depth.reliable import reliable_depth_mask, sample_reliable_points


def _reference(depth: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(depth.astype(np.float64))[None, None]
    mx = F.max_pool2d(t, 5, 1, 2)  # padding ignored by max
    mn = -F.max_pool2d(-t, 5, 1, 2)  # ... and by min
    mean = F.avg_pool2d(t, 5, 1, 2, count_include_pad=True)  # zero padding counted
    return ((((mx - mn) / (mean + 1e-6)) < 0.1) & (t > 0))[0, 0].numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = 37, 53
    d = np.full((h, w), 3.0) + 0.04 * rng.standard_normal((h, w))
    d[5:20, 10:30] += rng.uniform(0, 2, (15, 20))  # rough patch
    d[25:, :] *= 2.0  # depth edge
    d[rng.integers(0, h, 6), rng.integers(0, w, 6)] = np.nan
    d[rng.integers(0, h, 3), rng.integers(0, w, 3)] = 0.0
    d[rng.integers(0, h, 3), rng.integers(0, w, 3)] = -1.0
    d[0, 7] = np.inf
    d = d.astype(np.float32)
    ref = _reference(d)
    got = reliable_depth_mask(d)
    assert got.dtype == bool and got.shape == d.shape
    np.testing.assert_array_equal(got, ref)
    assert 0.2 < got.mean() < 0.9  # a real mix of reliable and unreliable pixels


def test_border_is_stricter_than_interior():
    # an exponential ramp along x: every interior window has (max-min)/mean = 2 sinh(0.04) ~ 0.08 < 0.1,
    # but on the first and last rows the zero padding counts in the mean (3 real rows of 5), which
    # lifts the ratio to ~0.13 and rejects them
    x = np.arange(40, dtype=np.float64)
    d = np.tile(np.exp(0.02 * x), (30, 1)).astype(np.float32)
    m = reliable_depth_mask(d)
    assert m[2:-2, 2:-2].all()
    assert not m[0].any() and not m[-1].any()
    np.testing.assert_array_equal(m, _reference(d))


def test_sample_points_on_a_plane():
    h, w, f, cx, cy = 48, 64, 50.0, 31.5, 23.5
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    d = np.full((h, w), 4.0, np.float32)
    d[:, 40:] = np.nan
    xyz, u, v = sample_reliable_points(d, [f, f, cx, cy], c2w, step=2)
    assert (u % 2 == 0).all() and (v % 2 == 0).all()
    assert u.max() < 40 - 2  # next to the NaN band the window sees NaN
    np.testing.assert_allclose(xyz[:, 2], 7.0, atol=1e-6)
    np.testing.assert_allclose(xyz[:, 0], (u - cx) / f * 4.0 + 1.0, atol=1e-5)
