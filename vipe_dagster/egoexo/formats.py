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

from ..errors import InputError, VipeError
from ..io import fs
from ..io.checks import check_rigid

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


def _numbers(value: object, what: str, src: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a finite float64 array (of ``shape`` if given); ragged lists, strings and NaN/inf are
    errors."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{src}: {what} must be a list of numbers (a matrix with equal-length rows), got "
                         f"{str(value)[:80]} ({exc})") from None
    if shape is not None and arr.shape != shape:
        raise InputError(f"{src}: {what} has shape {arr.shape}, expected {'x'.join(map(str, shape))}")
    if not np.isfinite(arr).all():
        raise InputError(f"{src}: {what} holds non-finite values (NaN or inf)")
    return arr


def _pad44(m: object, what: str, src: str) -> np.ndarray:
    """A world-to-camera or camera-to-world 3x4/4x4 rigid transform (finite, orthonormal rotation)."""
    a = _numbers(m, what, src)
    if a.shape not in ((3, 4), (4, 4)):
        raise InputError(f"{src}: {what} has shape {a.shape}, expected 3x4 or 4x4")
    try:
        return check_rigid(a, f"{src}: {what}")
    except VipeError as exc:
        raise InputError(str(exc)) from None


def _intrinsics3(m: object, what: str, src: str) -> np.ndarray:
    """A 3x3 camera matrix with positive focals."""
    K = _numbers(m, what, src, (3, 3))
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{src}: {what} has focal lengths fx={K[0, 0]:g}, fy={K[1, 1]:g}; expected both > 0")
    return K


def _read_text(path: str) -> str:
    if not fs.exists(path):
        raise InputError(f"file not found: {path}")
    if fs.get_fs(path)[0].isdir(fs.get_fs(path)[1]):
        raise InputError(f"{path} is a folder, expected a file")
    try:
        return fs.read_text(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
                         f"expected a text file") from None


def _load_json(path: str) -> object:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc


def _csv_rows(path: str, required: tuple[str, ...]) -> list[dict]:
    """Rows of a CSV file; a binary file, a short row or a missing column is an error naming the line."""
    text = _read_text(path)
    if "\x00" in text:
        raise InputError(f"{path}: contains NUL bytes; expected a CSV text file")
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path} line 1: missing column(s) {missing}; found {header[:12]}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise InputError(f"{path} line {line}: has {len([v for v in row.values() if v is not None])} "
                                 f"fields, expected {len(header)} like the header")
            rows.append(row)
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    return rows


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
    if not isinstance(meta, dict):
        raise InputError(f"{path}: 'metadata' must be an object, got {type(meta).__name__}")
    exo: dict[str, ExoCamera] = {}
    ego: EgoTrajectory | None = None
    for key in sorted(obj):
        val = obj[key]
        is_exo, is_aria = bool(re.fullmatch(r"(cam|gp)\d{2}", key)), key.startswith("aria")
        if (is_exo or (is_aria and ego is None)) and not isinstance(val, dict):
            raise InputError(f"{path}: entry {key!r} must be an object with camera_intrinsics and "
                             f"camera_extrinsics, got {type(val).__name__}")
        if is_exo:
            missing = [k for k in ("camera_intrinsics", "camera_extrinsics") if k not in val]
            if missing:
                raise InputError(f"{path}: camera {key} lacks {missing[0]!r}")
            dist = val.get("distortion_coeffs", [])
            exo[key] = ExoCamera(
                cam_id=key, K=_intrinsics3(val["camera_intrinsics"], f"{key}.camera_intrinsics", path),
                w2c=_pad44(val["camera_extrinsics"], f"{key}.camera_extrinsics", path),
                distortion=_numbers(dist, f"{key}.distortion_coeffs", path).reshape(-1))
        elif is_aria and ego is None:
            ext = val.get("camera_extrinsics")
            if not isinstance(ext, dict) or not ext:
                raise InputError(f"{path}: {key}.camera_extrinsics must map frame numbers to 3x4 matrices")
            try:
                by_frame = {int(k): k for k in ext}
            except ValueError as exc:
                raise InputError(f"{path}: {key}.camera_extrinsics has a non-integer frame key ({exc})") from exc
            frames = np.array(sorted(by_frame), dtype=np.int64)
            w2c = np.stack([_pad44(ext[by_frame[int(f)]], f"{key} frame {f}", path) for f in frames])
            K = _intrinsics3(val["camera_intrinsics"], f"{key}.camera_intrinsics", path) \
                if "camera_intrinsics" in val else np.eye(3)
            ego = EgoTrajectory(key, K, frames, w2c)
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
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{src} line {line}: bad or missing pose column ({exc})") from None
    if not np.isfinite(t).all():
        raise InputError(f"{src} line {line}: translation {t} is not finite")
    if not np.isclose(np.linalg.norm(q), 1.0, atol=1e-3):
        raise InputError(f"{src} line {line}: quaternion {q} is not unit length")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()  # scipy order x, y, z, w
    T[:3, 3] = t
    return T


def read_gopro_calibs(path: str) -> dict[str, GoProCalib]:
    rows = _csv_rows(path, ("cam_uid", "image_width", "image_height", *[f"intrinsics_{i}" for i in range(8)]))
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
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise InputError(f"{path} line {line}: bad or missing intrinsics/size column ({exc})") from None
        if not np.isfinite(intr).all() or intr[0] <= 0 or intr[1] <= 0 or w <= 0 or h <= 0:
            raise InputError(f"{path} line {line}: camera {cam} has intrinsics {intr[:4].tolist()} on "
                             f"{w}x{h}; expected finite values, fx, fy > 0 and a positive image size")
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
    out = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object with CameraCalibrations, "
                             f"got {type(obj).__name__}")
        entries = obj.get("CameraCalibrations", [])
        if not isinstance(entries, list):
            raise InputError(f"{where}: CameraCalibrations must be a list, got {type(entries).__name__}")
        cams = [c for c in entries if isinstance(c, dict) and c.get("Label") == label]
        if not cams:
            raise InputError(f"{where}: no CameraCalibrations entry labelled {label!r}")
        cam = cams[0]
        proj = cam.get("Projection", {})
        if not isinstance(proj, dict):
            raise InputError(f"{where}: {label} Projection must be an object, got {type(proj).__name__}")
        params = _numbers(proj.get("Params", []), f"{label} Projection.Params", where)
        if proj.get("Name") != "FisheyeRadTanThinPrism" or params.shape != (15,):
            raise InputError(f"{where}: {label} projection is {proj.get('Name')!r} with "
                             f"{params.size} params, expected FisheyeRadTanThinPrism with 15")
        if params[0] <= 0:
            raise InputError(f"{where}: {label} focal length {params[0]:g} must be > 0")
        tdc = cam.get("T_Device_Camera", {})
        try:
            w, xyz = tdc["UnitQuaternion"]
            q = _numbers([*xyz, w], f"{label} T_Device_Camera.UnitQuaternion", where, (4,))
            t = _numbers(tdc["Translation"], f"{label} T_Device_Camera.Translation", where, (3,))
            if not np.isclose(np.linalg.norm(q), 1.0, atol=1e-3):
                raise InputError(f"{where}: {label} T_Device_Camera quaternion is not unit length")
            T = np.eye(4)
            T[:3, :3] = Rotation.from_quat(q).as_matrix()
            T[:3, 3] = t
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{where}: bad T_Device_Camera for {label} ({exc})") from None
        ts = obj.get("tracking_timestamp_us")
        if ts is None:
            raise InputError(f"{where}: missing tracking_timestamp_us")
        if isinstance(ts, bool) or not isinstance(ts, int | float | str):
            raise InputError(f"{where}: tracking_timestamp_us must be an integer, got {ts!r}")
        try:
            ts_us = int(ts) if not isinstance(ts, float) or np.isfinite(ts) else None
        except ValueError:
            ts_us = None
        if ts_us is None:
            raise InputError(f"{where}: tracking_timestamp_us must be an integer, got {ts!r}")
        out.append(AriaCalibration(ts_us, label, params, T))
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
    rows = _csv_rows(path, ("tracking_timestamp_us",))
    if not rows:
        raise InputError(f"{path}: no trajectory rows")
    ts, Ts, q = [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            ts.append(int(row["tracking_timestamp_us"]))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path} line {line}: bad tracking_timestamp_us ({exc})") from exc
        Ts.append(_quat_pose(row, "world_device", path, line))
        try:
            q.append(float(row["quality_score"]) if row.get("quality_score") not in (None, "") else np.nan)
        except ValueError as exc:
            raise InputError(f"{path} line {line}: bad quality_score ({exc})") from None
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
        if not isinstance(s, dict):
            raise InputError(f"{path}: test_datasets[{i}] must be an object, got {type(s).__name__}")
        if Path(str(s.get("exo_path", ""))).parent.name != video_name:
            continue
        try:
            ego_list = s["ego_extrinsics"]
            if not isinstance(ego_list, list) or not ego_list:
                raise InputError(f"{path}: test_datasets[{i}].ego_extrinsics must be a non-empty list of 3x4 "
                                 f"matrices")
            ego = np.stack([_pad44(m, f"test_datasets[{i}].ego_extrinsics[{k}]", path)
                            for k, m in enumerate(ego_list)])
            return EgoXSample(
                exo_w2c=_pad44(s["camera_extrinsics"], f"test_datasets[{i}].camera_extrinsics", path),
                exo_K=_intrinsics3(s["camera_intrinsics"], f"test_datasets[{i}].camera_intrinsics", path)
                if "camera_intrinsics" in s else None,
                ego_K=_intrinsics3(s["ego_intrinsics"], f"test_datasets[{i}].ego_intrinsics", path),
                ego_w2c=ego)
        except KeyError as exc:
            raise InputError(f"{path}: test_datasets[{i}] lacks {exc}") from None
    raise InputError(f"No matching sample found for video_name={video_name!r} in {path}")
