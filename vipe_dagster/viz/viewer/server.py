"""The viewer's viser server: public API, the frame and playback threads, sequence switching."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ...camera import fov_from_focal
from ...io import ArtifactStore
from ..frames import SequenceSource
from . import scene
from .panels import Panels
from .scene import LoadedSequence, ViewerOptions

log = logging.getLogger(__package__)


class ResultViewer:
    """A viser server showing one sequence of an artifact store at a time.

    The GUI handles are reachable as ``gui_<name>`` (``gui_frame``, ``gui_play``, ``gui_points``, ...:
    the attributes of :class:`~.panels.Panels`).
    """

    def __init__(self, root: str | ArtifactStore, host: str = "127.0.0.1", port: int = 8080,
                 sequence: str | None = None, options: ViewerOptions | None = None, verbose: bool = False):
        import viser

        self.store = root if isinstance(root, ArtifactStore) else ArtifactStore(str(root))
        self.opts = options or ViewerOptions()
        self.sequences = scene.viewable_sequences(self.store, sequence)
        self.server = viser.ViserServer(host=host, port=port, label="vipe-dagster", verbose=verbose)
        self._lock = threading.RLock()
        self._cv = threading.Condition()
        self._want: int | None = None
        self._shown: int | None = None
        self._busy = False
        self._stop = threading.Event()
        self._generation = 0  # bumps on every sequence switch; background jobs check it
        self._bg_threads: list[threading.Thread] = []
        self._loaded: LoadedSequence | None = None
        self._nearby_shown: dict[str, int] = {}
        self.overview_frames_used: list[int] = []
        self._playing = False
        self.panels = Panels(self.server.gui, self.sequences, self.opts, on_sequence=self.load_sequence,
                             on_frame=self.request_frame, on_play=lambda: self.set_playing(not self._playing),
                             on_layers=self._apply_visibility, on_mean_bg=self._on_mean_bg)
        self._worker = threading.Thread(target=self._frame_loop, name="viewer-frames", daemon=True)
        self._worker.start()
        self._player = threading.Thread(target=self._play_loop, name="viewer-player", daemon=True)
        self._player.start()
        try:
            self.load_sequence(self.sequences[0])
        except BaseException:
            self.close()  # do not leave a server and threads behind
            raise

    def __getattr__(self, name: str):
        # gui_<x>: the panel handle <x> (the names the viewer had before the panels had their own module)
        if name.startswith("gui_") and "panels" in self.__dict__:
            return getattr(self.panels, name[4:])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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
        self.panels.frame.value = int(index)
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
            return scene.scene_state(self.server, self._loaded, self._shown)

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
        self.panels.play.label = "Pause" if self._playing else "Play"

    def _apply_visibility(self) -> None:
        with self._lock:
            self.panels.apply_visibility(self.server.scene, self._loaded)

    # ------------------------------------------------------------------ sequences
    def _unload(self) -> None:
        lo, self._loaded = self._loaded, None
        if lo is not None:
            lo.close()

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
            scene.clear_sequence(self.server.scene)
            self.panels.remove_ego_image()
            src = SequenceSource(self.store, name, cache_frames=self.opts.cache_frames)
            lo = scene.load_sequence(self.store, src, self.opts.max_points_per_frame)
            self._loaded = lo
            scene.add_static_scene(self.server, lo)
            self.panels.show_sequence(lo)
            with self._cv:
                self._shown = None
            self._show_frame(0)
            self._apply_visibility()
            t = threading.Thread(target=self._overview_job, args=(gen,), name="viewer-overview", daemon=True)
            self._bg_threads.append(t)
            t.start()
            if self.panels.mean_bg.value:
                self._on_mean_bg()

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
            self.panels.frame.value = (int(self.panels.frame.value) + 1) % n
            period = 1.0 / max(1.0, float(self.panels.fps.value))
            # never queue ahead of the renderer: wait for the frame to be shown
            with self._cv:
                while (self._want is not None or self._busy) and not self._stop.is_set():
                    self._cv.wait(0.05)
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    def _show_frame(self, i: int) -> None:
        lo = self._loaded
        assert lo is not None
        src, sc = lo.src, self.server.scene
        nearby = scene.nearby_indices(lo, i, self.opts.nearby)
        # decode in ascending order so the video reader can decode forward instead of seeking
        for j in sorted({i, *nearby.values()}):
            src.frame(j)
        fr = src.frame(i)
        fov = np.radians(fov_from_focal(src.height, float(src.K(i)[1])))
        aspect = src.width / src.height
        with self.server.atomic():
            scene.draw_current(sc, lo, i, fr, fov, aspect)
            self.panels.show_preview(lo, fr)
            scene.draw_nearby(sc, lo, nearby, self._nearby_shown, fov, aspect)
            scene.draw_ego(sc, lo, i, self.panels.show_ego_image)
        with self._cv:
            self._shown = i
            self._cv.notify_all()
        self._apply_visibility()

    # ------------------------------------------------------------------ background clouds
    def _cancelled(self, gen: int) -> bool:
        return self._stop.is_set() or gen != self._generation

    def _overview_job(self, gen: int) -> None:
        lo = self._loaded
        if lo is None or lo.src.depth is None:
            return
        t0 = time.monotonic()
        cloud = scene.overview_cloud(lo, self.opts, lambda: self._cancelled(gen))
        if cloud is None or gen != self._generation:
            return
        xyz, col, seen = cloud
        self.overview_frames_used = seen
        with self._lock:
            if gen != self._generation:
                return
            scene.add_cloud(self.server.scene, "/seq/overview", xyz, col, lo.point_size,
                            bool(self.panels.overview.value))
        log.info("%s: overview cloud of %d points from %d frames in %.2f s", lo.src.name, len(xyz), len(seen),
                 time.monotonic() - t0)

    def _on_mean_bg(self) -> None:
        if not self.panels.mean_bg.value:
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
        cloud = scene.mean_background_cloud(lo, self.opts, lambda: self._cancelled(gen))
        if cloud is None:
            return
        xyz, col, n_frames = cloud
        with self._lock:
            if gen != self._generation:
                return
            scene.add_cloud(self.server.scene, "/seq/mean_bg", xyz, col, lo.point_size,
                            bool(self.panels.mean_bg.value))
        log.info("%s: mean background of %d points from %d frames", lo.src.name, len(xyz), n_frames)
