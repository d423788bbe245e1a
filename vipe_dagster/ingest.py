"""Ingest: decode a source video (range, skip, resize) into the artifact store's ``rgb/<n>.mp4``."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from tqdm import tqdm

from .io import ArtifactStore, open_video
from .io.manifest import base_manifest, content_hash

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    name: str
    rgb_uri: str
    num_frames: int
    width: int
    height: int
    fps: float
    source_frames: list[int]
    seconds: float


def ingest_video(source: str, store: ArtifactStore, name: str | None = None, start_frame: int | None = None,
                 end_frame: int | None = None, frame_skip: int = 1, long_side: int | None = None,
                 progress: bool = False, remap: tuple[np.ndarray, np.ndarray] | None = None) -> IngestResult:
    """Validate the range **before** decoding, then stream frames into ``rgb/<name>.mp4`` and a manifest.
    ``remap``: ``cv2.remap`` maps applied to every frame (lens rectification, :func:`vipe_dagster.camera.rectify_maps`)."""
    t0 = time.perf_counter()
    stream = open_video(source, start_frame, end_frame, frame_skip, long_side)
    name = name or stream.name
    log.info("ingesting %s frames %d..%d (skip %d) at %dx%d -> %s", stream.info.uri, stream.start, stream.end,
             frame_skip, stream.width, stream.height, store.path("rgb", name))
    store.begin_generation(name)  # published (and the previous set's files removed) once the rgb is in place
    try:
        with store.rgb_writer(name, fps=stream.fps) as w:
            for _, frame in tqdm(stream, total=len(stream), disable=not progress, desc=f"ingest {name}",
                                 unit="frame"):
                if remap is not None:
                    frame = cv2.remap(frame, remap[0], remap[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                w.add(frame)
    except BaseException:
        store.abort_generation(name)  # the previous set stays as it was
        raise
    res = IngestResult(name=name, rgb_uri=store.path("rgb", name), num_frames=w.count, width=stream.width,
                       height=stream.height, fps=stream.fps, source_frames=stream.frame_indices,
                       seconds=time.perf_counter() - t0)
    manifest = base_manifest(source, content_hash(source), {
        "start_frame": stream.start, "end_frame": stream.end, "frame_skip": frame_skip, "long_side": long_side})
    manifest.update({
        "sequence": name,
        "source": {"width": stream.info.width, "height": stream.info.height, "fps": stream.info.fps,
                   "num_frames": stream.info.num_frames},
        "frames": {"count": res.num_frames, "source_indices": res.source_frames,
                   "width": res.width, "height": res.height, "fps": res.fps},
        "timings": {"ingest_s": round(res.seconds, 3)},
    })
    store.write_manifest(name, manifest)
    return res


def ingest_summary(res: IngestResult) -> dict:
    d = asdict(res)
    d.pop("source_frames")
    return d
