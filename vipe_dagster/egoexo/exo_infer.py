"""Fixed-camera inference of one exo camera of a raw Ego-Exo4D take, without learned weights.

The camera is static (``--assume_fixed_camera_pose``: ViPE's world is the camera's own frame, every pose
is the identity), its intrinsics come from the take's ``gopro_calibs.csv`` (scaled from the calibration's
image size to the video's; Kannala-Brandt k0..k3 undistorted to the pinhole camera with the same fx, fy,
cx, cy), and its depth is the metric depth of the static background measured against the take's other
calibrated exo cameras (:mod:`vipe_dagster.egoexo.rig_depth`). The result is written in ViPE's layout
(``rgb``, ``pose``, ``intrinsics``, ``depth``, ``mask``, ``vipe/<cam>_info.pkl``) under
``vipe_results/<take>/<cam>/`` of the takes root (:func:`vipe_dagster.egoexo.takes.vipe_result_dir`), where
take discovery and ``ego_render`` find it.

Depth holes (pixels no other camera confirms) are filled from the measured depth when ``fill_holes`` is set
(ViPE's depth is dense too): by default the local planes of the measured depth are extended into the holes
(:func:`vipe_dagster.egoexo.rig_depth.plane_fill`, colour-weighted, without the extensions the other exo
cameras see through when ``free_space`` is set, then smoothed by a robust plane fit), with colour-guided
spreading where no plane reaches (``fill_method="colour"``: that alone). Either fill stays on the camera's side
of the planes enclosing the scene and snaps onto one within ``snap_fill_rel``
(:func:`vipe_dagster.egoexo.rig_depth.clamp_to_bounds`). The info pickle and :class:`ExoInferResult` report the measured (covered) fraction and the filled fraction separately.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..io import ArtifactStore, fs
from ..io.video import open_video, probe
from . import formats as F
from .rig_depth import (
    SCALE,
    SOURCE,
    RigDepthConfig,
    RigView,
    clamp_to_bounds,
    free_space_check,
    plane_fill,
    rig_depth,
    smooth_filled,
    static_background,
    undistort_kb,
)
from .takes import RawTake, vipe_result_dir  # noqa: F401  (the folder this module's results go to)

log = logging.getLogger(__name__)


class ExoInferConfig(BaseModel):
    """Fixed-camera inference of one exo camera of a take, depth from the take's calibrated exo rig."""

    model_config = ConfigDict(extra="forbid")

    start_frame: int = Field(0, ge=0, description="first take frame")
    end_frame: int | None = Field(None, description="last take frame (inclusive); None = the last frame of the "
                                                    "video")
    background_frames: int = Field(9, ge=1, description="frames (spread over the range) whose per-pixel median "
                                                        "is the static background")
    fill_holes: bool = Field(True, description="fill depth no other camera confirms (see fill_method)")
    fill_method: Literal["planes", "colour"] = Field(
        "planes", description="planes: extend the local planes of the measured depth into the holes (colour-"
                              "weighted), then smooth the filled pixels by a robust plane fit; colour: "
                              "colour-guided (joint-bilateral) spreading of the measured depth only")
    free_space: bool = Field(True, description="planes fill: drop the hypotheses the other exo cameras see "
                                               "through (a foreground surface extended over the background it "
                                               "hides from them)")
    snap_fill_rel: float = Field(0.05, ge=0, lt=1, description="any fill: a filled depth within this "
                                                               "relative difference of a plane enclosing the "
                                                               "scene (floor, ceiling, wall) takes the plane's "
                                                               "depth (0: off)")
    # the sweep's pixel noise would otherwise fail the renderer's reliable-depth test (5x5 spread < 10 % of the
    # mean) on flat surfaces
    median_px: int = Field(5, description="median filter of the dense depth (3 or 5 px; 0 = off)")
    rig: RigDepthConfig = Field(default_factory=RigDepthConfig, description="rig sweep settings")


@dataclass
class ExoInferResult:
    take: str
    cam: str
    out_dir: str
    num_frames: int
    intrinsics: np.ndarray  # fx fy cx cy at the video resolution
    T_world_cam: np.ndarray
    report: dict  # the rig report (covered fraction, range, ...) + filled fraction, timings
    seconds: float
    measured_depth: np.ndarray  # the depth the rig confirms (NaN elsewhere), before any hole filling
    confidence: np.ndarray


def video_intrinsics(calib: F.GoProCalib, width: int, height: int, src: str) -> tuple[np.ndarray, np.ndarray]:
    """(fx fy cx cy, KB k0..k3) of a GoPro calibration scaled from its ``image_width x image_height`` to a
    ``width x height`` video (pixel-corner convention c' = s (c + 0.5) - 0.5)."""
    sx, sy = width / calib.width, height / calib.height
    if abs(sx - sy) > 0.02 * max(sx, sy):
        raise InputError(f"{src}: camera {calib.cam_uid} is calibrated at {calib.width}x{calib.height} but its video "
                         f"is {width}x{height} (a different aspect ratio); expected a uniformly scaled video")
    i = calib.intrinsics
    k = np.array([i[0] * sx, i[1] * sy, (i[2] + 0.5) * sx - 0.5, (i[3] + 0.5) * sy - 0.5])
    return k, np.asarray(i[4:8], np.float64)


def _calibs(take: RawTake) -> dict[str, F.GoProCalib]:
    if not take.gopro_calibs:
        raise InputError(f"take {take.take}: no trajectory/gopro_calibs.csv, so its exo cameras are not calibrated "
                         f"(the rig needs intrinsics and T_world_cam of every camera)")
    return F.read_gopro_calibs(take.gopro_calibs)


def _range(n: int, cfg: ExoInferConfig, src: str) -> tuple[int, int]:
    last = n - 1 if cfg.end_frame is None else cfg.end_frame
    if cfg.start_frame < 0 or last < cfg.start_frame or last >= n:
        raise InputError(f"{src}: frame range [{cfg.start_frame}, {cfg.end_frame}] is outside the video's "
                         f"{n} frames")
    return cfg.start_frame, last


def rig_views(take: RawTake, cfg: ExoInferConfig) -> dict[str, RigView]:
    """The static background of every calibrated exo camera of ``take`` (median of ``background_frames``
    frames over the frame range), undistorted, with its intrinsics at the video resolution."""
    calibs = _calibs(take)
    out: dict[str, RigView] = {}
    for cam, video in sorted(take.exo_videos.items()):
        if cam not in calibs:
            continue
        info = probe(video)
        first, last = _range(info.num_frames, cfg, video)
        k, dist = video_intrinsics(calibs[cam], info.width, info.height, take.gopro_calibs)
        picks = set(np.linspace(first, last, min(cfg.background_frames, last - first + 1)).round().astype(int).tolist())
        bg = static_background(f for i, f in open_video(video, first, last) if i in picks)
        out[cam] = RigView(cam, undistort_kb(bg, k, dist), k, calibs[cam].T_world_cam)
    return out


def infer_exo_camera(take: RawTake, cam: str, out_dir: str, config: ExoInferConfig | None = None,
                     views: dict[str, RigView] | None = None, rig_cache: dict | None = None) -> ExoInferResult:
    """Fixed-camera inference of exo camera ``cam`` of ``take`` into the ViPE result folder ``out_dir``
    (artifact name ``cam``). ``views`` / ``rig_cache``: the take's rig views and sweep cache when several
    cameras of a take are inferred in one process."""
    from ..depth.mvs import edge_aware_fill

    cfg = config or ExoInferConfig()
    t0 = time.perf_counter()
    if cam not in take.exo_videos:
        raise InputError(f"take {take.take}: no video of exo camera {cam} (videos: "
                         f"{', '.join(sorted(take.exo_videos)) or 'none'})")
    calibs = _calibs(take)
    if cam not in calibs:
        raise InputError(f"Camera {cam} not found in {take.gopro_calibs} (cameras: {', '.join(sorted(calibs))})")
    views = views if views is not None else rig_views(take, cfg)
    if len(views) < 2:
        raise InputError(f"take {take.take}: exo camera {cam} is its only calibrated camera with a video, so there is "
                         f"no rig to measure a static camera's depth against (and no learned depth model here)")
    rd = rig_depth(list(views.values()), cam, cfg.rig, rig_cache)
    depth = rd.depth
    if cfg.fill_holes and np.isfinite(depth).any():
        sigma = cfg.rig.depth.fill_sigma_color
        holes = ~np.isfinite(depth)
        if cfg.fill_method == "planes":
            reject = free_space_check(rd, cfg.rig.consistency_rel) if cfg.free_space else None
            depth = plane_fill(depth, views[cam].image, sigma, reject=reject)
        if not np.isfinite(depth).all():  # pixels no measured plane reaches: colour-guided spreading
            depth = edge_aware_fill(depth, views[cam].image, sigma, cfg.rig.depth.fill_iterations)
        depth = clamp_to_bounds(depth, rd.k, rd.c2w, rd.bounds, holes, cfg.snap_fill_rel)
        if cfg.fill_method == "planes":
            depth = smooth_filled(depth, holes)
    if cfg.median_px in (3, 5) and cfg.fill_holes:
        import cv2

        depth = cv2.medianBlur(np.ascontiguousarray(depth, np.float32), cfg.median_px)
    video = take.exo_videos[cam]
    info = probe(video)
    first, last = _range(info.num_frames, cfg, video)
    k, dist = video_intrinsics(calibs[cam], info.width, info.height, take.gopro_calibs)
    n = last - first + 1
    store = ArtifactStore(out_dir)
    with store.rgb_writer(cam, info.fps or 30.0) as w:
        for _i, f in open_video(video, first, last):
            w.add(np.ascontiguousarray(undistort_kb(f, k, dist)))
    store.write_pose(cam, np.tile(np.eye(4), (n, 1, 1)))
    store.write_intrinsics(cam, np.tile(k[None], (n, 1)))
    store.write_depth(cam, (depth for _ in range(n)))
    store.write_masks(cam, (np.zeros(depth.shape, np.uint8) for _ in range(n)), {})
    report = dict(rd.report)
    report.update({"take": take.take, "frames": [first, last], "filled_fraction": round(
        float(np.isfinite(depth).mean() - np.isfinite(rd.depth).mean()), 4) if cfg.fill_holes else 0.0,
        "fill_method": cfg.fill_method if cfg.fill_holes else None, "kb_undistorted": bool(np.any(dist)), "intrinsics": [round(float(x), 4) for x in k]})
    store.write_info(cam, {"fixed_camera": True, "depth_scale": SCALE, "depth_source": SOURCE, "rig": report,
                           "T_world_cam": calibs[cam].T_world_cam, "source_video": video})
    fs.write_text(fs.join(out_dir, "rig_depth.json"), _json(report))
    secs = time.perf_counter() - t0
    log.info("exo inference %s/%s: %d frames, %.1f%% of the depth measured by the rig, %.1fs", take.take, cam, n,
             100 * rd.covered_fraction, secs)
    return ExoInferResult(take.take, cam, out_dir, n, k, calibs[cam].T_world_cam, report, secs, rd.depth,
                          rd.confidence)


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, default=float)


class RigCache:
    """The rig sweeps and grown depths of a take kept on disk (``<folder>/<key>.npz``), so that each camera's
    inference (one process per take x camera) reuses the other cameras' work. ``folder`` should name the inputs (see
    :func:`rig_cache_key`): a changed video, calibration or setting lands in a new folder."""

    def __init__(self, folder: str):
        self.folder = folder

    def _uri(self, key: str) -> str:
        return fs.join(self.folder, key.replace("@", "_") + ".npz")

    def __contains__(self, key: str) -> bool:
        return fs.exists(self._uri(key))

    def __getitem__(self, key: str):
        import io

        with np.load(io.BytesIO(fs.read_bytes(self._uri(key)))) as z:
            rng = z["range"]
            return z["depth"], z["confidence"], [float(rng[0]), float(rng[1])] if rng.size else None

    def __setitem__(self, key: str, value) -> None:
        import io

        d, c, rng = value
        buf = io.BytesIO()
        np.savez_compressed(buf, depth=d, confidence=c, range=np.asarray(rng if rng else [], np.float64))
        fs.write_bytes(self._uri(key), buf.getvalue())


RIG_CACHE_LAYOUT = 3
"""What a rig cache folder holds; part of its key, so that a folder written by an earlier layout is not read
(2: every camera swept and grown in name order, grown depths cached beside the sweeps; 3: the refined
histogram-peak planes the growth used cached beside them)."""


def rig_cache_key(take: RawTake, cfg: ExoInferConfig) -> str:
    """A short hash of what the take's rig sweeps depend on: the calibration file, every exo video (path,
    size), the settings and the cache layout."""
    import hashlib

    h = hashlib.sha1(f"layout {RIG_CACHE_LAYOUT}".encode())
    h.update(fs.read_bytes(take.gopro_calibs) if take.gopro_calibs else b"")
    for cam, video in sorted(take.exo_videos.items()):
        h.update(f"{cam}:{video}:{fs.size(video)}".encode())
    h.update(repr((cfg.start_frame, cfg.end_frame, cfg.background_frames, cfg.rig)).encode())
    return h.hexdigest()[:16]


def rig_for_video(source: str) -> tuple[RawTake, str] | None:
    """``(take, cam)`` when ``source`` is an exo camera video of a raw Ego-Exo4D take
    (``<root>/takes/<take>/frame_aligned_videos/downscaled/448/<cam>.mp4``) whose take has at least one other
    calibrated exo camera with a video (a rig); else None."""
    from .takes import EXO_VIDEO, VIDEO_SUBDIR, discover_raw_takes

    parts = str(source).rstrip("/").split("/")
    sub = VIDEO_SUBDIR.split("/")
    n = len(sub)
    if len(parts) < n + 4 or not EXO_VIDEO.match(parts[-1]) or parts[-1 - n:-1] != sub or parts[-3 - n] != "takes":
        return None
    cam, take_name = EXO_VIDEO.match(parts[-1]).group(1), parts[-2 - n]
    root = "/".join(parts[:-3 - n]) or "/"
    try:
        found = discover_raw_takes(root)
    except InputError:
        return None
    take = next((t for t in found.takes if t.take == take_name), None)
    if take is None or cam not in take.exo_videos or len(take.exo_videos) < 2 or not take.gopro_calibs:
        return None
    return take, cam
