"""Dynamic-object instance masks, streamed: ``mask/<n>.zip`` (uint8 ids, 0 = background) + ``mask/<n>.txt``.

* Fixed camera (the poses do not move): a temporal background model. The per-pixel median of
  ``background_samples`` evenly spaced frames is the background; a pixel is foreground when its colour
  differs from it by more than ``max(min_threshold, threshold_k * 1.4826 * MAD)`` of the frame's
  difference image. This needs one pass to sample frames and one to classify.
* Moving camera: for frame ``t`` and its neighbours ``t +- flow_gap``, dense DIS optical flow is compared
  with the flow the camera motion induces: the full rigid flow from the depth map when ``depth/<n>.zip``
  exists, otherwise the Sampson distance of the flow match to the epipolar geometry of the two poses.
  A pixel is dynamic when the smaller of the two residuals (robust to disocclusions, which show up on
  one side only) exceeds ``max(residual_px, residual_k * 1.4826 * MAD)``.

Both then clean up with opening/closing, drop small components, and give connected components instance
ids that persist over frames by overlap with the previous frame's instances.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import ArtifactError
from ..io import ArtifactStore
from .config import MaskConfig

log = logging.getLogger(__name__)


@dataclass
class MaskResult:
    name: str
    uri: str
    num_frames: int
    method: str  # "background_model" or "motion_residual" (+ "+depth" / "+epipolar")
    num_instances: int
    foreground_fraction: float
    seconds: float
    phrases: dict[int, str]


def is_fixed_camera(poses: np.ndarray, config: MaskConfig) -> bool:
    """True when every pose equals the first within the configured rotation and translation spreads."""
    if len(poses) < 2:
        return True
    c = poses[:, :3, 3]
    if float(np.linalg.norm(c - c[0], axis=1).max()) > config.static_translation:
        return False
    rel = np.einsum("ji,njk->nik", poses[0, :3, :3], poses[:, :3, :3])
    ang = np.degrees(np.linalg.norm(Rotation.from_matrix(rel).as_rotvec(), axis=1))
    return float(ang.max()) <= config.static_rotation_deg


def _size(width: int, height: int, long_side: int) -> tuple[int, int]:
    s = min(1.0, long_side / max(width, height))
    return max(8, int(round(width * s))), max(8, int(round(height * s)))


def _robust_threshold(values: np.ndarray, k: float, floor: float) -> float:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return floor
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med)))
    return max(floor, med + k * 1.4826 * mad)


class _InstanceTracker:
    """Connected components -> ids that persist across frames by overlap."""

    def __init__(self, config: MaskConfig, shape: tuple[int, int]) -> None:
        self.cfg = config
        self.prev: np.ndarray | None = None
        self.next_id = 1
        self.min_area = max(1, int(config.min_area_fraction * shape[0] * shape[1]))
        self.k_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (config.open_px, config.open_px))
        self.k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (config.close_px, config.close_px))

    def __call__(self, fg: np.ndarray) -> np.ndarray:
        m = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, self.k_open)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, self.k_close)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        out = np.zeros(fg.shape, np.uint8)
        used: set[int] = set()
        comps = sorted(range(1, n), key=lambda c: -stats[c, cv2.CC_STAT_AREA])
        for comp in comps:
            if stats[comp, cv2.CC_STAT_AREA] < self.min_area:
                continue
            region = lab == comp
            new_id = 0
            if self.prev is not None:
                ids, counts = np.unique(self.prev[region], return_counts=True)
                best, best_iou = 0, 0.0
                for pid, cnt in zip(ids, counts, strict=True):
                    if pid == 0 or int(pid) in used:
                        continue
                    iou = cnt / float(region.sum() + (self.prev == pid).sum() - cnt)
                    if iou > best_iou:
                        best, best_iou = int(pid), iou
                if best and best_iou >= self.cfg.match_iou:
                    new_id = best
            if not new_id:
                if self.next_id > 255:
                    log.warning("mask: more than 255 instances; further objects share id 255")
                    new_id = 255
                else:
                    new_id = self.next_id
                    self.next_id += 1
            used.add(new_id)
            out[region] = new_id
        self.prev = out
        return out


def _frames_lo(store: ArtifactStore, name: str, size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    for t, (_, frame) in enumerate(store.open_rgb(name)):
        yield t, cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _background_masks(store: ArtifactStore, name: str, n: int, size: tuple[int, int], full: tuple[int, int],
                      cfg: MaskConfig, writer) -> tuple[int, float]:
    picks = set(np.unique(np.linspace(0, n - 1, min(n, cfg.background_samples)).round().astype(int)).tolist())
    samples = np.stack([f for t, f in _frames_lo(store, name, size) if t in picks]).astype(np.float32) / 255.0
    bg = np.median(samples, axis=0)
    # second round: the median of each pixel over the samples where it looked like background, which
    # removes most of the bias of objects that stay long in one place
    blurred_bg = cv2.GaussianBlur(bg, (3, 3), 0)
    dil = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.close_px, cfg.close_px))
    for k in range(len(samples)):
        diff = np.abs(cv2.GaussianBlur(samples[k], (3, 3), 0) - blurred_bg).max(axis=2)
        fg = cv2.dilate((diff > _robust_threshold(diff, cfg.threshold_k, cfg.min_threshold)).astype(np.uint8), dil)
        samples[k][fg > 0] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bg2 = np.nanmedian(samples, axis=0)
    bg = np.where(np.isfinite(bg2), bg2, bg).astype(np.float32)
    del samples
    bg = cv2.GaussianBlur(bg, (3, 3), 0)
    tracker = _InstanceTracker(cfg, (size[1], size[0]))
    fg_total = 0.0
    for _, frame in _frames_lo(store, name, size):
        img = cv2.GaussianBlur(frame.astype(np.float32) / 255.0, (3, 3), 0)
        diff = np.abs(img - bg).max(axis=2)
        thr = _robust_threshold(diff, cfg.threshold_k, cfg.min_threshold)
        ids = tracker(diff > thr)
        fg_total += float((ids > 0).mean())
        writer.add(cv2.resize(ids, full, interpolation=cv2.INTER_NEAREST))
    return tracker.next_id - 1, fg_total / max(n, 1)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _residual(flow: np.ndarray, depth: np.ndarray | None, k_a: np.ndarray, k_b: np.ndarray, c2w_a: np.ndarray,
              c2w_b: np.ndarray) -> np.ndarray:
    """Pixel residual of the flow a->b against the camera motion (rigid flow or Sampson distance)."""
    h, w = flow.shape[:2]
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    t_ba = np.linalg.inv(c2w_b) @ c2w_a
    R, t = t_ba[:3, :3], t_ba[:3, 3]
    xa = (uu - k_a[2]) / k_a[0]
    ya = (vv - k_a[3]) / k_a[1]
    if depth is not None:
        p = np.stack([xa * depth, ya * depth, depth], -1) @ R.T + t
        z = p[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            ub = k_b[0] * p[..., 0] / z + k_b[2]
            vb = k_b[1] * p[..., 1] / z + k_b[3]
        res = np.hypot(uu + flow[..., 0] - ub, vv + flow[..., 1] - vb)
        return np.where((z > 0) & np.isfinite(res), res, np.nan)
    # Sampson distance in pixels of b: F = K_b^-T [t]x R K_a^-1
    ka = np.array([[k_a[0], 0, k_a[2]], [0, k_a[1], k_a[3]], [0, 0, 1]])
    kb = np.array([[k_b[0], 0, k_b[2]], [0, k_b[1], k_b[3]], [0, 0, 1]])
    if np.linalg.norm(t) < 1e-12:  # pure rotation: the homography K_b R K_a^-1 predicts the flow exactly
        hmat = kb @ R @ np.linalg.inv(ka)
        q = np.stack([uu, vv, np.ones_like(uu)], -1) @ hmat.T
        return np.hypot(uu + flow[..., 0] - q[..., 0] / q[..., 2], vv + flow[..., 1] - q[..., 1] / q[..., 2])
    fm = np.linalg.inv(kb).T @ _skew(t) @ R @ np.linalg.inv(ka)
    x1 = np.stack([uu, vv, np.ones_like(uu)], -1)
    x2 = np.stack([uu + flow[..., 0], vv + flow[..., 1], np.ones_like(uu)], -1)
    fx1 = x1 @ fm.T
    ftx2 = x2 @ fm
    num = np.einsum("hwi,hwi->hw", x2, fx1) ** 2
    den = fx1[..., 0] ** 2 + fx1[..., 1] ** 2 + ftx2[..., 0] ** 2 + ftx2[..., 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def _motion_masks(store: ArtifactStore, name: str, n: int, size: tuple[int, int], full: tuple[int, int],
                  poses: np.ndarray, k_lo: np.ndarray, use_depth: bool, cfg: MaskConfig, writer) -> tuple[int, float]:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gap = cfg.flow_gap
    gray: dict[int, np.ndarray] = {}
    depth: dict[int, np.ndarray] = {}
    depth_iter = store.iter_depth(name) if use_depth else None
    tracker = _InstanceTracker(cfg, (size[1], size[0]))
    fg_total = 0.0
    next_out = 0

    def emit(i: int) -> None:
        nonlocal fg_total
        res = []
        for j in (i - gap, i + gap):
            if j not in gray:
                continue
            flow = dis.calc(gray[i], gray[j], None)
            res.append(_residual(flow, depth.get(i), k_lo[i], k_lo[j], poses[i], poses[j]))
        if not res:
            fg = np.zeros((size[1], size[0]), bool)
        else:
            r = np.nanmin(np.stack(res), axis=0) if len(res) > 1 else res[0]
            thr = _robust_threshold(r, cfg.residual_k, cfg.residual_px)
            fg = np.nan_to_num(r, nan=0.0) > thr
        ids = tracker(fg)
        fg_total += float((ids > 0).mean())
        writer.add(cv2.resize(ids, full, interpolation=cv2.INTER_NEAREST))

    for t, frame in _frames_lo(store, name, size):
        gray[t] = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if depth_iter is not None:
            try:
                _, d = next(depth_iter)
            except StopIteration as exc:
                raise ArtifactError(f"{store.path('depth', name)} ends before frame {t} of {n}") from exc
            depth[t] = cv2.resize(d, size, interpolation=cv2.INTER_NEAREST).astype(np.float64)
        while next_out < n and (next_out + gap <= t or t == n - 1):
            emit(next_out)
            next_out += 1
        for j in [j for j in gray if j < next_out - gap]:
            del gray[j]
            depth.pop(j, None)
    return tracker.next_id - 1, fg_total / max(n, 1)


def run_masks(store: ArtifactStore, name: str, config: MaskConfig | None = None) -> MaskResult:
    """Compute and write ``mask/<name>.zip`` and ``mask/<name>.txt`` (see the module docstring)."""
    cfg = config or MaskConfig()
    store.check_set(name, ("rgb", "pose", "intrinsics", "depth"))  # inputs of one run only
    t0 = time.perf_counter()
    poses, _ = store.read_pose(name)
    intr, _, _ = store.read_intrinsics(name)
    stream = store.open_rgb(name)
    n = len(stream)
    if len(poses) != n or len(intr) != n:
        raise ArtifactError(f"{store.path('rgb', name)} has {n} frames but {store.path('pose', name)} has "
                            f"{len(poses)} and {store.path('intrinsics', name)} has {len(intr)}")
    if not np.isfinite(poses).all():
        k = int(np.flatnonzero(~np.isfinite(poses).all(axis=(1, 2)))[0])
        raise ArtifactError(f"{store.path('pose', name)}: frame {k} has a non-finite pose")
    full = (stream.width, stream.height)
    size = _size(stream.width, stream.height, cfg.long_side)
    mode = cfg.mode
    if mode == "auto":
        mode = "background" if is_fixed_camera(poses.astype(np.float64), cfg) else "motion"
    with store.mask_writer(name) as writer:
        if mode == "background":
            n_inst, fg = _background_masks(store, name, n, size, full, cfg, writer)
            method, phrase = "background_model", "moving foreground"
        else:
            sx, sy = size[0] / full[0], size[1] / full[1]
            k = intr[:, :4].astype(np.float64)
            k_lo = np.stack([k[:, 0] * sx, k[:, 1] * sy, (k[:, 2] + 0.5) * sx - 0.5, (k[:, 3] + 0.5) * sy - 0.5], 1)
            use_depth = cfg.use_depth and store.exists("depth", name)
            if use_depth and store.depth_count(name) != n:
                raise ArtifactError(f"{store.path('depth', name)} has {store.depth_count(name)} frames, expected {n}")
            n_inst, fg = _motion_masks(store, name, n, size, full, poses.astype(np.float64), k_lo, use_depth,
                                       cfg, writer)
            method = "motion_residual+" + ("depth" if use_depth else "epipolar")
            phrase = "dynamic object"
    phrases = {i: phrase for i in range(1, n_inst + 1)}
    store.write_phrases(name, phrases)
    seconds = time.perf_counter() - t0
    log.info("masks %s: %s, %d instances, foreground %.1f%%, %.1f s", name, method, n_inst, 100 * fg, seconds)
    return MaskResult(name=name, uri=store.path("mask", name), num_frames=n, method=method, num_instances=n_inst,
                      foreground_fraction=fg, seconds=seconds, phrases={0: "background", **phrases})
