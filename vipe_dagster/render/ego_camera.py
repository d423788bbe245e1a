"""The egocentric (Aria) camera per output frame, from either EgoX meta.json or Ego-Exo4D native files.

Geometry (deliberately more exact than the reference renderer, see README "Ego rendering"):

- The ego pose is the world-to-camera transform of the **raw** Aria RGB sensor (OpenCV axes).
- Fisheye: points are projected with the raw Aria FisheyeRadTanThinPrism (Fisheye624) model scaled from the
  2880 px sensor to the output size with ``f' = s f``, ``c' = s (c + 0.5) - 0.5``; the calibration used for a
  frame is the one nearest in time. Without a calibration file a real Aria camera-rgb calibration is used
  (the reference falls back to a SLAM-camera distortion with an unscaled 512 px pinhole).
- Pinhole: the ego K (defined for a ``k_size`` image, 512 px in Ego-Exo4D) is scaled to the output size
  with the same half-pixel rule (the reference uses it unscaled on a 448 canvas).
- The output image is the raw image rotated exactly 90 degrees clockwise (upright): raw pixel (u, v)
  lands at (col, row) = (H - 1 - v, u).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from gpu_kernels.cameras import CameraModel, camera_from_params

from ..egoexo import formats as F
from ..errors import InputError

log = logging.getLogger(__name__)

EGO_K_SIZE = 512  # Ego-Exo4D aria01 camera_intrinsics describe an undistorted 512x512 pinhole


class RotatedCW:
    """Wraps a camera model so projections land in the image rotated 90 degrees clockwise."""

    def __init__(self, base: CameraModel, raw_height: int):
        self.base, self.raw_height = base, raw_height

    @property
    def params(self) -> torch.Tensor:
        return self.base.params

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        uv, valid = self.base.project(points)
        rotated = torch.stack([self.raw_height - 1 - uv[..., 1], uv[..., 0]], dim=-1)
        return rotated, valid


@dataclass
class EgoView:
    """Everything needed to render one output frame."""

    w2c: np.ndarray  # 4x4 world -> raw Aria camera
    camera: RotatedCW
    take_frame: int | None = None


def fisheye_camera(params_sensor: np.ndarray, resolution: int, sensor_px: int = F.ARIA_RGB_SENSOR_PX) -> RotatedCW:
    scaled = F.scale_fisheye624(params_sensor, resolution / sensor_px)
    return RotatedCW(camera_from_params("fisheye624", torch.as_tensor(scaled, dtype=torch.float64)), resolution)


def pinhole_camera(K: np.ndarray, resolution: int, k_size: int = EGO_K_SIZE) -> RotatedCW:
    s = resolution / k_size
    K = np.asarray(K, np.float64)
    params = [K[0, 0] * s, K[1, 1] * s, s * (K[0, 2] + 0.5) - 0.5, s * (K[1, 2] + 0.5) - 0.5]
    return RotatedCW(camera_from_params("pinhole", torch.as_tensor(params, dtype=torch.float64)), resolution)


def views_from_meta(meta_json: str, video_name: str, frames: list[int], resolution: int, fisheye: bool,
                    online_calibration: str | None) -> tuple[np.ndarray, list[EgoView]]:
    """(T_exo_c2w, one EgoView per ViPE frame in ``frames``) for EgoX meta.json input."""
    s = F.read_egox_meta(meta_json, video_name)
    if frames and max(frames) >= len(s.ego_w2c):
        raise InputError(f"Frame range [{frames[0]}, {frames[-1]}] exceeds available frames ({len(s.ego_w2c)}) "
                         f"of ego_extrinsics in {meta_json}")
    calibs = F.read_online_calibration(online_calibration) if online_calibration else None
    views = []
    for i in frames:
        if fisheye:
            params = calibs[0].params if calibs else F.DEFAULT_ARIA_RGB_PARAMS
            cam = fisheye_camera(params, resolution)
        else:
            cam = pinhole_camera(s.ego_K, resolution)
        views.append(EgoView(s.ego_w2c[i], cam, None))
    return np.linalg.inv(s.exo_w2c), views


def views_from_egoexo(camera_pose_json: str, cam_id: str, frames: list[int], source_start_frame: int,
                      resolution: int, fisheye: bool, gopro_calibs: str | None, online_calibration: str | None,
                      fps: float = 30.0) -> tuple[np.ndarray, list[EgoView]]:
    """Ego-Exo4D native input. ViPE frame ``frames[0]`` corresponds to take frame ``source_start_frame``.

    The exo camera-to-world comes from ``gopro_calibs.csv`` when given, else from the camera_pose JSON.
    With an online calibration, take frame ``k`` uses the calibration nearest to
    ``t0 + k / fps`` seconds, where ``t0`` is the first calibration's tracking timestamp.
    """
    cp = F.read_camera_pose_json(camera_pose_json)
    if gopro_calibs:
        T_exo = F.exo_camera_from_csv(gopro_calibs, cam_id).T_world_cam
    else:
        if cam_id not in cp.exo:
            raise InputError(f"Camera {cam_id} not found in {camera_pose_json} "
                             f"(cameras: {', '.join(sorted(cp.exo)) or 'none'})")
        T_exo = np.linalg.inv(cp.exo[cam_id].w2c)
    take_frames = [source_start_frame + (i - frames[0]) for i in frames]
    ego = cp.ego.slice(take_frames[0], take_frames[-1], camera_pose_json)
    calibs = F.read_online_calibration(online_calibration) if online_calibration else None
    if fisheye and calibs is None:
        log.warning("no online calibration given: using the bundled real Aria camera-rgb calibration")
    views = []
    for k, w2c in zip(take_frames, ego.w2c, strict=True):
        if fisheye:
            if calibs:
                t = calibs[0].tracking_timestamp_us + int(round(k / fps * 1e6))
                params = F.nearest_calibration(calibs, t).params
            else:
                params = F.DEFAULT_ARIA_RGB_PARAMS
            cam = fisheye_camera(params, resolution)
        else:
            cam = pinhole_camera(ego.K, resolution)
        views.append(EgoView(w2c, cam, k))
    return T_exo, views
