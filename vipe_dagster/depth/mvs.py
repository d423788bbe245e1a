"""Multi-view stereo building blocks: source selection, sweep, geometric filter, edge-aware fill, upsampling.

Everything works on one reference frame at a time and on small numpy/torch arrays at the MVS
resolution, so the driver in :mod:`vipe_dagster.depth.run` can stream a video with a sliding window.
Conventions: OpenCV pixels and camera axes, intrinsics ``fx fy cx cy``, poses camera-to-world.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from gpu_kernels.plane_sweep import plane_sweep, refine_sweep

from .config import DepthConfig

log = logging.getLogger(__name__)


def scale_intrinsics(k: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """fx fy cx cy for an image resized by (sx, sy) (pixel-corner convention: c' = s (c + 0.5) - 0.5)."""
    k = np.asarray(k, np.float64)
    return np.array([k[0] * sx, k[1] * sy, (k[2] + 0.5) * sx - 0.5, (k[3] + 0.5) * sy - 0.5])


def mvs_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) of the sweep images: long side ``long_side`` (never upsampled), aspect kept."""
    s = min(1.0, long_side / max(width, height))
    return max(8, int(round(width * s))), max(8, int(round(height * s)))


def select_sources(ref: int, centres: np.ndarray, available: Sequence[int], focal: float, ref_depth: float,
                   config: DepthConfig) -> list[int]:
    """Pick up to ``num_sources`` frames around ``ref`` whose baseline gives enough parallax.

    Parallax of a pair is ``focal * baseline / ref_depth`` (px at MVS resolution). On each side the nearest
    frames reaching ``min_parallax_px`` are taken, alternating sides; if too few reach it, the frames with
    the largest parallax fill the remaining slots.
    """
    cands = [j for j in available if j != ref and abs(j - ref) <= config.max_frame_gap]
    if not cands:
        return []
    par = {j: focal * float(np.linalg.norm(centres[j] - centres[ref])) / ref_depth for j in cands}
    left = sorted((j for j in cands if j < ref and par[j] >= config.min_parallax_px), reverse=True)
    right = sorted(j for j in cands if j > ref and par[j] >= config.min_parallax_px)
    chosen: list[int] = []
    while len(chosen) < config.num_sources and (left or right):
        for side in (left, right):
            if side and len(chosen) < config.num_sources:
                chosen.append(side.pop(0))
    if len(chosen) < config.num_sources:
        rest = sorted((j for j in cands if j not in chosen), key=lambda j: -par[j])
        chosen += [j for j in rest if par[j] > 0.5][: config.num_sources - len(chosen)]
    return sorted(chosen)


@dataclass
class RawDepth:
    """Sweep output for one frame at MVS resolution."""

    depth: np.ndarray  # (h,w) float32, NaN invalid
    confidence: np.ndarray  # (h,w) float32 in [0,1]
    sources: list[int]


def sweep_frame(ref_img: np.ndarray, src_imgs: Sequence[np.ndarray], k_ref: np.ndarray, k_srcs: Sequence[np.ndarray],
                c2w_ref: np.ndarray, c2w_srcs: Sequence[np.ndarray], depth_range: tuple[float, float],
                config: DepthConfig, num_planes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Plane sweep of one reference frame (float images in [0,1], HxWx3) -> (depth, confidence)."""
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
    opts = dict(window=config.window, agg_window=config.agg_window, best_k=config.best_k)
    h, w = ref.shape[-2:]
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
    else:
        res = plane_sweep(ref, srcs, kr, ks, tt, depth_min=near, depth_max=far, num_planes=planes, **opts)
    return res.depth.cpu().numpy().astype(np.float32), res.confidence.cpu().numpy().astype(np.float32)


def consistency_count(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray, others: Sequence[tuple[np.ndarray,
                      np.ndarray, np.ndarray]], rel_tol: float, px_tol: float) -> np.ndarray:
    """Per pixel, how many neighbours agree with ``depth`` (forward-backward geometric check).

    ``others`` holds ``(depth_j, k_j, c2w_j)``. A pixel agrees with neighbour j when the point it sees,
    projected into j, lands on a pixel whose own depth (a) matches the projected depth within ``rel_tol``
    and (b) reprojects back within ``px_tol`` pixels of the starting pixel.
    """
    h, w = depth.shape
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    d = depth.astype(np.float64)
    ok0 = np.isfinite(d) & (d > 0)
    x = (uu - k[2]) / k[0] * d
    y = (vv - k[3]) / k[1] * d
    pts_w = np.stack([x, y, d], -1) @ c2w[:3, :3].T + c2w[:3, 3]
    count = np.zeros((h, w), np.int32)
    for dj, kj, c2wj in others:
        w2cj = np.linalg.inv(c2wj)
        pj = pts_w @ w2cj[:3, :3].T + w2cj[:3, 3]
        zj = pj[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            uj = kj[0] * pj[..., 0] / zj + kj[2]
            vj = kj[1] * pj[..., 1] / zj + kj[3]
        ui = np.rint(np.nan_to_num(uj, nan=-1)).astype(np.int64)
        vi = np.rint(np.nan_to_num(vj, nan=-1)).astype(np.int64)
        inside = ok0 & (zj > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        ui_c, vi_c = np.clip(ui, 0, w - 1), np.clip(vi, 0, h - 1)
        dj_s = dj[vi_c, ui_c].astype(np.float64)
        good = inside & np.isfinite(dj_s) & (dj_s > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(zj - dj_s) / dj_s
            # back-project j's own depth at that pixel into the reference
            xj = (ui_c - kj[2]) / kj[0] * dj_s
            yj = (vi_c - kj[3]) / kj[1] * dj_s
            pw = np.stack([xj, yj, dj_s], -1) @ c2wj[:3, :3].T + c2wj[:3, 3]
            w2c = np.linalg.inv(c2w)
            pr = pw @ w2c[:3, :3].T + w2c[:3, 3]
            ur = k[0] * pr[..., 0] / pr[..., 2] + k[2]
            vr = k[1] * pr[..., 1] / pr[..., 2] + k[3]
            err = np.hypot(ur - uu, vr - vv)
        count += (good & (rel < rel_tol) & (err < px_tol)).astype(np.int32)
    return count


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
    logd = torch.from_numpy(np.where(valid, np.log(np.where(valid, d, 1.0)), 0.0).astype(np.float32))
    val = torch.from_numpy(valid)
    g = torch.from_numpy(np.ascontiguousarray(guide, dtype=np.float32)).permute(2, 0, 1)
    inv2s2 = 1.0 / (2.0 * sigma_color * sigma_color)
    for it in range(iterations):
        if bool(val.all()):
            break
        dil = 2 ** it
        if dil >= max(h, w):
            break
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
        newly = (~val) & (den > 1e-4)
        logd = torch.where(newly, num / den.clamp_min(1e-12), logd)
        val = val | newly
    out = np.where(val.numpy(), np.exp(logd.numpy()), np.nan).astype(np.float32)
    holes = ~np.isfinite(out)
    if holes.any():
        idx = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
        out = out[idx[0], idx[1]]
    return out


def joint_bilateral_upsample(depth_lo: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray,
                             sigma_color: float) -> np.ndarray:
    """Upsample a dense depth map to the guide's resolution without blending across colour edges.

    Each high-resolution pixel averages (in log depth) the 3x3 low-resolution neighbours around its
    position, weighted by bilinear distance and by colour similarity to the high-resolution pixel.
    """
    hl, wl = depth_lo.shape
    hh, wh = guide_hi.shape[:2]
    if (hl, wl) == (hh, wh):
        return depth_lo.astype(np.float32)
    sx, sy = wl / wh, hl / hh
    xs = (np.arange(wh) + 0.5) * sx - 0.5
    ys = (np.arange(hh) + 0.5) * sy - 0.5
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    # torch, channels first: per-channel differences instead of a reduction over a length-3 last axis
    logd = torch.from_numpy(np.log(np.maximum(depth_lo.astype(np.float32), 1e-12)))
    gh = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(guide_hi, np.float32), -1, 0)))
    gl = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(guide_lo, np.float32), -1, 0)))
    num = torch.zeros(hh, wh)
    den = torch.zeros(hh, wh)
    inv2s2 = 1.0 / (2.0 * sigma_color * sigma_color)
    for oy in (-1, 0, 1, 2):
        yi = torch.from_numpy(np.clip(y0 + oy, 0, hl - 1))
        wy = torch.from_numpy((np.maximum(0.0, 1.5 - np.abs(ys - (y0 + oy))) / 1.5).astype(np.float32))
        g_rows = gl.index_select(1, yi)  # (3, hh, wl)
        d_rows = logd.index_select(0, yi)  # (hh, wl)
        for ox in (-1, 0, 1, 2):
            xi = torch.from_numpy(np.clip(x0 + ox, 0, wl - 1))
            wx = torch.from_numpy((np.maximum(0.0, 1.5 - np.abs(xs - (x0 + ox))) / 1.5).astype(np.float32))
            ws = wy[:, None] * wx[None, :]
            diff = (g_rows.index_select(2, xi) - gh).square_().sum(0)
            wgt = ws * (torch.exp(diff.mul_(-inv2s2)) + 1e-12)
            num += wgt * d_rows.index_select(1, xi)
            den += wgt
    return torch.exp(num / den.clamp_min(1e-20)).numpy().astype(np.float32)


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
