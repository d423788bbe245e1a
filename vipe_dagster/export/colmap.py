"""Export a ViPE-format artifact sequence as a standard COLMAP reconstruction.

Output folder (written atomically: it appears complete or not at all)::

    <out>/images/frame_%06d.jpg           decoded from rgb/<n>.mp4, one per exported frame
    <out>/sparse/0/cameras.{txt|bin}
    <out>/sparse/0/images.{txt|bin}       world-to-camera poses, POINTS2D from the sparse map (+ dense)
    <out>/sparse/0/points3D.{txt|bin}     sparse-map points with their real tracks (+ dense points)
    <out>/points.ply                      sparse + all dense points, binary little-endian x y z red green blue
    <out>/export_stats.json               counts, notes and reprojection-error statistics

On ``s3://`` the objects are uploaded after the export succeeded, ``export_stats.json`` last, so its
presence marks a complete export there.

Conventions. Our artifacts use OpenCV camera-to-world poses and pixel centres at integer coordinates;
COLMAP wants world-to-camera poses and puts the centre of the top-left pixel at (0.5, 0.5), so
principal points and observations are shifted by +0.5 px (reprojection errors are unchanged).
Camera models: SIMPLE_PINHOLE when fx == fy, else PINHOLE; KB4 fisheye (fx fy cx cy k1..k4) maps
to OPENCV_FISHEYE; MEI with xi == 0 is a pinhole and is exported as one. MEI with xi != 0 has no
COLMAP equivalent: by default the frames are resampled into the equivalent pinhole camera
(f / (1 + xi), same principal point) and observations and dense points are mapped through the exact
MEI unprojection (a note in the stats says so); with ``rectify_mei=False`` it is refused with
:class:`UnsupportedCameraError`, as PANORAMA always is (COLMAP has no equirectangular model; the
message says the data is valid). Intrinsics are checked by the rules of :mod:`vipe_dagster.camera`.

Points. Sparse-map points keep the tracks the SLAM map observed (restricted to the exported frames,
observations behind the camera dropped, tracks shorter than ``min_track_length`` dropped). Dense points
(``dense=True``, or automatically when there is no sparse map) come from reliable depth
(:mod:`vipe_dagster.depth.reliable`) on every ``depth_step``-th exported frame and every
``pixel_step``-th pixel, are merged in voxels of ``voxel_size`` (position and colour averaged), and
keep as their track the pixels they were unprojected from (one per image), so their error field is
the measured multi-view consistency of the depth maps, not a placeholder. ``points3D`` holds the dense
points seen in at least ``min_track_length`` exported images (COLMAP's bundle adjuster rejects
single-observation points); ``points.ply`` holds every dense point.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .. import camera as cammod
from ..depth.reliable import reliable_depth_mask, sample_reliable_points
from ..errors import ArtifactError, ConfigError, FrameRangeError, UnsupportedCameraError
from ..io import ArtifactStore, SparseMap, fs
from ..io.checks import check_intrinsics, check_poses, check_rigid
from ..io.manifest import MANIFEST_SCHEMA
from ..io.video import probe
from .colmap_format import Camera, SparseModel, write_model, write_text
from .mei import MeiRectifier
from .ply import write_ply

log = logging.getLogger(__name__)

FORMATS = ("text", "bin")
PIXEL_SHIFT = 0.5  # ours: pixel centres at integers; COLMAP: top-left pixel centre at (0.5, 0.5)
STATS_FILE = "export_stats.json"
MANIFEST_KEY = "colmap_export"


@dataclass
class ExportResult:
    """What :func:`export_colmap` wrote."""

    sequence: str
    out_dir: str
    fmt: str
    num_images: int
    num_cameras: int
    num_points: int
    num_sparse_points: int
    num_dense_points: int
    num_observations: int
    points_source: str  # "sparse", "sparse+dense", "dense_only" or "none"
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stats")
        d["reprojection_error_px"] = (self.stats.get("sparse") or {}).get("reprojection_error_px")
        d["dense_reprojection_error_px"] = (self.stats.get("dense") or {}).get("reprojection_error_px")
        return d


# ------------------------------------------------------------------ cameras and poses
def _panorama_refusal(where: str) -> str:
    return (f"{where}: PANORAMA (equirectangular, 360 x 180 deg) has no COLMAP equivalent: COLMAP has no "
            f"equirectangular camera model, so it cannot be exported. The panorama itself is valid ViPE data; "
            f"split it into pinhole views first to use it with COLMAP.")


def colmap_camera(camera_type: str, intr: Sequence[float], width: int, height: int, camera_id: int = 1,
                  where: str = "intrinsics", rectify_mei: bool = False) -> Camera:
    """Map one of our cameras (type + ``fx fy cx cy [extra]``) to a COLMAP camera (see module doc).

    ``rectify_mei``: an MEI camera with xi != 0 becomes its rectified pinhole (f / (1 + xi)); the caller
    must then resample the images and map the observations (:class:`~.mei.MeiRectifier`).
    """
    p = np.asarray(intr, dtype=np.float64).reshape(-1)
    ctype = camera_type.upper()
    if ctype == "PANORAMA":
        raise UnsupportedCameraError(_panorama_refusal(where))
    if ctype in cammod.CAMERA_TYPES:
        problem = cammod.row_problem(ctype, p)
        if problem:
            raise ArtifactError(f"{where}: {problem}")
    elif p.shape[0] < 4 or not np.all(np.isfinite(p[:4])) or p[0] <= 0 or p[1] <= 0:
        raise ArtifactError(f"{where}: expected finite fx fy cx cy with fx, fy > 0, got {p.tolist()}")
    fx, fy, cx, cy = p[:4]
    cx, cy = cx + PIXEL_SHIFT, cy + PIXEL_SHIFT
    if ctype == "MEI":
        xi = p[4]
        if xi != 0.0 and not rectify_mei:
            raise UnsupportedCameraError(
                f"{where}: MEI (unified) camera with xi={xi:g} has no COLMAP equivalent; export it rectified "
                f"to a pinhole camera (rectify_mei=True, the CLI default) or rectify the video first.")
        fx, fy = cammod.equivalent_pinhole("MEI", p)[:2]
        ctype = "PINHOLE"
    if ctype == "PINHOLE":
        if fx == fy:
            return Camera(camera_id, "SIMPLE_PINHOLE", width, height, [fx, cx, cy])
        return Camera(camera_id, "PINHOLE", width, height, [fx, fy, cx, cy])
    if ctype in ("KB4", "OPENCV_FISHEYE"):
        if p.shape[0] != 8:
            raise ArtifactError(f"{where}: KB4 fisheye needs fx fy cx cy k1 k2 k3 k4, got {p.shape[0]} values")
        return Camera(camera_id, "OPENCV_FISHEYE", width, height, [fx, fy, cx, cy, *p[4:8]])
    raise UnsupportedCameraError(
        f"{where}: camera model {camera_type} has no COLMAP equivalent (supported: PINHOLE, MEI (rectified to its pinhole), KB4)")


def project(camera: Camera, points_cam: np.ndarray) -> np.ndarray:
    """Project camera-frame points (N,3) to COLMAP pixel coordinates with ``camera``'s model."""
    x, y, z = points_cam[:, 0], points_cam[:, 1], points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = x / z, y / z
    pr = camera.params
    if camera.model == "SIMPLE_PINHOLE":
        return np.stack([pr[0] * a + pr[1], pr[0] * b + pr[2]], 1)
    if camera.model == "PINHOLE":
        return np.stack([pr[0] * a + pr[2], pr[1] * b + pr[3]], 1)
    if camera.model in cammod.COLMAP_MODELS:  # distorted models: the camera module (NaN behind the camera)
        uv, _ = cammod.project_points(camera.model, camera.params, points_cam)
        return np.where((z > 0)[:, None], uv, np.nan)
    raise ValueError(f"projection for {camera.model} is not implemented")


def _kept_distortion(store: ArtifactStore, name: str) -> tuple[float, float] | None:
    """``(k1, k2)`` of a self-calibrated radial distortion the pose stage kept in the images (too small to
    rectify): the rgb frames still carry it, so COLMAP gets the matching distorted model."""
    if not store.exists("manifest", name):
        return None
    dist = (((store.read_manifest(name).get("pose") or {}).get("intrinsics") or {}).get("distortion") or {})
    k = (float(dist.get("k1") or 0.0), float(dist.get("k2") or 0.0))
    return None if dist.get("rectified") or k == (0.0, 0.0) else k


def _distorted_cameras(cameras: dict[int, Camera], k: tuple[float, float]) -> dict[int, Camera]:
    """The pinhole cameras with the kept radial distortion: SIMPLE_RADIAL / RADIAL (fx == fy) or OPENCV
    (:func:`vipe_dagster.camera.colmap_camera_model`)."""
    out = {}
    for cid, c in cameras.items():
        fx, fy, cx, cy = (c.params[0], c.params[0], c.params[1], c.params[2]) if c.model == "SIMPLE_PINHOLE" \
            else tuple(c.params[:4])
        model, params = cammod.colmap_camera_model("opencv", [fx, fy, cx, cy, k[0], k[1]])
        out[cid] = Camera(cid, model, c.width, c.height, list(params))
    return out


def world_to_camera(c2w: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Invert an OpenCV camera-to-world pose: returns ``(R_w2c (3,3), t_w2c (3,))`` in float64."""
    m = check_rigid(c2w, where)
    r = m[:3, :3]
    u, _, vt = np.linalg.svd(r)
    r = u @ vt  # remove float32 rounding so the quaternion and translation describe the same rotation
    rw = r.T
    return rw, -rw @ m[:3, 3]


def rotation_to_qvec(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> Hamilton quaternion (w, x, y, z) with w >= 0."""
    x, y, z, w = Rotation.from_matrix(r).as_quat()
    q = np.array([w, x, y, z])
    return -q if w < 0 else q


# ------------------------------------------------------------------ inputs
@dataclass
class _Inputs:
    c2w: np.ndarray
    intr: np.ndarray
    inds: np.ndarray
    types: list[str]
    width: int
    height: int
    rgb_frames: int
    sparse: SparseMap | None
    usable: np.ndarray  # (N,) bool: pose well formed and not flagged invalid (tracking lost)


def _load_inputs(store: ArtifactStore, name: str) -> _Inputs:
    pose_uri, intr_uri, rgb_uri = store.path("pose", name), store.path("intrinsics", name), store.path("rgb", name)
    for kind, uri in (("pose", pose_uri), ("intrinsics", intr_uri), ("rgb video", rgb_uri)):
        if not fs.exists(uri):
            raise ArtifactError(f"COLMAP export of {name!r}: missing {kind} file {uri}")
    c2w, pinds = store.read_pose(name)
    intr, iinds, types = store.read_intrinsics(name)
    if len(c2w) != len(intr):
        raise ArtifactError(f"{intr_uri} has {len(intr)} frames but {pose_uri} has {len(c2w)}; "
                            f"expected one intrinsics row per pose")
    if len(c2w) == 0:
        raise ArtifactError(f"{pose_uri} holds no poses")
    pinds, iinds = np.asarray(pinds, np.int64), np.asarray(iinds, np.int64)
    if not np.array_equal(pinds, iinds):
        k = int(np.nonzero(pinds != iinds)[0][0])
        raise ArtifactError(f"{intr_uri}: row {k} is frame {iinds[k]} but {pose_uri} row {k} is frame {pinds[k]}; "
                            f"expected the same frame indices")
    pcheck = check_poses(c2w, pose_uri, valid=store.read_pose_flags(name), inds=pinds)
    pcheck.raise_if_malformed()
    check_intrinsics(intr, intr_uri, types, iinds).raise_if_bad()
    pano = [k for k, t in enumerate(types) if str(t).upper() == "PANORAMA"]
    if pano:
        raise UnsupportedCameraError(_panorama_refusal(f"{intr_uri} frame {int(iinds[pano[0]])}"))
    # every file well formed; now: do they belong to one run (see io/generation.py)?
    store.check_set(name, ("rgb", "pose", "intrinsics", "camera", "sparse", "depth", "info"))
    info = probe(rgb_uri)
    if info.num_frames != len(c2w):
        log.warning("%s has %d frames but %s has %d poses; exporting the frames that have both",
                    rgb_uri, info.num_frames, pose_uri, len(c2w))
    sparse = None
    if store.exists("sparse", name):
        sparse_uri = store.path("sparse", name)
        sparse = store.read_sparse_map(name)
        known = np.isin(sparse.obs_frame, pinds)
        if not np.all(known):
            k = int(np.nonzero(~known)[0][0])
            raise ArtifactError(
                f"{sparse_uri}: observation {k} references frame {int(sparse.obs_frame[k])}, outside the pose "
                f"range [{int(pinds[0])}, {int(pinds[-1])}] of {pose_uri}")
        if not np.all(np.isfinite(sparse.points)):
            k = int(np.nonzero(~np.all(np.isfinite(sparse.points), axis=1))[0][0])
            raise ArtifactError(f"{sparse_uri}: point {k} is not finite")
        if len(sparse.obs_uv) and not np.all(np.isfinite(sparse.obs_uv)):
            k = int(np.nonzero(~np.all(np.isfinite(sparse.obs_uv), axis=1))[0][0])
            raise ArtifactError(f"{sparse_uri}: observation {k} (frame {int(sparse.obs_frame[k])}) has a "
                                f"non-finite pixel position")
    return _Inputs(c2w, intr, pinds, types, info.width, info.height, info.num_frames, sparse, pcheck.usable)


def _select(inds: np.ndarray, frames: Sequence[int] | range | slice | None, pose_uri: str) -> np.ndarray:
    """Row positions (into the pose arrays) of the requested frames, in increasing frame order."""
    if frames is None:
        return np.arange(len(inds))
    if isinstance(frames, slice):
        rows = np.arange(len(inds))[frames]
        if rows.size == 0:
            raise FrameRangeError(f"frame slice {frames} selects no rows of {pose_uri} ({len(inds)} poses)")
        return np.sort(rows)
    wanted = np.asarray(list(frames), dtype=np.int64)
    if wanted.size == 0:
        raise FrameRangeError(f"no frames selected for export from {pose_uri}")
    pos = np.searchsorted(inds, wanted)
    bad = (pos >= len(inds)) | (inds[np.minimum(pos, len(inds) - 1)] != wanted)
    if np.any(bad):
        f = int(wanted[np.nonzero(bad)[0][0]])
        raise FrameRangeError(f"frame {f} is not in {pose_uri} (available frames [{int(inds[0])}, {int(inds[-1])}])")
    return np.unique(pos)


# ------------------------------------------------------------------ statistics
def _dist(values: np.ndarray) -> dict[str, float] | None:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max()), "count": int(v.size)}


def _track_stats(lengths: np.ndarray) -> dict[str, float] | None:
    if lengths.size == 0:
        return None
    return {"mean": float(lengths.mean()), "median": float(np.median(lengths)), "min": int(lengths.min()),
            "max": int(lengths.max())}


def _observation_errors(cameras: dict[int, Camera], image_cam: np.ndarray, rot: np.ndarray, trans: np.ndarray,
                        obs_image: np.ndarray, obs_xyz: np.ndarray, obs_xy: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per-observation reprojection error (px) and camera-frame depth."""
    pc = np.einsum("kij,kj->ki", rot[obs_image], obs_xyz) + trans[obs_image]
    err = np.full(len(obs_image), np.inf)
    cam_of_obs = image_cam[obs_image]
    for cid, cam in cameras.items():
        sel = np.nonzero(cam_of_obs == cid)[0]
        if sel.size:
            err[sel] = np.linalg.norm(project(cam, pc[sel]) - obs_xy[sel], axis=1)
    return err, pc[:, 2]


def _worst_images(obs_image: np.ndarray, err: np.ndarray, frame_ids: np.ndarray, k: int = 10) -> list[dict]:
    """The ``k`` images with the highest mean reprojection error (frame, observations, mean, max)."""
    if obs_image.size == 0:
        return []
    n = len(frame_ids)
    cnt = np.bincount(obs_image, minlength=n)
    mean = np.bincount(obs_image, weights=err, minlength=n) / np.maximum(cnt, 1)
    mx = np.zeros(n)
    np.maximum.at(mx, obs_image, err)
    order = [i for i in np.argsort(-mean, kind="stable") if cnt[i] > 0][:k]
    return [{"frame": int(frame_ids[i]), "observations": int(cnt[i]), "mean_px": float(mean[i]),
             "max_px": float(mx[i])} for i in order]


def _per_point_mean(point: np.ndarray, values: np.ndarray, num_points: int) -> np.ndarray:
    cnt = np.bincount(point, minlength=num_points)
    return np.bincount(point, weights=values, minlength=num_points) / np.maximum(cnt, 1)


# ------------------------------------------------------------------ dense points
def voxel_merge(xyz: np.ndarray, rgb: np.ndarray, obs_image: np.ndarray, voxel_size: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge samples in cubic voxels: mean position, mean colour, and one observation per (voxel, image).

    Returns ``(xyz (V,3), rgb (V,3) uint8, sample_to_voxel (N,), kept_samples (M,))`` where
    ``kept_samples`` indexes the first sample of every (voxel, image) pair, ordered by voxel then image.
    """
    keys = np.floor(xyz.astype(np.float64) / voxel_size).astype(np.int64)
    keys -= keys.min(axis=0)
    if keys.max(initial=0) < (1 << 21):
        packed = (keys[:, 0] << 42) | (keys[:, 1] << 21) | keys[:, 2]
        _, inv = np.unique(packed, return_inverse=True)
    else:
        _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    nv = int(inv.max()) + 1 if inv.size else 0
    cnt = np.bincount(inv, minlength=nv).astype(np.float64)
    pos = np.stack([np.bincount(inv, xyz[:, j], nv) for j in range(3)], 1) / cnt[:, None]
    col = np.stack([np.bincount(inv, rgb[:, j].astype(np.float64), nv) for j in range(3)], 1) / cnt[:, None]
    n_img = int(obs_image.max()) + 1 if obs_image.size else 1
    _, first = np.unique(inv.astype(np.int64) * n_img + obs_image, return_index=True)
    return pos, np.clip(np.rint(col), 0, 255).astype(np.uint8), inv, first


# ------------------------------------------------------------------ export
def export_colmap(store: ArtifactStore | str, name: str, out_dir: str | None = None, fmt: str = "text",
                  dense: bool = False, frames: Sequence[int] | range | slice | None = None, depth_step: int = 16,
                  pixel_step: int = 4, voxel_size: float | None = None, jpeg_quality: int = 95,
                  min_track_length: int = 2, rectify_mei: bool = True, update_manifest: bool = True,
                  progress: bool = False, sparse_map: SparseMap | None = None,
                  sparse_source: str | None = None, reference_layout: bool = False) -> ExportResult:
    """Export sequence ``name`` of ``store`` as a COLMAP model under ``out_dir`` (see the module doc).

    ``frames``: artifact frame indices (a list, a ``range`` for a stride) or a ``slice`` over the pose
    rows; default all. ``depth_step``: every k-th exported frame contributes dense points;
    ``pixel_step``: pixel stride of the dense grid; ``voxel_size``: merge size in scene units
    (``None``: the footprint of one grid step at the median depth; ``0``: no merging).
    ``rectify_mei``: export MEI (xi != 0) sequences resampled into the equivalent pinhole camera
    (``False``: refuse them with :class:`UnsupportedCameraError`).
    ``sparse_map``: points and tracks to export instead of ``vipe/<n>_sparse.npz`` (e.g. the SLAM map of
    :mod:`vipe_dagster.export.slam_map`), ``sparse_source`` names where they came from.
    ``reference_layout``: also write the text model at the top of ``out_dir`` with image names
    ``images/frame_%06d.jpg`` (the layout ViPE's ``vipe_to_colmap.py`` writes), beside ``sparse/0``.
    """
    t_start = time.perf_counter()
    if fmt not in FORMATS:
        raise ConfigError(f"COLMAP format must be one of {FORMATS}, got {fmt!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if depth_step < 1 or pixel_step < 1:
        raise ConfigError(f"depth_step and pixel_step must be >= 1, got {depth_step} and {pixel_step}")
    if voxel_size is not None and not (np.isfinite(voxel_size) and voxel_size >= 0):
        raise ConfigError(f"voxel_size must be >= 0 (0 disables merging), got {voxel_size}")
    if min_track_length < 1:
        raise ConfigError(f"min_track_length must be >= 1, got {min_track_length}")
    store = store if isinstance(store, ArtifactStore) else ArtifactStore(str(store))
    out_dir = str(out_dir) if out_dir is not None else fs.join(store.root, "colmap", name)
    pose_uri = store.path("pose", name)

    inp = _load_inputs(store, name)
    if sparse_map is not None:
        sparse_map.validate(sparse_source or "sparse_map")
        known = np.isin(sparse_map.obs_frame, inp.inds)
        if not np.all(known):
            k = int(np.nonzero(~known)[0][0])
            raise ArtifactError(f"{sparse_source or 'sparse map'}: observation {k} references frame "
                                f"{int(sparse_map.obs_frame[k])}, outside the pose range of {pose_uri}")
        if not (np.all(np.isfinite(sparse_map.points)) and np.all(np.isfinite(sparse_map.obs_uv))):
            raise ArtifactError(f"{sparse_source or 'sparse map'}: non-finite points or observations")
        inp.sparse = sparse_map
    rows = _select(inp.inds, frames, pose_uri)
    warnings: list[str] = []
    notes: list[str] = []
    skipped = rows[~inp.usable[rows]]
    if skipped.size:
        if skipped.size == rows.size:
            raise ArtifactError(f"{pose_uri}: every selected frame ({rows.size}) is flagged invalid "
                                f"(tracking lost); nothing to export")
        msg = (f"{skipped.size} frame(s) flagged invalid in {pose_uri} (tracking lost: no measured pose) "
               f"were left out, first frame {int(inp.inds[skipped[0]])}")
        log.warning(msg)
        warnings.append(msg)
        notes.append(msg)
        rows = rows[inp.usable[rows]]
    frame_ids = inp.inds[rows]
    if frame_ids[-1] >= inp.rgb_frames:
        raise FrameRangeError(f"frame {int(frame_ids[-1])} is selected for export but {store.path('rgb', name)} has "
                              f"only frames [0, {inp.rgb_frames - 1}]")

    # cameras (one per distinct intrinsics) and poses
    cams: dict[tuple, Camera] = {}
    image_cam = np.empty(len(rows), np.int64)
    rot = np.empty((len(rows), 3, 3))
    trans = np.empty((len(rows), 3))
    qvec = np.empty((len(rows), 4))
    intr_uri = store.path("intrinsics", name)
    rectifiers: dict[tuple, MeiRectifier] = {}
    image_rect: list[MeiRectifier | None] = []
    for i, r in enumerate(rows):
        where = f"{intr_uri} frame {int(inp.inds[r])}"
        cam = colmap_camera(inp.types[r], inp.intr[r], inp.width, inp.height, len(cams) + 1, where, rectify_mei)
        key = (cam.model, *cam.params.tolist())
        cam = cams.setdefault(key, cam)
        rect = None
        if inp.types[r].upper() == "MEI" and inp.intr.shape[1] > 4 and inp.intr[r, 4] != 0:
            src_key = tuple(np.asarray(inp.intr[r, :5], np.float64).tolist())
            if src_key not in rectifiers:
                rectifiers[src_key] = MeiRectifier(src_key, inp.width, inp.height)
            rect = rectifiers[src_key]
        image_rect.append(rect)
        image_cam[i] = cam.camera_id
        rot[i], trans[i] = world_to_camera(inp.c2w[r], f"{pose_uri} frame {int(inp.inds[r])}")
        qvec[i] = rotation_to_qvec(rot[i])
    cameras = {c.camera_id: c for c in cams.values()}
    image_ids = np.arange(1, len(rows) + 1)
    names = [f"frame_{int(f):06d}.jpg" for f in frame_ids]

    # dense decision
    has_depth = store.exists("depth", name)
    if dense and not has_depth:
        raise ArtifactError(f"dense COLMAP export of {name!r} needs depth maps, but {store.path('depth', name)} "
                            f"is missing")
    use_dense = dense
    if inp.sparse is None:
        msg = f"{store.path('sparse', name)} not found: no sparse map, so no real feature tracks"
        if has_depth:
            use_dense = True
            msg += "; exporting dense points from reliable depth only (dense-only export)"
        else:
            msg += " and no depth maps; exporting cameras and poses without 3D points"
        log.warning(msg)
        warnings.append(msg)
        notes.append(msg)
    for src_key, rect in rectifiers.items():
        note = (f"MEI camera (fx fy cx cy xi = {' '.join(f'{v:g}' for v in src_key)}) rectified to PINHOLE "
                f"f/(1+xi) = {rect.pinhole[0]:g} {rect.pinhole[1]:g}: images resampled bilinearly, observations "
                f"mapped through the exact MEI unprojection")
        log.warning(note)
        notes.append(note)
    if use_dense and any(cameras[c].model == "OPENCV_FISHEYE" for c in cameras):
        raise UnsupportedCameraError(f"{intr_uri}: dense points are only supported for pinhole cameras")
    pinhole_cameras = cameras
    kept = _kept_distortion(store, name) if not rectifiers else None
    if kept is not None and use_dense:
        notes.append(f"the self-calibrated radial distortion k1 {kept[0]:g} k2 {kept[1]:g} the images keep (too "
                     f"small to rectify) is left out: dense points need pinhole cameras")
        kept = None
    if kept is not None:
        cameras = _distorted_cameras(cameras, kept)
        notes.append(f"the images keep the self-calibrated radial distortion k1 {kept[0]:g} k2 {kept[1]:g} (too "
                     f"small to rectify): cameras exported as {sorted({c.model for c in cameras.values()})}, "
                     f"observations distorted to match")

    # sparse part: observations restricted to exported frames, errors, track filtering
    t0 = time.perf_counter()
    sp_obs_img = np.zeros(0, np.int64)
    sp_obs_xy = np.zeros((0, 2))
    sp_obs_pt = np.zeros(0, np.int64)
    sp_xyz, sp_rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    sparse_stats: dict[str, Any] | None = None
    if inp.sparse is not None:
        sm = inp.sparse
        lut = np.full(int(inp.inds[-1]) + 1, -1, np.int64)
        lut[frame_ids] = np.arange(len(frame_ids))
        obs_img_all = lut[sm.obs_frame.astype(np.int64)]
        in_sel = obs_img_all >= 0
        obs_img = obs_img_all[in_sel]
        obs_pt = sm.obs_point[in_sel].astype(np.int64)
        obs_uv = sm.obs_uv[in_sel].astype(np.float64)
        n_outside = 0
        if rectifiers:
            in_view = np.ones(len(obs_uv), bool)
            for rect in rectifiers.values():
                sel = np.nonzero([image_rect[j] is rect for j in range(len(rows))])[0]
                idx = np.nonzero(np.isin(obs_img, sel))[0]
                obs_uv[idx], in_view[idx] = rect.pixels_to_pinhole(obs_uv[idx])
            n_outside = int((~in_view).sum())
            obs_img, obs_pt, obs_uv = obs_img[in_view], obs_pt[in_view], obs_uv[in_view]
        obs_xy = obs_uv + PIXEL_SHIFT
        if kept is not None:  # the map's observations are ideal-pinhole pixels; the images are distorted
            for cid, c in cameras.items():
                sel = image_cam[obs_img] == cid
                rays = cammod.unproject_pixels("PINHOLE" if pinhole_cameras[cid].model == "PINHOLE"
                                               else "SIMPLE_PINHOLE", pinhole_cameras[cid].params, obs_xy[sel])[0]
                obs_xy[sel] = cammod.project_points(c.model, c.params, rays)[0]
        pts = sm.points.astype(np.float64)
        err, depth_c = _observation_errors(cameras, image_cam, rot, trans, obs_img, pts[obs_pt], obs_xy)
        front = (depth_c > 1e-9) & np.isfinite(err)
        n_behind = int((~front).sum())
        if n_behind:
            w = f"{n_behind} sparse observations lie behind their camera and were dropped"
            log.warning(w)
            warnings.append(w)
        obs_img, obs_pt, obs_xy, err = obs_img[front], obs_pt[front], obs_xy[front], err[front]
        track_len = np.bincount(obs_pt, minlength=len(pts))
        keep_pt = track_len >= min_track_length
        n_short = int(((track_len > 0) & ~keep_pt).sum())
        remap = np.full(len(pts), -1, np.int64)
        remap[keep_pt] = np.arange(int(keep_pt.sum()))
        keep_obs = keep_pt[obs_pt]
        sp_obs_img, sp_obs_xy, sp_obs_pt = obs_img[keep_obs], obs_xy[keep_obs], remap[obs_pt[keep_obs]]
        sp_err = err[keep_obs]
        sp_xyz, sp_rgb = pts[keep_pt], sm.colors[keep_pt].astype(np.uint8)
        sp_point_err = _per_point_mean(sp_obs_pt, sp_err, len(sp_xyz))
        sparse_stats = {
            "source": sparse_source or store.path("sparse", name),
            "num_points": int(len(sp_xyz)),
            "num_observations": int(len(sp_obs_pt)),
            "map_points": int(len(pts)),
            "map_observations": int(len(sm.obs_frame)),
            "dropped_observations_outside_selection": int((~in_sel).sum()),
            "dropped_observations_behind_camera": n_behind,
            "dropped_observations_outside_rectified_view": n_outside,
            "dropped_points_short_track": n_short,
            "dropped_points_unobserved": int((track_len == 0).sum()),
            "min_track_length": min_track_length,
            "reprojection_error_px": _dist(sp_err),
            "point_error_px": _dist(sp_point_err),
            "track_length": _track_stats(np.bincount(sp_obs_pt, minlength=len(sp_xyz))),
            "observations_outside_image": int(np.sum((sp_obs_xy[:, 0] < 0) | (sp_obs_xy[:, 0] > inp.width) |
                                                     (sp_obs_xy[:, 1] < 0) | (sp_obs_xy[:, 1] > inp.height))),
            "worst_images": _worst_images(sp_obs_img, sp_err, frame_ids),
        }
        if len(sp_xyz) == 0:
            w = f"no sparse-map point has {min_track_length}+ observations in the exported frames"
            log.warning(w)
            warnings.append(w)
    else:
        sp_point_err = np.zeros(0)
    t_sparse = time.perf_counter() - t0

    dense_rows = set(range(0, len(rows), depth_step)) if use_dense else set()
    if use_dense:
        need = int(frame_ids[max(dense_rows)])
        n_depth = store.depth_count(name)
        if n_depth <= need:
            raise ArtifactError(f"{store.path('depth', name)} has {n_depth} depth frames but frame {need} "
                                f"is needed for dense points")
    # a failed export must not leave an empty parent (e.g. <root>/colmap/) that it created itself
    remote_out = fs.is_remote(out_dir)
    new_parent = None if remote_out else Path(fs.get_fs(out_dir)[1]).parent
    if new_parent is not None and new_parent.exists():
        new_parent = None

    timings = {"sparse_s": t_sparse}
    if not remote_out:  # stage folders of killed exports (their pid is gone) beside the output
        fs.sweep_stale_temps(Path(fs.get_fs(out_dir)[1]).parent)
    fs.sweep_system_temps()
    try:
        with fs.atomic_dir(out_dir) as stage:
            stage_p = Path(stage)
            img_dir = stage_p / "images"
            img_dir.mkdir()
            t0 = time.perf_counter()
            dense_parts = _write_images_and_sample(store, name, inp, rows, frame_ids, names, img_dir, jpeg_quality,
                                                   dense_rows, pixel_step, image_rect, progress)
            timings["images_and_depth_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            de_xyz, de_rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
            de_obs_img, de_obs_xy, de_obs_pt = np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64)
            dense_stats: dict[str, Any] | None = None
            de_point_err = np.zeros(0)
            ply_xyz, ply_rgb = de_xyz, de_rgb
            if use_dense:
                de_xyz, de_rgb, de_obs_img, de_obs_xy, de_obs_pt, dense_stats, ply_xyz, ply_rgb = _dense_points(
                    dense_parts, cameras, image_cam, rot, trans, pixel_step, voxel_size, min_track_length)
                dense_stats.update({"depth_step": depth_step, "pixel_step": pixel_step,
                                    "frames_used": [int(frame_ids[i]) for i in sorted(dense_rows)],
                                    "source": store.path("depth", name)})
                de_point_err = dense_stats.pop("_point_err")
            timings["dense_s"] = time.perf_counter() - t0

            # assemble the model: sparse points first, then dense; observations grouped by image
            t0 = time.perf_counter()
            n_sp = len(sp_xyz)
            obs_img = np.concatenate([sp_obs_img, de_obs_img])
            order = np.argsort(obs_img, kind="stable")
            xyz = np.concatenate([sp_xyz, de_xyz])
            model = SparseModel(
                cameras=list(cameras.values()), image_ids=image_ids, qvec=qvec, tvec=trans,
                image_camera_ids=image_cam, image_names=names,
                obs_image=obs_img[order], obs_xy=np.concatenate([sp_obs_xy, de_obs_xy])[order],
                obs_point=np.concatenate([sp_obs_pt, de_obs_pt + n_sp])[order],
                point_ids=np.arange(1, len(xyz) + 1), xyz=xyz, rgb=np.concatenate([sp_rgb, de_rgb]),
                error=np.concatenate([sp_point_err, de_point_err]), header_notes=notes)
            sparse_dir = stage_p / "sparse" / "0"
            write_model(model, sparse_dir, fmt)
            if reference_layout:
                write_text(dataclasses.replace(model, image_names=[f"images/{n}" for n in names]), stage_p)
            ply_comments = [f"vipe-dagster COLMAP export of {name}: {n_sp} sparse + {len(ply_xyz)} dense points"]
            write_ply(stage_p / "points.ply", np.concatenate([sp_xyz, ply_xyz]), np.concatenate([sp_rgb, ply_rgb]),
                      ply_comments)
            timings["write_s"] = time.perf_counter() - t0
            timings["total_s"] = time.perf_counter() - t_start

            source = ("sparse+dense" if use_dense and inp.sparse is not None else "dense_only" if use_dense
                      else "sparse" if inp.sparse is not None else "none")
            stats = {
                "sequence": name, "artifact_root": store.root, "out_dir": out_dir, "format": fmt,
                "generation": (store.generation_record(name) or {}).get("id"),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "points_source": source, "dense_only": source == "dense_only", "notes": notes,
                "warnings": warnings, "pixel_convention": "COLMAP (top-left pixel centre at 0.5, 0.5)",
                "num_images": len(rows), "num_cameras": len(cameras),
                "cameras": [{"camera_id": c.camera_id, "model": c.model, "width": c.width, "height": c.height,
                             "params": c.params.tolist()} for c in cameras.values()],
                "frames": {"first": int(frame_ids[0]), "last": int(frame_ids[-1]), "count": len(frame_ids)},
                "num_points": len(xyz), "num_points_ply": n_sp + len(ply_xyz),
                "num_observations": int(len(model.obs_image)),
                "sparse": sparse_stats, "dense": dense_stats, "timings_s": timings,
            }
            if not remote_out:
                (stage_p / STATS_FILE).write_text(json.dumps(stats, indent=2), encoding="utf-8")
        if remote_out:
            # objects of an s3:// folder appear one by one: the stats file goes last and marks completion
            fs.write_text(fs.join(out_dir, STATS_FILE), json.dumps(stats, indent=2))
    except BaseException:
        if new_parent is not None and new_parent.exists() and not any(new_parent.iterdir()):
            new_parent.rmdir()
        raise

    if update_manifest:
        manifest = store.read_manifest(name) if store.exists("manifest", name) else \
            {"schema": MANIFEST_SCHEMA, "sequence": name}
        manifest[MANIFEST_KEY] = stats
        store.write_manifest(name, manifest)
    res = ExportResult(sequence=name, out_dir=out_dir, fmt=fmt, num_images=len(rows), num_cameras=len(cameras),
                       num_points=len(xyz), num_sparse_points=n_sp, num_dense_points=len(de_xyz),
                       num_observations=int(len(model.obs_image)), points_source=source, stats=stats,
                       warnings=warnings)
    log.info("COLMAP export of %s: %d images, %d points (%s) -> %s in %.2f s", name, res.num_images,
             res.num_points, source, out_dir, timings["total_s"])
    return res


def _write_images_and_sample(store: ArtifactStore, name: str, inp: _Inputs, rows: np.ndarray,
                             frame_ids: np.ndarray, names: list[str], img_dir: Path, jpeg_quality: int,
                             dense_rows: set[int], pixel_step: int, image_rect: list[MeiRectifier | None],
                             progress: bool) -> list[dict[str, np.ndarray]]:
    """Stream the rgb video once: write each exported frame as JPEG; sample dense points on depth frames."""
    want = {int(f): i for i, f in enumerate(frame_ids)}
    dense_frames = [int(frame_ids[i]) for i in sorted(dense_rows)]
    depth_iter = store.iter_depth(name, dense_frames) if dense_frames else iter(())
    depth_uri = store.path("depth", name)
    parts: list[dict[str, np.ndarray]] = []
    stream = store.open_rgb(name, start_frame=int(frame_ids[0]), end_frame=int(frame_ids[-1]))
    it = iter(stream)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(stream), desc=f"colmap {name}", unit="frame")
    # full-resolution chroma (4:4:4): 4:2:0 re-subsampling of the already 4:2:0 video smears colour edges
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality),
              int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)]
    written = 0
    for fidx, rgb in it:
        i = want.get(int(fidx))
        if i is None:
            continue
        rect = image_rect[i]
        out_rgb = rgb if rect is None else rect.image(rgb)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out_rgb, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ArtifactError(f"{store.path('rgb', name)} frame {fidx}: JPEG encoding failed")
        (img_dir / names[i]).write_bytes(buf.tobytes())
        written += 1
        if i in dense_rows:
            d_idx, depth = next(depth_iter)
            if d_idx != fidx:
                raise ArtifactError(f"{depth_uri}: expected depth frame {fidx}, got {d_idx}")
            if depth.shape != rgb.shape[:2]:
                raise ArtifactError(f"{depth_uri} frame {fidx}: depth is {depth.shape[1]}x{depth.shape[0]}, "
                                    f"expected {rgb.shape[1]}x{rgb.shape[0]} like the rgb video")
            r = rows[i]
            if rect is None:
                xyz, u, v = sample_reliable_points(depth, inp.intr[r, :4], inp.c2w[r], step=pixel_step)
                xy = np.stack([u, v], 1).astype(np.float64)
            else:
                xyz, u, v, xy = _sample_mei(depth, rect, inp.c2w[r], pixel_step)
            parts.append({"image": np.full(len(u), i, np.int64), "xyz": xyz, "rgb": rgb[v, u],
                          "xy": xy + PIXEL_SHIFT, "z": depth[v, u]})
    if written != len(rows):
        raise ArtifactError(f"{store.path('rgb', name)}: decoded {written} of {len(rows)} selected frames")
    return parts


def _sample_mei(depth: np.ndarray, rect: MeiRectifier, c2w: np.ndarray, step: int):
    """Reliable MEI depth pixels on the sampling grid -> world points, source pixels, rectified pixels."""
    keep = reliable_depth_mask(depth)[::step, ::step]
    v, u = np.nonzero(keep)
    u, v = u * step, v * step
    cam, ok = rect.unproject_depth(depth, u, v)
    xy, inside = rect.camera_points_to_pinhole(cam)
    pose = np.asarray(c2w, dtype=np.float64)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    ok &= inside & (np.linalg.norm(np.where(np.isfinite(world), world, np.inf), axis=1) < 1e6)
    return world[ok].astype(np.float32), u[ok], v[ok], xy[ok]


def _dense_points(parts: list[dict[str, np.ndarray]], cameras: dict[int, Camera], image_cam: np.ndarray,
                  rot: np.ndarray, trans: np.ndarray, pixel_step: int, voxel_size: float | None,
                  min_track_length: int):
    cat = {k: (np.concatenate([p[k] for p in parts]) if parts else np.zeros((0,))) for k in
           ("image", "xyz", "rgb", "xy", "z")}
    n_samples = len(cat["image"])
    if n_samples == 0:
        log.warning("no reliable depth pixels in the selected depth frames; no dense points")
        empty_xyz, empty_rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
        return (empty_xyz, empty_rgb, np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64),
                {"num_points": 0, "num_points_ply": 0, "num_samples": 0, "voxel_size": voxel_size,
                 "_point_err": np.zeros(0)}, empty_xyz, empty_rgb)
    xyz = cat["xyz"].astype(np.float64)
    if voxel_size is None:
        focal = float(np.mean([np.mean(cameras[c].params[:1 if cameras[c].model == "SIMPLE_PINHOLE" else 2])
                               for c in image_cam]))
        voxel_size = float(np.median(cat["z"]) * pixel_step / focal)
        auto = True
    else:
        auto = False
    if voxel_size > 0:
        pos, col, inv, first = voxel_merge(xyz, cat["rgb"], cat["image"], voxel_size)
        obs_img, obs_xy, obs_pt = cat["image"][first], cat["xy"][first], inv[first].astype(np.int64)
    else:
        pos, col = xyz, cat["rgb"].astype(np.uint8)
        obs_img, obs_xy, obs_pt = cat["image"], cat["xy"], np.arange(n_samples)
    err, _ = _observation_errors(cameras, image_cam, rot, trans, obs_img, pos[obs_pt], obs_xy)
    track_len = np.bincount(obs_pt, minlength=len(pos))
    keep = track_len >= min_track_length
    remap = np.full(len(pos), -1, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    keep_obs = keep[obs_pt]
    obs_img, obs_xy, obs_pt, err = obs_img[keep_obs], obs_xy[keep_obs], remap[obs_pt[keep_obs]], err[keep_obs]
    point_err = _per_point_mean(obs_pt, err, int(keep.sum()))
    stats = {"num_points": int(keep.sum()), "num_points_ply": int(len(pos)), "num_samples": n_samples,
             "num_observations": int(len(obs_pt)), "min_track_length": min_track_length,
             "voxel_size": voxel_size, "voxel_size_auto": auto,
             "reprojection_error_px": _dist(err), "point_error_px": _dist(point_err),
             "track_length": _track_stats(np.bincount(obs_pt, minlength=int(keep.sum()))),
             "_point_err": point_err}
    return pos[keep], col[keep], obs_img, obs_xy, obs_pt, stats, pos, col
