"""MEI (unified) camera model and its rectification to the equivalent pinhole camera.

MEI ``[fx, fy, cx, cy, xi]`` projects a camera-frame point P as ``u = fx * X / (Z + xi * |P|) + cx``
(same for v). COLMAP has no such model, so the export resamples MEI frames into a pinhole camera
with the same principal point and ``f / (1 + xi)`` (the pinhole that agrees with the MEI camera at the
image centre, as ViPE uses for its depth priors) and maps every observation through the exact
unprojection. Pixel centres are at integer coordinates (OpenCV convention) on both sides.
"""

from __future__ import annotations

import cv2
import numpy as np


def mei_project(points_cam: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points (N,3); returns ``(uv (N,2), valid (N,))``."""
    fx, fy, cx, cy, xi = (float(v) for v in params[:5])
    p = np.asarray(points_cam, dtype=np.float64)
    den = p[:, 2] + xi * np.linalg.norm(p, axis=1)
    valid = den > 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([fx * p[:, 0] / den + cx, fy * p[:, 1] / den + cy], 1)
    return uv, valid


def mei_unproject(uv: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """Unit rays (N,3) of pixels (N,2) and a validity mask (closed form of the unified model)."""
    fx, fy, cx, cy, xi = (float(v) for v in params[:5])
    uv = np.asarray(uv, dtype=np.float64)
    mx, my = (uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy
    r2 = mx * mx + my * my
    disc = 1.0 + (1.0 - xi * xi) * r2
    valid = disc >= 0
    factor = (xi + np.sqrt(np.maximum(disc, 0.0))) / (1.0 + r2)
    rays = np.stack([factor * mx, factor * my, factor - xi], 1)
    return rays, valid


class MeiRectifier:
    """Resamples MEI frames into the equivalent pinhole camera and maps pixels between the two."""

    def __init__(self, params, width: int, height: int):
        self.params = np.asarray(params, dtype=np.float64)[:5]
        fx, fy, cx, cy, xi = self.params
        if xi <= -1.0:
            raise ValueError(f"MEI xi must be > -1, got {xi}")
        self.width, self.height = int(width), int(height)
        self.pinhole = np.array([fx / (1.0 + xi), fy / (1.0 + xi), cx, cy])
        uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        rays = np.stack([(uu.ravel() - cx) / self.pinhole[0], (vv.ravel() - cy) / self.pinhole[1],
                         np.ones(uu.size)], 1)
        src, ok = mei_project(rays, self.params)
        src[~ok] = -1e6  # outside: remap fills with the border value
        self.map_x = src[:, 0].reshape(height, width).astype(np.float32)
        self.map_y = src[:, 1].reshape(height, width).astype(np.float32)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """The MEI frame resampled (bilinear) into the pinhole camera; pixels outside the view are black."""
        return cv2.remap(rgb, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)

    def _to_pinhole(self, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fx, fy, cx, cy = self.pinhole
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([fx * cam[:, 0] / z + cx, fy * cam[:, 1] / z + cy], 1)
        inside = (z > 1e-9) & (uv[:, 0] >= -0.5) & (uv[:, 0] < self.width - 0.5) & \
            (uv[:, 1] >= -0.5) & (uv[:, 1] < self.height - 0.5)
        return uv, inside

    def pixels_to_pinhole(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map MEI pixels (N,2) to rectified pixels; ``valid`` is False outside the rectified image."""
        rays, ok = mei_unproject(uv, self.params)
        out, inside = self._to_pinhole(rays)
        return out, ok & inside

    def camera_points_to_pinhole(self, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points (N,3) into the rectified image; ``valid`` as above."""
        return self._to_pinhole(np.asarray(cam, dtype=np.float64))

    def unproject_depth(self, depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points of MEI pixels (u, v) whose z-depth is ``depth[v, u]``, and a validity mask."""
        rays, ok = mei_unproject(np.stack([u, v], 1).astype(np.float64), self.params)
        z = depth[v, u].astype(np.float64)
        ok &= rays[:, 2] > 1e-9
        with np.errstate(divide="ignore", invalid="ignore"):
            cam = rays * (z / rays[:, 2])[:, None]
        return cam, ok & np.all(np.isfinite(cam), axis=1)
