"""Dynamic-object instance masks, streamed: ``mask/<n>.zip`` (uint8 ids, 0 = background) + ``mask/<n>.txt``.

* Fixed camera (the poses do not move): a temporal background model. The per-pixel median of
  ``background_samples`` evenly spaced frames is the background; a pixel is foreground when its colour
  differs from it by more than ``max(min_threshold, threshold_k * 1.4826 * MAD)`` of the frame's
  difference image. This needs one pass to sample frames and one to classify.
* Moving camera: for frame ``t`` and its neighbours ``t +- flow_gap``, dense DIS optical flow is compared
  with the flow the camera motion induces: the full rigid flow from the depth map when ``depth/<n>.zip``
  exists, otherwise the Sampson distance of the flow match to the epipolar geometry of the two poses.
  A pixel is dynamic when the smaller of the two residuals (robust to disocclusions, which show up on
  one side only) exceeds ``max(residual_px, residual_k * 1.4826 * MAD)``. With multi-view-stereo depth, a
  region whose flow a static point at a depth of its surroundings explains is a depth error, not motion
  (:func:`_static_residual`).

Both then clean up with opening/closing, drop small components, and give connected components instance
ids that persist over frames by overlap with the previous frame's instances.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import ArtifactError
from ..io import ArtifactStore, fs
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
    motion: dict = field(default_factory=dict)  # strong_residual_fraction / _frames (moving camera only)
    instances: dict = field(default_factory=dict)  # per id: frames present, mean area, mean residual


def instances_path(store: ArtifactStore, name: str) -> str:
    """``mask/<name>_instances.json``: per-instance motion statistics next to ``mask/<name>.txt``."""
    return fs.join(store.root, "mask", f"{name}_instances.json")


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

    def clean(self, fg: np.ndarray) -> np.ndarray:
        """Opening then closing, components smaller than ``min_area_fraction`` dropped, holes filled."""
        from scipy import ndimage

        m = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, self.k_open)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, self.k_close)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= self.min_area)
        keep = np.isin(lab, big[big > 0])
        return ndimage.binary_fill_holes(keep)

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


def _frames_lo(store: ArtifactStore, name: str, size: tuple[int, int], with_full: bool = False) -> Iterator:
    """``(t, frame at size)`` or, ``with_full``, ``(t, frame at size, full-resolution frame)``."""
    for t, (_, frame) in enumerate(store.open_rgb(name)):
        lo = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        yield (t, lo, frame) if with_full else (t, lo)


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


def _pixel_rays(shape: tuple[int, int], k_a: np.ndarray, c2w_a: np.ndarray, c2w_b: np.ndarray,
                offset: tuple[int, int] = (0, 0)):
    """Pixel grid of an ``(h, w)`` crop at ``offset`` (x, y) of frame a, its normalised rays ``(xa, ya, 1)``
    and the motion a->b: ``(uu, vv, xa, ya, R, t)``."""
    h, w = shape
    vv, uu = np.mgrid[offset[1]:offset[1] + h, offset[0]:offset[0] + w].astype(np.float64)
    t_ba = np.linalg.inv(c2w_b) @ c2w_a
    return uu, vv, (uu - k_a[2]) / k_a[0], (vv - k_a[3]) / k_a[1], t_ba[:3, :3], t_ba[:3, 3]


def _residual(flow: np.ndarray, depth: np.ndarray | None, k_a: np.ndarray, k_b: np.ndarray, c2w_a: np.ndarray,
              c2w_b: np.ndarray, offset: tuple[int, int] = (0, 0),
              image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Pixel residual of the flow a->b against the camera motion (rigid flow or Sampson distance); NaN where
    the rigid flow leaves frame b. ``flow``/``depth`` may be a crop whose top-left pixel is ``offset`` (x, y)
    of an image of ``image_size`` (w, h)."""
    uu, vv, xa, ya, R, t = _pixel_rays(flow.shape[:2], k_a, c2w_a, c2w_b, offset)
    if depth is not None:
        p = np.stack([xa * depth, ya * depth, depth], -1) @ R.T + t
        z = p[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            ub = k_b[0] * p[..., 0] / z + k_b[2]
            vb = k_b[1] * p[..., 1] / z + k_b[3]
        res = np.hypot(uu + flow[..., 0] - ub, vv + flow[..., 1] - vb)
        # a point that leaves frame b has no flow measurement (DIS extrapolates there)
        wb, hb = image_size if image_size is not None else (flow.shape[1], flow.shape[0])
        inside = (ub >= 0) & (ub <= wb - 1) & (vb >= 0) & (vb <= hb - 1)
        return np.where((z > 0) & np.isfinite(res) & inside, res, np.nan)
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


def _depth_is_stereo(store: ArtifactStore, name: str) -> bool:
    """Whether ``depth/<name>.zip`` is multi-view stereo of these frames (manifest ``depth.method`` mvs or
    mvs+learned): then a disagreement between the depth and the flow that a static point explains is a depth
    error of the same parallax evidence. Depth from elsewhere (a learned model alone, ground truth) is
    independent of the flow, and such a disagreement is motion."""
    if not store.exists("manifest", name):
        return False
    method = (store.read_manifest(name).get("depth") or {}).get("method")
    return isinstance(method, str) and method.startswith("mvs")


def _triangulated_depth(flow: np.ndarray, k_a: np.ndarray, k_b: np.ndarray, c2w_a: np.ndarray, c2w_b: np.ndarray,
                        offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Depth along each ray of frame a that best explains the flow a->b for a static point (linear least
    squares of the two projection equations in b); NaN where the two cameras see the ray without parallax or
    the point would be behind camera a. ``flow`` may be a crop whose top-left pixel is ``offset`` (x, y)."""
    uu, vv, xa, ya, R, t = _pixel_rays(flow.shape[:2], k_a, c2w_a, c2w_b, offset)
    ray = np.stack([xa, ya, np.ones_like(uu)], -1) @ R.T
    xb = (uu + flow[..., 0] - k_b[2]) / k_b[0]
    yb = (vv + flow[..., 1] - k_b[3]) / k_b[1]
    a1, a2 = ray[..., 0] - xb * ray[..., 2], ray[..., 1] - yb * ray[..., 2]
    b1, b2 = t[0] - xb * t[2], t[1] - yb * t[2]
    den = a1 * a1 + a2 * a2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = -(a1 * b1 + a2 * b2) / den
    return np.where((den > 1e-12) & (d > 0), d, np.nan)


def _static_residual(comp: np.ndarray, depth: np.ndarray, flows: dict, k_lo: np.ndarray, poses: np.ndarray,
                     i: int, ring_px: int = 15) -> float:
    """Median over the component ``comp`` of the residual left by the best *static* explanation of its flow:
    per neighbour, the depth triangulated from that flow, clamped to the depth range of the surface around
    the component (a ``ring_px`` ring, 5th-95th percentile, widened by 25 %), then the smaller residual of
    the two neighbours. Static structure whose depth map is wrong (occlusion borders, grazing surfaces) is
    explained by some depth in that range; a moving object is not, and neither is one that the stereo
    explains only as a point far behind its surroundings (the dog following a retreating camera)."""
    h, w = comp.shape
    ring_k = np.ones((ring_px, ring_px), np.uint8)
    near = cv2.dilate(comp.astype(np.uint8), ring_k) > 0
    ring = near & ~comp & np.isfinite(depth) & (depth > 0)
    if ring.sum() < 8:
        return float("inf")
    lo, hi = np.percentile(depth[ring], (5, 95))
    lo, hi = lo / 1.25, hi * 1.25
    ys, xs = np.nonzero(comp)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    res = []
    for j, f in flows.items():
        crop = f[y0:y1, x0:x1]
        d = _triangulated_depth(crop, k_lo[i], k_lo[j], poses[i], poses[j], offset=(x0, y0))
        d = np.clip(np.where(np.isfinite(d), d, hi), lo, hi)
        res.append(_residual(crop, d, k_lo[i], k_lo[j], poses[i], poses[j], offset=(x0, y0), image_size=(w, h)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = np.nanmin(np.stack(res), axis=0) if len(res) > 1 else res[0]
        v = r[comp[y0:y1, x0:x1]]
        return float(np.nanmedian(v)) if np.isfinite(v).any() else float("inf")


def _grow_box(st_row: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` of a component (a ``connectedComponentsWithStats`` row) enlarged by
    ``margin`` of its size (+2 px) on every side, clipped to the image."""
    x, y, bw, bh = (int(v) for v in st_row[:4])
    mx, my = int(margin * bw) + 2, int(margin * bh) + 2
    return max(0, x - mx), max(0, y - my), min(w, x + bw + mx), min(h, y + bh + my)


def _moving_seeds(seeds: list[int], lab: np.ndarray, cstats: np.ndarray, moves, margin: float) -> list[int]:
    """The seeds that are motion: those ``moves(c)`` proves (their residual is not a depth error on static
    structure, see :func:`_static_residual`), and the others whose growth box touches a proven seed's (a
    slow part of the same object, e.g. a body whose legs move)."""
    h, w = lab.shape
    proven = [c for c in seeds if moves(c)]
    boxes = {c: _grow_box(cstats[c], margin, w, h) for c in seeds}

    def touches(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    return [c for c in seeds if c in proven or any(touches(boxes[c], boxes[p]) for p in proven)]


def _background_depth(depth: np.ndarray, box: tuple[int, int, int, int], blur: float) -> np.ndarray:
    """The depth inside the box ``(x0, y0, x1, y1)`` that the static scene around it would have: the nearest
    pixel just outside the box, Gaussian-blurred. Returns the box-sized crop."""
    from scipy import ndimage

    x0, y0, x1, y1 = box
    h, w = depth.shape
    pad = 2
    X0, Y0, X1, Y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop = depth[Y0:Y1, X0:X1].astype(np.float64)
    hole = np.zeros(crop.shape, bool)
    hole[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = True
    src = np.where(hole | ~np.isfinite(crop), np.nan, crop)
    if not np.isfinite(src).any():
        return depth[y0:y1, x0:x1].astype(np.float64)
    idx = ndimage.distance_transform_edt(~np.isfinite(src), return_distances=False, return_indices=True)
    smooth = cv2.GaussianBlur(src[idx[0], idx[1]], (0, 0), blur)
    return smooth[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]


def _grabcut(img: np.ndarray, comp: np.ndarray, box: tuple[int, int, int, int], iterations: int,
             max_side: int = 96) -> np.ndarray:
    """Complete a partial object mask by colour (OpenCV GrabCut inside ``box``, at most ``max_side`` px): the
    component is probable foreground (its eroded core certain foreground), the rest of the box probable
    background, the box's border certain background. Returns the completed mask (full image, bool)."""
    x0, y0, x1, y1 = box
    out = comp.copy()
    if x1 - x0 < 8 or y1 - y0 < 8:
        return out
    roi = np.ascontiguousarray(img[y0:y1, x0:x1, ::-1])
    c = comp[y0:y1, x0:x1].astype(np.uint8)
    s = min(1.0, max_side / max(x1 - x0, y1 - y0))
    if s < 1.0:
        sz = (max(8, int(round((x1 - x0) * s))), max(8, int(round((y1 - y0) * s))))
        roi = cv2.resize(roi, sz, interpolation=cv2.INTER_AREA)
        c = cv2.resize(c, sz, interpolation=cv2.INTER_NEAREST)
    gm = np.full(c.shape, cv2.GC_PR_BGD, np.uint8)
    gm[cv2.dilate(c, np.ones((5, 5), np.uint8)) > 0] = cv2.GC_PR_FGD
    gm[cv2.erode(c, np.ones((3, 3), np.uint8)) > 0] = cv2.GC_FGD
    gm[0, :] = gm[-1, :] = gm[:, 0] = gm[:, -1] = cv2.GC_BGD
    if not (gm == cv2.GC_FGD).any():
        return out
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    try:
        cv2.setRNGSeed(0)
        cv2.grabCut(roi, gm, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (e.g. a flat box)
        return out
    fg = ((gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)).astype(np.uint8)
    if s < 1.0:
        fg = cv2.resize(fg, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] |= fg > 0
    return out


class _InstanceStats:
    """Per instance id: frames present, mean area (share of the image) and mean motion residual (px)."""

    def __init__(self) -> None:
        self.d: dict[int, dict] = {}

    def add(self, t: int, ids: np.ndarray, residual: np.ndarray | None) -> None:
        for i in np.unique(ids):
            if i == 0:
                continue
            m = ids == i
            e = self.d.setdefault(int(i), {"frames": 0, "first_frame": t, "last_frame": t, "area_sum": 0.0,
                                           "residual_sum": 0.0, "residual_frames": 0})
            e["frames"] += 1
            e["last_frame"] = t
            e["area_sum"] += float(m.mean())
            if residual is not None and np.isfinite(residual[m]).any():
                e["residual_sum"] += float(np.nanmean(residual[m]))
                e["residual_frames"] += 1

    def table(self) -> dict[str, dict]:
        out = {}
        for i, e in sorted(self.d.items()):
            out[str(i)] = {"frames_present": e["frames"], "first_frame": e["first_frame"],
                           "last_frame": e["last_frame"], "mean_area_fraction": round(e["area_sum"] / e["frames"], 6),
                           "mean_residual_px": (round(e["residual_sum"] / e["residual_frames"], 4)
                                                if e["residual_frames"] else None)}
        return out


def strong_motion_share(residual: np.ndarray, cfg: MaskConfig) -> float:
    """Share of the image covered by the largest coherent region of strong motion residual (above twice the
    frame's robust threshold): scattered noise on static structure stays small, a moving object does not."""
    thr = 2.0 * _robust_threshold(residual, cfg.residual_k, cfg.residual_px)
    strong = (np.nan_to_num(residual, nan=0.0) > thr).astype(np.uint8)
    strong = cv2.morphologyEx(strong, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    n, _, st, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    return float(st[1:, cv2.CC_STAT_AREA].max() / strong.size) if n > 1 else 0.0


def _motion_masks(store: ArtifactStore, name: str, n: int, size: tuple[int, int], full: tuple[int, int],
                  poses: np.ndarray, k_lo: np.ndarray, use_depth: bool, cfg: MaskConfig, writer,
                  stats: _InstanceStats, refiller: _DepthRefiller | None, pose_ok: np.ndarray,
                  stereo: bool = False) -> tuple[int, float, dict]:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gap = cfg.flow_gap
    gray: dict[int, np.ndarray] = {}
    color: dict[int, np.ndarray] = {}
    depth: dict[int, np.ndarray] = {}
    depth_iter = store.iter_depth(name) if use_depth else None
    tracker = _InstanceTracker(cfg, (size[1], size[0]))
    min_area = tracker.min_area
    fg_total = 0.0
    next_out = 0
    strong: list[float] = []  # per frame: share of pixels whose residual exceeds the floor threshold

    carry: dict = {"mask": None, "age": None, "support": None}  # previous output mask; per pixel, frames since it last moved

    def emit(i: int) -> None:
        nonlocal fg_total
        # frames without a measured pose (pose/<n>.npz valid False) get no motion evidence: an empty mask
        flows = {j: dis.calc(gray[i], gray[j], None) for j in (i - gap, i + gap)
                 if j in gray and pose_ok[i] and pose_ok[j]}
        res = [_residual(f, depth.get(i), k_lo[i], k_lo[j], poses[i], poses[j]) for j, f in flows.items()]
        if not res:
            fg = np.zeros((size[1], size[0]), bool)
            r = None
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: left both neighbours
                r = np.nanmin(np.stack(res), axis=0) if len(res) > 1 else res[0]
            rr = np.nan_to_num(r, nan=0.0)
            thr = _robust_threshold(r, cfg.residual_k, cfg.residual_px)
            fg = tracker.clean(rr > thr)
            if cfg.seed_residual_px > 0 and fg.any():
                # a moving object moves clearly somewhere: components whose mean residual stays near the
                # noise floor are depth/flow errors on static structure (thin edges, occlusion borders)
                ncomp, lab, cstats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
                means = np.bincount(lab.ravel(), rr.ravel(), ncomp) / np.maximum(np.bincount(lab.ravel(), None,
                                                                                               ncomp), 1)
                seeds = [c for c in np.flatnonzero(means >= cfg.seed_residual_px) if c > 0]
                if stereo and cfg.static_residual_px > 0 and i in depth and seeds:
                    seeds = _moving_seeds(seeds, lab, cstats, lambda c: _static_residual(
                        lab == c, depth[i], flows, k_lo, poses, i) >= cfg.static_residual_px, cfg.grow_margin)
                fg = np.isin(lab, seeds) & (lab > 0)
            strong.append(strong_motion_share(r, cfg))
            if fg.any() and (cfg.grow_margin > 0 or cfg.grabcut_iterations > 0):
                fg, r = _grow(i, fg, r, thr, flows)
            fg = _carry(i, fg)
        ids = tracker(fg)
        stats.add(i, ids, r)
        fg_total += float((ids > 0).mean())
        ids_full = cv2.resize(ids, full, interpolation=cv2.INTER_NEAREST)
        writer.add(ids_full)
        if refiller is not None:
            refiller.add(ids_full, color_full.pop(i))

    def _carry(i: int, fg: np.ndarray) -> np.ndarray:
        """Objects that stop moving stay objects for ``hold_frames``: components of the previous mask that no
        moving region of this frame overlaps are warped into it by the optical flow and kept until they have
        gone ``hold_frames`` frames without motion, if they had been seen moving in at least
        ``hold_min_frames`` frames (a one-frame false detection is not held)."""
        h, w = fg.shape
        held = np.zeros_like(fg)
        age = np.zeros(fg.shape, np.float32)
        support = fg.astype(np.float32)
        if cfg.hold_frames > 0 and carry["mask"] is not None and (i - 1) in gray and carry["mask"].any():
            flow = dis.calc(gray[i], gray[i - 1], None)
            mx = (np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]).astype(np.float32)
            my = (np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]).astype(np.float32)
            prev = cv2.remap(carry["mask"].astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderValue=0) > 0
            prev_age = cv2.remap(carry["age"], mx, my, cv2.INTER_NEAREST, borderValue=1e6) + 1.0
            prev_sup = cv2.remap(carry["support"], mx, my, cv2.INTER_NEAREST, borderValue=0)
            ncomp, lab = cv2.connectedComponents(prev.astype(np.uint8), connectivity=8)[:2]
            comp_sup = np.zeros(ncomp)
            np.maximum.at(comp_sup, lab.ravel(), prev_sup.ravel())
            hit = np.unique(lab[fg & prev])
            held = (prev & ~np.isin(lab, hit[hit > 0]) & (prev_age <= cfg.hold_frames)
                    & (comp_sup[lab] >= cfg.hold_min_frames))
            age = np.where(held, prev_age, 0.0).astype(np.float32)
            support = np.where(fg, np.where(prev, prev_sup + 1.0, 1.0), np.where(held, prev_sup, 0.0))
        carry["mask"], carry["age"], carry["support"] = fg | held, age, support.astype(np.float32)
        return fg | held

    def _grow(i: int, fg: np.ndarray, r: np.ndarray, thr: float, flows: dict) -> tuple[np.ndarray, np.ndarray]:
        """Each seed component: (1) where the depth itself was fooled by the motion (an object moving along
        the epipolar lines looks static at a wrong depth, behind the surface around it), the residual against
        the depth the surrounding static scene would have inside the component's box adds pixels; (2) GrabCut
        completes the object by colour inside the box, within the convex hull of the motion evidence."""
        h, w = fg.shape
        ncomp, lab, st, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        out = fg.copy()
        r_out = r.copy()
        for c in range(1, ncomp):
            if st[c][4] < min_area:
                continue
            bw, bh = int(st[c][2]), int(st[c][3])
            box = _grow_box(st[c], cfg.grow_margin, w, h)
            comp = lab == c
            x0, y0, x1, y1 = box
            d_bg = _background_depth(depth[i], box, blur=max(2.0, 0.1 * max(bw, bh))) if i in depth else None
            # the depth was fooled by the motion when the moving region lies *behind* the surface around it
            # (an object moving along the epipolar lines looks static and far); a real occluder is in front
            fooled = d_bg is not None and bool(np.nanmedian(depth[i][comp]) > cfg.fooled_ratio
                                               * np.nanmedian(d_bg[comp[y0:y1, x0:x1]]))
            if fooled and cfg.grow_margin > 0:
                rb = [_residual(f[y0:y1, x0:x1], d_bg, k_lo[i], k_lo[j], poses[i], poses[j], offset=(x0, y0),
                                image_size=(w, h)) for j, f in flows.items()]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r_bg = np.nanmin(np.stack(rb), axis=0) if len(rb) > 1 else rb[0]
                sub = np.zeros_like(comp)
                sub[y0:y1, x0:x1] = np.nan_to_num(r_bg, nan=0.0) > thr
                # only the part connected to the seed: a box can also hold unrelated static structure
                grown = tracker.clean(sub | comp)
                nl, gl = cv2.connectedComponents(grown.astype(np.uint8), connectivity=8)[:2]
                keep_ids = np.unique(gl[comp & grown])
                comp = comp | np.isin(gl, keep_ids[keep_ids > 0])
                r_out[y0:y1, x0:x1] = np.fmax(r_out[y0:y1, x0:x1], r_bg)
            if cfg.grabcut_iterations > 0:
                # colour completion stays inside the convex hull of the motion evidence: it fills an object's
                # flat interior, it must not leak into similar-looking background
                pts = cv2.findNonZero(comp.astype(np.uint8))
                hull = np.zeros(comp.shape, np.uint8)
                cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
                comp = comp | (_grabcut(color[i], comp, box, cfg.grabcut_iterations) & (hull > 0))
            out |= comp
        return out, r_out

    color_full: dict[int, np.ndarray] = {}  # full-resolution frames awaiting the depth refill
    for t, frame, frame_full in _frames_lo(store, name, size, with_full=True):
        gray[t] = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        color[t] = frame
        if refiller is not None:
            color_full[t] = frame_full
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
            del gray[j], color[j]
            depth.pop(j, None)
    motion = {"strong_motion_share": float(np.mean(strong)) if strong else 0.0,
              "strong_motion_frames": int(np.sum(np.asarray(strong) >= cfg.strong_motion_fraction)),
              "frames": len(strong)}
    return tracker.next_id - 1, fg_total / max(n, 1), motion


class _DepthRefiller:
    """Streams ``depth/<n>.zip`` (and its confidence sidecar) into new files while the masks are written: the
    depth of moving objects (id > 0, dilated) is replaced by the edge-aware fill of the static depth around
    them and marked not measured; multi-view stereo on a moving object measures a static point that does not
    exist. The new depth is committed before the masks, so the masks record the depth they belong to."""

    def __init__(self, store: ArtifactStore, name: str, dilate_px: int = 5) -> None:
        self.store, self.name = store, name
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        self.frames = self.pixels = self.total = 0

    def __enter__(self) -> _DepthRefiller:
        from contextlib import ExitStack

        import torch

        from ..depth.quality import conf_writer, depth_conf_path
        from ..io.artifacts import FrameZipReader, _decode_mask_png

        self._stack = ExitStack()
        # small tensors: torch's intra-op threads only wait for each other (badly so on a loaded machine)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        self._stack.callback(torch.set_num_threads, prev)
        self._depth_in = self.store.iter_depth(self.name)
        has_conf = fs.exists(depth_conf_path(self.store, self.name))
        self._conf_in = (FrameZipReader(depth_conf_path(self.store, self.name), "png", _decode_mask_png).iter()
                         if has_conf else None)
        # exit order: the confidence sidecar, then the depth (recorded), then the caller's mask writer
        self._depth_out = self._stack.enter_context(self.store.depth_writer(self.name))
        self._conf_out = self._stack.enter_context(conf_writer(self.store, self.name)) if has_conf else None
        return self

    def add(self, ids: np.ndarray, rgb: np.ndarray) -> None:
        from ..depth.mvs import edge_aware_fill

        _, d = next(self._depth_in)
        c = next(self._conf_in)[1] if self._conf_in is not None else None
        self.total += d.size
        dyn = cv2.dilate((ids > 0).astype(np.uint8), self.kernel) > 0 if ids.any() else None
        if dyn is not None and not dyn.all():
            ys, xs = np.nonzero(dyn)
            h, w = d.shape
            py, px = max(8, int(np.ptp(ys)) // 4), max(8, int(np.ptp(xs)) // 4)
            y0, y1 = max(0, ys.min() - py), min(h, ys.max() + py + 1)
            x0, x1 = max(0, xs.min() - px), min(w, xs.max() + px + 1)
            crop = np.where(dyn[y0:y1, x0:x1], np.nan, d[y0:y1, x0:x1]).astype(np.float32)
            if np.isfinite(crop).any():
                d = d.copy()
                # the object's own colours say nothing about the surface behind it: inside the mask the guide
                # is uniform, so the fill is a smooth continuation of the static depth around the object
                # (dog-example: 1.4-2.3 % median from the lawn plane fitted around the dog, against 2.4-3.4 %
                # with the fur's colours as the guide, which speckles the fill)
                guide = rgb[y0:y1, x0:x1].astype(np.float32) / 255.0
                guide[dyn[y0:y1, x0:x1]] = 0.5
                d[y0:y1, x0:x1] = edge_aware_fill(crop, guide, 0.08, 8)
                self.frames += 1
                self.pixels += int(dyn.sum())
                if c is not None:
                    c = np.where(dyn, 0, c).astype(np.uint8)
        self._depth_out.add(d)
        if self._conf_out is not None:
            self._conf_out.add(c)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def summary(self) -> dict:
        return {"frames": self.frames, "pixel_fraction": self.pixels / max(self.total, 1)}


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
    stats = _InstanceStats()
    motion: dict = {}
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
            stereo = use_depth and _depth_is_stereo(store, name)
            with _DepthRefiller(store, name) if use_depth and cfg.refill_depth else nullcontext() as refiller:
                pose_ok = store.read_pose_valid(name)
                n_inst, fg, motion = _motion_masks(store, name, n, size, full, poses.astype(np.float64), k_lo,
                                                   use_depth, cfg, writer, stats, refiller, pose_ok, stereo)
                motion["static_explanation_test"] = bool(stereo and cfg.static_residual_px > 0)
                motion["frames_without_pose"] = int((~pose_ok).sum())
            if refiller is not None:
                motion["depth_refilled"] = refiller.summary()
            method = "motion_residual+" + ("depth" if use_depth else "epipolar")
            phrase = "dynamic object"
    phrases = {i: phrase for i in range(1, n_inst + 1)}
    store.write_phrases(name, phrases)
    table = stats.table()
    for k, v in table.items():
        v["phrase"] = phrases.get(int(k), phrase)
    fs.write_text(instances_path(store, name), json.dumps(
        {"sequence": name, "method": method, "frames": n, "motion": motion, "instances": table}, indent=1))
    seconds = time.perf_counter() - t0
    log.info("masks %s: %s, %d instances, foreground %.1f%%, %.1f s", name, method, n_inst, 100 * fg, seconds)
    return MaskResult(name=name, uri=store.path("mask", name), num_frames=n, method=method, num_instances=n_inst,
                      foreground_fraction=fg, seconds=seconds, phrases={0: "background", **phrases}, motion=motion,
                      instances=table)
