"""Synthetic bundle-adjustment problems and an independent scipy reference solver.

Used by the tests and by the ``kernels`` benchmark suite. The scipy solver minimises exactly the cost
documented in :mod:`gpu_kernels.ba` (robust loss on the norm of each 2-D residual) with
``scipy.optimize.least_squares``; it shares no code with :func:`gpu_kernels.ba.bundle_adjust` except the
problem data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .ba import BAProblem
from .lie import se3_exp, so3_exp

__all__ = ["SyntheticBA", "make_ba_problem", "scipy_bundle_adjust"]


@dataclass
class SyntheticBA:
    problem: BAProblem  # perturbed initial state + noisy observations
    gt_poses_w2c: Tensor
    gt_points: Tensor
    gt_intrinsics: Tensor
    outlier: Tensor  # (K,) bool, observations replaced by outliers


def make_ba_problem(n_cams: int = 10, n_points: int = 300, noise_px: float = 0.5, outlier_frac: float = 0.1,
                    pose_noise: float = 0.01, point_noise: float = 0.05, focal_error: float = 0.0,
                    visibility: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float64,
                    width: int = 640, height: int = 480, focal: float = 500.0,
                    radial: tuple[float, float] | None = None) -> SyntheticBA:
    """Cameras on an arc looking at a box of points 4-6 m ahead; each point is seen by each camera with
    probability ``visibility`` (at least two cameras per point); outliers are uniform within +-50 px.
    ``radial`` = (k1, k2) distorts the observations (RADIAL model); the problem then starts undistorted
    (4 intrinsics) and ``gt_intrinsics`` has 6 values."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n_points, 3, generator=g, dtype=torch.float64) * torch.tensor([4.0, 3.0, 2.0],
                                                                                     dtype=torch.float64)
    pts = pts - torch.tensor([2.0, 1.5, -4.0], dtype=torch.float64)
    poses = []
    for c in range(n_cams):
        ang = 0.5 * (c / max(n_cams - 1, 1) - 0.5)
        centre = torch.tensor([2.0 * math.sin(ang), 0.2 * math.cos(3.0 * ang), 5.0 * (1 - math.cos(ang))],
                              dtype=torch.float64)
        rot = so3_exp(torch.tensor([0.02 * math.sin(c), -ang, 0.03 * math.cos(c)], dtype=torch.float64))
        t = torch.eye(4, dtype=torch.float64)
        t[:3, :3] = rot
        t[:3, 3] = -rot @ centre
        poses.append(t)
    gt_poses = torch.stack(poses)
    k = torch.tensor([focal, focal, (width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    vis = torch.rand(n_cams, n_points, generator=g) < visibility
    first_two = torch.argsort(torch.rand(n_cams, n_points, generator=g), dim=0)[:2]
    vis[first_two[0], torch.arange(n_points)] = True
    vis[first_two[1], torch.arange(n_points)] = True
    cam, pt = torch.nonzero(vis, as_tuple=True)
    xc = (gt_poses[cam, :3, :3] @ pts[pt][:, :, None])[:, :, 0] + gt_poses[cam, :3, 3]
    a, b = xc[:, 0] / xc[:, 2], xc[:, 1] / xc[:, 2]
    if radial is not None:
        r2 = a * a + b * b
        dist = 1 + radial[0] * r2 + radial[1] * r2 * r2
        a, b = a * dist, b * dist
    uv = torch.stack([k[0] * a + k[2], k[1] * b + k[3]], -1)
    uv_obs = uv + noise_px * torch.randn(uv.shape, generator=g, dtype=torch.float64)
    outl = torch.rand(uv.shape[0], generator=g) < outlier_frac
    uv_obs[outl] = uv[outl] + (torch.rand(int(outl.sum()), 2, generator=g, dtype=torch.float64) - 0.5) * 100
    init_poses = gt_poses.clone()
    init_poses[1:] = se3_exp(pose_noise * torch.randn(n_cams - 1, 6, generator=g, dtype=torch.float64)) @ gt_poses[1:]
    init_pts = pts + point_noise * torch.randn(pts.shape, generator=g, dtype=torch.float64)
    init_k = k.clone()
    init_k[:2] *= 1 + focal_error
    prob = BAProblem(init_poses.to(dtype), init_pts.to(dtype), cam, pt, uv_obs.to(dtype), init_k.to(dtype))
    gt_k = k if radial is None else torch.cat([k, torch.tensor(radial, dtype=torch.float64)])
    return SyntheticBA(prob, gt_poses.to(dtype), pts.to(dtype), gt_k.to(dtype), outl)


def _rotvec_to_mat(w: np.ndarray) -> np.ndarray:
    th = np.linalg.norm(w, axis=-1)[:, None, None]
    kx = np.zeros((w.shape[0], 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    kx = kx - kx.transpose(0, 2, 1)
    small = th < 1e-8
    ths = np.where(small, 1.0, th)
    a = np.where(small, 1.0, np.sin(ths) / ths)
    b = np.where(small, 0.5, (1 - np.cos(ths)) / ths**2)
    return np.eye(3) + a * kx + b * kx @ kx


def _right_jacobian(w: np.ndarray) -> np.ndarray:
    th = np.linalg.norm(w, axis=-1)[:, None, None]
    kx = np.zeros((w.shape[0], 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    kx = kx - kx.transpose(0, 2, 1)
    small = th < 1e-5
    ths = np.where(small, 1.0, th)
    b = np.where(small, 0.5, (1 - np.cos(ths)) / ths**2)
    c = np.where(small, 1.0 / 6, (ths - np.sin(ths)) / ths**3)
    return np.eye(3) - b * kx + c * kx @ kx


def scipy_bundle_adjust(problem: BAProblem, loss: str = "huber", loss_scale: float = 1.0,
                        optimize_focal: bool = False, max_nfev: int = 200, ftol: float = 1e-10,
                        tr_solver: str = "lsmr") -> tuple[float, np.ndarray]:
    """Solve the same problem with ``scipy.optimize.least_squares`` (camera 0 or ``fixed_poses`` fixed).

    scipy's ``loss=`` acts on each residual element separately, whereas our cost applies the robust loss to
    the norm of each 2-D residual. To minimise exactly the same objective, scipy gets the residual
    ``f_k = h(s_k) r_k`` with ``h = sqrt(a^2 rho(s/a^2) / s)`` (so ``|f_k|^2 = a^2 rho(s_k/a^2)``), the exact
    analytic Jacobian of that residual, and ``loss="linear"``. Returns (final cost, solution vector)."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    poses = problem.poses_w2c.double().cpu().numpy()
    pts0 = problem.points.double().cpu().numpy()
    cam = problem.obs_cam.cpu().numpy()
    pt = problem.obs_pt.cpu().numpy()
    uv = problem.obs_uv.double().cpu().numpy()
    k0 = problem.intrinsics.double().cpu().numpy()
    n_cam, n_pt = poses.shape[0], pts0.shape[0]
    fixed = np.zeros(n_cam, bool) if problem.fixed_poses is None else problem.fixed_poses.cpu().numpy()
    if problem.fixed_poses is None:
        fixed[0] = True
    free = np.nonzero(~fixed)[0]
    var_of = -np.ones(n_cam, int)
    var_of[free] = np.arange(free.size)
    nf = free.size
    x0 = [np.concatenate([Rotation.from_matrix(poses[free, :3, :3]).as_rotvec(), poses[free, :3, 3]], 1).ravel(),
          pts0.ravel()]
    if optimize_focal:
        x0.append(np.array([k0[0]]))
    x0 = np.concatenate(x0)
    aspect = k0[1] / k0[0]

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        cp = x[: 6 * nf].reshape(nf, 6)
        rot = poses[:, :3, :3].copy()
        tr = poses[:, :3, 3].copy()
        rot[free] = _rotvec_to_mat(cp[:, :3])
        tr[free] = cp[:, 3:]
        p = x[6 * nf : 6 * nf + 3 * n_pt].reshape(n_pt, 3)
        f = x[-1] if optimize_focal else k0[0]
        return rot, tr, p, f

    a2 = loss_scale**2

    def rho(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if loss == "huber":
            sq = np.sqrt(np.maximum(z, 1.0))
            return np.where(z <= 1, z, 2 * sq - 1), np.where(z <= 1, 1.0, 1 / sq)
        if loss == "cauchy":
            return np.log1p(z), 1 / (1 + z)
        return z, np.ones_like(z)

    def model(x: np.ndarray):
        rot, tr, p, f = unpack(x)
        xc = np.einsum("kij,kj->ki", rot[cam], p[pt]) + tr[cam]
        iz = 1.0 / xc[:, 2]
        a, b = xc[:, 0] * iz, xc[:, 1] * iz
        r = np.stack([f * a + k0[2] - uv[:, 0], f * aspect * b + k0[3] - uv[:, 1]], 1)
        z = np.maximum((r * r).sum(1) / a2, 1e-300)
        rz, drz = rho(z)
        h = np.sqrt(rz / z)  # |h r|^2 = a^2 rho(|r|^2 / a^2)
        return rot, p, f, xc, iz, a, b, r, z, h, drz, rz

    def resid(x: np.ndarray) -> np.ndarray:
        out = model(x)
        r, h = out[7], out[9]
        return (r * h[:, None]).ravel()

    n_obs = cam.size
    rows = np.arange(n_obs)

    def jac(x: np.ndarray):
        from scipy.sparse import csr_matrix

        rot, p, f, xc, iz, a, b, r, z, h, drz, rz = model(x)
        xw = p[pt]
        dh_ds = (drz - rz / z) / (2 * h * z * a2)
        m = h[:, None, None] * np.eye(2) + 2 * dh_ds[:, None, None] * r[:, :, None] * r[:, None, :]  # d f/d r
        jx = np.zeros((n_obs, 2, 3))
        jx[:, 0, 0], jx[:, 0, 2] = f * iz, -f * a * iz
        jx[:, 1, 1], jx[:, 1, 2] = f * aspect * iz, -f * aspect * b * iz
        gx = m @ jx  # d f / d xc  (K,2,3)
        rr, cols, vals = [], [], []
        ok = var_of[cam] >= 0
        cp = x[: 6 * nf].reshape(nf, 6)
        # d xc / d rotvec = -R [X]_x J_r(w), d xc / d t = I
        jr = _right_jacobian(cp[var_of[cam[ok]], :3])
        xs = xw[ok]
        sx = np.zeros((xs.shape[0], 3, 3))
        sx[:, 0, 1], sx[:, 0, 2], sx[:, 1, 2] = -xs[:, 2], xs[:, 1], -xs[:, 0]
        sx = sx - sx.transpose(0, 2, 1)
        d_rot = -gx[ok] @ rot[cam[ok]] @ sx @ jr
        vals.append(np.concatenate([d_rot, gx[ok]], 2))  # (k,2,6)
        cols.append(np.broadcast_to((6 * var_of[cam[ok]])[:, None, None] + np.arange(6), (ok.sum(), 2, 6)))
        rr.append(np.broadcast_to(2 * rows[ok][:, None, None] + np.arange(2)[None, :, None], (ok.sum(), 2, 6)))
        vals.append(gx @ rot[cam])
        cols.append(np.broadcast_to((6 * nf + 3 * pt)[:, None, None] + np.arange(3), (n_obs, 2, 3)))
        rr.append(np.broadcast_to(2 * rows[:, None, None] + np.arange(2)[None, :, None], (n_obs, 2, 3)))
        if optimize_focal:
            vals.append(m @ np.stack([a, aspect * b], 1)[:, :, None])
            cols.append(np.full((n_obs, 2, 1), x.size - 1))
            rr.append(np.broadcast_to(2 * rows[:, None, None] + np.arange(2)[None, :, None], (n_obs, 2, 1)))
        out = csr_matrix((np.concatenate([v.ravel() for v in vals]),
                          (np.concatenate([q.ravel() for q in rr]), np.concatenate([c.ravel() for c in cols]))),
                         shape=(2 * n_obs, x.size))
        return out.toarray() if tr_solver == "exact" else out

    res = least_squares(resid, x0, jac=jac, loss="linear", method="trf", tr_solver=tr_solver, x_scale="jac",
                        ftol=ftol, xtol=1e-12, gtol=1e-12, max_nfev=max_nfev)
    return float(res.cost), res.x
