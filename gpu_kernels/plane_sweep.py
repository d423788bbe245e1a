"""Plane-sweep multi-view stereo (batched torch; CPU and CUDA, device/dtype follow the inputs).

For a reference view and ``S`` source views with known pinhole intrinsics and relative poses, every
reference pixel ``x`` is tested against ``D`` inverse-depth hypotheses ``w = 1/z``. A fronto-parallel plane
``z = 1/w`` in the reference camera induces the homography ``H(w) = K_s (R + t n^T w) K_r^-1`` with
``n = (0, 0, 1)``, so the warped source pixel is ``x_s ~ A x + w b`` with ``A = K_s R K_r^-1`` and
``b = K_s t`` (``R, t`` map reference-camera points into the source camera). The same formula holds for
per-pixel hypotheses (``w`` varying over the image), which :func:`zncc_cost_volume` also accepts.

Matching cost: ``1 - ZNCC`` over a ``window x window`` patch between the reference and each warped
source (the warp uses ``grid_sample``; pixels whose warp leaves the source image are invalid for that
source). The per-source costs are combined by averaging the best ``k`` valid sources (robust to
occlusion in the others), then aggregated spatially with a box filter and, optionally, by semi-global
matching (:func:`sgm_aggregate`, Hirschmueller 2008: 1-D dynamic programming along the four image axes
with a small penalty ``P1`` for a one-plane step and a larger, image-edge-aware ``P2`` for jumps), which
carries depth into low-texture regions where the window cost alone is flat. Winner-take-all picks the best
hypothesis per pixel, and a parabola through the neighbouring costs gives sub-plane precision.

Conventions: OpenCV pixels (centre of the top-left pixel at ``(0, 0)``), intrinsics ``(fx, fy, cx, cy)``,
``T_src_ref`` is the 4x4 rigid transform from reference-camera to source-camera coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import PinholeCamera

__all__ = ["SweepResult", "inverse_depth_planes", "plane_sweep", "refine_sweep", "sgm_aggregate", "zncc_cost_volume"]


@dataclass
class SweepResult:
    """Output of a sweep. ``depth`` is z-depth (NaN where no source saw the pixel)."""

    depth: Tensor  # (H, W)
    confidence: Tensor  # (H, W) in [0, 1]
    cost: Tensor  # (H, W) aggregated best cost (1 - ZNCC), inf where invalid
    inv_depth: Tensor  # (H, W) refined inverse depth (NaN where invalid)
    seen: Tensor | None = None  # (H, W) share of the hypotheses at which at least one source sees the pixel


def inverse_depth_planes(depth_min: float, depth_max: float, num_planes: int,
                         device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``num_planes`` inverse depths uniformly spaced from ``1/depth_min`` (near) to ``1/depth_max`` (far)."""
    if not (0 < depth_min < depth_max):
        raise ValueError(f"need 0 < depth_min < depth_max, got [{depth_min}, {depth_max}]")
    if num_planes < 3:
        raise ValueError(f"need at least 3 planes for sub-plane refinement, got {num_planes}")
    return torch.linspace(1.0 / depth_min, 1.0 / depth_max, num_planes, device=device, dtype=dtype)


def _intr_matrix(k: Tensor) -> Tensor:
    """(..., 4) fx fy cx cy -> (..., 3, 3) (the camera module's pinhole K)."""
    return PinholeCamera(k).K()


def _window_counts(n: int, window: int, like: Tensor) -> Tensor:
    """How many of the ``window`` taps centred on each of ``n`` positions fall inside ``[0, n)``."""
    r = window // 2
    idx = torch.arange(n, device=like.device)
    return ((idx + r).clamp(max=n - 1) - (idx - r).clamp(min=0) + 1).to(like.dtype)


def _box(x: Tensor, window: int) -> Tensor:
    """Mean over a ``window x window`` neighbourhood of the last two axes (border: mean over the in-image part).

    Separable box sums built from in-place adds of shifted slices (a handful of vectorised adds; much faster
    on CPU than ``avg_pool2d`` with ``count_include_pad=False``, and exact, unlike running sums), divided by
    the in-image tap counts, which factor into row and column counts.
    """
    if window <= 1:
        return x
    r = window // 2
    h, w = x.shape[-2:]
    rows = x.clone()
    for k in range(1, min(r, w - 1) + 1):
        rows[..., :, k:] += x[..., :, :-k]
        rows[..., :, :-k] += x[..., :, k:]
    out = rows.clone()
    for k in range(1, min(r, h - 1) + 1):
        out[..., k:, :] += rows[..., :-k, :]
        out[..., :-k, :] += rows[..., k:, :]
    return out.mul_(1.0 / (_window_counts(h, window, x)[:, None] * _window_counts(w, window, x)[None, :]))


def _gray(img: Tensor) -> Tensor:
    """(H,W) or (C,H,W) -> (H,W) luminance-like single channel."""
    if img.ndim == 2:
        return img
    if img.ndim == 3:
        return img.mean(0) if img.shape[0] != 1 else img[0]
    raise ValueError(f"expected an (H,W) or (C,H,W) image, got shape {tuple(img.shape)}")


def _check_inputs(ref: Tensor, srcs: Tensor, k_ref: Tensor, k_src: Tensor, t_src_ref: Tensor) -> tuple[Tensor, Tensor]:
    ref_g = _gray(ref)
    if srcs.ndim == 3:
        src_g = srcs
    elif srcs.ndim == 4:
        src_g = srcs.mean(1)
    else:
        raise ValueError(f"sources must be (S,H,W) or (S,C,H,W), got {tuple(srcs.shape)}")
    if src_g.shape[1:] != ref_g.shape:
        raise ValueError(f"source size {tuple(src_g.shape[1:])} differs from reference {tuple(ref_g.shape)}")
    s = src_g.shape[0]
    if s < 1:
        raise ValueError("need at least one source view")
    if k_ref.shape[-1] != 4 or k_src.shape != (s, 4):
        raise ValueError(f"intrinsics must be (4,) for the reference and ({s},4) for the sources, "
                         f"got {tuple(k_ref.shape)} and {tuple(k_src.shape)}")
    if t_src_ref.shape != (s, 4, 4):
        raise ValueError(f"T_src_ref must be ({s},4,4), got {tuple(t_src_ref.shape)}")
    return ref_g, src_g


def zncc_cost_volume(ref: Tensor, srcs: Tensor, k_ref: Tensor, k_src: Tensor, t_src_ref: Tensor,
                     inv_depths: Tensor, window: int = 5, best_k: int | None = None,
                     chunk: int = 8, eps: float = 1e-4, texture_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """Cost volume ``(D, H, W)`` of ``1 - ZNCC`` (inf where no source is valid) and the valid count.

    ``inv_depths`` is ``(D,)`` (fronto-parallel planes) or ``(D, H, W)`` (per-pixel hypotheses).
    ``best_k`` sources with the lowest cost are averaged per pixel (default: ``ceil(S/2)``).
    ``texture_sigma`` > 0 blends the cost of a reference window towards the uninformative value 1 by its
    texture, ``c' = w c + (1 - w)`` with ``w = var / (var + texture_sigma^2)`` (``var``: the window's
    intensity variance): the ZNCC of a flat window is noise, and a flat cost lets the aggregation carry
    depth in from textured surroundings instead.
    """
    ref_g, src_g = _check_inputs(ref, srcs, k_ref, k_src, t_src_ref)
    dev, dt = ref_g.device, ref_g.dtype
    h, w = ref_g.shape
    s = src_g.shape[0]
    kk = max(1, (s + 1) // 2) if best_k is None else max(1, min(int(best_k), s))
    k_ref = k_ref.to(dev, dt)
    k_src = k_src.to(dev, dt)
    t_src_ref = t_src_ref.to(dev, dt)

    # reference statistics
    r = ref_g[None, None]
    r_mu = _box(r, window)
    r_var = (_box(r * r, window) - r_mu * r_mu).clamp_min(0)

    # A x and b for every source: x_s ~ A x + w b
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=dt), torch.arange(w, device=dev, dtype=dt),
                            indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], 0).reshape(3, -1)  # (3, HW)
    kr_inv = torch.linalg.inv(_intr_matrix(k_ref))
    ks = _intr_matrix(k_src)  # (S,3,3)
    a = ks @ t_src_ref[:, :3, :3] @ kr_inv  # (S,3,3)
    ax = a @ pix  # (S,3,HW)
    b = (ks @ t_src_ref[:, :3, 3:4])  # (S,3,1)

    per_pixel = inv_depths.ndim == 3
    if per_pixel and inv_depths.shape[1:] != (h, w):
        raise ValueError(f"per-pixel hypotheses must be (D,{h},{w}), got {tuple(inv_depths.shape)}")
    n_hyp = inv_depths.shape[0]
    cost = torch.empty(n_hyp, h, w, device=dev, dtype=dt)
    nvalid = torch.empty(n_hyp, h, w, device=dev, dtype=torch.int64)
    src_in = src_g[:, None]  # (S,1,H,W)
    big = 4.0  # sentinel cost of an invalid (out-of-image) sample; valid costs lie in [0, 2]
    # layout (S, P, ...): one grid_sample per source covers all P hypotheses of a chunk (the planes are
    # stacked along the grid's height), so the source image is never copied per hypothesis
    sxy = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=dev, dtype=dt)
    axy = ax[:, None, :2].transpose(-1, -2) * sxy  # (S,1,HW,2), already in grid units
    bxy = b[:, None, :2, 0][:, :, None] * sxy  # (S,1,1,2)
    ax2, b2 = ax[:, None, 2], b[:, None, 2]  # (S,1,HW), (S,1,1)
    for d0 in range(0, n_hyp, chunk):
        wd = inv_depths[d0:d0 + chunk].to(dev, dt)
        p = wd.shape[0]
        wflat = wd.reshape(1, p, -1) if per_pixel else wd.reshape(1, p, 1)
        z = ax2 + wflat * b2  # (S,P,HW)
        front = z > 1e-6
        zinv = 1.0 / torch.where(front, z, torch.ones_like(z))
        grid = torch.addcmul(axy, wflat[..., None], bxy).mul_(zinv[..., None]).sub_(1.0)  # (S,P,HW,2)
        inside = front & (grid[..., 0].abs() <= 1.0) & (grid[..., 1].abs() <= 1.0)
        warped = F.grid_sample(src_in, grid.reshape(s, p * h, w, 2), mode="bilinear", padding_mode="border",
                               align_corners=True).reshape(s, p, h, w)
        stats = torch.empty(3, s, p, h, w, device=dev, dtype=dt)
        stats[0] = warped
        torch.mul(warped, warped, out=stats[1])
        torch.mul(warped, r[0], out=stats[2])
        stats = _box(stats, window)
        w_mu, w_sq, wr = stats[0], stats[1], stats[2]
        w_var = (w_sq - w_mu * w_mu).clamp_min_(0)
        zncc = (wr - w_mu * r_mu[0]).mul_(torch.rsqrt(w_var.mul_(r_var[0]).add_(eps * eps)))
        c = 1.0 - zncc.clamp_(-1, 1)  # (S,P,H,W)
        valid = inside.reshape(s, p, h, w)
        c = torch.where(valid, c, torch.full_like(c, big))
        nv = valid.sum(0)
        if kk == 1:
            total = c[0]
            for j in range(1, s):
                total = torch.minimum(total, c[j])
            cnt = (nv > 0).to(dt)
        else:
            cnt = nv.clamp(max=kk).to(dt)
            total = _sum_smallest(c, kk) - (kk - cnt) * big  # valid costs come first, drop the sentinels
        cost[d0:d0 + p] = torch.where(cnt > 0, total / cnt.clamp_min(1), torch.full_like(total, float("inf")))
        nvalid[d0:d0 + p] = nv
    if texture_sigma > 0:
        wt = r_var[0, 0] / (r_var[0, 0] + texture_sigma * texture_sigma)  # (H, W)
        cost = cost.mul_(wt).add_(1.0 - wt)  # inf stays inf
    return cost, nvalid


def _sum_smallest(c: Tensor, k: int) -> Tensor:
    """Sum of the ``k`` smallest values along axis 0 of ``c`` (S, ...): ``k`` bubble passes of min/max
    compare-exchanges for small S (several times faster than ``topk`` along the outer axis on CPU)."""
    s = c.shape[0]
    if k >= s:
        return c.sum(0)
    if s > 8:
        return torch.topk(c, k, dim=0, largest=False, sorted=False).values.sum(0)
    v = list(c.unbind(0))
    total = None
    for i in range(k):
        for j in range(s - 1, i, -1):
            lo, hi = torch.minimum(v[j - 1], v[j]), torch.maximum(v[j - 1], v[j])
            v[j - 1], v[j] = lo, hi
        total = v[i] if total is None else total + v[i]
    return total


def _aggregate(cost: Tensor, window: int) -> Tensor:
    if window <= 1:
        return cost
    finite = torch.isfinite(cost)
    c = torch.where(finite, cost, torch.full_like(cost, 2.0))  # worst ZNCC cost for invalid samples
    agg = _box(c[:, None], window)[:, 0]
    return torch.where(finite, agg, cost)


def _scan(x: Tensor, p1: float, p2: Tensor) -> Tensor:
    """SGM recursion along the first axis of ``x`` (N, B, D, M): ``L_j = C_j + min(L_{j-1}(d),
    L_{j-1}(d +- 1) + P1, min L_{j-1} + P2_j) - min L_{j-1}``; ``p2`` is (N, B, 1, M)."""
    out = torch.empty_like(x)
    prev = x[0]
    out[0] = prev
    big = torch.finfo(x.dtype).max / 4
    # every step writes into buffers allocated once (no per-step allocation; the same operations in the same
    # order as the textbook form, so the same numbers)
    step = torch.empty_like(prev)
    mn = prev.amin(1, keepdim=True)
    jump = torch.empty_like(mn)
    for j in range(1, x.shape[0]):
        torch.amin(prev, 1, keepdim=True, out=mn)
        step[:, 0] = big
        step[:, 1:] = prev[:, :-1]
        torch.minimum(step[:, :-1], prev[:, 1:], out=step[:, :-1])
        torch.minimum(prev, step.add_(p1), out=step)
        torch.minimum(step, torch.add(mn, p2[j], out=jump), out=step)
        cur = out[j]
        torch.sub(step, mn, out=cur)
        prev = cur.add_(x[j])
    return out


def sgm_aggregate(cost: Tensor, guide: Tensor | None = None, p1: float = 0.03, p2: float = 0.3,
                  edge_sigma: float = 0.05) -> Tensor:
    """Semi-global aggregation of a cost volume ``(D, H, W)`` over the four image axes (mean of the paths).

    ``P1`` penalises a one-plane change between neighbouring pixels, ``P2`` any larger jump; with a
    ``guide`` image (H,W) in [0,1], ``P2`` shrinks across intensity edges (``P2 / (1 + |dI| / edge_sigma)``,
    never below ``2 P1``) so depth discontinuities follow image edges. Non-finite costs count as 2 (the
    worst ZNCC cost). The two directions of an axis are scanned together.
    """
    d, h, w = cost.shape
    c = torch.where(torch.isfinite(cost), cost, torch.full_like(cost, 2.0))
    total = torch.zeros_like(c)
    for axis in ("x", "y"):
        v = c.permute(2, 0, 1) if axis == "x" else c.permute(1, 0, 2)  # (N, D, M), scanning N
        x = torch.stack([v, v.flip(0)], 1).contiguous()  # (N, 2, D, M)
        n, m = x.shape[0], x.shape[-1]
        if guide is not None:
            g = guide.t() if axis == "x" else guide  # (N, M)
            dg = torch.zeros_like(g)
            dg[1:] = (g[1:] - g[:-1]).abs()
            fwd = dg
            bwd = torch.zeros_like(g)
            bwd[1:] = dg.flip(0)[:-1]  # reversed scan: difference to the pixel before it on that path
            pen = torch.stack([fwd, bwd], 1)[:, :, None, :]  # (N, 2, 1, M)
            p2t = (p2 / (1.0 + pen / edge_sigma)).clamp_min(2 * p1)
        else:
            p2t = torch.full((n, 2, 1, m), p2, dtype=c.dtype, device=c.device)
        out = _scan(x, p1, p2t)
        agg = out[:, 0] + out[:, 1].flip(0)  # (N, D, M)
        total += agg.permute(1, 2, 0) if axis == "x" else agg.permute(1, 0, 2)
    return total / 4.0


def _wta(cost: Tensor, inv_depths: Tensor, match_cost: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Winner-take-all with parabolic sub-hypothesis refinement; returns (inv_depth, best_cost, confidence).

    ``match_cost`` (same shape as ``cost``): the un-regularised matching cost whose value at the winner gives
    the quality part of the confidence (defaults to ``cost``; differs after semi-global aggregation).
    """
    n_hyp, h, w = cost.shape
    # pixels x hypotheses, contiguous along the hypotheses: reductions over the last axis are several times
    # faster on CPU than over the outer axis of (D, H, W)
    c = torch.nan_to_num(cost.reshape(n_hyp, -1).t().contiguous(), nan=1e6, posinf=1e6, neginf=1e6)
    best_cost, idx = c.min(1)
    per_pixel = inv_depths.ndim == 3
    im = (idx - 1).clamp(0, n_hyp - 1)
    ip = (idx + 1).clamp(0, n_hyp - 1)
    c0 = best_cost
    cm = c.gather(1, im[:, None])[:, 0]
    cp = c.gather(1, ip[:, None])[:, 0]
    interior = (idx > 0) & (idx < n_hyp - 1) & (cm < 1e5) & (cp < 1e5)
    denom = cm - 2 * c0 + cp
    offset = torch.where(interior & (denom > 1e-9), 0.5 * (cm - cp) / denom.clamp_min(1e-9), torch.zeros_like(c0))
    offset = offset.clamp(-0.5, 0.5)
    if per_pixel:
        hyp = inv_depths.reshape(n_hyp, -1)
        w0, wm, wp = (hyp.gather(0, j[None])[0] for j in (idx, im, ip))
    else:
        w0, wm, wp = inv_depths[idx], inv_depths[im], inv_depths[ip]
    step = torch.where(offset >= 0, wp - w0, w0 - wm)
    inv = w0 + offset * step
    # confidence: matching quality (ZNCC of the winner) times the distinctness of the minimum against
    # the best cost outside its immediate neighbourhood
    far = c.clone()
    for off in (-2, -1, 0, 1, 2):
        far.scatter_(1, (idx + off).clamp(0, n_hyp - 1)[:, None], 1e6)
    second = far.amin(1)
    if match_cost is not None:
        mc = torch.nan_to_num(match_cost.reshape(n_hyp, -1).t(), nan=1e6, posinf=1e6, neginf=1e6)
        win = mc.gather(1, idx[:, None])[:, 0]
        quality = (1.0 - win / 2.0).clamp(0, 1)
        bad_win = win >= 1e5
    else:
        quality = (1.0 - best_cost / 2.0).clamp(0, 1)  # cost 0 -> 1, cost 2 -> 0
        bad_win = best_cost >= 1e5
    distinct = ((second - best_cost) / (second + 1e-6)).clamp(0, 1)
    distinct = torch.where(second >= 1e5, torch.ones_like(distinct), distinct)
    conf = quality * (0.5 + 0.5 * distinct)
    bad = (best_cost >= 1e5) | bad_win
    conf = torch.where(bad, torch.zeros_like(conf), conf)
    best_cost = torch.where(bad, torch.full_like(best_cost, float("inf")), best_cost)
    return inv.reshape(h, w), best_cost.reshape(h, w), conf.reshape(h, w)


def _result(inv: Tensor, best_cost: Tensor, conf: Tensor, nvalid: Tensor) -> SweepResult:
    ok = torch.isfinite(best_cost) & (inv > 0)
    inv = torch.where(ok, inv, torch.full_like(inv, float("nan")))
    depth = 1.0 / inv
    return SweepResult(depth=depth, confidence=torch.where(ok, conf, torch.zeros_like(conf)), cost=best_cost,
                       inv_depth=inv, seen=(nvalid > 0).to(inv.dtype).mean(0))


def plane_sweep(ref: Tensor, srcs: Tensor, k_ref: Tensor, k_src: Tensor, t_src_ref: Tensor,
                depth_min: float, depth_max: float, num_planes: int = 64, window: int = 5,
                agg_window: int = 5, best_k: int | None = None, chunk: int = 8,
                sgm: tuple[float, float] | None = None, texture_sigma: float = 0.0) -> SweepResult:
    """Fronto-parallel plane sweep over ``num_planes`` inverse depths in ``[depth_min, depth_max]``.

    ``ref`` (H,W) or (C,H,W) float image; ``srcs`` (S,H,W) or (S,C,H,W); ``k_ref`` (4,), ``k_src`` (S,4)
    pinhole ``fx fy cx cy`` at this resolution; ``t_src_ref`` (S,4,4) reference-to-source transforms.
    ``sgm = (P1, P2)`` adds semi-global aggregation (:func:`sgm_aggregate`, guided by the reference image);
    ``texture_sigma``: see :func:`zncc_cost_volume`.
    """
    planes = inverse_depth_planes(depth_min, depth_max, num_planes, device=ref.device, dtype=ref.dtype)
    cost, nvalid = zncc_cost_volume(ref, srcs, k_ref, k_src, t_src_ref, planes, window=window, best_k=best_k,
                                    chunk=chunk, texture_sigma=texture_sigma)
    cost = _aggregate(cost, agg_window)
    if sgm is None:
        return _result(*_wta(cost, planes), nvalid)
    agg = sgm_aggregate(cost, _gray(ref), p1=float(sgm[0]), p2=float(sgm[1]))
    return _result(*_wta(agg, planes, match_cost=cost), nvalid)


def refine_sweep(ref: Tensor, srcs: Tensor, k_ref: Tensor, k_src: Tensor, t_src_ref: Tensor, inv_depth: Tensor,
                 half_width: float, num_hyp: int = 9, window: int = 5, agg_window: int = 5,
                 best_k: int | None = None, chunk: int = 8, texture_sigma: float = 0.0) -> SweepResult:
    """Sweep of per-pixel hypotheses ``inv_depth + s * half_width``, ``s`` uniform in ``[-1, 1]``.

    Used coarse-to-fine: ``inv_depth`` (H,W) comes from a sweep at lower resolution (upsampled); pixels where
    it is NaN are searched around the image's median inverse depth. Hypotheses stay positive.
    """
    if num_hyp < 3:
        raise ValueError(f"need at least 3 hypotheses, got {num_hyp}")
    ok = torch.isfinite(inv_depth) & (inv_depth > 0)
    if not bool(ok.any()):
        raise ValueError("refine_sweep needs at least one finite positive inverse depth")
    base = torch.where(ok, inv_depth, inv_depth[ok].median())
    s = torch.linspace(-1.0, 1.0, num_hyp, device=inv_depth.device, dtype=inv_depth.dtype)
    hyp = base[None] + s[:, None, None] * float(half_width)
    hyp = torch.maximum(hyp, torch.full_like(hyp, 1e-3 * float(half_width)))
    cost, nvalid = zncc_cost_volume(ref, srcs, k_ref, k_src, t_src_ref, hyp, window=window, best_k=best_k,
                                    chunk=chunk, texture_sigma=texture_sigma)
    cost = _aggregate(cost, agg_window)
    return _result(*_wta(cost, hyp), nvalid)
