"""Plane sweep on views rendered analytically (OpenCV warpPerspective of a textured plane)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gpu_kernels.plane_sweep import inverse_depth_planes, plane_sweep, zncc_cost_volume


def _views(depth: float, baselines=(-0.3, 0.3), size=(128, 96), seed=0):
    """Reference = random texture on the fronto-parallel plane z = depth; sources see it from x-shifted
    cameras, rendered with the plane-induced homography (independent of the kernel's own warping)."""
    w, h = size
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.2)
    tex = (tex - tex.min()) / np.ptp(tex)
    f = 100.0
    k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    srcs, poses = [], []
    for b in baselines:
        t_src_ref = np.eye(4)
        t_src_ref[0, 3] = -b  # source camera centre at x = b in the reference frame
        hmat = k @ (t_src_ref[:3, :3] + np.outer(t_src_ref[:3, 3], [0, 0, 1]) / depth) @ np.linalg.inv(k)
        srcs.append(cv2.warpPerspective(tex, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        poses.append(t_src_ref)
    kv = torch.tensor([f, f, (w - 1) / 2, (h - 1) / 2], dtype=torch.float32)
    return (torch.from_numpy(tex), torch.from_numpy(np.stack(srcs)), kv, kv.repeat(len(baselines), 1),
            torch.tensor(np.stack(poses), dtype=torch.float32))


@pytest.mark.parametrize("depth", [2.0, 3.7, 6.0])
def test_recovers_plane_depth_with_subplane_precision(depth):
    ref, srcs, k, ks, t = _views(depth)
    res = plane_sweep(ref, srcs, k, ks, t, depth_min=1.0, depth_max=20.0, num_planes=48)
    inner = res.depth[10:-10, 20:-20]
    step = (1 / 1.0 - 1 / 20.0) / 47  # plane spacing in inverse depth
    err = (1 / inner - 1 / depth).abs()
    assert torch.isfinite(inner).all()
    assert float(err.median()) < 0.25 * step  # better than the plane spacing: the parabola works
    assert float((inner / depth - 1).abs().median()) < 0.01
    assert float(res.confidence[10:-10, 20:-20].mean()) > 0.7


def test_cost_volume_minimum_and_validity():
    ref, srcs, k, ks, t = _views(4.0, baselines=(0.3,))
    planes = inverse_depth_planes(1.0, 20.0, 32)
    cost, nvalid = zncc_cost_volume(ref, srcs, k, ks, t, planes)
    assert cost.shape == (32, 96, 128) and nvalid.shape == cost.shape
    best = planes[cost[:, 40:60, 40:80].argmin(0)]
    assert float((best - 0.25).abs().median()) <= float(planes[0] - planes[1])
    # the source sits 0.3 m to the right: at 1 m, content shifts 30 px left, so the reference's left border
    # falls outside the source image, and the right border stays inside
    assert int(nvalid[0, :, :5].sum()) == 0 and torch.isinf(cost[0, :, :5]).all()
    assert bool((nvalid[0, :, -5:] == 1).all())


def test_per_pixel_hypotheses_match_planes():
    ref, srcs, k, ks, t = _views(3.0)
    planes = inverse_depth_planes(1.0, 20.0, 16)
    c1, _ = zncc_cost_volume(ref, srcs, k, ks, t, planes)
    c2, _ = zncc_cost_volume(ref, srcs, k, ks, t, planes[:, None, None].expand(16, 96, 128).contiguous())
    torch.testing.assert_close(c1, c2, equal_nan=True)


def test_bad_shapes_raise():
    ref, srcs, k, ks, t = _views(3.0)
    with pytest.raises(ValueError, match="T_src_ref"):
        plane_sweep(ref, srcs, k, ks, t[:1], 1.0, 10.0)
    with pytest.raises(ValueError, match="depth_min"):
        plane_sweep(ref, srcs, k, ks, t, 10.0, 1.0)
    with pytest.raises(ValueError, match="differs"):
        plane_sweep(ref[:50], srcs, k, ks, t, 1.0, 10.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ref, srcs, k, ks, t = _views(3.0)
    a = plane_sweep(ref, srcs, k, ks, t, 1.0, 20.0, 32)
    b = plane_sweep(ref.cuda(), srcs.cuda(), k.cuda(), ks.cuda(), t.cuda(), 1.0, 20.0, 32)
    assert b.depth.device.type == "cuda"
    ok = torch.isfinite(a.depth)
    assert float(((a.depth[ok] - b.depth.cpu()[ok]).abs() / a.depth[ok]).median()) < 1e-3


def test_refine_sweep_around_a_coarse_guess():
    from gpu_kernels.plane_sweep import refine_sweep

    ref, srcs, k, ks, t = _views(3.7)
    guess = torch.full((96, 128), 1 / 3.7 + 0.02)  # off by ~7 % in inverse depth
    guess[:5, :5] = float("nan")  # unknown pixels fall back to the median guess
    res = refine_sweep(ref, srcs, k, ks, t, guess, half_width=0.04, num_hyp=9)
    inner = res.depth[10:-10, 20:-20]
    assert float((inner / 3.7 - 1).abs().median()) < 0.01
    with pytest.raises(ValueError, match="at least one"):
        refine_sweep(ref, srcs, k, ks, t, torch.full((96, 128), float("nan")), half_width=0.04)


@pytest.mark.parametrize("window", [3, 5, 7])
def test_box_mean_matches_direct_window_means(window):
    """The box filter is the mean over the in-image part of each window, borders included (checked against
    an explicit loop over the windows)."""
    from gpu_kernels.plane_sweep import _box

    x = torch.rand(2, 1, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = _box(x, window)
    r = window // 2
    want = torch.empty_like(x)
    for i in range(9):
        for j in range(13):
            want[..., i, j] = x[..., max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean((-2, -1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_seen_share_of_hypotheses_at_the_border():
    """A source 0.3 m to the right: reference column u has a source sample for inverse depths <= u / 30
    (content shifts 30 px per unit inverse depth), so its share of the 48 planes uniform in [1/20, 1] is
    (u / 30 - 0.05) / 0.95; columns from 31 px on are seen at every plane."""
    ref, srcs, k, ks, t = _views(1.5, baselines=(0.3,))
    res = plane_sweep(ref, srcs, k, ks, t, depth_min=1.0, depth_max=20.0, num_planes=48)
    assert res.seen is not None and res.seen.shape == (96, 128)
    assert bool((res.seen[:, 32:] == 1.0).all())
    for u in (3, 9, 15, 24):
        expect = (u / 30 - 0.05) / 0.95
        assert abs(float(res.seen[:, u].mean()) - expect) < 0.04, u
