"""A synthetic Ego-Exo4D take with exact ground truth, made by analytic ray casting (numpy only).

The scene is the inside of a textured box room (six planes with smooth procedural textures) plus one
textured box standing in it. A static exo pinhole camera ("cam01") sees the room; its ViPE-format result
(rgb, identity poses as ViPE's fixed-camera mode writes them, intrinsics, z-depth, empty masks) is written
exactly, so the ego renderer can be tested without any estimation error. An Aria wearer walks near the exo
camera; for every frame the take holds:

- ``annotations/ego_pose/test/camera_pose/<uid>.json``: ``cam01`` K / world-to-camera / KB4 (zeros) and
  ``aria01`` per-frame world-to-camera of the raw Aria RGB sensor;
- ``takes/<take>/trajectory/gopro_calibs.csv`` (``T_world_cam`` of cam01) and ``online_calibration.jsonl``
  (a real Aria camera-rgb Fisheye624 calibration at 2880 px, one line per frame at 30 fps);
- ``meta.json`` in the EgoX layout;
- ground truth ego views: ``gt/ego_fisheye/frame_%06d.png`` (upright = raw rotated 90 degrees clockwise) and
  ``gt/ego_fisheye_visible/frame_%06d.png`` (255 where the surface point is also seen by the exo camera),
  computed by casting the fisheye rays with **projectaria_tools**' unprojection (an independent
  implementation of the camera model).

The world frame is not the exo camera frame (cam01 is rotated and translated in it), so the renderer's
exo-to-world transform is exercised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..egoexo.formats import ARIA_RGB_SENSOR_PX, DEFAULT_ARIA_RGB_PARAMS, scale_fisheye624
from ..errors import InputError
from ..io import ArtifactStore

ROOM_MIN = np.array([-3.0, -1.6, -3.0])  # world: x right, y down (floor at y=+1.4), z forward
ROOM_MAX = np.array([3.0, 1.4, 4.0])
BOX_MIN = np.array([-0.4, 0.6, 1.4])
BOX_MAX = np.array([0.5, 1.4, 2.2])


@dataclass
class EgoExoTake:
    root: str
    take: str
    take_uid: str
    vipe_dir: str  # ViPE result folder of cam01
    camera_pose_json: str
    gopro_calibs: str
    online_calibration: str
    meta_json: str
    gt_dir: str
    num_frames: int
    resolution: int


def _texture(plane: int, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Smooth multi-scale colour pattern on a plane's 2-D coordinates (metres) -> (..., 3) in [0, 1]."""
    rng = np.random.default_rng(100 + plane)
    out = np.zeros((*s.shape, 3))
    for c in range(3):
        acc = np.full(s.shape, 0.5)
        for freq, amp in ((0.7, 0.22), (1.9, 0.14), (4.3, 0.08)):
            a, b, ph = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
            acc += amp * np.sin(2 * np.pi * freq * (a * s + b * t) + ph)
        out[..., c] = acc
    return np.clip(out, 0, 1)


def _planes():
    """(normal axis, coordinate, bounds-min, bounds-max, plane id) for the room walls and the box faces."""
    planes = []
    for axis in range(3):
        for pid, val in ((2 * axis, ROOM_MIN[axis]), (2 * axis + 1, ROOM_MAX[axis])):
            planes.append((axis, val, ROOM_MIN, ROOM_MAX, pid))
    for axis in range(3):
        for pid, val in ((10 + 2 * axis, BOX_MIN[axis]), (11 + 2 * axis, BOX_MAX[axis])):
            planes.append((axis, val, BOX_MIN, BOX_MAX, pid))
    return planes


def cast(origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays ``origin + t dirs`` (dirs (...,3) world). Returns (t, rgb)."""
    shape = dirs.shape[:-1]
    d = dirs.reshape(-1, 3)
    best_t = np.full(len(d), np.inf)
    best_rgb = np.zeros((len(d), 3))
    for axis, val, lo, hi, pid in _planes():
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (val - origin[axis]) / d[:, axis]
        p = origin + t[:, None] * d
        others = [a for a in range(3) if a != axis]
        inside = (t > 1e-6) & np.all((p[:, others] >= lo[others] - 1e-9) & (p[:, others] <= hi[others] + 1e-9), axis=1)
        better = inside & (t < best_t)
        if better.any():
            best_t[better] = t[better]
            best_rgb[better] = _texture(pid, p[better, others[0]], p[better, others[1]])
    return best_t.reshape(shape), best_rgb.reshape(*shape, 3)


def _look_at(eye, target, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """Camera-to-world (OpenCV axes) looking from ``eye`` at ``target`` with image-up along ``up``."""
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(-np.asarray(up, float), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def _ego_trajectory(num_frames: int) -> np.ndarray:
    """(N, 4, 4) world-to-camera of the raw Aria RGB sensor (image rotated 90 degrees from upright), the
    wearer walking beside cam01 and turning across the room."""
    ego_w2c = []
    for i in range(num_frames):
        s = i / max(num_frames - 1, 1)
        eye = np.array([0.1 + 0.4 * s, -0.1, -1.9 + 0.3 * s])
        upright = _look_at(eye, np.array([0.2 - 0.6 * s, 0.3, 2.0]))
        # the raw sensor frame is the upright camera rolled by +90 degrees about its optical axis
        # (raw +u points down in the world, so rotating the raw image clockwise makes it upright)
        raw = upright.copy()
        raw[:3, :3] = upright[:3, :3] @ Rotation.from_euler("z", 90, degrees=True).as_matrix()
        ego_w2c.append(np.linalg.inv(raw))
    return np.stack(ego_w2c)


def generate_take(out_root: str, num_frames: int = 8, exo_size: tuple[int, int] = (320, 240),
                  exo_focal: float = 220.0, resolution: int = 224, take: str = "synth_take_1") -> EgoExoTake:
    from projectaria_tools.core import calibration

    root = Path(out_root)
    W, H = exo_size
    K = np.array([[exo_focal, 0, (W - 1) / 2], [0, exo_focal, (H - 1) / 2], [0, 0, 1.0]])
    T_exo = _look_at(np.array([0.3, -0.2, -2.4]), np.array([0.0, 0.4, 2.0]))  # exo camera-to-world

    # --- exo render (exact), written as a ViPE fixed-camera result in the exo camera frame
    u, v = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    rays_c = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    t, rgb = cast(T_exo[:3, 3], rays_c @ T_exo[:3, :3].T)
    depth = t.astype(np.float32)  # unit-z rays in the camera frame: t along the ray is the z-depth
    img = (rgb * 255).round().astype(np.uint8)
    vipe_dir = root / "vipe_results" / take / "cam01"
    store = ArtifactStore(str(vipe_dir))
    store.write_rgb("cam01", [img] * num_frames, fps=30.0)
    store.write_pose("cam01", np.tile(np.eye(4), (num_frames, 1, 1)))
    store.write_intrinsics("cam01", np.tile([[K[0, 0], K[1, 1], K[0, 2], K[1, 2]]], (num_frames, 1)))
    store.write_depth("cam01", [depth] * num_frames)
    store.write_masks("cam01", [np.zeros((H, W), np.uint8)] * num_frames, {})
    store.write_info("cam01", {"ba_residual": 0.0})

    ego_w2c = _ego_trajectory(num_frames)

    params_sensor = DEFAULT_ARIA_RGB_PARAMS
    ann = root / "annotations" / "ego_pose" / "test" / "camera_pose"
    ann.mkdir(parents=True, exist_ok=True)
    uid = "00000000-synth-take-0001"
    exo_w2c = np.linalg.inv(T_exo)
    pose_json = {
        "metadata": {"take_name": take, "take_uid": uid},
        "cam01": {"camera_intrinsics": K.tolist(), "camera_extrinsics": exo_w2c[:3].tolist(),
                  "distortion_coeffs": [0.0, 0.0, 0.0, 0.0]},
        "aria01": {"camera_intrinsics": [[150.0, 0, 255.5], [0, 150.0, 255.5], [0, 0, 1]],
                   "camera_extrinsics": {str(i): ego_w2c[i][:3].tolist() for i in range(num_frames)}},
    }
    cp_path = ann / f"{uid}.json"
    cp_path.write_text(json.dumps(pose_json))
    traj = root / "takes" / take / "trajectory"
    traj.mkdir(parents=True, exist_ok=True)
    q = Rotation.from_matrix(T_exo[:3, :3]).as_quat()
    cols = ["cam_uid", "graph_uid", "tx_world_cam", "ty_world_cam", "tz_world_cam", "qx_world_cam",
            "qy_world_cam", "qz_world_cam", "qw_world_cam", "image_width", "image_height", "intrinsics_type",
            *[f"intrinsics_{k}" for k in range(8)], "start_frame_idx", "end_frame_idx"]
    row = ["cam01", "g0", *T_exo[:3, 3], *q, W, H, "KANNALABRANDTK3", K[0, 0], K[1, 1], K[0, 2], K[1, 2],
           0, 0, 0, 0, -1, -1]
    (traj / "gopro_calibs.csv").write_text(",".join(cols) + "\n" + ",".join(str(x) for x in row) + "\n")
    _write_online_calibration(traj, params_sensor, num_frames)
    meta = {"test_datasets": [{
        "exo_path": f"./takes/{take}/cam01/exo.mp4", "prompt": "", "ego_prior_path": "", "ego_gt_path": "",
        "camera_intrinsics": K.tolist(), "camera_extrinsics": exo_w2c[:3].tolist(),
        "ego_intrinsics": [[150.0, 0, 255.5], [0, 150.0, 255.5], [0, 0, 1]],
        "ego_extrinsics": [m[:3].tolist() for m in ego_w2c]}]}
    (root / "meta.json").write_text(json.dumps(meta))

    # --- ground-truth ego fisheye views with projectaria_tools' unprojection
    gt_dir = root / "gt"
    (gt_dir / "ego_fisheye").mkdir(parents=True, exist_ok=True)
    (gt_dir / "ego_fisheye_visible").mkdir(parents=True, exist_ok=True)
    scaled = scale_fisheye624(params_sensor, resolution / ARIA_RGB_SENSOR_PX)
    proj = calibration.CameraProjection(calibration.CameraModelType.FISHEYE624, scaled)
    R = resolution
    rows, cols_ = np.meshgrid(np.arange(R), np.arange(R), indexing="ij")
    # upright pixel (col', row') comes from raw (u, v) = (row', R - 1 - col')
    raw_u, raw_v = rows.astype(float), (R - 1 - cols_).astype(float)
    rays = np.array([proj.unproject(np.array([a, b])) for a, b in zip(raw_u.ravel(), raw_v.ravel(), strict=True)])
    rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    for i in range(num_frames):
        c2w = np.linalg.inv(ego_w2c[i])
        tt, col = cast(c2w[:3, 3], rays @ c2w[:3, :3].T)
        ok = np.isfinite(tt) & (rays[:, 2] > 0)
        X = c2w[:3, 3] + tt[:, None] * (rays @ c2w[:3, :3].T)
        Xe = (X - T_exo[:3, 3]) @ T_exo[:3, :3]  # into the exo camera frame
        with np.errstate(invalid="ignore", divide="ignore"):
            ue = K[0, 0] * Xe[:, 0] / Xe[:, 2] + K[0, 2]
            ve = K[1, 1] * Xe[:, 1] / Xe[:, 2] + K[1, 2]
        inimg = ok & (Xe[:, 2] > 0) & (ue >= 0) & (ue <= W - 1) & (ve >= 0) & (ve <= H - 1)
        seen = np.zeros(len(X), bool)
        ui, vi = np.clip(np.round(ue[inimg]).astype(int), 0, W - 1), np.clip(np.round(ve[inimg]).astype(int), 0, H - 1)
        seen[inimg] = np.abs(depth[vi, ui] - Xe[inimg, 2]) < 0.02 * Xe[inimg, 2]
        gt_img = np.where(ok[:, None], col, 0).reshape(R, R, 3)
        cv2.imwrite(str(gt_dir / "ego_fisheye" / f"frame_{i:06d}.png"),
                    cv2.cvtColor((gt_img * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(gt_dir / "ego_fisheye_visible" / f"frame_{i:06d}.png"),
                    (seen.reshape(R, R) * 255).astype(np.uint8))
    return EgoExoTake(str(root), take, uid, str(vipe_dir), str(cp_path), str(traj / "gopro_calibs.csv"),
                      str(traj / "online_calibration.jsonl"), str(root / "meta.json"), str(gt_dir),
                      num_frames, resolution)


def add_exo_camera(take: EgoExoTake, cam: str, yaw_deg: float) -> str:
    """Give ``take`` another exo camera ``cam``: cam01's ViPE result copied to ``vipe_results/<take>/<cam>/``
    and a ``gopro_calibs.csv`` row placing it where cam01 is, turned by ``yaw_deg`` about its own vertical
    axis. Its points then land elsewhere in the world, so it sees less of what the wearer sees (a worse
    camera for the ego view). Returns the new ViPE folder."""
    import shutil

    if not re.fullmatch(r"(cam|gp)\d{2}", cam):
        raise InputError(f"exo camera id must look like camXX or gpXX, got {cam!r}")
    dst = Path(take.vipe_dir).parent / cam
    if dst.exists():
        raise InputError(f"{dst} already exists")
    shutil.copytree(take.vipe_dir, dst)
    csv_path = Path(take.gopro_calibs)
    lines = csv_path.read_text().splitlines()
    head, row = lines[0].split(","), lines[1].split(",")
    quat_cols = ("qx_world_cam", "qy_world_cam", "qz_world_cam", "qw_world_cam")
    q = [float(row[head.index(c)]) for c in quat_cols]
    rot = Rotation.from_quat(q) * Rotation.from_euler("y", yaw_deg, degrees=True)
    new = list(row)
    new[head.index("cam_uid")] = cam
    for c, v in zip(quat_cols, rot.as_quat(), strict=True):
        new[head.index(c)] = repr(float(v))
    csv_path.write_text("\n".join([*lines, ",".join(new)]) + "\n")
    return str(dst)


# ------------------------------------------------------------------ a rig of distinct exo cameras, as videos
RIG_CAMERAS = (  # (eye, look-at target) of each exo camera in the world; all see the box from different sides
    ("cam01", (0.3, -0.2, -2.4), (0.0, 0.4, 2.0)),
    ("cam02", (-2.3, -0.6, -2.2), (0.3, 0.6, 1.6)),
    ("cam03", (2.4, -0.7, -1.6), (-0.4, 0.7, 1.9)),
    ("cam04", (-2.2, -1.0, 3.3), (0.6, 0.6, 0.6)),
)
EXO_VIDEO_SUBDIR = "frame_aligned_videos/downscaled/448"
GOPRO_KB = (0.04, -0.012, 0.003, -0.0004)
"""Kannala-Brandt k0..k3 of the generated exo cameras: a wide GoPro-like lens (``theta_d`` 2 % above the
equidistant ``theta`` at 40 degrees; with k = 0 the model is the equidistant fisheye, not a pinhole). Chosen
for the synthetic takes, not measured on a real GoPro."""


@dataclass
class RigTake:
    """A generated take in the raw Ego-Exo4D layout whose exo cameras are videos (no ViPE result): what
    ``exo_inference`` starts from. Ground truth (``gt_dir``) is for evaluation only."""

    root: str
    take: str
    take_uid: str
    cams: list[str]
    videos: dict[str, str]  # cam -> takes/<take>/frame_aligned_videos/downscaled/448/<cam>.mp4
    ego_video: str
    camera_pose_json: str
    gopro_calibs: str
    online_calibration: str
    gt_dir: str
    K: np.ndarray  # 3x3 of every exo camera at the video resolution (fx fy cx cy of the lens model)
    kb: tuple[float, float, float, float] | None  # Kannala-Brandt k0..k3 of the videos (None: pinhole videos)
    T_world_cam: dict[str, np.ndarray]
    num_frames: int
    resolution: int

    def gt_depth(self, cam: str) -> np.ndarray:
        """Exact z-depth (m) of ``cam``'s pinhole-rectified image (fx fy cx cy of :attr:`K`, the video's size):
        the camera the exo inference writes its result in."""
        return np.load(Path(self.gt_dir) / "exo_depth" / f"{cam}.npy")

    def gt_image(self, cam: str) -> np.ndarray:
        """Exact colours (RGB uint8) of ``cam``'s pinhole-rectified image (the camera of :meth:`gt_depth`), before
        the lens, the H.264 encoding and the undistortion: what the inference's rectified frames approximate."""
        return cv2.cvtColor(cv2.imread(str(Path(self.gt_dir) / "exo_image" / f"{cam}.png")), cv2.COLOR_BGR2RGB)

    def gt_depth_distorted(self, cam: str) -> np.ndarray:
        """Exact z-depth (m) at the pixels of ``cam``'s video (the Kannala-Brandt image when :attr:`kb`)."""
        return np.load(Path(self.gt_dir) / "exo_depth_video" / f"{cam}.npy")

    def gt_seen_by_other(self, cam: str) -> np.ndarray:
        """True where the surface ``cam`` sees at a pixel is also seen (unoccluded, in view) by another exo camera."""
        return cv2.imread(str(Path(self.gt_dir) / "exo_seen_by_other" / f"{cam}.png"), cv2.IMREAD_GRAYSCALE) > 0

    def gt_ego(self, frame: int) -> np.ndarray:
        """Ground-truth upright ego fisheye view (RGB uint8) of a take frame."""
        return cv2.cvtColor(cv2.imread(str(Path(self.gt_dir) / "ego_fisheye" / f"frame_{frame:06d}.png")),
                            cv2.COLOR_BGR2RGB)

    def gt_ego_visible(self, cam: str, frame: int) -> np.ndarray:
        """True where the ego pixel's surface point is seen by exo camera ``cam``."""
        return cv2.imread(str(Path(self.gt_dir) / "ego_fisheye_visible" / cam / f"frame_{frame:06d}.png"),
                          cv2.IMREAD_GRAYSCALE) > 0


def _project_seen(X: np.ndarray, T_cam: np.ndarray, K: np.ndarray, depth: np.ndarray, tol: float = 0.02) -> np.ndarray:
    """Which world points ``X`` (M,3) a pinhole camera (camera-to-world ``T_cam``, 3x3 ``K``) with the exact
    z-depth map ``depth`` sees unoccluded."""
    h, w = depth.shape
    Xc = (X - T_cam[:3, 3]) @ T_cam[:3, :3]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = K[0, 0] * Xc[:, 0] / Xc[:, 2] + K[0, 2]
        v = K[1, 1] * Xc[:, 1] / Xc[:, 2] + K[1, 2]
    inimg = np.isfinite(u) & np.isfinite(v) & (Xc[:, 2] > 1e-6) & (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) \
        & (v < h - 0.5)
    seen = np.zeros(len(X), bool)
    ui = np.clip(np.round(u[inimg]).astype(int), 0, w - 1)
    vi = np.clip(np.round(v[inimg]).astype(int), 0, h - 1)
    seen[inimg] = np.abs(depth[vi, ui] - Xc[inimg, 2]) < tol * Xc[inimg, 2]
    return seen


def _kb_rays(K: np.ndarray, kb, width: int, height: int) -> np.ndarray:
    """Unit-z camera rays (H, W, 3) of every pixel of a Kannala-Brandt image (``vipe_dagster.camera``'s model)."""
    import torch

    from ..camera.models import KannalaBrandtCamera

    cam = KannalaBrandtCamera([K[0, 0], K[1, 1], K[0, 2], K[1, 2], *kb]).to(dtype=torch.float64)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays, valid = cam.unproject_with_valid(torch.from_numpy(np.stack([u, v], -1)))
    if not bool(valid.all()):
        raise InputError(f"Kannala-Brandt k={list(kb)} with fx={K[0, 0]} does not cover a {width}x{height} image "
                         f"(some pixels have no ray)")
    return rays.numpy()


RIG_EXO_SIZE = (598, 448)
"""Default exo video size of a generated rig take: Ego-Exo4D's ``downscaled/448`` videos are 448 px high; 4:3
here (the GoPro frames are 16:9) so that every camera keeps the same field of view as :data:`RIG_EXO_FOCAL`."""
RIG_EXO_FOCAL = 410.0


def generate_rig_take(out_root: str, num_cameras: int = 4, num_frames: int = 48,
                      exo_size: tuple[int, int] = RIG_EXO_SIZE, exo_focal: float = RIG_EXO_FOCAL,
                      resolution: int = 224, take: str = "synth_rig_1",
                      calib_scale: float = 2.0, uid: str = "00000000-synth-rig-0001",
                      kb: tuple[float, float, float, float] | None = GOPRO_KB) -> RigTake:
    """A take of the raw Ego-Exo4D layout with ``num_cameras`` (2..4) static exo cameras at distinct poses, each
    rendered from its own viewpoint (analytic ray casting) and written as an H.264 video
    ``takes/<take>/frame_aligned_videos/downscaled/448/camNN.mp4`` through the Kannala-Brandt lens ``kb``
    (every pixel's own ray, from :class:`vipe_dagster.camera.models.KannalaBrandtCamera`; ``kb=None``: pinhole
    videos); the Aria wearer's view as ``aria01_214-1.mp4`` (the Fisheye624 camera of
    ``online_calibration.jsonl`` scaled to ``resolution``, rays from projectaria_tools, raw sensor
    orientation); ``gopro_calibs.csv`` with every camera's metric ``T_world_cam`` and ``KANNALABRANDTK3``
    intrinsics fx fy cx cy k0..k3 at ``calib_scale`` times the video size (as Ego-Exo4D's calibration is at the
    full GoPro resolution while the videos are downscaled; the distortion coefficients do not scale), the same
    in the camera_pose JSON (``distortion_coeffs``), and ``online_calibration.jsonl`` as :func:`generate_take`
    writes it.

    Ground truth for evaluation only (nothing in the pipeline reads it), under ``gt/<take>/``:
    ``exo_depth/<cam>.npy`` (exact z-depth of the pinhole-rectified image: fx fy cx cy of the calibration at
    the video size, the camera the exo inference undistorts to), ``exo_image/<cam>.png`` (its exact colours),
    ``exo_depth_video/<cam>.npy`` (exact z-depth at the video's own, distorted, pixels),
    ``exo_seen_by_other/<cam>.png`` (rectified pixels whose surface point another exo camera's rectified image
    sees unoccluded), ``ego_fisheye/frame_%06d.png`` (upright,
    projectaria_tools' unprojection) and ``ego_fisheye_visible/<cam>/frame_%06d.png`` (ego pixels whose
    surface ``cam``'s rectified image sees).
    """
    from projectaria_tools.core import calibration

    from ..io.video import VideoWriter

    if not 2 <= num_cameras <= len(RIG_CAMERAS):
        raise InputError(f"num_cameras must be 2..{len(RIG_CAMERAS)}, got {num_cameras}")
    root = Path(out_root)
    W, H = exo_size
    K = np.array([[exo_focal, 0, (W - 1) / 2], [0, exo_focal, (H - 1) / 2], [0, 0, 1.0]])
    cams = [c for c, _, _ in RIG_CAMERAS[:num_cameras]]
    T = {c: _look_at(np.array(eye, float), np.array(tgt, float)) for c, eye, tgt in RIG_CAMERAS[:num_cameras]}
    vdir = root / "takes" / take / Path(EXO_VIDEO_SUBDIR)
    vdir.mkdir(parents=True, exist_ok=True)
    gt_dir = root / "gt" / take  # per take: several takes can share one root
    for sub in ("exo_depth", "exo_depth_video", "exo_image", "exo_seen_by_other", "ego_fisheye"):
        (gt_dir / sub).mkdir(parents=True, exist_ok=True)
    if kb is not None and (len(kb) != 4 or not np.all(np.isfinite(kb))):
        raise InputError(f"kb must be 4 finite Kannala-Brandt coefficients k0..k3, got {kb}")

    u, v = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    rays_c = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    rays_v = _kb_rays(K, kb, W, H) if kb is not None else rays_c  # the video's pixels
    depth: dict[str, np.ndarray] = {}
    points: dict[str, np.ndarray] = {}
    videos: dict[str, str] = {}
    for c in cams:
        t, rgb_c = cast(T[c][:3, 3], rays_c @ T[c][:3, :3].T)
        depth[c] = t.astype(np.float32)  # unit-z rays: the ray parameter is the z-depth
        cv2.imwrite(str(gt_dir / "exo_image" / f"{c}.png"),
                    cv2.cvtColor((rgb_c * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
        points[c] = T[c][:3, 3] + (rays_c * t[..., None]).reshape(-1, 3) @ T[c][:3, :3].T
        np.save(gt_dir / "exo_depth" / f"{c}.npy", depth[c])
        tv, rgb = cast(T[c][:3, 3], rays_v @ T[c][:3, :3].T)
        np.save(gt_dir / "exo_depth_video" / f"{c}.npy", tv.astype(np.float32))
        img = (rgb * 255).round().astype(np.uint8)
        videos[c] = str(vdir / f"{c}.mp4")
        with VideoWriter(videos[c], fps=30.0) as w:
            for _ in range(num_frames):
                w.add(img)
    for c in cams:
        seen = np.zeros(H * W, bool)
        for o in cams:
            if o != c:
                seen |= _project_seen(points[c], T[o], K, depth[o])
        cv2.imwrite(str(gt_dir / "exo_seen_by_other" / f"{c}.png"), (seen.reshape(H, W) * 255).astype(np.uint8))

    ego_w2c = _ego_trajectory(num_frames)
    params_sensor = DEFAULT_ARIA_RGB_PARAMS
    ann = root / "annotations" / "ego_pose" / "test" / "camera_pose"
    ann.mkdir(parents=True, exist_ok=True)
    s = float(calib_scale)
    K_full = np.array([[K[0, 0] * s, 0, (K[0, 2] + 0.5) * s - 0.5], [0, K[1, 1] * s, (K[1, 2] + 0.5) * s - 0.5],
                       [0, 0, 1.0]])
    pose_json: dict = {"metadata": {"take_name": take, "take_uid": uid}}
    dist = [float(x) for x in kb] if kb is not None else [0.0, 0.0, 0.0, 0.0]
    for c in cams:
        pose_json[c] = {"camera_intrinsics": K_full.tolist(), "camera_extrinsics": np.linalg.inv(T[c])[:3].tolist(),
                        "distortion_coeffs": dist}
    pose_json["aria01"] = {"camera_intrinsics": [[150.0, 0, 255.5], [0, 150.0, 255.5], [0, 0, 1]],
                           "camera_extrinsics": {str(i): ego_w2c[i][:3].tolist() for i in range(num_frames)}}
    cp_path = ann / f"{uid}.json"
    cp_path.write_text(json.dumps(pose_json))
    traj = root / "takes" / take / "trajectory"
    traj.mkdir(parents=True, exist_ok=True)
    cols = ["cam_uid", "graph_uid", "tx_world_cam", "ty_world_cam", "tz_world_cam", "qx_world_cam",
            "qy_world_cam", "qz_world_cam", "qw_world_cam", "image_width", "image_height", "intrinsics_type",
            *[f"intrinsics_{k}" for k in range(8)], "start_frame_idx", "end_frame_idx"]
    rows = [",".join(cols)]
    for c in cams:
        q = Rotation.from_matrix(T[c][:3, :3]).as_quat()
        row = [c, "g0", *T[c][:3, 3], *q, int(round(W * s)), int(round(H * s)), "KANNALABRANDTK3", K_full[0, 0],
               K_full[1, 1], K_full[0, 2], K_full[1, 2], *dist, -1, -1]
        rows.append(",".join(repr(float(x)) if isinstance(x, (float, np.floating)) else str(x) for x in row))
    (traj / "gopro_calibs.csv").write_text("\n".join(rows) + "\n")
    _write_online_calibration(traj, params_sensor, num_frames)

    # ground-truth ego fisheye views (projectaria_tools' unprojection) and, per exo camera, what it sees of them
    scaled = scale_fisheye624(params_sensor, resolution / ARIA_RGB_SENSOR_PX)
    proj = calibration.CameraProjection(calibration.CameraModelType.FISHEYE624, scaled)
    R = resolution
    rows_, cols_ = np.meshgrid(np.arange(R), np.arange(R), indexing="ij")
    raw_u, raw_v = rows_.astype(float), (R - 1 - cols_).astype(float)  # upright (col', row') <- raw (row', R-1-col')
    rays = np.array([proj.unproject(np.array([a, b])) for a, b in zip(raw_u.ravel(), raw_v.ravel(), strict=True)])
    rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    for c in cams:
        (gt_dir / "ego_fisheye_visible" / c).mkdir(parents=True, exist_ok=True)
    ego_video = str(vdir / "aria01_214-1.mp4")
    with VideoWriter(ego_video, fps=30.0) as ego_w:
        for i in range(num_frames):
            c2w = np.linalg.inv(ego_w2c[i])
            tt, col = cast(c2w[:3, 3], rays @ c2w[:3, :3].T)
            ok = np.isfinite(tt) & (rays[:, 2] > 0)
            X = c2w[:3, 3] + tt[:, None] * (rays @ c2w[:3, :3].T)
            gt_img = (np.where(ok[:, None], col, 0).reshape(R, R, 3) * 255).round().astype(np.uint8)
            cv2.imwrite(str(gt_dir / "ego_fisheye" / f"frame_{i:06d}.png"), cv2.cvtColor(gt_img, cv2.COLOR_RGB2BGR))
            ego_w.add(np.ascontiguousarray(np.rot90(gt_img, 1)))  # the raw sensor orientation (upright = raw cw)
            for c in cams:
                seen = ok & _project_seen(np.where(ok[:, None], X, 0.0), T[c], K, depth[c])
                cv2.imwrite(str(gt_dir / "ego_fisheye_visible" / c / f"frame_{i:06d}.png"),
                            (seen.reshape(R, R) * 255).astype(np.uint8))
    return RigTake(str(root), take, uid, cams, videos, ego_video, str(cp_path), str(traj / "gopro_calibs.csv"),
                   str(traj / "online_calibration.jsonl"), str(gt_dir), K, None if kb is None else tuple(dist), T,
                   num_frames, resolution)


def _write_online_calibration(traj, params_sensor: np.ndarray, num_frames: int) -> None:
    """``trajectory/online_calibration.jsonl``: the Aria RGB camera's Fisheye624 calibration at 30 Hz, two
    records more than the take's frames (Ego-Exo4D's layout)."""
    lines = []
    for i in range(num_frames + 2):
        lines.append(json.dumps({
            "tracking_timestamp_us": 1_000_000 + int(round(i / 30.0 * 1e6)), "utc_timestamp_ns": 0,
            "ImuCalibrations": [], "CameraCalibrations": [{
                "Label": "camera-rgb", "SerialNumber": "synth", "Calibrated": True,
                "Projection": {"Name": "FisheyeRadTanThinPrism", "Params": params_sensor.tolist()},
                "T_Device_Camera": {"Translation": [0, 0, 0], "UnitQuaternion": [1.0, [0, 0, 0]]}}]}))
    (traj / "online_calibration.jsonl").write_text("\n".join(lines) + "\n")
