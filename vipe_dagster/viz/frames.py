"""On-demand, random access to the per-frame artifacts of one ViPE-format sequence.

Nothing here decodes a whole video or a whole zip up front: the rgb mp4 is opened once and frames
are decoded by seeking to the nearest keyframe (or by decoding forward when the wanted frame is a
few frames ahead, which is what playback does); depth and mask zips are opened once and single
members are decoded on request. A small LRU cache keeps the last few decoded frames, so memory is
bounded by ``cache_frames`` whatever the video length.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from .. import camera as cammod
from ..errors import ArtifactError
from ..io import ArtifactStore, fs
from ..io.checks import check_intrinsics
from ..io.exr import decode_depth_exr

log = logging.getLogger(__name__)

# decode forward instead of seeking when the wanted frame is at most this many frames ahead
FORWARD_DECODE_WINDOW = 48


class RandomAccessVideo:
    """Frame ``i`` of a constant-frame-rate video, decoded on request (thread-safe)."""

    def __init__(self, uri: str):
        import av

        self.uri = str(uri)
        if not fs.exists(self.uri):
            raise ArtifactError(f"missing artifact file {self.uri}")
        self._lock = threading.Lock()
        self._file = fs.open_read(self.uri)
        try:
            self._container = av.open(self._file, mode="r")
        except Exception as exc:
            self._file.close()
            raise ArtifactError(f"{self.uri}: not a readable video ({type(exc).__name__}: {exc})") from exc
        if not self._container.streams.video:
            self.close()
            raise ArtifactError(f"{self.uri}: no video stream")
        vs = self._container.streams.video[0]
        self._stream = vs
        self.width, self.height = vs.codec_context.width, vs.codec_context.height
        rate = vs.average_rate or vs.guessed_rate or Fraction(30)
        self.fps = float(rate)
        self._rate = Fraction(rate)
        self._tb = vs.time_base
        self._start = int(vs.start_time or 0)
        frames = int(vs.frames or 0)
        if frames <= 0 and vs.duration:
            frames = int(round(float(vs.duration * self._tb) * self.fps))
        self.num_frames = frames
        self._decoder = None
        self._next = 0  # index of the frame the open decoder will yield next
        self.frames_decoded = 0  # total frames decoded so far (shows that nothing decodes the whole video)
        self.seeks = 0

    def _index_of(self, pts: int | None) -> int:
        if pts is None:
            return self._next
        return int(round(float((pts - self._start) * self._tb * self._rate)))

    def _seek(self, index: int) -> None:
        target = self._start + int(round(index / (self._rate * self._tb)))
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self.seeks += 1
        self._next = -1  # unknown until the first frame arrives

    def read(self, index: int) -> np.ndarray:
        """HxWx3 uint8 RGB of frame ``index`` (0-based)."""
        import av

        if index < 0 or (self.num_frames and index >= self.num_frames):
            raise ArtifactError(f"{self.uri}: frame {index} is outside [0, {self.num_frames - 1}]")
        with self._lock:
            if self._decoder is None or self._next < 0 or index < self._next \
                    or index > self._next + FORWARD_DECODE_WINDOW:
                self._seek(index)
            try:
                for frame in self._decoder:
                    self.frames_decoded += 1
                    idx = self._index_of(frame.pts)
                    self._next = idx + 1
                    if idx == index:
                        return frame.to_ndarray(format="rgb24")
                    if idx > index:
                        # the keyframe we landed on is past the target (irregular timestamps)
                        raise ArtifactError(f"{self.uri}: frame {index} not found (decoder jumped to {idx})")
            except av.FFmpegError as exc:
                self._decoder = None
                raise ArtifactError(f"{self.uri}: frame {index} cannot be decoded ({exc})") from exc
            self._decoder = None
            raise ArtifactError(f"{self.uri}: frame {index} not found; the stream ends before it")

    def read_keyframe_before(self, index: int) -> tuple[int, np.ndarray]:
        """``(j, rgb)`` of the keyframe at or before ``index``: one seek and one decoded frame.

        For sampling frames spread over a long video (overviews), where any frame near ``index`` will do.
        """
        import av

        if index < 0 or (self.num_frames and index >= self.num_frames):
            raise ArtifactError(f"{self.uri}: frame {index} is outside [0, {self.num_frames - 1}]")
        with self._lock:
            self._seek(index)
            try:
                for frame in self._decoder:
                    self.frames_decoded += 1
                    j = self._index_of(frame.pts)
                    self._next = j + 1
                    return j, frame.to_ndarray(format="rgb24")
            except av.FFmpegError as exc:
                self._decoder = None
                raise ArtifactError(f"{self.uri}: frame {index} cannot be decoded ({exc})") from exc
            self._decoder = None
            raise ArtifactError(f"{self.uri}: frame {index} not found; the stream ends before it")

    def close(self) -> None:
        with self._lock:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - closing a broken container must not mask the real error
                pass
            self._file.close()


class ZipFrames:
    """Random access to ``%05d.<ext>`` members of a frame zip kept open (thread-safe)."""

    def __init__(self, uri: str, ext: str, decode: Callable[[bytes, str], np.ndarray]):
        self.uri, self.ext, self._decode = str(uri), ext, decode
        if not fs.exists(self.uri):
            raise ArtifactError(f"missing artifact file {self.uri}")
        self._lock = threading.Lock()
        self._file = fs.open_read(self.uri)
        try:
            self._zip = zipfile.ZipFile(self._file)
        except zipfile.BadZipFile as exc:
            self._file.close()
            raise ArtifactError(f"{self.uri}: not a zip file ({exc})") from exc
        suffix = f".{ext}"
        self._members: dict[int, str] = {}
        for n in self._zip.namelist():
            stem = n.rsplit("/", 1)[-1]
            if stem.endswith(suffix) and stem[: -len(suffix)].isdigit():
                self._members[int(stem[: -len(suffix)])] = n

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, index: int) -> bool:
        return index in self._members

    def read(self, index: int) -> np.ndarray:
        name = self._members.get(index)
        if name is None:
            raise ArtifactError(f"{self.uri}: frame {index} ({index:05d}.{self.ext}) is missing "
                                f"(available: {len(self._members)} frames)")
        with self._lock:
            data = self._zip.read(name)
        return self._decode(data, f"{self.uri}:{name}")

    def close(self) -> None:
        with self._lock:
            self._zip.close()
            self._file.close()


def decode_mask_png(data: bytes, name: str = "<bytes>") -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ArtifactError(f"{name}: not a readable PNG")
    if arr.ndim != 2:
        raise ArtifactError(f"{name}: expected a single-channel uint8 instance-id PNG, got shape {arr.shape}")
    return arr.astype(np.uint8)


@dataclass
class FrameData:
    index: int
    rgb: np.ndarray | None  # HxWx3 uint8
    depth: np.ndarray | None  # HxW float32
    mask: np.ndarray | None  # HxW uint8 instance ids


class SequenceSource:
    """Poses and intrinsics in memory (small), per-frame images loaded on demand through an LRU cache."""

    def __init__(self, store: ArtifactStore, name: str, cache_frames: int = 16):
        self.store, self.name = store, name
        store.check_set(name)  # files of two runs are never shown together (io/generation.py)
        c2w, inds, pcheck = store.pose_check(name)
        if len(c2w) == 0:
            raise ArtifactError(f"{store.path('pose', name)}: no poses")
        self.c2w = c2w.astype(np.float32)
        self.pose_inds = inds
        self.n = len(c2w)
        # frames whose pose is unusable (malformed by the shared rules of io/checks.py, or flagged invalid
        # because tracking was lost) are skipped when drawing
        self.pose_valid = pcheck.usable
        if not self.pose_valid.any():
            raise ArtifactError(f"{store.path('pose', name)}: none of the {self.n} poses is usable "
                                f"(expected finite 4x4 camera-to-world matrices with a rotation block, not "
                                f"flagged invalid)")
        if not self.pose_valid.all():
            bad = np.nonzero(~self.pose_valid)[0]
            log.warning("%s: %d unusable poses (first at frame %d: %s) are not drawn",
                        store.path("pose", name), len(bad), bad[0],
                        pcheck.problems[0] if pcheck.problems else "flagged invalid")
        if store.exists("intrinsics", name):
            intr, iinds, types = store.read_intrinsics(name)
            # per-model rules (PINHOLE / MEI / PANORAMA zeros), the same as validate and to-colmap
            check_intrinsics(intr, store.path("intrinsics", name), types, iinds).raise_if_bad()
            if len(intr) == 1 and self.n > 1:
                intr = np.repeat(intr, self.n, axis=0)
            if len(intr) != self.n:
                raise ArtifactError(f"{store.path('intrinsics', name)}: {len(intr)} rows, expected {self.n} "
                                    f"like {store.path('pose', name)}")
            self.intrinsics_raw: np.ndarray | None = intr.astype(np.float32)
            self.camera_types = list(types) if len(types) == self.n else [types[0] if types else "PINHOLE"] * self.n
        else:
            self.intrinsics_raw, self.camera_types = None, ["PINHOLE"] * self.n
        self._opened: list[Any] = []
        self.video = self._open_optional("rgb", lambda: RandomAccessVideo(store.path("rgb", name)))
        self.depth = self._open_optional("depth", lambda: store.npy_depth_reader(name) if not fs.exists(
            store.path("depth", name)) else ZipFrames(store.path("depth", name), "exr", decode_depth_exr))
        self.mask = self._open_optional("mask", lambda: ZipFrames(store.path("mask", name), "png", decode_mask_png))
        self.phrases: dict[int, str] = store.read_phrases(name) if store.exists("phrases", name) else {}
        self.width, self.height = self._image_size()
        self.cache_frames = max(1, int(cache_frames))
        self._cache: OrderedDict[int, FrameData] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _open_optional(self, kind: str, opener):
        if not self.store.exists(kind, self.name):
            log.info("%s: no %s artifact (%s)", self.name, kind, self.store.path(kind, self.name))
            return None
        obj = opener()
        self._opened.append(obj)
        return obj

    def _image_size(self) -> tuple[int, int]:
        if self.video is not None:
            return self.video.width, self.video.height
        if self.depth is not None and len(self.depth):
            d = self.depth.read(min(self.depth._members))
            return d.shape[1], d.shape[0]
        if self.intrinsics_raw is not None and self.camera_types[0] != "PANORAMA":
            cx, cy = float(self.intrinsics_raw[0, 2]), float(self.intrinsics_raw[0, 3])
            return max(2, int(round(2 * cx + 1))), max(2, int(round(2 * cy + 1)))
        return 640, 480

    @property
    def fps(self) -> float:
        return self.video.fps if self.video is not None else 30.0

    def model(self, index: int) -> str:
        return self.camera_types[index]

    def raw_K(self, index: int) -> np.ndarray:
        """The stored intrinsics of a frame (fx fy cx cy [xi]); a pinhole guess if there are none."""
        if self.intrinsics_raw is not None:
            return self.intrinsics_raw[index]
        return self.K(index)

    def K(self, index: int) -> np.ndarray:
        """Pinhole fx fy cx cy to draw a frame's frustum: the stored one for PINHOLE, f/(1+xi) for MEI,
        and a 60-degree guess for PANORAMA or when the sequence has no intrinsics."""
        model = self.camera_types[index]
        if self.intrinsics_raw is not None and model != "PANORAMA":
            k = self.intrinsics_raw[index]
            if model == "MEI" and len(k) > 4 and k[4] > -1:
                return cammod.equivalent_pinhole(model, k).astype(np.float32)
            return k[:4]
        f = cammod.focal_for_fov(60.0, self.width)
        return np.array([f, f, (self.width - 1) / 2, (self.height - 1) / 2], np.float32)

    def draw_intrinsics(self) -> np.ndarray:
        """(N,4) pinhole intrinsics for drawing all frustums."""
        if self.intrinsics_raw is not None and all(t == "PINHOLE" for t in self.camera_types):
            return self.intrinsics_raw[:, :4]
        return np.stack([self.K(i) for i in range(self.n)])

    def frame(self, index: int) -> FrameData:
        if not 0 <= index < self.n:
            raise ArtifactError(f"{self.name}: frame {index} is outside [0, {self.n - 1}]")
        with self._cache_lock:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
        rgb = depth = mask = None
        if self.video is not None and (not self.video.num_frames or index < self.video.num_frames):
            try:
                rgb = self.video.read(index)
            except ArtifactError as exc:
                log.warning("%s", exc)
        if self.depth is not None and index in self.depth:
            depth = self.depth.read(index)
        if self.mask is not None and index in self.mask:
            mask = self.mask.read(index)
        data = FrameData(index, rgb, depth, mask)
        with self._cache_lock:
            self._cache[index] = data
            self._cache.move_to_end(index)
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
        return data

    def frame_near(self, index: int, exact: bool = False) -> FrameData:
        """A frame at or shortly before ``index`` that is cheap to decode (cached, or a keyframe).

        With ``exact`` the frame ``index`` itself is decoded (cheap when requests ascend: the
        decoder runs forward). Either way the result is not cached, so sampling a video for an
        overview does not evict the frames being looked at.
        """
        with self._cache_lock:
            if index in self._cache:
                return self._cache[index]
        if self.video is None or (self.video.num_frames and index >= self.video.num_frames):
            return self.frame(index)
        if exact:
            j, rgb = index, self.video.read(index)
        else:
            j, rgb = self.video.read_keyframe_before(index)
        j = min(max(j, 0), self.n - 1)
        depth = self.depth.read(j) if self.depth is not None and j in self.depth else None
        mask = self.mask.read(j) if self.mask is not None and j in self.mask else None
        return FrameData(j, rgb, depth, mask)  # not cached: overview sampling must not evict the view

    def cached_indices(self) -> list[int]:
        with self._cache_lock:
            return list(self._cache)

    def close(self) -> None:
        for obj in self._opened:
            obj.close()
        self._opened.clear()
