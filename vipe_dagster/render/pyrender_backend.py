"""OpenGL (pyrender, EGL offscreen) backend for pinhole ego renders of a point cloud.

Points are drawn as GL points of ``2 * point_size`` px with a depth buffer, so the nearest point wins per pixel
(no blending). Camera: an OpenCV pinhole ``fx fy cx cy`` at the output resolution, world-to-camera pose;
the result is rotated 90 degrees clockwise like the splatting backend's output.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if not hasattr(np, "infty"):  # pyrender 0.1.45 uses np.infty, removed in NumPy 2
    np.infty = np.inf  # type: ignore[attr-defined]

_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


class PyrenderPointRenderer:
    """Re-usable offscreen renderer (creating a GL context is the expensive part)."""

    def __init__(self, width: int, height: int):
        import pyrender

        self.width, self.height = width, height
        self._r = pyrender.OffscreenRenderer(width, height)

    def close(self) -> None:
        self._r.delete()

    def __enter__(self) -> PyrenderPointRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, xyz_world: np.ndarray, rgb: np.ndarray, w2c: np.ndarray, intr: np.ndarray,
               point_size: float = 1.5, znear: float = 0.01, zfar: float = 1000.0,
               rotate_cw: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(HxWx3 uint8 image, HxW float32 z-depth with 0 where empty)``."""
        import pyrender

        fx, fy, cx, cy = (float(x) for x in intr)
        scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[1.0, 1.0, 1.0])
        if len(xyz_world):
            colors = np.concatenate([np.asarray(rgb, np.float32) / 255.0, np.ones((len(rgb), 1), np.float32)], 1)
            scene.add(pyrender.Mesh.from_points(np.asarray(xyz_world, np.float32), colors=colors))
        # GL window coordinates put pixel centres at +0.5; OpenCV puts them at integers
        cam = pyrender.IntrinsicsCamera(fx=fx, fy=fy, cx=cx + 0.5, cy=cy + 0.5, znear=znear, zfar=zfar)
        c2w = np.linalg.inv(np.asarray(w2c, np.float64))
        scene.add(cam, pose=c2w @ _CV_TO_GL)
        flags = pyrender.RenderFlags.FLAT
        self._r.point_size = float(2 * point_size)
        color, depth = self._r.render(scene, flags=flags)
        color, depth = np.ascontiguousarray(color[..., :3]), depth.astype(np.float32)
        if rotate_cw:
            color, depth = np.rot90(color, k=-1).copy(), np.rot90(depth, k=-1).copy()
        return color, depth
