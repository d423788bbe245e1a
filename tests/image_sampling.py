"""Shared by tests that compare frames through a camera model: plain bilinear sampling written out (an
independent check of the engine's cv2.remap paths)."""

import numpy as np


def bilinear(f: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``f`` (H, W, C) sampled at float pixels ``x, y`` (each at least 0 and below W - 1 / H - 1)."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - ax) * (1 - ay) * f[y0, x0] + ax * (1 - ay) * f[y0, x0 + 1] + (1 - ax) * ay * f[y0 + 1, x0]
            + ax * ay * f[y0 + 1, x0 + 1])
