"""Readers for Ego-Exo4D / Aria / EgoX camera files.

- ``annotations/ego_pose/<split>/camera_pose/<take_uid>.json``: exo ``camXX`` intrinsics (3x3), world-to-camera
  extrinsics (3x4) and 4 Kannala-Brandt coefficients; ``aria*`` per-frame world-to-camera extrinsics.
- ``takes/<take>/trajectory/gopro_calibs.csv``: per exo camera ``T_world_cam`` (translation + quaternion
  x,y,z,w), image size and KANNALABRANDTK3 intrinsics ``fx fy cx cy k0..k3``.
- ``trajectory/online_calibration.jsonl`` (Aria MPS): one JSON object per timestamp with the per-camera
  FisheyeRadTanThinPrism (Fisheye624) parameters ``[f, cx, cy, k0..k5, p0, p1, s0..s3]`` at full sensor size
  and ``T_Device_Camera``.
- ``trajectory/closed_loop_trajectory.csv`` (Aria MPS): ``T_world_device`` per tracking timestamp.
- EgoX ``meta.json``: ``{"test_datasets": [{exo_path, camera_extrinsics, ego_intrinsics, ego_extrinsics}, ...]}``.

All matrices are returned as float64 numpy arrays; all extrinsics follow OpenCV camera axes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..io import fs

CAMERA_ID_RE = re.compile(r"(cam\d{2}|gp\d{2}|aria\d*)")
ARIA_RGB_SENSOR_PX = 2880

# A real Aria camera-rgb factory calibration (Ego-Exo4D take cmu_bike08_2, online_calibration.jsonl line 0),
# FisheyeRadTanThinPrism at the full 2880x2880 sensor: [f, cx, cy, k0..k5, p0, p1, s0..s3].
DEFAULT_ARIA_RGB_PARAMS = np.array([
    1220.592, 1464.618, 1442.370,
    0.41438, -0.48598, 0.13849, 1.14600, -1.66763, 0.63010,
    7.903e-4, -3.461e-4,
    -1.078e-3, 7.70e-5, 5.214e-4, -1.066e-4,
])


def _pad44(m: np.ndarray, what: str, src: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (4, 4):
        return m
    if m.shape != (3, 4):
        raise InputError(f"{src}: {what} has shape {m.shape}, expected 3x4 or 4x4")
    return np.vstack([m, [0.0, 0.0, 0.0, 1.0]])


def _load_json(path: str) -> object:
    if not fs.exists(path):
        raise InputError(f"file not found: {path}")
    try:
        return json.loads(fs.read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc


def find_camera_id(directory: str) -> str:
    """The camera id (``camXX``, ``gpXX`` or ``aria``) in the last path component of a result folder."""
    last = Path(str(directory).rstrip("/")).name
    m = CAMERA_ID_RE.search(last)
    if not m:
        raise InputError(f"No valid camera ID found in directory {directory} "
                         f"(expected camXX, gpXX or aria in the folder name)")
    return m.group(1)


# ------------------------------------------------------------------ camera_pose JSON
@dataclass
class ExoCamera:
    cam_id: str
    K: np.ndarray  # 3x3 at the calibration resolution (3840x2160 in Ego-Exo4D)
    w2c: np.ndarray  # 4x4
    distortion: np.ndarray  # KB4 k0..k3 (may be empty)


@dataclass
class EgoTrajectory:
    label: str  # e.g. "aria01"
    K: np.ndarray  # 3x3 (the undistorted 512 px pinhole in Ego-Exo4D)
    frames: np.ndarray  # (N,) int take frame numbers, sorted
    w2c: np.ndarray  # (N,4,4)

    def slice(self, first: int, last: int, src: str = "ego trajectory") -> EgoTrajectory:
        """Frames ``first..last`` inclusive by take frame number; every frame must exist."""
        have = {int(f): i for i, f in enumerate(self.frames)}
        missing = [f for f in range(first, last + 1) if f not in have]
        if missing:
            raise InputError(f"{src}: ego frames {missing[:5]}{'...' if len(missing) > 5 else ''} are missing; "
                             f"available take frames [{self.frames.min()}, {self.frames.max()}]")
        idx = [have[f] for f in range(first, last + 1)]
        return EgoTrajectory(self.label, self.K, self.frames[idx], self.w2c[idx])


@dataclass
class CameraPoseFile:
    take_name: str | None
    take_uid: str | None
    exo: dict[str, ExoCamera]
    ego: EgoTrajectory


def read_camera_pose_json(path: str) -> CameraPoseFile:
    obj = _load_json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object with camXX and aria* entries")
    meta = obj.get("metadata", {}) or {}
    exo: dict[str, ExoCamera] = {}
    ego: EgoTrajectory | None = None
    for key in sorted(obj):
        val = obj[key]
        if re.fullmatch(r"(cam|gp)\d{2}", key):
            try:
                exo[key] = ExoCamera(
                    cam_id=key, K=np.asarray(val["camera_intrinsics"], np.float64),
                    w2c=_pad44(val["camera_extrinsics"], f"{key}.camera_extrinsics", path),
                    distortion=np.asarray(val.get("distortion_coeffs", []), np.float64))
            except KeyError as exc:
                raise InputError(f"{path}: camera {key} lacks {exc}") from exc
        elif key.startswith("aria") and ego is None:
            ext = val.get("camera_extrinsics")
            if not isinstance(ext, dict) or not ext:
                raise InputError(f"{path}: {key}.camera_extrinsics must map frame numbers to 3x4 matrices")
            try:
                frames = np.array(sorted(int(k) for k in ext), dtype=np.int64)
            except ValueError as exc:
                raise InputError(f"{path}: {key}.camera_extrinsics has a non-integer frame key ({exc})") from exc
            w2c = np.stack([_pad44(ext[str(f)], f"{key} frame {f}", path) for f in frames])
            ego = EgoTrajectory(key, np.asarray(val.get("camera_intrinsics", np.eye(3)), np.float64), frames, w2c)
    if ego is None:
        raise InputError(f"No aria camera found in camera pose file {path}")
    return CameraPoseFile(meta.get("take_name"), meta.get("take_uid"), exo, ego)


# ------------------------------------------------------------------ gopro_calibs.csv
@dataclass
class GoProCalib:
    cam_uid: str
    T_world_cam: np.ndarray  # 4x4 camera-to-world
    width: int
    height: int
    intrinsics_type: str
    intrinsics: np.ndarray  # fx fy cx cy k0 k1 k2 k3

    @property
    def w2c(self) -> np.ndarray:
        return np.linalg.inv(self.T_world_cam)


def _quat_pose(row: dict, suffix: str, src: str, line: int) -> np.ndarray:
    try:
        t = [float(row[f"t{a}_{suffix}"]) for a in "xyz"]
        q = [float(row[f"q{a}_{suffix}"]) for a in "xyzw"]
    except (KeyError, ValueError) as exc:
        raise InputError(f"{src} line {line}: bad or missing pose column ({exc})") from exc
    if not np.isclose(np.linalg.norm(q), 1.0, atol=1e-3):
        raise InputError(f"{src} line {line}: quaternion {q} is not unit length")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()  # scipy order x, y, z, w
    T[:3, 3] = t
    return T


def read_gopro_calibs(path: str) -> dict[str, GoProCalib]:
    if not fs.exists(path):
        raise InputError(f"file not found: {path}")
    rows = list(csv.DictReader(io.StringIO(fs.read_text(path))))
    if not rows:
        raise InputError(f"{path}: no camera rows")
    out: dict[str, GoProCalib] = {}
    for line, row in enumerate(rows, start=2):
        cam = row.get("cam_uid")
        if not cam:
            raise InputError(f"{path} line {line}: missing cam_uid")
        if cam in out:
            continue  # first row wins, as in Ego-Exo4D tooling
        try:
            intr = np.array([float(row[f"intrinsics_{i}"]) for i in range(8)])
            w, h = int(float(row["image_width"])), int(float(row["image_height"]))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path} line {line}: bad or missing intrinsics/size column ({exc})") from exc
        out[cam] = GoProCalib(cam, _quat_pose(row, "world_cam", path, line), w, h,
                              row.get("intrinsics_type", ""), intr)
    return out


def exo_camera_from_csv(path: str, cam_id: str) -> GoProCalib:
    calibs = read_gopro_calibs(path)
    if cam_id not in calibs:
        raise InputError(f"Camera {cam_id} not found in {path} (cameras: {', '.join(sorted(calibs))})")
    return calibs[cam_id]


# ------------------------------------------------------------------ online_calibration.jsonl
@dataclass
class AriaCalibration:
    tracking_timestamp_us: int
    label: str
    params: np.ndarray  # 15 Fisheye624 params at sensor resolution
    T_device_camera: np.ndarray  # 4x4
    sensor_size: int = ARIA_RGB_SENSOR_PX


def read_online_calibration(path: str, label: str = "camera-rgb") -> list[AriaCalibration]:
    """Every line's calibration of camera ``label``, sorted by tracking timestamp."""
    if not fs.exists(path):
        raise InputError(f"file not found: {path}")
    out = []
    for lineno, line in enumerate(fs.read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from exc
        cams = [c for c in obj.get("CameraCalibrations", []) if c.get("Label") == label]
        if not cams:
            raise InputError(f"{path} line {lineno}: no CameraCalibrations entry labelled {label!r}")
        cam = cams[0]
        proj = cam.get("Projection", {})
        params = np.asarray(proj.get("Params", []), np.float64)
        if proj.get("Name") != "FisheyeRadTanThinPrism" or params.shape != (15,):
            raise InputError(f"{path} line {lineno}: {label} projection is {proj.get('Name')!r} with "
                             f"{params.size} params, expected FisheyeRadTanThinPrism with 15")
        tdc = cam.get("T_Device_Camera", {})
        try:
            w, xyz = tdc["UnitQuaternion"]
            T = np.eye(4)
            T[:3, :3] = Rotation.from_quat([*xyz, w]).as_matrix()
            T[:3, 3] = tdc["Translation"]
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path} line {lineno}: bad T_Device_Camera for {label} ({exc})") from exc
        ts = obj.get("tracking_timestamp_us")
        if ts is None:
            raise InputError(f"{path} line {lineno}: missing tracking_timestamp_us")
        out.append(AriaCalibration(int(ts), label, params, T))
    if not out:
        raise InputError(f"{path}: no calibration lines")
    return sorted(out, key=lambda c: c.tracking_timestamp_us)


def nearest_calibration(calibs: list[AriaCalibration], timestamp_us: int) -> AriaCalibration:
    """The calibration closest in time to ``timestamp_us`` (``calibs`` sorted by timestamp)."""
    ts = [c.tracking_timestamp_us for c in calibs]
    i = bisect_left(ts, timestamp_us)
    if i == 0:
        return calibs[0]
    if i == len(ts):
        return calibs[-1]
    return calibs[i] if ts[i] - timestamp_us < timestamp_us - ts[i - 1] else calibs[i - 1]


def scale_fisheye624(params: np.ndarray, scale: float) -> np.ndarray:
    """Fisheye624 params for an image scaled by ``scale``: f' = s f, c' = s (c + 0.5) - 0.5."""
    p = np.array(params, dtype=np.float64, copy=True)
    p[0] *= scale
    p[1:3] = scale * (p[1:3] + 0.5) - 0.5
    return p


def rotate_cw_pixels(uv: np.ndarray, raw_height: int) -> np.ndarray:
    """Pixel (u=col, v=row) of the raw Aria image -> (col, row) of the image rotated 90 degrees clockwise.

    Rotating clockwise maps raw (row r, col c) to (row c, col H-1-r), so the new u is H-1-v and the new v is u.
    """
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([raw_height - 1 - uv[..., 1], uv[..., 0]], axis=-1)


# ------------------------------------------------------------------ closed_loop_trajectory.csv
@dataclass
class DeviceTrajectory:
    tracking_timestamp_us: np.ndarray  # (N,) int64
    T_world_device: np.ndarray  # (N,4,4)
    quality: np.ndarray  # (N,) float (NaN where absent)


def read_closed_loop_trajectory(path: str) -> DeviceTrajectory:
    if not fs.exists(path):
        raise InputError(f"file not found: {path}")
    rows = list(csv.DictReader(io.StringIO(fs.read_text(path))))
    if not rows:
        raise InputError(f"{path}: no trajectory rows")
    ts, Ts, q = [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            ts.append(int(row["tracking_timestamp_us"]))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path} line {line}: bad tracking_timestamp_us ({exc})") from exc
        Ts.append(_quat_pose(row, "world_device", path, line))
        q.append(float(row["quality_score"]) if row.get("quality_score") not in (None, "") else np.nan)
    order = np.argsort(ts, kind="stable")
    return DeviceTrajectory(np.asarray(ts, np.int64)[order], np.stack(Ts)[order], np.asarray(q)[order])


# ------------------------------------------------------------------ EgoX meta.json
@dataclass
class EgoXSample:
    exo_w2c: np.ndarray  # 4x4
    exo_K: np.ndarray | None
    ego_K: np.ndarray  # 3x3
    ego_w2c: np.ndarray  # (N,4,4)


def read_egox_meta(path: str, video_name: str) -> EgoXSample:
    """The sample whose ``Path(exo_path).parent.name`` equals ``video_name`` (the EgoX matching rule)."""
    obj = _load_json(path)
    samples = obj.get("test_datasets") if isinstance(obj, dict) else None
    if not isinstance(samples, list):
        raise InputError(f"{path}: expected {{\"test_datasets\": [...]}}")
    for i, s in enumerate(samples):
        if Path(str(s.get("exo_path", ""))).parent.name != video_name:
            continue
        try:
            ego = np.stack([_pad44(m, f"test_datasets[{i}].ego_extrinsics", path) for m in s["ego_extrinsics"]])
            return EgoXSample(
                exo_w2c=_pad44(s["camera_extrinsics"], f"test_datasets[{i}].camera_extrinsics", path),
                exo_K=np.asarray(s["camera_intrinsics"], np.float64) if "camera_intrinsics" in s else None,
                ego_K=np.asarray(s["ego_intrinsics"], np.float64), ego_w2c=ego)
        except KeyError as exc:
            raise InputError(f"{path}: test_datasets[{i}] lacks {exc}") from exc
    raise InputError(f"No matching sample found for video_name={video_name!r} in {path}")
