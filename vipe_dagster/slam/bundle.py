"""Bundle-adjustment driver: packs the SLAM map into ``gpu_kernels.ba`` problems and unpacks the result."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..config import BAConfig

log = logging.getLogger(__name__)


@dataclass
class BAOutput:
    poses_w2c: np.ndarray  # (C,4,4)
    points: np.ndarray  # (P,3)
    intrinsics: np.ndarray  # (4,)
    inliers: np.ndarray  # (K,) bool: observation reprojection error below the outlier threshold
    reproj_px: np.ndarray  # (K,) reprojection error norm at the solution
    cost: float  # final robust cost
    obs_pid: np.ndarray | None = None  # (K,) the map point id of each observation (set by the SLAM's driver)


def bundle_adjust(poses_w2c: np.ndarray, points: np.ndarray, obs_cam: np.ndarray, obs_pt: np.ndarray,
                  obs_uv: np.ndarray, intrinsics: np.ndarray, fixed: np.ndarray, cfg: BAConfig, iters: int,
                  optimize_focal: bool = False, optimize_points: bool = True, optimize_distortion: int = 0,
                  obs_weight: np.ndarray | None = None, tol: float = 1e-8, double: bool = True) -> BAOutput:
    """Run LM bundle adjustment (Schur complement on points, robust loss) from ``gpu_kernels``."""
    import torch

    from gpu_kernels.ba import BAOptions, BAProblem
    from gpu_kernels.ba import bundle_adjust as _ba

    dev = torch.device(cfg.device)
    # float64 gives the tightest convergence (global BA, focal); float32 is faster for the windowed BA
    dt = torch.float64 if double else torch.float32
    prob = BAProblem(
        poses_w2c=torch.as_tensor(poses_w2c, dtype=dt, device=dev),
        points=torch.as_tensor(points, dtype=dt, device=dev),
        obs_cam=torch.as_tensor(obs_cam, dtype=torch.long, device=dev),
        obs_pt=torch.as_tensor(obs_pt, dtype=torch.long, device=dev),
        obs_uv=torch.as_tensor(obs_uv, dtype=dt, device=dev),
        intrinsics=torch.as_tensor(intrinsics, dtype=dt, device=dev),
        fixed_poses=torch.as_tensor(np.asarray(fixed, bool), device=dev),
        obs_weight=None if obs_weight is None else torch.as_tensor(obs_weight, dtype=dt, device=dev),
    )
    opts = BAOptions(max_iters=iters, optimize_focal=optimize_focal, optimize_points=optimize_points,
                     optimize_distortion=optimize_distortion,
                     loss=cfg.loss, loss_scale=cfg.loss_scale_px, tol=tol)
    threads = torch.get_num_threads()
    if cfg.torch_threads and dev.type == "cpu":
        torch.set_num_threads(cfg.torch_threads)
    try:
        res = _ba(prob, opts)
    finally:
        torch.set_num_threads(threads)
    poses = res.poses_w2c.detach().cpu().double().numpy()
    pts = res.points.detach().cpu().double().numpy()
    intr = res.intrinsics.detach().cpu().double().numpy()
    r = res.residuals.detach().cpu().double().numpy().reshape(len(obs_cam), 2)
    err = np.linalg.norm(r, axis=1)
    err = np.where(np.isfinite(err), err, np.inf)  # NaN residual: point behind the camera
    cost = float(res.cost_history[-1]) if len(res.cost_history) else float(np.sum(err**2))
    return BAOutput(poses, pts, intr, err < cfg.outlier_px, err, cost)
