"""Two-view and multi-view geometry helpers (numpy + OpenCV), float64 internally."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..camera import focal_for_fov, fov_from_focal, project_points, unproject_pixels  # noqa: F401 (fov_from_focal: re-exported)


def K_matrix(intr: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = (float(v) for v in intr[:4])
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


fov_to_focal = focal_for_fov  # the one formula, in vipe_dagster/camera


def invert(T: np.ndarray) -> np.ndarray:
    R, t = T[..., :3, :3], T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ t[..., None])[..., 0]
    out[..., 3, 3] = 1
    return out


def pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.ravel(t)
    return T


def normalise_uv(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    return np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1]], axis=1)


def distort_radial(uv: np.ndarray, intr: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Ideal pinhole pixels -> pixels of the RADIAL model (``d = 1 + k1 r^2 + k2 r^4`` on normalised
    coordinates, OpenCV's convention with p1 = p2 = 0): the camera module's Brown model."""
    fx, fy, cx, cy = (float(v) for v in intr[:4])
    uv = np.asarray(uv, np.float64)
    rays = np.stack([(uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy, np.ones(len(uv))], axis=1)
    return project_points("opencv", [fx, fy, cx, cy, float(k[0]), float(k[1])], rays)[0]


def undistort_radial(uv: np.ndarray, intr: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Inverse of :func:`distort_radial` (the camera module's Newton unprojection, to < 1e-9 px)."""
    fx, fy, cx, cy = (float(v) for v in intr[:4])
    rays, _ = unproject_pixels("opencv", [fx, fy, cx, cy, float(k[0]), float(k[1])], np.asarray(uv, np.float64))
    return np.stack([fx * rays[:, 0] + cx, fy * rays[:, 1] + cy], axis=1)


def rays(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    n = normalise_uv(uv, K)
    r = np.concatenate([n, np.ones((len(n), 1))], axis=1)
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def project(points: np.ndarray, T_w2c: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points; returns (uv (N,2), depth (N,))."""
    pc = points @ T_w2c[:3, :3].T + T_w2c[:3, 3]
    z = pc[:, 2]
    zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
    uv = np.stack([K[0, 0] * pc[:, 0] / zs + K[0, 2], K[1, 1] * pc[:, 1] / zs + K[1, 2]], axis=1)
    return uv, z


def triangulate(T1: np.ndarray, T2: np.ndarray, uv1: np.ndarray, uv2: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of matched pixels between two w2c poses; returns (N,3) world points."""
    if len(uv1) == 0:
        return np.zeros((0, 3))
    P1 = K @ T1[:3]
    P2 = K @ T2[:3]
    X = cv2.triangulatePoints(P1, P2, uv1.T.astype(np.float64), uv2.T.astype(np.float64))
    w = X[3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    return (X[:3] / w).T


def parallax_deg(points: np.ndarray, C1: np.ndarray, C2: np.ndarray) -> np.ndarray:
    a = points - C1
    b = points - C2
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def rotation_compensated_parallax(uv1: np.ndarray, uv2: np.ndarray, R21: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Angle (deg) between the rays of view 2 and the rotated rays of view 1 (R21 maps cam1 -> cam2)."""
    r1 = rays(uv1, K) @ R21.T
    r2 = rays(uv2, K)
    return np.degrees(np.arccos(np.clip(np.sum(r1 * r2, axis=1), -1.0, 1.0)))


def orthonormalise(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        R = U @ np.diag([1, 1, -1]) @ Vt
    return R


def rotation_from_homography(H: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, float]:
    """R with H ~ K R K^-1 and the orthogonality residual (0 for an exact rotation homography)."""
    M = np.linalg.inv(K) @ H @ K
    d = np.linalg.det(M)
    if abs(d) < 1e-12:
        return np.eye(3), float("inf")
    M = M / np.cbrt(d)
    R = orthonormalise(M)
    return R, float(np.linalg.norm(M - R))


def focal_from_homographies(Hs: list[np.ndarray], cx: float, cy: float, f_lo: float, f_hi: float) -> float | None:
    """Focal (px) that makes K^-1 H K closest to rotations for all homographies (1-D golden search)."""
    Hs = [H for H in Hs if H is not None]
    if not Hs:
        return None

    def cost(logf: float) -> float:
        f = math.exp(logf)
        K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        return sum(rotation_from_homography(H, K)[1] ** 2 for H in Hs)

    grid = np.linspace(math.log(f_lo), math.log(f_hi), 41)
    costs = [cost(g) for g in grid]
    i = int(np.argmin(costs))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(40):
        if cost(c) < cost(d):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return math.exp((a + b) / 2)


def rotation_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1) / 2))))


def slerp_pose_c2w(A: np.ndarray, B: np.ndarray, w: float) -> np.ndarray:
    """Interpolate two camera-to-world poses: slerp of rotation, linear camera centre."""
    from scipy.spatial.transform import Rotation, Slerp

    rots = Rotation.from_matrix(np.stack([A[:3, :3], B[:3, :3]]))
    R = Slerp([0.0, 1.0], rots)([w]).as_matrix()[0]
    out = np.eye(4)
    out[:3, :3] = R
    out[:3, 3] = (1 - w) * A[:3, 3] + w * B[:3, 3]
    return out
