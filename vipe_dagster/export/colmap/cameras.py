"""COLMAP cameras and image poses of the exported frames (conventions: see the package doc)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ... import camera as cammod
from ...errors import ArtifactError, UnsupportedCameraError
from ...io.checks import check_rigid
from ..colmap_format import Camera
from ..mei import MeiRectifier

PIXEL_SHIFT = 0.5  # ours: pixel centres at integers; COLMAP: top-left pixel centre at (0.5, 0.5)


def panorama_refusal(where: str) -> str:
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
        raise UnsupportedCameraError(panorama_refusal(where))
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



@dataclass
class ImageSet:
    """The exported images: one COLMAP camera per distinct intrinsics, world-to-camera poses, names."""

    cameras: dict[int, Camera]  # camera_id -> camera
    image_cam: np.ndarray  # (I,) camera_id of each image
    rot: np.ndarray  # (I,3,3) world-to-camera rotation
    trans: np.ndarray  # (I,3) world-to-camera translation
    qvec: np.ndarray  # (I,4) w x y z
    frame_ids: np.ndarray  # (I,) artifact frame index
    image_rect: list[MeiRectifier | None]  # per image: the MEI rectifier its pixels go through, or None
    rectifiers: dict[tuple, MeiRectifier]  # MEI parameters (fx fy cx cy xi) -> rectifier
    # the ideal pinhole cameras when ``cameras`` carry a radial distortion the images kept (else None): the
    # map's observations are ideal-pinhole pixels and go through the distortion (see keep_distortion)
    pinhole_cameras: dict[int, Camera] | None = None

    @property
    def image_ids(self) -> np.ndarray:
        return np.arange(1, len(self.frame_ids) + 1)

    @property
    def names(self) -> list[str]:
        return [f"frame_{int(f):06d}.jpg" for f in self.frame_ids]

    def rectifier_notes(self) -> list[str]:
        """One note per MEI camera that was rectified to its pinhole."""
        return [f"MEI camera (fx fy cx cy xi = {' '.join(f'{v:g}' for v in src_key)}) rectified to PINHOLE "
                f"f/(1+xi) = {rect.pinhole[0]:g} {rect.pinhole[1]:g}: images resampled bilinearly, observations "
                f"mapped through the exact MEI unprojection" for src_key, rect in self.rectifiers.items()]


def build_images(c2w: np.ndarray, intr: np.ndarray, types: list[str], inds: np.ndarray, rows: np.ndarray,
                 width: int, height: int, intr_uri: str, pose_uri: str, rectify_mei: bool) -> ImageSet:
    """Cameras (deduplicated by model and parameters, ids from 1 in order of first use) and poses of ``rows``."""
    cams: dict[tuple, Camera] = {}
    n = len(rows)
    image_cam = np.empty(n, np.int64)
    rot, trans, qvec = np.empty((n, 3, 3)), np.empty((n, 3)), np.empty((n, 4))
    rectifiers: dict[tuple, MeiRectifier] = {}
    image_rect: list[MeiRectifier | None] = []
    for i, r in enumerate(rows):
        where = f"{intr_uri} frame {int(inds[r])}"
        cam = colmap_camera(types[r], intr[r], width, height, len(cams) + 1, where, rectify_mei)
        cam = cams.setdefault((cam.model, *cam.params.tolist()), cam)
        rect = None
        if types[r].upper() == "MEI" and intr.shape[1] > 4 and intr[r, 4] != 0:
            src_key = tuple(np.asarray(intr[r, :5], np.float64).tolist())
            if src_key not in rectifiers:
                rectifiers[src_key] = MeiRectifier(src_key, width, height)
            rect = rectifiers[src_key]
        image_rect.append(rect)
        image_cam[i] = cam.camera_id
        rot[i], trans[i] = world_to_camera(c2w[r], f"{pose_uri} frame {int(inds[r])}")
        qvec[i] = rotation_to_qvec(rot[i])
    cameras = {c.camera_id: c for c in cams.values()}
    return ImageSet(cameras, image_cam, rot, trans, qvec, inds[rows], image_rect, rectifiers)


def kept_distortion(manifest: dict) -> tuple[float, float] | None:
    """``(k1, k2)`` of a self-calibrated radial distortion the pose stage kept in the images (too small to
    rectify): the rgb frames still carry it, so COLMAP gets the matching distorted model."""
    dist = ((manifest.get("pose") or {}).get("intrinsics") or {}).get("distortion") or {}
    k = (float(dist.get("k1") or 0.0), float(dist.get("k2") or 0.0))
    return None if dist.get("rectified") or k == (0.0, 0.0) else k


def keep_distortion(images: ImageSet, k: tuple[float, float]) -> str:
    """Give ``images``' pinhole cameras the kept radial distortion: SIMPLE_RADIAL / RADIAL (fx == fy) or
    OPENCV (:func:`vipe_dagster.camera.colmap_camera_model`); returns the note for the statistics."""
    images.pinhole_cameras = dict(images.cameras)
    out = {}
    for cid, c in images.cameras.items():
        fx, fy, cx, cy = (c.params[0], c.params[0], c.params[1], c.params[2]) if c.model == "SIMPLE_PINHOLE" \
            else tuple(c.params[:4])
        model, params = cammod.colmap_camera_model("opencv", [fx, fy, cx, cy, k[0], k[1]])
        out[cid] = Camera(cid, model, c.width, c.height, list(params))
    images.cameras = out
    return (f"the images keep the self-calibrated radial distortion k1 {k[0]:g} k2 {k[1]:g} (too small to "
            f"rectify): cameras exported as {sorted({c.model for c in out.values()})}, observations distorted "
            f"to match")


def distort_observations(images: ImageSet, obs_img: np.ndarray, obs_xy: np.ndarray) -> np.ndarray:
    """Ideal-pinhole COLMAP pixels of the map's observations -> pixels of the distorted exported cameras."""
    if images.pinhole_cameras is None:
        return obs_xy
    out = obs_xy.copy()
    for cid, c in images.cameras.items():
        sel = images.image_cam[obs_img] == cid
        pin = images.pinhole_cameras[cid]
        rays = cammod.unproject_pixels(pin.model, pin.params, obs_xy[sel])[0]
        out[sel] = cammod.project_points(c.model, c.params, rays)[0]
    return out
