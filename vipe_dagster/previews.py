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


# ----------------------------------------------------------------------------- explained previews
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.42, colour=(30, 30, 30),
          outline: bool = False) -> None:
    if outline:
        cv2.putText(img, text, org, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
        colour = (255, 255, 255)
    cv2.putText(img, text, org, _FONT, scale, colour, 1, cv2.LINE_AA)


def _nice_length(span: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k) of about a quarter of ``span``."""
    target = max(span / 4.0, 1e-9)
    k = 10 ** np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * k <= target:
            return float(m * k)
    return float(k)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def colour_bar(height: int, lo: float, hi: float, unit: str, width: int = 70) -> np.ndarray:
    """A vertical turbo colour bar (near = red at the top ... far = blue at the bottom, the depth colour map's
    convention) with its range written beside it."""
    from .viz.geometry import depth_colormap

    bar_h = max(height - 30, 10)
    ramp = np.linspace(lo, hi, bar_h, dtype=np.float32)[:, None].repeat(16, axis=1)
    img = np.full((height, width, 3), 255, np.uint8)
    img[15:15 + bar_h, 4:20] = depth_colormap(ramp, lo, hi)
    cv2.rectangle(img, (4, 15), (19, 14 + bar_h), (80, 80, 80), 1)
    for t, v in ((0.0, lo), (0.5, 0.5 * (lo + hi)), (1.0, hi)):
        y = int(15 + t * (bar_h - 1))
        cv2.line(img, (20, y), (25, y), (80, 80, 80), 1)
        _text(img, _fmt(v), (27, y + 4), 0.36)
    _text(img, unit[:10], (2, 11), 0.36)
    return img


def depth_sheet(items: Sequence[tuple[int, np.ndarray, np.ndarray]], lo: float, hi: float, unit: str,
                tile_width: int = 220, gap: int = 6) -> bytes:
    """Frames and their depth maps side by side (rows of ``rgb | depth``), each labelled with its frame index,
    all on one colour scale with a colour bar and the range: what a depth artifact looks like, readably."""
    from .viz.geometry import depth_colormap

    if not items:
        raise ArtifactError("depth preview needs at least one frame")
    rows = []
    for idx, rgb, depth in items:
        h, w = depth.shape[:2]
        th = max(2, int(round(h * tile_width / w)))
        a = cv2.resize(rgb, (tile_width, th), interpolation=cv2.INTER_AREA)
        b = cv2.resize(depth_colormap(depth, lo, hi), (tile_width, th), interpolation=cv2.INTER_NEAREST)
        valid = np.isfinite(depth) & (depth > 0)
        _text(a, f"frame {idx}", (6, 18), 0.45, outline=True)
        _text(b, f"depth, {100 * valid.mean():.0f}% valid", (6, 18), 0.45, outline=True)
        row = np.full((th, 2 * tile_width + gap, 3), 255, np.uint8)
        row[:, :tile_width], row[:, tile_width + gap:] = a, b
        rows.append(row)
    body_h = sum(r.shape[0] for r in rows) + gap * (len(rows) - 1)
    body = np.full((body_h, rows[0].shape[1], 3), 255, np.uint8)
    y = 0
    for r in rows:
        body[y:y + r.shape[0]] = r
        y += r.shape[0] + gap
    bar = colour_bar(body_h, lo, hi, unit)
    sheet = np.full((body_h + 2 * gap, body.shape[1] + bar.shape[1] + 3 * gap, 3), 255, np.uint8)
    sheet[gap:gap + body_h, gap:gap + body.shape[1]] = body
    sheet[gap:gap + body_h, 2 * gap + body.shape[1]:2 * gap + body.shape[1] + bar.shape[1]] = bar
    return encode_png(sheet)


def mask_sheet(items: Sequence[tuple[int, np.ndarray, np.ndarray]], tile_width: int = 220, gap: int = 6) -> bytes:
    """Frames with their dynamic-object masks tinted and outlined, labelled with frame index and mask share."""
    from .viz.geometry import mask_overlay

    tiles = []
    for idx, rgb, mask in items:
        over = mask_overlay(rgb, mask)
        tiles.append((f"frame {idx}, {100 * float((mask != 0).mean()):.1f}% masked", over))
    return labelled_grid(tiles, tile_width=tile_width, gap=gap)


def labelled_grid(tiles: Sequence[tuple[str, np.ndarray]], tile_width: int = 220, cols: int = 4,
                  gap: int = 6) -> bytes:
    """A grid of images with white gaps between them and a caption strip under each."""
    if not tiles:
        raise ArtifactError("preview grid needs at least one image")
    cap = 20
    prepared = []
    for label, img in tiles:
        h, w = img.shape[:2]
        th = max(2, int(round(h * tile_width / w)))
        t = np.full((th + cap, tile_width, 3), 255, np.uint8)
        t[:th] = cv2.resize(img, (tile_width, th), interpolation=cv2.INTER_AREA)
        _text(t, label[:40], (3, th + 14), 0.38)
        prepared.append(t)
    cols = min(cols, len(prepared))
    rows = (len(prepared) + cols - 1) // cols
    th = max(t.shape[0] for t in prepared)
    sheet = np.full((rows * th + (rows + 1) * gap, cols * tile_width + (cols + 1) * gap, 3), 255, np.uint8)
    for i, t in enumerate(prepared):
        r, c = divmod(i, cols)
        y, x = gap + r * (th + gap), gap + c * (tile_width + gap)
        sheet[y:y + t.shape[0], x:x + tile_width] = t
    return encode_png(sheet)


def trajectory_views(c2w: np.ndarray, keyframes: Sequence[int] = (), valid: np.ndarray | None = None,
                     unit: str = "relative units", title: str = "", size: int = 360) -> bytes:
    """The camera path from above (x right, z forward) and from the side (z forward, y down), equal aspect,
    with a scale bar, start (green) and end (red) markers, keyframes circled, frames whose pose is not a
    measurement (``valid`` False) left out of the line and counted in the caption."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise ArtifactError(f"trajectory plot needs (N,4,4) poses, got {c2w.shape}")
    n = len(c2w)
    ok = np.isfinite(c2w).all(axis=(1, 2)) if valid is None else (np.asarray(valid, bool)
                                                                   & np.isfinite(c2w).all(axis=(1, 2)))
    if not ok.any():
        raise ArtifactError("trajectory plot: no valid camera pose")
    centres = c2w[:, :3, 3]
    span = float(np.ptp(centres[ok], axis=0).max()) or 1.0
    bar = _nice_length(span)
    top = 24
    panels = []
    for axes, name in (((0, 2), "top view: x right, z forward"), ((2, 1), "side view: z forward, -y up")):
        xy = centres[:, axes].copy()
        if name.startswith("side"):
            xy[:, 1] = -xy[:, 1]  # y points down in OpenCV: draw -y upwards
        lo, hi = xy[ok].min(0), xy[ok].max(0)
        scale = (size - 60) / max(float((hi - lo).max()), 1e-9)
        mid = (lo + hi) / 2

        def px(p: np.ndarray, mid=mid, scale=scale) -> tuple[int, int]:
            q = (p - mid) * scale
            return int(round(size / 2 + q[0])), int(round(top + size / 2 - q[1]))

        img = np.full((size + top + 30, size, 3), 255, np.uint8)
        _text(img, name, (6, 16), 0.42)
        cv2.rectangle(img, (2, top), (size - 3, top + size - 1), (220, 220, 220), 1)
        for i in range(1, n):
            if ok[i] and ok[i - 1]:
                t = i / max(n - 1, 1)
                cv2.line(img, px(xy[i - 1]), px(xy[i]), (int(40 + 200 * t), 60, int(240 - 200 * t)), 2, cv2.LINE_AA)
        for k in keyframes:
            if 0 <= int(k) < n and ok[int(k)]:
                cv2.circle(img, px(xy[int(k)]), 3, (0, 0, 0), 1, cv2.LINE_AA)
        first, last = int(np.argmax(ok)), int(n - 1 - np.argmax(ok[::-1]))
        cv2.circle(img, px(xy[first]), 6, (0, 160, 0), -1, cv2.LINE_AA)
        cv2.circle(img, px(xy[last]), 6, (210, 30, 30), -1, cv2.LINE_AA)
        L = int(round(bar * scale))
        y0 = top + size + 16
        cv2.line(img, (10, y0), (10 + L, y0), (0, 0, 0), 2)
        for x in (10, 10 + L):
            cv2.line(img, (x, y0 - 5), (x, y0 + 5), (0, 0, 0), 2)
        _text(img, f"{_fmt(bar)} {unit}", (18 + L, y0 + 5), 0.42)
        panels.append(img)
    gap = 8
    head = 26
    out = np.full((panels[0].shape[0] + head + 22, 2 * size + gap, 3), 255, np.uint8)
    out[head:head + panels[0].shape[0], :size] = panels[0]
    out[head:head + panels[0].shape[0], size + gap:] = panels[1]
    _text(out, (title or "camera trajectory")[:80], (6, 18), 0.5)
    _text(out, f"{n} frames, {int(ok.sum())} valid ({n - int(ok.sum())} not measured); start green, end red, "
          f"keyframes circled", (6, out.shape[0] - 8), 0.4, (80, 80, 80))
    return encode_png(out)
