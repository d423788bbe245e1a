"""Engine entry points: ``run_pose`` (SLAM on an ingested sequence) and ``infer`` (ingest + run_pose)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from .camera import fov_from_focal
from .config import PipelineConfig, PoseConfig
from .errors import ConfigError, InputError
from .io import ArtifactStore, SparseMap, open_video
from .procinfo import peak_rss_mb

log = logging.getLogger(__name__)


@dataclass
class PoseResult:
    name: str
    num_frames: int
    keyframes: list[int]
    intrinsics: np.ndarray  # (4,) fx fy cx cy in pixels of the stored rgb
    scale: str  # "relative" (no metric cue) or "metric"
    rotation_only: bool
    tracking_ok_fraction: float
    mean_reproj_px: float
    seconds: float
    frames_per_second: float

    def summary(self) -> dict:
        d = asdict(self)
        d["intrinsics"] = [round(float(v), 3) for v in self.intrinsics]
        d["num_keyframes"] = len(self.keyframes)
        d.pop("keyframes")
        return d


def _mask_iter(store: ArtifactStore, name: str, use: bool):
    if not use:
        while True:
            yield None
    kernel = np.ones((9, 9), np.uint8)
    for _, m in store.iter_masks(name):
        yield cv2.dilate((m > 0).astype(np.uint8), kernel) > 0
    while True:
        yield None


def _calibration_pass(store: ArtifactStore, name: str, cfg: PoseConfig, width: int, height: int,
                      tracks=None) -> tuple[float | None, tuple[float, float] | None]:
    """Estimate the focal on the first keyframes before the real run (fixed-point iteration).

    Each round streams the start of the video until ``calibration_keyframes`` keyframes exist, builds the
    map with the current focal (the FoV prior and a focal sweep in the first round) and refines the focal
    by global BA. Rounds repeat until the focal changes by less than 0.5 %: a map built with a wrong focal
    is distorted and BA alone does not always undo that. The main pass starts from the result.
    ``tracks`` (a :class:`~.slam.tracker.TrackCache`) lets the rounds and the main pass track each frame once.
    Returns the focal and the radial distortion (k1, k2) estimated with it (``None`` when unobservable).
    """
    from .slam.system import SlamSystem

    ic = cfg.intrinsics
    f: float | None = None
    radial: tuple[float, float] | None = None
    for rnd in range(ic.calibration_rounds):
        slam = SlamSystem(cfg, width, height, focal_init=f, radial_init=radial)
        masks = _mask_iter(store, name, cfg.use_masks)
        use = tracks if tracks is not None and tracks.usable else None
        if use is not None:
            slam.desc_cache = use.descriptors
        for i, (_, frame) in enumerate(store.open_rgb(name)):
            m = next(masks)
            slam.process(i, frame, m, tracks=use.get(i, frame, m) if use is not None else None)
            if slam.calibration_ready(ic.calibration_keyframes):
                break
        f_new = slam.calibrate_now()
        log.info("calibration round %d: focal %s px", rnd + 1, "unobservable" if f_new is None else f"{f_new:.1f}")
        if f_new is None:
            return f, radial
        done = f is not None and abs(f_new / f - 1.0) < 0.005
        f = f_new
        radial = (float(slam.dist[0]), float(slam.dist[1]))
        if done:
            break
    return f, radial


def run_pose(store: ArtifactStore, name: str, config: PoseConfig | None = None, progress: bool = False) -> PoseResult:
    """Estimate poses and intrinsics for ``rgb/<name>.mp4`` and write pose/intrinsics/sparse/info/manifest."""
    import torch

    cfg = config or PoseConfig()
    # the SLAM's torch work (BA, lens undistortion of a few thousand tracks) is on small tensors: torch's
    # intra-op threads only wait for each other there, up to 20x the CPU time on a loaded 2-core machine.
    # Elementwise results do not depend on the thread count.
    prev = torch.get_num_threads()
    if cfg.ba.torch_threads and cfg.ba.device == "cpu":
        torch.set_num_threads(cfg.ba.torch_threads)
    try:
        return _run_pose(store, name, cfg, progress)
    finally:
        torch.set_num_threads(prev)


def _run_pose(store: ArtifactStore, name: str, cfg: PoseConfig, progress: bool) -> PoseResult:
    from .slam.system import STATUS_NAMES, SlamSystem
    from .slam.tracker import TrackCache

    t0 = time.perf_counter()
    ic = cfg.intrinsics
    if ic.given_distortion() is not None and (ic.camera_model in ("fisheye", "mei")
                                              or any(v for v in (ic.p1, ic.p2, ic.k3, ic.k4))):
        raise ConfigError(f"{name}: the given {ic.camera_model or 'radial'} lens (tangential / higher-order terms) is "
                          "removed by rectifying the frames at ingest, which the pose stage alone cannot do: run "
                          "`infer` (--intrinsics / --intrinsics-file), or give only k1 k2 (the pose stage models those)")
    if cfg.use_masks and not store.exists("mask", name):
        raise InputError(f"{store.path('mask', name)}: the pose stage was asked to use dynamic-object masks "
                         "(use_masks) but there is no mask artifact for this sequence")
    inputs = _input_record(store, name, ["rgb"] + (["mask"] if cfg.use_masks else []))
    stream = store.open_rgb(name)
    n = len(stream)
    focal_init = radial_init = None
    t_calib = 0.0
    tracks = None
    if cfg.intrinsics.fx is None and cfg.intrinsics.estimate_focal and cfg.intrinsics.calibration_pass \
            and not cfg.assume_fixed_camera_pose:
        tracks = TrackCache(cfg.tracking, stream.width, stream.height)
        focal_init, radial_init = _calibration_pass(store, name, cfg, stream.width, stream.height, tracks)
        t_calib = time.perf_counter() - t0
        if not tracks.usable:
            tracks = None
    slam = SlamSystem(cfg, stream.width, stream.height, focal_init=focal_init, radial_init=radial_init)
    if tracks is not None:
        slam.desc_cache, slam.desc_cache_store = tracks.descriptors, False
    masks = _mask_iter(store, name, cfg.use_masks)
    for i, (_, frame) in enumerate(tqdm(stream, total=n, disable=not progress, desc=f"pose {name}", unit="frame")):
        m = next(masks)
        if tracks is None:
            slam.process(i, frame, m)
        else:
            slam.process(i, frame, m, tracks=tracks.get(i, frame, m))
            tracks.release(i + 1)
    t_track = time.perf_counter() - t0
    out = slam.finish()
    seconds = time.perf_counter() - t0
    if len(out.c2w) != n:
        raise InputError(f"{store.path('rgb', name)}: decoded {len(out.c2w)} frames, expected {n}")

    fixed = cfg.assume_fixed_camera_pose
    distortion = _rectify_if_distorted(store, name, out.intrinsics, out.radial, stream.fps, cfg)
    ok = np.isin(out.status, [0, 1, 2, 4])
    tracking_ok = float(ok.mean()) if n else 0.0
    # frames of a map that never reconnected to the main one are in an unrelated world and scale: not valid
    placed = out.segment[ok]
    primary = int(np.bincount(placed).argmax()) if len(placed) else -1
    unconnected = ok & (out.segment != primary)
    ok = ok & ~unconnected
    kf = out.keyframes.tolist()
    scale = "relative"
    store.write_pose(name, out.c2w.astype(np.float32), inds=np.arange(n), keyframe_ids=np.asarray(kf, np.int64),
                     valid=ok)
    intr = np.tile(out.intrinsics.astype(np.float32), (n, 1))
    store.write_intrinsics(name, intr, inds=np.arange(n), camera_type="PINHOLE")
    store.write_sparse_map(name, SparseMap(points=out.points, colors=out.colors, obs_frame=out.obs_frame,
                                           obs_point=out.obs_point, obs_uv=out.obs_uv,
                                           keyframes=np.asarray(kf, np.int32)))
    reproj = out.mean_reproj_px if np.isfinite(out.mean_reproj_px) else 0.0
    store.write_info(name, {"ba_residual": float(reproj)})

    fx = float(out.intrinsics[0])
    status_counts = {STATUS_NAMES[k]: int((out.status == k).sum()) for k in STATUS_NAMES}
    timings = {"pose_s": round(seconds, 3), "pose_tracking_s": round(t_track, 3),
               "pose_calibration_s": round(t_calib, 3), "pose_fps": round(n / seconds, 2) if seconds > 0 else None}
    peak_mb = peak_rss_mb()
    pose_section = {
        "config": cfg.model_dump(mode="json"),
        "inputs": inputs,
        "scale": scale,
        "scale_note": "no metric cue: poses and points are normalised to median scene depth 1",
        "fixed_camera": fixed,
        "rotation_only": bool(out.rotation_only),
        "translation_known": not (fixed or out.rotation_only),
        "keyframes": kf,
        "segments": out.segments,
        "tracking_status": [STATUS_NAMES[int(s)] for s in out.status],
        "tracking_status_counts": status_counts,
        "tracking_ok_fraction": round(tracking_ok, 4),
        "valid_fraction": round(float(ok.mean()) if n else 0.0, 4),
        "valid_rule": "a frame is valid when it was tracked (not lost) in the main map segment; lost frames hold "
                      "the last good pose and frames of unconnected segments are in another world",
        "unconnected_frames": int(unconnected.sum()),
        "relocalised": int(out.stats.get("relocalised", 0)),
        "intrinsics": {"fx": fx, "fy": float(out.intrinsics[1]), "cx": float(out.intrinsics[2]),
                       "cy": float(out.intrinsics[3]),
                       "hfov_deg": round(float(fov_from_focal(stream.width, fx)), 3),
                       "source": "given" if cfg.intrinsics.given else
                       ("estimated" if out.focal_estimated else "prior"),
                       "k1": float(out.radial[0]), "k2": float(out.radial[1]),
                       "distortion": distortion},
        "quality": {"mean_reproj_px": out.mean_reproj_px if np.isfinite(out.mean_reproj_px) else None,
                    "median_reproj_px": out.stats.get("median_reproj_px"),
                    "num_points": int(len(out.points)), "num_observations": int(len(out.obs_frame)),
                    "lost_frames": int(status_counts.get("lost", 0)),
                    "ba_windowed_runs": out.stats.get("ba_windowed"),
                    "ba_global_runs": out.stats.get("ba_global"),
                    "inconsistent_tracks_dropped": out.stats.get("inconsistent_tracks")},
        "peak_rss_mb": round(peak_mb, 1),
    }
    store.update_manifest(name, "pose", {"pose": _json_clean(pose_section)}, timings=timings)
    res = PoseResult(name=name, num_frames=n, keyframes=kf, intrinsics=out.intrinsics.astype(np.float64),
                     scale=scale, rotation_only=bool(out.rotation_only), tracking_ok_fraction=tracking_ok,
                     mean_reproj_px=float(out.mean_reproj_px), seconds=seconds,
                     frames_per_second=n / seconds if seconds > 0 else float("inf"))
    log.info("pose %s: %d frames, %d keyframes, f=%.1f px, reproj %.2f px, %.1f frames/s", name, n, len(kf), fx,
             res.mean_reproj_px, res.frames_per_second)
    return res


def _input_record(store: ArtifactStore, name: str, kinds: list[str]) -> dict:
    """The artifacts a stage reads, with their content hashes (sha256), for the manifest."""
    from .io.manifest import content_hash

    return {k: {"uri": store.path(k, name), "sha256": content_hash(store.path(k, name))} for k in kinds}


def _rectify_if_distorted(store: ArtifactStore, name: str, intr: np.ndarray, radial: np.ndarray, fps: float,
                          cfg: PoseConfig) -> dict:
    """With a lens distortion that moves some pixel by ``rectify_min_px`` or more, rewrite ``rgb/<name>.mp4``
    as the ideal pinhole camera with the same K (every later stage and ViPE's readers assume pinhole); the
    sparse map is already in those coordinates. Returns what was done, for the manifest."""
    from .slam.geometry import distort_radial

    stream = store.open_rgb(name)
    w, h = stream.width, stream.height
    xs = np.linspace(0, w - 1, 33)
    ys = np.linspace(0, h - 1, 25)
    border = np.concatenate([np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, h - 1)], 1),
                             np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, w - 1), ys], 1)])
    shift = float(np.abs(distort_radial(border, intr, radial) - border).max()) if np.any(radial != 0) else 0.0
    info = {"model": "RADIAL", "k1": float(radial[0]), "k2": float(radial[1]),
            "max_shift_px": round(shift, 3), "rectified": False}
    if shift < cfg.intrinsics.rectify_min_px:
        return info
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    src = distort_radial(np.stack([gx.ravel(), gy.ravel()], 1), intr, radial)
    mx = src[:, 0].reshape(h, w).astype(np.float32)
    my = src[:, 1].reshape(h, w).astype(np.float32)
    with store.rgb_writer(name, fps) as wr:
        for _, frame in stream:
            wr.add(cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
    outside = float(np.mean((mx < 0) | (mx > w - 1) | (my < 0) | (my > h - 1)))
    info.update(rectified=True, outside_fraction=round(outside, 5),
                note="rgb rewritten as the ideal pinhole camera of the intrinsics; pixels that map outside the "
                     "recorded frame are black")
    log.info("%s: radial distortion k1 %.4f k2 %.4f moves pixels by up to %.2f px: rgb rectified to pinhole",
             name, radial[0], radial[1], shift)
    return info


def _lens_rectification(pose_cfg: PoseConfig, stream, camera_source_px: dict | None) -> dict | None:
    """With a given lens distortion: the ``cv2.remap`` maps that rectify the processing frames to the ideal
    pinhole keeping the valid field of view, the pose config of that pinhole, and the manifest record."""
    from . import camera as cam

    ic = pose_cfg.intrinsics
    given = ic.given_distortion()
    if given is None:
        return None
    kind, params = given
    w, h = stream.width, stream.height
    params[2] = (w - 1) / 2.0 if not math.isfinite(params[2]) else params[2]
    params[3] = (h - 1) / 2.0 if not math.isfinite(params[3]) else params[3]
    lens = cam.camera_from_params(kind, np.asarray(params, np.float64))
    pin = cam.rectifying_pinhole(lens, w, h)
    mx, my = cam.rectify_maps(lens, pin, w, h)
    fields = ic.model_dump()
    fields.update(fx=float(pin[0]), fy=float(pin[1]), cx=float(pin[2]), cy=float(pin[3]), camera_model="pinhole",
                  k1=None, k2=None, p1=None, p2=None, k3=None, k4=None, xi=None)
    try:
        colmap = cam.colmap_camera_model(lens)
    except ValueError:
        colmap = (kind.upper(), params)
    hfov = cam.camera_fov_deg(lens, w, h)
    rec = {
        "model": colmap[0], "params_processing_px": [float(v) for v in colmap[1]],
        "lens": {"model": kind, "params_processing_px": [float(v) for v in params],
                 "note": "vipe_dagster.camera model name and parameter order"}, "camera_model": ic.camera_model or "radial",
        "params_source_px": ({k: v for k, v in camera_source_px.items() if v is not None}
                             if camera_source_px else None),
        "rectified": True, "rectification": {
            "to": "PINHOLE", "pinhole": [float(v) for v in pin], "mode": "valid",
            "rule": "the widest pinhole (principal point at the image centre) in which every pixel sees a valid "
                    "pixel of the recorded frame; cv2.remap bilinear at ingest",
            "fov_deg_before": [round(v, 3) for v in hfov],
            "fov_deg_after": [round(v, 3) for v in cam.camera_fov_deg(cam.PinholeCamera(np.asarray(pin)), w, h)]},
        "config": type(ic)(**fields), "maps": (mx, my),
    }
    log.info("given %s lens %s: frames rectified at ingest to pinhole f %.1f %.1f c %.1f %.1f (hfov %.1f -> %.1f)",
             kind, [round(v, 5) for v in params], pin[0], pin[1], pin[2], pin[3], hfov[0],
             rec["rectification"]["fov_deg_after"][0])
    return rec


def _json_clean(o):
    if isinstance(o, dict):
        return {k: _json_clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_json_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


@dataclass
class InferResult:
    """What ``infer`` produced: the pose result plus the optional depth, mask and visualisation stages."""

    pose: PoseResult
    depth: Any = None  # vipe_dagster.depth.run.DepthResult
    masks: Any = None  # vipe_dagster.masks.run.MaskResult
    metric: Any = None  # vipe_dagster.depth.scale.MetricScale (None: relative scale)
    vis_uri: str | None = None
    seconds: float = 0.0
    masks_seconds: float | None = None  # wall time of the mask stage
    cpu_seconds: dict[str, float] | None = None  # process CPU seconds per stage and for the whole run
    camera: dict | None = None  # the MEI camera of a wide-angle run (manifest ``camera``)

    @property
    def name(self) -> str:
        return self.pose.name

    def summary(self) -> dict:
        d = {"pose": self.pose.summary(), "seconds": round(self.seconds, 2),
             "frames_per_second": round(self.pose.num_frames / self.seconds, 3) if self.seconds else None}
        if self.metric is not None:
            d["metric_scale"] = self.metric.manifest()
        if self.depth is not None:
            d["depth"] = {"uri": self.depth.uri, "method": self.depth.method, "frames_per_s": round(self.depth.frames_per_s, 3),
                          "mvs_valid_fraction": round(self.depth.mvs_valid_fraction, 4),
                          "reliable_fraction": round(self.depth.reliable_fraction, 4), "scale": self.depth.scale}
        if self.masks is not None:
            d["masks"] = {"uri": self.masks.uri, "method": self.masks.method, "instances": self.masks.num_instances,
                          "foreground_fraction": round(self.masks.foreground_fraction, 4)}
        if self.vis_uri:
            d["visualization"] = self.vis_uri
        if self.camera is not None:
            d["camera"] = {"model": self.camera["model"], "source": self.camera["source"],
                           "params": self.camera["params_processing_px"]}
        return d


def infer(source: str, output_root: str, config: PipelineConfig | PoseConfig | None = None, name: str | None = None,
          progress: bool = False, start_frame: int | None = None, end_frame: int | None = None,
          frame_skip: int = 1, intrinsics_source_px: tuple[float, float, float, float] | None = None,
          camera_source_px: dict | None = None) -> InferResult:
    """Ingest ``source`` (range/skip/resize to ``long_side``) into ``output_root`` and run the pipeline:
    poses + intrinsics, then (per the config) dense depth, dynamic masks and the visualisation video.

    ``intrinsics_source_px`` are fx fy cx cy in pixels of the source video; they are scaled to the
    processing size and override the config's intrinsics. ``camera_source_px`` (IntrinsicsConfig fields,
    source-video pixels) adds a lens model and its distortion. A given distortion is removed at ingest: every
    frame is rectified (``cv2.remap``) to the ideal pinhole that keeps the valid field of view
    (:func:`vipe_dagster.camera.rectifying_pinhole`), the rest of the pipeline runs on that pinhole, and the
    manifest's ``camera`` records the given model and the rectification. A bare ``PoseConfig`` means poses only.
    """
    from .ingest import ingest_video

    t0, c0 = time.perf_counter(), time.process_time()
    cpu: dict[str, float] = {}  # process CPU seconds per stage (all threads): comparable on a loaded machine
    pipe = config if isinstance(config, PipelineConfig) else PipelineConfig(
        preset="pose_only", depth=False, masks=False, pose=config or PoseConfig())
    pose_cfg = pipe.pose
    if pipe.depth and pose_cfg.assume_fixed_camera_pose and pipe.depth_config.learned is None:
        raise ConfigError("a fixed camera has no parallax, so dense depth needs a learned depth model: "
                          "give one with --depth-model REPO_ID:FILENAME (weights from the Hugging Face cache), "
                          "or use --pipeline fixed_camera without depth")
    stream = open_video(source, start_frame, end_frame, frame_skip, pose_cfg.long_side)  # validates the range
    if intrinsics_source_px is not None:
        fx, fy, cx, cy = (float(v) for v in stream.scale_intrinsics(np.asarray(intrinsics_source_px, np.float64)))
        pose_cfg = pose_cfg.model_copy(deep=True)
        fields = {**pose_cfg.intrinsics.model_dump(), **(camera_source_px or {}), "fx": fx, "fy": fy, "cx": cx,
                  "cy": cy}
        pose_cfg.intrinsics = type(pose_cfg.intrinsics)(**fields)
    wide = pano = None
    if pipe.camera == "panorama":  # equirectangular: the front virtual view runs, artifacts written back
        from .panorama import plan as pano_plan

        # given intrinsics are refused by plan (they are in pose_cfg.intrinsics by now)
        first = next(iter(open_video(source, start_frame, end_frame, frame_skip, pose_cfg.long_side)))[1]
        pano = pano_plan(pose_cfg, stream.width, stream.height, pipe.panorama, source, first_frame=first)
        pose_cfg = pano["pose_config"]
    if pipe.camera == "mei":  # MEI: processed on a pinhole rectification, written back in the MEI image
        from .wide_angle import plan as wide_plan

        wide = wide_plan(pose_cfg, stream.width, stream.height, pipe.mei)
        pose_cfg = wide["pose_config"]
    lens = None if wide is not None or pano is not None else _lens_rectification(pose_cfg, stream, camera_source_px)
    if lens is not None:
        pose_cfg = pose_cfg.model_copy(deep=True)
        pose_cfg.intrinsics = lens.pop("config")
    store = ArtifactStore(output_root)
    c = time.process_time()
    ing = ingest_video(source, store, name=name, start_frame=start_frame, end_frame=end_frame,
                       frame_skip=frame_skip, long_side=pose_cfg.long_side, progress=progress,
                       remap=lens.pop("maps") if lens else wide["maps"] if wide else pano["maps"] if pano else None)
    if lens is not None:
        store.update_manifest(ing.name, "ingest", {"camera": lens})
    cpu["ingest"], c = time.process_time() - c, time.process_time()
    res = InferResult(pose=run_pose(store, ing.name, pose_cfg, progress=progress))
    if wide is not None:  # the final MEI camera; a self-calibrated one re-rectifies the frames for depth
        from .wide_angle import refine as wide_refine

        wide_refine(store, ing.name, wide, source, start_frame, end_frame, frame_skip, pose_cfg.long_side)
    cpu["pose"], c = time.process_time() - c, time.process_time()
    from .depth.scale import make_metric

    res.metric = make_metric(store, ing.name, pipe.metric, pipe.depth_config.learned)  # None: no metric cue
    if res.metric is not None:
        res.pose.scale = "metric"
    if pipe.depth:
        from .depth.run import run_depth

        c = time.process_time()
        res.depth = run_depth(store, ing.name, pipe.depth_config, progress=progress)
        cpu["depth"] = time.process_time() - c
    if pipe.masks:
        from .masks.run import run_masks

        t, c = time.perf_counter(), time.process_time()
        res.masks = run_masks(store, ing.name, pipe.mask_config)
        cpu["masks"], res.masks_seconds = time.process_time() - c, time.perf_counter() - t
    if wide is not None:
        from .wide_angle import finish as wide_finish

        c = time.process_time()
        res.camera = wide_finish(store, ing.name, wide, source, start_frame, end_frame, frame_skip,
                                 pose_cfg.long_side, depth_cfg=pipe.depth_config if pipe.depth else None)
        cpu["wide_angle"] = time.process_time() - c
    if pano is not None:
        from .panorama import finish as pano_finish

        c = time.process_time()
        res.camera = pano_finish(store, ing.name, pano, source, start_frame, end_frame, frame_skip,
                                 pose_cfg.long_side, depth_cfg=pipe.depth_config if pipe.depth else None)
        cpu["panorama"] = time.process_time() - c
    if pipe.visualize:
        from .viz.video import write_vis_video

        res.vis_uri = write_vis_video(store, ing.name)
    res.seconds = time.perf_counter() - t0
    cpu["pipeline"] = time.process_time() - c0
    res.cpu_seconds = cpu
    _record_pipeline(store, ing.name, pipe, res)
    return res


def _record_pipeline(store: ArtifactStore, name: str, pipe: PipelineConfig, res: InferResult) -> None:
    """Add the pipeline preset, stage results and total timing to the manifest (keeping what stages wrote)."""
    section = {"preset": pipe.preset, "stages": ["pose"] + [s for s, on in
               (("depth", pipe.depth), ("masks", pipe.masks), ("visualize", pipe.visualize)) if on],
               "config": _json_clean(pipe.model_dump()), "summary": _json_clean(res.summary())}
    timings = {"pipeline_s": round(res.seconds, 3),
               "pipeline_fps": round(res.pose.num_frames / res.seconds, 3) if res.seconds > 0 else None}
    if res.masks_seconds is not None:
        timings["masks_s"] = round(res.masks_seconds, 3)
    for stage, v in (res.cpu_seconds or {}).items():  # CPU seconds of the whole process (every thread)
        timings[f"{stage}_cpu_s"] = round(v, 3)
    # whole process so far: ingest, pose, depth, masks
    store.update_manifest(name, "pipeline", {"pipeline": section, "peak_rss_mb": round(peak_rss_mb(), 1)},
                          timings=timings)
