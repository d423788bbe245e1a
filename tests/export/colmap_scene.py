"""Synthetic scene with known ground truth, written through ArtifactStore.

World: a textured wall on the plane Z = WALL_Z (checkerboard in world X, Y) and random 3D points
floating in front of it. A camera moves on a smooth path looking at the wall. Frames are rendered
analytically (wall texture per pixel + the floating points drawn as coloured dots), depth is the
exact z-buffer of the wall, and the sparse map holds the floating points (perturbed like a SLAM map
would be) with noisy pixel observations on every other frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vipe_dagster.io import ArtifactStore, SparseMap

WALL_Z = 6.0
CHECKER = 0.25  # metres


def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, center
    return m


def wall_color(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ground-truth wall texture (uint8 RGB) at world coordinates on the wall."""
    cell = (np.floor(x / CHECKER) + np.floor(y / CHECKER)).astype(np.int64) % 2
    out = np.empty(x.shape + (3,), np.uint8)
    out[..., 0] = np.where(cell == 1, 210, 40)
    out[..., 1] = np.where(cell == 1, 180, 90)
    out[..., 2] = np.where(cell == 1, 60, 160)
    return out


def mei_rays(u: np.ndarray, v: np.ndarray, intr) -> np.ndarray:
    """Rays of MEI pixels, by inverting u = fx X / (Z + xi |P|) + cx on the unit sphere."""
    fx, fy, cx, cy, xi = intr
    mx, my = (u - cx) / fx, (v - cy) / fy
    r2 = mx**2 + my**2
    # for a unit ray with Z = cos(t): r = sin(t) / (cos(t) + xi); solve the quadratic for cos(t)
    cos_t = (-xi * r2 + np.sqrt(1 + (1 - xi**2) * r2)) / (1 + r2)
    r = np.sqrt(r2)
    sin_t = r * (cos_t + xi)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(r > 0, mx / r, 0.0)
        dy = np.where(r > 0, my / r, 0.0)
    return np.stack([sin_t * dx, sin_t * dy, cos_t], -1)


@dataclass
class Scene:
    root: str
    name: str
    store: ArtifactStore
    c2w: np.ndarray  # (N,4,4)
    intr: np.ndarray  # (4,)
    width: int
    height: int
    points_true: np.ndarray
    sparse: SparseMap | None
    noise_px: float


def make_scene(root, name: str = "scene", n_frames: int = 20, width: int = 320, height: int = 240,
               fx: float = 250.0, fy: float = 250.0, n_points: int = 250, point_noise: float = 0.03,
               pixel_noise: float = 0.3, with_sparse: bool = True, with_depth: bool = True,
               seed: int = 0, xi: float = 0.0, dots: bool = True, versioned: bool = True) -> Scene:
    """``xi > 0`` renders with an MEI (unified) camera ``fx fy cx cy xi`` instead of a pinhole.
    ``versioned=False`` writes the files the way ViPE and the released datasets do (no generation stamps)."""
    rng = np.random.default_rng(seed)
    store = ArtifactStore(str(root), versioned=versioned)
    cx, cy = (width - 1) / 2 + 3.0, (height - 1) / 2 - 2.0
    intr = np.array([fx, fy, cx, cy] + ([xi] if xi else []), np.float64)
    t = np.linspace(0, 1, n_frames)
    centers = np.stack([1.2 * np.sin(2.0 * t) - 0.6, 0.3 * np.cos(3.0 * t) - 0.3, 0.8 * t], 1)
    targets = np.stack([0.4 * np.cos(2.5 * t), 0.2 * np.sin(1.7 * t), np.full(n_frames, WALL_Z)], 1)
    c2w = np.stack([look_at(c, g) for c, g in zip(centers, targets, strict=True)]).astype(np.float32)
    c2w64 = c2w.astype(np.float64)

    pts = np.stack([rng.uniform(-2.0, 2.0, n_points), rng.uniform(-1.5, 1.5, n_points),
                    rng.uniform(2.5, 4.5, n_points)], 1)
    colors = rng.integers(0, 256, (n_points, 3), dtype=np.uint8)

    uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    if xi:
        rays = mei_rays(uu, vv, intr)
    else:
        rays = np.stack([(uu - cx) / fx, (vv - cy) / fy, np.ones_like(uu)], -1)
    frames, depths = [], []
    obs_f, obs_p, obs_uv = [], [], []
    for i in range(n_frames):
        r, c = c2w64[i, :3, :3], c2w64[i, :3, 3]
        dw = rays @ r.T
        lam = (WALL_Z - c[2]) / dw[..., 2]
        hit = c + lam[..., None] * dw
        img = wall_color(hit[..., 0], hit[..., 1])
        depths.append((lam * rays[..., 2]).astype(np.float32))  # camera z of the hit point
        pc = (pts - c) @ r
        den = pc[:, 2] + xi * np.linalg.norm(pc, axis=1)
        uv = np.stack([fx * pc[:, 0] / den + cx, fy * pc[:, 1] / den + cy], 1)
        vis = (pc[:, 2] > 0.1) & (uv[:, 0] > 2) & (uv[:, 0] < width - 3) & (uv[:, 1] > 2) & (uv[:, 1] < height - 3)
        for k in np.nonzero(vis)[0] if dots else []:
            cv2.circle(img, (int(round(uv[k, 0])), int(round(uv[k, 1]))), 2, tuple(int(x) for x in colors[k]), -1)
        frames.append(img)
        if i % 2 == 0:  # keyframes observe; odd frames have no observations
            ks = np.nonzero(vis)[0]
            obs_f.append(np.full(len(ks), i))
            obs_p.append(ks)
            obs_uv.append(uv[ks] + rng.normal(0, pixel_noise, (len(ks), 2)))

    store.write_pose(name, c2w)
    store.write_intrinsics(name, np.tile(intr.astype(np.float32), (n_frames, 1)),
                           camera_type="MEI" if xi else "PINHOLE")
    store.write_rgb(name, frames, fps=10.0)
    if with_depth:
        store.write_depth(name, depths)
    sparse = None
    if with_sparse:
        sparse = SparseMap(
            points=(pts + rng.normal(0, point_noise, pts.shape)).astype(np.float32), colors=colors,
            obs_frame=np.concatenate(obs_f).astype(np.int32), obs_point=np.concatenate(obs_p).astype(np.int32),
            obs_uv=np.concatenate(obs_uv).astype(np.float32), keyframes=np.arange(0, n_frames, 2, dtype=np.int32))
        store.write_sparse_map(name, sparse)
    store.write_manifest(name, {"schema": 1, "input": {"uri": "synthetic"}})
    return Scene(str(root), name, store, c2w, intr, width, height, pts, sparse, pixel_noise)
