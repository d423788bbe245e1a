"""Metric depth of a static exo camera without learned weights: the take's other exo cameras as a stereo rig.

The exo cameras of an Ego-Exo4D take are calibrated (``gopro_calibs.csv``: intrinsics and a metric
``T_world_cam``) and frame-aligned, so a reference camera's image can be plane-swept against the other
cameras' images at the same instant (or against their temporal medians, which for static cameras is the
static background without the people walking through it). The depth is in metres because the calibration
is: nothing is scaled or aligned afterwards.

Per camera of the rig: a wide coarse sweep finds the depth range (the depths another camera confirms,
pooled as world points over the whole rig and projected into each camera; metric, so the default bounds are
in metres), then the fine sweep (:func:`vipe_dagster.depth.mvs.sweep_frame`, ZNCC with the best-k sources per
pixel, semi-global aggregation) gives depth and a confidence. Every camera's depth is then checked against
the others (forward-backward geometric check, :func:`vipe_dagster.depth.mvs.consistency_errors`), the
confirmed depth is smoothed by a robust local plane fit (:func:`plane_fit`, exact on planes, slanted ones
included) and grown into its holes where the images agree (:func:`propagate_planes`: ZNCC with the window
warped by the slanted plane), first along the scene's dominant plane orientations (:func:`dominant_plane_families`
on the rig's confirmed points: a floor seen at a grazing angle is one plane of a family rather than many
fronto-parallel ones, the multi-direction sweep of Gallup et al., CVPR 2007; two perpendicular families get
the third, and each family also sweeps the peaks of its normal's offset histogram, :func:`family_peaks`, as
Manhattan-world stereo does: the ceiling, a box top, the side walls; each peak's offset refined once per rig
by the matching cost of the pixels on it, :func:`refine_peak_offsets`, since the histogram's peak is pulled by
the surfaces the normal runs along), then along the neighbours' local planes. The same family sweep also
refines the measured pixels: a measured depth within ``family_snap_rel`` of a family plane whose slanted window
matches better than the fronto-parallel sweep's takes that plane's depth (PatchMatch-style plane refinement
with the scene's planes as candidates). A reference pixel's depth is
kept when it is confident and at least ``min_consistent`` other cameras' own (grown) depths agree with it:
it is then *covered*, i.e. measured and seen by that many other cameras. :class:`RigDepth` reports the
covered fraction.

Holes no other camera sees are left to the caller's fill (:func:`plane_fill`); :class:`RigDepth` carries what
the other cameras observe, so that the fill can drop the hypotheses they see through
(:func:`free_space_check`: a foreground plane extended over the background it hides from them), and the
planes of the families that enclose the scene (:func:`bounding_planes`: the cameras and all but a few of the
confirmed points on one side; a room's floor, ceiling and walls), which the fill does not go beyond
(:func:`clamp_to_bounds`: a wall extended into a ceiling corner no other camera sees stops at the ceiling) and
which a filled depth close to one snaps onto.

Kannala-Brandt calibrations (non-zero k0..k3) are undistorted to a pinhole image with the same fx, fy, cx,
cy (:func:`undistort_kb`, OpenCV's fisheye model); the depth and the intrinsics returned then belong to
that pinhole image.

Conventions: OpenCV pixels and camera axes, intrinsics ``fx fy cx cy``, poses camera-to-world in metres.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..camera import pixel_rays
from ..depth.config import DepthConfig
from ..depth.mvs import (
    consistency_errors,
    depth_range_from_points,
    free_space_violations,
    mvs_size,
    scale_intrinsics,
    sweep_frame,
)
from ..errors import InputError

log = logging.getLogger(__name__)

SCALE = "metric"
SOURCE = "rig calibration"


@dataclass
class RigView:
    """One calibrated exo camera of the rig at one instant (or its static background)."""

    cam: str
    image: np.ndarray  # HxWx3 float32 in [0, 1] (pinhole: undistorted if the calibration was KB)
    k: np.ndarray  # fx fy cx cy at the image's resolution
    c2w: np.ndarray  # 4x4 camera-to-world, metres


class RigDepthConfig(BaseModel):
    """Settings of the rig sweep (the matching itself uses :class:`DepthConfig`'s window/aggregation)."""

    model_config = ConfigDict(extra="forbid")

    long_side: int = Field(320, ge=32, description="rig sweep resolution (long side, px); the depth is returned "
                                                   "at the image resolution")
    near: float = Field(0.3, gt=0, description="metres: near bound of the wide sweep that finds each camera's "
                                               "depth range")
    far: float = Field(60.0, gt=0, description="metres: far bound of the wide sweep")
    range_planes: int = Field(128, ge=2, description="planes of the wide sweep (half resolution)")
    range_percentiles: tuple[float, float] = Field((2.0, 98.0), description="percentiles of the wide sweep's "
                                                                          "confident depths ...")
    range_margin: float = Field(1.5, ge=1, description="... widened by this factor: the fine sweep's range")
    num_planes: int = Field(96, ge=2, description="planes of the fine sweep over the found range")
    min_confidence: float = Field(0.25, ge=0, le=1, description="sweep confidence a depth needs")
    consistency_rel: float = Field(0.05, gt=0, description="another camera's depth agrees within this relative "
                                                           "difference ...")
    consistency_px: float = Field(3.0, gt=0, description="... and reprojects within this many px (sweep "
                                                         "resolution)")
    min_consistent: int = Field(1, ge=1, description="other cameras whose depth must agree")
    best_k: int = Field(2, ge=1, description="sources averaged per pixel (the lowest costs: an occluded source "
                                             "drops out; 2 of 3 suppresses chance matches of a single pair)")
    smooth_window: int = Field(9, ge=0, description="robust local plane fit of the kept depth over this window "
                                                     "(px at the sweep resolution; < 3: off)")
    smooth_sigma: float = Field(0.03, gt=0, description="relative inverse-depth difference at which a neighbour's "
                                                        "weight in the plane fit falls to exp(-1/2)")
    propagate_rounds: int = Field(3, ge=0, description="rounds of plane propagation into the sweep's holes "
                                                         "(neighbours' local planes, photometrically checked; 0: off)")
    propagate_cost: float = Field(0.6, gt=0, le=2, description="matching cost (1 - ZNCC, best sources) a "
                                                               "propagated depth must stay below")
    plane_families: int = Field(3, ge=0, description="dominant plane orientations of the scene (sequential "
                                                     "RANSAC on the rig's confirmed points, parallel planes "
                                                     "sharing one) swept as extra plane families into the "
                                                     "holes (floors, ceilings, walls seen obliquely); 0: off")
    family_snap_rel: float = Field(0.05, ge=0, lt=1, description="a measured depth within this relative "
                                                                  "difference of a family plane whose slanted "
                                                                  "window matches better takes the plane's "
                                                                  "depth (0: off)")
    bounding_planes: bool = Field(True, description="the family planes enclosing the scene (cameras on one "
                                                    "side, the confirmed points too) limit the hole fill")
    family_planes: int = Field(64, ge=2, description="planes per family, evenly spaced over the confirmed "
                                                     "points' offsets along its normal")
    manhattan: bool = Field(True, description="two perpendicular families found: add the third orthogonal "
                                              "orientation (its planes from the histogram peaks)")
    peak_share: float = Field(0.01, ge=0, lt=1, description="share of the confirmed points a peak of a family "
                                                            "normal's offset histogram needs to be swept as one "
                                                            "more plane (ceilings, box tops, side walls); 0: off")
    peak_refine_steps: int = Field(8, ge=0, description="each histogram-peak plane's offset refined "
                                                        "photometrically: the matching cost of the pixels on it, "
                                                        "summed over every camera, at 2 n + 1 offsets within a "
                                                        "histogram bin each side, its minimum interpolated (a "
                                                        "ceiling 1 m above a camera is 1 % off per cm); 0: off")
    speckle_size: float = Field(0.001, ge=0, lt=1, description="confirmed depth regions this small (share of the "
                                                               "sweep's pixels) unlike all around them are dropped "
                                                               "before the fill; 0: off")
    speckle_rel: float = Field(0.03, gt=0, description="relative depth step that separates two regions")
    family_inlier_rel: float = Field(0.01, gt=0, description="RANSAC inlier distance, relative to the median "
                                                             "distance of the confirmed points from their median")
    family_min_share: float = Field(0.08, gt=0, lt=1, description="share of the confirmed points a plane needs "
                                                                 "to define a family")
    device: str = Field("cpu", description="torch device of the sweep")
    # wide-baseline views: fronto-parallel windows match slanted surfaces poorly, so the semi-global
    # smoothness carries more weight than for a moving camera's short baselines
    # the moving camera's visibility rule min_seen is off here: at 0.5 the egoexo_rig bench's chosen camera
    # rendered worse (cam02 24.7 -> 24.4 dB; cam01 27.9 -> 28.0, cam03/04 -0.1 to -0.2 dB), one run
    depth: DepthConfig = Field(default_factory=lambda: DepthConfig(sgm=True, coarse_to_fine=False, sgm_p1=0.1,
                                                                   sgm_p2=4.0, min_seen=0.0),
                               description="window/aggregation settings of the matching")

    def sweep_config(self) -> DepthConfig:
        return self.depth.model_copy(update={"device": self.device, "best_k": self.best_k,
                                             "num_planes": self.num_planes})


@dataclass
class RigDepth:
    """Depth of the reference camera; NaN where not covered."""

    cam: str
    depth: np.ndarray  # (H, W) float32 metres at the reference image resolution, NaN where not kept
    confidence: np.ndarray  # (H, W) float32 in [0, 1]: sweep confidence x share of other cameras agreeing
    support: np.ndarray  # (H, W) int: other cameras whose depth agrees
    k: np.ndarray  # fx fy cx cy of ``depth``
    report: dict  # covered fraction, depth range, sources, timings, scale/source
    # what the other cameras observe, ``(depth, k, c2w)`` each at the sweep resolution (their depth confirmed by
    # another camera, :func:`_observed`; NaN elsewhere): their free space constrains this camera's hole fill
    observations: list = field(default_factory=list)
    c2w: np.ndarray | None = None  # the reference camera's camera-to-world
    bounds: list = field(default_factory=list)  # planes enclosing the scene (:func:`bounding_planes`)

    @property
    def covered_fraction(self) -> float:
        return float(self.report["covered_fraction"])


def undistort_kb(image: np.ndarray, k: np.ndarray, dist: Sequence[float]) -> np.ndarray:
    """A Kannala-Brandt (OpenCV fisheye, k0..k3) image resampled to the pinhole camera with the same fx, fy,
    cx, cy. Returns the image unchanged when every coefficient is 0."""
    d = np.asarray(dist, np.float64).reshape(-1)
    if d.size != 4 or not np.isfinite(d).all():
        raise InputError(f"Kannala-Brandt distortion must be 4 finite numbers k0..k3, got {list(d)}")
    if not d.any():
        return image
    K = np.array([[k[0], 0, k[2]], [0, k[1], k[3]], [0, 0, 1.0]])
    h, w = image.shape[:2]
    m1, m2 = cv2.fisheye.initUndistortRectifyMap(K, d, np.eye(3), K, (w, h), cv2.CV_32FC1)
    return cv2.remap(image, m1, m2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def static_background(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Per-pixel temporal median of frames (HxWx3 uint8 or float) -> float32 in [0, 1]."""
    stack = [np.asarray(f) for f in frames]
    if not stack:
        raise InputError("static_background: no frames")
    arr = np.stack(stack)
    med = np.median(arr.astype(np.float32), axis=0)
    return med / 255.0 if arr.dtype == np.uint8 else med.astype(np.float32)


def _resized(view: RigView, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = view.image.shape[:2]
    if (w, h) == size:
        return np.ascontiguousarray(view.image, np.float32), np.asarray(view.k, np.float64)
    img = cv2.resize(view.image.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return img, scale_intrinsics(view.k, size[0] / w, size[1] / h)


def _points_world(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """World points (N, 3) of the finite pixels of a z-depth map."""
    vv, uu = np.nonzero(np.isfinite(depth))
    z = depth[vv, uu].astype(np.float64)
    pc = pixel_rays("PINHOLE", k, uu, vv, depth.shape[1], depth.shape[0]) * z[:, None]
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def _world_rays(k: np.ndarray, c2w: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The world directions ``(H, W, 3)`` of every pixel's ray of a pinhole camera of ``size`` (W, H), scaled
    to unit z-depth: the point at z-depth ``d`` is ``centre + d * ray``."""
    w, h = size
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    return pixel_rays("PINHOLE", k, uu.ravel(), vv.ravel(), w, h).reshape(h, w, 3) @ np.asarray(c2w)[:3, :3].T


def _wide_sweeps(imgs: list[np.ndarray], ks: list[np.ndarray], poses: list[np.ndarray],
                 cfg: RigDepthConfig) -> list[tuple[float, float] | None]:
    """Each camera's depth range: a wide sweep (``near``..``far``, half resolution) of every camera against
    the others; the depths that another camera's wide depth confirms (geometric check) are pooled as world
    points over the whole rig (a camera's own confirmed depths are few where its view is oblique, the other
    cameras' points fill in), projected into each camera, and the percentiles of their depths in its view,
    widened by ``range_margin``, are its range. Depths on the first or last planes of the wide sweep (no
    minimum inside the range: nothing matched) never count. A camera with too few points gets None."""
    sweep = cfg.sweep_config()
    h, w = imgs[0].shape[:2]
    hw, hh = max(8, w // 2), max(8, h // 2)
    small = [cv2.resize(im, (hw, hh), interpolation=cv2.INTER_AREA) for im in imgs]
    ks_small = [scale_intrinsics(k, hw / w, hh / h) for k in ks]
    inv_near, inv_far = 1.0 / cfg.near, 1.0 / cfg.far
    step = (inv_near - inv_far) / (cfg.range_planes - 1)
    wide = []
    for i in range(len(imgs)):
        others = [j for j in range(len(imgs)) if j != i]
        d0, c0 = sweep_frame(small[i], [small[j] for j in others], ks_small[i], [ks_small[j] for j in others],
                             poses[i], [poses[j] for j in others], (cfg.near, cfg.far), sweep,
                             num_planes=cfg.range_planes)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = 1.0 / d0
        inner = (inv < inv_near - 1.5 * step) & (inv > inv_far + 1.5 * step)
        wide.append(np.where(np.isfinite(d0) & inner & (c0 > 0.5), d0, np.nan).astype(np.float32))
    pts = []
    for i in range(len(imgs)):
        errs = consistency_errors(wide[i], ks_small[i], poses[i],
                                  [(wide[j], ks_small[j], poses[j]) for j in range(len(imgs)) if j != i],
                                  2 * cfg.consistency_rel, cfg.consistency_px)
        pts.append(_points_world(np.where((errs < 1.0).any(0), wide[i], np.nan), ks_small[i], poses[i]))
    cloud = np.concatenate(pts) if pts else np.zeros((0, 3))
    out: list[tuple[float, float] | None] = []
    for i in range(len(imgs)):
        w2c = np.linalg.inv(poses[i])
        pc = cloud @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            u = ks_small[i][0] * pc[:, 0] / z + ks_small[i][2]
            v = ks_small[i][1] * pc[:, 1] / z + ks_small[i][3]
        inside = (z > cfg.near) & (u >= -0.5) & (u < hw - 0.5) & (v >= -0.5) & (v < hh - 0.5)
        rng = depth_range_from_points(z[inside], cfg.range_percentiles, cfg.range_margin)
        out.append(None if rng is None else (max(rng[0], cfg.near), min(rng[1], cfg.far)))
    return out


def remove_speckles(depth: np.ndarray, max_size: int, rel: float) -> np.ndarray:
    """``depth`` with its speckles set to NaN: the connected regions (4-neighbours whose depths differ by at
    most ``rel``, relative) of at most ``max_size`` pixels, i.e. small islands unlike everything around them
    (stereo's classic speckle filter, on relative depth; OpenCV's works on integer disparities only)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w = depth.shape
    logd = np.where(np.isfinite(depth) & (depth > 0), np.log(np.maximum(depth, 1e-12)), np.nan)
    idx = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for a, b, la, lb in ((idx[:, :-1], idx[:, 1:], logd[:, :-1], logd[:, 1:]),
                         (idx[:-1], idx[1:], logd[:-1], logd[1:])):
        with np.errstate(invalid="ignore"):
            link = np.abs(la - lb) <= np.log1p(rel)
        rows.append(a[link])
        cols.append(b[link])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(h * w, h * w))
    _, label = connected_components(graph, directed=False)
    size = np.bincount(label, minlength=label.max() + 1)
    small = (size[label] <= max_size).reshape(h, w) & np.isfinite(logd)
    return np.where(small, np.nan, depth).astype(depth.dtype)


def plane_smooth(depth: np.ndarray, window: int, rel_sigma: float, iterations: int = 2) -> np.ndarray:
    """The depth of :func:`plane_fit` (NaN where ``depth`` has holes)."""
    valid = np.isfinite(depth) & (depth > 0)
    if window < 3 or not valid.any():
        return depth
    coef = plane_fit(depth, window, rel_sigma, iterations)
    return np.where(valid, 1.0 / np.maximum(coef[..., 0], 1e-9), np.nan).astype(np.float32)


def plane_fit(depth: np.ndarray, window: int, rel_sigma: float, iterations: int = 2,
              dilation: int = 1) -> np.ndarray:
    """Robust local plane fit of a depth map with holes (NaN): each valid pixel takes the value at its own
    position of the weighted least-squares plane through its ``window x window`` neighbourhood in inverse
    depth (a 3-D plane is affine in inverse depth under a pinhole camera, so planar surfaces are kept exactly,
    slanted ones included). A neighbour's weight falls off with its relative inverse-depth difference to the
    pixel's current estimate (``rel_sigma``), so neighbours across a depth edge do not pull the pixel; the
    matching noise of the sweep (sub-plane steps, window effects) averages out.

    Returns (h, w, 3): the plane of every valid pixel as inverse depth ``c + a dx + b dy`` at the pixel offset
    ``(dx, dy)`` from it, ``(c, a, b)`` (zeros at holes). ``dilation``: the window samples every
    ``dilation``-th pixel (a wider support at the same cost). Large images are fitted in bands of rows that overlap
    by ``iterations x dilation x window/2`` rows (a pixel's result depends on no row farther away), so the result is the
    same and the memory stays bounded."""
    h = depth.shape[0]
    r = (window // 2) * dilation
    band = max(8, _PLANE_FIT_BUDGET // max(1, depth.shape[1] * window * window))
    if h <= band:
        return _plane_fit(depth, window, rel_sigma, iterations, dilation)
    margin = max(1, iterations) * r
    out = np.zeros(depth.shape + (3,), np.float64)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        a, b = max(0, y0 - margin), min(h, y1 + margin)
        out[y0:y1] = _plane_fit(depth[a:b], window, rel_sigma, iterations, dilation)[y0 - a:y1 - a]
    return out


_PLANE_FIT_BUDGET = 8_000_000  # window^2 x pixels per band of plane_fit


def _plane_fit(depth: np.ndarray, window: int, rel_sigma: float, iterations: int, dilation: int) -> np.ndarray:
    import torch
    import torch.nn.functional as tF

    valid = np.isfinite(depth) & (depth > 0)
    h, w = depth.shape
    r = window // 2
    p = r * dilation
    y = torch.from_numpy(np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0).astype(np.float32))
    m = torch.from_numpy(valid.astype(np.float32))

    def patches(x: torch.Tensor) -> torch.Tensor:  # (window^2, h, w)
        return tF.unfold(tF.pad(x[None, None], (p, p, p, p)), window, dilation=dilation).reshape(window * window, h, w)

    yq, mq = patches(y), patches(m)
    off = torch.arange(-r, r + 1, dtype=torch.float32) * dilation
    dy = off[:, None].expand(window, window).reshape(-1, 1, 1)
    dx = off[None, :].expand(window, window).reshape(-1, 1, 1)
    est = y
    coef = torch.zeros(h, w, 3)
    for _ in range(max(1, iterations)):
        wq = mq * torch.exp(-0.5 * ((yq - est) / (rel_sigma * est.clamp_min(1e-9))) ** 2)
        s0, sx, sy = wq.sum(0), (wq * dx).sum(0), (wq * dy).sum(0)
        sxx, sxy, syy = (wq * dx * dx).sum(0), (wq * dx * dy).sum(0), (wq * dy * dy).sum(0)
        b0, bx, by = (wq * yq).sum(0), (wq * dx * yq).sum(0), (wq * dy * yq).sum(0)
        a_mat = torch.stack([torch.stack([s0, sx, sy], -1), torch.stack([sx, sxx, sxy], -1),
                             torch.stack([sy, sxy, syy], -1)], -2)  # (h, w, 3, 3)
        rhs = torch.stack([b0, bx, by], -1)[..., None]
        det = torch.linalg.det(a_mat)
        ok = (det.abs() > 1e-6 * s0.clamp_min(1e-9) ** 3) & (s0 >= 6)
        eye = torch.eye(3).expand(h, w, 3, 3)
        sol = torch.linalg.solve(torch.where(ok[..., None, None], a_mat, eye), rhs)[..., 0]
        good = (ok & (sol[..., 0] > 0))[..., None]
        coef = torch.where(good, sol, torch.stack([est, torch.zeros_like(est), torch.zeros_like(est)], -1))
        coef = coef * m[..., None]
        est = torch.where(m > 0, coef[..., 0], y)
    return coef.numpy().astype(np.float64)


def plane_fill(depth: np.ndarray, guide: np.ndarray, sigma_color: float, window: int = 9,
               rel_sigma: float = 0.03, reject: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Fill the holes (NaN) of a measured depth map by extending the local planes of the measured depth.

    Every hole pixel gets up to four hypotheses: the local plane (:func:`plane_fit`, inverse depth) of the
    nearest measured pixel to its left, right, above and below on its row/column, extended to the hole pixel
    (a slanted wall or floor continues as the same plane, not as a constant). A hypothesis outside
    [0.5 x, 2 x] the measured inverse-depth range is dropped. The kept ones are averaged in inverse depth,
    each weighted by ``1 / (1 + distance)`` times the colour similarity of its measured pixel to the hole
    pixel (``exp(-|I_p - I_q|^2 / (2 sigma_color^2))``, ``guide`` HxWx3 in [0, 1]), so the nearer surface of a
    similar colour dominates. ``reject`` (depth hypotheses HxW, NaN where none -> bool HxW) drops the
    hypotheses it flags, e.g. those other cameras see through (:func:`free_space_check`): a foreground surface
    extended over the background it occludes. Pixels with no hypothesis stay NaN (the caller falls back to
    another fill); measured pixels are returned unchanged."""
    d = depth.astype(np.float32).copy()
    valid = np.isfinite(d) & (d > 0)
    if valid.all() or not valid.any():
        return d
    h, w = d.shape
    coef = plane_fit(np.where(valid, d, np.nan), window, rel_sigma)
    vv, uu = np.mgrid[0:h, 0:w]
    inv_valid = 1.0 / d[valid]
    lo, hi = 0.5 * float(inv_valid.min()), 2.0 * float(inv_valid.max())
    g = np.asarray(guide, np.float64)
    num = np.zeros((h, w))
    den = np.zeros((h, w))
    for ny, nx, inv, ok in _plane_hypotheses(valid, coef, lo, hi):
        if reject is not None:
            with np.errstate(divide="ignore"):
                ok = ok & ~reject(np.where(ok, 1.0 / np.where(ok, inv, 1.0), np.nan))
        sim = np.exp(-((g[ny, nx] - g) ** 2).sum(-1) / (2.0 * sigma_color * sigma_color))
        wt = np.where(ok, (sim + 1e-3) / (1.0 + np.abs(uu - nx) + np.abs(vv - ny)), 0.0)
        num += wt * np.where(ok, inv, 0.0)
        den += wt
    fill = ~valid & (den > 0)
    d[fill] = (den[fill] / num[fill]).astype(np.float32)
    d[~valid & ~fill] = np.nan
    return d


def free_space_check(rig: RigDepth, rel: float) -> Callable[[np.ndarray], np.ndarray]:
    """``reject`` for :func:`plane_fill` of ``rig.depth``: a depth hypothesis is rejected where another camera
    of the rig observes a surface more than ``rel`` beyond its point (:func:`free_space_violations`)."""
    k, c2w, obs = np.asarray(rig.k, np.float64), np.asarray(rig.c2w, np.float64), rig.observations
    return lambda hyp: free_space_violations(hyp, k, c2w, obs, rel)


def smooth_filled(depth: np.ndarray, filled: np.ndarray, window: int = 7, rel_sigma: float = 0.05,
                  iterations: int = 2, dilation: int = 2) -> np.ndarray:
    """Replace the ``filled`` pixels of a dense depth map by its robust local plane (:func:`plane_fit` over a
    13 px support sampled every 2nd pixel by default, ``iterations`` times), keeping the others: a fill assembled pixel by pixel from row and column hypotheses
    becomes a smooth surface (no streaks that a renderer's depth-spread test would reject), and it still
    bends at depth edges (the fit's relative weights)."""
    d = depth.astype(np.float32).copy()
    if window < 3 or not filled.any():
        return d
    for _ in range(iterations):
        inv = plane_fit(d, window, rel_sigma, dilation=dilation)[..., 0]
        ok = filled & (inv > 0)
        d[ok] = (1.0 / inv[ok]).astype(np.float32)
    return d


def _nearest_along(valid: np.ndarray, axis: int, reverse: bool) -> np.ndarray:
    """Per pixel, the index along ``axis`` of the nearest valid pixel before it (after it when ``reverse``)
    on its row/column; -1 where there is none."""
    v = np.moveaxis(valid, axis, -1)
    n = v.shape[-1]
    idx = np.broadcast_to(np.arange(n), v.shape)
    if not reverse:
        out = np.maximum.accumulate(np.where(v, idx, -1), axis=-1)
    else:
        out = np.minimum.accumulate(np.where(v, idx, n)[..., ::-1], axis=-1)[..., ::-1]
        out = np.where(out == n, -1, out)
    return np.moveaxis(out, -1, axis)


def _plane_hypotheses(valid: np.ndarray, coef: np.ndarray, lo: float, hi: float):
    """The four directional plane hypotheses of every hole pixel: for the nearest ``valid`` pixel to its
    left, right, above and below (:func:`_nearest_along`), that pixel's local plane ``coef`` (inverse depth,
    :func:`plane_fit`) extended to the hole pixel. Yields ``(ny, nx, inv, ok)`` per direction: the source
    pixel's coordinates, the extended inverse depth, and where it is a usable hypothesis (a hole pixel with a
    source on its line and ``lo < inv < hi``)."""
    h, w = valid.shape
    vv, uu = np.mgrid[0:h, 0:w]
    for axis in (0, 1):
        for rev in (False, True):
            near = _nearest_along(valid, axis, rev)
            has = near >= 0
            ny = np.where(has, near, 0) if axis == 0 else vv
            nx = np.where(has, near, 0) if axis == 1 else uu
            c = coef[ny, nx]
            inv = c[..., 0] + c[..., 1] * (uu - nx) + c[..., 2] * (vv - ny)
            yield ny, nx, inv, ~valid & has & (inv > lo) & (inv < hi)


def cloud_spread(points: np.ndarray) -> float:
    """The median distance of ``points`` (N, 3, finite) from their median: the scene size that plane
    tolerances are relative to."""
    return float(np.median(np.linalg.norm(points - np.median(points, 0), axis=1)))


_PLANE_REFITS = 20  # at most this many inlier-refit rounds per RANSAC plane (they converge in a few)


def dominant_plane_families(points: np.ndarray, max_families: int, inlier_rel: float, min_share: float,
                            iterations: int = 300, parallel_deg: float = 15.0,
                            seed: int = 0) -> list[tuple[np.ndarray, float, float]]:
    """The orientations of the largest planes of ``points`` (N, 3): sequential RANSAC (3-point samples, inliers
    within ``inlier_rel`` x the points' median distance from their median; the plane refitted by SVD of its
    inliers and the inliers re-selected until they stop changing), each plane's inliers removed before the
    next; a plane within ``parallel_deg`` of a family already found (a ceiling of a floor, the opposite wall)
    widens that family's offsets instead of starting one. Returns up to ``max_families`` ``(unit normal, lowest offset, highest offset)`` with ``n . X =
    offset`` on the planes; a plane needs ``min_share`` of the points."""
    pts = np.asarray(points, np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if max_families <= 0 or len(pts) < 50:
        return []
    gen = np.random.default_rng(seed)
    if len(pts) > 20000:
        pts = pts[gen.choice(len(pts), 20000, replace=False)]
    tol = inlier_rel * cloud_spread(pts)
    need = max(3, int(min_share * len(pts)))
    cos_par = np.cos(np.radians(parallel_deg))
    fams: list[list] = []  # [normal, lo, hi]
    rest = pts
    for _ in range(3 * max_families):
        if len(rest) < need:
            break
        idx = gen.integers(0, len(rest), size=(iterations, 3))
        a, b, c = rest[idx[:, 0]], rest[idx[:, 1]], rest[idx[:, 2]]
        nrm = np.cross(b - a, c - a)
        ln = np.linalg.norm(nrm, axis=1)
        ok = ln > 1e-12
        if not ok.any():
            break
        nrm = nrm[ok] / ln[ok, None]
        off = np.einsum("ij,ij->i", nrm, a[ok])
        counts = (np.abs(rest @ nrm.T - off) < tol).sum(0)
        best = int(counts.argmax())
        if counts[best] < need:
            break
        n, h = nrm[best], float(off[best])
        inl = np.abs(rest @ n - h) < tol
        # local optimisation: refit the plane to its inliers and take the inliers of the refit, until they stop
        # changing. One refit keeps much of the 3-point sample's tilt: the inliers are the slab of a thick,
        # noisy surface cut by the tilted sample (measured 0.8 deg on a generated floor whose samples differed
        # only by the CPU's floating-point kernels; after the iteration both agree within 0.1 deg)
        for _ in range(_PLANE_REFITS):
            q = rest[inl]
            centre = q.mean(0)
            n = np.linalg.svd(q - centre, full_matrices=False)[2][-1]
            h = float(centre @ n)
            new = np.abs(rest @ n - h) < tol
            if np.array_equal(new, inl):
                break
            inl = new
        h = float(rest[inl].mean(0) @ n)
        for f in fams:
            dot = float(f[0] @ n)
            if abs(dot) >= cos_par:
                h = h if dot > 0 else -h
                f[1], f[2] = min(f[1], h), max(f[2], h)
                break
        else:
            if len(fams) < max_families:
                fams.append([n, h, h])
        rest = rest[~inl]
    return [(f[0], float(f[1]), float(f[2])) for f in fams]


def family_hypotheses(families: list[tuple[np.ndarray, float, float]], k: np.ndarray, c2w: np.ndarray,
                      size: tuple[int, int], planes: int, rng: tuple[float, float],
                      peaks: list[list[float]] | None = None, peak_halfwidth: float = 0.0,
                      peak_steps: int = 4) -> np.ndarray:
    """Per-pixel inverse depths ``(P, H, W)`` of the planes ``n . X = h`` of every family (``planes`` offsets
    from its lowest to its highest, widened by 5 % of the span and by a step; a family of one plane is that
    plane; none where the offsets are NaN), then around each of the family's ``peaks`` offsets
    (:func:`family_peaks`) ``2 peak_steps + 1`` planes evenly within ``peak_halfwidth`` metres each side (the
    matching cost picks the exact one): the inverse z-depth at which a pixel's ray meets the plane. NaN where
    the plane is behind the camera or outside ``rng`` (metres)."""
    w, h = size
    rays = _world_rays(k, c2w, size)
    centre = c2w[:3, 3]
    lo, hi = 1.0 / rng[1], 1.0 / rng[0]
    out = []
    for f, (n, h0, h1) in enumerate(families):
        nr = rays @ n
        offsets: list[float] = []
        if np.isfinite(h0) and np.isfinite(h1):
            pad = 0.05 * (h1 - h0)
            step = (h1 - h0 + 2 * pad) / max(planes - 1, 1)
            offsets += list(np.linspace(h0 - pad - step, h1 + pad + step, planes)) if h1 > h0 else [h0]
        for pk in peaks[f] if peaks is not None else []:
            offsets += list(pk + np.linspace(-peak_halfwidth, peak_halfwidth, 2 * peak_steps + 1)
                            if peak_halfwidth > 0 else [pk])
        for off in offsets:
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = nr / (off - float(n @ centre))
            out.append(np.where((inv > lo) & (inv < hi), inv, np.nan))
    return np.asarray(out, np.float32).reshape(-1, h, w)


def manhattan_completion(families: list[tuple[np.ndarray, float, float]],
                         max_deg: float = 10.0) -> list[tuple[np.ndarray, float, float]]:
    """``families`` plus, when exactly two were found within ``max_deg`` of perpendicular, the third orthogonal
    orientation (an indoor room: floor and back wall found by RANSAC, the side walls too small to be), with no
    confirmed offsets (NaN): its planes come from :func:`family_peaks` only."""
    if len(families) != 2:
        return list(families)
    n1, n2 = families[0][0], families[1][0]
    if abs(float(n1 @ n2)) > np.sin(np.radians(max_deg)):
        return list(families)
    n3 = np.cross(n1, n2)
    return [*families, (n3 / np.linalg.norm(n3), float("nan"), float("nan"))]


def family_peaks(points: np.ndarray, families: list[tuple[np.ndarray, float, float]], bin_m: float,
                 min_share: float, suppress_bins: int = 3, background: float = 1.0) -> list[list[float]]:
    """Per family, the offsets of the planes its normal's 1-D histogram of ``points`` (N, 3: the rig's
    confirmed points) peaks at, as in Manhattan-world stereo (Furukawa et al., CVPR 2009): bins of ``bin_m``
    metres summed over 3 bins, local maxima holding at least ``min_share`` of the points above their
    ``background`` (the median of the sums 3-10 bins away: the surfaces the normal runs along), the
    strongest first with weaker peaks within ``suppress_bins`` bins dropped, each refined by a mean shift of
    one bin's width (the background still pulls it by up to a bin: :func:`family_hypotheses` sweeps a bin
    each side of it). Finds the ceiling, a box top or a side wall that RANSAC's larger
    ``family_min_share`` leaves out."""
    pts = np.asarray(points, np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    out: list[list[float]] = []
    for n, _, _ in families:
        o = pts @ n
        if len(o) < 50 or bin_m <= 0:
            out.append([])
            continue
        lo, hi = float(o.min()), float(o.max())
        nb = int(np.ceil((hi - lo) / bin_m)) + 1
        if nb > 100000:  # a degenerate bin size for this scene: no peaks rather than a huge histogram
            out.append([])
            continue
        hist = np.bincount(((o - lo) / bin_m).astype(np.int64), minlength=nb).astype(np.float64)
        sm = np.convolve(hist, [1.0, 1.0, 1.0], mode="same")  # a plane's points fall in one or two bins
        left = np.r_[-np.inf, sm[:-1]]
        right = np.r_[sm[1:], -np.inf]
        # the local background: points of the surfaces the normal runs along spread over every offset
        bg = np.array([np.median(np.r_[sm[max(b - 10, 0):max(b - 2, 0)], sm[b + 3:b + 11]])
                       if nb > 6 else 0.0 for b in range(nb)])
        cand = np.flatnonzero((sm >= left) & (sm > right) & (sm - background * bg >= min_share * len(o)))
        chosen: list[int] = []
        for b in cand[np.argsort(-sm[cand], kind="stable")]:
            if all(abs(int(b) - c) > suppress_bins for c in chosen):
                chosen.append(int(b))
        offs: list[float] = []
        for b in sorted(chosen):
            centre = lo + (b + 0.5) * bin_m
            for _ in range(3):  # mean shift over one bin: the background around the peak pulls it less
                near = np.abs(o - centre) <= 0.5 * bin_m
                if not near.any():
                    break
                centre = float(o[near].mean())
            offs.append(centre)
        out.append(offs)
    return out


def bounding_planes(points: np.ndarray, families: list[tuple[np.ndarray, float, float]],
                    peaks: list[list[float]] | None, centres: np.ndarray, tol: float,
                    max_outside: float = 0.01) -> list[tuple[np.ndarray, float]]:
    """The planes of the families (RANSAC offsets and histogram peaks) that enclose the scene: every camera
    centre on one side and at most ``max_outside`` of the confirmed ``points`` more than ``tol`` metres on the
    other (a floor, a ceiling, the walls of a room; not a box top, which has points on both sides). Returned
    as ``(n, h)`` oriented so that the cameras' side is ``n . X < h``."""
    pts = np.asarray(points, np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    out: list[tuple[np.ndarray, float]] = []
    if len(pts) < 50:
        return out
    for f, (n, lo, hi) in enumerate(families):
        offs = [x for x in (lo, hi) if np.isfinite(x)] + (list(peaks[f]) if peaks is not None else [])
        o, oc = pts @ n, np.asarray(centres, np.float64) @ n
        for h in offs:
            if (oc < h - tol).all():
                nn, hh, side = n, h, o > h + tol
            elif (oc > h + tol).all():
                nn, hh, side = -n, -h, o < h - tol
            else:
                continue
            if side.mean() <= max_outside and not any(abs(float(nn @ m) - 1) < 1e-9 and abs(hh - g) < tol
                                                       for m, g in out):
                out.append((np.asarray(nn, np.float64), float(hh)))
    return out


def _bound_depths(d: np.ndarray, k: np.ndarray, c2w: np.ndarray,
                  bounds: list[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel of the depth map ``d``: the z-depth of the nearest enclosing plane its ray leaves the scene
    through (inf where none), the depth of the enclosing plane closest to ``d`` in relative terms and that
    relative difference (NaN / inf where none)."""
    h, w = d.shape
    rays = _world_rays(k, c2w, (w, h))
    centre = np.asarray(c2w, np.float64)[:3, 3]
    limit = np.full((h, w), np.inf)
    snap = np.full((h, w), np.nan)
    best = np.full((h, w), np.inf)
    for n, off in bounds:
        nr = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (off - float(n @ centre)) / nr  # z-depth where the ray meets the plane
            hit = (nr > 0) & (t > 0)
            limit = np.where(hit, np.minimum(limit, t), limit)
            rel = np.where(hit, np.abs(d / t - 1.0), np.inf)
        closer = rel < best
        snap, best = np.where(closer, t, snap), np.where(closer, rel, best)
    return limit, snap, best


def clamp_to_bounds(depth: np.ndarray, k: np.ndarray, c2w: np.ndarray, bounds: list[tuple[np.ndarray, float]],
                    where: np.ndarray, snap_rel: float = 0.0) -> np.ndarray:
    """``depth`` with the pixels ``where`` no farther than the nearest enclosing plane (:func:`bounding_planes`)
    their ray leaves the scene through: a hole filled by extending a wall cannot continue beyond the ceiling.
    ``snap_rel`` > 0: such a pixel within that relative difference of the depth of an enclosing plane on its
    ray (the closest one, not beyond the limit) takes that plane's depth: a filled floor lies on the floor."""
    d = depth.astype(np.float32).copy()
    if not bounds or not where.any():
        return d
    limit, snap, best = _bound_depths(d, k, c2w, bounds)
    sel = where & np.isfinite(d) & (d > limit)
    d[sel] = limit[sel]
    if snap_rel > 0:
        on = where & np.isfinite(d) & (best <= snap_rel) & (snap <= limit)
        d[on] = snap[on]
    return d


def _hypothesis_costs(ref: np.ndarray, srcs: list[np.ndarray], k_ref: np.ndarray, k_srcs: list[np.ndarray],
                      c2w_ref: np.ndarray, c2w_srcs: list[np.ndarray], rng: tuple[float, float],
                      cfg: RigDepthConfig) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function scoring per-pixel inverse-depth hypotheses ``(P, H, W)`` of the reference image: the sweep's
    matching cost (1 - ZNCC of the window warped by each pixel's own hypotheses, the best ``best_k`` other
    cameras; inf where a hypothesis is NaN) and the layers made usable for the warp."""
    import torch

    from gpu_kernels.plane_sweep import zncc_cost_volume

    sweep = cfg.sweep_config()
    dev = torch.device(cfg.device)
    ref_t = torch.from_numpy(np.ascontiguousarray(ref, np.float32)).permute(2, 0, 1).to(dev)
    src_t = torch.stack([torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(2, 0, 1) for x in srcs]).to(dev)
    kr = torch.tensor(np.asarray(k_ref), dtype=torch.float32, device=dev)
    ksr = torch.tensor(np.stack(k_srcs), dtype=torch.float32, device=dev)
    tt = torch.tensor(np.stack([np.linalg.inv(c) @ c2w_ref for c in c2w_srcs]), dtype=torch.float32, device=dev)
    mid = 0.5 * (1.0 / rng[1] + 1.0 / rng[0])

    def costs(hyp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        usable = np.isfinite(hyp)
        # a pixel with no hypothesis still needs a positive value for the warp; its cost is discarded
        safe = np.where(usable, hyp, mid).astype(np.float32)
        cost, _ = zncc_cost_volume(ref_t, src_t, kr, ksr, tt, torch.from_numpy(safe).to(dev),
                                   window=sweep.window, best_k=sweep.best_k, texture_sigma=sweep.texture_sigma)
        return np.where(usable, cost.cpu().numpy(), np.inf), safe

    return costs


def refine_peak_offsets(families: list[tuple[np.ndarray, float, float]], peaks: list[list[float]],
                        kept: list[np.ndarray], imgs: list[np.ndarray], ks: list[np.ndarray],
                        poses: list[np.ndarray], ranges: list[tuple[float, float]], cfg: RigDepthConfig,
                        halfwidth: float, min_pixels: int = 200) -> list[list[float]]:
    """The histogram peaks of every family (``peaks[f]``: offsets along ``families[f]``'s normal, from
    :func:`family_peaks`, which the points of the surfaces the normal runs along pull by up to a bin) refined
    photometrically. Each camera's confirmed pixels (``kept``, z-depth at the size of ``imgs``) whose point lies
    within ``halfwidth / 2`` metres of a peak plane (the nearest one) score ``2 n + 1`` parallel planes evenly
    within ``halfwidth`` metres each side of it (``n = peak_refine_steps``; each pixel's window warped by the
    plane, the sweep's cost against the other cameras over ``ranges[i]``); the costs summed over all those
    pixels of all cameras have their minimum interpolated by a parabola through it and its neighbours. A peak
    keeps its offset when fewer than ``min_pixels`` pixels lie on it or the minimum is at the end of the range
    (measured on the egoexo_rig bench's take: the seven peaks 0.1-39 mm from the true planes, mean 11 mm,
    before; 1-4 mm, mean 2.4 mm, after)."""
    steps = cfg.peak_refine_steps
    flat = [(f, j) for f, offs in enumerate(peaks) for j in range(len(offs))]
    if steps <= 0 or halfwidth <= 0 or not flat:
        return [list(p) for p in peaks]
    grid = np.linspace(-halfwidth, halfwidth, 2 * steps + 1)
    total = np.zeros((len(flat), len(grid)))
    count = np.zeros(len(flat), np.int64)
    for i in range(len(imgs)):
        d = kept[i]
        if not np.isfinite(d).any():
            continue
        size = (d.shape[1], d.shape[0])
        # which peak plane a confirmed pixel lies on: the nearest, within half a histogram bin (the points
        # the peak was found from)
        vv, uu = np.nonzero(np.isfinite(d))
        pts = _points_world(d, ks[i], poses[i])
        dist = np.stack([np.abs(pts @ families[f][0] - peaks[f][j]) for f, j in flat])
        owner = np.full(d.shape, -1)
        near = dist.min(0) <= 0.5 * halfwidth
        owner[vv[near], uu[near]] = dist.argmin(0)[near]
        on = owner >= 0
        if not on.any():
            continue
        others = [j for j in range(len(imgs)) if j != i]
        costs = _hypothesis_costs(imgs[i], [imgs[o] for o in others], ks[i], [ks[o] for o in others], poses[i],
                                  [poses[o] for o in others], ranges[i], cfg)
        for p, (f, j) in enumerate(flat):
            sel = on & (owner == p)
            if not sel.any():
                continue
            hyp = family_hypotheses([(families[f][0], np.nan, np.nan)], ks[i], poses[i], size, 1, ranges[i],
                                    [[peaks[f][j]]], halfwidth, steps)
            c = costs(hyp)[0][:, sel]
            ok = np.isfinite(c).all(0)
            total[p] += c[:, ok].sum(1)
            count[p] += int(ok.sum())
    out = [list(p) for p in peaks]
    for p, (f, j) in enumerate(flat):
        if count[p] < min_pixels:
            continue
        m = int(total[p].argmin())
        if m == 0 or m == len(grid) - 1:
            continue
        a, b, c = total[p][m - 1], total[p][m], total[p][m + 1]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den > 0 else 0.0
        out[f][j] = float(peaks[f][j] + grid[m] + shift * (grid[1] - grid[0]))
    return out


def propagate_planes(depth: np.ndarray, ref: np.ndarray, srcs: list[np.ndarray], k_ref: np.ndarray,
                     k_srcs: list[np.ndarray], c2w_ref: np.ndarray, c2w_srcs: list[np.ndarray],
                     rng: tuple[float, float], cfg: RigDepthConfig,
                     families: list[tuple[np.ndarray, float, float]] | None = None,
                     peaks: list[list[float]] | None = None, peak_halfwidth: float = 0.0) -> np.ndarray:
    """Grow the confident depth into its holes, PatchMatch-like, with a photometric check.

    Every hole pixel gets up to four hypotheses: the local plane (:func:`plane_fit`) of the nearest measured
    pixel to its left, right, above and below on its row/column, extended to the hole pixel. Each is scored
    with the sweep's matching cost (ZNCC against the best ``best_k`` other cameras, the window warped by the
    hypotheses of its own pixels, i.e. by the slanted plane); the best one is kept where its cost is below
    ``propagate_cost`` and it lies in the sweep range. ``propagate_rounds`` rounds, each from the depth the
    previous one grew. Nothing is invented where the images disagree: a kept value is a measured one.

    ``families`` (:func:`dominant_plane_families`): before the rounds, every hole pixel is also swept along
    the scene's dominant plane orientations (:func:`family_hypotheses`: a floor seen at a grazing angle is one
    plane of a family, not many fronto-parallel ones), with the same cost test; ``peaks``
    (:func:`family_peaks`) adds each family's histogram-peak planes, ``peak_halfwidth`` metres either side."""
    d = depth.astype(np.float32).copy()
    lo, hi = 1.0 / rng[1], 1.0 / rng[0]
    costs = _hypothesis_costs(ref, srcs, k_ref, k_srcs, c2w_ref, c2w_srcs, rng, cfg)

    def fill_best(holes: np.ndarray, scored: tuple[np.ndarray, np.ndarray]) -> bool:
        """Each hole pixel takes its lowest-cost hypothesis (``scored``: :func:`costs` of the hypotheses)
        where the cost passes the test."""
        cost, safe = scored
        best = cost.argmin(0)
        bc = np.take_along_axis(cost, best[None], 0)[0]
        take = holes & (bc < cfg.propagate_cost)
        inv_best = np.take_along_axis(safe, best[None], 0)[0]
        d[take] = 1.0 / inv_best[take]
        return bool(take.any())

    if families:
        fam = family_hypotheses(families, np.asarray(k_ref, np.float64), np.asarray(c2w_ref, np.float64),
                                (d.shape[1], d.shape[0]), cfg.family_planes, rng, peaks, peak_halfwidth)
        valid = np.isfinite(d)
        scored = costs(fam) if len(fam) else None
        if scored is not None and cfg.family_snap_rel > 0 and valid.any():
            # measured pixels: the family plane within family_snap_rel of the measured depth whose (slanted)
            # window matches best replaces the measured depth where it matches better than the measured
            # depth's own window (a fronto-parallel sweep plane, warped by the measured neighbourhood)
            own_cost = costs((1.0 / d)[None])[0][0]  # d is NaN at the holes
            in_band = np.abs(scored[1] * d[None] - 1.0) <= cfg.family_snap_rel
            band_cost = np.where(in_band, scored[0], np.inf)
            best = band_cost.argmin(0)
            bc = np.take_along_axis(band_cost, best[None], 0)[0]
            snap = valid & (bc < own_cost)
            d[snap] = 1.0 / np.take_along_axis(scored[1], best[None], 0)[0][snap]
        holes = ~valid
        if holes.any() and scored is not None:
            fill_best(holes, scored)
    for _ in range(cfg.propagate_rounds):
        valid = np.isfinite(d)
        holes = ~valid
        if not holes.any() or not valid.any():
            break
        coef = plane_fit(d, cfg.smooth_window if cfg.smooth_window >= 3 else 7, cfg.smooth_sigma)
        hyp = np.stack([np.where(ok, inv, np.nan) for _, _, inv, ok in _plane_hypotheses(valid, coef, lo, hi)])
        if not fill_best(holes, costs(hyp)):
            break
    return d


def _sweep_camera(i: int, imgs: list[np.ndarray], ks: list[np.ndarray], poses: list[np.ndarray],
                  rng: tuple[float, float], cfg: RigDepthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Depth and confidence of camera ``i`` against all the others over ``rng`` (metres)."""
    others = [j for j in range(len(imgs)) if j != i]
    d, c = sweep_frame(imgs[i], [imgs[j] for j in others], ks[i], [ks[j] for j in others], poses[i],
                       [poses[j] for j in others], rng, cfg.sweep_config())
    d = np.where(np.isfinite(d) & (c >= cfg.min_confidence), d, np.nan).astype(np.float32)
    return d, c


def _consistent(i: int, depths: list[np.ndarray], ks: list[np.ndarray], poses: list[np.ndarray],
                cfg: RigDepthConfig) -> np.ndarray:
    """Per pixel of camera ``i``, how many other cameras' depths agree with its own."""
    errs = consistency_errors(depths[i], ks[i], poses[i], [(depths[j], ks[j], poses[j]) for j in range(len(depths))
                                                           if j != i], cfg.consistency_rel, cfg.consistency_px)
    return (errs < 1.0).sum(0).astype(np.int32)


def _kept(i: int, depths: list[np.ndarray], ks: list[np.ndarray], poses: list[np.ndarray],
          cfg: RigDepthConfig) -> np.ndarray:
    """Camera ``i``'s depth where the rig's consistency check keeps it, NaN elsewhere."""
    keep = np.isfinite(depths[i]) & (_consistent(i, depths, ks, poses, cfg) >= max(1, cfg.min_consistent))
    return np.where(keep, depths[i], np.nan).astype(np.float32)


def _grown(i: int, kept: np.ndarray, imgs: list[np.ndarray], ks: list[np.ndarray], poses: list[np.ndarray],
           rng: tuple[float, float], cfg: RigDepthConfig, families, peaks, peak_halfwidth) -> np.ndarray:
    """Camera ``i``'s kept depth grown into its holes by :func:`propagate_planes`."""
    others = [j for j in range(len(imgs)) if j != i]
    return propagate_planes(kept, imgs[i], [imgs[j] for j in others], ks[i], [ks[j] for j in others], poses[i],
                            [poses[j] for j in others], rng, cfg, families, peaks, peak_halfwidth)


def _observed(kept: np.ndarray) -> np.ndarray:
    """What a camera certainly observes, for free-space tests: its depth where another camera confirms it
    (``kept``, :func:`_kept`), eroded by one pixel (the smallest depth of its 3x3 neighbourhood; NaN where the
    neighbourhood has a hole), so that a point projected next to a depth edge is tested against the nearer
    surface."""
    eroded = cv2.erode(np.nan_to_num(kept, nan=0.0), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0.0)
    return np.where(eroded > 0, eroded, np.nan).astype(np.float32)


def rig_depth(views: Sequence[RigView], ref: str, config: RigDepthConfig | None = None,
              cams_depth: dict[str, tuple] | None = None) -> RigDepth:
    """Metric depth of camera ``ref`` from the calibrated rig ``views`` (at least two cameras, all at the same
    instant or all static backgrounds). ``cams_depth``: a cache ``cam -> (depth, k)`` of the other cameras'
    sweep depths at the sweep resolution (filled as they are computed), so that a whole rig costs one sweep per
    camera."""
    cfg = config or RigDepthConfig()
    t0 = time.perf_counter()
    names = [v.cam for v in views]
    if ref not in names:
        raise InputError(f"rig depth: reference camera {ref!r} is not in the rig ({', '.join(names)})")
    if len(views) < 2:
        raise InputError(f"rig depth of {ref}: the take has no other calibrated exo camera (a rig needs two)")
    if len(set(names)) != len(names):
        raise InputError(f"rig depth: duplicate cameras in {names}")
    for v in views:
        if v.image.ndim != 3 or v.image.shape[2] != 3:
            raise InputError(f"rig depth: camera {v.cam} image must be HxWx3, got {v.image.shape}")
        if not np.isfinite(v.c2w).all() or not np.isfinite(v.k).all():
            raise InputError(f"rig depth: camera {v.cam} has a non-finite calibration")
    # every camera in name order, whichever is the reference: what is cached per camera (its sweep, its range,
    # its grown depth) is then the same for every reference camera and every order of calls
    views = sorted(views, key=lambda v: v.cam)
    r = [v.cam for v in views].index(ref)
    H, W = views[r].image.shape[:2]
    size = mvs_size(W, H, cfg.long_side)
    imgs, ks = zip(*(_resized(v, size) for v in views), strict=True)
    imgs, ks = list(imgs), list(ks)
    poses = [np.asarray(v.c2w, np.float64) for v in views]
    cache = cams_depth if cams_depth is not None else {}
    # per camera at the sweep size: its sweep (depth, confidence, range) and its grown depth ("grown_" keys)
    keys = [f"{v.cam}@{size[0]}x{size[1]}" for v in views]
    if not all(k in cache for k in keys):
        found = _wide_sweeps(imgs, ks, poses, cfg)
        for i in range(len(views)):
            rng = found[i] or (cfg.near, cfg.far)
            if keys[i] not in cache:
                d, c = _sweep_camera(i, imgs, ks, poses, rng, cfg)
                cache[keys[i]] = (d, c, [round(rng[0], 4), round(rng[1], 4)])
    depths = [cache[k][0] for k in keys]
    conf_ref = cache[keys[r]][1]
    ranges = {v.cam: cache[keys[i]][2] for i, v in enumerate(views)}
    families: list = []
    peaks: list | None = None
    peak_bin = 0.0
    bounds: list = []
    if cfg.propagate_rounds > 0 or cfg.plane_families > 0:
        # every camera's confirmed depth grown into its holes (the scene's dominant plane orientations, then
        # the neighbours' local planes; photometrically checked), then the rig's consistency check again: a
        # grown depth counts only where another camera's (grown) depth agrees
        kept = [_kept(i, depths, ks, poses, cfg) for i in range(len(views))]
        if cfg.plane_families > 0:
            cloud = np.concatenate([_points_world(kept[i], ks[i], poses[i]) for i in range(len(views))])
            families = dominant_plane_families(cloud, cfg.plane_families, cfg.family_inlier_rel,
                                               cfg.family_min_share)
            if cfg.manhattan:
                families = manhattan_completion(families)
            if cfg.peak_share > 0 and families:
                finite = cloud[np.isfinite(cloud).all(1)]
                peak_bin = 2 * cfg.family_inlier_rel * cloud_spread(finite)
                peaks = family_peaks(finite, families, peak_bin, cfg.peak_share)
                # refined once per rig (the same for every reference camera), kept in the cache as
                # (offsets, their families, no range)
                pkey = f"peaks@{size[0]}x{size[1]}"
                if pkey not in cache:
                    refined = refine_peak_offsets(families, peaks, kept, imgs, ks, poses,
                                                  [tuple(cache[k][2] or (cfg.near, cfg.far)) for k in keys], cfg,
                                                  peak_bin)
                    cache[pkey] = (np.array([x for offs in refined for x in offs], np.float64),
                                   np.array([f for f, offs in enumerate(refined) for _ in offs], np.float32), None)
                offs, fam_of = cache[pkey][0], cache[pkey][1]
                peaks = [[float(x) for x, g in zip(offs, fam_of, strict=True) if int(g) == f]
                         for f in range(len(families))]
        for i in range(len(views)):
            if f"grown_{keys[i]}" not in cache:
                g = _grown(i, kept[i], imgs, ks, poses, tuple(cache[keys[i]][2] or (cfg.near, cfg.far)), cfg,
                           families, peaks, peak_bin)
                cache[f"grown_{keys[i]}"] = (g, np.zeros(0, np.float32), None)
        depths = [cache[f"grown_{k}"][0] for k in keys]
    support = _consistent(r, depths, ks, poses, cfg)
    keep = np.isfinite(depths[r]) & (support >= max(1, cfg.min_consistent))
    d_lo = np.where(keep, depths[r], np.nan).astype(np.float32)
    # every camera's depth where another camera confirms it: the enclosing planes and the free space
    confirmed = [d_lo if i == r else _kept(i, depths, ks, poses, cfg) for i in range(len(views))]
    if cfg.bounding_planes and families:
        # the enclosing planes from what the rig confirms after the growth (refined to the families)
        grown = np.concatenate([_points_world(confirmed[i], ks[i], poses[i]) for i in range(len(views))])
        grown = grown[np.isfinite(grown).all(1)]
        if len(grown) >= 50:  # tolerance: twice the RANSAC inlier band (the confirmed depth's noise far away)
            bounds = bounding_planes(grown, families, peaks, np.stack([p[:3, 3] for p in poses]),
                                     2 * cfg.family_inlier_rel * cloud_spread(grown))
    if cfg.speckle_size > 0:
        d_lo = remove_speckles(d_lo, int(cfg.speckle_size * d_lo.size), cfg.speckle_rel)
        keep = np.isfinite(d_lo)
    if cfg.smooth_window >= 3:
        d_lo = plane_smooth(d_lo, cfg.smooth_window, cfg.smooth_sigma)
    conf_lo = np.where(keep, conf_ref * support / (len(views) - 1), 0.0).astype(np.float32)
    k_out = np.asarray(views[r].k, np.float64)
    if (W, H) != size:
        # back to the image resolution: bilinear on smooth surfaces (no staircase on a slanted floor), nearest
        # across depth edges and next to holes (no depth blended between surfaces)
        from ..virtual_views import warp_depth

        mx, my = np.meshgrid((np.arange(W, dtype=np.float32) + 0.5) * (size[0] / W) - 0.5,
                             (np.arange(H, dtype=np.float32) + 0.5) * (size[1] / H) - 0.5)
        d_out = warp_depth(d_lo, np.clip(mx, 0, size[0] - 1), np.clip(my, 0, size[1] - 1), edge_rel=0.02)
        conf = cv2.resize(conf_lo, (W, H), interpolation=cv2.INTER_NEAREST)
        sup = cv2.resize(support.astype(np.float32), (W, H), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    else:
        d_out, conf, sup = d_lo, conf_lo, support
    covered = np.isfinite(d_out)
    report = {
        "camera": ref, "others": [v.cam for v in views if v.cam != ref], "scale": SCALE, "source": SOURCE,
        "covered_fraction": round(float(covered.mean()), 4),
        "swept_fraction": round(float(np.isfinite(depths[r]).mean()), 4),
        "seen_by": {str(n): round(float((sup >= n).mean()), 4) for n in range(1, len(views))},
        "depth_range_m": ranges.get(ref),
        "median_depth_m": round(float(np.nanmedian(d_out)), 4) if covered.any() else None,
        "mean_confidence": round(float(conf[covered].mean()), 4) if covered.any() else 0.0,
        "plane_families": [{"normal": [round(float(x), 4) for x in n],
                            "offsets_m": [round(lo, 4), round(hi, 4)] if np.isfinite(lo) else None,
                            "peak_offsets_m": [round(x, 4) for x in peaks[f]] if peaks is not None else []}
                           for f, (n, lo, hi) in enumerate(families)],
        "bounding_planes": [{"normal": [round(float(x), 4) for x in n], "offset_m": round(float(h), 4)}
                            for n, h in bounds],
        "sweep_size": list(size), "image_size": [W, H], "seconds": round(time.perf_counter() - t0, 2),
    }
    log.info("rig depth of %s against %s: %.1f%% covered (%s, %s)", ref, ", ".join(report["others"]),
             100 * report["covered_fraction"], SCALE, SOURCE)
    obs = [(_observed(confirmed[i]), ks[i], poses[i]) for i in range(len(views)) if i != r]
    return RigDepth(ref, d_out.astype(np.float32), conf.astype(np.float32), sup, k_out, report, obs, poses[r],
                    bounds)
