"""A check of moving-object masks against the motion in the video: empty masks where a clear object moves.

For up to ``max_frames`` evenly spaced frames, dense DIS flow to the frames ``flow_gap`` before and after is
compared with the flow the camera motion induces (rigid flow from poses + depth when ``depth/<n>.zip`` exists,
else the Sampson distance to the epipolar geometry, as in :mod:`vipe_dagster.masks.run`). A frame has *strong
motion* when its largest coherent region of residual above twice the frame's robust threshold (``max(residual_px,
median + residual_k * 1.4826 MAD)``, as the mask stage uses) covers at least
``strong_motion_fraction`` of the image. The masks *miss* such a frame when they cover less than
``min_cover`` of that region. The check fails when more than ``max_missed`` of the strong-motion frames are
missed. Fixed cameras (background model) are not judged here.
"""

from __future__ import annotations

import logging
import warnings

import cv2
import numpy as np

from ..errors import ArtifactError
from ..io import ArtifactStore
from .config import MaskConfig
from .run import _residual, _robust_threshold, _size, is_fixed_camera

log = logging.getLogger(__name__)

MAX_MISSED = 0.25
MIN_COVER = 0.2


def masks_cover_motion(store: ArtifactStore, name: str, config: MaskConfig | None = None, max_frames: int = 40,
                       max_missed: float = MAX_MISSED, min_cover: float = MIN_COVER) -> dict:
    """``{"problems": [...], "strong_frames", "missed_frames", "checked_frames", "method"}`` (see the module)."""
    from ..camera_stages import depth_to_view, mask_to_view, resample_to_view, sequence_camera, tracked_view

    cfg = config or MaskConfig()
    poses, _ = store.read_pose(name)
    poses = poses.astype(np.float64)
    intr, _, _ = store.read_intrinsics(name)
    n = store.mask_count(name)
    if n != len(poses):
        raise ArtifactError(f"{store.path('mask', name)} has {n} frames but {store.path('pose', name)} has "
                            f"{len(poses)}")
    if is_fixed_camera(poses, cfg):
        return {"problems": [], "strong_frames": [], "missed_frames": [], "checked_frames": 0,
                "method": "fixed camera: not judged"}
    gap = cfg.flow_gap
    centres = [int(x) for x in np.unique(np.linspace(gap, n - 1 - gap, min(max_frames, max(n - 2 * gap, 0)))
                                         .round().astype(int))] if n > 2 * gap else []
    need = sorted({j for t in centres for j in (t - gap, t, t + gap)})
    use_depth = store.exists("depth", name) and store.depth_count(name) == n
    stream = store.open_rgb(name)
    frames = ((i, f) for i, f in stream if i in need)
    depths = store.iter_depth(name, centres) if use_depth else iter(())
    mask_it = store.iter_masks(name, centres)
    k = intr[:, :4].astype(np.float64)
    width, height = stream.width, stream.height
    if sequence_camera(store, name) != "PINHOLE":  # MEI / panorama: judged in the view the poses were tracked in
        view = tracked_view(store, name, width, height)
        frames = ((i, resample_to_view(f, view)) for i, f in frames)
        depths = ((i, depth_to_view(d, view)) for i, d in depths)
        mask_it = ((i, mask_to_view(m, view)) for i, m in mask_it)
        T = np.eye(4)
        T[:3, :3] = view["R"]
        poses = poses @ T
        k = np.tile(view["K"], (len(poses), 1))
        width, height = view["size"]
    size = _size(width, height, cfg.long_side)
    sx, sy = size[0] / width, size[1] / height
    k_lo = np.stack([k[:, 0] * sx, k[:, 1] * sy, (k[:, 2] + 0.5) * sx - 0.5, (k[:, 3] + 0.5) * sy - 0.5], 1)
    gray = {i: cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
            for i, f in frames}
    depth = {i: cv2.resize(d, size, interpolation=cv2.INTER_NEAREST).astype(np.float64) for i, d in depths}
    masks = {i: cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) > 0 for i, m in mask_it}
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    strong, missed = [], []
    for t in centres:
        res = [_residual(dis.calc(gray[t], gray[j], None), depth.get(t), k_lo[t], k_lo[j], poses[t], poses[j])
               for j in (t - gap, t + gap)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: left both neighbours
            r = np.nanmin(np.stack(res), axis=0)
        thr = 2.0 * _robust_threshold(r, cfg.residual_k, cfg.residual_px)
        # opened with a 7x7 disc: moving objects are blobs, residual on static structure comes in thin bands
        # along occlusion edges and the image border
        hot = cv2.morphologyEx((np.nan_to_num(r, nan=0.0) > thr).astype(np.uint8), cv2.MORPH_OPEN,
                               cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
        cnt, lab, st, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
        if cnt <= 1:
            continue
        big = 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
        if st[big, cv2.CC_STAT_AREA] < cfg.strong_motion_fraction * r.size:
            continue
        region = lab == big
        strong.append(t)
        if (masks[t] & region).sum() < min_cover * region.sum():
            missed.append(t)
    problems = []
    if strong and len(missed) > max_missed * len(strong):
        problems.append(f"{store.path('mask', name)}: {len(missed)} of {len(strong)} frames with a clearly moving "
                        f"region (coherent motion residual above twice the frame's threshold over >= "
                        f"{cfg.strong_motion_fraction:.0%} of the image) have masks covering < {min_cover:.0%} "
                        f"of it (first frame {missed[0]}); expected at most {max_missed:.0%}")
    return {"problems": problems, "strong_frames": strong, "missed_frames": missed, "checked_frames": len(centres),
            "method": "rigid flow (depth)" if use_depth else "epipolar"}
