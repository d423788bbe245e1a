"""Result videos and preview pictures for a ViPE-format sequence.

``write_vis_video`` streams ``vipe/<n>_vis.mp4``: one output frame per pose, four panels side by side
under a label strip: RGB | depth colour map | instance-mask overlay | top-down trajectory with the
current position. Frames are read one at a time (random-access sources, small cache), so memory does
not grow with the video length. ``preview_images`` returns PNGs for Dagster asset metadata.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..errors import ArtifactError
from ..io import ArtifactStore
from ..io.video import VideoWriter
from .frames import SequenceSource
from .geometry import depth_colormap, depth_range, mask_overlay, topdown_basis

log = logging.getLogger(__name__)

PANELS = ("rgb", "depth", "mask", "trajectory")
MIN_PANEL_HEIGHT = 192
MAX_PANEL_HEIGHT = 540
DEPTH_RANGE_SAMPLES = 16


@dataclass(frozen=True)
class VisLayout:
    """Geometry of a ``_vis.mp4`` frame: a label strip, then the panels left to right."""

    panel_w: int
    panel_h: int
    header_h: int
    upscale: int  # integer nearest-neighbour factor for small inputs (1 = none)

    @property
    def size(self) -> tuple[int, int]:
        return self.panel_w * len(PANELS), self.header_h + self.panel_h

    def box(self, panel: str) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a panel in the output frame."""
        k = PANELS.index(panel)
        return k * self.panel_w, self.header_h, (k + 1) * self.panel_w, self.header_h + self.panel_h


def vis_layout(width: int, height: int) -> VisLayout:
    """Small inputs are enlarged by an integer factor, large ones halved until <= 540 px high."""
    if height < MIN_PANEL_HEIGHT:
        f = math.ceil(MIN_PANEL_HEIGHT / height)
        pw, ph, up = width * f, height * f, f
    else:
        pw, ph, up = width, height, 1
        while ph > MAX_PANEL_HEIGHT:
            pw, ph = pw // 2, ph // 2
    pw += pw % 2
    ph += ph % 2
    header = max(14, ph // 14)
    header += header % 2
    return VisLayout(pw, ph, header, up)


def _fit(img: np.ndarray, layout: VisLayout) -> np.ndarray:
    h, w = img.shape[:2]
    if (w, h) == (layout.panel_w, layout.panel_h):
        return img
    if layout.upscale > 1 and (w * layout.upscale, h * layout.upscale) == (layout.panel_w, layout.panel_h):
        return np.repeat(np.repeat(img, layout.upscale, axis=0), layout.upscale, axis=1)
    interp = cv2.INTER_NEAREST if layout.panel_h >= h else cv2.INTER_AREA
    return cv2.resize(img, (layout.panel_w, layout.panel_h), interpolation=interp)


def _blank(layout: VisLayout, text: str) -> np.ndarray:
    img = np.full((layout.panel_h, layout.panel_w, 3), 40, np.uint8)
    scale = max(0.35, layout.panel_h / 400)
    cv2.putText(img, text, (8, layout.panel_h // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 1,
                cv2.LINE_AA)
    return img


class TrajectoryPlot:
    """Top-down view of the camera centres; the static part is drawn once, the marker per frame."""

    def __init__(self, c2w: np.ndarray, width: int, height: int, margin: float = 0.08):
        self.w, self.h = width, height
        c2w = np.asarray(c2w, np.float64)
        self.valid = np.isfinite(c2w).all(axis=(1, 2))
        if not self.valid.any():
            raise ArtifactError("trajectory plot: no finite camera pose")
        basis = topdown_basis(c2w[self.valid])
        centres = c2w[:, :3, 3]
        xy = centres @ basis.T  # (N,2): right, forward; NaN rows for invalid poses
        heads = c2w[:, :3, 2] @ basis.T
        lo, hi = xy[self.valid].min(axis=0), xy[self.valid].max(axis=0)
        span = float(max((hi - lo).max(), 1e-6))
        s = (1 - 2 * margin) * min(width, height) / span
        mid = (lo + hi) / 2
        px = width / 2 + (xy[:, 0] - mid[0]) * s
        py = height / 2 - (xy[:, 1] - mid[1]) * s  # forward is up in the picture
        self.pts = np.stack([px, py], axis=1)
        hn = np.linalg.norm(heads, axis=1, keepdims=True)
        self.heads = np.where(hn > 1e-9, heads / np.maximum(hn, 1e-9), 0.0) * np.array([1.0, -1.0])
        self.span = span
        self.thick = max(1, round(min(width, height) / 160))
        base = np.full((height, width, 3), 250, np.uint8)
        self._grid(base, s, mid)
        self.pts[~self.valid] = np.nan
        self._fixed = np.round(np.nan_to_num(self.pts) * 16).astype(np.int32)
        edges = np.diff(np.concatenate([[0], self.valid.astype(np.int8), [0]]))
        self._ranges = list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist(),
                                strict=True))  # [start, end) of runs of valid poses
        for run in self._runs(len(self.pts)):
            cv2.polylines(base, [run], False, (170, 170, 170), self.thick, cv2.LINE_AA, shift=4)
        self.base = base

    def _runs(self, end: int) -> list[np.ndarray]:
        """Fixed-point (shift 4) polylines over consecutive valid poses among the first ``end``."""
        out = []
        for a, b in self._ranges:
            if a >= end:
                break
            out.append(self._fixed[a:min(b, end)].reshape(-1, 1, 2))
        return out

    def _grid(self, img: np.ndarray, s: float, mid: np.ndarray) -> None:
        """Light grid lines every power-of-ten metre step (or relative unit)."""
        step = 10 ** math.floor(math.log10(max(self.span / 2, 1e-6)))
        for axis in (0, 1):
            size = self.w if axis == 0 else self.h
            lo_world = mid[axis] - (size / 2) / s
            hi_world = mid[axis] + (size / 2) / s
            k0 = math.ceil(lo_world / step)
            for k in range(k0, k0 + int((hi_world - lo_world) / step) + 1):
                if axis == 0:
                    x = int(round(self.w / 2 + (k * step - mid[0]) * s))
                    cv2.line(img, (x, 0), (x, self.h - 1), (232, 232, 232), 1)
                else:
                    y = int(round(self.h / 2 - (k * step - mid[1]) * s))
                    cv2.line(img, (0, y), (self.w - 1, y), (232, 232, 232), 1)

    def draw(self, index: int | None = None) -> np.ndarray:
        img = self.base.copy()
        if index is None:
            index = len(self.pts) - 1
            marker = False
        else:
            marker = True
        for run in self._runs(index + 1):
            if len(run) > 1:
                cv2.polylines(img, [run], False, (255, 140, 0), self.thick + 1, cv2.LINE_AA, shift=4)
        r = max(3, self.thick * 3)
        start = tuple(np.round(self.pts[int(np.argmax(self.valid))]).astype(int))
        cv2.circle(img, start, r, (0, 160, 0), -1, cv2.LINE_AA)
        if not self.valid[index]:
            return img  # no position for this frame
        if marker:
            p = self.pts[index]
            tip = p + self.heads[index] * r * 3
            cv2.line(img, tuple(np.round(p).astype(int)), tuple(np.round(tip).astype(int)), (200, 0, 0),
                     self.thick + 1, cv2.LINE_AA)
            cv2.circle(img, tuple(np.round(p).astype(int)), r, (220, 0, 0), -1, cv2.LINE_AA)
        else:
            cv2.circle(img, tuple(np.round(self.pts[-1]).astype(int)), r, (220, 0, 0), -1, cv2.LINE_AA)
        return img


def _header(layout: VisLayout, index: int, n: int) -> np.ndarray:
    bar = np.full((layout.header_h, layout.panel_w * len(PANELS), 3), 25, np.uint8)
    scale = max(0.3, layout.header_h / 30)
    labels = {"rgb": f"RGB  {index}/{n - 1}", "depth": "depth", "mask": "dynamic mask", "trajectory": "trajectory (top)"}
    for k, p in enumerate(PANELS):
        cv2.putText(bar, labels[p], (k * layout.panel_w + 4, layout.header_h - max(3, layout.header_h // 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return bar


def sequence_depth_range(src: SequenceSource) -> tuple[float, float]:
    """Colour-map range from up to 16 evenly spaced depth frames (random access, no full pass)."""
    if src.depth is None or not len(src.depth):
        return 0.0, 1.0
    idx = sorted(set(np.linspace(0, src.n - 1, min(DEPTH_RANGE_SAMPLES, src.n)).round().astype(int).tolist()))
    return depth_range([src.depth.read(i) for i in idx if i in src.depth])


def render_vis_frame(src: SequenceSource, index: int, layout: VisLayout, plot: TrajectoryPlot,
                     drange: tuple[float, float], strict: bool = True) -> np.ndarray:
    """One composed frame of the visualisation video."""
    fr = src.frame(index)
    if fr.rgb is None:
        if strict:
            raise ArtifactError(f"{src.store.path('rgb', src.name)}: frame {index} is missing "
                                f"(the pose file has {src.n} frames)")
        rgb_panel = _blank(layout, "no rgb")
        mask_panel = _blank(layout, "no rgb")
    else:
        rgb_panel = _fit(fr.rgb, layout)
        mask_panel = _fit(mask_overlay(fr.rgb, fr.mask), layout) if fr.mask is not None \
            else _blank(layout, "no mask")
    depth_panel = _fit(depth_colormap(fr.depth, *drange), layout) if fr.depth is not None \
        else _blank(layout, "no depth")
    row = np.concatenate([rgb_panel, depth_panel, mask_panel, plot.draw(index)], axis=1)
    return np.concatenate([_header(layout, index, src.n), row], axis=0)


def write_vis_video(store: ArtifactStore, name: str, crf: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> str:
    """Write ``vipe/<name>_vis.mp4`` (atomically) and return its URI.

    ``progress(done, total)`` is called after every frame when given (CLI progress bars, asset logs).
    """
    src = SequenceSource(store, name, cache_frames=2)
    try:
        if src.video is None:
            raise ArtifactError(f"cannot make a visualisation video for {name}: missing artifact file "
                                f"{store.path('rgb', name)}")
        layout = vis_layout(src.width, src.height)
        plot = TrajectoryPlot(src.c2w, layout.panel_w, layout.panel_h)
        drange = sequence_depth_range(src)
        uri = store.path("vis", name)
        with VideoWriter(uri, fps=src.fps, crf=crf) as w:
            for i in range(src.n):
                w.add(render_vis_frame(src, i, layout, plot, drange))
                if progress is not None:
                    progress(i + 1, src.n)
        log.info("%s: wrote %d visualisation frames to %s", name, src.n, uri)
        return uri
    finally:
        src.close()


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(src: SequenceSource, cols: int = 4, rows: int = 3, tile_w: int = 240) -> np.ndarray:
    """Evenly spaced frames in a grid, each labelled with its frame index."""
    n_tiles = min(cols * rows, src.n)
    idx = np.linspace(0, src.n - 1, n_tiles).round().astype(int)
    tile_h = max(2, int(round(tile_w * src.height / max(1, src.width))))
    rows = math.ceil(n_tiles / cols)
    sheet = np.full((rows * tile_h, cols * tile_w, 3), 30, np.uint8)
    for k, i in enumerate(idx):
        fr = src.frame(int(i))
        tile = cv2.resize(fr.rgb, (tile_w, tile_h), interpolation=cv2.INTER_AREA) if fr.rgb is not None \
            else np.full((tile_h, tile_w, 3), 60, np.uint8)
        cv2.putText(tile, str(int(i)), (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, str(int(i)), (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w] = tile
    return sheet


def preview_images(store: ArtifactStore, name: str) -> dict[str, bytes]:
    """PNG previews: ``trajectory`` (top-down plot), ``depth`` (middle frame colour map, if depth
    exists) and ``contact_sheet`` (12 evenly spaced frames, if rgb exists)."""
    src = SequenceSource(store, name, cache_frames=2)
    try:
        out = {"trajectory": _png(TrajectoryPlot(src.c2w, 512, 512).draw())}
        mid = src.n // 2
        if src.depth is not None and mid in src.depth:
            cm = depth_colormap(src.depth.read(mid), *sequence_depth_range(src))
            f = max(1, math.ceil(256 / cm.shape[0]))
            out["depth"] = _png(np.repeat(np.repeat(cm, f, axis=0), f, axis=1))
        if src.video is not None:
            out["contact_sheet"] = _png(contact_sheet(src))
        return out
    finally:
        src.close()
