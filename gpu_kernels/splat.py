"""Z-buffered point splatting with any camera model (batched torch, CPU and CUDA).

Semantics follow the EgoX renderer (PyTorch3D point rasteriser, ``specs/egox_renderer.md`` section 3.8):

* every point is a disk of radius ``radius`` output pixels around its projection ``(u, v)``; it covers the
  pixel centres ``(col, row)`` (integers, OpenCV convention) with ``d^2 = (col-u)^2 + (row-v)^2 < r^2``;
* per pixel the ``k`` covering points nearest in camera ``z`` are kept, with opacity
  ``alpha = 1 - d^2 / r^2``;
* ``mode="front_to_back"``: ``C = sum_i alpha_i c_i prod_{j<i} (1 - alpha_j) + T background`` where
  ``T = prod_i (1 - alpha_i)`` is the remaining transmittance; with a black background this is exactly the
  EgoX/PyTorch3D alpha compositing (no normalisation: disk edges fade to the background);
* ``mode="normalized"``: ``C = sum_i alpha_i c_i / sum_i alpha_i`` (PyTorch3D's normalised weighted
  compositor); pixels with no covering point get the background;
* ``mode="nearest"``: plain z-buffer, the colour of the nearest covering point (fastest; no sort needed);
* points with ``z <= camera.min_depth``, outside the camera's valid field of view, with non-finite
  coordinates, or whose disk misses the image are never drawn.

Outputs: ``image (..., H, W, C)`` in the colours' dtype, ``depth (..., H, W)`` = z of the nearest covering
point (0 where nothing is drawn) and ``mask (..., H, W)`` (True where at least one point covers the pixel).
Frames are batched by giving ``points_cam`` a leading batch dimension ``(B, N, 3)`` (and optionally
``colors (B, N, C)`` and camera params ``(B, P)``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .cameras import CameraModel

__all__ = ["splat", "SPLAT_MODES"]

SPLAT_MODES = ("front_to_back", "normalized", "nearest")


def _fragments(uv: Tensor, idx: Tensor, radius: float, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """For the points ``idx`` (flat indices into ``uv (..., 2)``): point index, pixel index (within its frame)
    and squared distance of every (point, covered pixel centre), in the order of ``idx``."""
    uvf = uv.reshape(-1, 2).index_select(0, idx)
    u, v = uvf[:, 0], uvf[:, 1]
    big_r = int(math.ceil(radius))
    n_off = 2 * big_r
    offs = torch.arange(-big_r + 1, big_r + 1, device=uv.device)
    fu = torch.floor(u)
    fv = torch.floor(v)
    cu = fu.to(torch.int64)[:, None] + offs  # (M, 2R) candidate columns
    cv = fv.to(torch.int64)[:, None] + offs
    du = (fu - u)[:, None] + offs.to(uv.dtype)
    dv = (fv - v)[:, None] + offs.to(uv.dtype)
    du2 = torch.where((cu >= 0) & (cu < width), du * du, torch.full_like(du, math.inf))
    dv2 = torch.where((cv >= 0) & (cv < height), dv * dv, torch.full_like(dv, math.inf))
    d2 = (dv2[:, :, None] + du2[:, None, :]).reshape(-1)  # (M * 2R * 2R), row-major (point, dv, du)
    flat = torch.nonzero(d2 < radius * radius).squeeze(1)
    per = n_off * n_off
    m = torch.div(flat, per, rounding_mode="floor")
    rem = flat - m * per
    bi = torch.div(rem, n_off, rounding_mode="floor")
    ai = rem - bi * n_off
    pix = (cv.reshape(-1).index_select(0, m * n_off + bi)) * width + cu.reshape(-1).index_select(0, m * n_off + ai)
    return idx.index_select(0, m), pix, d2.index_select(0, flat)


def splat(points_cam: Tensor, colors: Tensor, camera: CameraModel, height: int, width: int,
          radius: float = 1.5, k: int = 20, background: tuple[float, ...] | Tensor = (0.0, 0.0, 0.0),
          mode: str = "front_to_back") -> tuple[Tensor, Tensor, Tensor]:
    """Render camera-frame points as z-buffered disks; see the module docstring for the semantics.

    Args:
        points_cam: ``(N, 3)`` or ``(B, N, 3)`` points in the camera frame (OpenCV axes).
        colors: ``(N, C)`` or ``(B, N, C)`` colours (any float range; not clamped here).
        camera: any :class:`gpu_kernels.cameras.CameraModel` (params ``(P,)`` or ``(B, P)``).
        height, width: output size in pixels.
        radius: disk radius in output pixels (> 0).
        k: number of nearest points composited per pixel (>= 1).
        background: colour of uncovered pixels (and of the remaining transmittance in front_to_back).
        mode: ``"front_to_back"`` | ``"normalized"`` | ``"nearest"``.

    Returns:
        ``(image (..., H, W, C), depth (..., H, W), mask (..., H, W))``.
    """
    if mode not in SPLAT_MODES:
        raise ValueError(f"splat: unknown mode {mode!r}; expected one of {SPLAT_MODES}")
    if points_cam.ndim not in (2, 3) or points_cam.shape[-1] != 3:
        raise ValueError(f"splat: expected points_cam of shape (N,3) or (B,N,3), got {tuple(points_cam.shape)}")
    batched = points_cam.ndim == 3
    pts = points_cam if batched else points_cam[None]
    n_frames, n_pts = pts.shape[0], pts.shape[1]
    if colors.ndim == 2:
        colors = colors[None].expand(n_frames, *colors.shape)
    if colors.ndim != 3 or colors.shape[:2] != (n_frames, n_pts):
        raise ValueError(f"splat: colors must be (N,C) or (B,N,C) matching points {tuple(points_cam.shape)}, "
                         f"got {tuple(colors.shape)}")
    if radius <= 0 or k < 1 or height <= 0 or width <= 0:
        raise ValueError(f"splat: need radius > 0, k >= 1 and a positive size, got radius={radius}, k={k}, "
                         f"size={height}x{width}")
    n_ch = colors.shape[-1]
    dev = pts.device
    cdt = colors.dtype if colors.is_floating_point() else torch.float32
    bg = torch.as_tensor(background, dtype=cdt, device=dev).reshape(-1)
    if bg.numel() == 1:
        bg = bg.expand(n_ch)
    if bg.numel() != n_ch:
        raise ValueError(f"splat: background has {bg.numel()} channels, colors have {n_ch}")

    if camera.params.ndim > 1 and (not batched or camera.params.shape[:-1] != (n_frames,)):
        raise ValueError(f"splat: camera params {tuple(camera.params.shape)} must be (P,) or (B,P) with "
                         f"B = {n_frames} frames of points")
    uv, valid = camera.project(pts)
    ok = valid & torch.isfinite(uv).all(-1) & torch.isfinite(pts[..., 2])
    ok &= (uv[..., 0] > -radius) & (uv[..., 0] < width - 1 + radius)
    ok &= (uv[..., 1] > -radius) & (uv[..., 1] < height - 1 + radius)

    hw = height * width
    n_pix = n_frames * hw
    z = pts[..., 2]
    idx = torch.nonzero(ok.reshape(-1)).squeeze(1)
    if mode != "nearest":
        # depth order once per point: fragments are generated in this order, so a stable sort by pixel
        # leaves each pixel's fragments sorted front to back
        idx = idx.index_select(0, torch.argsort(z.reshape(-1).index_select(0, idx)))
    pt_idx, pix, d2 = _fragments(uv, idx, radius, height, width)
    frame = torch.div(pt_idx, n_pts, rounding_mode="floor")
    gpix = frame * hw + pix

    image = bg.expand(n_pix, n_ch).clone()
    depth = torch.zeros(n_pix, dtype=z.dtype, device=dev)
    mask = torch.zeros(n_pix, dtype=torch.bool, device=dev)
    col = colors.reshape(-1, n_ch)
    if gpix.numel() == 0:
        return _shape(image, depth, mask, n_frames, height, width, n_ch, batched)

    if mode == "nearest":
        # packed key: pixel in the high 32 bits, the float32 bit pattern of z (> 0: order-preserving) low
        zf = z.reshape(-1).index_select(0, pt_idx).to(torch.float32)
        key = (gpix << 32) | zf.view(torch.int32).to(torch.int64)
        best = torch.full((n_pix,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
        best.scatter_reduce_(0, gpix, key, reduce="amin")
        is_best = key == best.index_select(0, gpix)
        # ties in z at the same pixel: keep the first
        sel = torch.nonzero(is_best).squeeze(1)
        win = torch.full((n_pix,), -1, dtype=torch.int64, device=dev)
        win.scatter_reduce_(0, gpix[sel], sel, reduce="amax")
        hit = win >= 0
        w_frag = win[hit]
        image[hit] = col.index_select(0, pt_idx[w_frag]).to(cdt)
        depth[hit] = z.reshape(-1).index_select(0, pt_idx[w_frag])
        mask = hit
        return _shape(image, depth, mask, n_frames, height, width, n_ch, batched)

    key = gpix.to(torch.int32) if n_pix < 2**31 else gpix
    gp, order = torch.sort(key, stable=True)
    gp = gp.to(torch.int64)
    n_frag = gp.numel()
    ar = torch.arange(n_frag, device=dev)
    start = torch.ones(n_frag, dtype=torch.bool, device=dev)
    start[1:] = gp[1:] != gp[:-1]
    seg_start = torch.where(start, ar, torch.zeros_like(ar)).cummax(0).values
    rank = ar - seg_start
    keep = rank < k
    order, gp, rank = order[keep], gp[keep], rank[keep]
    alpha = (1.0 - d2.index_select(0, order) / (radius * radius)).to(cdt).clamp(0.0, 1.0)
    src = pt_idx.index_select(0, order)
    c = col.index_select(0, src).to(cdt)

    first = rank == 0
    depth[gp[first]] = z.reshape(-1).index_select(0, src[first])
    mask[gp[first]] = True
    if mode == "normalized":
        acc = torch.zeros(n_pix, n_ch, dtype=cdt, device=dev)
        acc.index_add_(0, gp, alpha[:, None] * c)
        wsum = torch.zeros(n_pix, dtype=cdt, device=dev)
        wsum.index_add_(0, gp, alpha)
        good = wsum > 0
        image[good] = acc[good] / wsum[good, None]
        return _shape(image, depth, mask, n_frames, height, width, n_ch, batched)

    # front to back: transmittance via a dense (pixel, rank) table and cumprod (exact, no logs)
    kk = int(min(k, int(rank.max()) + 1))
    touched = torch.nonzero(mask).squeeze(1)
    slot = torch.full((n_pix,), -1, dtype=torch.int64, device=dev)
    slot[touched] = torch.arange(touched.numel(), device=dev)
    row = slot.index_select(0, gp)
    one_minus = torch.ones(touched.numel(), kk, dtype=cdt, device=dev)
    one_minus[row, rank] = 1.0 - alpha
    trans = torch.cumprod(one_minus, dim=1)
    t_before = torch.ones_like(trans)
    t_before[:, 1:] = trans[:, :-1]
    w = alpha * t_before[row, rank]
    acc = torch.zeros(n_pix, n_ch, dtype=cdt, device=dev)
    acc.index_add_(0, gp, w[:, None] * c)
    image[touched] = acc[touched] + trans[:, -1:] * bg
    return _shape(image, depth, mask, n_frames, height, width, n_ch, batched)


def _shape(image: Tensor, depth: Tensor, mask: Tensor, b: int, h: int, w: int, c: int,
           batched: bool) -> tuple[Tensor, Tensor, Tensor]:
    image = image.reshape(b, h, w, c)
    depth = depth.reshape(b, h, w)
    mask = mask.reshape(b, h, w)
    if batched:
        return image, depth, mask
    return image[0], depth[0], mask[0]
