"""Pose, depth and mask stages of a sequence whose camera is not a pinhole (MEI wide-angle, equirectangular
panorama), each run on its own over artifacts kept in the recorded camera's image.

``infer --pipeline wide_angle|panorama`` ingests the recorded frames rectified to a pinhole view, runs every
stage on that view and writes the set back in the camera's image at the end (:mod:`vipe_dagster.wide_angle`,
:mod:`vipe_dagster.panorama`). The Dagster graph materialises one stage at a time, and a stage may run again
alone; so here the store always holds the recorded frames (``processed_video``) and every stage leaves a set in
ViPE's layout for that camera:

- :func:`run_pose_on_camera`: the wide-angle / panorama plan, then ingest (the recorded frames resampled into the
  pinhole view), SLAM and the write-back run as ``infer`` runs them, in a temporary store; pose, intrinsics
  (``MEI`` / ``PANORAMA``), sparse map, info and the manifest's ``pose`` and ``camera`` sections are then copied
  into the sequence's store. Its rgb is never rewritten, so a failed run leaves the recorded frames.
- :func:`run_depth_on_camera`: plane-sweep depth on virtual pinhole views rebuilt from the manifest's
  ``camera`` record (MEI: the pose stage's pinhole view plus the corner views; panorama: every yaw / bottom /
  top view), written in the camera's image (MEI z-depth, panorama ray distance) with its confidence sidecar.
- :func:`run_masks_on_camera`: dynamic masks on the pinhole view the poses were tracked in (its frames, poses and
  depth resampled into it), written back in the camera's image (0 where that view does not reach).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time

import cv2
import numpy as np

from .config import PipelineConfig, PoseConfig
from .errors import ArtifactError, ConfigError
from .io import ArtifactStore, fs, open_video

log = logging.getLogger(__name__)

CAMERAS = {"mei": "MEI", "panorama": "PANORAMA"}
"""``PipelineConfig.camera`` -> the camera type these stages write in ``_camera.txt``."""


def sequence_camera(store: ArtifactStore, name: str) -> str:
    """The camera type of a sequence's intrinsics (``PINHOLE`` when it has none yet)."""
    return _sequence_intrinsics(store, name)[0]


def _sequence_intrinsics(store: ArtifactStore, name: str) -> tuple[str, np.ndarray | None]:
    """(camera type, first intrinsics row) of a sequence; (``PINHOLE``, None) when it has no intrinsics yet."""
    if not store.exists("intrinsics", name):
        return "PINHOLE", None
    intr, _, types = store.read_intrinsics(name)
    if len(set(types)) != 1:
        raise ArtifactError(f"{store.path('camera', name)}: one camera model per sequence expected, got "
                            f"{sorted(set(types))}")
    return types[0], intr[0].astype(np.float64)


def _camera_record(store: ArtifactStore, name: str) -> tuple[dict, np.ndarray]:
    """The manifest's ``camera`` record of a sequence the pose stage wrote in its camera's image, and the
    camera's intrinsics row."""
    kind, params = _sequence_intrinsics(store, name)
    rec = (store.read_manifest(name).get("camera") or {}) if store.exists("manifest", name) else {}
    if kind not in CAMERAS.values() or rec.get("model") != kind or "processing" not in rec:
        raise ArtifactError(f"{store.path('manifest', name)}: a {kind} sequence without the pose stage's camera "
                            "record (model and processing view): run the pose stage (slam_pose with preset "
                            "wide_angle or panorama) first")
    return rec, params


def run_pose_on_camera(store: ArtifactStore, name: str, pipe: PipelineConfig, pose_cfg: PoseConfig | None = None,
                       progress: bool = False):
    """Poses and intrinsics of the recorded ``rgb/<name>.mp4`` of an MEI or equirectangular camera
    (``pipe.camera``), written in that camera's layout (module docstring). ``pose_cfg`` replaces ``pipe.pose``
    (e.g. with the compute device). Returns ``(PoseResult of the pinhole view, manifest camera record)``."""
    from .ingest import ingest_video
    from .pipeline import _input_record, run_pose

    if pipe.camera not in CAMERAS:
        raise ConfigError(f"run_pose_on_camera: camera {pipe.camera!r} is a pinhole; use run_pose")
    pose_cfg = pose_cfg or pipe.pose
    if pose_cfg.use_masks:
        raise ConfigError(f"{name}: use_masks with a {pipe.camera} camera: the masks are in the recorded image and "
                          "the pose stage runs on a pinhole view of it; run the pose stage without masks")
    store.check_set(name, ("rgb",))
    t0 = time.perf_counter()
    with fs.local_copy(store.path("rgb", name)) as src, tempfile.TemporaryDirectory(prefix="vipe_cam_") as tmp:
        stream = open_video(src)
        w, h = stream.width, stream.height
        if pipe.camera == "mei":
            from .wide_angle import finish, plan, refine

            p = plan(pose_cfg, w, h, pipe.mei)
        else:
            from .panorama import finish, plan

            first = next(iter(open_video(src)))[1]
            p = plan(pose_cfg, w, h, pipe.panorama, store.path("rgb", name), first_frame=first)
        view = ArtifactStore(tmp)
        ingest_video(src, view, name=name, remap=p["maps"])
        res = run_pose(view, name, p["pose_config"], progress=progress)
        if pipe.camera == "mei":
            refine(view, name, p, src, None, None, 1, None)
        record = finish(view, name, p, src, None, None, 1, None, write_rgb=False)
        c2w, inds = view.read_pose(name)
        intr, iinds, types = view.read_intrinsics(name)
        made = view.read_manifest(name)
        info = view.read_info(name)
        sparse = view.read_sparse_map(name)
        keyframes, flags = view.read_keyframe_ids(name), view.read_pose_flags(name)
    if len(c2w) != len(stream):
        raise ArtifactError(f"{store.path('rgb', name)}: {len(stream)} frames but the pose stage placed {len(c2w)}")
    store.write_pose(name, c2w, inds=inds, keyframe_ids=keyframes, valid=flags)
    store.write_intrinsics(name, intr, inds=iinds, camera_type=types[0])
    store.write_sparse_map(name, sparse)
    store.write_info(name, info)
    section = dict(made["pose"])
    section["inputs"] = _input_record(store, name, ["rgb"])
    section["camera_view"] = ("poses tracked on the pinhole view of the manifest's camera.processing; intrinsics "
                              f"written as {types[0]}")
    timings = {k: v for k, v in (made.get("timings") or {}).items() if k.startswith("pose_")}
    timings["pose_s"] = round(time.perf_counter() - t0, 3)
    store.update_manifest(name, "pose", {"pose": section}, timings=timings)
    store.update_manifest(name, "ingest", {"camera": record})
    return res, record


def _views(store: ArtifactStore, name: str, rec: dict, w: int, h: int):
    """Virtual views, per-pixel owner, unit rays and whether depth is ray distance, rebuilt from the record."""
    from . import camera as cam

    K = np.asarray(rec["processing"]["pinhole"], np.float64)
    if rec["model"] == "MEI":
        from .wide_angle import main_view_maps, side_views

        tv = tracked_view(store, name, w, h)  # the main view: the one the poses were tracked in
        mei = tv["params"]
        rays, _, _, covered = main_view_maps(mei, K, w, h)
        unit = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
        side, owner = side_views(mei, K, unit, covered)
        main = {"label": {"view": "main"}, "R": tv["R"], "K": K, "size": tv["size"], "maps": tv["maps"]}
        owner = np.where(owner >= 0, owner + 1, np.where(owner == -1, 0, owner))
        return [main] + side, owner, unit, False
    from .panorama import depth_views

    size = int(rec["processing"]["view_px"])
    lens = cam.EquirectangularCamera(np.array([float(w), float(h)]))
    unit = lens.unproject(cam.pixel_grid(w, h), unit_norm=True).numpy()
    labels = [(v["label"], float(v["yaw_deg"]), float(v["pitch_deg"])) for v in rec["processing"]["views"]]
    views, owner = depth_views(lens, unit, K, size, labels)
    return views, owner, unit, True


def run_depth_on_camera(store: ArtifactStore, name: str, config=None):
    """Dense depth of an MEI or panorama sequence in its camera's image (module docstring); returns a
    :class:`~vipe_dagster.depth.run.DepthResult` over the whole image."""
    from .depth.config import DepthConfig
    from .depth.quality import conf_writer, depth_conf_path
    from .depth.run import DepthResult
    from .virtual_views import view_depth

    cfg = config or DepthConfig()
    if cfg.learned is not None:
        raise ConfigError(f"{name}: a learned depth prior on an MEI / panorama sequence is not supported (it "
                          "would run on the virtual pinhole views); run without learned_repo_id")
    store.check_set(name, ("rgb", "pose", "intrinsics"))
    rec, _ = _camera_record(store, name)
    t0 = time.perf_counter()
    with fs.local_copy(store.path("rgb", name)) as src:
        stream = open_video(src)
        n, w, h = len(stream), stream.width, stream.height
        views, owner, unit, ray_distance = _views(store, name, rec, w, h)
        out = [np.full((h, w), np.nan, np.float32) for _ in range(n)]
        conf = [np.zeros((h, w), np.uint8) for _ in range(n)]
        results: list = []
        done = view_depth(store, name, views, unit, owner, src, None, None, 1, None, cfg, out, ray_distance=ray_distance,
                          tag=rec["model"].lower(), conf_out=conf, results=results)
    with store.depth_writer(name) as dw, conf_writer(store, name) as cw:
        for d, c in zip(out, conf, strict=True):
            dw.add(d)
            cw.add(c)
    seconds = time.perf_counter() - t0
    measured = [float((c > 0).mean()) for c in conf]
    reliable = sum(r.reliable_fraction * v["pixels"] for r, v in zip(results, done, strict=True))
    scale = str(store.read_manifest(name).get("scale", "relative"))
    main = results[0] if results else None
    res = DepthResult(name=name, uri=store.path("depth", name), num_frames=n, width=w, height=h,
                      method=main.method if main else "mvs", depth_range=main.depth_range if main else None,
                      range_source=main.range_source if main else "none",
                      mvs_valid_fraction=float(np.mean(measured)), seconds=seconds, scale=scale,
                      per_frame_valid=measured, reliable_fraction=float(reliable))
    pose_ok = store.read_pose_valid(name)
    section = {"method": res.method, "scale": scale, "measured_fraction": round(res.mvs_valid_fraction, 4),
               "measured_fraction_min": round(float(np.min(measured)), 4),
               "reliable_fraction": round(res.reliable_fraction, 4), "confidence_uri": depth_conf_path(store, name),
               "frames_without_pose": int((~pose_ok).sum()), "depth_range": list(res.depth_range)
               if res.depth_range else None, "range_source": res.range_source,
               "camera": rec["model"], "value": "ray distance" if ray_distance else "z-depth",
               "views": done, "uncovered_fraction": round(float((owner < 0).mean()), 4),
               "rule": "plane-sweep depth on virtual pinhole views of the recorded frames (poses composed with each "
                       "view's rotation); each pixel from the view that sees it closest to its centre"}
    store.update_manifest(name, "depth", {"depth": section}, timings={"depth_s": round(seconds, 3)})
    log.info("depth %s (%s): %d frames, %d views, measured %.1f %%, %.1f s", name, rec["model"], n, len(done),
             100 * res.mvs_valid_fraction, seconds)
    return res


def tracked_view(store: ArtifactStore, name: str, width: int, height: int) -> dict:
    """The pinhole view an MEI / panorama sequence's poses were tracked in, from the manifest's camera record:
    ``R`` (view -> camera), ``K``, ``size`` (w, h), ``lens`` and ``params`` (the recorded camera and its
    intrinsics row), ``maps`` (recorded image -> view, for ``cv2.remap``), ``depth_factor`` (see
    :func:`depth_to_view`) and ``wrap`` (longitude wraps: sample with
    :func:`~vipe_dagster.virtual_views.sample_wrapped`)."""
    from . import camera as cam
    from .virtual_views import rotation, source_maps

    rec, params = _camera_record(store, name)
    K = np.asarray(rec["processing"]["pinhole"], np.float64)
    if rec["model"] == "MEI":
        lens = cam.camera_from_params("mei", params)
        R, size, wrap = np.eye(3), (width, height), False
    else:
        lens = cam.EquirectangularCamera(np.array([float(width), float(height)]))
        v = next(v for v in rec["processing"]["views"] if v["label"] == rec["processing"]["tracked_view"])
        R, wrap = rotation(float(v["yaw_deg"]), float(v["pitch_deg"])), True
        size = (int(rec["processing"]["view_px"]),) * 2
    # recorded depth (MEI z-depth, panorama ray distance) sampled at a view pixel -> the view's z-depth:
    # distance along the pixel's unit ray times its z in the view
    vr = cam.PinholeCamera(K).unproject(cam.pixel_grid(*size)).numpy()
    vr = vr / np.linalg.norm(vr, axis=-1, keepdims=True)
    cam_z = (vr @ R.T)[..., 2]
    factor = vr[..., 2] if rec["model"] == "PANORAMA" else vr[..., 2] / np.where(cam_z > 1e-6, cam_z, np.nan)
    return {"model": rec["model"], "params": params, "R": R, "K": K, "size": size, "lens": lens, "wrap": wrap,
            "maps": source_maps(lens, R, K, *size), "depth_factor": factor.astype(np.float32)}


def resample_to_view(frame: np.ndarray, view: dict) -> np.ndarray:
    """A recorded frame in the :func:`tracked_view` (:func:`vipe_dagster.virtual_views.resample`)."""
    from .virtual_views import resample

    return resample(frame, view["maps"], view["wrap"])


def depth_to_view(depth: np.ndarray, view: dict) -> np.ndarray:
    """A depth map of the recorded camera (MEI z-depth, panorama ray distance) as the :func:`tracked_view`'s
    z-depth: sampled at each view pixel's ray (:func:`~vipe_dagster.virtual_views.warp_depth`), times the
    view's ``depth_factor``."""
    from .virtual_views import warp_depth

    return (warp_depth(depth, *view["maps"]) * view["depth_factor"]).astype(np.float32)


def mask_to_view(mask: np.ndarray, view: dict) -> np.ndarray:
    """A mask of the recorded image in the :func:`tracked_view` (nearest, 0 beyond the recorded image)."""
    return cv2.remap(mask, *view["maps"], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def run_masks_on_camera(store: ArtifactStore, name: str, config=None):
    """Dynamic masks of an MEI or panorama sequence (module docstring): computed on the pinhole view the poses
    were tracked in and written back in the camera's image. The depth refill of moving objects stays off
    (the depth is the camera's, not the view's). Returns the view's :class:`~vipe_dagster.masks.run.MaskResult`
    with the written mask's uri."""
    from . import camera as cam
    from .masks.config import MaskConfig
    from .masks.run import instances_path, run_masks
    from .virtual_views import view_maps, write_view_sequence

    cfg = (config or MaskConfig()).model_copy(update={"refill_depth": False})
    store.check_set(name, ("rgb", "pose", "intrinsics", "depth"))
    c2w, inds = store.read_pose(name)
    with fs.local_copy(store.path("rgb", name)) as src, tempfile.TemporaryDirectory(prefix="vipe_cam_") as tmp:
        stream = open_video(src)
        w, h = stream.width, stream.height
        tv = tracked_view(store, name, w, h)
        R, K, size, lens = tv["R"], tv["K"], tv["size"], tv["lens"]
        rays = lens.unproject(cam.pixel_grid(w, h), unit_norm=True).numpy()
        view = ArtifactStore(tmp)
        method = (store.read_manifest(name).get("depth") or {}).get("method")
        write_view_sequence(view, name, stream, src, tv["maps"], tv["wrap"], R, K, c2w, inds,
                            store.read_pose_valid(name), "tracked", depth={"method": method})
        with view.depth_writer(name) as dw:
            for _, d in store.iter_depth(name):
                dw.add(depth_to_view(d, tv))
        res = run_masks(view, name, cfg)
        mx, my, seen, _, _ = view_maps(rays, R, K, *size)
        mx = np.where(seen, mx, -1e6).astype(np.float32)
        masks = [cv2.remap(m, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                 for _, m in view.iter_masks(name)]
        phrases = view.read_phrases(name)
        instances = json.loads(fs.read_text(instances_path(view, name)))
    with store.mask_writer(name) as mw:
        for m in masks:
            mw.add(m)
    store.write_phrases(name, phrases)
    instances["camera"] = {"model": tv["model"], "computed_on": "the tracked pinhole view "
                           f"{[round(float(v), 3) for v in K]} ({size[0]}x{size[1]}), masks 0 where it does not reach",
                           "view_fraction": round(float(seen.mean()), 4)}
    fs.write_text(instances_path(store, name), json.dumps(instances, indent=1))
    res.uri = store.path("mask", name)
    res.foreground_fraction = float(np.mean([np.mean(m > 0) for m in masks])) if masks else 0.0
    return res
