"""Procedural, high-contrast, multi-scale textures (so corner/KLT features exist at every scale).

A texture is the sum of value-noise octaves (random grids upsampled with bicubic interpolation), plus
random filled blobs, rings and line segments, contrast-stretched and mapped through a random colour
palette. Everything is drawn from a ``numpy.random.Generator``, so a seed gives the same image.
"""

from __future__ import annotations

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """One octave of smooth noise in [0, 1]: a ``cells x cells`` random grid upsampled to ``size``."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def procedural_texture(rng: np.random.Generator, size: int = 512, style: str = "mixed") -> np.ndarray:
    """Return a ``size x size x 3`` uint8 RGB texture.

    ``style`` ``"mixed"`` (objects, walls), ``"ground"`` (finer, grainier) or ``"sky"`` (softer, for far
    backdrops; still textured so it is trackable).
    """
    acc = np.zeros((size, size), np.float32)
    weight = 0.0
    octaves = (2, 4, 8, 16, 32, 64, 128) if style != "sky" else (2, 4, 8, 16, 32, 64)
    for i, cells in enumerate(octaves):
        w = 0.75 ** i if style != "ground" else 0.9 ** i
        acc += w * value_noise(rng, size, cells)
        weight += w
    acc /= weight
    # contrast stretch the smooth part to the full range
    lo, hi = np.percentile(acc, (2, 98))
    acc = np.clip((acc - lo) / max(hi - lo, 1e-6), 0.0, 1.0)

    n_blobs = {"mixed": 60, "ground": 90, "sky": 25}[style]
    n_lines = {"mixed": 30, "ground": 20, "sky": 6}[style]
    for _ in range(n_blobs):
        c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        r = int(size * rng.uniform(0.008, 0.06))
        val = float(rng.choice([0.0, 1.0]) * 0.85 + rng.uniform(0, 0.15))
        if rng.random() < 0.7:
            cv2.circle(acc, c, r, val, thickness=-1, lineType=cv2.LINE_AA)
        else:
            cv2.circle(acc, c, r, val, thickness=max(1, r // 4), lineType=cv2.LINE_AA)
    for _ in range(n_lines):
        p0 = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        ang = rng.uniform(0, np.pi)
        ln = size * rng.uniform(0.05, 0.3)
        p1 = (int(p0[0] + ln * np.cos(ang)), int(p0[1] + ln * np.sin(ang)))
        val = float(rng.choice([0.05, 0.95]))
        cv2.line(acc, p0, p1, val, thickness=int(rng.integers(1, max(2, size // 96))), lineType=cv2.LINE_AA)

    # random 3-colour palette, interpolated piecewise-linearly over the intensity
    palette = rng.uniform(0, 255, size=(3, 3)).astype(np.float32)
    palette[0] *= 0.35  # a dark end
    palette[2] = 255 - palette[0] * 0.5  # a bright end
    if style == "sky":
        palette = palette * 0.5 + np.array([100, 130, 170], np.float32) * 0.5
    t = acc * 2.0
    lower = np.clip(np.floor(t), 0, 1).astype(np.int32)
    frac = (t - lower)[..., None]
    rgb = palette[lower] * (1 - frac) + palette[lower + 1] * frac
    return np.clip(rgb, 0, 255).astype(np.uint8)
