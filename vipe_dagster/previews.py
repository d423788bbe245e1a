"""Small PNG previews of results that people look at (contact sheets, top-down trajectory plots).

Rendered with OpenCV (no matplotlib dependency); each function returns PNG bytes so the caller can
write them atomically into the artifact store and/or inline them (base64) in Dagster metadata.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from .errors import ArtifactError


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ArtifactError(f"could not encode a {rgb.shape} preview image as PNG")
    return buf.tobytes()


def markdown_image(png: bytes, alt: str = "preview", max_bytes: int = 48_000) -> str:
    """Markdown with the image inlined as a data URI (what the Dagster UI shows for ``MetadataValue.md``).

    Photographic previews are re-encoded as JPEG when the PNG is larger than ``max_bytes`` so the
    event log stays small.
    """
    mime, data = "image/png", png
    if len(png) > max_bytes:
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        for quality in (85, 70, 50):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and (len(buf) <= max_bytes or quality == 50):
                mime, data = "image/jpeg", buf.tobytes()
                break
    return f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode('ascii')})"


def contact_sheet(frames: Sequence[tuple[int, np.ndarray]], tile_width: int = 200, cols: int = 4) -> bytes:
    """A grid of frames with their indices written on them."""
    if not frames:
        raise ArtifactError("contact sheet needs at least one frame")
    tiles = []
    for idx, f in frames:
        h, w = f.shape[:2]
        th = max(2, int(round(h * tile_width / w)))
        t = cv2.resize(f, (tile_width, th), interpolation=cv2.INTER_AREA)
        cv2.putText(t, str(idx), (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(t, str(idx), (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    th = max(t.shape[0] for t in tiles)
    cols = min(cols, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.full((rows * th, cols * tile_width, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * th: r * th + t.shape[0], c * tile_width: (c + 1) * tile_width] = t
    return encode_png(sheet)


def trajectory_topdown(c2w: np.ndarray, keyframes: Sequence[int] = (), size: int = 420,
                       title: str = "") -> bytes:
    """Top-down (x right, z up the image) plot of camera centres with heading ticks.

    Colour runs blue -> red along time; keyframes are circled; the start is a green square.
    Axes keep an equal aspect so the shape is not distorted.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise ArtifactError(f"trajectory plot needs (N,4,4) poses, got {c2w.shape}")
    centres = c2w[:, :3, 3]
    fwd = c2w[:, :3, 2]  # camera z axis (OpenCV forward) in world
    xy = centres[:, [0, 2]]
    margin, top = 36, 28
    lo, hi = xy.min(0), xy.max(0)
    span = float(max(hi - lo)) or 1.0
    scale = (size - 2 * margin) / span
    mid = (lo + hi) / 2

    def px(p: np.ndarray) -> tuple[int, int]:
        q = (p - mid) * scale
        return int(round(size / 2 + q[0])), int(round(top / 2 + size / 2 - q[1]))

    img = np.full((size + top, size, 3), 255, np.uint8)
    for g in np.linspace(margin, size - margin, 5):  # light grid
        cv2.line(img, (int(g), top), (int(g), size + top - 4), (235, 235, 235), 1)
        cv2.line(img, (4, int(g) + top // 2), (size - 4, int(g) + top // 2), (235, 235, 235), 1)
    n = len(xy)
    tick = 0.06 * span
    step = max(1, n // 40)
    for i in range(n):
        t = i / max(n - 1, 1)
        colour = (int(255 * t), 40, int(255 * (1 - t)))  # RGB: blue -> red
        if i:
            cv2.line(img, px(xy[i - 1]), px(xy[i]), colour, 2, cv2.LINE_AA)
        if i % step == 0:
            f = fwd[i, [0, 2]]
            nf = np.linalg.norm(f)
            if nf > 1e-9:
                cv2.line(img, px(xy[i]), px(xy[i] + f / nf * tick), (120, 120, 120), 1, cv2.LINE_AA)
    for k in keyframes:
        if 0 <= int(k) < n:
            cv2.circle(img, px(xy[int(k)]), 4, (0, 0, 0), 1, cv2.LINE_AA)
    x0, y0 = px(xy[0])
    cv2.rectangle(img, (x0 - 5, y0 - 5), (x0 + 5, y0 + 5), (0, 170, 0), 2)
    label = title or "top-down x/z"
    cv2.putText(img, label[:60], (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"extent {span:.3g}   x right, z up, start = green square", (8, size + top - 10),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    return encode_png(img)
