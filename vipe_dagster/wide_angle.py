"""``--pipeline wide_angle``: an MEI (unified) camera through the pinhole pipeline.

ViPE runs its wide-angle preset on the MEI model ``[fx, fy, cx, cy, xi]`` (spec §2: ``u = fx X / (Z + xi |P|)
+ cx``). Here every frame is rectified to a pinhole view with the same centre and orientation
(:func:`plan`): KLT SLAM, BA and plane-sweep depth run on that view unchanged, and :func:`finish` writes the
artifacts back in the MEI image (ViPE's layout): ``rgb`` the MEI frames, ``intrinsics`` ``(N, 5)`` MEI rows
with ``MEI`` in ``_camera.txt``, ``depth`` the z-depth of each MEI pixel's ray (the rectification is a pure
re-projection, so the z-depth of a point is the same in both images; the MEI pixels the pinhole view cannot
reach get plane-sweep depth from four side views turned towards the corners, :func:`side_view_depth`),
masks (warped; 0 beyond the main view) and the sparse map's observations as MEI pixels. Poses are those of the
pinhole run.

The MEI camera comes from ``--intrinsics fx,fy,cx,cy,xi`` / an MEI intrinsics file (then the pinhole's focal is
fixed) or is self-calibrated: the frames are rectified with a starting MEI camera (``MeiConfig.xi_init`` and
the focal of ``MeiConfig.fov_prior_deg``), the pose stage self-calibrates the focal and the radial terms k1 k2
of that view (:mod:`vipe_dagster.slam`; a wrong starting MEI shows there as radial distortion), and the MEI
camera that maps the calibrated rays to the recorded pixels best is fitted by least squares (focal and xi,
principal point at the image centre). The manifest's ``camera`` section says which it was.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .config import MeiConfig, PoseConfig
from .errors import ConfigError
from .virtual_views import remap_masks, rotation, source_maps, view_depth, view_maps, warp_depth

log = logging.getLogger(__name__)


def mei_focal_for_fov(width: float, hfov_deg: float, xi: float) -> float:
    """The MEI focal whose ray at ``width / 2`` from the centre is at ``hfov_deg / 2`` from the axis."""
    t = math.radians(hfov_deg) / 2.0
    if t >= math.pi / 2 and xi <= 0:
        raise ConfigError(f"an MEI camera with xi {xi} cannot see {hfov_deg} deg")
    return float(width / 2.0 / (math.sin(t) / (math.cos(t) + xi)))


def rectification_pinhole(mei: np.ndarray, width: int, height: int, focal_scale: float) -> np.ndarray:
    """``[f, f, cx, cy]`` of the pinhole view (same size, centred) the pipeline runs on: ``focal_scale`` times
    the MEI's equivalent pinhole focal ``f / (1 + xi)``, but never wider than the view whose every pixel sees
    the recorded MEI image."""
    from . import camera as cam

    lens = cam.camera_from_params("mei", np.asarray(mei, np.float64))
    valid = cam.rectifying_pinhole(lens, width, height, mode="valid")
    f_eq = float(mei[0]) / (1.0 + float(mei[4]))
    f = max(focal_scale * f_eq, float(valid[0]))
    return np.array([f, f, (width - 1) / 2.0, (height - 1) / 2.0])


def plan(pose_cfg: PoseConfig, width: int, height: int, mei_cfg: MeiConfig) -> dict:
    """The MEI camera (given or starting), the pinhole view, the ``cv2.remap`` maps MEI -> pinhole, the pose
    config of the pinhole run, and the manifest record."""
    from . import camera as cam

    ic = pose_cfg.intrinsics
    given = ic.fx is not None
    if given:
        if ic.camera_model != "mei" or ic.xi is None:
            raise ConfigError(f"--pipeline wide_angle needs an MEI camera (fx,fy,cx,cy,xi), got camera model "
                              f"{ic.camera_model or 'pinhole'}: give --intrinsics fx,fy,cx,cy,xi or an MEI "
                              "intrinsics file, or no intrinsics (self-calibration)")
        if any(getattr(ic, k) for k in ("k1", "k2", "p1", "p2")):
            raise ConfigError("--pipeline wide_angle: the MEI camera's extra distortion (k1 k2 p1 p2) is not "
                              "written in ViPE's MEI rows; give fx,fy,cx,cy,xi")
        mei = np.array([ic.fx, ic.fy if ic.fy is not None else ic.fx,
                        ic.cx if ic.cx is not None else (width - 1) / 2.0,
                        ic.cy if ic.cy is not None else (height - 1) / 2.0, ic.xi], np.float64)
    else:
        f0 = mei_focal_for_fov(width, mei_cfg.fov_prior_deg, mei_cfg.xi_init)
        mei = np.array([f0, f0, (width - 1) / 2.0, (height - 1) / 2.0, mei_cfg.xi_init], np.float64)
    pin = rectification_pinhole(mei, width, height, mei_cfg.rectify_focal_scale)
    lens = cam.camera_from_params("mei", mei)
    maps = cam.rectify_maps(lens, pin, width, height)
    fields = ic.model_dump()
    fields.update(k1=None, k2=None, p1=None, p2=None, k3=None, k4=None, xi=None)
    hfov_pin = float(cam.fov_from_focal(width, pin[0]))
    if given:
        fields.update(fx=float(pin[0]), fy=float(pin[1]), cx=float(pin[2]), cy=float(pin[3]), camera_model="pinhole")
    else:  # the pinhole view of a starting MEI: the pose stage calibrates its focal and radial k1 k2
        fields.update(fx=None, fy=None, cx=None, cy=None, camera_model=None, radial_terms=2,
                      fov_prior_deg=hfov_pin,
                      sweep_fov_deg=(max(20.0, hfov_pin - 40.0), min(165.0, hfov_pin + 20.0)))
    cfg = pose_cfg.model_copy(deep=True)
    cfg.intrinsics = type(ic)(**fields)
    record = {
        "model": "MEI", "source": "given" if given else "self-calibrated",
        "start" if not given else "given": [float(v) for v in mei],
        "rectified": False,
        "processing": {"to": "PINHOLE", "pinhole": [float(v) for v in pin], "hfov_deg": round(hfov_pin, 3),
                       "rule": "every frame is remapped (bilinear) to this pinhole view for SLAM, BA and plane-sweep "
                               "depth; artifacts are written back in the MEI image"},
    }
    log.info("wide_angle: %s MEI %s, pinhole view f %.1f (hfov %.1f deg)", record["source"],
             [round(float(v), 4) for v in mei], pin[0], hfov_pin)
    return {"mei": mei, "given": given, "pinhole": pin, "maps": maps, "pose_config": cfg, "record": record}


def fit_mei(start: np.ndarray, pin0: np.ndarray, intr: np.ndarray, radial: np.ndarray, width: int,
            height: int) -> tuple[np.ndarray, dict]:
    """The MEI camera (focal, xi; centre fixed) whose projection of the self-calibrated rays best matches
    the recorded pixels. A recorded MEI pixel ``u`` was rectified with the starting camera to pixel
    ``p = pin0(start^-1(u))`` of the first pinhole view; the pose stage found that view to be a pinhole
    ``intr`` with radial terms ``radial``, so ``u``'s true ray is ``intr^-1(undistort(p))``."""
    from scipy.optimize import least_squares

    from . import camera as cam
    from .slam.geometry import undistort_radial

    xs = np.linspace(0, width - 1, 41)
    ys = np.linspace(0, height - 1, 31)
    gx, gy = np.meshgrid(xs, ys)
    u = np.stack([gx.ravel(), gy.ravel()], 1)
    rays0, ok = cam.unproject_pixels("mei", start, u)
    ok = ok & (rays0[:, 2] > 0.15)
    p = np.stack([pin0[0] * rays0[:, 0] / np.where(ok, rays0[:, 2], 1) + pin0[2],
                  pin0[1] * rays0[:, 1] / np.where(ok, rays0[:, 2], 1) + pin0[3]], 1)
    ok &= (p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)
    q = undistort_radial(p[ok], intr, radial)
    rays = np.stack([(q[:, 0] - intr[2]) / intr[0], (q[:, 1] - intr[3]) / intr[1], np.ones(len(q))], 1)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    target = u[ok]
    cx, cy = float(start[2]), float(start[3])

    def resid(x):
        f, xi = x
        den = rays[:, 2] + xi
        return np.concatenate([f * rays[:, 0] / den + cx - target[:, 0], f * rays[:, 1] / den + cy - target[:, 1]])

    sol = least_squares(resid, x0=[float(start[0]), float(start[4])], bounds=([1.0, -0.99], [1e5, 5.0]))
    f, xi = (float(v) for v in sol.x)
    r = resid(sol.x).reshape(2, -1)
    rms = float(np.sqrt(np.mean(np.sum(r * r, 0))))
    return np.array([f, f, cx, cy, xi]), {"fit_rms_px": round(rms, 4), "fit_points": int(ok.sum()),
                                          "rule": "least squares of the MEI projection of the self-calibrated "
                                                  "rays against the recorded pixels (focal and xi; principal "
                                                  "point at the image centre)"}


def refine(store, name: str, plan_: dict, source: str, start_frame, end_frame, frame_skip: int,
           long_side: int) -> None:
    """After the pose stage: the final MEI camera (given, or fitted to the self-calibration) and the pinhole
    view the later stages see. A self-calibrated camera's frames are rectified again from the recorded MEI
    frames with the fitted MEI to the pose stage's ideal pinhole (one resampling, whatever the pose stage
    did to the first view); poses and the sparse map (ideal-pinhole pixels) stay as they are."""
    from . import camera as cam
    from .io import open_video

    intr, _, _ = store.read_intrinsics(name)
    K = intr[0, :4].astype(np.float64)
    plan_["final_pinhole"] = K
    record = plan_["record"]
    if plan_["given"]:
        plan_["final_mei"] = plan_["mei"]
        return
    pi = (store.read_manifest(name).get("pose") or {}).get("intrinsics") or {}
    radial = np.array([float(pi.get("k1") or 0.0), float(pi.get("k2") or 0.0)])
    stream = open_video(source, start_frame, end_frame, frame_skip, long_side)
    w, h = stream.width, stream.height
    mei, fit = fit_mei(plan_["mei"], plan_["pinhole"], K, radial, w, h)
    record.update(fit=fit, pinhole_calibration={"intrinsics": [float(v) for v in K], "k1": float(radial[0]),
                                                "k2": float(radial[1]), "source": pi.get("source")})
    plan_["final_mei"] = mei
    mx, my = cam.rectify_maps(cam.camera_from_params("mei", mei), K, w, h)
    with store.rgb_writer(name, stream.fps) as wr:
        for _, frame in stream:
            wr.add(cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
    record["processing"]["pinhole"] = [float(v) for v in K]
    record["processing"]["hfov_deg"] = round(float(cam.fov_from_focal(w, K[0])), 3)
    record["processing"]["rerectified"] = ("the recorded frames rectified again with the fitted MEI camera to "
                                           "the pose stage's ideal pinhole before depth")
    log.info("wide_angle %s: fitted MEI %s (rms %.3f px); frames rectified again to pinhole f %.1f", name,
             [round(float(v), 4) for v in mei], fit["fit_rms_px"], K[0])


# side views for the part of the MEI image the main pinhole view does not reach: (yaw, pitch) in degrees
# towards the four corners, with the main view's focal times SIDE_FOCAL (an MEI lens with xi < 1 resolves its periphery
# finer than its centre)
SIDE_VIEWS = ((50.0, 40.0), (-50.0, 40.0), (50.0, -40.0), (-50.0, -40.0))
SIDE_FOCAL = 1.8


def side_views(mei: np.ndarray, K: np.ndarray, rays: np.ndarray, covered: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """The side views (:data:`SIDE_VIEWS`) of an MEI image and which of them owns each pixel the main view does
    not cover (``covered``): the one that sees it closest to its centre; -1 where the main view covers it, -2
    where no view sees it. Each view is a pinhole ``K`` with the main view's focal times :data:`SIDE_FOCAL`."""
    from . import camera as cam

    h, w = covered.shape
    Kv = np.array([K[0] * SIDE_FOCAL, K[1] * SIDE_FOCAL, (w - 1) / 2.0, (h - 1) / 2.0])
    lens = cam.camera_from_params("mei", mei)
    views, scores = [], []
    for yaw, pitch in SIDE_VIEWS:
        R = rotation(yaw, pitch)
        _, _, seen, _, z = view_maps(rays, R, Kv, w, h)
        scores.append(np.where(seen, z, -np.inf))  # view z of the ray: larger = more central
        views.append({"label": {"yaw_deg": yaw, "pitch_deg": pitch}, "R": R, "K": Kv, "size": (w, h),
                      "maps": source_maps(lens, R, Kv, w, h)})
    score = np.stack(scores)
    owner = np.where(covered, -1, np.argmax(score, 0))
    owner = np.where(~covered & ~np.isfinite(score.max(0)), -2, owner)
    return views, owner


def side_view_depth(store, name: str, mei: np.ndarray, K: np.ndarray, rays: np.ndarray, covered: np.ndarray,
                    source: str, start_frame, end_frame, frame_skip: int, long_side: int, depth_cfg,
                    out: list[np.ndarray]) -> list[dict]:
    """Plane-sweep depth of the MEI pixels the main view does not reach: each is given to the side view
    (:func:`side_views`) that sees it closest to its centre; every such view is a pinhole sequence of its own
    (the recorded frames remapped into it, the poses turned with it) run through the same depth stage
    (:func:`vipe_dagster.virtual_views.view_depth`), and its z-depth converted to the MEI camera's z-depth of
    the same point."""
    views, owner = side_views(mei, K, rays, covered)
    return view_depth(store, name, views, rays, owner, source, start_frame, end_frame, frame_skip, long_side,
                      depth_cfg, out, ray_distance=False, tag="wide_angle")


def main_view_maps(mei: np.ndarray, K: np.ndarray, w: int, h: int):
    """For every pixel of the MEI image: its ray (not unit), the pixel of the pinhole view ``K`` (same
    orientation) it falls on (``-1e6`` where the lens has no ray) and whether that view covers it."""
    from . import camera as cam

    lens = cam.camera_from_params("mei", mei)
    rays, ok = lens.unproject_with_valid(cam.pixel_grid(w, h))
    rays = rays.numpy()
    ok = ok.numpy() & (rays[..., 2] > 1e-6)
    z = np.where(ok, rays[..., 2], 1.0)
    q = np.stack([K[0] * rays[..., 0] / z + K[2], K[1] * rays[..., 1] / z + K[3]], -1)
    mx = np.where(ok, q[..., 0], -1e6).astype(np.float32)
    my = np.where(ok, q[..., 1], -1e6).astype(np.float32)
    covered = ok & (q[..., 0] >= -0.5) & (q[..., 0] <= w - 0.5) & (q[..., 1] >= -0.5) & (q[..., 1] <= h - 0.5)
    return rays, mx, my, covered


def finish(store, name: str, plan_: dict, source: str, start_frame, end_frame, frame_skip: int,
           long_side: int, depth_cfg=None, write_rgb: bool = True) -> dict:
    """Write the sequence's artifacts in the MEI image (module docstring) and the manifest's ``camera``.
    ``write_rgb=False``: leave the rgb as it is (a caller that keeps the recorded frames elsewhere)."""
    from . import camera as cam
    from .io import open_video
    from .io.artifacts import SparseMap

    _, inds, _ = store.read_intrinsics(name)
    K = plan_["final_pinhole"]
    mei = plan_["final_mei"]
    stream = open_video(source, start_frame, end_frame, frame_skip, long_side)
    w, h = stream.width, stream.height
    record = dict(plan_["record"])
    record["params_processing_px"] = [float(v) for v in mei]
    record["params_note"] = "ViPE MEI row fx fy cx cy xi in pixels of the processed rgb"
    # MEI pixel -> its ray -> pixel of the final pinhole view (where rgb, depth and masks were computed)
    rays, mx, my, covered = main_view_maps(mei, K, w, h)
    record["depth_coverage_main_view"] = round(float(covered.mean()), 4)
    record["depth"] = ("z-depth (ViPE's MEI depth), warped from the main pinhole view; the MEI pixels it does not "
                       "reach from side views turned towards the corners (side_views)")

    # same order as a set rewrite: rgb, intrinsics, then what was computed with them
    if write_rgb:
        with store.rgb_writer(name, store.open_rgb(name).fps) as wr:
            for _, frame in stream:
                wr.add(frame)
    store.write_intrinsics(name, np.tile(mei.astype(np.float32), (len(inds), 1)), inds=inds, camera_type="MEI")
    rewritten = ["rgb", "intrinsics"]
    if store.exists("depth", name):
        depths = [warp_depth(d, mx, my) for _, d in store.iter_depth(name)]
        if depth_cfg is not None and not covered.all():
            unit = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
            record["side_views"] = side_view_depth(store, name, mei, K, unit, covered, source, start_frame,
                                                   end_frame, frame_skip, long_side, depth_cfg, depths)
        with store.depth_writer(name) as dw:
            for d in depths:
                dw.add(d)
        rewritten.append("depth")
    if store.exists("mask", name):
        remap_masks(store, name, mx, my)
        rewritten.append("mask")
    if store.exists("sparse", name):
        sm = store.read_sparse_map(name)
        ideal = sm.obs_uv.astype(np.float64)  # ideal-pinhole pixels of the final view
        r = np.stack([(ideal[:, 0] - K[2]) / K[0], (ideal[:, 1] - K[3]) / K[1], np.ones(len(ideal))], 1)
        uv, _ = cam.project_points("mei", mei, r)
        store.write_sparse_map(name, SparseMap(sm.points, sm.colors, sm.obs_frame, sm.obs_point,
                                               uv.astype(np.float32), sm.keyframes))
        rewritten.append("sparse")
    record["rewritten"] = rewritten
    hfov = cam.field_of_view("MEI", mei, w, h)
    record["fov_deg"] = [round(hfov.x_deg, 3), round(hfov.y_deg, 3)]
    store.update_manifest(name, "ingest", {"camera": record})  # the lens section (see io/manifest.py)
    log.info("wide_angle %s: MEI %s (%s), depth on %.1f %% of the MEI image", name,
             [round(float(v), 4) for v in mei], record["source"], 100 * record["depth_coverage_main_view"])
    return record
