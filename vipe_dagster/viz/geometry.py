"""Geometry and colour helpers shared by the viewer and the result videos."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .. import camera as cammod
from ..camera import pixel_rays  # noqa: F401 (re-exported: the viewer's and the tests' name)
from ..depth.reliable import reliable_depth_mask

# per-pixel colours for instance ids 1..255 (0 = background is never drawn)
_rng = np.random.default_rng(7)
INSTANCE_COLORS = np.concatenate([np.zeros((1, 3), np.uint8),
                                  _rng.integers(60, 256, size=(255, 3)).astype(np.uint8)])


def auto_step(width: int, height: int, max_points: int) -> int:
    """Grid step (>= 2, the EgoX/COLMAP default) so one frame gives at most ``max_points`` samples."""
    return max(2, int(math.ceil(math.sqrt(width * height / max(1, max_points)))))


def unproject_frame(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, rgb: np.ndarray | None,
                    mask: np.ndarray | None, step: int = 2, model: str = "PINHOLE",
                    k_size: tuple[int, int] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reliable-depth points of one frame on the grid ``u, v in {0, step, ...}``, split by the mask.

    ``K`` holds the stored intrinsics of the frame (fx fy cx cy [xi]) for ``model``, in pixels of an
    image of size ``k_size`` (w, h); when the depth map has another size they are rescaled to it
    (pixel-centre convention). Returns
    ``{"static": (xyz, rgb), "dynamic": (xyz, rgb)}`` with world points (float32, OpenCV c2w applied)
    and uint8 colours; "dynamic" holds pixels whose instance id is non-zero.
    """
    d = np.asarray(depth, np.float32)
    h, w = d.shape
    keep = reliable_depth_mask(d)[::step, ::step]
    vv, uu = np.nonzero(keep)
    vv, uu = vv * step, uu * step
    z = d[vv, uu].astype(np.float32)
    K = np.array(K, np.float64, copy=True)
    if k_size is not None and tuple(k_size) != (w, h):
        K = cammod.scale_intrinsics(K, w / k_size[0], h / k_size[1], model)
    cam = (pixel_rays(model, K, uu, vv, w, h) * z[:, None]).astype(np.float32)
    pose = np.asarray(c2w, np.float32)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    ok = np.all(np.isfinite(world), axis=1) & (np.linalg.norm(world, axis=1) < 1e6)
    if rgb is not None:
        img = rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)
        col = img[vv, uu]
    else:
        col = np.full((len(vv), 3), 200, np.uint8)
    if mask is not None and mask.shape == (h, w):
        dyn = mask[vv, uu] != 0
    else:
        dyn = np.zeros(len(vv), bool)
    return {
        "static": (world[ok & ~dyn], col[ok & ~dyn]),
        "dynamic": (world[ok & dyn], col[ok & dyn]),
    }


class MeanBackground:
    """Per-pixel mean of background depth and colour over frames (EgoX ``--use_mean_bg``).

    Per frame a pixel counts when its depth is reliable and its instance id is 0 (or there is no
    mask); the mean depth is unprojected once with the first frame's pose and intrinsics and kept
    where the mean itself is reliable.
    """

    def __init__(self) -> None:
        self.count: np.ndarray | None = None
        self.sum_d: np.ndarray | None = None
        self.sum_rgb: np.ndarray | None = None
        self.frames = 0

    def add(self, depth: np.ndarray, rgb: np.ndarray | None, mask: np.ndarray | None) -> None:
        d = np.asarray(depth, np.float32)
        h, w = d.shape
        if self.count is None:
            self.count = np.zeros((h, w), np.float32)
            self.sum_d = np.zeros((h, w), np.float64)
            self.sum_rgb = np.zeros((h, w, 3), np.float64)
        if (h, w) != self.count.shape:
            return
        valid = reliable_depth_mask(d)
        if mask is not None and mask.shape == (h, w):
            valid &= mask == 0
        self.count += valid
        self.sum_d[valid] += d[valid]
        if rgb is not None:
            img = rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)
            self.sum_rgb[valid] += img[valid]
        self.frames += 1

    def points(self, K: np.ndarray, c2w: np.ndarray, step: int = 2, model: str = "PINHOLE",
               k_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.count is None:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_d = np.where(self.count > 0, self.sum_d / np.maximum(self.count, 1), 0.0).astype(np.float32)
            mean_rgb = np.clip(self.sum_rgb / np.maximum(self.count, 1)[..., None], 0, 255).astype(np.uint8)
        pts = unproject_frame(mean_d, K, c2w, mean_rgb, None, step, model, k_size)["static"]
        return pts


def frustum_segments(c2w: np.ndarray, K: np.ndarray, width: int, height: int, scale: float) -> np.ndarray:
    """Wireframe pyramids for many cameras: (N*8, 2, 3) float32 line segments in world coordinates.

    The image plane is drawn at depth ``scale`` (OpenCV axes); 4 edges from the centre, 4 around the image.
    """
    c2w = np.asarray(c2w, np.float32)
    K = np.asarray(K, np.float32)
    n = len(c2w)
    fx, fy, cx, cy = K[:, 0], K[:, 1], K[:, 2], K[:, 3]
    us = np.array([0, width, width, 0], np.float32)
    vs = np.array([0, 0, height, height], np.float32)
    # corners in camera coordinates at depth `scale`: (N,4,3)
    corners = np.stack([(us[None] - cx[:, None]) / fx[:, None] * scale,
                        (vs[None] - cy[:, None]) / fy[:, None] * scale,
                        np.full((n, 4), scale, np.float32)], axis=-1)
    world = np.einsum("nij,nkj->nki", c2w[:, :3, :3], corners) + c2w[:, None, :3, 3]
    centre = np.broadcast_to(c2w[:, None, :3, 3], (n, 4, 3))
    spokes = np.stack([centre, world], axis=2)  # (N,4,2,3)
    rim = np.stack([world, np.roll(world, -1, axis=1)], axis=2)  # (N,4,2,3)
    return np.concatenate([spokes, rim], axis=1).reshape(n * 8, 2, 3).astype(np.float32)


def up_vector(c2w: np.ndarray) -> np.ndarray:
    """World 'up' estimated as the mean of the cameras' -y axes (OpenCV y points down)."""
    up = -np.asarray(c2w, np.float64)[:, :3, 1].mean(axis=0)
    nrm = np.linalg.norm(up)
    return (up / nrm) if nrm > 1e-6 else np.array([0.0, -1.0, 0.0])


def topdown_basis(c2w: np.ndarray) -> np.ndarray:
    """(2,3) rows spanning the ground plane: 'right' (mean camera x) and 'forward' (up x right)."""
    up = up_vector(c2w)
    right = np.asarray(c2w, np.float64)[:, :3, 0].mean(axis=0)
    right = right - up * (right @ up)
    if np.linalg.norm(right) < 1e-6:
        right = np.cross(up, [0.0, 0.0, 1.0]) if abs(up[2]) < 0.9 else np.cross(up, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    forward = np.cross(up, right)
    # with OpenCV axes, z (forward) = x (right) cross y (down) = -(x cross up) = up cross x
    return np.stack([right, forward])


def rotation_to_wxyz(R: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of a 3x3 rotation matrix."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(np.asarray(R, np.float64)).as_quat()
    return np.array([w, x, y, z])


def depth_range(depths: list[np.ndarray]) -> tuple[float, float]:
    """Robust colour-map range (2nd and 98th percentiles of the valid depths of some frames)."""
    vals = [d[np.isfinite(d) & (d > 0)] for d in depths]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    allv = np.concatenate(vals)
    lo, hi = np.percentile(allv, [2, 98])
    if hi <= lo:
        hi = lo + 1e-3
    return float(lo), float(hi)


def depth_colormap(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """HxWx3 uint8 RGB turbo colour map of depth in [lo, hi] (near = red, far = blue); invalid = black."""
    d = np.asarray(depth, np.float32)
    valid = np.isfinite(d) & (d > 0)
    t = np.clip((np.where(valid, d, hi) - lo) / (hi - lo), 0.0, 1.0)
    idx = np.round((1.0 - t) * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(idx, cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def mask_overlay(rgb: np.ndarray, mask: np.ndarray | None, alpha: float = 0.55) -> np.ndarray:
    """RGB with instances (id != 0) tinted in their colour and outlined."""
    out = rgb.copy()
    if mask is None:
        return out
    if mask.shape != rgb.shape[:2]:
        mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    fg = mask != 0
    if fg.any():
        col = INSTANCE_COLORS[mask]
        out[fg] = np.round((1 - alpha) * rgb[fg] + alpha * col[fg]).astype(np.uint8)
        edges = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        grown = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # outer ring takes the neighbouring id
        out[edges] = INSTANCE_COLORS[grown][edges]
    return out
