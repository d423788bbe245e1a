"""MEI (unified) camera model and its rectification to the equivalent pinhole camera.

MEI ``[fx, fy, cx, cy, xi]`` projects a camera-frame point P as ``u = fx * X / (Z + xi * |P|) + cx``
(same for v); the model itself lives in :mod:`vipe_dagster.camera`. COLMAP has no such model, so the export resamples MEI frames into a pinhole camera
with the same principal point and ``f / (1 + xi)`` (the pinhole that agrees with the MEI camera at the
image centre, as ViPE uses for its depth priors) and maps every observation through the exact
unprojection. Pixel centres are at integer coordinates (OpenCV convention) on both sides.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..camera import MeiCamera, equivalent_pinhole, mei_project, mei_unproject, rectify_maps

__all__ = ["MeiRectifier", "mei_project", "mei_unproject"]


class MeiRectifier:
    """Resamples MEI frames into the equivalent pinhole camera and maps pixels between the two."""

    def __init__(self, params, width: int, height: int):
        self.params = np.asarray(params, dtype=np.float64)[:5]
        self.width, self.height = int(width), int(height)
        self.pinhole = equivalent_pinhole("MEI", self.params)  # ValueError for xi <= -1
        # the camera module's rectification maps (rays the MEI camera does not see map outside the image)
        self.map_x, self.map_y = rectify_maps(MeiCamera(self.params), self.pinhole, self.width, self.height)

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
