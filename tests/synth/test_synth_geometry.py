"""Ground-truth geometry is exact.

1. The stored depth, intrinsics and pose agree with an independent ray caster (Moller-Trumbore on the
   scene's world triangles, no OpenGL) at every pixel centre, and the instance mask names the object the
   ray hits. A principal point off by a quarter pixel breaks this at a large fraction of pixels, so the
   check pins the pixel convention, the OpenGL->OpenCV pose conversion, the z-depth linearisation and
   the moving objects' poses at each frame time.
2. Unprojecting pixels with the stored GT and projecting them into another frame lands within 0.5 px of
   where that surface point is (the ray-cast point, and the spot OpenCV's KLT finds in the rendered image),
   for static pixels and for pixels on moving objects (moved with the object's pose).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vipe_dagster.synth import Scene


def raycast(tris: np.ndarray, origin: np.ndarray, dirs: np.ndarray, chunk: int = 2048):
    """Nearest hit parameter t (ray = origin + t*dir) and triangle index per ray; inf / -1 if none."""
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    s = origin[None] - v0
    q = np.cross(s, e1)
    best_t = np.full(len(dirs), np.inf)
    best_i = np.full(len(dirs), -1)
    for a in range(0, len(dirs), chunk):
        d = dirs[a:a + chunk]
        p = np.cross(d[:, None, :], e2[None])
        det = np.einsum("rtk,tk->rt", p, e1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            u = np.einsum("rtk,tk->rt", p, s) * inv
            v = np.einsum("rk,tk->rt", d, q) * inv
            t = np.einsum("tk,tk->t", e2, q)[None] * inv
        ok = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
        t = np.where(ok, t, np.inf)
        i = np.argmin(t, axis=1)
        bt = t[np.arange(len(d)), i]
        best_t[a:a + chunk] = bt
        best_i[a:a + chunk] = np.where(np.isfinite(bt), i, -1)
    return best_t, best_i


def load_gt(res):
    gt, name = res.gt, res.name
    c2w, inds = gt.read_pose(name)
    intr, _, types = gt.read_intrinsics(name)
    assert types == ["PINHOLE"] * len(inds)
    return c2w.astype(np.float64), intr.astype(np.float64)


def pixel_rays(K4, c2w, uv):
    fx, fy, cx, cy = K4
    d_cam = np.stack([(uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy, np.ones(len(uv))], 1)
    return d_cam @ c2w[:3, :3].T  # z component in the camera frame is 1, so t == z-depth


def raycast_frame(res, k, c2w, K4, dcx=0.0):
    scene = Scene(res.config)
    tris, ids = scene.world_triangles(k)
    h, w = res.config.height, res.config.width
    vv, uu = np.mgrid[0:h, 0:w]
    uv = np.stack([uu.ravel(), vv.ravel()], 1).astype(np.float64)
    K = np.array(K4) + np.array([0, 0, dcx, 0])
    t, ti = raycast(tris, c2w[k][:3, 3], pixel_rays(K, c2w[k], uv))
    return t.reshape(h, w), np.where(ti >= 0, ids[ti], -1).reshape(h, w)


CASES = [("indoor", "forward", 2), ("indoor", "orbit", 1), ("indoor", "handheld", 2), ("indoor", "rotation", 1),
         ("indoor", "fixed", 2), ("outdoor", "forward", 1), ("outdoor", "orbit", 2)]


@pytest.mark.parametrize("scene,trajectory,moving", CASES)
def test_depth_pose_intrinsics_match_independent_raycast(synth_scene, scene, trajectory, moving):
    res = synth_scene(scene=scene, trajectory=trajectory, moving_objects=moving, seed=3)
    c2w, intr = load_gt(res)
    for k in (0, res.config.num_frames - 1):
        depth = res.gt.read_depth(res.name, k)
        mask = res.gt.read_mask(res.name, k)
        assert depth.shape == (res.config.height, res.config.width)
        assert (depth > 0).all() and np.isfinite(depth).all(), "closed scenes have depth everywhere"
        z, hit_id = raycast_frame(res, k, c2w, intr[k])
        assert np.isfinite(z).all()
        rel = np.abs(depth - z) / z
        # float16 EXR keeps ~4.9e-4 relative precision; only pixels whose centre lies exactly on an edge
        # between two surfaces may disagree
        assert (rel > 1e-3).mean() < 5e-4, f"frame {k}: {(rel > 1e-3).sum()} pixels disagree with the ray cast"
        assert np.median(rel) < 3e-4
        assert (hit_id != mask).mean() < 5e-4
        if moving:
            assert set(np.unique(mask)) <= set(range(moving + 1))


def test_raycast_check_detects_quarter_pixel_principal_point_error(synth_scene):
    res = synth_scene(scene="indoor", trajectory="forward", moving_objects=2, seed=3)
    c2w, intr = load_gt(res)
    k = 10
    depth = res.gt.read_depth(res.name, k)
    z, _ = raycast_frame(res, k, c2w, intr[k], dcx=0.25)
    assert (np.abs(depth - z) / z > 1e-3).mean() > 0.03


def _project(K4, c2w, X):
    fx, fy, cx, cy = K4
    w2c = np.linalg.inv(c2w)
    pc = X @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([fx * pc[:, 0] / pc[:, 2] + cx, fy * pc[:, 1] / pc[:, 2] + cy], 1), pc[:, 2]


def _bilinear(img, uv):
    return cv2.remap(img.astype(np.float32), uv[:, 0:1].astype(np.float32), uv[:, 1:2].astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]


@pytest.mark.parametrize("scene,trajectory", [("indoor", "handheld"), ("indoor", "forward"), ("outdoor", "orbit")])
def test_reprojection_lands_on_the_rendered_surface_point(synth_scene, scene, trajectory):
    from vipe_dagster.synth.render import SceneRenderer

    res = synth_scene(scene=scene, trajectory=trajectory, moving_objects=2, seed=3)
    sc = Scene(res.config)
    c2w, intr = load_gt(res)
    i, j = 8, 11
    d_i, m_i = res.gt.read_depth(res.name, i), res.gt.read_mask(res.name, i)
    d_j = res.gt.read_depth(res.name, j)
    h, w = d_i.shape
    with SceneRenderer(sc) as r:
        rgb_i, rgb_j = r.render(i)[0], r.render(j)[0]
    gray_i = cv2.cvtColor(rgb_i, cv2.COLOR_RGB2GRAY)
    gray_j = cv2.cvtColor(rgb_j, cv2.COLOR_RGB2GRAY)

    # well-textured pixels away from the border and from depth edges
    corners = cv2.goodFeaturesToTrack(gray_i, maxCorners=600, qualityLevel=0.01, minDistance=5, blockSize=7)
    uv_i = np.round(corners[:, 0]).astype(np.float64)
    ui, vi = uv_i[:, 0].astype(int), uv_i[:, 1].astype(int)
    border = (ui > 12) & (ui < w - 13) & (vi > 12) & (vi < h - 13)
    dmax, dmin = cv2.dilate(d_i, np.ones((15, 15))), cv2.erode(d_i, np.ones((15, 15)))
    smooth = (dmax[vi, ui] / dmin[vi, ui] < 1.15) & border
    # a single instance across the KLT window (no object boundary inside it)
    mmax, mmin = cv2.dilate(m_i, np.ones((15, 15))), cv2.erode(m_i, np.ones((15, 15)))
    smooth &= mmax[vi, ui] == mmin[vi, ui]
    uv_i, ui, vi = uv_i[smooth], ui[smooth], vi[smooth]
    ids = m_i[vi, ui]

    # unproject with the stored GT, move points on moving objects with their pose, project into frame j
    z = d_i[vi, ui].astype(np.float64)
    X = c2w[i][:3, 3] + pixel_rays(intr[i], c2w[i], uv_i) * z[:, None]
    for obj in sc.objects:
        if obj.instance_id:
            sel = ids == obj.instance_id
            T = obj.world_pose(sc.times[j]) @ np.linalg.inv(obj.world_pose(sc.times[i]))
            X[sel] = X[sel] @ T[:3, :3].T + T[:3, 3]
    uv_j, z_j = _project(intr[j], c2w[j], X)

    # the exact surface point seen at pixel i (independent ray cast), carried to frame j the same way
    tris_i, _ = sc.world_triangles(i)
    t_true, _ = raycast(tris_i, c2w[i][:3, 3], pixel_rays(intr[i], c2w[i], uv_i))
    X_true = c2w[i][:3, 3] + pixel_rays(intr[i], c2w[i], uv_i) * t_true[:, None]
    for obj in sc.objects:
        if obj.instance_id:
            sel = ids == obj.instance_id
            T = obj.world_pose(sc.times[j]) @ np.linalg.inv(obj.world_pose(sc.times[i]))
            X_true[sel] = X_true[sel] @ T[:3, :3].T + T[:3, 3]
    uv_true, _ = _project(intr[j], c2w[j], X_true)

    inside = (uv_j[:, 0] > 12) & (uv_j[:, 0] < w - 13) & (uv_j[:, 1] > 12) & (uv_j[:, 1] < h - 13)
    visible = inside & (np.abs(_bilinear(d_j, uv_j) - z_j) / z_j < 0.01)  # not occluded in frame j
    assert visible.sum() >= 40, f"only {visible.sum()} usable points"
    assert np.abs(uv_j - uv_i).max() > 1.0, "frames must differ for the test to mean anything"

    geo_err = np.linalg.norm(uv_j - uv_true, axis=1)[visible]
    assert geo_err.max() < 0.5 and np.median(geo_err) < 0.05

    # where the renderer put it: OpenCV KLT from frame i to frame j, started at the GT prediction
    p0 = uv_i[visible].astype(np.float32)[:, None]
    p1 = uv_j[visible].astype(np.float32)[:, None].copy()
    p1, st, _ = cv2.calcOpticalFlowPyrLK(gray_i, gray_j, p0, p1, winSize=(15, 15), maxLevel=0,
                                         flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                                         criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-3))
    err = np.linalg.norm(p1[:, 0] - uv_j[visible], axis=1)[st[:, 0] == 1]
    assert len(err) >= 30
    assert np.median(err) < 0.15, f"median KLT disagreement {np.median(err):.3f} px"
    assert np.percentile(err, 90) < 0.5
    moving_pts = (ids[visible] > 0)[st[:, 0] == 1]
    if moving_pts.sum() >= 5:
        assert np.median(err[moving_pts]) < 0.3


def _box_triangles(half, T):
    """12 triangles of an oriented box, built from scratch (no generator code)."""
    hx, hy, hz = half
    c = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    c = c @ T[:3, :3].T + T[:3, 3]
    quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    tris = []
    for a, b, cc, d in quads:  # corners in cyclic order around each face
        tris += [[c[a], c[b], c[cc]], [c[a], c[cc], c[d]]]
    return np.array(tris)


def test_scene_json_alone_reproduces_the_depth(synth_scene):
    """The scene description is complete: boxes + motion laws from the JSON ray-cast to the stored depth."""
    import json

    res = synth_scene(scene="indoor", trajectory="handheld", moving_objects=2, seed=3)
    desc = json.load(open(res.scene_json))
    c2w, intr = load_gt(res)
    k = 15
    t = k / desc["config"]["fps"]
    tris = []
    for o in desc["objects"]:
        if "motion" in o:
            m = o["motion"]
            T = np.eye(4)
            T[:3, 3] = np.asarray(m["anchor"]) + np.asarray(m["amplitude"]) * np.sin(
                2 * np.pi * np.asarray(m["freq_hz"]) * t + np.asarray(m["phase"]))
            yaw = m["yaw0"] + m["yaw_rate"] * t
            T[:3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
        else:
            T = np.asarray(o["pose"])
        tris.append(_box_triangles(o["half_extents_m"], T))
    tris = np.concatenate(tris)
    h, w = res.config.height, res.config.width
    vv, uu = np.mgrid[0:h, 0:w]
    uv = np.stack([uu.ravel(), vv.ravel()], 1).astype(np.float64)
    z, _ = raycast(tris, c2w[k][:3, 3], pixel_rays(intr[k], c2w[k], uv))
    depth = res.gt.read_depth(res.name, k).ravel()
    assert (np.abs(depth - z) / z > 1e-3).mean() < 5e-4
