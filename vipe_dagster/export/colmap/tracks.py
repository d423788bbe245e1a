"""Sparse points with their real tracks: the SLAM map's observations restricted to the exported frames."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...io import SparseMap
from .cameras import PIXEL_SHIFT, ImageSet, distort_observations
from .stats import dist, observation_errors, per_point_mean, track_stats, worst_images

log = logging.getLogger(__package__)


@dataclass
class PointSet:
    """3D points with their observations (tracks) in the exported images."""

    xyz: np.ndarray  # (P,3) float64
    rgb: np.ndarray  # (P,3) uint8
    error: np.ndarray  # (P,) mean reprojection error (px) of each point's observations
    obs_image: np.ndarray  # (K,) int64 index into the exported images
    obs_xy: np.ndarray  # (K,2) COLMAP pixel coordinates
    obs_point: np.ndarray  # (K,) int64 index into the points

    @classmethod
    def empty(cls) -> PointSet:
        return cls(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), np.zeros(0, np.int64),
                   np.zeros((0, 2)), np.zeros(0, np.int64))


def _selected_observations(sm: SparseMap, images: ImageSet, last_frame: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Observations in the exported frames (MEI pixels mapped to the rectified pinhole).

    Returns ``(image index, point index, pixel (ours), dropped outside the selection, dropped outside the
    rectified view)``.
    """
    lut = np.full(last_frame + 1, -1, np.int64)
    lut[images.frame_ids] = np.arange(len(images.frame_ids))
    obs_img_all = lut[sm.obs_frame.astype(np.int64)]
    in_sel = obs_img_all >= 0
    obs_img = obs_img_all[in_sel]
    obs_pt = sm.obs_point[in_sel].astype(np.int64)
    obs_uv = sm.obs_uv[in_sel].astype(np.float64)
    n_outside = 0
    if images.rectifiers:
        in_view = np.ones(len(obs_uv), bool)
        for rect in images.rectifiers.values():
            sel = np.nonzero([images.image_rect[j] is rect for j in range(len(images.frame_ids))])[0]
            idx = np.nonzero(np.isin(obs_img, sel))[0]
            obs_uv[idx], in_view[idx] = rect.pixels_to_pinhole(obs_uv[idx])
        n_outside = int((~in_view).sum())
        obs_img, obs_pt, obs_uv = obs_img[in_view], obs_pt[in_view], obs_uv[in_view]
    return obs_img, obs_pt, obs_uv, int((~in_sel).sum()), n_outside


def sparse_tracks(sm: SparseMap, images: ImageSet, last_frame: int, width: int, height: int,
                  min_track_length: int, source: str, warnings: list[str]) -> tuple[PointSet, dict[str, Any]]:
    """The map's points observed in at least ``min_track_length`` exported images, and their statistics.

    Observations behind their camera are dropped (a warning says how many). ``last_frame``: the highest
    artifact frame index; ``width``/``height``: the image size the observations are checked against.
    """
    obs_img, obs_pt, obs_uv, n_unselected, n_outside = _selected_observations(sm, images, last_frame)
    obs_xy = distort_observations(images, obs_img, obs_uv + PIXEL_SHIFT)
    pts = sm.points.astype(np.float64)
    err, depth_c = observation_errors(images.cameras, images.image_cam, images.rot, images.trans, obs_img,
                                      pts[obs_pt], obs_xy)
    front = (depth_c > 1e-9) & np.isfinite(err)
    n_behind = int((~front).sum())
    if n_behind:
        w = f"{n_behind} sparse observations lie behind their camera and were dropped"
        log.warning(w)
        warnings.append(w)
    obs_img, obs_pt, obs_xy, err = obs_img[front], obs_pt[front], obs_xy[front], err[front]
    track_len = np.bincount(obs_pt, minlength=len(pts))
    keep_pt = track_len >= min_track_length
    remap = np.full(len(pts), -1, np.int64)
    remap[keep_pt] = np.arange(int(keep_pt.sum()))
    keep_obs = keep_pt[obs_pt]
    sp_err = err[keep_obs]
    xyz = pts[keep_pt]
    sp_obs_pt = remap[obs_pt[keep_obs]]
    points = PointSet(xyz, sm.colors[keep_pt].astype(np.uint8), per_point_mean(sp_obs_pt, sp_err, len(xyz)),
                      obs_img[keep_obs], obs_xy[keep_obs], sp_obs_pt)
    stats = {
        "source": source,
        "num_points": int(len(xyz)),
        "num_observations": int(len(sp_obs_pt)),
        "map_points": int(len(pts)),
        "map_observations": int(len(sm.obs_frame)),
        "dropped_observations_outside_selection": n_unselected,
        "dropped_observations_behind_camera": n_behind,
        "dropped_observations_outside_rectified_view": n_outside,
        "dropped_points_short_track": int(((track_len > 0) & ~keep_pt).sum()),
        "dropped_points_unobserved": int((track_len == 0).sum()),
        "min_track_length": min_track_length,
        "reprojection_error_px": dist(sp_err),
        "point_error_px": dist(points.error),
        "track_length": track_stats(np.bincount(sp_obs_pt, minlength=len(xyz))),
        "observations_outside_image": int(np.sum((points.obs_xy[:, 0] < 0) | (points.obs_xy[:, 0] > width) |
                                                 (points.obs_xy[:, 1] < 0) | (points.obs_xy[:, 1] > height))),
        "worst_images": worst_images(points.obs_image, sp_err, images.frame_ids),
    }
    if len(xyz) == 0:
        w = f"no sparse-map point has {min_track_length}+ observations in the exported frames"
        log.warning(w)
        warnings.append(w)
    return points, stats
