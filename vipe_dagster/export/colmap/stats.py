"""Statistics of an export: distributions, reprojection errors, track lengths, worst images."""

from __future__ import annotations

import numpy as np

from ..colmap_format import Camera
from .cameras import project


def dist(values: np.ndarray) -> dict[str, float] | None:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max()), "count": int(v.size)}


def track_stats(lengths: np.ndarray) -> dict[str, float] | None:
    if lengths.size == 0:
        return None
    return {"mean": float(lengths.mean()), "median": float(np.median(lengths)), "min": int(lengths.min()),
            "max": int(lengths.max())}


def observation_errors(cameras: dict[int, Camera], image_cam: np.ndarray, rot: np.ndarray, trans: np.ndarray,
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


def worst_images(obs_image: np.ndarray, err: np.ndarray, frame_ids: np.ndarray, k: int = 10) -> list[dict]:
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


def per_point_mean(point: np.ndarray, values: np.ndarray, num_points: int) -> np.ndarray:
    cnt = np.bincount(point, minlength=num_points)
    return np.bincount(point, weights=values, minlength=num_points) / np.maximum(cnt, 1)
