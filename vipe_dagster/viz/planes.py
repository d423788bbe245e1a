"""Analytic test scene: textured planes and a moving sphere, ray-cast exactly, written as a ViPE result.

Used by the viewer/video tests and the visualisation benchmark: every pixel's depth, colour and
instance id are computed in closed form (ray-plane / ray-sphere intersection), so frames of any size
and count are generated quickly without a renderer. World = the first camera frame, OpenCV axes
(y down): a floor at y = +1.2, a back wall at z = 7, side walls at x = +-3.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io import ArtifactStore

# (normal, offset) with n . X = offset, and two in-plane axes for the texture
PLANES = [
    (np.array([0.0, 1.0, 0.0]), 1.2, np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), (200, 180, 120)),   # floor
    (np.array([0.0, 0.0, 1.0]), 7.0, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (90, 140, 220)),    # back
    (np.array([1.0, 0.0, 0.0]), -3.5, np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), (210, 90, 90)),    # left
    (np.array([1.0, 0.0, 0.0]), 3.5, np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), (90, 200, 110)),    # right
]
SPHERE_RADIUS = 0.6
SPHERE_COLOR = np.array([250, 220, 40], np.float32)


@dataclass
class PlaneScene:
    width: int
    height: int
    n_frames: int
    c2w: np.ndarray  # (N,4,4) float32
    K: np.ndarray  # (4,) fx fy cx cy

    def sphere_centre(self, i: int) -> np.ndarray:
        s = i / max(1, self.n_frames - 1)
        return np.array([-2.0 + 4.0 * s, 0.3, 4.0 + 0.5 * np.sin(2 * np.pi * s)])


def make_scene(width: int = 96, height: int = 72, n_frames: int = 24, focal_scale: float = 0.9) -> PlaneScene:
    """Camera moving along a gentle arc and yawing slightly while looking down the room."""
    s = np.linspace(0.0, 1.0, n_frames)
    c2w = np.tile(np.eye(4, dtype=np.float32), (n_frames, 1, 1))
    for i, t in enumerate(s):
        yaw = 0.25 * np.sin(2 * np.pi * t)
        cy_, sy_ = np.cos(yaw), np.sin(yaw)
        R = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
        c2w[i, :3, :3] = R
        c2w[i, :3, 3] = [1.5 * np.sin(np.pi * t) - 0.2, -0.1 * t, 2.0 * t]
    f = focal_scale * width
    K = np.array([f, f, (width - 1) / 2, (height - 1) / 2], np.float32)
    return PlaneScene(width, height, n_frames, c2w, K)


def render_frame(scene: PlaneScene, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact (rgb uint8 HxWx3, z-depth float32 HxW, instance mask uint8 HxW) of frame ``i``."""
    w, h = scene.width, scene.height
    fx, fy, cx, cy = (float(v) for v in scene.K)
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)  # z = 1
    R, C = scene.c2w[i, :3, :3].astype(np.float64), scene.c2w[i, :3, 3].astype(np.float64)
    rays = rays_cam @ R.T
    best_t = np.full((h, w), np.inf)
    rgb = np.zeros((h, w, 3), np.float64)
    for n, off, a1, a2, base in PLANES:
        denom = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (off - C @ n) / denom
        hit = np.isfinite(t) & (t > 1e-3) & (t < best_t)
        if not hit.any():
            continue
        X = C + rays * t[..., None]
        p, q = X @ a1, X @ a2
        check = ((np.floor(p * 2) + np.floor(q * 2)) % 2) * 0.35 + 0.65
        stripe = 0.85 + 0.15 * np.sin(p * 7.0) * np.cos(q * 5.0)
        col = np.asarray(base, np.float64)[None, None] * (check * stripe)[..., None]
        best_t = np.where(hit, t, best_t)
        rgb = np.where(hit[..., None], col, rgb)
    # moving sphere (the dynamic object)
    S = scene.sphere_centre(i)
    oc = C - S
    b = rays @ oc
    a = np.einsum("hwk,hwk->hw", rays, rays)
    c = oc @ oc - SPHERE_RADIUS ** 2
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        ts = (-b - np.sqrt(disc)) / a
    sphere = (disc > 0) & (ts > 1e-3) & (ts < best_t)
    hitp = C + rays * np.where(sphere, ts, 0.0)[..., None]
    normal = (hitp - S) / SPHERE_RADIUS
    view = -rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    shade = 0.35 + 0.65 * np.clip(np.einsum("hwk,hwk->hw", normal, view), 0.0, 1.0)
    rgb = np.where(sphere[..., None], SPHERE_COLOR[None, None] * shade[..., None], rgb)
    best_t = np.where(sphere, ts, best_t)
    depth = np.where(np.isfinite(best_t), best_t, 0.0).astype(np.float32)
    mask = sphere.astype(np.uint8)
    return np.clip(rgb, 0, 255).astype(np.uint8), depth, mask


def write_scene(store: ArtifactStore, name: str, scene: PlaneScene, fps: float = 30.0) -> None:
    """Write rgb, pose, intrinsics, depth, mask (+ phrases) and the info marker for ``name``."""
    with store.rgb_writer(name, fps) as rgb_w, store.depth_writer(name) as dep_w, store.mask_writer(name) as msk_w:
        for i in range(scene.n_frames):
            rgb, depth, mask = render_frame(scene, i)
            rgb_w.add(rgb)
            dep_w.add(depth)
            msk_w.add(mask)
    store.write_phrases(name, {1: "ball"})
    store.write_pose(name, scene.c2w)
    store.write_intrinsics(name, np.repeat(scene.K[None], scene.n_frames, axis=0))
    store.write_info(name, {"ba_residual": 0.0})
