"""Camera trajectories (OpenCV camera-to-world, world y axis up) for the synthetic scenes.

Every trajectory is a deterministic function of the frame times and a ``numpy.random.Generator``.
Speeds are chosen for realistic parallax at 30 fps: a walking pace for ``forward``, about 20 deg/s
around the target for ``orbit``, a slowly wandering hand for ``handheld`` and a 20-30 deg/s pan for
``rotation``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

WORLD_UP = np.array([0.0, 1.0, 0.0])
TRAJECTORIES = ("forward", "orbit", "handheld", "rotation", "fixed")


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = WORLD_UP) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward) at ``eye`` looking at ``target``."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def _yaw_pitch_c2w(eye: np.ndarray, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Camera at ``eye`` looking along +z world rotated by yaw (about up) and pitch (up positive)."""
    fwd = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    c2w = look_at(eye, eye + fwd)
    if roll:
        c2w[:3, :3] = c2w[:3, :3] @ Rotation.from_rotvec([0, 0, roll]).as_matrix()
    return c2w


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, sigma_frames: float) -> np.ndarray:
    """Zero-mean, unit-rms, temporally smooth noise of shape (n, dims)."""
    pad = int(4 * sigma_frames) + 1
    raw = rng.standard_normal((n + 2 * pad, dims))
    sm = gaussian_filter1d(raw, sigma_frames, axis=0, mode="wrap")[pad:pad + n]
    sm -= sm.mean(axis=0, keepdims=True)
    rms = np.sqrt((sm ** 2).mean(axis=0, keepdims=True))
    return sm / np.maximum(rms, 1e-9)


def make_trajectory(kind: str, scene: str, num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(N,4,4) float64 OpenCV camera-to-world poses."""
    t = np.arange(num_frames) / fps
    duration = max(t[-1], 1e-6) if num_frames > 1 else 1.0
    outdoor = scene == "outdoor"
    h = 1.6 if outdoor else 1.5
    out = np.zeros((num_frames, 4, 4))
    if kind == "forward":
        speed = 1.8 if outdoor else 1.1  # m/s
        run = min(speed * duration, 60.0 if outdoor else 8.5)
        z0 = -30.0 if outdoor else -5.5
        ph = rng.uniform(0, 2 * np.pi, 4)
        for i, ti in enumerate(t):
            s = ti / duration
            eye = np.array([0.12 * np.sin(2 * np.pi * 0.45 * ti + ph[0]),
                            h + 0.025 * np.sin(2 * np.pi * 1.8 * ti + ph[1]),
                            z0 + run * s])
            yaw = np.deg2rad(6.0) * np.sin(2 * np.pi * 0.2 * ti + ph[2])
            pitch = np.deg2rad(-4.0 + 2.0 * np.sin(2 * np.pi * 0.3 * ti + ph[3]))
            out[i] = _yaw_pitch_c2w(eye, yaw, pitch)
    elif kind == "orbit":
        radius = 10.0 if outdoor else 2.8
        omega = 0.22 if outdoor else 0.35  # rad/s
        a0 = rng.uniform(0, 2 * np.pi)
        target = np.array([0.0, 1.0 if not outdoor else 1.5, 0.0])
        for i, ti in enumerate(t):
            a = a0 + omega * ti
            eye = np.array([radius * np.sin(a), h + 0.1 * np.sin(0.7 * ti), radius * np.cos(a)])
            out[i] = look_at(eye, target)
    elif kind == "handheld":
        base = np.array([0.0, h, -12.0 if outdoor else -3.0])
        pos_noise = _smooth_noise(rng, num_frames, 3, sigma_frames=0.6 * fps)
        rot_noise = _smooth_noise(rng, num_frames, 3, sigma_frames=0.35 * fps)
        drift = rng.normal(size=3)
        drift[1] = 0.0
        drift *= (0.25 if outdoor else 0.15) / max(np.linalg.norm(drift), 1e-9)  # slow wander, m/s
        amp = np.array([0.12, 0.06, 0.12]) * (2.0 if outdoor else 1.0)
        travel = np.clip(drift[None] * t[:, None], -3.0, 3.0)
        for i in range(num_frames):
            eye = base + travel[i] + amp * pos_noise[i]
            yaw, pitch, roll = np.deg2rad([4.0, 2.5, 1.5]) * rot_noise[i]
            out[i] = _yaw_pitch_c2w(eye, yaw, pitch - np.deg2rad(3.0), roll)
    elif kind == "rotation":
        eye = np.array([0.0, h, -12.0 if outdoor else -3.0])
        ph = rng.uniform(0, 2 * np.pi, 2)
        f_pan = 0.12
        for i, ti in enumerate(t):
            yaw = np.deg2rad(32.0) * np.sin(2 * np.pi * f_pan * ti + ph[0])
            pitch = np.deg2rad(-3.0 + 7.0 * np.sin(2 * np.pi * 0.07 * ti + ph[1]))
            out[i] = _yaw_pitch_c2w(eye, yaw, pitch)
    elif kind == "fixed":
        eye = np.array([0.0, h, -14.0 if outdoor else -4.5])
        target = np.array([rng.uniform(-0.5, 0.5), 1.0, 0.0])
        out[:] = look_at(eye, target)[None]
    else:
        raise ValueError(f"unknown trajectory {kind!r}")
    return out


def path_length(c2w: np.ndarray) -> float:
    """Sum of the camera centre displacements, metres."""
    p = np.asarray(c2w)[:, :3, 3]
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0
