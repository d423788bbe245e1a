"""Multi-view stereo building blocks: source selection, sweep, geometric filter, edge-aware fill, upsampling.

Everything works on one reference frame at a time and on small numpy/torch arrays at the MVS
resolution, so the driver in :mod:`vipe_dagster.depth.run` can stream a video with a sliding window.
Conventions: OpenCV pixels and camera axes, intrinsics ``fx fy cx cy``, poses camera-to-world.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from gpu_kernels.plane_sweep import plane_sweep, refine_sweep

from .. import camera as cammod
from .config import DepthConfig

log = logging.getLogger(__name__)


def scale_intrinsics(k: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """fx fy cx cy for an image resized by (sx, sy) (pixel-corner convention: c' = s (c + 0.5) - 0.5)."""
    return cammod.scale_intrinsics(np.asarray(k, np.float64)[:4], sx, sy)


def mvs_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) of the sweep images: long side ``long_side`` (never upsampled), aspect kept."""
    s = min(1.0, long_side / max(width, height))
    return max(8, int(round(width * s))), max(8, int(round(height * s)))


def area_median_depth(depth: np.ndarray, frame: np.ndarray, uv: np.ndarray, size: tuple[int, int],
                      cells: int) -> float:
    """Median scene depth over the image area, from sparse observations (``depth``, ``frame``, pixel ``uv`` in
    an image of ``size`` = (w, h)).

    Sparse points crowd on texture, so the plain median of their depths follows the textured part of the
    scene (on an orbit around an object: the far, textured walls, 1.4-1.7x the median pixel depth). Each
    frame's image is cut into square cells, ``cells`` along its long side; each cell with observations
    contributes the median of their depths once, and the result is the median of those cell medians.
    """
    ok = np.isfinite(depth) & (depth > 0)
    if not ok.any():
        raise ValueError("no positive finite sparse depth")
    w, h = size
    side = max(w, h) / max(int(cells), 1)
    gx, gy = int(np.ceil(w / side)), int(np.ceil(h / side))
    cx = np.clip((uv[ok, 0] / side).astype(np.int64), 0, gx - 1)
    cy = np.clip((uv[ok, 1] / side).astype(np.int64), 0, gy - 1)
    key = (frame[ok].astype(np.int64) * gy + cy) * gx + cx
    order = np.argsort(key, kind="stable")
    key, z = key[order], depth[ok][order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return float(np.median([np.median(c) for c in np.split(z, starts[1:])]))


def select_sources(ref: int, centres: np.ndarray, available: Sequence[int], focal: float, ref_depth: float,
                   config: DepthConfig) -> list[int]:
    """Pick up to ``num_sources`` frames around ``ref`` with enough, and diverse, parallax.

    Parallax of a pair is ``focal * baseline / ref_depth`` (px at MVS resolution, at the median scene depth).
    Candidates with parallax in ``[min_parallax_px, max_parallax_px]`` are taken greedily, nearest in time
    first (poses drift less over short spans), at most half of them on each side of ``ref`` in a first
    pass (the two sides occlude differently), skipping a candidate whose own parallax to an already chosen
    source is below ``source_spacing * min_parallax_px`` (three sources a frame apart on one side add little
    over one).
    If too few qualify, the remaining slots take the largest-parallax frames (above 0.5 px).
    """
    cands = [j for j in available if j != ref and abs(j - ref) <= config.max_frame_gap]
    if not cands:
        return []
    c_ref = centres[ref]
    par = {j: focal * float(np.linalg.norm(centres[j] - c_ref)) / ref_depth for j in cands}
    lo, hi = config.min_parallax_px, max(config.max_parallax_px, config.min_parallax_px)
    order = sorted((j for j in cands if lo <= par[j] <= hi), key=lambda j: (abs(j - ref), j))
    chosen: list[int] = []
    per_side = (config.num_sources + 1) // 2
    for balanced in (True, False):  # first at most half on each side (occlusions differ), then any side
        for j in order:
            if len(chosen) >= config.num_sources:
                break
            if j in chosen or (balanced and sum((k < ref) == (j < ref) for k in chosen) >= per_side):
                continue
            if all(focal * float(np.linalg.norm(centres[j] - centres[k])) / ref_depth >= config.source_spacing * lo
                   for k in chosen):
                chosen.append(j)
    if len(chosen) < config.num_sources:
        rest = sorted((j for j in cands if j not in chosen and par[j] > 0.5),
                      key=lambda j: (-min(par[j], hi) + (1e-3 * par[j] if par[j] > hi else 0.0), abs(j - ref)))
        chosen += rest[: config.num_sources - len(chosen)]
    return sorted(chosen)


def plan_sweeps(centres: np.ndarray, focal: float, ref_depth: float, config: DepthConfig) -> list[int]:
    """Frames to sweep: the first, then each frame whose parallax to the last swept frame (``focal * baseline /
    ref_depth``, px at MVS resolution) reaches ``sweep_parallax_px``, at least every ``sweep_every`` frames,
    and the last. Frames between swept frames take the fused depth of the swept frames around them; on slow
    footage (a hand-held 30 Hz camera moves a fraction of a pixel of parallax per frame) consecutive frames
    hold little new geometry."""
    n = len(centres)
    if n == 0:
        return []
    out = [0]
    for i in range(1, n):
        par = focal * float(np.linalg.norm(centres[i] - centres[out[-1]])) / ref_depth
        if i - out[-1] >= config.sweep_every or par >= config.sweep_parallax_px:
            out.append(i)
    if out[-1] != n - 1:
        out.append(n - 1)
    return out


@dataclass
class RawDepth:
    """Sweep output for one frame at MVS resolution."""

    depth: np.ndarray  # (h,w) float32, NaN invalid
    confidence: np.ndarray  # (h,w) float32 in [0,1]
    sources: list[int]


@dataclass
class FilteredDepth:
    """A swept frame after the filters: ``depth`` kept by confidence + geometric check (NaN elsewhere) and
    ``raw``, the sweep depth that passes the relaxed geometric check (``plausible_factor``), used for holes."""

    depth: np.ndarray
    raw: np.ndarray
    # ``raw``'s finite pixels in its camera (``_unproject``), kept for the next frames it is fused into
    _cam_points: tuple | None = field(default=None, repr=False, compare=False)

    def camera_points(self, k: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        key = tuple(float(v) for v in np.asarray(k)[:4])
        if self._cam_points is None or self._cam_points[0] != key:
            self._cam_points = (key, _unproject(self.raw, k))
        return self._cam_points[1]


@dataclass
class FusedDepth:
    """Depth of one frame fused from the filtered depths of the swept frames around it."""

    depth: np.ndarray  # median of the kept depths warped into the frame (NaN: no view measured the pixel)
    raw: np.ndarray  # median of the raw sweep depths warped into the frame
    agreement: np.ndarray  # share of the fused views whose kept depth agrees with ``depth``


def _unproject(depth: np.ndarray, k: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The finite, positive pixels of ``depth`` in its camera: (flat pixel index, x, y, z)."""
    ws = depth.shape[1]
    d = torch.from_numpy(np.ascontiguousarray(depth, np.float32)).reshape(-1)
    src = ((d > 0) & torch.isfinite(d)).nonzero()[:, 0]  # flat indices of the finite pixels, in order
    z = d[src]
    x = ((src % ws).float() - float(k[2])) / float(k[0]) * z
    y = ((src // ws).float() - float(k[3])) / float(k[1]) * z
    return src, x, y, z


def _project(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray, k_dst: np.ndarray, c2w_dst: np.ndarray,
             shape: tuple[int, int], points: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels of ``depth`` (finite ones) moved into the destination camera: (flat pixel index, z, source mask).
    ``points``: ``_unproject(depth, k)`` when the caller has it already."""
    h, w = shape
    src, x, y, z = _unproject(depth, k) if points is None else points
    rel = (np.linalg.inv(np.asarray(c2w_dst, np.float64)) @ np.asarray(c2w, np.float64)).astype(np.float32)
    r = [[float(v) for v in row] for row in rel[:3]]  # python floats: one scalar op each, no 0-d tensors
    px = r[0][0] * x + r[0][1] * y + r[0][2] * z + r[0][3]
    py = r[1][0] * x + r[1][1] * y + r[1][2] * z + r[1][3]
    pz = r[2][0] * x + r[2][1] * y + r[2][2] * z + r[2][3]
    front = pz > 1e-6
    pzs = torch.where(front, pz, torch.ones_like(pz))
    u = torch.round(float(k_dst[0]) * px / pzs + float(k_dst[2]))
    v = torch.round(float(k_dst[1]) * py / pzs + float(k_dst[3]))
    inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    idx = (v[inside] * w + u[inside]).long()
    return idx, pz[inside], src[inside]


def _splat(idx: torch.Tensor, z: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    flat = torch.full((shape[0] * shape[1],), float("inf"))
    flat.scatter_reduce_(0, idx, z, reduce="amin")
    return torch.where(torch.isfinite(flat), flat, torch.full_like(flat, float("nan"))).reshape(shape)


def fuse_depths(views: Sequence[tuple[FilteredDepth, np.ndarray, np.ndarray, bool]], k: np.ndarray, c2w: np.ndarray,
                shape: tuple[int, int], rel_tol: float) -> FusedDepth:
    """Warp the filtered depths of ``views`` (``(filtered, k_j, c2w_j, is_this_frame)``) into a frame and take
    the per-pixel median (z-buffered splats: each view contributes its nearest surface per pixel), separately
    for the kept and the raw depths. ``agreement``: the share of the views whose kept depth lies within
    ``2 rel_tol`` of the fused depth."""
    h, w = shape
    kept, raws = [], []
    for f, kj, c2wj, own in views:
        if own:
            kept.append(torch.from_numpy(np.asarray(f.depth, np.float32)))
            raws.append(torch.from_numpy(np.asarray(f.raw, np.float32)))
            continue
        idx, z, src = _project(f.raw, kj, c2wj, k, c2w, shape, points=f.camera_points(kj))
        raws.append(_splat(idx, z, shape))
        keep_src = torch.from_numpy(np.isfinite(f.depth).reshape(-1))[src]
        kept.append(_splat(idx[keep_src], z[keep_src], shape))
    if not kept:
        nan = np.full(shape, np.nan, np.float32)
        return FusedDepth(nan, nan.copy(), np.zeros(shape, np.float32))
    kst, rst = torch.stack(kept), torch.stack(raws)
    dk = torch.nanmedian(kst, 0).values
    dr = torch.nanmedian(rst, 0).values
    agree = ((kst - dk).abs() <= 2 * rel_tol * dk).sum(0).float() / len(views)
    return FusedDepth(dk.numpy().astype(np.float32), dr.numpy().astype(np.float32), agree.numpy())


def auto_depth_range(lo: dict[int, np.ndarray], centres: np.ndarray, k_lo: np.ndarray, poses: np.ndarray,
                     config: DepthConfig) -> tuple[tuple[float, float] | None, float | None]:
    """Depth range when there is no sparse map: a wide 128-plane sweep of frame 0 (half resolution) against each
    of two loaded frames (baselines about 1/3 and 2/3 of the largest one), separately; the percentiles of the depths the two independent
    sweeps agree on (within 5 %, both confident) bound the sweep. Returns ``(range, median depth)`` or
    ``(None, None)`` when too few pixels agree."""
    import cv2

    # two frames at about 1/3 and 2/3 of the largest baseline in the window: the farthest frames can have lost
    # much of frame 0's view (forward motion), the nearest have too little parallax
    dist = {j: float(np.linalg.norm(centres[j] - centres[0])) for j in lo if j != 0}
    bmax = max(dist.values(), default=0.0)
    far: list[int] = []
    for frac in (2 / 3, 1 / 3):
        if bmax <= 0:
            break
        j = min((j for j in dist if j not in far), key=lambda j: (abs(dist[j] - frac * bmax), j), default=None)
        if j is not None and dist[j] > 0:
            far.append(j)
    base = float(np.median([dist[j] for j in far])) if far else 0.0
    if base <= 0:
        return None, None
    wide = (0.5 * base, 2000.0 * base)
    h, w = lo[0].shape[:2]
    hw_, hh_ = max(8, w // 2), max(8, h // 2)
    small = {j: cv2.resize(lo[j], (hw_, hh_), interpolation=cv2.INTER_AREA) for j in [0, *far]}
    ks = {j: scale_intrinsics(k_lo[j], hw_ / w, hh_ / h) for j in [0, *far]}
    # the wide range's near planes leave the view nearly everywhere: the visibility rule is for real ranges
    sweeps = [sweep_frame(small[0], [small[j]], ks[0], [ks[j]], poses[0], [poses[j]], wide, config, num_planes=128,
                          min_seen=0.0) for j in far]
    if len(sweeps) == 2:
        (d1, c1), (d2, c2) = sweeps
        with np.errstate(invalid="ignore", divide="ignore"):
            agree = np.isfinite(d1) & np.isfinite(d2) & (np.abs(d1 - d2) <= 0.05 * np.minimum(d1, d2))
        good = agree & (c1 > 0.5) & (c2 > 0.5)
        d = np.sqrt(np.where(good, d1 * d2, np.nan))
    else:
        d, c = sweeps[0]
        good = np.isfinite(d) & (c > 0.6)
    # depths whose parallax is below 2 px (half resolution) were not measured: the far planes of a wide sweep
    # all look alike there, and two sweeps of a flat region agree on "infinitely far"
    with np.errstate(invalid="ignore", divide="ignore"):
        good &= float(ks[0][0]) * base / d >= 2.0
    rng = depth_range_from_points(d[good], config.range_percentiles, config.range_margin)
    if rng is None:
        return None, None
    return rng, float(np.median(d[good]))


def sweep_frame(ref_img: np.ndarray, src_imgs: Sequence[np.ndarray], k_ref: np.ndarray, k_srcs: Sequence[np.ndarray],
                c2w_ref: np.ndarray, c2w_srcs: Sequence[np.ndarray], depth_range: tuple[float, float],
                config: DepthConfig, num_planes: int | None = None,
                min_seen: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Plane sweep of one reference frame (float images in [0,1], HxWx3) -> (depth, confidence).

    ``min_seen`` (default ``config.min_seen``): NaN depth where fewer than this share of the hypotheses have a
    source sample."""
    dev = torch.device(config.device)
    ref = torch.from_numpy(np.ascontiguousarray(ref_img)).to(dev).permute(2, 0, 1).float()
    srcs = torch.stack([torch.from_numpy(np.ascontiguousarray(s)).to(dev).permute(2, 0, 1).float()
                        for s in src_imgs])
    t_src_ref = np.stack([np.linalg.inv(np.asarray(c, np.float64)) @ np.asarray(c2w_ref, np.float64)
                          for c in c2w_srcs])
    kr = torch.tensor(np.asarray(k_ref), dtype=torch.float32, device=dev)
    ks = torch.tensor(np.stack(k_srcs), dtype=torch.float32, device=dev)
    tt = torch.tensor(t_src_ref, dtype=torch.float32, device=dev)
    planes = int(num_planes or config.num_planes)
    near, far = float(depth_range[0]), float(depth_range[1])
    # planes per cost-volume chunk: the result does not depend on it; on the CPU 4 planes keep a chunk's
    # window statistics (3 x sources x planes x h x w floats) near the cache, about 20 % faster than 8
    chunk = config.sweep_chunk or (4 if dev.type == "cpu" else 8)
    opts = dict(window=config.window, agg_window=config.agg_window, best_k=config.best_k,
                texture_sigma=config.texture_sigma, chunk=chunk)
    h, w = ref.shape[-2:]
    sgm = (config.sgm_p1, config.sgm_p2) if config.sgm and num_planes is None else None
    if config.coarse_to_fine and min(h, w) >= 96 and num_planes is None:
        # full sweep at half resolution, then a narrow per-pixel sweep around it at full resolution
        half = torch.tensor([0.5, 0.5, 0.5, 0.5], device=dev)
        off = torch.tensor([0.0, 0.0, -0.25, -0.25], device=dev)  # c' = (c + 0.5) / 2 - 0.5
        coarse = plane_sweep(F.avg_pool2d(ref[None], 2)[0], F.avg_pool2d(srcs, 2), kr * half + off,
                             ks * half + off, tt, depth_min=near, depth_max=far, num_planes=planes, **opts)
        up = F.interpolate(coarse.inv_depth[None, None], size=(h, w), mode="nearest")[0, 0]
        conf_up = F.interpolate(coarse.confidence[None, None], size=(h, w), mode="nearest")[0, 0]
        step = (1.0 / near - 1.0 / far) / (planes - 1)
        if not bool(torch.isfinite(up).any()):
            res = plane_sweep(ref, srcs, kr, ks, tt, depth_min=near, depth_max=far, num_planes=planes, **opts)
        else:
            res = refine_sweep(ref, srcs, kr, ks, tt, up, half_width=config.refine_steps * step,
                               num_hyp=config.refine_hypotheses, **opts)
            res.confidence = torch.minimum(res.confidence, conf_up)
            # visibility over the whole depth range is the full-range sweep's (the refinement's is local)
            res.seen = F.interpolate(coarse.seen[None, None], size=(h, w), mode="nearest")[0, 0]
    else:
        res = plane_sweep(ref, srcs, kr, ks, tt, depth_min=near, depth_max=far, num_planes=planes, sgm=sgm, **opts)
    depth = res.depth
    min_seen = config.min_seen if min_seen is None else min_seen
    if min_seen > 0 and res.seen is not None:  # winners picked among the far hypotheses only: no depth
        depth = torch.where(res.seen >= min_seen, depth, torch.full_like(depth, float("nan")))
    return depth.cpu().numpy().astype(np.float32), res.confidence.cpu().numpy().astype(np.float32)


def _world_points(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(h, w, 3)`` of a pinhole depth map and where the depth is usable (finite, > 0)."""
    h, w = depth.shape
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    d = depth.astype(np.float64)
    rays = cammod.pixel_rays("PINHOLE", k, uu.ravel(), vv.ravel(), w, h).reshape(h, w, 3)
    return (rays * d[..., None]) @ c2w[:3, :3].T + c2w[:3, 3], np.isfinite(d) & (d > 0)


def _lookup(pts_w: np.ndarray, ok: np.ndarray, dj: np.ndarray, kj: np.ndarray, c2wj: np.ndarray):
    """``pts_w`` seen by pinhole camera j (depth map ``dj``): their depth ``zj`` in j, the nearest pixel
    ``(ui, vi)`` (clipped into ``dj``), j's depth there, and where that depth is a usable observation (``ok``,
    in front of j, inside ``dj``, finite and positive)."""
    hj, wj = dj.shape
    w2cj = np.linalg.inv(c2wj)
    pj = pts_w @ w2cj[:3, :3].T + w2cj[:3, 3]
    zj = pj[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        uj = kj[0] * pj[..., 0] / zj + kj[2]
        vj = kj[1] * pj[..., 1] / zj + kj[3]
    ui = np.rint(np.nan_to_num(uj, nan=-1, posinf=-1, neginf=-1)).astype(np.int64)
    vi = np.rint(np.nan_to_num(vj, nan=-1, posinf=-1, neginf=-1)).astype(np.int64)
    inside = ok & (zj > 0) & (ui >= 0) & (ui < wj) & (vi >= 0) & (vi < hj)
    ui_c, vi_c = np.clip(ui, 0, wj - 1), np.clip(vi, 0, hj - 1)
    dj_s = dj[vi_c, ui_c].astype(np.float64)
    return zj, ui_c, vi_c, dj_s, inside & np.isfinite(dj_s) & (dj_s > 0)


def free_space_violations(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray,
                          others: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], rel_tol: float) -> np.ndarray:
    """Where a depth hypothesis contradicts what other calibrated cameras observe (bool ``(h, w)``).

    ``others`` holds ``(depth_j, k_j, c2w_j)`` (any size, NaN where j measured nothing). A pixel's point,
    projected into camera j, violates j's free space when j sees a surface more than ``rel_tol`` (relative)
    *beyond* it along j's ray: the point would hide that surface from j, so there is nothing there. A point
    behind j's observation (occluded in j) or outside j's image is not contradicted."""
    pts_w, ok0 = _world_points(depth, k, c2w)
    out = np.zeros(depth.shape, bool)
    for dj, kj, c2wj in others:
        zj, _, _, dj_s, good = _lookup(pts_w, ok0, dj, kj, c2wj)
        with np.errstate(invalid="ignore"):
            out |= good & (dj_s > zj * (1.0 + rel_tol))
    return out


def consistency_errors(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray, others: Sequence[tuple[np.ndarray,
                       np.ndarray, np.ndarray]], rel_tol: float, px_tol: float) -> np.ndarray:
    """Per neighbour and pixel, the forward-backward geometric error in units of the tolerances (inf where the
    check cannot be made): ``max(rel / rel_tol, err / px_tol)``, shape ``(len(others), h, w)``.

    ``others`` holds ``(depth_j, k_j, c2w_j)``. The point a pixel sees, projected into j, lands on a pixel whose
    own depth is compared with the projected depth (relative difference ``rel``) and back-projected into the
    reference, where it should land near the starting pixel (distance ``err``, px).
    """
    h, w = depth.shape
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    pts_w, ok0 = _world_points(depth, k, c2w)
    w2c = np.linalg.inv(c2w)
    out = np.full((len(others), h, w), np.inf)
    for n_, (dj, kj, c2wj) in enumerate(others):
        zj, ui_c, vi_c, dj_s, good = _lookup(pts_w, ok0, dj, kj, c2wj)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(zj - dj_s) / dj_s
            # back-project j's own depth at that pixel into the reference
            xj = (ui_c - kj[2]) / kj[0] * dj_s
            yj = (vi_c - kj[3]) / kj[1] * dj_s
            pw = np.stack([xj, yj, dj_s], -1) @ c2wj[:3, :3].T + c2wj[:3, 3]
            pr = pw @ w2c[:3, :3].T + w2c[:3, 3]
            ur = k[0] * pr[..., 0] / pr[..., 2] + k[2]
            vr = k[1] * pr[..., 1] / pr[..., 2] + k[3]
            err = np.hypot(ur - uu, vr - vv)
            e = np.maximum(rel / rel_tol, err / px_tol)
        out[n_] = np.where(good & np.isfinite(e), e, np.inf)
    return out


def consistency_count(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray, others: Sequence[tuple[np.ndarray,
                      np.ndarray, np.ndarray]], rel_tol: float, px_tol: float) -> np.ndarray:
    """Per pixel, how many neighbours agree with ``depth`` (forward-backward geometric check): relative depth
    difference below ``rel_tol`` and reprojection error below ``px_tol`` (see :func:`consistency_errors`)."""
    e = consistency_errors(depth, k, c2w, others, rel_tol, px_tol)
    return (e < 1.0).sum(0).astype(np.int32)


def _fill_pass_dense(logd: torch.Tensor, val: torch.Tensor, g: torch.Tensor, dil: int,
                     inv2s2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of :func:`edge_aware_fill` over every pixel: (newly filled mask, their log depth)."""
    h, w = logd.shape
    pad = dil
    lp = F.pad(logd[None, None], (pad, pad, pad, pad))[0, 0]
    vp = F.pad(val[None, None].float(), (pad, pad, pad, pad))[0, 0]
    gp = F.pad(g[None], (pad, pad, pad, pad), mode="replicate")[0]
    num = torch.zeros(h, w)
    den = torch.zeros(h, w)
    for dy in (-dil, 0, dil):
        for dx in (-dil, 0, dil):
            if dx == 0 and dy == 0:
                continue
            sl = (slice(pad + dy, pad + dy + h), slice(pad + dx, pad + dx + w))
            diff = ((gp[:, sl[0], sl[1]] - g) ** 2).sum(0)
            wgt = torch.exp(-diff * inv2s2) * vp[sl]
            num += wgt * lp[sl]
            den += wgt
    return (~val) & (den > 1e-4), num / den.clamp_min(1e-12)


def edge_aware_fill(depth: np.ndarray, guide: np.ndarray, sigma_color: float, iterations: int) -> np.ndarray:
    """Fill NaN holes of ``depth`` guided by ``guide`` (HxWx3 float in [0,1]).

    Each pass sets every hole pixel that has valid pixels on a 3x3 ring of dilation ``2^i`` to their
    joint-bilateral average of log depth (colour weight ``exp(-|I_p - I_q|^2 / (2 sigma^2))``), so depth
    spreads along similar colours and stops at colour edges. Holes still open after ``iterations`` passes
    take the depth of the nearest valid pixel. An input with no valid pixel is returned unchanged.
    """
    d = depth.astype(np.float32).copy()
    valid = np.isfinite(d) & (d > 0)
    if valid.all() or not valid.any():
        return d
    h, w = d.shape
    logd = torch.from_numpy(np.where(valid, np.log(np.where(valid, d, 1.0)), 0.0).astype(np.float32)).reshape(-1)
    val = torch.from_numpy(valid).reshape(-1)
    g = torch.from_numpy(np.ascontiguousarray(guide, dtype=np.float32)).reshape(-1, 3)  # (HW, 3)
    inv2s2 = 1.0 / (2.0 * sigma_color * sigma_color)
    g3 = g.t().reshape(3, h, w)
    g_planar = [g3[c].reshape(-1).contiguous() for c in range(3)]
    # a pass evaluates only the hole pixels while they are few (gathered neighbours; a neighbour outside the
    # image has the colour of the nearest border pixel and no depth), every pixel with shifted slices
    # otherwise (faster when a large share of the image is open); both give the same numbers
    holes = (~val).nonzero()[:, 0]
    for it in range(iterations):
        if holes.numel() == 0:
            break
        dil = 2 ** it
        if dil >= max(h, w):
            break
        if holes.numel() > 0.25 * h * w:
            newly, value = _fill_pass_dense(logd.reshape(h, w), val.reshape(h, w), g3, dil, inv2s2)
            logd = torch.where(newly.reshape(-1), value.reshape(-1), logd)
            val = val | newly.reshape(-1)
            holes = (~val).nonzero()[:, 0]
            continue
        hy, hx = holes // w, holes % w
        gh = [gc.index_select(0, holes) for gc in g_planar]
        num = torch.zeros(len(holes))
        den = torch.zeros(len(holes))
        for dy in (-dil, 0, dil):
            ny = hy + dy
            y_in = (ny >= 0) & (ny < h)
            nyc = ny.clamp(0, h - 1)
            for dx in (-dil, 0, dil):
                if dx == 0 and dy == 0:
                    continue
                nx = hx + dx
                inside = y_in & (nx >= 0) & (nx < w)
                nb = nyc * w + nx.clamp(0, w - 1)
                # 1-D gathers from planar channels: several times faster than gathering (N, 3) rows
                diff = torch.zeros(len(holes))
                for gc, ghc in zip(g_planar, gh, strict=True):
                    diff += (gc.index_select(0, nb) - ghc).square_()
                wgt = torch.exp(-diff * inv2s2) * (val.index_select(0, nb) & inside).float()
                num += wgt * torch.where(inside, logd.index_select(0, nb), torch.zeros(()))
                den += wgt
        newly = den > 1e-4
        logd[holes[newly]] = (num / den.clamp_min(1e-12))[newly]
        val[holes[newly]] = True
        holes = holes[~newly]
    logd, val = logd.reshape(h, w), val.reshape(h, w)
    out = np.where(val.numpy(), np.exp(logd.numpy()), np.nan).astype(np.float32)
    holes = ~np.isfinite(out)
    if holes.any():
        idx = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
        out = out[idx[0], idx[1]]
    return out


def _tent_neighbours(n_hi: int, n_lo: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each of ``n_hi`` pixel centres along an axis resampled to ``n_lo``: the indices of the nearest low-res
    pixel and its two neighbours (clamped to the axis) and their tent weights ``max(0, 1.5 - |d|) / 1.5``."""
    c = (np.arange(n_hi) + 0.5) * (n_lo / n_hi) - 0.5
    c0 = np.rint(c).astype(np.int64)
    idx = [np.clip(c0 + o, 0, n_lo - 1) for o in (-1, 0, 1)]
    wts = [(np.maximum(0.0, 1.5 - np.abs(c - (c0 + o))) / 1.5).astype(np.float32) for o in (-1, 0, 1)]
    return idx, wts


def joint_bilateral_upsample(depth_lo: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray,
                             sigma_color: float, edge_log_step: float = 0.05) -> np.ndarray:
    """Upsample a dense depth map to the guide's resolution without blending across colour edges.

    Near depth discontinuities (a low-resolution 3x3 neighbourhood spanning more than ``edge_log_step`` in log
    depth, dilated by one pixel) each high-resolution pixel averages, in log depth, the low-resolution
    neighbours within 1.5 pixels of its position, weighted by that distance (tent) and by colour similarity to the
    high-resolution pixel. Elsewhere the depth is smooth at the low resolution and is interpolated
    bilinearly in log depth (the joint-bilateral weights would change it by less than the step).
    """
    import cv2

    hl, wl = depth_lo.shape
    hh, wh = guide_hi.shape[:2]
    if (hl, wl) == (hh, wh):
        return depth_lo.astype(np.float32)
    logd_np = np.log(np.maximum(depth_lo.astype(np.float32), 1e-12))
    out = cv2.resize(logd_np, (wh, hh), interpolation=cv2.INTER_LINEAR)
    k3 = np.ones((3, 3), np.uint8)
    edge_lo = (cv2.dilate(logd_np, k3) - cv2.erode(logd_np, k3)) > edge_log_step
    if edge_lo.any():
        edge_lo = cv2.dilate(edge_lo.astype(np.uint8), k3)
        edge_hi = cv2.resize(edge_lo, (wh, hh), interpolation=cv2.INTER_NEAREST) > 0
        vv, uu = np.nonzero(edge_hi)
        # the tent weight (1.5 - |d|) / 1.5 is non-zero for at most three low-res neighbours per axis: the
        # nearest one and its two neighbours. Their indices and weights depend on the row (column) only.
        (ry, wy), (cx, wx) = _tent_neighbours(hh, hl), _tent_neighbours(wh, wl)
        rows, wys = [(r * wl).take(vv) for r in ry], [w.take(vv) for w in wy]
        cols, wxs = [c.take(uu) for c in cx], [w.take(uu) for w in wx]
        # planar float32 channels and flat gathers (np.take): a third of the time of 2-D fancy indexing
        g_lo = np.asarray(guide_lo, np.float32).reshape(-1, 3)
        g_lo = [np.ascontiguousarray(g_lo[:, c]) for c in range(3)]
        hi_flat = vv * wh + uu
        g_hi = np.asarray(guide_hi, np.float32).reshape(-1, 3)
        g_hi = [g_hi[:, c].take(hi_flat) for c in range(3)]
        logd = logd_np.reshape(-1)
        num = np.zeros(len(vv), np.float32)
        den = np.zeros(len(vv), np.float32)
        neg_inv2s2 = np.float32(-1.0 / (2.0 * sigma_color * sigma_color))
        for iy in range(3):
            for ix in range(3):
                flat = rows[iy] + cols[ix]
                diff = np.zeros(len(vv), np.float32)
                for c in range(3):
                    x = g_lo[c].take(flat)
                    x -= g_hi[c]
                    x *= x
                    diff += x
                wgt = (wys[iy] * wxs[ix]) * (np.exp(diff * neg_inv2s2) + np.float32(1e-12))
                num += wgt * logd.take(flat)
                den += wgt
        out[vv, uu] = num / np.maximum(den, np.float32(1e-20))
    return np.exp(out).astype(np.float32)


def depth_range_from_points(depths: np.ndarray, percentiles: tuple[float, float],
                            margin: float) -> tuple[float, float] | None:
    """Sweep range from sample depths: the percentiles, widened by ``margin``; None if too few samples."""
    d = np.asarray(depths, np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size < 20:
        return None
    lo, hi = np.percentile(d, percentiles)
    lo, hi = lo / margin, hi * margin
    if not (hi > lo > 0):
        return None
    return float(lo), float(hi)


def geometric_mid(depth_range: tuple[float, float]) -> float:
    return math.sqrt(depth_range[0] * depth_range[1])


def propagate_depth(sources: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], k_dst: np.ndarray,
                    c2w_dst: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Forward-splat dense depth maps ``(depth, k, c2w)`` of other frames into a frame (z-buffer, nearest
    surface wins). Pixels nothing lands on are NaN (fill them afterwards)."""
    h, w = shape
    w2c = np.linalg.inv(np.asarray(c2w_dst, np.float64))
    flat = np.full(h * w, np.inf)
    for depth, k, c2w in sources:
        hs, ws = depth.shape
        vv, uu = np.mgrid[0:hs, 0:ws].astype(np.float64)
        d = depth.astype(np.float64)
        ok = np.isfinite(d) & (d > 0)
        cam = np.stack([(uu - k[2]) / k[0] * d, (vv - k[3]) / k[1] * d, d], -1)[ok]
        rel = w2c @ np.asarray(c2w, np.float64)
        p = cam @ rel[:3, :3].T + rel[:3, 3]
        z = p[:, 2]
        front = z > 1e-9
        p, z = p[front], z[front]
        u = np.rint(k_dst[0] * p[:, 0] / z + k_dst[2]).astype(np.int64)
        v = np.rint(k_dst[1] * p[:, 1] / z + k_dst[3]).astype(np.int64)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        np.minimum.at(flat, v[inside] * w + u[inside], z[inside])
    out = flat.reshape(h, w)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)
