"""Reliable-depth mask and point sampling, as ViPE's COLMAP export and the EgoX renderer define them.

A pixel's depth is *reliable* when its 5x5 neighbourhood is locally flat in relative terms::

    (max - min) / (mean + 1e-6) < 0.1   and   depth > 0

computed at full resolution over a 5x5 window with stride 1 and same-size padding. The max and min
ignore the padding; the mean counts the zero padding (it always divides by 25), so border pixels are
judged more strictly. A non-finite value anywhere in the window makes the pixel unreliable (NaN
propagates through the window statistics in the reference implementation). Subsampling happens
after the mask is computed, on integer pixel indices (no half-pixel offset).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..camera import pixel_rays

RELIABLE_WINDOW = 5
RELIABLE_THRESHOLD = 0.1
RELIABLE_EPS = 1e-6


def reliable_depth_mask(depth: np.ndarray, window: int = RELIABLE_WINDOW, threshold: float = RELIABLE_THRESHOLD,
                        eps: float = RELIABLE_EPS, dynamic: np.ndarray | None = None) -> np.ndarray:
    """Boolean HxW mask of reliable depth pixels (see the module docstring for the exact rule).

    ``dynamic`` (HxW instance ids or bool, optional): pixels of moving objects, and every pixel whose window
    touches one, are not reliable either (their depth is not that of a static scene point).
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {d.shape}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd size, got {window}")
    d = d.astype(np.float64)
    finite = np.isfinite(d)
    clean = np.where(finite, d, 0.0)
    kernel = np.ones((window, window), np.uint8)
    # cv2's default morphology border makes the padding neutral for both dilate (max) and erode (min)
    dmax = cv2.dilate(clean, kernel)
    dmin = cv2.erode(clean, kernel)
    # zero-padded mean that always divides by window**2 (count_include_pad semantics)
    dmean = cv2.boxFilter(clean, -1, (window, window), normalize=True, borderType=cv2.BORDER_CONSTANT)
    bad_window = cv2.dilate((~finite).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (dmax - dmin) / (dmean + eps)
    out = (ratio < threshold) & (clean > 0) & ~bad_window
    if dynamic is not None:
        dyn = np.asarray(dynamic)
        if dyn.shape != d.shape:
            raise ValueError(f"dynamic mask shape {dyn.shape} differs from depth shape {d.shape}")
        out &= ~(cv2.dilate((dyn > 0).astype(np.uint8), kernel) > 0)
    return out


def sample_reliable_points(depth: np.ndarray, intrinsics: np.ndarray, c2w: np.ndarray, step: int = 2,
                           mask: np.ndarray | None = None,
                           camera_type: str = "PINHOLE") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unproject reliable pixels on the grid ``u, v in {0, step, 2*step, ...}`` into world coordinates.

    ``intrinsics`` is ``fx fy cx cy`` (pinhole, pixel centres at integer coordinates; ``camera_type`` MEI
    adds xi and PANORAMA unprojects ray distance, :func:`vipe_dagster.camera.pixel_rays`), ``c2w`` a 4x4
    OpenCV camera-to-world pose. ``mask`` (HxW bool), when given, is AND-ed with the reliable mask
    (e.g. a background mask). Returns ``(xyz_world (M,3) float32, u (M,) int, v (M,) int)``; points that
    are non-finite or farther than 1e6 from the origin are dropped.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    d = np.asarray(depth, dtype=np.float32)
    keep = reliable_depth_mask(d)
    if mask is not None:
        if mask.shape != d.shape:
            raise ValueError(f"mask shape {mask.shape} differs from depth shape {d.shape}")
        keep &= mask.astype(bool)
    sub = keep[::step, ::step]
    vv, uu = np.nonzero(sub)
    vv, uu = vv * step, uu * step
    z = d[vv, uu].astype(np.float64)
    cam = pixel_rays(camera_type, np.asarray(intrinsics, dtype=np.float64), uu, vv, d.shape[1], d.shape[0]) * z[:, None]
    pose = np.asarray(c2w, dtype=np.float64)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    ok = np.all(np.isfinite(world), axis=1) & (np.linalg.norm(world, axis=1) < 1e6)
    return world[ok].astype(np.float32), uu[ok], vv[ok]
