"""Point splatting: disk footprint, z-ordering, culling, K-nearest compositing against a brute-force
per-pixel reference written from the EgoX spec (section 3.8), background and batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpu_kernels.cameras import Fisheye624Camera, PinholeCamera
from gpu_kernels.splat import splat

PIN = PinholeCamera(torch.tensor([100.0, 100.0, 31.5, 23.5]))


def _point_at(u: float, v: float, z: float, cam: PinholeCamera = PIN) -> list[float]:
    fx, fy, cx, cy = cam.params.tolist()
    return [(u - cx) / fx * z, (v - cy) / fy * z, z]


@pytest.mark.parametrize("radius", [0.7, 1.5, 3.2, 5.0])
def test_lone_point_renders_disk_of_requested_radius(radius):
    u, v = 20.3, 15.6
    pts = torch.tensor([_point_at(u, v, 2.0)])
    col = torch.tensor([[0.2, 0.6, 1.0]])
    img, depth, mask = splat(pts, col, PIN, 48, 64, radius=radius)
    rows, cols = np.mgrid[0:48, 0:64]
    d2 = (cols - u) ** 2 + (rows - v) ** 2
    expected = d2 < radius**2
    assert np.array_equal(mask.numpy(), expected)
    alpha = np.where(expected, 1 - d2 / radius**2, 0.0)
    np.testing.assert_allclose(img.numpy(), alpha[..., None] * np.array([0.2, 0.6, 1.0]), atol=1e-5)
    np.testing.assert_allclose(depth.numpy(), np.where(expected, 2.0, 0.0), atol=1e-6)
    # normalized: full colour inside the disk
    img_n, _, _ = splat(pts, col, PIN, 48, 64, radius=radius, mode="normalized")
    np.testing.assert_allclose(img_n.numpy()[expected], np.tile([0.2, 0.6, 1.0], (expected.sum(), 1)), atol=1e-6)
    # the disk area grows like pi r^2
    if radius >= 3:
        assert abs(expected.sum() - math.pi * radius**2) < 2 * math.pi * radius


def test_nearer_points_win():
    far = _point_at(30.0, 20.0, 5.0)
    near = _point_at(30.0, 20.0, 1.0)
    # near point listed last and first: order of input must not matter
    for order in ([far, near], [near, far]):
        pts = torch.tensor(order)
        col = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) if order[0] is far else \
            torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        for mode in ("nearest", "front_to_back"):
            img, depth, mask = splat(pts, col, PIN, 48, 64, radius=2.0, mode=mode)
            assert torch.allclose(img[20, 30], torch.tensor([0.0, 1.0, 0.0]))  # alpha = 1 at the centre
            assert float(depth[20, 30]) == pytest.approx(1.0)
        # off-centre pixel: C = a c_near + (1 - a) a c_far
        img, _, _ = splat(pts, col, PIN, 48, 64, radius=2.0)
        a = 1 - 1.0 / 4.0
        assert torch.allclose(img[20, 31], torch.tensor([(1 - a) * a, a, 0.0]), atol=1e-6)


def test_points_behind_camera_never_appear():
    fish = Fisheye624Camera(torch.tensor([150.0, 31.5, 23.5] + [0.0] * 12))
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2000, 3, generator=g)
    pts[:, 2] = -pts[:, 2].abs() - 0.01  # all behind
    for cam in (PIN, fish):
        for mode in ("front_to_back", "normalized", "nearest"):
            img, depth, mask = splat(pts, torch.ones(2000, 3), cam, 48, 64, radius=3.0, mode=mode,
                                     background=(0.1, 0.2, 0.3))
            assert not bool(mask.any())
            assert torch.allclose(img, torch.tensor([0.1, 0.2, 0.3]).expand(48, 64, 3))
            assert bool((depth == 0).all())
    # the symmetric fisheye model would mirror them into the image if they were not culled
    uv, _ = fish.project(pts)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 64) & (uv[:, 1] >= 0) & (uv[:, 1] < 48)
    assert bool(inside.any())


def _reference(pts: np.ndarray, col: np.ndarray, cam: PinholeCamera, h: int, w: int, r: float, k: int,
               mode: str, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel loops straight from the spec: the k nearest covering points, front to back."""
    fx, fy, cx, cy = cam.params.double().tolist()
    img = np.zeros((h, w, 3))
    depth = np.zeros((h, w))
    mask = np.zeros((h, w), bool)
    z = pts[:, 2]
    u = fx * pts[:, 0] / np.where(z > 0, z, 1) + cx
    v = fy * pts[:, 1] / np.where(z > 0, z, 1) + cy
    for row in range(h):
        for c in range(w):
            d2 = (c - u) ** 2 + (row - v) ** 2
            cover = np.nonzero((d2 < r * r) & (z > 1e-6))[0]
            if cover.size == 0:
                img[row, c] = bg
                continue
            cover = cover[np.argsort(z[cover], kind="stable")][:k]
            mask[row, c] = True
            depth[row, c] = z[cover[0]]
            alpha = 1 - d2[cover] / r**2
            if mode == "nearest":
                img[row, c] = col[cover[0]]
            elif mode == "normalized":
                img[row, c] = (alpha[:, None] * col[cover]).sum(0) / alpha.sum()
            else:
                t = 1.0
                acc = np.zeros(3)
                for a, cc in zip(alpha, col[cover], strict=True):
                    acc += t * a * cc
                    t *= 1 - a
                img[row, c] = acc + t * bg
    return img, depth, mask


@pytest.mark.parametrize("mode", ["front_to_back", "normalized", "nearest"])
def test_k_nearest_compositing_matches_bruteforce(mode):
    rng = np.random.default_rng(1)
    n, h, w = 400, 24, 32
    uv = rng.uniform(-2, [w + 1, h + 1], (n, 2))
    uv[:60] = uv[0] + rng.normal(0, 0.4, (60, 2))  # a deep pile at one spot: more than k layers
    z = rng.uniform(0.5, 8.0, n)
    z[rng.uniform(size=n) < 0.1] *= -1  # some behind the camera
    cam = PinholeCamera(torch.tensor([40.0, 40.0, 15.5, 11.5], dtype=torch.float64))
    fx, fy, cx, cy = cam.params.tolist()
    pts = np.stack([(uv[:, 0] - cx) / fx * z, (uv[:, 1] - cy) / fy * z, z], 1)
    col = rng.uniform(0, 1, (n, 3))
    bg = np.array([0.3, 0.1, 0.7])
    ref_img, ref_depth, ref_mask = _reference(pts, col, cam, h, w, 2.5, 8, mode, bg)
    img, depth, mask = splat(torch.tensor(pts), torch.tensor(col), cam, h, w, radius=2.5, k=8,
                             background=tuple(bg), mode=mode)
    assert np.array_equal(mask.numpy(), ref_mask)
    np.testing.assert_allclose(depth.numpy(), ref_depth, atol=1e-5)
    np.testing.assert_allclose(img.numpy(), ref_img, atol=1e-5)


def test_batched_frames_equal_single_frames():
    g = torch.Generator().manual_seed(2)
    pts = torch.randn(2, 300, 3, generator=g)
    pts[..., 2] = pts[..., 2].abs() * 3 + 0.5
    col = torch.rand(2, 300, 3, generator=g)
    params = torch.tensor([[60.0, 60.0, 31.5, 23.5], [40.0, 45.0, 30.0, 20.0]])
    img, depth, mask = splat(pts, col, PinholeCamera(params), 48, 64, radius=1.5)
    for i in range(2):
        a, b, c = splat(pts[i], col[i], PinholeCamera(params[i]), 48, 64, radius=1.5)
        assert torch.allclose(img[i], a) and torch.allclose(depth[i], b) and torch.equal(mask[i], c)
    shared, _, _ = splat(pts, col[0], PinholeCamera(params[0]), 48, 64)
    assert shared.shape == (2, 48, 64, 3)


def test_bad_arguments():
    pts = torch.ones(5, 3)
    with pytest.raises(ValueError, match="mode"):
        splat(pts, torch.ones(5, 3), PIN, 8, 8, mode="additive")
    with pytest.raises(ValueError, match="colors"):
        splat(pts, torch.ones(4, 3), PIN, 8, 8)
    with pytest.raises(ValueError, match="radius"):
        splat(pts, torch.ones(5, 3), PIN, 8, 8, radius=0)
    with pytest.raises(ValueError, match="points_cam"):
        splat(torch.ones(5, 2), torch.ones(5, 3), PIN, 8, 8)
    with pytest.raises(ValueError, match="background"):
        splat(pts, torch.ones(5, 3), PIN, 8, 8, background=(0.0, 0.0))
