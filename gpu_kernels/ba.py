"""Levenberg-Marquardt bundle adjustment with a Schur complement on the points (plain batched torch).

Model and conventions
---------------------
* Poses are **world-to-camera** ``T_cw`` (4x4, OpenCV axes): ``X_c = R X_w + t``; a pinhole camera with
  shared intrinsics ``[fx, fy, cx, cy]`` projects ``u = fx x/z + cx``, ``v = fy y/z + cy``. With
  ``[fx, fy, cx, cy, k1, k2]`` the normalised point ``(a, b) = (x/z, y/z)`` is first scaled by the radial
  polynomial ``d = 1 + k1 r^2 + k2 r^4`` (``r^2 = a^2 + b^2``; OpenCV's and COLMAP's RADIAL convention):
  ``u = fx a d + cx``, ``v = fy b d + cy``.
* Residual per observation ``r_k = project(T_{c_k} X_{p_k}) - uv_k`` (2 px).
* Cost (scipy ``least_squares`` convention, with ``a = loss_scale`` and ``s_k = |r_k|^2`` the squared norm
  of the 2-D residual): ``cost = 1/2 sum_k w_k a^2 rho(s_k / a^2)`` where ``w_k`` is ``obs_weight`` and
  ``rho`` is ``z`` (``l2``), ``z`` if ``z <= 1`` else ``2 sqrt(z) - 1`` (``huber``), ``log(1 + z)``
  (``cauchy``). The robust loss acts on the whole 2-D residual of an observation (like Ceres), not on each
  coordinate separately.
* Robust losses are handled by iteratively reweighted least squares: each linearisation uses the weights
  ``w_k rho'(s_k / a^2)`` (like Ceres for losses with ``rho'' <= 0``; IRLS majorises huber and cauchy, so
  it is stable, and converges linearly once the inlier set is settled).
* Convergence: stop when the relative cost decrease of an accepted step is below ``tol``, when the largest
  update component is below ``tol``, or when no damping gives a decrease (``converged=True``);
  otherwise after ``max_iters`` linearisations (``converged=False``).
* **Pose updates are applied on the left**: ``T <- exp(delta) T`` with ``delta = [rho, phi]``
  (:func:`gpu_kernels.lie.se3_exp`), i.e. the perturbation is expressed in the camera frame. Points are
  updated additively; the focal (when free) as ``fx <- fx + df`` with ``fy = fx * (fy0 / fx0)``; the
  radial coefficients (``optimize_distortion`` = 1: k1, 2: k1 and k2) additively.
* Damping: Marquardt style, ``H + lambda diag(H)``; lambda is divided by 10 after an accepted step and
  multiplied by 10 after a rejected one.
* Solver: per-observation Jacobian blocks are assembled with ``index_add_``; the point blocks (3x3) are
  inverted in a batch and eliminated (Schur complement); the reduced camera system (6 per free camera, +1
  for the focal, +1 per free radial coefficient) is dense and solved with a Cholesky factorisation.
* Gauge: poses marked in ``fixed_poses`` (default: camera 0) are not optimised. A fixed pose removes the
  six-dimensional rigid gauge but not the scale. When points are optimised and fewer than two poses are
  fixed (with or without a free focal), the remaining one-dimensional scale gauge is removed by holding one
  scalar of the update fixed: for the free camera whose position relative to the first fixed camera is
  largest, the component of the left-update translation ``rho`` along the largest coordinate of that
  relative translation is pinned to zero. The reconstruction's scale therefore stays that of the input.
  With no fixed pose at all the rigid gauge is left to the damping (the cost is invariant along it).
* Observations whose point falls behind the camera (``z <= min_depth``) get no gradient and add a constant
  penalty ``1/2 w_k a^2 rho((100 a)^2 / a^2)`` to the cost, so a step that moves points behind cameras must
  pay for it. Their residual in :class:`BAResult` is NaN and they are never inliers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .cameras import BrownCamera, PinholeCamera
from .lie import se3_exp, skew

__all__ = ["BAProblem", "BAOptions", "BAResult", "bundle_adjust", "motion_only", "robust_rho"]

log = logging.getLogger(__name__)

_BEHIND_PENALTY_PX = 100.0  # in units of loss_scale
_MIN_DEPTH = 1e-6
_PAIR_CHUNK = 1 << 16  # Schur pairs per chunk: ~0.6 kB of float64 temporaries each, ~38 MB per chunk


@dataclass
class BAProblem:
    """Bundle adjustment input. See the module docstring for conventions.

    ``fixed_points`` (optional, (P,) bool) holds individual points fixed; it is an addition to the required
    fields and defaults to none."""

    poses_w2c: Tensor  # (C,4,4) world-to-camera
    points: Tensor  # (P,3) world points
    obs_cam: Tensor  # (K,) long, camera index per observation
    obs_pt: Tensor  # (K,) long, point index per observation
    obs_uv: Tensor  # (K,2) observed pixels
    intrinsics: Tensor  # (4,) shared pinhole fx, fy, cx, cy, or (6,) with radial k1, k2
    fixed_poses: Tensor | None = None  # (C,) bool; default: camera 0 fixed (gauge)
    obs_weight: Tensor | None = None  # (K,) optional per-observation weights (0 = ignore)
    fixed_points: Tensor | None = None  # (P,) bool; default: none fixed


@dataclass
class BAOptions:
    max_iters: int = 20
    loss: str = "huber"  # "l2" | "huber" | "cauchy"
    loss_scale: float = 1.0  # px
    optimize_focal: bool = False  # one shared focal f (fx = fy * aspect kept), principal point fixed
    optimize_distortion: int = 0  # radial coefficients refined: 0 none, 1 k1, 2 k1 and k2
    optimize_points: bool = True
    lambda_init: float = 1e-3
    tol: float = 1e-8
    verbose: bool = False


@dataclass
class BAResult:
    poses_w2c: Tensor
    points: Tensor
    intrinsics: Tensor
    cost_history: list[float]
    residuals: Tensor  # (K,2) final reprojection residual px (NaN where the point is behind the camera)
    inliers: Tensor  # (K,) bool, |r| within 3*loss_scale
    iterations: int
    converged: bool
    info: dict = field(default_factory=dict)


def robust_rho(z: Tensor, loss: str) -> tuple[Tensor, Tensor, Tensor]:
    """``rho(z)``, ``rho'(z)`` and ``rho''(z)`` for ``z = s / a^2`` (scipy ``least_squares`` definitions)."""
    if loss == "l2" or loss == "linear":
        return z, torch.ones_like(z), torch.zeros_like(z)
    if loss == "huber":
        inl = z <= 1
        sq = torch.sqrt(torch.where(inl, torch.ones_like(z), z))
        return (torch.where(inl, z, 2 * sq - 1), torch.where(inl, torch.ones_like(z), 1 / sq),
                torch.where(inl, torch.zeros_like(z), -0.5 / (sq * sq * sq)))
    if loss == "cauchy":
        return torch.log1p(z), 1 / (1 + z), -1 / (1 + z) ** 2
    raise ValueError(f"unknown robust loss {loss!r}; expected 'l2', 'huber' or 'cauchy'")


def _validate(pr: BAProblem) -> None:
    def shape_err(name: str, expected: str, t: Tensor) -> ValueError:
        return ValueError(f"BAProblem.{name}: expected shape {expected}, got {tuple(t.shape)}")

    if pr.poses_w2c.ndim != 3 or pr.poses_w2c.shape[1:] != (4, 4):
        raise shape_err("poses_w2c", "(C,4,4)", pr.poses_w2c)
    if pr.points.ndim != 2 or pr.points.shape[1] != 3:
        raise shape_err("points", "(P,3)", pr.points)
    k = pr.obs_cam.shape[0] if pr.obs_cam.ndim == 1 else -1
    if pr.obs_cam.ndim != 1:
        raise shape_err("obs_cam", "(K,)", pr.obs_cam)
    if pr.obs_pt.shape != (k,):
        raise shape_err("obs_pt", f"({k},)", pr.obs_pt)
    if pr.obs_uv.shape != (k, 2):
        raise shape_err("obs_uv", f"({k},2)", pr.obs_uv)
    if pr.intrinsics.shape not in ((4,), (6,)):
        raise shape_err("intrinsics", "(4,) or (6,)", pr.intrinsics)
    c, p = pr.poses_w2c.shape[0], pr.points.shape[0]
    if pr.obs_cam.dtype in (torch.float32, torch.float64) or pr.obs_pt.dtype in (torch.float32, torch.float64):
        raise ValueError("BAProblem.obs_cam / obs_pt must be integer index tensors")
    if k > 0:
        if int(pr.obs_cam.min()) < 0 or int(pr.obs_cam.max()) >= c:
            raise ValueError(f"BAProblem.obs_cam: indices must be in [0, {c - 1}], got "
                             f"[{int(pr.obs_cam.min())}, {int(pr.obs_cam.max())}]")
        if int(pr.obs_pt.min()) < 0 or int(pr.obs_pt.max()) >= p:
            raise ValueError(f"BAProblem.obs_pt: indices must be in [0, {p - 1}], got "
                             f"[{int(pr.obs_pt.min())}, {int(pr.obs_pt.max())}]")
    if pr.fixed_poses is not None and pr.fixed_poses.shape != (c,):
        raise shape_err("fixed_poses", f"({c},)", pr.fixed_poses)
    if pr.obs_weight is not None and pr.obs_weight.shape != (k,):
        raise shape_err("obs_weight", f"({k},)", pr.obs_weight)
    if pr.fixed_points is not None and pr.fixed_points.shape != (p,):
        raise shape_err("fixed_points", f"({p},)", pr.fixed_points)
    for name in ("poses_w2c", "points", "obs_uv", "intrinsics"):
        if not bool(torch.isfinite(getattr(pr, name)).all()):
            raise ValueError(f"BAProblem.{name} contains non-finite values")


class _Linearisation:
    """Residuals and Jacobian blocks at one state."""

    def __init__(self, poses: Tensor, points: Tensor, intr: Tensor, cam: Tensor, pt: Tensor, uv: Tensor,
                 aspect: Tensor, need_jac: bool, intr_vars: tuple[str, ...] = ()) -> None:
        r_ = poses[cam, :3, :3]
        t_ = poses[cam, :3, 3]
        xc = (r_ @ points[pt][:, :, None])[:, :, 0] + t_
        self.valid = xc[:, 2] > _MIN_DEPTH
        # the camera module's models: RADIAL [fx fy cx cy k1 k2] is the Brown model with p1 = p2 = k3 = 0
        if intr.shape[0] > 4:
            camera = BrownCamera(torch.cat([intr[:6], intr.new_zeros(3)]), min_depth=_MIN_DEPTH)
        else:
            camera = PinholeCamera(intr[:4], min_depth=_MIN_DEPTH)
        if not need_jac:
            self.r = camera.project(xc)[0] - uv
            return
        proj, _, jx, jk = camera.project_with_jacobians(xc)  # jk columns: fx fy cx cy [k1 k2 ...]
        self.r = proj - uv
        eye = torch.eye(3, dtype=xc.dtype, device=xc.device).expand(xc.shape[0], 3, 3)
        self.j_pose = jx @ torch.cat([eye, -skew(xc)], dim=-1)  # (K,2,6), left perturbation
        self.j_pt = jx @ r_  # (K,2,3)
        cols = []
        for v in intr_vars:  # (K,2) d uv / d variable
            if v == "f":
                cols.append(jk[..., 0] + jk[..., 1] * aspect)  # fy = aspect * fx
            else:
                cols.append(jk[..., 4 if v == "k1" else 5])
        self.j_intr = torch.stack(cols, dim=-1) if cols else xc.new_zeros(xc.shape[0], 2, 0)  # (K,2,M)


def _pairs_by_point(pt: Tensor, sel: Tensor) -> tuple[Tensor, Tensor]:
    """Unordered pairs (k1, k2), k1 != k2, of selected observations that share a point (each pair once)."""
    ids = torch.nonzero(sel).squeeze(1)
    if ids.numel() == 0:
        e = torch.empty(0, dtype=torch.long, device=pt.device)
        return e, e
    p = pt[ids]
    order = torch.argsort(p, stable=True)
    ids, p = ids[order], p[order]
    counts = torch.bincount(p, minlength=int(p.max()) + 1)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(ids.numel(), device=pt.device) - starts[p]
    n_after = counts[p] - 1 - pos  # partners later in the same point group
    m = int(n_after.sum())
    k1_local = torch.repeat_interleave(torch.arange(ids.numel(), device=pt.device), n_after)
    base = torch.repeat_interleave(torch.cumsum(n_after, 0) - n_after, n_after)
    k2_local = k1_local + 1 + (torch.arange(m, device=pt.device) - base)
    return ids[k1_local], ids[k2_local]


def bundle_adjust(problem: BAProblem, options: BAOptions | None = None) -> BAResult:
    """Minimise the robust reprojection cost over poses, points and optionally a shared focal.

    See the module docstring for the cost, the update conventions and the gauge handling. Inputs keep their
    device and dtype (use float64 for the tightest convergence)."""
    opt = options if options is not None else BAOptions()
    _validate(problem)
    robust_rho(torch.zeros(1), opt.loss)  # validates the loss name
    if opt.loss_scale <= 0:
        raise ValueError(f"BAOptions.loss_scale must be > 0, got {opt.loss_scale}")
    if opt.optimize_distortion not in (0, 1, 2):
        raise ValueError(f"BAOptions.optimize_distortion must be 0, 1 or 2, got {opt.optimize_distortion}")
    dev, dt = problem.points.device, problem.points.dtype
    poses = problem.poses_w2c.to(dev, dt).clone()
    points = problem.points.clone()
    intr = problem.intrinsics.to(dev, dt).clone()
    if opt.optimize_distortion and intr.shape[0] == 4:
        intr = torch.cat([intr, intr.new_zeros(2)])
    intr_vars = (("f",) if opt.optimize_focal else ()) + ("k1", "k2")[: opt.optimize_distortion]
    n_intr = len(intr_vars)
    cam = problem.obs_cam.to(dev).long()
    pt = problem.obs_pt.to(dev).long()
    uv = problem.obs_uv.to(dev, dt)
    n_cam, n_pt, n_obs = poses.shape[0], points.shape[0], cam.shape[0]
    a2 = opt.loss_scale**2

    fixed_poses = (torch.zeros(n_cam, dtype=torch.bool, device=dev) if problem.fixed_poses is None
                   else problem.fixed_poses.to(dev).bool())
    if problem.fixed_poses is None and n_cam > 0:
        fixed_poses[0] = True
    w_obs = (torch.ones(n_obs, dtype=dt, device=dev) if problem.obs_weight is None
             else problem.obs_weight.to(dev, dt).clamp_min(0))
    fixed_pts = (torch.zeros(n_pt, dtype=torch.bool, device=dev) if problem.fixed_points is None
                 else problem.fixed_points.to(dev).bool())
    if not opt.optimize_points:
        fixed_pts = torch.ones(n_pt, dtype=torch.bool, device=dev)
    aspect = intr[1] / intr[0]

    # variable layout of the reduced (camera) system
    free_cam = ~fixed_poses
    n_free = int(free_cam.sum())
    cam_var = torch.full((n_cam,), -1, dtype=torch.long, device=dev)
    cam_var[free_cam] = torch.arange(n_free, device=dev)
    n_red = 6 * n_free + n_intr
    pinned = torch.zeros(n_red, dtype=torch.bool, device=dev)
    n_fixed = int(fixed_poses.sum())
    if opt.optimize_points and n_fixed < 2 and n_free >= 1 and not bool(fixed_pts.all()):
        if n_fixed == 1:
            t0 = poses[fixed_poses][0]
            c0 = -(t0[:3, :3].T @ t0[:3, 3])
        else:
            c0 = torch.zeros(3, dtype=dt, device=dev)
        t_rel = (poses[:, :3, :3] @ c0) + poses[:, :3, 3]  # (C,3) position of c0 in each camera
        mag = torch.linalg.vector_norm(t_rel, dim=-1).masked_fill(~free_cam, -1)
        c1 = int(mag.argmax())
        if float(mag[c1]) > 0:
            comp = int(t_rel[c1].abs().argmax())
            pinned[6 * int(cam_var[c1]) + comp] = True
            log.debug("scale gauge: pinned rho[%d] of camera %d", comp, c1)

    obs_cvar = cam_var[cam]
    obs_cam_free = obs_cvar >= 0
    obs_pt_free = ~fixed_pts[pt]
    active = w_obs > 0
    pair_k1, pair_k2 = _pairs_by_point(pt, active & obs_cam_free & obs_pt_free)
    pair_flat = obs_cvar.clamp_min(0)[pair_k1] * n_free + obs_cvar.clamp_min(0)[pair_k2]
    if opt.verbose:
        log.info("BA: %d cameras (%d free), %d points, %d observations, %d Schur pairs, %d reduced vars",
                 n_cam, n_free, n_pt, n_obs, pair_k1.numel(), n_red)

    def cost_of(lin: _Linearisation) -> tuple[float, Tensor]:
        """Cost and IRLS weights ``w_k rho'`` (K,) at a linearisation."""
        s = (lin.r * lin.r).sum(-1)
        z = s / a2
        rho, d1, _ = robust_rho(z, opt.loss)
        pen = robust_rho(torch.full_like(s, _BEHIND_PENALTY_PX**2), opt.loss)[0]
        per = torch.where(lin.valid, rho, pen) * w_obs * a2 * 0.5
        wg = torch.where(lin.valid, d1 * w_obs, torch.zeros_like(s))
        return float(per.sum()), wg

    lin = _Linearisation(poses, points, intr, cam, pt, uv, aspect, need_jac=True, intr_vars=intr_vars)
    cost, wk = cost_of(lin)
    history = [cost]
    lam = opt.lambda_init
    converged = False
    it = 0
    for it in range(1, opt.max_iters + 1):
        system = _build_normal_equations(lin, wk, obs_cvar, pt, n_free, n_pt, obs_cam_free, obs_pt_free)
        accepted = False
        while lam < 1e12:
            step = _solve(system, lam, pinned, pair_k1, pair_k2, pair_flat, obs_cvar, pt, n_free, fixed_pts)
            if step is None:
                lam *= 10
                continue
            d_cam, d_pt, d_f = step
            new_poses = poses.clone()
            if n_free:
                new_poses[free_cam] = se3_exp(d_cam) @ poses[free_cam]
            new_points = points + d_pt
            new_intr = intr.clone()
            for j, v in enumerate(intr_vars):
                if v == "f":
                    new_intr[0] = intr[0] + d_f[j]
                    new_intr[1] = new_intr[0] * aspect
                else:
                    new_intr[4 if v == "k1" else 5] = intr[4 if v == "k1" else 5] + d_f[j]
            new_lin = _Linearisation(new_poses, new_points, new_intr, cam, pt, uv, aspect, need_jac=True,
                                     intr_vars=intr_vars)
            new_cost, new_wk = cost_of(new_lin)
            if new_cost < cost:
                accepted = True
                rel = (cost - new_cost) / max(cost, 1e-300)
                step_norm = float(torch.cat([d_cam.flatten(), d_pt.flatten(), d_f.flatten()]).abs().max()) \
                    if (d_cam.numel() + d_pt.numel() + d_f.numel()) else 0.0
                poses, points, intr, lin, wk = new_poses, new_points, new_intr, new_lin, new_wk
                cost = new_cost
                history.append(cost)
                lam = max(lam / 10, 1e-12)
                if opt.verbose:
                    log.info("BA iter %d: cost %.6g (rel decrease %.3g), lambda %.1e", it, cost, rel, lam)
                if rel < opt.tol or step_norm < opt.tol:
                    converged = True
                break
            lam *= 10
        if not accepted:
            converged = True  # no descent direction left at any damping: a (local) minimum
            if opt.verbose:
                log.info("BA iter %d: no cost decrease possible, stopping at cost %.6g", it, cost)
            break
        if converged:
            break

    r = torch.where(lin.valid[:, None], lin.r, torch.full_like(lin.r, float("nan")))
    inl = lin.valid & (torch.linalg.vector_norm(lin.r, dim=-1) <= 3 * opt.loss_scale) & (w_obs > 0)
    return BAResult(poses_w2c=poses, points=points, intrinsics=intr, cost_history=history, residuals=r,
                    inliers=inl, iterations=it, converged=converged,
                    info={"lambda": lam, "n_pairs": int(pair_k1.numel()), "pinned_vars": int(pinned.sum())})


@dataclass
class _System:
    hcc: Tensor  # (F,6,6) block-diagonal camera part
    gc: Tensor  # (F,6)
    hpp: Tensor  # (P,3,3)
    gp: Tensor  # (P,3)
    hcp: Tensor  # (K,6,3) per observation (zero where camera or point fixed)
    hff: Tensor  # (M,M) intrinsic variables (focal, radial coefficients)
    gf: Tensor  # (M,)
    hfc: Tensor  # (F,6,M)
    hfp: Tensor  # (P,3,M)


def _build_normal_equations(lin: _Linearisation, wk: Tensor, obs_cvar: Tensor, pt: Tensor, n_free: int,
                            n_pt: int, cam_free: Tensor, pt_free: Tensor) -> _System:
    """IRLS Gauss-Newton blocks: Hessian ``J^T w_k J`` and gradient ``J^T w_k r``."""
    dt, dev = lin.r.dtype, lin.r.device
    jc = lin.j_pose * cam_free[:, None, None]
    jp = lin.j_pt * pt_free[:, None, None]
    wr = wk[:, None] * lin.r
    wjc = wk[:, None, None] * jc  # (K,2,6)
    wjp = wk[:, None, None] * jp  # (K,2,3)
    ci = obs_cvar.clamp_min(0)
    hcc = torch.zeros(n_free, 36, dtype=dt, device=dev)
    gc = torch.zeros(n_free, 6, dtype=dt, device=dev)
    if n_free:
        hcc.index_add_(0, ci, (jc.transpose(1, 2) @ wjc).reshape(-1, 36))
        gc.index_add_(0, ci, (jc.transpose(1, 2) @ wr[:, :, None])[:, :, 0])
    hpp = torch.zeros(n_pt, 9, dtype=dt, device=dev)
    hpp.index_add_(0, pt, (jp.transpose(1, 2) @ wjp).reshape(-1, 9))
    gp = torch.zeros(n_pt, 3, dtype=dt, device=dev)
    gp.index_add_(0, pt, (jp.transpose(1, 2) @ wr[:, :, None])[:, :, 0])
    hcp = jc.transpose(1, 2) @ wjp
    m = lin.j_intr.shape[-1]
    jf = lin.j_intr  # (K,2,M)
    wjf = wk[:, None, None] * jf
    hff = torch.einsum("kim,kin->mn", wjf, jf)
    gf = torch.einsum("kim,ki->m", jf, wr)
    hfc = torch.zeros(n_free, 6 * m, dtype=dt, device=dev)
    hfp = torch.zeros(n_pt, 3 * m, dtype=dt, device=dev)
    if m:
        if n_free:
            hfc.index_add_(0, ci, (jc.transpose(1, 2) @ wjf).reshape(-1, 6 * m))
        hfp.index_add_(0, pt, (jp.transpose(1, 2) @ wjf).reshape(-1, 3 * m))
    hfc, hfp = hfc.reshape(n_free, 6, m), hfp.reshape(n_pt, 3, m)
    return _System(hcc.reshape(-1, 6, 6), gc, hpp.reshape(-1, 3, 3), gp, hcp, hff, gf, hfc, hfp)


def _damp(h: Tensor, lam: float) -> Tensor:
    """Marquardt damping of a batch of square blocks: ``H + lam * max(diag(H), 1e-9)``."""
    d = torch.diagonal(h, dim1=-2, dim2=-1)
    return h + torch.diag_embed(lam * d.clamp_min(1e-9))


def _solve(sy: _System, lam: float, pinned: Tensor, k1: Tensor, k2: Tensor, pair_flat: Tensor, obs_cvar: Tensor,
           pt: Tensor, n_free: int, fixed_pts: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """Damped step via the Schur complement. Returns (d_cam (F,6), d_pt (P,3), d_intr (M,)) or None if the
    reduced system is not positive definite."""
    dt, dev = sy.gp.dtype, sy.gp.device
    hpp = _damp(sy.hpp, lam)
    eye3 = torch.eye(3, dtype=dt, device=dev)
    hpp = torch.where(fixed_pts[:, None, None], eye3, hpp)
    hinv, info = torch.linalg.inv_ex(hpp)
    bad = (info != 0) | fixed_pts | ~torch.isfinite(hinv).all(dim=(1, 2))
    hinv = torch.where(bad[:, None, None], torch.zeros_like(hinv), hinv)

    ci = obs_cvar.clamp_min(0)
    m = sy.gf.shape[0]
    n_red = 6 * n_free + m
    d_f = torch.zeros(m, dtype=dt, device=dev)
    d_cam = torch.zeros(n_free, 6, dtype=dt, device=dev)
    if n_red:
        e = sy.hcp @ hinv[pt]  # (K,6,3) = H_cp H_pp^-1 per observation
        # S = blockdiag(H_cc) - sum over observation pairs sharing a point of E_k1 H_cp,k2^T; the pairs are
        # unordered, so the strictly-upper part U is accumulated once and mirrored.
        s6 = torch.zeros(n_free * n_free, 36, dtype=dt, device=dev)
        diag_idx = torch.arange(n_free, device=dev) * (n_free + 1)
        s6.index_add_(0, diag_idx, _damp(sy.hcc, lam).reshape(-1, 36))
        s6.index_add_(0, ci * (n_free + 1), -(e @ sy.hcp.transpose(1, 2)).reshape(-1, 36))
        u6 = torch.zeros(n_free * n_free, 36, dtype=dt, device=dev)
        for s in range(0, k1.numel(), _PAIR_CHUNK):
            a, b = k1[s : s + _PAIR_CHUNK], k2[s : s + _PAIR_CHUNK]
            blk = e.index_select(0, a) @ sy.hcp.index_select(0, b).transpose(1, 2)
            u6.index_add_(0, pair_flat[s : s + _PAIR_CHUNK], blk.reshape(-1, 36), alpha=-1)
        s_cam = s6.reshape(n_free, n_free, 6, 6).permute(0, 2, 1, 3).reshape(6 * n_free, 6 * n_free)
        u_cam = u6.reshape(n_free, n_free, 6, 6).permute(0, 2, 1, 3).reshape(6 * n_free, 6 * n_free)
        s_mat = torch.zeros(n_red, n_red, dtype=dt, device=dev)
        s_mat[: 6 * n_free, : 6 * n_free] = s_cam + u_cam + u_cam.T
        rhs = torch.zeros(n_red, dtype=dt, device=dev)
        bc = -sy.gc
        bc = bc.index_add(0, ci, (e @ sy.gp[pt][:, :, None])[:, :, 0])
        rhs[: 6 * n_free] = bc.reshape(-1)
        if m:
            fp = hinv @ sy.hfp  # (P,3,M) H_pp^-1 H_pf
            sfc = sy.hfc.index_add(0, ci, -(sy.hcp @ fp[pt]))  # (F,6,M)
            s_mat[6 * n_free:, : 6 * n_free] = sfc.reshape(-1, m).T
            s_mat[: 6 * n_free, 6 * n_free:] = sfc.reshape(-1, m)
            s_mat[6 * n_free:, 6 * n_free:] = _damp(sy.hff, lam) - torch.einsum("pim,pin->mn", sy.hfp, fp)
            rhs[6 * n_free:] = -sy.gf + torch.einsum("pim,pi->m", fp, sy.gp)
        if bool(pinned.any()):
            s_mat[pinned, :] = 0
            s_mat[:, pinned] = 0
            s_mat[pinned, pinned] = 1
            rhs[pinned] = 0
        chol, info_c = torch.linalg.cholesky_ex(s_mat)
        if int(info_c) != 0:
            return None
        x = torch.cholesky_solve(rhs[:, None], chol)[:, 0]
        if not bool(torch.isfinite(x).all()):
            return None
        d_cam = x[: 6 * n_free].reshape(n_free, 6)
        d_f = x[6 * n_free:]
    # back-substitution for the points
    back = -sy.gp
    if n_free:
        back = back.index_add(0, pt, -(sy.hcp.transpose(1, 2) @ d_cam[ci][:, :, None])[:, :, 0])
    if m:
        back = back - (sy.hfp @ d_f[:, None])[:, :, 0]
    d_pt = (hinv @ back[:, :, None])[:, :, 0]
    return d_cam, d_pt, d_f


def motion_only(poses_w2c: Tensor, points: Tensor, obs_cam: Tensor, obs_pt: Tensor, obs_uv: Tensor,
                intrinsics: Tensor, options: BAOptions | None = None, obs_weight: Tensor | None = None,
                fixed_poses: Tensor | None = None) -> BAResult:
    """Pose-only refinement (PnP-like): points are held fixed and, unless ``fixed_poses`` says otherwise,
    every pose is optimised (there is no gauge freedom with fixed points)."""
    opt = BAOptions() if options is None else options
    opt = BAOptions(**{**opt.__dict__, "optimize_points": False})
    fp = torch.zeros(poses_w2c.shape[0], dtype=torch.bool, device=poses_w2c.device) if fixed_poses is None \
        else fixed_poses
    return bundle_adjust(BAProblem(poses_w2c, points, obs_cam, obs_pt, obs_uv, intrinsics, fp, obs_weight),
                         opt)
