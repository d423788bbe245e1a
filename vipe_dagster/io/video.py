"""Video streams: mp4/mov/mkv/avi through PyAV, or a folder of jpg/png/bmp/tif images.

Frames are yielded one at a time as ``(index, HxWx3 uint8 RGB)``; nothing caches the whole video.
Frame ranges are **inclusive** (``start_frame=0, end_frame=100`` is 101 frames), ``frame_skip=k``
keeps every k-th frame of the range, and ``long_side`` resizes to a processing size whose sides
are multiples of 8, recording the scale so intrinsics can be mapped between resolutions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import FrameRangeError, VideoError
from . import fs

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_IMAGE_FPS = 30.0
MIN_LONG_SIDE = 32  # smaller images have no room for features, stereo or H.264's 16 px macroblocks


@dataclass(frozen=True)
class VideoInfo:
    """What a source holds before any range, skip or resize."""

    uri: str
    name: str  # sequence name: file stem or folder name
    num_frames: int
    width: int
    height: int
    fps: float
    kind: str  # "video" or "images"


def processing_size(width: int, height: int, long_side: int | None) -> tuple[int, int]:
    """(w, h) with the long side near ``long_side`` and both sides multiples of 8 (aspect kept)."""
    if long_side is None or long_side <= 0:
        return width, height
    if long_side < MIN_LONG_SIDE:
        raise VideoError(f"processing long side (--long_side) must be >= {MIN_LONG_SIDE} px (or 0 for "
                         f"the source size), got {long_side}")
    s = long_side / max(width, height)
    w = max(8, int(round(width * s / 8)) * 8)
    h = max(8, int(round(height * s / 8)) * 8)
    return w, h


def resolve_range(num_frames: int, start_frame: int | None, end_frame: int | None, name: str) -> tuple[int, int]:
    """Validate an inclusive frame range against ``num_frames``; ``None`` means the video's ends."""
    start = 0 if start_frame is None else int(start_frame)
    end = num_frames - 1 if end_frame is None or end_frame == -1 else int(end_frame)
    if start < 0 or end < 0:
        raise FrameRangeError(f"Frame range [{start}, {end}] has a negative frame index in {name}; "
                              f"frames are numbered from 0 (end_frame -1 means the last frame)")
    if start > num_frames - 1:
        shown = end if end_frame is not None and end_frame != -1 else "last"
        raise FrameRangeError(f"Frame range [{start}, {shown}] exceeds available frames "
                              f"[0, {num_frames - 1}] in {name}: start_frame {start} is past the last frame "
                              f"{num_frames - 1}")
    if end < start:
        raise FrameRangeError(f"Frame range [{start}, {end}] is inverted in {name}: end_frame must be >= start_frame")
    if end > num_frames - 1:
        raise FrameRangeError(f"Frame range [{start}, {end}] exceeds available frames [0, {num_frames - 1}] in {name}")
    return start, end


class VideoStream:
    """An opened source with a frame selection and processing size. Iterate for frames."""

    def __init__(self, info: VideoInfo, start: int, end: int, frame_skip: int, out_size: tuple[int, int]):
        self.info = info
        self.start, self.end, self.frame_skip = start, end, frame_skip
        self.width, self.height = out_size
        self.scale = (self.width / info.width, self.height / info.height)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def fps(self) -> float:
        return self.info.fps / self.frame_skip

    @property
    def frame_indices(self) -> list[int]:
        """Source frame numbers this stream yields, in order."""
        return list(range(self.start, self.end + 1, self.frame_skip))

    def __len__(self) -> int:
        return len(self.frame_indices)

    def scale_intrinsics(self, intr: np.ndarray, to_processing: bool = True) -> np.ndarray:
        """Map fx fy cx cy between source and processing resolution (pixel-corner convention)."""
        sx, sy = self.scale if to_processing else (1 / self.scale[0], 1 / self.scale[1])
        out = np.array(intr, dtype=np.float64, copy=True)
        out[..., 0] *= sx
        out[..., 1] *= sy
        out[..., 2] = (out[..., 2] + 0.5) * sx - 0.5
        out[..., 3] = (out[..., 3] + 0.5) * sy - 0.5
        return out

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        if (frame.shape[1], frame.shape[0]) == (self.width, self.height):
            return frame
        interp = cv2.INTER_AREA if self.width < frame.shape[1] else cv2.INTER_LINEAR
        return cv2.resize(frame, (self.width, self.height), interpolation=interp)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(source_frame_index, HxWx3 uint8)`` for the selected frames."""
        wanted = self.frame_indices
        if not wanted:
            return
        want_set = set(wanted)
        last_good = -1
        for idx, frame in _iter_source(self.info, stop=self.end):
            last_good = idx
            if idx in want_set:
                yield idx, self._resize(frame)
            if idx >= self.end:
                return
        raise VideoError(
            f"{self.info.name}: stream ended after frame {last_good} (last good frame) "
            f"but frames up to {self.end} were expected ({self.info.uri})"
        )


def probe(uri: str | os.PathLike) -> VideoInfo:
    """Open a video file or image folder and count its frames (by demuxing, not trusting headers)."""
    uri = str(uri)
    name = Path(uri.rstrip("/")).name
    if not fs.exists(uri):
        raise VideoError(f"Video not found: {uri}")
    fsys, path = fs.get_fs(uri)
    if fsys.isdir(path):
        return _probe_images(uri, fsys, path)
    stem = Path(name).stem
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_EXTS:
        raise VideoError(f"{uri} is a single image; pass the folder that holds the frames (--image-dir)")
    import av

    with ExitStack() as stack:
        try:
            f = stack.enter_context(fs.open_read(uri))
            container = stack.enter_context(av.open(f, mode="r"))
        except EOFError as exc:
            raise VideoError(f"{uri} has zero frames (the container ends before any video data)") from exc
        except Exception as exc:
            raise VideoError(f"{uri} is not a readable video file ({type(exc).__name__}: {exc})") from exc
        if not container.streams.video:
            raise VideoError(f"{uri} has no video stream (expected one of {', '.join(VIDEO_EXTS)})")
        vs = container.streams.video[0]
        width, height = vs.codec_context.width, vs.codec_context.height
        rate = vs.average_rate or vs.guessed_rate or Fraction(30)
        fps = float(rate)
        n = 0
        try:
            for packet in container.demux(vs):
                if packet.size > 0:
                    n += 1
        except Exception as exc:
            raise VideoError(f"{uri}: stream breaks after frame {n - 1} (last good frame): {exc}") from exc
        declared = int(vs.frames or 0)
    if n == 0 or width == 0 or height == 0:
        raise VideoError(f"{uri} has zero frames")
    if declared > n:
        raise VideoError(f"{uri}: stream breaks after frame {n - 1} (last frame with data; the header "
                         f"declares {declared} frames, only {n} are present)")
    return VideoInfo(uri=uri, name=stem, num_frames=n, width=width, height=height, fps=fps, kind="video")


def _list_images(fsys, path: str) -> list[str]:
    files = [p for p in fsys.ls(path, detail=False) if Path(p).suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=lambda p: Path(p).name)


def _probe_images(uri: str, fsys, path: str) -> VideoInfo:
    files = _list_images(fsys, path)
    if not files:
        raise VideoError(f"{uri} holds no images (expected {', '.join(IMAGE_EXTS)} files)")
    first = _decode_image(fsys, files[0])
    h, w = first.shape[:2]
    return VideoInfo(uri=uri, name=Path(path.rstrip("/")).name, num_frames=len(files), width=w, height=h,
                     fps=DEFAULT_IMAGE_FPS, kind="images")


def _decode_image(fsys, path: str) -> np.ndarray:
    with fsys.open(path, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise VideoError(f"{path} is not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _iter_source(info: VideoInfo, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    if info.kind == "images":
        fsys, path = fs.get_fs(info.uri)
        files = _list_images(fsys, path)
        for i, p in enumerate(files[: stop + 1]):
            img = _decode_image(fsys, p)
            if img.shape[:2] != (info.height, info.width):
                raise VideoError(f"{p}: image {i} is {img.shape[1]}x{img.shape[0]}, expected "
                                 f"{info.width}x{info.height} like the first image")
            yield i, img
        return
    import av

    i = -1
    with fs.open_read(info.uri) as f, av.open(f, mode="r") as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        try:
            for frame in container.decode(vs):
                i += 1
                yield i, frame.to_ndarray(format="rgb24")
                if i >= stop:
                    return
        except av.FFmpegError as exc:
            raise VideoError(f"{info.name}: stream breaks after frame {i} (last good frame): {exc} ({info.uri})") from exc


def open_video(uri: str | os.PathLike, start_frame: int | None = None, end_frame: int | None = None,
               frame_skip: int = 1, long_side: int | None = None) -> VideoStream:
    """Probe ``uri`` and return a stream over the inclusive range with skip and resize applied."""
    info = probe(uri)
    if frame_skip < 1:
        raise FrameRangeError(f"frame_skip must be >= 1, got {frame_skip} for {info.name}")
    start, end = resolve_range(info.num_frames, start_frame, end_frame, Path(str(uri).rstrip("/")).name)
    return VideoStream(info, start, end, frame_skip, processing_size(info.width, info.height, long_side))


# x264's macroblock-tree rate control (on by default) made the encoded frames differ from one process to the
# next for identical input (measured: 4 different encodings in 15 processes of the same 60 frames, single
# encoder thread included), so a rerun of the same video gave different poses. Without it the encoding is
# reproducible (30 of 30 processes identical); CRF 17 without it keeps the quality of CRF 18 with it
# (dog-example at 512 px: 34.8 dB PSNR to the source either way, 6 % larger files).
X264_PARAMS = "mbtree=0"
DEFAULT_CRF = 17


class VideoWriter:
    """H.264 mp4 writer (PyAV, yuv420p), written atomically: the file appears only on success. The same
    frames give the same bytes in every process (:data:`X264_PARAMS`), apart from ``metadata``."""

    def __init__(self, uri: str, fps: float, crf: int | None = None, metadata: dict[str, str] | None = None,
                 on_commit=None):
        """``metadata``: container tags (the artifact store stamps the generation into ``comment``);
        ``on_commit(entry)`` is called with the file's record entry (sha256, bytes, frames) once it is in
        place."""
        self.uri, self.fps, self.crf = str(uri), float(fps), DEFAULT_CRF if crf is None else int(crf)
        self.metadata, self.on_commit = dict(metadata or {}), on_commit
        self.count = 0
        self._stack: ExitStack | None = None
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        self._stack = ExitStack()
        self._tmp = self._stack.enter_context(fs.local_path_for_write(self.uri, suffix=".mp4"))
        return self

    def _open(self, w: int, h: int) -> None:
        import av

        self._container = av.open(self._tmp, mode="w", format="mp4")
        for k, v in self.metadata.items():
            self._container.metadata[k] = v
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(self.crf), "preset": "veryfast", "x264-params": X264_PARAMS}
        self._size = (w, h)

    def add(self, frame: np.ndarray) -> None:
        import av

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(f"{self.uri}: frame {self.count} must be HxWx3 uint8, got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if self._container is None:
            if w % 2 or h % 2:
                raise VideoError(f"{self.uri}: H.264 needs even frame sizes, got {w}x{h}")
            self._open(w, h)
        elif (w, h) != self._size:
            raise VideoError(f"{self.uri}: frame {self.count} is {w}x{h}, expected {self._size[0]}x{self._size[1]}")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._stack is not None
        try:
            if self._container is not None:
                if exc_type is None:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if exc_type is None and self.count == 0:
                raise VideoError(f"{self.uri}: no frames were written")
            entry = None
            if exc_type is None and self.on_commit is not None:
                from .generation import artifact_entry

                entry = artifact_entry(path=self._tmp, frames=self.count)
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._stack.__exit__(exc_type, exc, tb)
        if entry is not None:
            self.on_commit(entry)
