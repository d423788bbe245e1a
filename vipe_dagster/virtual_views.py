"""Virtual pinhole views of a non-pinhole camera, and plane-sweep depth computed on them.

Shared by ``--pipeline wide_angle`` (:mod:`vipe_dagster.wide_angle`: side views of an MEI image) and
``--pipeline panorama`` (:mod:`vipe_dagster.panorama`: the yaw / bottom / top views of an equirectangular
image). A virtual view is a pinhole camera ``K`` (``w x h``) turned by a fixed rotation ``R`` (view -> camera,
OpenCV axes) from the recorded camera; its frames are the recorded frames resampled into it (``cv2.remap`` maps
from the camera package's projection of the view's rays), its poses are the recorded camera's poses composed with
``R``. :func:`view_depth` runs the ordinary depth stage on such views and writes their depth back into the
recorded image, either as z-depth (MEI, as ViPE stores it) or as ray distance (panorama).
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

log = logging.getLogger(__name__)


def rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """View -> camera rotation (OpenCV axes) of a view turned ``yaw`` to the right and ``pitch`` down."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return ry @ rx


def view_maps(rays: np.ndarray, R: np.ndarray, K: np.ndarray, w: int, h: int):
    """For unit camera rays (h', w', 3): pixel coordinates in the pinhole view ``K`` (``w x h``) turned by ``R``
    (view -> camera), whether the view sees them, the z-depth factor view -> camera (``ray_z / view_z``), and
    the ray's z in the view (``1 / view_z`` turns the view's z-depth into ray distance)."""
    dv = rays @ R  # R^T d
    z = dv[..., 2]
    zs = np.where(z > 1e-6, z, 1.0)
    mx, my = K[0] * dv[..., 0] / zs + K[2], K[1] * dv[..., 1] / zs + K[3]
    seen = (z > 1e-6) & (mx >= -0.5) & (mx <= w - 0.5) & (my >= -0.5) & (my <= h - 0.5)
    return mx.astype(np.float32), my.astype(np.float32), seen, (rays[..., 2] / zs).astype(np.float32), z


def source_maps(lens, R: np.ndarray, K: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps recorded image -> view: for each view pixel, the recorded pixel its ray (turned by
    ``R``) lands on under ``lens`` (a :mod:`vipe_dagster.camera` model); -1e6 where the lens has no pixel."""
    import torch

    from . import camera as cam

    vr = cam.PinholeCamera(np.asarray(K, np.float64)).unproject(cam.pixel_grid(w, h)).numpy()
    vr = vr / np.linalg.norm(vr, axis=-1, keepdims=True)
    uv, ok = lens.project(torch.as_tensor(vr @ R.T))
    uv, ok = uv.numpy(), ok.numpy()
    return (np.where(ok, uv[..., 0], -1e6).astype(np.float32), np.where(ok, uv[..., 1], -1e6).astype(np.float32))


def warp_depth(d: np.ndarray, mx: np.ndarray, my: np.ndarray, edge_rel: float = 0.05) -> np.ndarray:
    """Sample a depth map at ``(mx, my)``: bilinear where the neighbourhood is smooth and valid, nearest elsewhere
    (no flying pixels across depth edges), NaN outside."""
    src = np.where(np.isfinite(d) & (d > 0), d, np.nan).astype(np.float32)
    near = cv2.remap(src, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    lin = cv2.remap(np.nan_to_num(src, nan=0.0), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0.0)
    with np.errstate(invalid="ignore"):
        smooth = np.isfinite(near) & (np.abs(lin - near) <= edge_rel * near)
    return np.where(smooth, lin, near).astype(np.float32)


def remap_masks(store, name: str, mx: np.ndarray, my: np.ndarray) -> None:
    """Rewrite the sequence's mask artifact (and its phrases) sampled at ``(mx, my)``: nearest, 0 outside."""
    phrases = store.read_phrases(name) if store.exists("phrases", name) else {}
    masks = [m for _, m in store.iter_masks(name)]
    with store.mask_writer(name) as mw:
        for m in masks:
            mw.add(cv2.remap(m, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
    store.write_phrases(name, phrases)


def sample_wrapped(frame: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear ``cv2.remap`` of an equirectangular frame: columns wrap around (longitude is periodic), rows
    are clamped at the poles."""
    pad = np.concatenate([frame[:, -2:], frame, frame[:, :2]], axis=1)
    pad = cv2.copyMakeBorder(pad, 2, 2, 0, 0, cv2.BORDER_REPLICATE)
    w = frame.shape[1]
    return cv2.remap(pad, np.mod(mx + 0.5, w) - 0.5 + 2.0, my + 2.0, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def resample(frame: np.ndarray, maps: tuple[np.ndarray, np.ndarray], wrap: bool = False) -> np.ndarray:
    """A recorded frame resampled into a view (``maps``: view pixel -> recorded pixel), bilinear. View pixels
    beyond the recorded image take its nearest edge pixel, not black: a black area's border stays at the same
    view pixel in every frame, and matching that fixed edge pulls the depth of the recorded pixels next to it
    to the farthest plane (zero parallax). ``wrap``: an equirectangular frame (:func:`sample_wrapped`)."""
    return sample_wrapped(frame, *maps) if wrap else cv2.remap(frame, maps[0], maps[1], cv2.INTER_LINEAR,
                                                               borderMode=cv2.BORDER_REPLICATE)


def write_view_sequence(vs, name: str, stream, source: str, maps, wrap: bool, R: np.ndarray, K: np.ndarray,
                        c2w: np.ndarray, inds: np.ndarray, valid: np.ndarray | None, label, **manifest) -> None:
    """A new sequence ``name`` in the (temporary) store ``vs``: the frames of ``stream`` resampled into the view
    (:func:`resample`), its manifest (``manifest``: extra sections), the recorded camera's poses ``c2w``
    composed with the view's rotation ``R`` and the view's intrinsics ``K`` on every frame."""
    from .io.manifest import base_manifest

    T = np.eye(4)
    T[:3, :3] = R
    vs.begin_generation(name)
    with vs.rgb_writer(name, stream.fps) as wr:
        for _, frame in stream:
            wr.add(resample(frame, maps, wrap))
    vs.write_manifest(name, {**base_manifest(source, "virtual-view", {"view": label}), **manifest})
    vs.write_pose(name, (c2w.astype(np.float64) @ T).astype(np.float32), inds=inds, valid=valid)
    vs.write_intrinsics(name, np.tile(np.asarray(K, np.float32), (len(inds), 1)), inds=inds)


def view_depth(store, name: str, views: list[dict], rays: np.ndarray, owner: np.ndarray, source: str,
               start_frame, end_frame, frame_skip: int, long_side: int, depth_cfg, out: list[np.ndarray], *,
               ray_distance: bool, tag: str, conf_out: list[np.ndarray] | None = None,
               results: list | None = None) -> list[dict]:
    """Plane-sweep depth of the recorded pixels ``owner == i`` from virtual view ``views[i]`` (dicts with
    ``label``, ``R``, ``K``, ``size`` ``(w, h)``, ``maps`` recorded image -> view, ``wrap``: longitude wraps).
    Every view with pixels is a pinhole sequence of its own in a temporary store (the recorded frames resampled
    into it, the store's poses composed with ``R``, the sparse map's observations projected into it), run
    through the same depth stage; its depth is written into ``out[k]`` at the owned pixels, converted to the
    recorded camera's z-depth of the same point, or to ray distance (``ray_distance``; ``rays`` are unit).
    ``conf_out`` (uint8 frames of the depth-confidence sidecar's encoding) receives each view's confidence at
    the same pixels (nearest); ``results`` each view's :class:`~vipe_dagster.depth.run.DepthResult`."""
    import tempfile

    from .depth.run import run_depth
    from .io import ArtifactStore, open_video
    from .io.artifacts import SparseMap

    c2w, inds = store.read_pose(name)
    valid = store.read_pose_valid(name)
    sm = store.read_sparse_map(name) if store.exists("sparse", name) else None
    done = []
    for i, v in enumerate(views):
        mine = owner == i
        if not mine.any():
            continue
        R, Kv = v["R"], np.asarray(v["K"], np.float64)
        w, h = v["size"]
        fx_, fy_ = v["maps"]
        T = np.eye(4)
        T[:3, :3] = R
        with tempfile.TemporaryDirectory(prefix="vipe_view_") as tmp:
            vs = ArtifactStore(tmp)
            write_view_sequence(vs, name, open_video(source, start_frame, end_frame, frame_skip, long_side), source,
                                (fx_, fy_), bool(v.get("wrap")), R, Kv, c2w, inds, valid, v["label"])
            if sm is not None and len(sm.obs_frame):
                w2c = np.linalg.inv(c2w[sm.obs_frame].astype(np.float64) @ T)
                p = sm.points[sm.obs_point].astype(np.float64)
                pc = np.einsum("nij,nj->ni", w2c[:, :3, :3], p) + w2c[:, :3, 3]
                front = pc[:, 2] > 1e-6
                uvv = np.stack([Kv[0] * pc[front, 0] / pc[front, 2] + Kv[2],
                                Kv[1] * pc[front, 1] / pc[front, 2] + Kv[3]], 1)
                inside = (uvv[:, 0] >= 0) & (uvv[:, 0] <= w - 1) & (uvv[:, 1] >= 0) & (uvv[:, 1] <= h - 1)
                sel = np.flatnonzero(front)[inside]
                if len(sel):
                    vs.write_sparse_map(name, SparseMap(sm.points, sm.colors, sm.obs_frame[sel], sm.obs_point[sel],
                                                        uvv[inside].astype(np.float32), sm.keyframes))
            res = run_depth(vs, name, depth_cfg)
            mx, my, _, zf, z = view_maps(rays, R, Kv, w, h)
            factor = (1.0 / np.where(z > 1e-6, z, 1.0)).astype(np.float32) if ray_distance else zf
            for k, d in vs.iter_depth(name):
                out[k][mine] = (warp_depth(d, mx, my) * factor)[mine]
            if conf_out is not None:
                from .depth.quality import depth_conf_path
                from .io.artifacts import FrameZipReader, _decode_mask_png

                for k, c in FrameZipReader(depth_conf_path(vs, name), "png", _decode_mask_png).iter():
                    conf_out[k][mine] = cv2.remap(c, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                                  borderValue=0)[mine]
            if results is not None:
                results.append(res)
        done.append({**v["label"], "pinhole": [float(x) for x in Kv], "size": [int(w), int(h)],
                     "pixels": round(float(mine.mean()), 4), "measured_fraction": round(res.mvs_valid_fraction, 4)})
        log.info("%s %s: view %s: depth of %.1f %% of the image", tag, name, v["label"], 100 * mine.mean())
    return done
