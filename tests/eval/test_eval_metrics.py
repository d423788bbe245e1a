"""Metrics against evo (trajectories), exact alignment recovery, and hand-computed depth/focal cases."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vipe_dagster.errors import InputError
from vipe_dagster.eval.metrics import ate, depth_metrics, focal_error, mask_metrics, rpe, umeyama


def random_trajectory(rng, n=60):
    """A smooth-ish random camera path (c2w), like a hand-held walk."""
    pos = np.cumsum(rng.normal(scale=0.05, size=(n, 3)) + np.array([0.03, 0.0, 0.05]), axis=0)
    rv = np.cumsum(rng.normal(scale=0.02, size=(n, 3)), axis=0)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(rv).as_matrix()
    T[:, :3, 3] = pos
    return T


def sim3_apply(T, s, R, t):
    out = T.copy()
    out[:, :3, :3] = R @ T[:, :3, :3]
    out[:, :3, 3] = s * T[:, :3, 3] @ R.T + t
    return out


def noisy(rng, T, pos_sigma=0.02, rot_sigma=0.01):
    out = T.copy()
    out[:, :3, 3] += rng.normal(scale=pos_sigma, size=(len(T), 3))
    out[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=rot_sigma, size=(len(T), 3))).as_matrix() @ T[:, :3, :3]
    return out


def test_umeyama_recovers_known_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3)) * 3
    R = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    s, t = 0.37, np.array([4.0, -2.0, 0.5])
    dst = s * src @ R.T + t
    s2, R2, t2 = umeyama(src, dst, with_scale=True)
    assert abs(s2 - s) < 1e-6 and np.abs(R2 - R).max() < 1e-6 and np.abs(t2 - t).max() < 1e-6
    s3, R3, t3 = umeyama(src, src @ R.T + t, with_scale=False)
    assert s3 == 1.0 and np.abs(R3 - R).max() < 1e-6 and np.abs(t3 - t).max() < 1e-6
    # a reflection is never returned: planar-degenerate + mirrored data still gives det(R) = +1
    mirrored = dst * np.array([1, 1, -1])
    assert np.linalg.det(umeyama(src, mirrored, True)[1]) == pytest.approx(1.0)


def test_ate_sim3_recovers_scale_and_is_zero_for_a_similar_trajectory():
    rng = np.random.default_rng(1)
    gt = random_trajectory(rng)
    R = Rotation.from_rotvec([0.1, 0.7, -0.4]).as_matrix()
    pred = sim3_apply(gt, 2.5, R, np.array([1.0, 2.0, 3.0]))
    res = ate(pred, gt, align="sim3")
    assert res["rmse"] < 1e-9 and res["rot_rmse_deg"] < 1e-6
    assert res["scale"] == pytest.approx(1 / 2.5, abs=1e-9)
    assert res["path_length"] == pytest.approx(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
    assert ate(pred, gt, align="se3")["rmse"] > 0.1
    assert ate(gt, gt, align="none")["rmse"] == 0.0


def _evo(T, ts=None):
    from evo.core.trajectory import PoseTrajectory3D

    return PoseTrajectory3D(poses_se3=list(T), timestamps=np.arange(len(T)) * 0.1 if ts is None else ts)


@pytest.mark.parametrize("align", ["sim3", "se3", "none"])
def test_ate_matches_evo(align):
    from evo.core import metrics, sync

    rng = np.random.default_rng(2)
    gt = random_trajectory(rng, 80)
    pred = noisy(rng, sim3_apply(gt, 0.6 if align == "sim3" else 1.0,
                                 Rotation.from_rotvec([0.2, 0.1, 0.3]).as_matrix() if align != "none" else np.eye(3),
                                 np.array([0.5, 0.0, -1.0]) if align != "none" else np.zeros(3)))
    ref, est = sync.associate_trajectories(_evo(gt), _evo(pred))
    est = copy.deepcopy(est)
    if align != "none":
        r, t, s = est.align(ref, correct_scale=(align == "sim3"))
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    stats = ape.get_all_statistics()
    ours = ate(pred, gt, align=align)
    for key in ("rmse", "mean", "median", "std", "min", "max"):
        assert ours[key] == pytest.approx(stats[key], rel=1e-9, abs=1e-12), key
    if align == "sim3":
        assert ours["scale"] == pytest.approx(s, rel=1e-9)
    assert ours["path_length"] == pytest.approx(ref.path_length, rel=1e-9)
    ape_rot = metrics.APE(metrics.PoseRelation.rotation_angle_deg)
    ape_rot.process_data((ref, est))
    assert ours["rot_rmse_deg"] == pytest.approx(ape_rot.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)


@pytest.mark.parametrize("delta,all_pairs", [(1, True), (5, True), (5, False), (3, False)])
def test_rpe_matches_evo(delta, all_pairs):
    from evo.core import metrics, sync

    rng = np.random.default_rng(3)
    gt = random_trajectory(rng, 70)
    pred = noisy(rng, sim3_apply(gt, 1.7, Rotation.from_rotvec([0.0, 0.4, 0.0]).as_matrix(), np.ones(3)),
                 pos_sigma=0.01, rot_sigma=0.005)
    ref, est = sync.associate_trajectories(_evo(gt), _evo(pred))
    est = copy.deepcopy(est)
    est.align(ref, correct_scale=True)
    ours = rpe(pred, gt, delta=delta, align="sim3", all_pairs=all_pairs)
    for rel, prefix, suffix in ((metrics.PoseRelation.translation_part, "trans_", ""),
                                (metrics.PoseRelation.rotation_angle_deg, "rot_", "_deg")):
        m = metrics.RPE(rel, delta=delta, delta_unit=metrics.Unit.frames, all_pairs=all_pairs)
        m.process_data((ref, est))
        stats = m.get_all_statistics()
        for key in ("rmse", "mean", "median", "max"):
            assert ours[f"{prefix}{key}{suffix}"] == pytest.approx(stats[key], rel=1e-6, abs=1e-10), (prefix, key)
    assert ours["pairs"] == (len(gt) - delta if all_pairs else (len(gt) - 1) // delta)
    seg = np.linalg.norm(np.diff(gt[::1, :3, 3], axis=0), axis=1)
    if delta == 1:
        assert ours["trans_pct_per_m"] == pytest.approx(100 * ours["trans_mean"] * ours["pairs"] / seg.sum())
        assert ours["rot_deg_per_frame"] == pytest.approx(ours["rot_mean_deg"])


def test_rpe_zero_for_similar_trajectory_and_bad_inputs():
    rng = np.random.default_rng(4)
    gt = random_trajectory(rng, 30)
    pred = sim3_apply(gt, 3.0, Rotation.from_rotvec([1, 2, 3]).as_matrix(), np.ones(3))
    r = rpe(pred, gt, delta=2)
    assert r["trans_max"] < 1e-9 and r["rot_max_deg"] < 1e-5
    with pytest.raises(InputError, match="delta"):
        rpe(pred, gt, delta=0)
    with pytest.raises(InputError, match="29 poses"):
        ate(pred[:29], gt)
    bad = pred.copy()
    bad[7, 0, 3] = np.nan
    with pytest.raises(InputError, match="frame 7"):
        ate(bad, gt)
    with pytest.raises(InputError, match="alignment"):
        ate(pred, gt, align="affine")


def test_depth_metrics_hand_computed():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # one pixel without ground truth
    pred = np.array([[1.0, 3.0], [2.0, 7.0]])
    m = depth_metrics(pred, gt, align=None)
    # |1-1|/1 = 0, |3-2|/2 = 0.5, |2-4|/4 = 0.5 -> 1/3
    assert m["abs_rel"] == pytest.approx(1 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    # ratios 1, 1.5, 2: delta1 (< 1.25) only the first; delta2 (< 1.5625) and delta3 (< 1.953) the first two
    assert m["delta1"] == pytest.approx(1 / 3) and m["delta2"] == pytest.approx(2 / 3)
    assert m["delta3"] == pytest.approx(2 / 3)
    assert m["valid_fraction"] == 1.0 and m["num_pixels"] == 3 and m["scale"] == 1.0

    # median alignment: pred = 2 * gt exactly -> perfect after scaling by 0.5
    gt2 = np.array([[1.0, 2.0, 3.0, 4.0]])
    m2 = depth_metrics(gt2 * 2, gt2, align="median")
    assert m2["scale"] == pytest.approx(0.5) and m2["abs_rel"] == pytest.approx(0.0) and m2["delta1"] == 1.0
    # least squares: s = sum(p g)/sum(p^2) for p = [1, 1], g = [1, 3] -> 2
    m3 = depth_metrics(np.array([1.0, 1.0]), np.array([1.0, 3.0]), align="lstsq")
    assert m3["scale"] == pytest.approx(2.0)
    assert m3["abs_rel"] == pytest.approx((1.0 + 1 / 3) / 2)

    # missing predictions lower the valid fraction; the valid mask restricts the evaluation
    pred4 = np.array([1.0, np.nan, 0.0, 4.0])
    gt4 = np.array([1.0, 2.0, 3.0, 4.0])
    m4 = depth_metrics(pred4, gt4, align=None)
    assert m4["valid_fraction"] == 0.5 and m4["abs_rel"] == 0.0
    m5 = depth_metrics(pred4, gt4, valid=np.array([True, True, False, False]), align=None)
    assert m5["valid_fraction"] == 0.5 and m5["num_pixels"] == 1
    with pytest.raises(InputError, match="shape"):
        depth_metrics(pred4, gt4[:3])
    with pytest.raises(InputError, match="no pixel"):
        depth_metrics(pred4, np.zeros(4))


def test_focal_error():
    f = focal_error(550.0, 500.0, 640)
    assert f["percent"] == pytest.approx(10.0) and f["signed_percent"] == pytest.approx(10.0)
    expected = math.degrees(2 * math.atan(320 / 500)) - math.degrees(2 * math.atan(320 / 550))
    assert f["fov_deg_error"] == pytest.approx(expected)
    assert focal_error(500.0, 500.0, 640)["fov_deg_error"] == 0.0
    with pytest.raises(InputError):
        focal_error(-1.0, 500.0, 640)


def test_fixed_and_rotation_only_trajectories_align_by_orientation():
    rng = np.random.default_rng(5)
    n = 20
    gt = np.tile(np.eye(4), (n, 1, 1))
    gt[:, :3, :3] = Rotation.from_rotvec(np.c_[np.zeros(n), np.linspace(0, 0.8, n), np.zeros(n)]).as_matrix()
    gt[:, :3, 3] = [1.0, 1.5, -3.0]  # pure rotation about a fixed centre
    R = Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix()
    pred = sim3_apply(gt, 1.0, R, np.array([5.0, 0.0, 0.0]))
    res = ate(pred, gt, align="sim3")
    assert res["rmse"] < 1e-9 and res["rot_rmse_deg"] < 1e-6 and res["scale"] == 1.0
    assert math.isnan(res["rmse_pct_of_path"]) and res["path_length"] == 0.0
    r = rpe(pred, gt)
    assert r["rot_max_deg"] < 1e-6 and math.isnan(r["trans_pct_per_m"])
    # a rotation error shows up in the orientation error, not in the (fixed) centres
    bad = noisy(rng, pred, pos_sigma=0.0, rot_sigma=0.02)
    assert ate(bad, gt)["rot_rmse_deg"] > 0.3


def test_mask_metrics_hand_computed():
    gt = np.array([[0, 1, 1, 0], [0, 2, 2, 0]], np.uint8)  # 4 dynamic pixels (ids 1 and 2)
    pred = np.array([[0, 7, 0, 0], [5, 7, 7, 0]], np.uint8)  # ids differ: only dynamic vs static counts
    m = mask_metrics(pred, gt)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 1)
    assert m["iou"] == pytest.approx(3 / 5) and m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75) and m["f1"] == pytest.approx(0.75)
    assert m["gt_fraction"] == 0.5 and m["pred_fraction"] == 0.5
    empty = mask_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
    assert empty["iou"] == 1.0 and empty["recall"] == 1.0
    missed = mask_metrics(np.zeros_like(gt), gt)
    assert missed["iou"] == 0.0 and missed["recall"] == 0.0
    half = mask_metrics(pred, gt, valid=np.array([[True] * 4, [False] * 4]))
    assert (half["tp"], half["fp"], half["fn"]) == (1, 0, 1)
    with pytest.raises(InputError, match="shape"):
        mask_metrics(pred[:1], gt)
