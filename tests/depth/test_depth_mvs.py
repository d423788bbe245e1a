"""Dense MVS depth against synthetic ground truth (GT poses and intrinsics as input, no SLAM)."""

from __future__ import annotations

import numpy as np
import pytest

from vipe_dagster.depth.config import DepthConfig
from vipe_dagster.depth.reliable import reliable_depth_mask
from vipe_dagster.depth.run import StaticCameraError, run_depth
from vipe_dagster.errors import ArtifactError
from vipe_dagster.eval.metrics import depth_metrics

FAST = DepthConfig(mvs_long_side=192, num_planes=48, max_frame_gap=5)


def _evaluate(store, gt, name):
    rows = []
    for (i, pred), (j, ref) in zip(store.iter_depth(name), gt.iter_depth(name), strict=True):
        assert i == j
        assert pred.shape == ref.shape
        m = depth_metrics(pred, ref, align="median")
        rel = reliable_depth_mask(pred)
        r = depth_metrics(pred, ref, valid=rel, align=None)["abs_rel"] if rel.sum() > 100 else np.nan
        a = depth_metrics(pred, ref, align=None)["abs_rel"]
        rows.append((m["abs_rel"], m["valid_fraction"], m["delta1"], r, a, rel.mean()))
    return np.array(rows)


@pytest.mark.parametrize("trajectory", ["orbit"])
def test_mvs_depth_accuracy_static_textured_scene(scene, inputs_only, trajectory):
    res = scene(trajectory=trajectory, scene="indoor", seed=1)
    store = inputs_only(res)
    out = run_depth(store, res.name, FAST)
    assert out.num_frames == res.config.num_frames
    assert store.depth_count(res.name) == res.config.num_frames
    m = _evaluate(store, res.gt, res.name)
    abs_rel, valid = m[:, 0].mean(), m[:, 1].mean()
    print(f"{trajectory}: AbsRel {abs_rel:.4f}, valid {valid:.3f}, delta1 {m[:, 2].mean():.3f}, "
          f"MVS-kept {out.mvs_valid_fraction:.3f}, range {out.depth_range} ({out.range_source})")
    assert valid >= 0.85
    assert abs_rel <= 0.05
    # ViPE's reliable-depth mask (egox spec 3.3) keeps the flatter, more accurate part of our depth
    rel_err, all_err, rel_frac = np.nanmean(m[:, 3]), m[:, 4].mean(), m[:, 5].mean()
    print(f"reliable pixels {rel_frac:.3f}: AbsRel {rel_err:.4f} vs {all_err:.4f} on all pixels")
    assert 0.3 < rel_frac < 1.0 and rel_err < all_err
    assert out.reliable_fraction == pytest.approx(rel_frac, abs=0.02)
    # the scale follows the (metric) poses: no alignment needed either
    _, ref = next(res.gt.iter_depth(res.name))
    _, pred = next(store.iter_depth(res.name))
    assert depth_metrics(pred, ref, align=None)["abs_rel"] <= 0.08


def test_depth_range_from_sparse_map(scene, inputs_only):
    """A sparse map (here: GT points seen by the keyframes) bounds the sweep instead of the automatic range."""
    from vipe_dagster.io import SparseMap

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store = inputs_only(res)
    c2w = res.gt.read_pose(res.name)[0].astype(np.float64)
    k = res.gt.read_intrinsics(res.name)[0][0]
    rng = np.random.default_rng(0)
    pts, of, op, uv = [], [], [], []
    for f in (0, 6, 11):
        d = res.gt.read_depth(res.name, f)
        v, u = rng.integers(0, d.shape[0], 300), rng.integers(0, d.shape[1], 300)
        z = d[v, u].astype(np.float64)
        cam = np.stack([(u - k[2]) / k[0] * z, (v - k[3]) / k[1] * z, z], 1)
        pts.append(cam @ c2w[f][:3, :3].T + c2w[f][:3, 3])
        of += [f] * 300
        uv.append(np.stack([u, v], 1))
    pts = np.concatenate(pts)
    op = np.arange(len(pts))
    store.write_sparse_map(res.name, SparseMap(pts.astype(np.float32), np.zeros((len(pts), 3), np.uint8),
                                               np.array(of, np.int32), op.astype(np.int32),
                                               np.concatenate(uv).astype(np.float32), np.array([0, 6, 11])))
    out = run_depth(store, res.name, FAST.model_copy(update={"max_frame_gap": 4}))
    assert out.range_source == "sparse_map"
    near, far = out.depth_range
    all_gt = np.concatenate([d.ravel() for _, d in res.gt.iter_depth(res.name)])
    assert near < np.percentile(all_gt, 1) and far > np.percentile(all_gt, 99)
    m = _evaluate(store, res.gt, res.name)
    assert m[:, 0].mean() <= 0.05 and m[:, 1].mean() >= 0.85


def test_static_camera_without_model_fails_clearly(scene, inputs_only):
    res = scene(trajectory="fixed", scene="indoor", seed=2, moving_objects=1)
    store = inputs_only(res)
    with pytest.raises(StaticCameraError) as ei:
        run_depth(store, res.name)
    msg = str(ei.value)
    assert "no parallax" in msg and "learned depth prior" in msg
    assert "LearnedDepthConfig" in msg and "HF_HUB_OFFLINE" in msg
    assert res.name in msg
    assert not store.exists("depth", res.name)


def test_bad_inputs_raise_and_write_nothing(scene, inputs_only):
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store = inputs_only(res)
    poses, _ = store.read_pose(res.name)
    bad = poses.copy()
    bad[3, 0, 3] = np.nan
    store.write_pose(res.name, bad)
    with pytest.raises(ArtifactError, match="frame 3 has a non-finite"):
        run_depth(store, res.name, FAST)
    store.write_pose(res.name, poses[:-2])
    with pytest.raises(ArtifactError, match="frames"):
        run_depth(store, res.name, FAST)
    store.write_pose(res.name, poses)
    intr, _, _ = store.read_intrinsics(res.name)
    store.write_intrinsics(res.name, intr, camera_type="MEI")
    with pytest.raises(ArtifactError, match="PINHOLE"):
        run_depth(store, res.name, FAST)
    assert not store.exists("depth", res.name)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        DepthConfig(window=4)
    with pytest.raises(ValueError):
        DepthConfig(depth_range=(5.0, 1.0))
    with pytest.raises(ValueError):
        DepthConfig(unknown_key=1)


def test_propagated_depth_matches_ground_truth(scene):
    """Depth reprojected from another frame with the poses (used between swept frames) lands on the GT."""
    from vipe_dagster.depth.mvs import propagate_depth

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    c2w = res.gt.read_pose(res.name)[0].astype(np.float64)
    k = res.gt.read_intrinsics(res.name)[0][:, :4].astype(np.float64)
    d0, d2 = res.gt.read_depth(res.name, 0), res.gt.read_depth(res.name, 2)
    out = propagate_depth([(d0, k[0], c2w[0])], k[2], c2w[2], d2.shape)
    ok = np.isfinite(out)
    assert ok.mean() > 0.8
    assert np.median(np.abs(out[ok] - d2[ok]) / d2[ok]) < 0.01


def test_parallel_sweeps_give_the_same_depth_as_one_worker(scene, inputs_only):
    """Frames swept by a pool of threads give bit-identical depth to sweeping them one after another."""
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    outs = []
    for workers in (1, 3):
        store = inputs_only(res, folder=f"w{workers}")
        r = run_depth(store, res.name, FAST.model_copy(update={"workers": workers}))
        outs.append((r, [d for _, d in store.iter_depth(res.name)]))
    (r1, d1), (r3, d3) = outs
    assert len(d1) == len(d3) == res.config.num_frames
    for a, b in zip(d1, d3, strict=True):
        np.testing.assert_array_equal(a, b)
    assert r1.per_frame_valid == r3.per_frame_valid and min(r1.per_frame_valid) > 0.3


def test_frames_without_a_measured_pose_are_skipped(scene, inputs_only):
    """Frames flagged invalid in pose/<n>.npz (tracking lost: the pose is a copy, not a measurement) are never
    swept, sources or fused: their own depth is NaN with zero confidence, the other frames keep GT accuracy
    although the flagged poses are wrong, and the depth check judges the measured frames only."""
    from vipe_dagster.depth.quality import depth_quality, kept_fractions

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store = inputs_only(res)
    c2w, inds = store.read_pose(res.name)
    n = len(c2w)
    bad = [5, n - 1]  # one inside, and the last frame (the sweep plan always ends on it otherwise)
    wrong = c2w.copy()
    for k in bad:
        wrong[k, :3, 3] += np.array([0.7, -0.4, 0.5], np.float32)  # a pose that is far from the truth
    valid = np.ones(n, bool)
    valid[bad] = False
    store.write_pose(res.name, wrong, inds, valid=valid)
    store.write_manifest(res.name, {"sequence": res.name})
    out = run_depth(store, res.name, FAST)
    assert out.num_frames == n
    assert store.read_manifest(res.name)["depth"]["frames_without_pose"] == 2
    conf = kept_fractions(store, res.name)
    for (i, pred), (_, ref) in zip(store.iter_depth(res.name), res.gt.iter_depth(res.name), strict=True):
        if i in bad:
            assert np.isnan(pred).all() and conf[i] == 0.0
        else:
            m = depth_metrics(pred, ref, align=None)
            assert m["valid_fraction"] >= 0.85 and m["abs_rel"] <= 0.08, (i, m)
    assert not depth_quality(store, res.name)["problems"]
    # the same poses believed (all flagged valid): the wrong frames poison their neighbours' depth
    store.write_pose(res.name, wrong, inds, valid=np.ones(n, bool))
    run_depth(store, res.name, FAST)
    errs = [depth_metrics(store.read_depth(res.name, i), res.gt.read_depth(res.name, i), align=None)["abs_rel"]
            for i in bad]
    assert max(errs) > 0.08


def test_sweep_depth_needs_a_source_over_half_the_hypotheses():
    """A near textured plane (1.5 m) and one source 0.3 m to the right, as in a one-sided sweep at the start of
    a video: the reference's left columns leave the source's view at the near planes, so only far hypotheses
    can match there and the winner is wrong. With ``min_seen`` (default 0.5) those pixels get no sweep depth
    (NaN, filled later from their neighbours); elsewhere the depth is unchanged and right."""
    import cv2

    from vipe_dagster.depth.mvs import sweep_frame

    w, h, f, depth = 160, 120, 100.0, 1.5
    rng = np.random.default_rng(1)
    tex = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.2)
    tex = (tex - tex.min()) / np.ptp(tex)
    kmat = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    t_src_ref = np.eye(4)
    t_src_ref[0, 3] = -0.3
    hmat = kmat @ (np.eye(3) + np.outer(t_src_ref[:3, 3], [0, 0, 1]) / depth) @ np.linalg.inv(kmat)
    src = cv2.warpPerspective(tex, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rgb = lambda g: np.repeat(g[..., None], 3, axis=2)  # noqa: E731
    k = np.array([f, f, (w - 1) / 2, (h - 1) / 2])
    c2w_src = np.linalg.inv(t_src_ref)
    args = (rgb(tex), [rgb(src)], k, [k], np.eye(4), [c2w_src], (1.0, 20.0))
    off, _ = sweep_frame(*args, DepthConfig(min_seen=0.0, sgm=False))
    on, _ = sweep_frame(*args, DepthConfig(sgm=False))
    border = np.s_[10:-10, 2:12]  # seen at under (12 / 30 - 0.05) / 0.95 = 37 % of the planes
    assert np.isfinite(off[border]).all()
    assert np.median(np.abs(off[border] / depth - 1)) > 0.2  # biased far without the rule
    assert np.isnan(on[border]).all()
    inner = np.s_[10:-10, 40:-10]
    np.testing.assert_array_equal(on[inner], off[inner])
    assert np.median(np.abs(on[inner] / depth - 1)) < 0.02
