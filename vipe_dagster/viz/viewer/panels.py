"""The viewer's side panel (viser GUI): sequence and frame controls, layer toggles, previews, info."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ..frames import FrameData
from ..geometry import depth_colormap
from .scene import LoadedSequence, ViewerOptions, thumb

PREVIEW_WIDTH = 256
EGO_PREVIEW_LONG_SIDE = 256

# scene nodes each layer toggle shows or hides (the nearby thumbnails and ego nodes go by prefix)
_LAYER_NODES = ("/seq/points/static", "/seq/points/dynamic", "/seq/overview", "/seq/mean_bg", "/seq/frustums",
                "/seq/trajectory")
_POINT_NODES = ("/seq/points/static", "/seq/points/dynamic", "/seq/overview", "/seq/mean_bg")


class Panels:
    """The GUI handles (``frame``, ``play``, ``fps``, ``preview``, layer checkboxes, ``info``) and what
    the viewer does with them. Callbacks: ``on_sequence(name)``, ``on_frame(index)``, ``on_play()``
    (toggle), ``on_layers()``, ``on_mean_bg()``."""

    def __init__(self, gui, sequences: list[str], opts: ViewerOptions, on_sequence: Callable[[str], Any],
                 on_frame: Callable[[int], Any], on_play: Callable[[], Any], on_layers: Callable[[], Any],
                 on_mean_bg: Callable[[], Any]):
        self.gui = gui
        self.sequence = None
        if len(sequences) > 1:
            self.sequence = gui.add_dropdown("Sequence", tuple(sequences), initial_value=sequences[0])
            self.sequence.on_update(lambda _: on_sequence(self.sequence.value))
        self.frame = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0)
        self.frame.on_update(lambda _: on_frame(int(self.frame.value)))
        self.play = gui.add_button("Play", icon=None)
        self.play.on_click(lambda _: on_play())
        self.fps = gui.add_slider("Play fps", min=1, max=60, step=1, initial_value=int(opts.play_fps))
        self.preview = gui.add_image(np.zeros((2, 2, 3), np.uint8), label="frame / depth", format="jpeg")
        with gui.add_folder("Layers"):
            self.points = gui.add_checkbox("Frame points", True)
            self.dynamic = gui.add_checkbox("Dynamic points (mask != 0)", True)
            self.overview = gui.add_checkbox("Overview (sampled frames)", True)
            self.mean_bg = gui.add_checkbox("Mean background", opts.mean_bg_on_start)
            self.frustums = gui.add_checkbox("All cameras", True)
            self.thumbs = gui.add_checkbox("Nearby thumbnails", True)
            self.ego = gui.add_checkbox("Ego trajectory / view", True)
            self.point_size = gui.add_slider("Point size", min=0.1, max=5.0, step=0.1, initial_value=1.0)
        for cb in (self.points, self.dynamic, self.overview, self.frustums, self.thumbs, self.ego, self.point_size):
            cb.on_update(lambda _: on_layers())
        self.mean_bg.on_update(lambda _: on_mean_bg())
        self.info = gui.add_markdown("")
        self.ego_image = None

    def apply_visibility(self, sc, lo: LoadedSequence | None) -> None:
        """Show or hide the scene nodes by the layer toggles; point sizes by the slider."""
        on = (self.points.value, self.points.value and self.dynamic.value, self.overview.value, self.mean_bg.value,
              self.frustums.value, self.frustums.value)
        for name, v in zip(_LAYER_NODES, on, strict=True):
            h = sc.get_handle_by_name(name)
            if h is not None:
                h.visible = bool(v)
        for name, h in list(sc._handle_from_node_name.items()):
            if name.startswith("/seq/nearby/"):
                h.visible = bool(self.thumbs.value)
            elif name.startswith("/seq/ego/"):
                h.visible = bool(self.ego.value)
        if lo is not None:
            size = lo.point_size * float(self.point_size.value)
            for name in _POINT_NODES:
                h = sc.get_handle_by_name(name)
                if h is not None:
                    h.point_size = size

    def show_sequence(self, lo: LoadedSequence) -> None:
        """Frame slider range, info text and the toggles that apply to the sequence ``lo``."""
        src = lo.src
        self.frame.value = 0  # before shrinking the range, so the value is never outside it
        self.frame.max = max(1, src.n - 1)
        self.info.content = info_text(lo)
        self.ego.visible = bool(lo.egos)  # the toggle only where there is something to toggle
        self.mean_bg.visible = src.depth is not None

    def show_preview(self, lo: LoadedSequence, fr: FrameData) -> None:
        """Side-panel picture of the current frame: rgb above its depth colour map."""
        tiles = []

        def fit(img: np.ndarray) -> np.ndarray:  # PREVIEW_WIDTH wide, aspect kept
            h = max(1, round(img.shape[0] * PREVIEW_WIDTH / img.shape[1]))
            interp = cv2.INTER_AREA if img.shape[1] > PREVIEW_WIDTH else cv2.INTER_NEAREST
            return cv2.resize(img, (PREVIEW_WIDTH, h), interpolation=interp)

        if fr.rgb is not None:
            tiles.append(fit(fr.rgb))
        if fr.depth is not None:
            tiles.append(fit(depth_colormap(fr.depth, *lo.depth_range)))
        if tiles:
            self.preview.image = np.concatenate(tiles, axis=0)
        self.preview.visible = bool(tiles)

    def show_ego_image(self, key: str, img: np.ndarray) -> None:
        """The ego render's current frame (the panel is added on first use)."""
        if self.ego_image is None:
            self.ego_image = self.gui.add_image(thumb(img, EGO_PREVIEW_LONG_SIDE), label=f"ego view {key}",
                                                format="jpeg")
        else:
            self.ego_image.image = thumb(img, EGO_PREVIEW_LONG_SIDE)

    def remove_ego_image(self) -> None:
        if self.ego_image is not None:
            self.ego_image.remove()
            self.ego_image = None


def info_text(lo: LoadedSequence) -> str:
    src = lo.src
    have = [k for k, v in (("rgb", src.video), ("depth", src.depth), ("mask", src.mask)) if v is not None]
    ego = ", ".join(f"{e.take}/{e.camera}" for e in lo.egos) or "none"
    return (f"**{src.name}**: {src.n} frames, {src.width}x{src.height}, {src.fps:.2f} fps  \n"
            f"artifacts: pose, {'intrinsics, ' if src.intrinsics_raw is not None else ''}{', '.join(have)}  \n"
            f"grid step {lo.step} px; ego renders: {ego}")
