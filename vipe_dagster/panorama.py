"""``--pipeline panorama``: equirectangular (360 x 180 deg) video through virtual pinhole views.

The equirectangular frame (ViPE's ``PANORAMA`` camera, :class:`vipe_dagster.camera.EquirectangularCamera`) is
split into virtual pinhole views with fixed, exactly known intrinsics (``PanoramaConfig.fov_deg``, square
``view_px``) turned by fixed rotations from the panorama camera (:data:`VIEWS`): four yaw views (front, right,
back, left), a bottom view (the reference's rig) and a top view (so that every pixel gets depth; the reference
has none). What runs on them:

- **poses**: the ordinary pinhole pipeline (KLT SLAM, BA) runs on *one* yaw view, with its intrinsics fixed
  (no self-calibration): the front view, unless the first frame has fewer than half as many corners there as in
  the best-textured yaw view (``PanoramaConfig.track_view`` "auto", :func:`choose_track_view`). The tracked
  view's poses composed with the inverse of its fixed rotation are the panorama camera's poses (the front view's
  rotation is the identity). This is not the reference's rigid-rig SLAM over all five views with cross-view
  edges: the other views do not constrain the poses here, so a scene that loses texture in the tracked view
  after the first frame loses tracking where a rig would not.
- **depth**: plane-sweep depth on every view (the front view in the main run, the others with
  :func:`vipe_dagster.virtual_views.view_depth`, their poses the panorama's composed with the rig rotation);
  each equirectangular pixel takes its depth from the view that sees its ray closest to the view's centre,
  converted to **ray distance** (ViPE's panorama depth).
- **artifacts** in ViPE's panorama layout: ``rgb`` the equirectangular frames, ``intrinsics`` all-zero rows
  with ``PANORAMA`` in ``_camera.txt``, ``depth`` ray distance, ``vipe/<n>_info.pkl`` ``{"finished": True}``;
  masks (when asked for) and the sparse map's observations are warped from the tracked view (masks 0 elsewhere).
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .config import PanoramaConfig, PoseConfig
from .errors import ConfigError
from .virtual_views import remap_masks, rotation, source_maps, view_depth, view_maps, warp_depth

log = logging.getLogger(__name__)

# (label, yaw deg to the right, pitch deg down) of the virtual views; the first one is tracked
VIEWS = (("front", 0.0, 0.0), ("right", 90.0, 0.0), ("back", 180.0, 0.0), ("left", -90.0, 0.0),
         ("bottom", 0.0, 90.0), ("top", 0.0, -90.0))


def check_equirect(source: str, width: int, height: int) -> None:
    """An equirectangular frame is twice as wide as high (360 x 180 deg); anything else is refused."""
    if abs(width - 2 * height) > 2:
        raise ConfigError(f"{source}: --pipeline panorama needs an equirectangular video (360 x 180 deg, width = "
                          f"2 x height), got {width}x{height} (aspect {width / max(height, 1):.3f}, expected 2:1)")


def view_size(width: int, cfg: PanoramaConfig) -> int:
    """Side of the square virtual views: ``cfg.view_px``, or (0) the size whose central resolution equals the
    equirectangular frame's (``width / 2 pi`` px per radian), even."""
    if cfg.view_px:
        return int(cfg.view_px)
    return int(2 * round(width / (2 * math.pi) * math.tan(math.radians(cfg.fov_deg) / 2.0)))


def view_intrinsics(size: int, fov_deg: float) -> np.ndarray:
    f = size / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([f, f, (size - 1) / 2.0, (size - 1) / 2.0])


def _views(cfg: PanoramaConfig) -> list[tuple[str, float, float]]:
    return [v for v in VIEWS if cfg.top_view or v[0] != "top"]


YAW_VIEWS = ("front", "right", "back", "left")


def view_corners(frame: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> int:
    """Shi-Tomasi corners of ``frame`` resampled into a view (the texture a KLT tracker would find there)."""
    from .virtual_views import sample_wrapped

    img = sample_wrapped(frame, *maps)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    pts = cv2.goodFeaturesToTrack(gray, maxCorners=2000, qualityLevel=0.01, minDistance=5, blockSize=7)
    return 0 if pts is None else len(pts)


def choose_track_view(frame: np.ndarray | None, lens, K: np.ndarray, size: int, cfg: PanoramaConfig
                      ) -> tuple[str, dict]:
    """The yaw view SLAM runs on: ``cfg.track_view``, or ("auto") the front view unless the first frame has fewer
    than half as many corners there as in the best yaw view (then that one)."""
    if cfg.track_view != "auto":
        return cfg.track_view, {"rule": "given"}
    if frame is None:
        return "front", {"rule": "auto: no frame to measure, front"}
    counts = {n: view_corners(frame, source_maps(lens, rotation(y, p), K, size, size))
              for n, y, p in VIEWS if n in YAW_VIEWS}
    best = max(counts, key=counts.get)
    pick = "front" if counts["front"] >= 0.5 * counts[best] else best
    return pick, {"rule": "auto: front unless its first-frame corners are < 0.5 x the best yaw view's",
                  "corners_first_frame": counts}


def plan(pose_cfg: PoseConfig, width: int, height: int, cfg: PanoramaConfig, source: str,
         first_frame: np.ndarray | None = None) -> dict:
    """The virtual views, the tracked view and the ``cv2.remap`` maps equirectangular -> tracked view (ingest),
    the pose config of the tracked-view run (intrinsics fixed) and the manifest record."""
    from . import camera as cam

    check_equirect(source, width, height)
    ic = pose_cfg.intrinsics
    if ic.fx is not None or ic.camera_model not in (None, "pinhole"):
        raise ConfigError("--pipeline panorama: an equirectangular camera has no intrinsics to give (its virtual "
                          "views' intrinsics follow from the view size and FoV); leave out --intrinsics and "
                          "--camera-model")
    size = view_size(width, cfg)
    K = view_intrinsics(size, cfg.fov_deg)
    lens = cam.EquirectangularCamera(np.array([float(width), float(height)]))
    track, why = choose_track_view(first_frame, lens, K, size, cfg)
    _, yaw, pitch = next(v for v in VIEWS if v[0] == track)
    R_track = rotation(yaw, pitch)
    maps = source_maps(lens, R_track, K, size, size)
    fields = ic.model_dump()
    fields.update(fx=float(K[0]), fy=float(K[1]), cx=float(K[2]), cy=float(K[3]), camera_model="pinhole")
    pcfg = pose_cfg.model_copy(deep=True)
    pcfg.intrinsics = type(ic)(**fields)
    record = {
        "model": "PANORAMA", "source": "equirectangular", "size": [int(width), int(height)],
        "processing": {"to": "PINHOLE", "pinhole": [float(v) for v in K], "view_px": size,
                       "fov_deg": float(cfg.fov_deg),
                       "views": [{"label": n, "yaw_deg": y, "pitch_deg": p} for n, y, p in _views(cfg)],
                       "tracked_view": track, "tracked_view_choice": why,
                       "tracking": f"KLT SLAM and BA on the {track} view only (intrinsics fixed); the panorama "
                                   "camera's poses are its poses composed with the inverse of its rotation",
                       "rule": "every view is remapped (bilinear, longitude wrapping) from the equirectangular "
                               "frame; depth is plane-sweep per view, stitched back as ray distance"},
    }
    log.info("panorama: %dx%d equirectangular, %d views of %d px, %.0f deg (f %.1f), tracking the %s view",
             width, height, len(_views(cfg)), size, cfg.fov_deg, K[0], track)
    return {"K": K, "size": size, "maps": maps, "pose_config": pcfg, "record": record, "config": cfg,
            "track": track, "R_track": R_track}


def depth_views(lens, rays: np.ndarray, K: np.ndarray, size: int, labels) -> tuple[list[dict], np.ndarray]:
    """The virtual views ``labels`` ((label, yaw, pitch) rows) of the equirectangular camera ``lens`` as
    :func:`vipe_dagster.virtual_views.view_depth` takes them, and which view owns each pixel (unit ``rays``): the
    one that sees it closest to its centre (-2 where none does)."""
    views, scores = [], []
    for label, yaw, pitch in labels:
        R = rotation(yaw, pitch)
        _, _, seen, _, z = view_maps(rays, R, K, size, size)
        scores.append(np.where(seen, z, -np.inf))
        views.append({"label": {"label": label, "yaw_deg": yaw, "pitch_deg": pitch}, "R": R, "K": K,
                      "size": (size, size), "maps": source_maps(lens, R, K, size, size), "wrap": True})
    score = np.stack(scores)
    return views, np.where(np.isfinite(score.max(0)), np.argmax(score, 0), -2)


def finish(store, name: str, plan_: dict, source: str, start_frame, end_frame, frame_skip: int, long_side: int,
           depth_cfg=None, write_rgb: bool = True) -> dict:
    """Write the sequence's artifacts in the equirectangular image (module docstring) and the manifest's
    ``camera``. ``write_rgb=False``: leave the rgb as it is (a caller that keeps the recorded frames elsewhere)."""
    from . import camera as cam
    from .io import open_video
    from .io.artifacts import SparseMap

    _, inds, _ = store.read_intrinsics(name)
    K, size, cfg = plan_["K"], plan_["size"], plan_["config"]
    stream = open_video(source, start_frame, end_frame, frame_skip, long_side)
    w, h = stream.width, stream.height
    lens = cam.EquirectangularCamera(np.array([float(w), float(h)]))
    rays = lens.unproject(cam.pixel_grid(w, h), unit_norm=True).numpy()
    views, owner = depth_views(lens, rays, K, size, _views(cfg))
    main_i = next(i for i, v in enumerate(views) if v["label"]["label"] == plan_["track"])
    R_track = plan_["R_track"]
    mx0, my0, seen0, _, z0 = view_maps(rays, R_track, K, size, size)
    record = dict(plan_["record"])
    record["params_processing_px"] = [0.0, 0.0, 0.0, 0.0]
    record["params_note"] = "ViPE PANORAMA rows are all zeros (the equirectangular mapping needs only W and H)"
    record["depth_coverage_views"] = round(float((owner >= 0).mean()), 4)
    record["depth_coverage_main_view"] = round(float((owner == main_i).mean()), 4)
    record["depth"] = "ray distance (ViPE's panorama depth), plane-sweep per view, each pixel from its most central view"

    if write_rgb:
        with store.rgb_writer(name, store.open_rgb(name).fps) as wr:
            for _, frame in stream:
                wr.add(frame)
    store.write_intrinsics(name, np.zeros((len(inds), 4), np.float32), inds=inds, camera_type="PANORAMA")
    rewritten = ["rgb", "intrinsics"]
    if not np.allclose(R_track, np.eye(3)):  # the tracked view's poses -> the panorama camera's
        c2w, pinds = store.read_pose(name)
        T_inv = np.eye(4)
        T_inv[:3, :3] = R_track.T
        kf = store.read_keyframe_ids(name)
        store.write_pose(name, (c2w.astype(np.float64) @ T_inv).astype(np.float32), inds=pinds, keyframe_ids=kf,
                         valid=store.read_pose_flags(name))
        rewritten.append("pose")
    if store.exists("depth", name):
        inv_z0 = (1.0 / np.where(z0 > 1e-6, z0, 1.0)).astype(np.float32)
        depths = []
        for _, d in store.iter_depth(name):
            out = np.full((h, w), np.nan, np.float32)
            main = owner == main_i
            out[main] = (warp_depth(d, mx0, my0) * inv_z0)[main]
            depths.append(out)
        if depth_cfg is not None:
            # the tracked view's depth came from the main run: view_depth handles the others
            others = np.where(owner == main_i, -1, owner)
            record["views_depth"] = view_depth(store, name, views, rays, others, source, start_frame, end_frame,
                                               frame_skip, long_side, depth_cfg, depths, ray_distance=True,
                                               tag="panorama")
        with store.depth_writer(name) as dw:
            for d in depths:
                dw.add(d)
        rewritten.append("depth")
    if store.exists("mask", name):
        remap_masks(store, name, np.where(seen0, mx0, -1e6).astype(np.float32), my0)
        rewritten.append("mask")
    if store.exists("sparse", name):
        sm = store.read_sparse_map(name)
        ideal = sm.obs_uv.astype(np.float64)  # tracked-view pixels -> panorama camera rays
        r = np.stack([(ideal[:, 0] - K[2]) / K[0], (ideal[:, 1] - K[3]) / K[1], np.ones(len(ideal))], 1) @ R_track.T
        import torch

        uv, _ = lens.project(torch.as_tensor(r))
        store.write_sparse_map(name, SparseMap(sm.points, sm.colors, sm.obs_frame, sm.obs_point,
                                               uv.numpy().astype(np.float32), sm.keyframes))
        rewritten.append("sparse")
    store.write_info(name, {"finished": True})  # what ViPE's panorama pipeline writes (spec §3)
    record["rewritten"] = rewritten
    record["fov_note"] = cam.PANORAMA_FOV_NOTE
    store.update_manifest(name, "ingest", {"camera": record})
    log.info("panorama %s: %dx%d, depth on %.1f %% of the image (tracked view %.1f %%)", name, w, h,
             100 * record["depth_coverage_views"], 100 * record["depth_coverage_main_view"])
    return record
