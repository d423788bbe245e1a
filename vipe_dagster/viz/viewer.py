"""Browser 3D viewer for ViPE-format results (``vipe-dagster visualize``), built on viser.

Designed for long videos: at start-up only the poses and intrinsics are read (small arrays); all
camera frustums are sent as **one** line-segment object (8 segments per camera, so 10,000 cameras
are one ~2 MB buffer instead of 10,000 scene nodes), and per-frame data -- the rgb image, depth,
mask and the point cloud made from them -- is loaded on demand for the current frame through
random-access readers and a small LRU cache. A background thread fills an overview cloud from a
few evenly spaced frames; the mean background (EgoX ``--use_mean_bg``) is computed the same way
when it is switched on. Memory therefore stays bounded whatever the number of frames.

Scene tree (names are stable, tests and users can rely on them):

- ``/seq/frustums``   all cameras (line segments, 8 per camera)
- ``/seq/trajectory`` camera path
- ``/seq/current``    frustum of the current frame with its image
- ``/seq/nearby/<k>`` frustums with thumbnails of frames near the current one
- ``/seq/points/static``, ``/seq/points/dynamic``  current frame's reliable-depth points (mask == 0 / != 0)
- ``/seq/overview``   static points of sampled frames; ``/seq/mean_bg`` mean background
- ``/seq/ego/<take>_<camera>/...``  ego trajectory and current ego frustum when a render exists
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..camera import fov_from_focal
from ..errors import ArtifactError, InputError
from ..io import ArtifactStore
from ..io.generation import check_set
from .ego import EgoRender, find_ego_renders
from .frames import RandomAccessVideo, SequenceSource
from .geometry import (
    MeanBackground,
    auto_step,
    depth_colormap,
    frustum_segments,
    rotation_to_wxyz,
    unproject_frame,
    up_vector,
)
from .video import sequence_depth_range

log = logging.getLogger(__name__)

THUMB_LONG_SIDE = 96
CURRENT_LONG_SIDE = 320
PREVIEW_WIDTH = 256


@dataclass
class ViewerOptions:
    max_points_per_frame: int = 60_000
    cache_frames: int = 16
    nearby: int = 2  # thumbnails on each side of the current frame
    overview_frames: int = 24  # frames sampled for the overview cloud
    overview_max_points: int = 400_000
    mean_bg_frames: int = 48
    # the overview / mean background decode their sampled frames exactly (running the decoder forward
    # through the video, in the background) for short videos: at most this many frames and this many
    # frames x pixels (e.g. 650 frames at 640x480); longer videos use the keyframe before each sample
    exact_sampling_max_frames: int = 1000
    exact_sampling_pixels: int = 200_000_000
    play_fps: float = 15.0
    mean_bg_on_start: bool = False  # show the mean background from the start (EgoX ``--use_mean_bg``)


@dataclass
class _Loaded:
    src: SequenceSource
    step: int
    frustum_scale: float
    point_size: float
    nearby_stride: int
    egos: list[EgoRender] = field(default_factory=list)
    depth_range: tuple[float, float] = (0.0, 1.0)
    ego_videos: dict[str, RandomAccessVideo] = field(default_factory=dict)


def _thumb(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _time_colors(n: int) -> np.ndarray:
    """Blue (first frame) to orange (last frame)."""
    t = np.linspace(0.0, 1.0, max(n, 1))[:, None]
    a, b = np.array([40, 110, 255]), np.array([255, 140, 20])
    return np.round(a * (1 - t) + b * t).astype(np.uint8)


class ResultViewer:
    """A viser server showing one sequence of an artifact store at a time."""

    def __init__(self, root: str | ArtifactStore, host: str = "127.0.0.1", port: int = 8080,
                 sequence: str | None = None, options: ViewerOptions | None = None, verbose: bool = False):
        import viser

        self.store = root if isinstance(root, ArtifactStore) else ArtifactStore(str(root))
        self.opts = options or ViewerOptions()
        names = [n for n in self.store.sequences() if self.store.exists("pose", n)]
        if not names:
            raise ArtifactError(f"No ViPE artifacts found in {self.store.root} (expected pose/<name>.npz)")
        if sequence is not None:
            if sequence not in names:
                raise InputError(f"sequence {sequence!r} not found in {self.store.root}; "
                                 f"available: {', '.join(names)}")
            names = [sequence]
        # a set that mixes two runs is refused (one sequence asked for) or left out of the list (all of them)
        consistent = []
        for n in names:
            rep = check_set(self.store, n)
            if rep.ok:
                consistent.append(n)
            elif sequence is not None:
                rep.raise_if_bad()
            else:
                log.warning("sequence %s left out of the viewer: %s", n, rep.problems[0])
        if not consistent:
            raise ArtifactError(f"no sequence in {self.store.root} forms one consistent artifact set "
                                f"(first problem: {check_set(self.store, names[0]).problems[0]})")
        names = consistent
        self.sequences = names
        self.server = viser.ViserServer(host=host, port=port, label="vipe-dagster", verbose=verbose)
        self._lock = threading.RLock()
        self._cv = threading.Condition()
        self._want: int | None = None
        self._shown: int | None = None
        self._busy = False
        self._stop = threading.Event()
        self._generation = 0  # bumps on every sequence switch; background jobs check it
        self._bg_threads: list[threading.Thread] = []
        self._loaded: _Loaded | None = None
        self._nearby_shown: dict[str, int] = {}
        self.overview_frames_used: list[int] = []
        self._build_gui()
        self._worker = threading.Thread(target=self._frame_loop, name="viewer-frames", daemon=True)
        self._worker.start()
        self._player = threading.Thread(target=self._play_loop, name="viewer-player", daemon=True)
        self._player.start()
        try:
            self.load_sequence(names[0])
        except BaseException:
            self.close()  # do not leave a server and threads behind
            raise

    # ------------------------------------------------------------------ public API
    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.port}"

    @property
    def source(self) -> SequenceSource:
        assert self._loaded is not None
        return self._loaded.src

    def request_frame(self, index: int) -> None:
        """Ask the frame thread to show ``index`` (the newest request wins)."""
        with self._cv:
            self._want = int(index)
            self._cv.notify_all()

    def set_frame(self, index: int, timeout: float = 30.0) -> None:
        """Move the slider to ``index`` and wait until the frame is on screen."""
        self.gui_frame.value = int(index)
        self.wait_frame(int(index), timeout)

    def wait_frame(self, index: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not (self._shown == index and self._want is None and not self._busy):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"frame {index} not shown within {timeout} s")
                self._cv.wait(left)

    def wait_background(self, timeout: float = 60.0) -> None:
        """Wait for the overview cloud (and mean background, if on) of the current sequence."""
        deadline = time.monotonic() + timeout
        for t in list(self._bg_threads):
            t.join(max(0.0, deadline - time.monotonic()))

    def scene_state(self) -> dict:
        """What the scene holds now, read back from viser's scene handles."""
        with self._lock:  # the frame thread adds and removes nodes under this lock
            return self._scene_state()

    def _scene_state(self) -> dict:
        sc = self.server.scene

        def handle(name):
            return sc.get_handle_by_name(name)

        fr = handle("/seq/frustums")
        n_frustums = 0 if fr is None else int(np.asarray(fr.points).shape[0] // 8)
        pts = {}
        for key in ("static", "dynamic"):
            h = handle(f"/seq/points/{key}")
            pts[key] = 0 if h is None or not h.visible else int(np.asarray(h.points).shape[0])
        ov = handle("/seq/overview")
        mb = handle("/seq/mean_bg")
        thumbs = [n for n in sc._handle_from_node_name if n.startswith("/seq/nearby/")]
        cur = handle("/seq/current")
        egos = [n for n in sc._handle_from_node_name if n.startswith("/seq/ego/") and n.endswith("/trajectory")]
        return {
            "sequence": self._loaded.src.name if self._loaded else None,
            "n_frames": self._loaded.src.n if self._loaded else 0,
            "frame": self._shown,
            "frustums": n_frustums,
            "current_has_image": bool(cur is not None and cur.image is not None),
            "thumbnails": len(thumbs),
            "points_static": pts["static"],
            "points_dynamic": pts["dynamic"],
            "overview_points": 0 if ov is None else int(np.asarray(ov.points).shape[0]),
            "mean_bg_points": 0 if mb is None or not mb.visible else int(np.asarray(mb.points).shape[0]),
            "ego_trajectories": len(egos),
            "cached_frames": len(self._loaded.src.cached_indices()) if self._loaded else 0,
            "clients": len(self.server.get_clients()),
        }

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._generation += 1
        self._worker.join(5)
        self._player.join(5)
        for t in self._bg_threads:
            t.join(5)
        self.server.stop()
        self._unload()

    def __enter__(self) -> ResultViewer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def playing(self) -> bool:
        return self._playing

    def set_playing(self, on: bool) -> None:
        """Start or stop playback (what the Play/Pause button does)."""
        self._playing = bool(on)
        self.gui_play.label = "Pause" if self._playing else "Play"

    # ------------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        if len(self.sequences) > 1:
            self.gui_sequence = gui.add_dropdown("Sequence", tuple(self.sequences), initial_value=self.sequences[0])
            self.gui_sequence.on_update(lambda _: self.load_sequence(self.gui_sequence.value))
        self.gui_frame = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0)
        self.gui_frame.on_update(lambda _: self.request_frame(int(self.gui_frame.value)))
        self.gui_play = gui.add_button("Play", icon=None)
        self._playing = False
        self.gui_play.on_click(lambda _: self.set_playing(not self._playing))
        self.gui_fps = gui.add_slider("Play fps", min=1, max=60, step=1, initial_value=int(self.opts.play_fps))
        self.gui_preview = gui.add_image(np.zeros((2, 2, 3), np.uint8), label="frame / depth", format="jpeg")
        with gui.add_folder("Layers"):
            self.gui_points = gui.add_checkbox("Frame points", True)
            self.gui_dynamic = gui.add_checkbox("Dynamic points (mask != 0)", True)
            self.gui_overview = gui.add_checkbox("Overview (sampled frames)", True)
            self.gui_mean_bg = gui.add_checkbox("Mean background", self.opts.mean_bg_on_start)
            self.gui_frustums = gui.add_checkbox("All cameras", True)
            self.gui_thumbs = gui.add_checkbox("Nearby thumbnails", True)
            self.gui_ego = gui.add_checkbox("Ego trajectory / view", True)
            self.gui_point_size = gui.add_slider("Point size", min=0.1, max=5.0, step=0.1, initial_value=1.0)
        for cb in (self.gui_points, self.gui_dynamic, self.gui_overview, self.gui_frustums, self.gui_thumbs,
                   self.gui_ego, self.gui_point_size):
            cb.on_update(lambda _: self._apply_visibility())
        self.gui_mean_bg.on_update(lambda _: self._on_mean_bg())
        self.gui_info = gui.add_markdown("")
        self.gui_ego_image = None

    def _apply_visibility(self) -> None:
        with self._lock:
            self._apply_visibility_locked()

    def _apply_visibility_locked(self) -> None:
        sc = self.server.scene
        lo = self._loaded
        vis = {
            "/seq/points/static": self.gui_points.value,
            "/seq/points/dynamic": self.gui_points.value and self.gui_dynamic.value,
            "/seq/overview": self.gui_overview.value,
            "/seq/mean_bg": self.gui_mean_bg.value,
            "/seq/frustums": self.gui_frustums.value,
            "/seq/trajectory": self.gui_frustums.value,
        }
        for name, v in vis.items():
            h = sc.get_handle_by_name(name)
            if h is not None:
                h.visible = bool(v)
        for name, h in list(sc._handle_from_node_name.items()):
            if name.startswith("/seq/nearby/"):
                h.visible = bool(self.gui_thumbs.value)
            elif name.startswith("/seq/ego/"):
                h.visible = bool(self.gui_ego.value)
        if lo is not None:
            size = lo.point_size * float(self.gui_point_size.value)
            for name in ("/seq/points/static", "/seq/points/dynamic", "/seq/overview", "/seq/mean_bg"):
                h = sc.get_handle_by_name(name)
                if h is not None:
                    h.point_size = size

    # ------------------------------------------------------------------ sequences
    def _unload(self) -> None:
        lo, self._loaded = self._loaded, None
        if lo is None:
            return
        for v in lo.ego_videos.values():
            v.close()
        lo.src.close()

    def load_sequence(self, name: str) -> None:
        """Show ``name``: poses, frustums and trajectory now; frame 0 synchronously; overview in background."""
        # stop background jobs of the previous sequence before taking the lock they finish under
        self._generation += 1
        self.set_playing(False)
        for t in list(self._bg_threads):
            t.join(30)
        with self._lock:
            self._generation += 1
            gen = self._generation
            self._bg_threads = []
            self._nearby_shown = {}
            self._unload()
            sc = self.server.scene
            for node in sorted((n for n in sc._handle_from_node_name if n.startswith("/seq/")), key=len,
                               reverse=True):
                h = sc._handle_from_node_name.get(node)
                if h is not None:
                    h.remove()
            if self.gui_ego_image is not None:
                self.gui_ego_image.remove()
                self.gui_ego_image = None
            src = SequenceSource(self.store, name, cache_frames=self.opts.cache_frames)
            lo = self._prepare(src)
            self._loaded = lo
            self._add_static_scene(lo)
            self.gui_frame.value = 0  # before shrinking the range, so the value is never outside it
            self.gui_frame.max = max(1, src.n - 1)
            self.gui_info.content = self._info_text(lo)
            self.gui_ego.visible = bool(lo.egos)  # the toggle only where there is something to toggle
            self.gui_mean_bg.visible = src.depth is not None
            with self._cv:
                self._shown = None
            self._show_frame(0)
            self._apply_visibility()
            t = threading.Thread(target=self._overview_job, args=(gen,), name="viewer-overview", daemon=True)
            self._bg_threads.append(t)
            t.start()
            if self.gui_mean_bg.value:
                self._on_mean_bg()

    def _prepare(self, src: SequenceSource) -> _Loaded:
        step = auto_step(src.width, src.height, self.opts.max_points_per_frame)
        centres = src.c2w[src.pose_valid, :3, 3]
        span = float(np.linalg.norm(np.percentile(centres, 95, axis=0) - np.percentile(centres, 5, axis=0)))
        med_depth = 1.0
        fr0 = src.frame(0)
        if fr0.depth is not None:
            valid = fr0.depth[np.isfinite(fr0.depth) & (fr0.depth > 0)]
            if valid.size:
                med_depth = float(np.median(valid))
        scale = 0.06 * max(span, med_depth)
        if span > 0:
            scale = min(scale, 0.5 * span / max(1.0, np.sqrt(src.n)) + 0.02 * span)
        fx = float(src.K(0)[0])
        point_size = max(1e-4, med_depth * step / max(fx, 1e-6))
        egos = find_ego_renders(self.store, src.name)
        lo = _Loaded(src, step, max(scale, 1e-4), point_size, nearby_stride=max(1, src.n // 50), egos=egos,
                     depth_range=sequence_depth_range(src))
        for e in egos:
            if e.video_uri:
                try:
                    lo.ego_videos[f"{e.take}_{e.camera}"] = RandomAccessVideo(e.video_uri)
                except ArtifactError as exc:
                    log.warning("ego render %s not readable: %s", e.video_uri, exc)
        return lo

    def _info_text(self, lo: _Loaded) -> str:
        src = lo.src
        have = [k for k, v in (("rgb", src.video), ("depth", src.depth), ("mask", src.mask)) if v is not None]
        ego = ", ".join(f"{e.take}/{e.camera}" for e in lo.egos) or "none"
        return (f"**{src.name}**: {src.n} frames, {src.width}x{src.height}, {src.fps:.2f} fps  \n"
                f"artifacts: pose, {'intrinsics, ' if src.intrinsics_raw is not None else ''}{', '.join(have)}  \n"
                f"grid step {lo.step} px; ego renders: {ego}")

    def _add_static_scene(self, lo: _Loaded) -> None:
        src, sc = lo.src, self.server.scene
        Ks = src.draw_intrinsics()
        ok = src.pose_valid
        segs = frustum_segments(src.c2w[ok], Ks[ok], src.width, src.height, lo.frustum_scale)
        cols = np.repeat(_time_colors(src.n)[ok], 8, axis=0)[:, None, :].repeat(2, axis=1)
        sc.add_line_segments("/seq/frustums", segs, cols, thickness=1.0, thickness_units="screen")
        centres = src.c2w[:, :3, 3]
        link = ok[:-1] & ok[1:]  # path segments between consecutive valid poses
        if link.any():
            path = np.stack([centres[:-1], centres[1:]], axis=1)[link]
            tc = _time_colors(src.n)
            pc = np.stack([tc[:-1], tc[1:]], axis=1)[link]
            sc.add_line_segments("/seq/trajectory", path, pc, thickness=2.5, thickness_units="screen")
        for e in lo.egos:
            if e.c2w is None or len(e.c2w) < 2:
                continue
            key = f"{e.take}_{e.camera}"
            ec = e.c2w[:, :3, 3]
            fin = np.isfinite(ec).all(axis=1)
            elink = fin[:-1] & fin[1:]
            if not elink.any():
                continue
            sc.add_line_segments(f"/seq/ego/{key}/trajectory", np.stack([ec[:-1], ec[1:]], axis=1)[elink],
                                 (230, 30, 200), thickness=2.5, thickness_units="screen")
        up = up_vector(src.c2w[ok])
        self.server.scene.set_up_direction(tuple(float(x) for x in up))
        # look at the first frame's scene from behind and above its camera
        c0 = src.c2w[int(np.argmax(ok))]
        fwd = c0[:3, 2]
        span = max(lo.frustum_scale / 0.06, 1e-3)
        target = c0[:3, 3] + fwd * span * 0.6
        cam = c0[:3, 3] - fwd * span * 0.45 + up * span * 0.35
        self.server.initial_camera.position = tuple(float(x) for x in cam)
        self.server.initial_camera.look_at = tuple(float(x) for x in target)
        self.server.initial_camera.up = tuple(float(x) for x in up)

    # ------------------------------------------------------------------ frames
    def _frame_loop(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while self._want is None and not self._stop.is_set():
                    self._cv.wait(0.5)
                if self._stop.is_set():
                    return
                i, self._want = self._want, None
                self._busy = True
            try:
                with self._lock:
                    if self._loaded is not None:
                        self._show_frame(min(max(0, i), self._loaded.src.n - 1))
            except Exception:  # noqa: BLE001 - keep the viewer alive; the error is logged
                log.exception("could not show frame %s", i)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _play_loop(self) -> None:
        while not self._stop.is_set():
            if not self.playing or self._loaded is None:
                time.sleep(0.05)
                continue
            t0 = time.monotonic()
            n = self._loaded.src.n
            self.gui_frame.value = (int(self.gui_frame.value) + 1) % n
            period = 1.0 / max(1.0, float(self.gui_fps.value))
            # never queue ahead of the renderer: wait for the frame to be shown
            with self._cv:
                while (self._want is not None or self._busy) and not self._stop.is_set():
                    self._cv.wait(0.05)
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    def _show_frame(self, i: int) -> None:
        lo = self._loaded
        assert lo is not None
        src, sc = lo.src, self.server.scene
        # decode in ascending order so the video reader can decode forward instead of seeking
        for j in sorted({i, *self._nearby_indices(lo, i).values()}):
            src.frame(j)
        fr = src.frame(i)
        K, c2w = src.K(i), src.c2w[i]
        fov = np.radians(fov_from_focal(src.height, float(K[1])))
        aspect = src.width / src.height
        with self.server.atomic():
            if not src.pose_valid[i]:
                for name in ("/seq/current", "/seq/points/static", "/seq/points/dynamic"):
                    h = sc.get_handle_by_name(name)
                    if h is not None:
                        h.remove()
                log.warning("%s: frame %d has no valid pose; nothing to draw for it", src.name, i)
            else:
                if fr.depth is not None:
                    parts = unproject_frame(fr.depth, src.raw_K(i), c2w, fr.rgb, fr.mask, lo.step, src.model(i),
                                            (src.width, src.height))
                    for key in ("static", "dynamic"):
                        xyz, col = parts[key]
                        sc.add_point_cloud(f"/seq/points/{key}", xyz, col, point_size=lo.point_size,
                                           point_shape="square", precision="float32", point_shading="flat")
                sc.add_camera_frustum("/seq/current", fov=float(fov), aspect=aspect, scale=lo.frustum_scale * 1.6,
                                      color=(255, 40, 40), thickness=2.0, thickness_units="screen",
                                      image=None if fr.rgb is None else _thumb(fr.rgb, CURRENT_LONG_SIDE),
                                      format="jpeg", jpeg_quality=85, wxyz=rotation_to_wxyz(c2w[:3, :3]),
                                      position=c2w[:3, 3])
            self._show_preview(lo, fr)
            self._show_nearby(lo, i, fov, aspect)
            self._show_ego(lo, i)
        with self._cv:
            self._shown = i
            self._cv.notify_all()
        self._apply_visibility()

    def _show_preview(self, lo: _Loaded, fr) -> None:
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
            self.gui_preview.image = np.concatenate(tiles, axis=0)
        self.gui_preview.visible = bool(tiles)

    def _nearby_indices(self, lo: _Loaded, i: int) -> dict[str, int]:
        """Thumbnail frames on a grid of ``nearby_stride`` around ``i`` (stable while playing, so cached)."""
        base = (i // lo.nearby_stride) * lo.nearby_stride
        out = {}
        for k in range(-self.opts.nearby, self.opts.nearby + 1):
            j = base + k * lo.nearby_stride
            if j == i or not 0 <= j < lo.src.n or not lo.src.pose_valid[j]:
                continue
            out[f"/seq/nearby/{k + self.opts.nearby}"] = j
        return out

    def _show_nearby(self, lo: _Loaded, i: int, fov: float, aspect: float) -> None:
        src, sc = lo.src, self.server.scene
        wanted = self._nearby_indices(lo, i)
        for name in [n for n in sc._handle_from_node_name if n.startswith("/seq/nearby/")]:
            if name not in wanted:
                sc._handle_from_node_name[name].remove()
                self._nearby_shown.pop(name, None)
        for name, j in wanted.items():
            if self._nearby_shown.get(name) == j and sc.get_handle_by_name(name) is not None:
                continue  # same frame as before: do not resend its image
            self._nearby_shown[name] = j
            fr = src.frame(j)
            c2w = src.c2w[j]
            sc.add_camera_frustum(name, fov=float(fov), aspect=aspect, scale=lo.frustum_scale,
                                  color=(120, 120, 120), thickness=1.0, thickness_units="screen",
                                  image=None if fr.rgb is None else _thumb(fr.rgb, THUMB_LONG_SIDE),
                                  format="jpeg", jpeg_quality=75,
                                  wxyz=rotation_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3])

    def _show_ego(self, lo: _Loaded, i: int) -> None:
        sc = self.server.scene
        for e in lo.egos:
            key = f"{e.take}_{e.camera}"
            img = None
            vid = lo.ego_videos.get(key)
            if vid is not None and (not vid.num_frames or i < vid.num_frames):
                try:
                    img = vid.read(i)
                except ArtifactError as exc:
                    log.warning("%s", exc)
            elif e.frame_uris:
                img = e.read_frame(i)
            if img is not None:
                if self.gui_ego_image is None:
                    self.gui_ego_image = self.server.gui.add_image(_thumb(img, 256), label=f"ego view {key}",
                                                                   format="jpeg")
                else:
                    self.gui_ego_image.image = _thumb(img, 256)
            if e.c2w is not None and i < len(e.c2w) and np.isfinite(e.c2w[i]).all():
                c2w = e.c2w[i]
                fx, fy, cx, cy = (float(v) for v in e.intrinsics)
                w, h = e.size
                sc.add_camera_frustum(f"/seq/ego/{key}/camera", fov=float(np.radians(fov_from_focal(h, fy))),
                                      aspect=w / h, scale=lo.frustum_scale * 1.6, color=(230, 30, 200),
                                      thickness=2.0, thickness_units="screen",
                                      image=None if img is None else _thumb(img, THUMB_LONG_SIDE * 2),
                                      format="jpeg", wxyz=rotation_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3])

    # ------------------------------------------------------------------ background clouds
    def _exact_sampling(self, src: SequenceSource) -> bool:
        """Decode sampled frames exactly (forward through the video) when the whole video is cheap
        to decode; otherwise take the keyframe before each sample (one decode each)."""
        return (src.n <= self.opts.exact_sampling_max_frames
                and src.n * src.width * src.height <= self.opts.exact_sampling_pixels)

    def _sample_indices(self, n_frames: int, count: int) -> list[int]:
        return sorted(set(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int).tolist()))

    def _overview_job(self, gen: int) -> None:
        lo = self._loaded
        if lo is None or lo.src.depth is None:
            return
        src = lo.src
        idx = self._sample_indices(src.n, self.opts.overview_frames)
        per_frame = max(1, self.opts.overview_max_points // max(1, len(idx)))
        step = max(lo.step, auto_step(src.width, src.height, per_frame))
        xyz_all, col_all = [], []
        exact = self._exact_sampling(src)
        seen: set[int] = set()
        t0 = time.monotonic()
        for j in idx:
            if self._stop.is_set() or gen != self._generation:
                return
            try:
                fr = src.frame_near(j, exact)
            except ArtifactError as exc:
                log.warning("overview: %s", exc)
                continue
            if fr.depth is None or fr.index in seen or not src.pose_valid[fr.index]:
                continue
            seen.add(fr.index)
            xyz, col = unproject_frame(fr.depth, src.raw_K(fr.index), src.c2w[fr.index], fr.rgb, fr.mask,
                                       step, src.model(fr.index), (src.width, src.height))["static"]
            xyz_all.append(xyz)
            col_all.append(col)
        if not xyz_all or gen != self._generation:
            return
        xyz, col = np.concatenate(xyz_all), np.concatenate(col_all)
        self.overview_frames_used = sorted(seen)
        with self._lock:
            if gen != self._generation:
                return
            self.server.scene.add_point_cloud("/seq/overview", xyz, col, point_size=lo.point_size,
                                              point_shape="square", precision="float32", point_shading="flat",
                                              visible=bool(self.gui_overview.value))
        log.info("%s: overview cloud of %d points from %d frames in %.2f s", src.name, len(xyz), len(seen),
                 time.monotonic() - t0)

    def _on_mean_bg(self) -> None:
        if not self.gui_mean_bg.value:
            self._apply_visibility()
            return
        if self.server.scene.get_handle_by_name("/seq/mean_bg") is not None:
            self._apply_visibility()
            return
        t = threading.Thread(target=self._mean_bg_job, args=(self._generation,), name="viewer-meanbg", daemon=True)
        self._bg_threads.append(t)
        t.start()

    def _mean_bg_job(self, gen: int) -> None:
        lo = self._loaded
        if lo is None or lo.src.depth is None:
            return
        src = lo.src
        acc = MeanBackground()
        exact = self._exact_sampling(src)
        seen: set[int] = set()
        for j in self._sample_indices(src.n, self.opts.mean_bg_frames):
            if self._stop.is_set() or gen != self._generation:
                return
            fr = src.frame_near(j, exact)
            if fr.depth is not None and fr.index not in seen:
                seen.add(fr.index)
                acc.add(fr.depth, fr.rgb, fr.mask)
        first = int(np.argmax(src.pose_valid))
        xyz, col = acc.points(src.raw_K(first), src.c2w[first], lo.step, src.model(first), (src.width, src.height))
        with self._lock:
            if gen != self._generation:
                return
            self.server.scene.add_point_cloud("/seq/mean_bg", xyz, col, point_size=lo.point_size,
                                              point_shape="square", precision="float32", point_shading="flat",
                                              visible=bool(self.gui_mean_bg.value))
        log.info("%s: mean background of %d points from %d frames", src.name, len(xyz), acc.frames)
