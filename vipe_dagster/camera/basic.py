"""Camera types, intrinsics rules, fields of view, MEI and panorama rays in numpy (no torch import): what
every reader of artifacts needs. The batched torch models are in :mod:`.models`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CAMERA_TYPES = ("PINHOLE", "MEI", "PANORAMA")
PARAM_NAMES = {
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "MEI": ("fx", "fy", "cx", "cy", "xi"),
    "PANORAMA": ("0", "0", "0", "0"),
}
EXPECTED = {
    "PINHOLE": "finite fx fy cx cy with fx, fy > 0 (and nothing else: a PINHOLE camera has no distortion)",
    "MEI": "finite fx fy cx cy xi with fx, fy > 0 and xi > -1 (5 columns)",
    "PANORAMA": "all zeros (an equirectangular camera has no focal or principal point)",
}
PANORAMA_FOV_NOTE = "PANORAMA (equirectangular) covers 360 x 180 deg; a pinhole field of view does not apply"


def normalize_type(camera_type: str) -> str:
    t = str(camera_type).strip().upper()
    if t not in CAMERA_TYPES:
        raise ValueError(f"camera type {camera_type!r} not in {CAMERA_TYPES}")
    return t


# ---------------------------------------------------------------------- validation
def bad_rows(camera_type: str, intr: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of ``intr`` (N, C) that break the rules of ``camera_type`` (module doc)."""
    t = normalize_type(camera_type)
    a = np.asarray(intr, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    n, c = a.shape
    if t == "PANORAMA":
        return ~np.all(a == 0.0, axis=1)
    need = len(PARAM_NAMES[t])
    if c < need:
        return np.ones(n, bool)
    head = a[:, :need]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(head).all(axis=1) & (head[:, 0] > 0) & (head[:, 1] > 0)
        if t == "MEI":
            ok &= head[:, 4] > -1.0
        if c > need:  # extra columns: parameters this model cannot hold
            ok &= np.all(a[:, need:] == 0.0, axis=1)
    return ~ok


def row_problem(camera_type: str, params) -> str | None:
    """What is wrong with one row for ``camera_type`` (``None`` if it is valid), as
    ``"has intrinsics [...] (MODEL); expected ..."``."""
    p = np.asarray(params, dtype=np.float64).reshape(-1)
    t = normalize_type(camera_type)
    if not bad_rows(t, p[None])[0]:
        return None
    need = len(PARAM_NAMES[t])
    cols = f", {len(p)} columns where {t} needs {need}" if t != "PANORAMA" and len(p) < need else ""
    hint = ""
    if t == "PINHOLE" and len(p) == 5 and p[4] != 0 and not bad_rows("MEI", p[None])[0]:
        hint = " (the row looks like MEI fx fy cx cy xi: is the frame's line in <n>_camera.txt missing or wrong?)"
    return f"has intrinsics {[float(f'{v:.6g}') for v in p]} ({t}{cols}); expected {EXPECTED[t]}{hint}"


# ---------------------------------------------------------------------- field of view
def fov_from_focal(size_px, focal_px):
    """``2 atan(size / 2f)`` in degrees, element-wise (arrays or scalars; no checks)."""
    return np.degrees(2.0 * np.arctan(np.asarray(size_px, np.float64) / (2.0 * np.asarray(focal_px, np.float64))))


def pinhole_fov_deg(size_px: float | None, focal_px: float | None) -> float | None:
    """``2 atan(size / 2f)`` in degrees; ``None`` without a size or a positive focal."""
    if not size_px or focal_px is None or not np.isfinite(focal_px) or focal_px <= 0:
        return None
    return float(fov_from_focal(size_px, focal_px))


def focal_for_fov(fov_deg: float, size_px: float) -> float:
    """The pinhole focal (px) whose field of view over ``size_px`` pixels is ``fov_deg``."""
    return float(size_px) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def mei_max_angle(xi: float) -> float:
    """Largest angle (rad) from the optical axis that an MEI camera images one-to-one."""
    if xi <= -1.0:
        return 0.0
    return math.acos(-1.0 / xi) if xi > 1.0 else math.acos(-xi)


def mei_ray_angle(r, xi: float) -> np.ndarray:
    """Angle (rad) from the optical axis of the ray at normalised radius ``r = |pixel - c| / f``."""
    r = np.asarray(r, dtype=np.float64)
    disc = 1.0 + (1.0 - xi * xi) * r * r
    eta = (xi + np.sqrt(np.maximum(disc, 0.0))) / (1.0 + r * r)
    ang = np.arctan2(eta * r, eta - xi)
    return np.where(disc >= 0.0, ang, mei_max_angle(xi))


@dataclass(frozen=True)
class FieldOfView:
    x_deg: float | None
    y_deg: float | None
    note: str | None = None


def field_of_view(camera_type: str, params, width: float | None, height: float | None) -> FieldOfView:
    """Horizontal and vertical field of view (deg) of one camera over a ``width x height`` image."""
    t = normalize_type(camera_type)
    if t == "PANORAMA":
        return FieldOfView(None, None, PANORAMA_FOV_NOTE)
    p = np.asarray(params, dtype=np.float64).reshape(-1)
    if t == "PINHOLE":
        return FieldOfView(pinhole_fov_deg(width, p[0]), pinhole_fov_deg(height, p[1]))
    if len(p) < 5 or not np.isfinite(p[4]) or p[4] <= -1.0:
        return FieldOfView(None, None, f"MEI intrinsics {p.tolist()} have no valid xi")
    xi = float(p[4])
    out, notes = [], []
    for size, f, axis in ((width, p[0], "x"), (height, p[1], "y")):
        if not size or not np.isfinite(f) or f <= 0:
            out.append(None)
            continue
        r = float(size) / (2.0 * f)
        out.append(math.degrees(2.0 * float(mei_ray_angle(r, xi))))
        if xi > 1.0 and r * r * (xi * xi - 1.0) > 1.0:
            notes.append(f"{axis}: the image border lies outside the MEI image circle (xi {xi:g}); "
                         f"the field of view is the circle's")
    return FieldOfView(out[0], out[1], "; ".join(notes) or None)


# ---------------------------------------------------------------------- resizing
def scale_intrinsics(intr, sx: float, sy: float, camera_types="PINHOLE") -> np.ndarray:
    """Intrinsics ``(..., C)`` for an image resized by ``(sx, sy)``: ``f' = s f``, ``c' = s (c + 0.5) - 0.5``
    (pixel-centre convention), extra columns (MEI xi) unchanged: exact for PINHOLE and MEI, whose pixel is an
    affine map of the normalised point. PANORAMA rows stay zeros (the pixel grid is normalised by W and H).
    ``camera_types``: one model for every row, or one per row."""
    out = np.array(intr, dtype=np.float64, copy=True)
    keep = np.zeros(out.shape[:-1], bool)
    if isinstance(camera_types, str):
        keep |= normalize_type(camera_types) == "PANORAMA"
    else:
        keep = np.array([normalize_type(t) == "PANORAMA" for t in camera_types], bool).reshape(out.shape[:-1])
    scaled = out.copy()
    scaled[..., 0] *= sx
    scaled[..., 1] *= sy
    scaled[..., 2] = (scaled[..., 2] + 0.5) * sx - 0.5
    scaled[..., 3] = (scaled[..., 3] + 0.5) * sy - 0.5
    return np.where(keep[..., None], out, scaled)


# ---------------------------------------------------------------------- MEI
def equivalent_pinhole(camera_type: str, params) -> np.ndarray:
    """``[fx, fy, cx, cy]`` of the pinhole that agrees with the camera at its centre (MEI: ``f / (1 + xi)``)."""
    t = normalize_type(camera_type)
    p = np.asarray(params, dtype=np.float64).reshape(-1)
    if t == "PANORAMA":
        raise ValueError(PANORAMA_FOV_NOTE + "; it has no equivalent pinhole camera")
    if t == "MEI" and len(p) > 4:
        xi = float(p[4])
        if xi <= -1.0:
            raise ValueError(f"MEI xi must be > -1, got {xi:g}")
        return np.array([p[0] / (1.0 + xi), p[1] / (1.0 + xi), p[2], p[3]])
    return p[:4].copy()


def mei_project(points_cam: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points (N,3) with MEI ``[fx, fy, cx, cy, xi]``; returns ``(uv (N,2), valid (N,))``."""
    fx, fy, cx, cy, xi = (float(v) for v in np.asarray(params).reshape(-1)[:5])
    p = np.asarray(points_cam, dtype=np.float64)
    den = p[:, 2] + xi * np.linalg.norm(p, axis=1)
    valid = den > 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([fx * p[:, 0] / den + cx, fy * p[:, 1] / den + cy], 1)
    return uv, valid


def mei_unproject(uv: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """Unit rays (N,3) of pixels (N,2) under MEI (closed form) and a validity mask."""
    fx, fy, cx, cy, xi = (float(v) for v in np.asarray(params).reshape(-1)[:5])
    uv = np.asarray(uv, dtype=np.float64)
    mx, my = (uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy
    r2 = mx * mx + my * my
    disc = 1.0 + (1.0 - xi * xi) * r2
    valid = disc >= 0
    factor = (xi + np.sqrt(np.maximum(disc, 0.0))) / (1.0 + r2)
    rays = np.stack([factor * mx, factor * my, factor - xi], 1)
    return rays, valid


# ---------------------------------------------------------------------- panorama
def panorama_rays(uu: np.ndarray, vv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unit rays (M,3) of equirectangular pixels (pixel centres; see the module doc)."""
    theta = ((np.asarray(uu, np.float64) + 0.5) / width - 0.5) * 2 * np.pi
    phi = (np.asarray(vv, np.float64) + 0.5) / height * np.pi
    return np.stack([np.sin(phi) * np.sin(theta), -np.cos(phi), np.sin(phi) * np.cos(theta)], axis=1)


# ---------------------------------------------------------------------- depth maps
def pixel_rays(model: str, params: np.ndarray, uu: np.ndarray, vv: np.ndarray, width: int,
               height: int) -> np.ndarray:
    """(M,3) camera-frame rays for integer pixels, scaled so that ``ray * depth`` is the 3D point.

    PINHOLE and MEI depth is z-depth (rays have z = 1; MEI uses the unified model's closed-form
    unprojection with xi = params[4]); PANORAMA depth is ray distance (unit rays, equirectangular:
    theta = (u - 0.5) 2 pi, phi = v pi with u, v the normalised pixel centres).
    """
    model = normalize_type(model)
    uu = np.asarray(uu, np.float64)
    vv = np.asarray(vv, np.float64)
    if model == "PANORAMA":
        return panorama_rays(uu, vv, width, height)
    fx, fy, cx, cy = (float(x) for x in np.asarray(params, np.float64)[:4])
    if model == "MEI" and len(params) > 4:
        rays, ok = mei_unproject(np.stack([uu, vv], 1), params)
        z = rays[:, 2]
        ok &= z > 1e-6
        with np.errstate(invalid="ignore", divide="ignore"):
            rays = rays / z[:, None]
        rays[~ok] = np.nan
        return rays
    mx, my = (uu - cx) / fx, (vv - cy) / fy
    return np.stack([mx, my, np.ones_like(mx)], axis=1)


def project_depth(model: str, params, points: np.ndarray, width: int, height: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of :func:`pixel_rays`: camera-frame points (M,3) -> pixels (M,2), the depth a depth map of
    the model stores for them (z-depth for PINHOLE and MEI, ray distance for PANORAMA) and validity (in front
    of a PINHOLE / MEI camera; any non-zero point for PANORAMA, whose columns wrap)."""
    model = normalize_type(model)
    q = np.asarray(points, np.float64)
    if model == "PANORAMA":
        r = np.linalg.norm(q, axis=1)
        ok = r > 1e-9
        rs = np.where(ok, r, 1.0)
        theta = np.arctan2(q[:, 0], q[:, 2])
        phi = np.arccos(np.clip(-q[:, 1] / rs, -1.0, 1.0))
        uv = np.stack([(theta / (2 * np.pi) + 0.5) * width - 0.5, phi / np.pi * height - 0.5], 1)
        return uv, r, ok
    z = q[:, 2]
    if model == "MEI" and len(np.asarray(params).reshape(-1)) > 4:
        uv, ok = mei_project(q, params)
        return uv, z, ok & (z > 1e-9)
    fx, fy, cx, cy = (float(x) for x in np.asarray(params, np.float64).reshape(-1)[:4])
    ok = z > 1e-9
    zs = np.where(ok, z, 1.0)
    return np.stack([fx * q[:, 0] / zs + cx, fy * q[:, 1] / zs + cy], 1), z, ok


# ====================================================================== batched torch camera models


__all__ = ["CAMERA_TYPES", "PARAM_NAMES", "EXPECTED", "PANORAMA_FOV_NOTE", "normalize_type", "bad_rows", "row_problem", "fov_from_focal", "pinhole_fov_deg", "focal_for_fov", "mei_max_angle", "mei_ray_angle", "FieldOfView", "field_of_view", "scale_intrinsics", "equivalent_pinhole", "mei_project", "mei_unproject", "panorama_rays", "pixel_rays", "project_depth"]
