"""Edge-aware hole fill and the fusion splat on small hand-made inputs (fast, no video)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vipe_dagster.depth import mvs


def _dense_fill_reference(depth, guide, sigma, iterations):
    """The fill as its docstring states it, written densely over every pixel (slow, obvious)."""
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    logd = np.where(valid, np.log(np.where(valid, depth, 1.0)), 0.0)
    for it in range(iterations):
        if valid.all():
            break
        dil = 2 ** it
        num, den = np.zeros((h, w)), np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                if valid[y, x]:
                    continue
                for dy in (-dil, 0, dil):
                    for dx in (-dil, 0, dil):
                        ny, nx = y + dy, x + dx
                        if (dy, dx) == (0, 0) or not (0 <= ny < h and 0 <= nx < w) or not valid[ny, nx]:
                            continue
                        c = float(((guide[ny, nx] - guide[y, x]) ** 2).sum())
                        wgt = np.exp(-c / (2 * sigma * sigma))
                        num[y, x] += wgt * logd[ny, nx]
                        den[y, x] += wgt
        newly = ~valid & (den > 1e-4)
        logd = np.where(newly, num / np.maximum(den, 1e-12), logd)
        valid = valid | newly
    return np.where(valid, np.exp(logd), np.nan)


def test_edge_aware_fill_matches_the_dense_definition_and_stops_at_colour_edges():
    rng = np.random.default_rng(3)
    h, w = 24, 32
    guide = np.zeros((h, w, 3), np.float32)
    guide[:, w // 2:] = 1.0  # two colour regions
    guide += rng.normal(0, 0.01, guide.shape).astype(np.float32)
    depth = np.where(np.arange(w)[None, :] < w // 2, 2.0, 5.0) * np.ones((h, 1))
    depth = depth.astype(np.float32)
    holes = rng.random((h, w)) < 0.4
    holes[8:14, 12:20] = True  # a hole across the colour edge
    depth[holes] = np.nan
    got = mvs.edge_aware_fill(depth, guide, 0.08, 8)
    ref = _dense_fill_reference(depth, guide, 0.08, 8)
    assert np.isfinite(got).all()
    both = np.isfinite(ref)
    np.testing.assert_allclose(got[both], ref[both], rtol=1e-5)
    # kept pixels unchanged; filled pixels take the depth of their own colour region
    np.testing.assert_allclose(got[~holes], depth[~holes], rtol=1e-6)  # through exp(log d)
    assert np.allclose(got[:, : w // 2 - 1], 2.0, rtol=0.02) and np.allclose(got[:, w // 2 + 1:], 5.0, rtol=0.02)


@pytest.mark.parametrize("hole_share", [0.0, 1.0])
def test_edge_aware_fill_without_holes_or_without_depth_returns_the_input(hole_share):
    d = np.full((6, 7), 3.0, np.float32)
    if hole_share:
        d[:] = np.nan
    out = mvs.edge_aware_fill(d, np.zeros((6, 7, 3), np.float32), 0.08, 8)
    np.testing.assert_array_equal(out, d)


def test_project_moves_pixels_by_the_relative_pose():
    """A fronto-parallel plane at depth 2 seen from a camera 0.1 to the right lands 5 px to the left
    (f = 100 px), at the same depth; NaN pixels are not projected."""
    h, w = 10, 20
    k = np.array([100.0, 100.0, 9.5, 4.5])
    d = np.full((h, w), 2.0, np.float32)
    d[3, 10] = np.nan
    dst = np.eye(4)
    dst[0, 3] = 0.1
    idx, z, src = mvs._project(d, k, np.eye(4), k, dst, (h, w))
    src, idx = src.numpy(), idx.numpy()
    assert 3 * w + 10 not in set(src.tolist())
    np.testing.assert_allclose(z.numpy(), 2.0, rtol=1e-6)
    sv, su = np.divmod(src, w)
    dv, du = np.divmod(idx, w)
    np.testing.assert_array_equal(dv, sv)
    np.testing.assert_array_equal(du, su - 5)
    assert (su >= 5).all() and len(src) == (w - 5) * h - 1


def test_scene_depth_weighs_sparse_points_by_image_area():
    # an 80x60 image in 10 px cells (8 x 6): 40 cells hold one point each at depth 2; the 8 textured cells of
    # the top row hold 50 points each at depth 9. The plain median follows the crowd (9); over the image area
    # the scene is at 2.
    uv, z = [], []
    for cy in range(6):
        for cx in range(8):
            many = cy == 0
            for k in range(50 if many else 1):
                uv.append((cx * 10 + 1 + (k % 8), cy * 10 + 1 + (k // 8)))
                z.append(9.0 if many else 2.0)
    uv, z = np.asarray(uv, np.float32), np.asarray(z)
    frame = np.zeros(len(z), np.int32)
    assert np.median(z) == 9.0
    assert mvs.area_median_depth(z, frame, uv, (80, 60), 8) == pytest.approx(2.0)
    # one cell over the whole image: the plain median again
    assert mvs.area_median_depth(z, frame, uv, (80, 60), 1) == pytest.approx(9.0)
    # cells are per frame: split over two frames, the textured cells count twice (16 against 40)
    assert mvs.area_median_depth(z, np.arange(len(z)) % 2, uv, (80, 60), 8) == pytest.approx(2.0)
    # non-finite and non-positive depths are ignored; none left is an error
    z2 = z.copy()
    z2[:5], z2[5:8] = np.nan, -1.0
    assert mvs.area_median_depth(z2, frame, uv, (80, 60), 8) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        mvs.area_median_depth(np.full(3, np.nan), np.zeros(3, np.int32), np.zeros((3, 2)), (80, 60), 8)


def _dense_upsample_reference(depth_lo, guide_lo, guide_hi, sigma, edge_log_step):
    """The joint-bilateral upsample as its docstring states it, one high-resolution pixel at a time."""
    hl, wl = depth_lo.shape
    hh, wh = guide_hi.shape[:2]
    logd = np.log(depth_lo.astype(np.float64))
    edge = np.zeros((hl, wl), bool)
    for y in range(hl):
        for x in range(wl):
            nb = logd[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
            edge[y, x] = nb.max() - nb.min() > edge_log_step
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    smooth = cv2.resize(logd.astype(np.float32), (wh, hh), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    out = smooth.copy()
    for v in range(hh):
        for u in range(wh):
            if not edge[v * hl // hh, u * wl // wh]:  # nearest low-res pixel (exact for integer factors)
                continue
            x, y = (u + 0.5) * wl / wh - 0.5, (v + 0.5) * hl / hh - 0.5
            num = den = 0.0
            # low-res pixel centres within 1.5 px per axis; one outside the image stands for the border pixel
            for ny in range(int(np.floor(y - 1.5)) + 1, int(np.ceil(y + 1.5))):
                for nx in range(int(np.floor(x - 1.5)) + 1, int(np.ceil(x + 1.5))):
                    tent = (1.5 - abs(y - ny)) / 1.5 * (1.5 - abs(x - nx)) / 1.5
                    cy, cx = min(max(ny, 0), hl - 1), min(max(nx, 0), wl - 1)
                    c = float(((guide_lo[cy, cx] - guide_hi[v, u]) ** 2).sum())
                    wgt = tent * (np.exp(-c / (2 * sigma * sigma)) + 1e-12)
                    num += wgt * logd[cy, cx]
                    den += wgt
            out[v, u] = num / den
    return np.exp(out)


def test_joint_bilateral_upsample_matches_the_dense_definition_and_keeps_colour_edges():
    rng = np.random.default_rng(5)
    hl, wl, s = 12, 16, 2
    hh, wh = hl * s, wl * s
    # a near box (depth 1) in front of a slanted far wall (depth 3-4); the box edge falls between low-res
    # pixels, so only the high-resolution colour says which side a pixel is on
    uu, vv = np.meshgrid(np.arange(wh), np.arange(hh))
    box_hi = (uu >= 11) & (uu < 23) & (vv >= 7) & (vv < 17)
    depth_hi = np.where(box_hi, 1.0, 3.0 + uu / wh)
    guide_hi = np.where(box_hi[..., None], [0.9, 0.2, 0.1], [0.1, 0.3, 0.8]).astype(np.float32)
    guide_hi += rng.normal(0, 0.01, guide_hi.shape).astype(np.float32)
    guide_lo = cv2.resize(guide_hi, (wl, hl), interpolation=cv2.INTER_AREA)
    depth_lo = np.exp(cv2.resize(np.log(depth_hi).astype(np.float32), (wl, hl), interpolation=cv2.INTER_AREA))
    got = mvs.joint_bilateral_upsample(depth_lo, guide_lo, guide_hi, 0.08)
    ref = _dense_upsample_reference(depth_lo, guide_lo, guide_hi, 0.08, 0.05)
    assert got.shape == (hh, wh) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # across the box edge the colour picks the side: within 15 % of the true depth on both sides, where
    # plain bilinear interpolation of the same low-res depth blends them
    bilinear = np.exp(cv2.resize(np.log(depth_lo), (wh, hh), interpolation=cv2.INTER_LINEAR))
    ring = (cv2.dilate(box_hi.astype(np.uint8), np.ones((3, 3), np.uint8))
            - cv2.erode(box_hi.astype(np.uint8), np.ones((3, 3), np.uint8))) > 0
    err_jbu = np.abs(got[ring] / depth_hi[ring] - 1)
    err_bil = np.abs(bilinear[ring] / depth_hi[ring] - 1)
    assert np.median(err_jbu) < 0.15 < np.median(err_bil)
