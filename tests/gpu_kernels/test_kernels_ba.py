"""Bundle adjustment: convergence to ground truth, agreement with scipy least_squares, focal recovery,
motion-only refinement and input validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpu_kernels.ba import BAOptions, BAProblem, bundle_adjust, motion_only
from gpu_kernels.lie import se3_exp, se3_inv, se3_log
from gpu_kernels.synthetic import make_ba_problem, scipy_bundle_adjust


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These problems are tiny: intra-op threads only add contention on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pose_errors(est: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    d = se3_log(est @ se3_inv(gt))
    return float(d[:, 3:].norm(dim=-1).max()), float(d[:, :3].norm(dim=-1).max())


def _sim3_align_points(est: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Umeyama similarity alignment of est onto gt (independent closed form), returns aligned est."""
    mu_e, mu_g = est.mean(0), gt.mean(0)
    xe, xg = est - mu_e, gt - mu_g
    cov = xg.T @ xe / est.shape[0]
    u, d, vt = torch.linalg.svd(cov)
    s_fix = torch.eye(3, dtype=est.dtype)
    if torch.det(u @ vt) < 0:
        s_fix[2, 2] = -1
    r = u @ s_fix @ vt
    scale = (d * torch.diagonal(s_fix)).sum() / xe.pow(2).sum(1).mean()
    return scale * (r @ xe.T).T + mu_g


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ba_converges_to_ground_truth_with_outliers(dtype):
    syn = make_ba_problem(n_cams=8, n_points=250, noise_px=0.5, outlier_frac=0.1, seed=1, dtype=dtype)
    prob = dataclasses.replace(syn.problem, fixed_poses=torch.tensor([True, True] + [False] * 6))
    # two poses at ground truth: no gauge freedom left
    prob.poses_w2c[:2] = syn.gt_poses_w2c[:2]
    init_rot, init_tr = _pose_errors(prob.poses_w2c, syn.gt_poses_w2c)
    res = bundle_adjust(prob, BAOptions(loss="huber", loss_scale=1.0, max_iters=60, tol=1e-6))
    rot_err, tr_err = _pose_errors(res.poses_w2c.double(), syn.gt_poses_w2c.double())
    assert res.converged
    assert res.cost_history[-1] < 0.5 * res.cost_history[0]
    assert all(b <= a for a, b in zip(res.cost_history, res.cost_history[1:], strict=False))
    # the optimum is at least as good as ground truth (errors below are estimation noise: 0.5 px on a
    # narrow baseline; they scale with the noise level)
    at_gt = bundle_adjust(dataclasses.replace(prob, poses_w2c=syn.gt_poses_w2c, points=syn.gt_points),
                          BAOptions(loss="huber", max_iters=0))
    assert res.cost_history[-1] <= at_gt.cost_history[0] * (1 + 1e-5)
    assert rot_err < 4e-3 and rot_err < 0.3 * init_rot
    assert tr_err < 1.5e-2
    pt_err = (res.points.double() - syn.gt_points.double()).norm(dim=-1)
    assert float(pt_err.median()) < 0.03 < float((prob.points.double() - syn.gt_points.double()).norm(dim=-1).median())
    # inlier classification recovers the injected outliers (some outliers land within 3 px by chance)
    agree = (res.inliers == ~syn.outlier).float().mean()
    assert agree > 0.97
    assert res.residuals.shape == (prob.obs_cam.numel(), 2)
    inl_res = res.residuals[~syn.outlier].norm(dim=-1)
    assert float(inl_res.pow(2).mean().sqrt()) < 0.8  # ~ noise level sqrt(2)*0.5


def test_ba_same_final_cost_as_scipy():
    syn = make_ba_problem(n_cams=6, n_points=80, noise_px=0.5, outlier_frac=0.1, seed=2)
    prob = dataclasses.replace(syn.problem, fixed_poses=torch.tensor([True, True, False, False, False, False]))
    res = bundle_adjust(prob, BAOptions(loss="huber", loss_scale=1.0, max_iters=50))
    ref_cost, _ = scipy_bundle_adjust(prob, loss="huber", loss_scale=1.0, tr_solver="lsmr", max_nfev=300)
    assert abs(res.cost_history[-1] - ref_cost) / ref_cost < 0.01
    assert res.cost_history[-1] < 1.001 * ref_cost


def test_ba_same_final_cost_as_scipy_cauchy_focal_default_gauge():
    syn = make_ba_problem(n_cams=6, n_points=80, noise_px=0.5, outlier_frac=0.1, focal_error=0.03, seed=3)
    opts = BAOptions(loss="cauchy", loss_scale=2.0, optimize_focal=True, max_iters=50)
    res = bundle_adjust(syn.problem, opts)  # camera 0 fixed, scale gauge pinned internally
    assert res.info["pinned_vars"] == 1
    ref_cost, _ = scipy_bundle_adjust(syn.problem, loss="cauchy", loss_scale=2.0, optimize_focal=True,
                                      tr_solver="lsmr", max_nfev=300)
    assert abs(res.cost_history[-1] - ref_cost) / ref_cost < 0.01


def test_ba_recovers_focal():
    syn = make_ba_problem(n_cams=10, n_points=300, noise_px=0.3, outlier_frac=0.1, focal_error=0.08, seed=4)
    res = bundle_adjust(syn.problem, BAOptions(optimize_focal=True, max_iters=40))
    f_true = float(syn.gt_intrinsics[0])
    assert abs(float(res.intrinsics[0]) - f_true) / f_true < 0.005
    # aspect and principal point kept
    assert torch.allclose(res.intrinsics[1] / res.intrinsics[0], syn.problem.intrinsics[1] / syn.problem.intrinsics[0])
    assert torch.equal(res.intrinsics[2:], syn.problem.intrinsics[2:])
    # scale gauge pinned: the structure matches ground truth up to a similarity
    aligned = _sim3_align_points(res.points, syn.gt_points)
    assert float((aligned - syn.gt_points).norm(dim=-1).median()) < 0.04


def test_ba_respects_fixed_variables_and_weights():
    syn = make_ba_problem(n_cams=5, n_points=60, seed=5)
    fixed_pts = torch.zeros(60, dtype=torch.bool)
    fixed_pts[:10] = True
    w = torch.ones(syn.problem.obs_cam.numel())
    w[::7] = 0
    prob = dataclasses.replace(syn.problem, fixed_points=fixed_pts, obs_weight=w,
                               fixed_poses=torch.tensor([True, False, True, False, False]))
    res = bundle_adjust(prob, BAOptions(max_iters=10))
    assert torch.equal(res.poses_w2c[0], prob.poses_w2c[0]) and torch.equal(res.poses_w2c[2], prob.poses_w2c[2])
    assert torch.equal(res.points[:10], prob.points[:10])
    assert not torch.equal(res.points[10:], prob.points[10:])
    assert not bool(res.inliers[::7].any())
    assert res.info["pinned_vars"] == 0  # two fixed poses: no scale gauge to pin


def test_motion_only_refines_poses_with_fixed_points():
    syn = make_ba_problem(n_cams=6, n_points=200, noise_px=0.3, outlier_frac=0.1, seed=6)
    res = motion_only(syn.problem.poses_w2c, syn.gt_points, syn.problem.obs_cam, syn.problem.obs_pt,
                      syn.problem.obs_uv, syn.problem.intrinsics)
    assert torch.equal(res.points, syn.gt_points)
    rot_err, tr_err = _pose_errors(res.poses_w2c, syn.gt_poses_w2c)
    assert rot_err < 2e-3 and tr_err < 1e-2
    # also the optimize_points=False path of bundle_adjust, camera 0 perturbed too
    p0 = syn.problem.poses_w2c.clone()
    p0[0] = se3_exp(torch.tensor([0.02, -0.01, 0.0, 0.01, 0.0, -0.01], dtype=p0.dtype)) @ p0[0]
    prob = dataclasses.replace(syn.problem, poses_w2c=p0, points=syn.gt_points,
                               fixed_poses=torch.zeros(6, dtype=torch.bool))
    res2 = bundle_adjust(prob, BAOptions(optimize_points=False))
    assert _pose_errors(res2.poses_w2c, syn.gt_poses_w2c)[0] < 2e-3


def test_points_behind_camera_are_not_inliers():
    syn = make_ba_problem(n_cams=4, n_points=50, outlier_frac=0.0, seed=7)
    pts = syn.problem.points.clone()
    pts[0] = torch.tensor([0.0, 0.0, -50.0], dtype=pts.dtype)  # behind every camera
    prob = dataclasses.replace(syn.problem, points=pts)
    res = bundle_adjust(prob, BAOptions(max_iters=5))
    behind = prob.obs_pt == 0
    assert bool(torch.isnan(res.residuals[behind]).all())
    assert not bool(res.inliers[behind].any())
    assert torch.isfinite(res.poses_w2c).all()


def test_bad_inputs_raise():
    syn = make_ba_problem(n_cams=3, n_points=20, seed=8)
    p = syn.problem
    with pytest.raises(ValueError, match="poses_w2c"):
        bundle_adjust(dataclasses.replace(p, poses_w2c=p.poses_w2c[:, :3]))
    with pytest.raises(ValueError, match="obs_pt"):
        bundle_adjust(dataclasses.replace(p, obs_pt=p.obs_pt + 100))
    with pytest.raises(ValueError, match="obs_uv"):
        bundle_adjust(dataclasses.replace(p, obs_uv=p.obs_uv[:-1]))
    with pytest.raises(ValueError, match="non-finite"):
        bad = p.points.clone()
        bad[0, 0] = float("nan")
        bundle_adjust(dataclasses.replace(p, points=bad))
    with pytest.raises(ValueError, match="robust loss"):
        bundle_adjust(p, BAOptions(loss="tukey"))
    with pytest.raises(ValueError, match="fixed_poses"):
        bundle_adjust(BAProblem(p.poses_w2c, p.points, p.obs_cam, p.obs_pt, p.obs_uv, p.intrinsics,
                                fixed_poses=torch.zeros(5, dtype=torch.bool)))


def test_schur_pairs_in_many_chunks_give_the_same_solution(monkeypatch):
    """The reduced camera system is accumulated over observation pairs in chunks (bounded memory); many
    small chunks give the same solution as one."""
    import gpu_kernels.ba as ba

    syn = make_ba_problem(n_cams=6, n_points=80, noise_px=0.5, outlier_frac=0.1, focal_error=0.03, seed=3)
    opts = BAOptions(max_iters=10, optimize_focal=True)
    one = bundle_adjust(syn.problem, opts)
    assert one.info["n_pairs"] >= 800  # 80 points x 10 pairs of the 5 free cameras: 9 chunks below
    monkeypatch.setattr(ba, "_PAIR_CHUNK", 97)
    many = bundle_adjust(syn.problem, opts)
    torch.testing.assert_close(many.poses_w2c, one.poses_w2c, rtol=0, atol=1e-9)
    torch.testing.assert_close(many.points, one.points, rtol=0, atol=1e-9)
    torch.testing.assert_close(many.intrinsics, one.intrinsics, rtol=0, atol=1e-9)


def test_radial_model_matches_opencv_and_its_jacobians_match_finite_differences():
    import cv2
    import numpy as np

    from gpu_kernels.ba import _Linearisation

    syn = make_ba_problem(n_cams=3, n_points=40, noise_px=0.0, outlier_frac=0.0, radial=(-0.12, 0.03), seed=2)
    p = syn.problem
    intr = syn.gt_intrinsics.clone()
    aspect = intr[1] / intr[0]
    lin = _Linearisation(syn.gt_poses_w2c, syn.gt_points, intr, p.obs_cam, p.obs_pt, p.obs_uv, aspect, True,
                         intr_vars=("f", "k1", "k2"))
    # the observations were made with the same model: OpenCV's projectPoints with (k1, k2, 0, 0) agrees
    c = 1
    sel = p.obs_cam == c
    T = syn.gt_poses_w2c[c].numpy()
    K = np.array([[intr[0], 0, intr[2]], [0, intr[1], intr[3]], [0, 0, 1]], float)
    rvec, _ = cv2.Rodrigues(T[:3, :3])
    uv_cv, _ = cv2.projectPoints(syn.gt_points[p.obs_pt[sel]].numpy(), rvec, T[:3, 3], K,
                                 np.array([float(intr[4]), float(intr[5]), 0, 0]))
    np.testing.assert_allclose((lin.r[sel] + p.obs_uv[sel]).numpy(), uv_cv.reshape(-1, 2), atol=1e-9)
    # analytic Jacobians against central differences
    eps = 1e-6

    def resid(poses=syn.gt_poses_w2c, points=syn.gt_points, k=intr):
        return _Linearisation(poses, points, k, p.obs_cam, p.obs_pt, p.obs_uv, k[1] / k[0], False).r

    for j, idx in enumerate((0, 4, 5)):  # f (fy follows with the aspect), k1, k2
        dk = torch.zeros(6, dtype=intr.dtype)
        dk[idx] = eps
        if idx == 0:
            dk[1] = eps * aspect
        num = (resid(k=intr + dk) - resid(k=intr - dk)) / (2 * eps)
        torch.testing.assert_close(lin.j_intr[:, :, j], num, atol=1e-5, rtol=1e-5)
    for i in range(3):
        dp = torch.zeros_like(syn.gt_points)
        dp[:, i] = eps
        num = (resid(points=syn.gt_points + dp) - resid(points=syn.gt_points - dp)) / (2 * eps)
        torch.testing.assert_close(lin.j_pt[:, :, i], num, atol=1e-5, rtol=1e-5)
    for i in range(6):
        d = torch.zeros(syn.gt_poses_w2c.shape[0], 6, dtype=intr.dtype)
        d[:, i] = eps
        num = (resid(poses=se3_exp(d) @ syn.gt_poses_w2c) - resid(poses=se3_exp(-d) @ syn.gt_poses_w2c)) / (2 * eps)
        torch.testing.assert_close(lin.j_pose[:, :, i], num, atol=1e-4, rtol=1e-5)


def test_ba_recovers_focal_and_radial_distortion():
    syn = make_ba_problem(n_cams=12, n_points=400, noise_px=0.3, outlier_frac=0.05, focal_error=0.05,
                          radial=(-0.1, 0.02), seed=5)
    plain = bundle_adjust(syn.problem, BAOptions(optimize_focal=True, max_iters=40))
    res = bundle_adjust(syn.problem, BAOptions(optimize_focal=True, optimize_distortion=2, max_iters=60))
    assert res.intrinsics.shape == (6,)
    f_true = float(syn.gt_intrinsics[0])
    assert abs(float(res.intrinsics[0]) - f_true) / f_true < 0.005
    assert abs(float(res.intrinsics[4]) + 0.1) < 0.01 and abs(float(res.intrinsics[5]) - 0.02) < 0.02
    # ignoring the distortion: BA bends the structure to absorb it, the fit is worse and the focal far off
    inl = ~syn.outlier
    rms = lambda r: float(r[inl].norm(dim=-1).pow(2).mean().sqrt())  # noqa: E731
    assert rms(res.residuals) < 0.3 * 2**0.5 * 1.05 and rms(plain.residuals) > 1.05 * rms(res.residuals)
    assert abs(float(plain.intrinsics[0]) - f_true) / f_true > 0.1
    with pytest.raises(ValueError, match="optimize_distortion"):
        bundle_adjust(syn.problem, BAOptions(optimize_distortion=3))
