"""Camera-model unprojection against the forward projections of the spec, and frustum geometry."""

from __future__ import annotations

import numpy as np

from vipe_dagster.viz.geometry import frustum_segments, pixel_rays, topdown_basis, unproject_frame


def test_mei_rays_reproject_to_their_pixels():
    fx, fy, cx, cy, xi = 300.0, 310.0, 320.0, 240.0, 0.8
    uu, vv = np.meshgrid(np.arange(0, 640, 37), np.arange(0, 480, 29))
    uu, vv = uu.ravel(), vv.ravel()
    rays = pixel_rays("MEI", np.array([fx, fy, cx, cy, xi]), uu, vv, 640, 480)
    ok = np.isfinite(rays).all(axis=1)
    assert ok.mean() > 0.9 and np.allclose(rays[ok, 2], 1.0)
    P = rays[ok] * 2.5  # z-depth 2.5
    norm = np.linalg.norm(P, axis=1)
    u = fx * P[:, 0] / (P[:, 2] + xi * norm) + cx  # unified-model projection (spec section 2)
    v = fy * P[:, 1] / (P[:, 2] + xi * norm) + cy
    np.testing.assert_allclose(u, uu[ok], atol=1e-6)
    np.testing.assert_allclose(v, vv[ok], atol=1e-6)


def test_panorama_rays_follow_equirect_mapping():
    w, h = 512, 256
    uu, vv = np.meshgrid(np.arange(0, w, 17), np.arange(0, h, 13))
    uu, vv = uu.ravel(), vv.ravel()
    rays = pixel_rays("PANORAMA", np.zeros(4), uu, vv, w, h)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-9)
    theta = np.arctan2(rays[:, 0], rays[:, 2])
    phi = np.arccos(np.clip(-rays[:, 1], -1, 1))
    np.testing.assert_allclose((theta / (2 * np.pi) + 0.5) * w - 0.5, uu, atol=1e-6)
    np.testing.assert_allclose(phi / np.pi * h - 0.5, vv, atol=1e-6)


def test_pinhole_unprojection_and_split():
    K = np.array([50.0, 50.0, 31.5, 23.5])
    depth = np.full((48, 64), 3.0, np.float32)
    depth[:, :8] = 0.0  # invalid strip
    mask = np.zeros((48, 64), np.uint8)
    mask[20:30, 40:50] = 2
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    parts = unproject_frame(depth, K, c2w, None, mask, step=2)
    st, dy = parts["static"][0], parts["dynamic"][0]
    assert len(dy) == 25 and len(st) > 500
    np.testing.assert_allclose(st[:, 2], 6.0, atol=1e-5)  # z = 3 m in front of a camera at z = 3
    # the invalid strip (and its 5x5 neighbourhood) gives no points: x >= (10 - 31.5) / 50 * 3 + 1
    assert st[:, 0].min() >= (10 - 31.5) / 50 * 3 + 1 - 1e-5


def test_frustum_segments_geometry():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[:, 0, 3] = [0, 1, 2]
    K = np.tile([100.0, 100.0, 50.0, 40.0], (3, 1))
    segs = frustum_segments(c2w, K, 100, 80, scale=1.0).reshape(3, 8, 2, 3)
    np.testing.assert_allclose(segs[:, :4, 0], np.repeat(c2w[:, None, :3, 3], 4, axis=1))
    corners = segs[1, :4, 1]
    np.testing.assert_allclose(corners[:, 2], 1.0)
    np.testing.assert_allclose(sorted(corners[:, 0]), [0.5, 0.5, 1.5, 1.5])
    np.testing.assert_allclose(sorted(corners[:, 1]), [-0.4, -0.4, 0.4, 0.4])


def test_topdown_basis_for_upright_opencv_cameras():
    c2w = np.tile(np.eye(4), (4, 1, 1))
    b = topdown_basis(c2w)
    np.testing.assert_allclose(b[0], [1, 0, 0], atol=1e-9)  # right
    np.testing.assert_allclose(b[1], [0, 0, 1], atol=1e-9)  # forward
