"""Dense points from reliable depth: sampling, voxel merging, and their tracks in the exported images."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...depth.reliable import reliable_depth_mask
from ..mei import MeiRectifier
from .cameras import ImageSet
from .stats import dist, observation_errors, per_point_mean, track_stats
from .tracks import PointSet

log = logging.getLogger(__package__)


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


def sample_mei(depth: np.ndarray, rect: MeiRectifier, c2w: np.ndarray, step: int):
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



def _auto_voxel_size(images: ImageSet, depth: np.ndarray, pixel_step: int) -> float:
    """The footprint of one grid step at the median depth (mean focal length of the exported images)."""
    cams = images.cameras
    focal = float(np.mean([np.mean(cams[c].params[:1 if cams[c].model == "SIMPLE_PINHOLE" else 2])
                           for c in images.image_cam]))
    return float(np.median(depth) * pixel_step / focal)


def dense_points(parts: list[dict[str, np.ndarray]], images: ImageSet, pixel_step: int, voxel_size: float | None,
                 min_track_length: int) -> tuple[PointSet, np.ndarray, np.ndarray, dict[str, Any]]:
    """Merge the depth samples ``parts`` (see :mod:`.images`) into dense points.

    Returns ``(points seen in min_track_length+ images, all merged positions, their colours, stats)``:
    each merged point keeps one observation per image it was sampled in, so its error is the measured
    multi-view consistency of the depth maps.
    """
    cat = {k: (np.concatenate([p[k] for p in parts]) if parts else np.zeros((0,))) for k in
           ("image", "xyz", "rgb", "xy", "z")}
    n_samples = len(cat["image"])
    if n_samples == 0:
        log.warning("no reliable depth pixels in the selected depth frames; no dense points")
        empty = PointSet.empty()
        return empty, empty.xyz, empty.rgb, {"num_points": 0, "num_points_ply": 0, "num_samples": 0,
                                             "voxel_size": voxel_size}
    xyz = cat["xyz"].astype(np.float64)
    auto = voxel_size is None
    if voxel_size is None:
        voxel_size = _auto_voxel_size(images, cat["z"], pixel_step)
    if voxel_size > 0:
        pos, col, inv, first = voxel_merge(xyz, cat["rgb"], cat["image"], voxel_size)
        obs_img, obs_xy, obs_pt = cat["image"][first], cat["xy"][first], inv[first].astype(np.int64)
    else:
        pos, col = xyz, cat["rgb"].astype(np.uint8)
        obs_img, obs_xy, obs_pt = cat["image"], cat["xy"], np.arange(n_samples)
    err, _ = observation_errors(images.cameras, images.image_cam, images.rot, images.trans, obs_img, pos[obs_pt],
                                obs_xy)
    track_len = np.bincount(obs_pt, minlength=len(pos))
    keep = track_len >= min_track_length
    n_keep = int(keep.sum())
    remap = np.full(len(pos), -1, np.int64)
    remap[keep] = np.arange(n_keep)
    keep_obs = keep[obs_pt]
    obs_img, obs_xy, obs_pt, err = obs_img[keep_obs], obs_xy[keep_obs], remap[obs_pt[keep_obs]], err[keep_obs]
    points = PointSet(pos[keep], col[keep], per_point_mean(obs_pt, err, n_keep), obs_img, obs_xy, obs_pt)
    stats = {"num_points": n_keep, "num_points_ply": int(len(pos)), "num_samples": n_samples,
             "num_observations": int(len(obs_pt)), "min_track_length": min_track_length,
             "voxel_size": voxel_size, "voxel_size_auto": auto,
             "reprojection_error_px": dist(err), "point_error_px": dist(points.error),
             "track_length": track_stats(np.bincount(obs_pt, minlength=n_keep))}
    return points, pos, col, stats
