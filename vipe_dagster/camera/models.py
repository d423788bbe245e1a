"""The batched torch camera models (project, unproject, Jacobians, FoV masks, rectification maps), imported
lazily by :mod:`vipe_dagster.camera` so that readers of artifacts do not load torch."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor

from .basic import (
    PANORAMA_FOV_NOTE,
    focal_for_fov,
)


class CameraModel(ABC):
    """Base class; subclasses define ``NAME``, ``PARAM_NAMES`` and the projection."""

    NAME: str = ""
    PARAM_NAMES: tuple[str, ...] = ()
    # attribute holding a per-camera validity limit tensor computed from the params at construction (the
    # fisheye's theta, Brown's radius, MEI's normalised radius); ``_new``/``to`` carry it along
    LIMIT_ATTR: str | None = None

    def __init__(self, params: Tensor | list[float] | tuple[float, ...], min_depth: float = 1e-6) -> None:
        p = torch.as_tensor(params)
        if not p.is_floating_point():
            p = p.to(torch.get_default_dtype())
        if p.ndim == 0 or p.shape[-1] != len(self.PARAM_NAMES):
            raise ValueError(
                f"{self.NAME} camera: expected params of shape (..., {len(self.PARAM_NAMES)}) "
                f"[{', '.join(self.PARAM_NAMES)}], got {tuple(p.shape)}"
            )
        self.params = p
        self.min_depth = float(min_depth)

    # ------------------------------------------------------------------ helpers
    @property
    def num_params(self) -> int:
        return len(self.PARAM_NAMES)

    @property
    def dtype(self) -> torch.dtype:
        return self.params.dtype

    @property
    def device(self) -> torch.device:
        return self.params.device

    def _new(self, params: Tensor) -> CameraModel:
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.params = params
        if self.LIMIT_ATTR is not None:
            setattr(out, self.LIMIT_ATTR, getattr(self, self.LIMIT_ATTR).to(params.device, params.dtype))
        return out

    def _limit(self, nd: int, like: Tensor) -> Tensor:
        """The per-camera limit (``LIMIT_ATTR``) reshaped to broadcast against data with ``nd`` batch dims."""
        v = getattr(self, self.LIMIT_ATTR).to(like.device, like.dtype)
        return v.reshape(tuple(v.shape) + (1,) * (nd - v.ndim))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> CameraModel:
        return self._new(self.params.to(device=device, dtype=dtype))

    def _pget(self, i: int | slice, ndim: int, like: Tensor) -> Tensor:
        """Parameter(s) ``i`` reshaped to broadcast against data with ``ndim`` batch dims."""
        v = self.params[..., i].to(device=like.device, dtype=like.dtype)
        extra = ndim - (self.params.ndim - 1)
        if extra < 0:
            raise ValueError(
                f"{self.NAME} camera: params batch shape {tuple(self.params.shape[:-1])} has more dims than "
                f"the input batch shape {tuple(like.shape[:-1])}"
            )
        if isinstance(i, slice):
            return v.reshape(tuple(v.shape[:-1]) + (1,) * extra + (v.shape[-1],))
        return v.reshape(tuple(v.shape) + (1,) * extra)

    @staticmethod
    def _check(x: Tensor, n: int, what: str) -> None:
        if x.ndim == 0 or x.shape[-1] != n:
            raise ValueError(f"expected {what} of shape (..., {n}), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ API
    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Camera-frame points ``(..., 3)`` -> pixels ``(..., 2)`` and validity ``(...)``."""
        uv, valid, _, _ = self._project(points, jacobians=False)
        return uv, valid

    def project_with_jacobians(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Like :meth:`project`, plus ``d uv/d point (..., 2, 3)`` and ``d uv/d params (..., 2, P)``."""
        uv, valid, jp, jk = self._project(points, jacobians=True)
        assert jp is not None and jk is not None
        return uv, valid, jp, jk

    def unproject(self, uv: Tensor, unit_norm: bool = False) -> Tensor:
        """Pixels ``(..., 2)`` -> rays ``(..., 3)``: unit-z by default, unit-length if ``unit_norm``."""
        return self.unproject_with_valid(uv, unit_norm)[0]

    def unproject_with_valid(self, uv: Tensor, unit_norm: bool = False) -> tuple[Tensor, Tensor]:
        """Rays and a validity mask (False where the pixel lies outside the model's valid field of view or
        the iterative inversion did not converge)."""
        self._check(uv, 2, "pixels")
        rays, valid = self._unproject_rays(uv)
        if unit_norm:
            return rays / torch.linalg.vector_norm(rays, dim=-1, keepdim=True).clamp_min(1e-300), valid
        z = rays[..., 2]
        front = z > 1e-12  # a unit-z ray only exists in front of the camera (wide-angle models see behind)
        rays = rays / torch.where(front, z, torch.ones_like(z))[..., None]
        return rays, valid & front

    def _unproject_rays(self, uv: Tensor) -> tuple[Tensor, Tensor]:
        """Rays ``(..., 3)`` (any positive scale) and validity; the default lifts normalised coordinates."""
        a, b, valid = self._unproject_normalized(uv)
        return torch.stack([a, b, torch.ones_like(a)], dim=-1), valid

    def scaled(self, s: float) -> CameraModel:
        """Camera for the image resized by factor ``s`` (``f' = s f``, ``c' = s (c + 0.5) - 0.5``)."""
        p = self.params.clone()
        for i, name in enumerate(self.PARAM_NAMES):
            if name in ("f", "fx", "fy"):
                p[..., i] = p[..., i] * s
            elif name in ("cx", "cy"):
                p[..., i] = s * (p[..., i] + 0.5) - 0.5
        return self._new(p)

    # ------------------------------------------------------------------ defined by each model
    @abstractmethod
    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Pixels, validity and (with ``jacobians``) d uv / d point and d uv / d params."""

    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised coordinates ``a = x/z``, ``b = y/z`` and validity of pixels ``uv`` (models whose rays
        all lie in front of the camera); wide-angle models override :meth:`_unproject_rays` instead."""
        raise NotImplementedError

    def equivalent_pinhole(self) -> Tensor:
        """``(..., 4)`` ``[fx, fy, cx, cy]`` of the pinhole that agrees with the camera at its principal point
        (same first-order projection of the optical axis's neighbourhood)."""
        return self.params[..., :4].clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={self.params.tolist()})"


def _safe_depth(points: Tensor, min_depth: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x, y, z = points.unbind(-1)
    valid = z > min_depth
    zs = torch.where(valid, z, torch.ones_like(z))
    return x, y, zs, valid


class PinholeCamera(CameraModel):
    """Pinhole ``[fx, fy, cx, cy]``: ``u = fx x/z + cx``, ``v = fy y/z + cy``."""

    NAME = "pinhole"
    PARAM_NAMES = ("fx", "fy", "cx", "cy")

    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        self._check(points, 3, "points")
        nd = points.ndim - 1
        fx, fy, cx, cy = (self._pget(i, nd, points) for i in range(4))
        x, y, z, valid = _safe_depth(points, self.min_depth)
        iz = 1.0 / z
        a, b = x * iz, y * iz
        uv = torch.stack([fx * a + cx, fy * b + cy], dim=-1)
        if not jacobians:
            return uv, valid, None, None
        zero = torch.zeros_like(a)
        one = torch.ones_like(a)
        jp = torch.stack(
            [fx * iz, zero, -fx * a * iz, zero, fy * iz, -fy * b * iz], dim=-1
        ).reshape(*a.shape, 2, 3)
        jk = torch.stack([a, zero, one, zero, zero, b, zero, one], dim=-1).reshape(*a.shape, 2, 4)
        return uv, valid, jp, jk

    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        nd = uv.ndim - 1
        fx, fy, cx, cy = (self._pget(i, nd, uv) for i in range(4))
        a = (uv[..., 0] - cx) / fx
        b = (uv[..., 1] - cy) / fy
        return a, b, torch.isfinite(a) & torch.isfinite(b)

    def K(self) -> Tensor:
        """``(..., 3, 3)`` intrinsic matrix."""
        fx, fy, cx, cy = self.params.unbind(-1)
        o, i = torch.zeros_like(fx), torch.ones_like(fx)
        return torch.stack([fx, o, cx, o, fy, cy, o, o, i], dim=-1).reshape(*fx.shape, 3, 3)


# ------------------------------------------------------------------------------------------- fisheye
_SMALL_R = 1e-3
_THETA_SCAN = 4096


def _radial(a: Tensor, b: Tensor, ks: list[Tensor], jacobians: bool) -> dict[str, Tensor]:
    """Equidistant-polynomial radial model: ``theta = atan(r)``, ``theta_d = theta (1 + sum k_i
    theta^(2i+2))``, ``(xr, yr) = theta_d / r (a, b)``; with derivatives w.r.t. ``(a, b)`` and ``k_i``."""
    r2 = a * a + b * b
    r = torch.sqrt(r2)
    small = r < _SMALL_R
    rs = torch.where(small, torch.full_like(r, 1.0), r)
    theta = torch.atan(r)
    t2 = theta * theta
    poly = torch.ones_like(r)
    dpoly = torch.ones_like(r)  # d theta_d / d theta
    tp = torch.ones_like(r)
    for i, k in enumerate(ks):
        tp = tp * t2  # theta^(2i+2)
        poly = poly + k * tp
        dpoly = dpoly + (2 * i + 3) * k * tp
    theta_d = theta * poly
    k0 = ks[0] if ks else torch.zeros_like(r)
    k1 = ks[1] if len(ks) > 1 else torch.zeros_like(r)
    g = torch.where(small, 1 + (k0 - 1.0 / 3) * r2 + (0.2 - k0 + k1) * r2 * r2, theta_d / rs)
    out = {"xr": g * a, "yr": g * b, "theta": theta, "dpoly": dpoly}
    if not jacobians:
        return out
    # q = g'(r) / r
    q = torch.where(small, 2 * (k0 - 1.0 / 3) + 4 * (0.2 - k0 + k1) * r2,
                    (dpoly / (1 + rs * rs) - theta_d / rs) / (rs * rs))
    out["j_ab"] = torch.stack([g + q * a * a, q * a * b, q * a * b, g + q * b * b], -1).reshape(*a.shape, 2, 2)
    # d(xr, yr)/dk_i = theta^(2i+3)/r (a, b) = (theta/r) theta^(2i+2) (a, b)
    t_over_r = torch.where(small, 1 - r2 / 3, theta / rs)
    cols = []
    tp = torch.ones_like(r)
    for _ in ks:
        tp = tp * t2
        c = t_over_r * tp
        cols.append(torch.stack([c * a, c * b], -1))
    out["j_k"] = torch.stack(cols, -1) if cols else a.new_zeros(*a.shape, 2, 0)
    return out


def _theta_max(ks: Tensor, cap: float) -> Tensor:
    """Largest theta in [0, cap] up to which ``theta_d(theta)`` is increasing, per camera ``(...,)``."""
    th = torch.linspace(0.0, cap, _THETA_SCAN, dtype=ks.dtype, device=ks.device)
    t2 = th * th
    d = torch.ones(*ks.shape[:-1], _THETA_SCAN, dtype=ks.dtype, device=ks.device)
    tp = torch.ones_like(th)
    for i in range(ks.shape[-1]):
        tp = tp * t2
        d = d + (2 * i + 3) * ks[..., i : i + 1] * tp
    bad = d <= 0
    last = torch.full(bad.shape[:-1], _THETA_SCAN - 1, device=ks.device, dtype=torch.long)
    idx = torch.where(bad.any(-1), (bad.to(torch.int8).argmax(-1) - 1).clamp_min(0), last)
    return th[idx]


class _RadialFisheye(CameraModel):
    """Shared machinery of the fisheye models (``theta = atan(r)`` with an odd polynomial in theta)."""

    K_SLICE: slice = slice(0, 0)
    NEWTON_ITERS = 30
    LIMIT_ATTR = "theta_limit"

    def __init__(self, params: Tensor | list[float] | tuple[float, ...], min_depth: float = 1e-6,
                 max_theta: float | None = None) -> None:
        """``max_theta`` (radians, < pi/2) optionally limits the valid field of view further."""
        super().__init__(params, min_depth)
        cap = math.pi / 2 - 1e-6 if max_theta is None else min(float(max_theta), math.pi / 2 - 1e-6)
        self.theta_limit = _theta_max(self.params[..., self.K_SLICE], cap)

    def _ks(self, nd: int, like: Tensor) -> list[Tensor]:
        return [self._pget(i, nd, like) for i in range(self.K_SLICE.start, self.K_SLICE.stop)]

    def _invert_radial(self, xr: Tensor, yr: Tensor, ks: list[Tensor], nd: int) -> tuple[Tensor, Tensor, Tensor]:
        """Solve ``theta_d(theta) = |(xr, yr)|`` by Newton; returns (a, b, valid)."""
        rd = torch.sqrt(xr * xr + yr * yr)
        lim = self._limit(nd, xr)
        theta = torch.minimum(rd, lim)
        for _ in range(self.NEWTON_ITERS):
            t2 = theta * theta
            poly = torch.ones_like(theta)
            dpoly = torch.ones_like(theta)
            tp = torch.ones_like(theta)
            for i, k in enumerate(ks):
                tp = tp * t2
                poly = poly + k * tp
                dpoly = dpoly + (2 * i + 3) * k * tp
            step = (theta * poly - rd) / torch.where(dpoly.abs() > 1e-12, dpoly, torch.ones_like(dpoly))
            theta = torch.minimum(torch.clamp_min(theta - step, 0.0), lim)
        t2 = theta * theta
        poly = torch.ones_like(theta)
        tp = torch.ones_like(theta)
        for k in ks:
            tp = tp * t2
            poly = poly + k * tp
        resid = (theta * poly - rd).abs()
        tol = 1e-9 if xr.dtype == torch.float64 else 1e-5
        valid = (resid <= tol * (1 + rd)) & (theta < lim)
        small = rd < 1e-12
        scale = torch.where(small, torch.ones_like(rd), torch.tan(theta) / torch.where(small, torch.ones_like(rd), rd))
        return xr * scale, yr * scale, valid


class KannalaBrandtCamera(_RadialFisheye):
    """Kannala-Brandt / OpenCV fisheye ``[fx, fy, cx, cy, k1, k2, k3, k4]`` (Ego-Exo4D ``gopro_calibs.csv``
    ``KANNALABRANDTK3``): ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``,
    ``u = fx theta_d/r x/z + cx``, ``v = fy theta_d/r y/z + cy`` (OpenCV ``cv2.fisheye`` without skew)."""

    NAME = "kannala_brandt"
    PARAM_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")
    K_SLICE = slice(4, 8)

    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        self._check(points, 3, "points")
        nd = points.ndim - 1
        fx, fy, cx, cy = (self._pget(i, nd, points) for i in range(4))
        x, y, z, valid = _safe_depth(points, self.min_depth)
        iz = 1.0 / z
        a, b = x * iz, y * iz
        rad = _radial(a, b, self._ks(nd, points), jacobians)
        valid = valid & (rad["theta"] <= self._limit(nd, points))
        uv = torch.stack([fx * rad["xr"] + cx, fy * rad["yr"] + cy], -1)
        if not jacobians:
            return uv, valid, None, None
        fdiag = torch.stack([fx, fy], -1)[..., :, None]
        zero = torch.zeros_like(a)
        dab = torch.stack([iz, zero, -a * iz, zero, iz, -b * iz], -1).reshape(*a.shape, 2, 3)
        jp = fdiag * (rad["j_ab"] @ dab)
        one = torch.ones_like(a)
        jk_lin = torch.stack([rad["xr"], zero, one, zero, zero, rad["yr"], zero, one], -1).reshape(*a.shape, 2, 4)
        jk = torch.cat([jk_lin, fdiag * rad["j_k"]], -1)
        return uv, valid, jp, jk

    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        nd = uv.ndim - 1
        fx, fy, cx, cy = (self._pget(i, nd, uv) for i in range(4))
        xr = (uv[..., 0] - cx) / fx
        yr = (uv[..., 1] - cy) / fy
        return self._invert_radial(xr, yr, self._ks(nd, uv), nd)


class Fisheye624Camera(_RadialFisheye):
    """Aria ``FisheyeRadTanThinPrism`` / projectaria ``FISHEYE624`` with 15 parameters
    ``[f, cx, cy, k0..k5, p0, p1, s0..s3]`` (single focal), as in ``/specs/egox_renderer.md`` section 2.6:
    ``a = x/z, b = y/z, r = |(a, b)|, theta = atan r, theta_d = theta (1 + k0 theta^2 + ... + k5 theta^12)``,
    ``(xr, yr) = theta_d / r (a, b)``, ``rd^2 = xr^2 + yr^2``,
    ``u = xr + (2 xr^2 + rd^2) p0 + 2 xr yr p1 + s0 rd^2 + s1 rd^4``,
    ``v = yr + (2 yr^2 + rd^2) p1 + 2 xr yr p0 + s2 rd^2 + s3 rd^4``, pixel ``(f u + cx, f v + cy)``.

    Unprojection inverts the tangential/thin-prism part by 2-D Newton and then the radial polynomial by
    1-D Newton on theta."""

    NAME = "fisheye624"
    PARAM_NAMES = ("f", "cx", "cy", "k0", "k1", "k2", "k3", "k4", "k5", "p0", "p1", "s0", "s1", "s2", "s3")
    K_SLICE = slice(3, 9)
    TANGENTIAL_ITERS = 20

    def _distort(self, xr: Tensor, yr: Tensor, nd: int, like: Tensor, jacobians: bool) -> dict[str, Tensor]:
        p0, p1, s0, s1, s2, s3 = (self._pget(i, nd, like) for i in range(9, 15))
        rd2 = xr * xr + yr * yr
        rd4 = rd2 * rd2
        xy = xr * yr
        u = xr + (2 * xr * xr + rd2) * p0 + 2 * xy * p1 + s0 * rd2 + s1 * rd4
        v = yr + (2 * yr * yr + rd2) * p1 + 2 * xy * p0 + s2 * rd2 + s3 * rd4
        out = {"u": u, "v": v, "rd2": rd2, "rd4": rd4, "xy": xy}
        if jacobians:
            cu = s0 + 2 * s1 * rd2
            cv = s2 + 2 * s3 * rd2
            du_dx = 1 + 6 * xr * p0 + 2 * yr * p1 + 2 * xr * cu
            du_dy = 2 * yr * p0 + 2 * xr * p1 + 2 * yr * cu
            dv_dx = 2 * xr * p1 + 2 * yr * p0 + 2 * xr * cv
            dv_dy = 1 + 6 * yr * p1 + 2 * xr * p0 + 2 * yr * cv
            out["j"] = torch.stack([du_dx, du_dy, dv_dx, dv_dy], -1).reshape(*xr.shape, 2, 2)
        return out

    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        self._check(points, 3, "points")
        nd = points.ndim - 1
        f, cx, cy = (self._pget(i, nd, points) for i in range(3))
        x, y, z, valid = _safe_depth(points, self.min_depth)
        iz = 1.0 / z
        a, b = x * iz, y * iz
        rad = _radial(a, b, self._ks(nd, points), jacobians)
        valid = valid & (rad["theta"] <= self._limit(nd, points))
        d = self._distort(rad["xr"], rad["yr"], nd, points, jacobians)
        uv = torch.stack([f * d["u"] + cx, f * d["v"] + cy], -1)
        if not jacobians:
            return uv, valid, None, None
        zero = torch.zeros_like(a)
        one = torch.ones_like(a)
        dab = torch.stack([iz, zero, -a * iz, zero, iz, -b * iz], -1).reshape(*a.shape, 2, 3)
        fj = f[..., None, None] * d["j"]
        jp = fj @ rad["j_ab"] @ dab
        xr, yr, rd2, rd4, xy = rad["xr"], rad["yr"], d["rd2"], d["rd4"], d["xy"]
        cols = [
            torch.stack([d["u"], d["v"]], -1),
            torch.stack([one, zero], -1),
            torch.stack([zero, one], -1),
        ]
        jk_rad = fj @ rad["j_k"]  # (...,2,6)
        cols += list(jk_rad.unbind(-1))
        cols += [
            f[..., None] * torch.stack([2 * xr * xr + rd2, 2 * xy], -1),
            f[..., None] * torch.stack([2 * xy, 2 * yr * yr + rd2], -1),
            f[..., None] * torch.stack([rd2, zero], -1),
            f[..., None] * torch.stack([rd4, zero], -1),
            f[..., None] * torch.stack([zero, rd2], -1),
            f[..., None] * torch.stack([zero, rd4], -1),
        ]
        return uv, valid, jp, torch.stack(cols, -1)

    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        nd = uv.ndim - 1
        f, cx, cy = (self._pget(i, nd, uv) for i in range(3))
        tu = (uv[..., 0] - cx) / f
        tv = (uv[..., 1] - cy) / f
        xr, yr = tu.clone(), tv.clone()
        for _ in range(self.TANGENTIAL_ITERS):
            d = self._distort(xr, yr, nd, uv, True)
            ru, rv = d["u"] - tu, d["v"] - tv
            j = d["j"]
            det = j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0]
            det = torch.where(det.abs() > 1e-12, det, torch.ones_like(det))
            xr = xr - (j[..., 1, 1] * ru - j[..., 0, 1] * rv) / det
            yr = yr - (-j[..., 1, 0] * ru + j[..., 0, 0] * rv) / det
        d = self._distort(xr, yr, nd, uv, False)
        tol = 1e-9 if uv.dtype == torch.float64 else 1e-5
        ok_t = ((d["u"] - tu).abs() + (d["v"] - tv).abs()) <= tol * (1 + tu.abs() + tv.abs())
        a, b, ok_r = self._invert_radial(xr, yr, self._ks(nd, uv), nd)
        return a, b, ok_t & ok_r

    def equivalent_pinhole(self) -> Tensor:
        return torch.stack([self.params[..., 0], self.params[..., 0], self.params[..., 1], self.params[..., 2]], -1)




# ------------------------------------------------------------------------------------------- autograd models
class _AutogradCamera(CameraModel):
    """Models whose projection is one differentiable formula ``_uv(points, params)``: the Jacobians come from
    reverse-mode autograd (each pixel depends only on its own point and camera, so the Jacobian of the summed
    pixels gives every per-point block in two backward passes)."""

    def _plist(self, nd: int, like: Tensor) -> list[Tensor]:
        return [self._pget(i, nd, like) for i in range(self.num_params)]

    @abstractmethod
    def _uv(self, points: Tensor, p: list[Tensor]) -> Tensor:
        """Pixels ``(..., 2)`` of points ``(..., 3)``; ``p`` holds the parameters broadcast to the points."""

    @abstractmethod
    def _valid(self, points: Tensor, nd: int) -> Tensor:
        """Points ``(..., 3)`` inside the valid field of view."""

    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        self._check(points, 3, "points")
        nd = points.ndim - 1
        p = self._plist(nd, points)
        uv = self._uv(points, p)
        valid = self._valid(points, nd)
        if not jacobians:
            return uv, valid, None, None
        batch = points.shape[:-1]
        pe = torch.stack([q.expand(batch) for q in p], -1).reshape(-1, self.num_params)
        flat = points.reshape(-1, 3)

        # plain reverse-mode autograd, one backward pass per pixel coordinate (torch.func would import
        # torch._dynamo and with it triton, whose bundled LLVM crashes a process that already loaded Mesa's
        # llvmpipe for EGL rendering)
        x = flat.detach().requires_grad_(True)
        q = pe.detach().requires_grad_(True)
        with torch.enable_grad():
            uvf = self._uv(x, list(q.unbind(-1)))  # (M, 2)
            grads = [torch.autograd.grad(uvf[:, i].sum(), (x, q), retain_graph=i == 0, allow_unused=True)
                     for i in range(2)]
        jp = torch.stack([g[0] if g[0] is not None else torch.zeros_like(x) for g in grads], 1)
        jk = torch.stack([g[1] if g[1] is not None else torch.zeros_like(q) for g in grads], 1)
        return uv, valid, jp.reshape(*batch, 2, 3), jk.reshape(*batch, 2, self.num_params)


def _brown(a: Tensor, b: Tensor, k1, k2, p1, p2, k3, jacobian: bool = False):
    """OpenCV radial-tangential distortion of normalised coordinates: ``(xd, yd)`` and optionally
    ``d(xd, yd)/d(a, b)`` ``(..., 2, 2)``."""
    r2 = a * a + b * b
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    ab = a * b
    xd = a * radial + 2 * p1 * ab + p2 * (r2 + 2 * a * a)
    yd = b * radial + p1 * (r2 + 2 * b * b) + 2 * p2 * ab
    if not jacobian:
        return xd, yd, None
    dr = 2 * (k1 + r2 * (2 * k2 + 3 * k3 * r2))  # d radial / d r2 * 2
    j00 = radial + a * a * dr + 2 * p1 * b + 6 * p2 * a
    j01 = ab * dr + 2 * p1 * a + 2 * p2 * b
    j10 = ab * dr + 2 * p1 * a + 2 * p2 * b
    j11 = radial + b * b * dr + 6 * p1 * b + 2 * p2 * a
    return xd, yd, torch.stack([j00, j01, j10, j11], -1).reshape(*a.shape, 2, 2)


def _brown_r_max(k: Tensor, r_cap: float) -> Tensor:
    """Largest normalised radius in [0, r_cap] up to which ``r (1 + k1 r^2 + k2 r^4 + k3 r^6)`` increases
    (``k (..., 3)``: k1 k2 k3): beyond it the radial model folds back and is not one-to-one."""
    r = torch.as_tensor(_r_grid(r_cap), dtype=k.dtype, device=k.device)
    r2 = r * r
    d = 1 + 3 * k[..., 0:1] * r2 + 5 * k[..., 1:2] * r2 * r2 + 7 * k[..., 2:3] * r2 ** 3
    bad = d <= 0
    last = torch.full(bad.shape[:-1], _THETA_SCAN - 1, device=k.device, dtype=torch.long)
    idx = torch.where(bad.any(-1), (bad.to(torch.int8).argmax(-1) - 1).clamp_min(0), last)
    return r[idx]


_R_GRIDS: dict[float, np.ndarray] = {}


def _r_grid(r_cap: float) -> np.ndarray:
    """Radii ``tan(theta)`` for ``theta`` evenly spaced up to ``atan(r_cap)`` (cached: the scan runs per camera)."""
    if r_cap not in _R_GRIDS:
        _R_GRIDS[r_cap] = np.tan(np.linspace(0.0, math.atan(r_cap), _THETA_SCAN))
    return _R_GRIDS[r_cap]


def _brown_invert(xd: Tensor, yd: Tensor, k1, k2, p1, p2, k3, iters: int = 40) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised ``(a, b)`` with ``_brown(a, b) = (xd, yd)`` by 2-D Newton from ``(xd, yd)``; returns the
    residual norm too."""
    a, b = xd.clone(), yd.clone()
    if not any(bool(torch.any(torch.as_tensor(k) != 0)) for k in (k1, k2, p1, p2, k3)):
        return a, b, torch.zeros_like(a)  # no distortion
    for _ in range(iters):
        fx, fy, j = _brown(a, b, k1, k2, p1, p2, k3, jacobian=True)
        ru, rv = fx - xd, fy - yd
        det = j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0]
        det = torch.where(det.abs() > 1e-12, det, torch.ones_like(det))
        da = (j[..., 1, 1] * ru - j[..., 0, 1] * rv) / det
        db = (-j[..., 1, 0] * ru + j[..., 0, 0] * rv) / det
        # damped: never jump further than the current radius (keeps Newton on the monotonic branch)
        lim = 0.5 * (1 + torch.sqrt(a * a + b * b))
        step = torch.sqrt(da * da + db * db)
        sc = torch.where(step > lim, lim / step.clamp_min(1e-300), torch.ones_like(step))
        a, b = a - sc * da, b - sc * db
        if float((sc * step).nan_to_num(0.0).max()) < 1e-15:  # converged everywhere (quadratically)
            break
    fx, fy, _ = _brown(a, b, k1, k2, p1, p2, k3)
    return a, b, torch.sqrt((fx - xd) ** 2 + (fy - yd) ** 2)


class BrownCamera(_AutogradCamera):
    """Pinhole + OpenCV / Brown radial-tangential distortion ``[fx, fy, cx, cy, k1, k2, p1, p2, k3]``
    (``cv2.projectPoints`` with ``distCoeffs = (k1, k2, p1, p2, k3)``; COLMAP ``OPENCV`` is this with
    ``k3 = 0``, ``RADIAL`` / ``SIMPLE_RADIAL`` with ``p = 0``): ``r^2 = a^2 + b^2`` of ``a = x/z, b = y/z``,
    ``xd = a (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 a b + p2 (r^2 + 2 a^2)``,
    ``yd = b (1 + ...) + p1 (r^2 + 2 b^2) + 2 p2 a b``, pixel ``(fx xd + cx, fy yd + cy)``.

    Valid: ``z > min_depth`` and ``r`` below the radius where the radial polynomial stops increasing (there
    the lens model folds back onto itself). Unprojection: 2-D Newton on ``(a, b)``."""

    LIMIT_ATTR = "r_limit"

    NAME = "opencv"
    PARAM_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3")
    R_CAP = 1.0e3

    def __init__(self, params, min_depth: float = 1e-6) -> None:
        p = torch.as_tensor(params)
        if not p.is_floating_point():
            p = p.to(torch.get_default_dtype())
        if p.ndim >= 1 and 4 <= p.shape[-1] < 9:  # fx fy cx cy [k1 k2 p1 p2]: missing terms are zero
            p = torch.cat([p, p.new_zeros(*p.shape[:-1], 9 - p.shape[-1])], -1)
        super().__init__(p, min_depth)
        self.r_limit = _brown_r_max(self.params[..., [4, 5, 8]], self.R_CAP)

    def _uv(self, points: Tensor, p: list[Tensor]) -> Tensor:
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = p
        x, y, z, _ = _safe_depth(points, self.min_depth)
        xd, yd, _ = _brown(x / z, y / z, k1, k2, p1, p2, k3)
        return torch.stack([fx * xd + cx, fy * yd + cy], -1)

    def _valid(self, points: Tensor, nd: int) -> Tensor:
        x, y, z, valid = _safe_depth(points, self.min_depth)
        r = torch.sqrt((x / z) ** 2 + (y / z) ** 2)
        return valid & (r <= self._limit(nd, points))

    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Analytic Jacobians (the bundle adjuster's hot path); ``_uv`` stays the reference formula."""
        self._check(points, 3, "points")
        nd = points.ndim - 1
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = self._plist(nd, points)
        x, y, z, _ = _safe_depth(points, self.min_depth)
        iz = 1.0 / z
        a, b = x * iz, y * iz
        xd, yd, jab = _brown(a, b, k1, k2, p1, p2, k3, jacobian=jacobians)
        uv = torch.stack([fx * xd + cx, fy * yd + cy], -1)
        valid = self._valid(points, nd)
        if not jacobians:
            return uv, valid, None, None
        zero = torch.zeros_like(a)
        one = torch.ones_like(a)
        fdiag = torch.stack([fx, fy], -1)[..., :, None]
        dab = torch.stack([iz, zero, -a * iz, zero, iz, -b * iz], -1).reshape(*a.shape, 2, 3)
        jp = fdiag * (jab @ dab)
        r2 = a * a + b * b
        ab = a * b
        cols = [torch.stack([xd, zero], -1), torch.stack([zero, yd], -1), torch.stack([one, zero], -1),
                torch.stack([zero, one], -1),
                torch.stack([fx * a * r2, fy * b * r2], -1), torch.stack([fx * a * r2 * r2, fy * b * r2 * r2], -1),
                torch.stack([fx * 2 * ab, fy * (r2 + 2 * b * b)], -1),
                torch.stack([fx * (r2 + 2 * a * a), fy * 2 * ab], -1),
                torch.stack([fx * a * r2 ** 3, fy * b * r2 ** 3], -1)]
        return uv, valid, jp, torch.stack(cols, -1)

    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        nd = uv.ndim - 1
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = self._plist(nd, uv)
        xd, yd = (uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy
        a, b, res = _brown_invert(xd, yd, k1, k2, p1, p2, k3)
        tol = 1e-12 if uv.dtype == torch.float64 else 1e-5
        ok = (res * torch.maximum(fx, fy).abs() <= tol * 1e3) & (torch.sqrt(a * a + b * b) <= self._limit(nd, uv))
        return a, b, ok & torch.isfinite(a) & torch.isfinite(b)


class MeiCamera(_AutogradCamera):
    """MEI / unified camera ``[fx, fy, cx, cy, xi, k1, k2, p1, p2]`` (ViPE's ``MEI`` rows are the first five;
    the distortion of OpenCV's ``cv2.omnidir`` is optional, zeros when given five parameters): the point is
    put on the unit sphere, ``(xs, ys, zs) = P / |P|``, projected from ``(0, 0, -xi)``:
    ``m = (xs, ys) / (zs + xi)``, distorted as :class:`BrownCamera` (k3 = 0), pixel ``(fx md + cx, fy md + cy)``.

    Valid: the angle from the optical axis below ``acos(-xi)`` (``xi <= 1``) or ``acos(-1/xi)`` (``xi > 1``),
    where the model is one-to-one, and ``|m|`` on the monotonic branch of the distortion. Unprojection:
    Newton on the distortion, then the closed-form lift onto the sphere."""

    LIMIT_ATTR = "m_limit"

    NAME = "mei"
    PARAM_NAMES = ("fx", "fy", "cx", "cy", "xi", "k1", "k2", "p1", "p2")

    def __init__(self, params, min_depth: float = 1e-6) -> None:
        p = torch.as_tensor(params)
        if not p.is_floating_point():
            p = p.to(torch.get_default_dtype())
        if p.ndim >= 1 and 5 <= p.shape[-1] < 9:
            p = torch.cat([p, p.new_zeros(*p.shape[:-1], 9 - p.shape[-1])], -1)
        super().__init__(p, min_depth)
        xi = self.params[..., 4]
        m_cap = torch.where(xi > 1, 1.0 / torch.sqrt((xi * xi - 1).clamp_min(1e-300)), torch.full_like(xi, 1e3))
        k = torch.stack([self.params[..., 5], self.params[..., 6], torch.zeros_like(xi)], -1)
        # scan each camera's own range: the distortion's fold radius, capped by the image circle
        self.m_limit = torch.minimum(_brown_r_max(k, 1e3), m_cap.clamp_max(1e3))

    def _uv(self, points: Tensor, p: list[Tensor]) -> Tensor:
        fx, fy, cx, cy, xi, k1, k2, p1, p2 = p
        n = torch.linalg.vector_norm(points, dim=-1)
        n = torch.where(n > 0, n, torch.ones_like(n))
        den = points[..., 2] / n + xi
        den = torch.where(den.abs() > 1e-12, den, torch.full_like(den, 1e-12))
        mx, my = points[..., 0] / n / den, points[..., 1] / n / den
        xd, yd, _ = _brown(mx, my, k1, k2, p1, p2, torch.zeros_like(k1))
        return torch.stack([fx * xd + cx, fy * yd + cy], -1)

    def _valid(self, points: Tensor, nd: int) -> Tensor:
        xi = self._pget(4, nd, points)
        n = torch.linalg.vector_norm(points, dim=-1)
        cos_t = points[..., 2] / torch.where(n > 0, n, torch.ones_like(n))
        cos_max = torch.where(xi > 1, -1.0 / xi, -xi)
        den = cos_t + xi
        sin_t = torch.sqrt((1 - cos_t * cos_t).clamp_min(0))
        m = sin_t / torch.where(den > 0, den, torch.ones_like(den))
        return (n > 0) & (xi > -1) & (cos_t > cos_max + 1e-12) & (den > 0) & (m <= self._limit(nd, points))

    def _unproject_rays(self, uv: Tensor) -> tuple[Tensor, Tensor]:
        self._check(uv, 2, "pixels")
        nd = uv.ndim - 1
        fx, fy, cx, cy, xi, k1, k2, p1, p2 = self._plist(nd, uv)
        xd, yd = (uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy
        mx, my, res = _brown_invert(xd, yd, k1, k2, p1, p2, torch.zeros_like(k1))
        r2 = mx * mx + my * my
        disc = 1 + (1 - xi * xi) * r2
        eta = (xi + torch.sqrt(disc.clamp_min(0))) / (1 + r2)
        rays = torch.stack([eta * mx, eta * my, eta - xi], -1)
        tol = 1e-12 if uv.dtype == torch.float64 else 1e-5
        ok = (disc >= 0) & (res * torch.maximum(fx, fy).abs() <= tol * 1e3) & (torch.sqrt(r2) <= self._limit(nd, uv))
        cos_max = torch.where(xi > 1, -1.0 / xi, -xi)
        ok = ok & (rays[..., 2] > cos_max + 1e-12) & torch.isfinite(rays).all(-1)
        return rays, ok

    def equivalent_pinhole(self) -> Tensor:
        xi = self.params[..., 4:5]
        return torch.cat([self.params[..., :2] / (1 + xi), self.params[..., 2:4]], -1)


class EquirectangularCamera(_AutogradCamera):
    """Equirectangular 360 x 180 panorama ``[width, height]`` (ViPE's ``PANORAMA``; its artifact rows are
    zeros and the size comes from the image): pixel ``(u, v)`` has longitude ``theta = ((u + 0.5) / W - 0.5)
    2 pi`` and colatitude ``phi = (v + 0.5) / H pi`` (from the -y axis, up), ray
    ``(sin phi sin theta, -cos phi, sin phi cos theta)`` (unit; depth is ray distance). Every direction but
    the zero vector is valid; unit-z rays exist only in front of the camera."""

    NAME = "equirectangular"
    PARAM_NAMES = ("width", "height")

    def _uv(self, points: Tensor, p: list[Tensor]) -> Tensor:
        w, h = p
        x, y, z = points.unbind(-1)
        theta = torch.atan2(x, z)
        phi = torch.atan2(torch.sqrt(x * x + z * z + 1e-300), -y)
        return torch.stack([(theta / (2 * math.pi) + 0.5) * w - 0.5, phi / math.pi * h - 0.5], -1)

    def _valid(self, points: Tensor, nd: int) -> Tensor:
        return torch.linalg.vector_norm(points, dim=-1) > 0

    def _unproject_rays(self, uv: Tensor) -> tuple[Tensor, Tensor]:
        self._check(uv, 2, "pixels")
        nd = uv.ndim - 1
        w, h = self._plist(nd, uv)
        theta = ((uv[..., 0] + 0.5) / w - 0.5) * 2 * math.pi
        phi = (uv[..., 1] + 0.5) / h * math.pi
        rays = torch.stack([torch.sin(phi) * torch.sin(theta), -torch.cos(phi), torch.sin(phi) * torch.cos(theta)], -1)
        return rays, (phi >= 0) & (phi <= math.pi) & torch.isfinite(rays).all(-1)

    def scaled(self, s: float) -> CameraModel:
        return self._new(self.params * s)

    def equivalent_pinhole(self) -> Tensor:
        raise ValueError(PANORAMA_FOV_NOTE + "; it has no equivalent pinhole camera")


# ------------------------------------------------------------------------------------------- registry
_MODELS: dict[str, type[CameraModel]] = {
    "pinhole": PinholeCamera,
    "opencv": BrownCamera,
    "brown": BrownCamera,
    "radial": BrownCamera,
    "kannala_brandt": KannalaBrandtCamera,
    "opencv_fisheye": KannalaBrandtCamera,
    "fisheye": KannalaBrandtCamera,
    "kannalabrandtk3": KannalaBrandtCamera,
    "fisheye624": Fisheye624Camera,
    "fisheyeradtanthinprism": Fisheye624Camera,
    "mei": MeiCamera,
    "equirectangular": EquirectangularCamera,
    "panorama": EquirectangularCamera,
}


def camera_from_params(name: str, params: Tensor | list[float], **kwargs: float) -> CameraModel:
    """Build a camera by model name: ``pinhole``; ``opencv`` / ``brown`` / ``radial`` (:class:`BrownCamera`,
    4 to 9 parameters); ``kannala_brandt`` / ``opencv_fisheye`` / ``fisheye`` / ``KANNALABRANDTK3``;
    ``fisheye624`` / ``FisheyeRadTanThinPrism``; ``mei`` (5 or 9 parameters); ``equirectangular`` /
    ``panorama`` (``[width, height]``). COLMAP model names go through :func:`camera_from_colmap`."""
    key = name.lower()
    if key not in _MODELS:
        raise ValueError(f"unknown camera model {name!r}; expected one of {sorted(_MODELS)}")
    return _MODELS[key](params, **kwargs)


# COLMAP camera models (names and parameter order as COLMAP's models.h defines them) -> ours
COLMAP_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": ("pinhole", ("f", "cx", "cy")),
    "PINHOLE": ("pinhole", ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": ("opencv", ("f", "cx", "cy", "k")),
    "RADIAL": ("opencv", ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": ("opencv", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    "FULL_OPENCV": ("opencv", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
    "OPENCV_FISHEYE": ("kannala_brandt", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    "MEI": ("mei", ("fx", "fy", "cx", "cy", "xi")),
}


def camera_from_colmap(model: str, params) -> CameraModel:
    """Our camera for a COLMAP model name and its parameters (``FULL_OPENCV`` only with ``k4 = k5 = k6 = 0``:
    the rational terms are not modelled)."""
    name = str(model).strip().upper()
    if name not in COLMAP_MODELS:
        raise ValueError(f"camera model {model!r} not supported; expected one of {sorted(COLMAP_MODELS)}")
    kind, names = COLMAP_MODELS[name]
    p = [float(v) for v in np.asarray(params, np.float64).reshape(-1)]
    if len(p) != len(names):
        raise ValueError(f"{name} takes {len(names)} parameters ({' '.join(names)}), got {len(p)}")
    if name == "SIMPLE_PINHOLE":
        p = [p[0], p[0], p[1], p[2]]
    elif name == "SIMPLE_RADIAL":
        p = [p[0], p[0], p[1], p[2], p[3]]
    elif name == "RADIAL":
        p = [p[0], p[0], p[1], p[2], p[3], p[4]]
    elif name == "FULL_OPENCV":
        if any(v != 0 for v in p[9:]):
            raise ValueError("FULL_OPENCV with rational terms k4..k6 is not supported (give them as 0)")
        p = p[:9]
    return camera_from_params(kind, torch.tensor(p, dtype=torch.float64))


def colmap_camera_model(camera: CameraModel | str, params=None, tol: float = 0.0) -> tuple[str, list[float]]:
    """The simplest COLMAP model that holds ``camera`` exactly, and its parameters: ``PINHOLE`` (no
    distortion), ``SIMPLE_RADIAL`` (fx = fy, only k1), ``RADIAL`` (fx = fy, k1 k2), ``OPENCV`` (k1 k2 p1 p2),
    ``FULL_OPENCV`` (with k3), ``OPENCV_FISHEYE`` (Kannala-Brandt). Coefficients with ``|c| <= tol`` count
    as zero. A ViPE artifact model name (``PINHOLE``/``MEI``) with ``params`` works too; MEI and the other
    models COLMAP cannot hold raise ``ValueError`` (rectify them first)."""
    cam = _cam(camera, params)
    if cam.params.ndim != 1:
        raise ValueError("colmap_camera_model takes one camera (params of shape (P,))")
    p = [float(v) for v in cam.params.detach().cpu().double()]
    nz = [abs(v) > tol for v in p]
    if isinstance(cam, PinholeCamera):
        return "PINHOLE", p[:4]
    if isinstance(cam, KannalaBrandtCamera):
        return "OPENCV_FISHEYE", p
    if isinstance(cam, BrownCamera):
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = p
        _, _, _, _, n1, n2, np1, np2, n3 = nz
        if not any((n1, n2, np1, np2, n3)):
            return "PINHOLE", [fx, fy, cx, cy]
        if n3:
            return "FULL_OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2, k3, 0.0, 0.0, 0.0]
        if np1 or np2 or fx != fy:
            return "OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2]
        if n2:
            return "RADIAL", [fx, cx, cy, k1, k2]
        return "SIMPLE_RADIAL", [fx, cx, cy, k1]
    raise ValueError(f"COLMAP has no camera model for {cam.NAME}; rectify the images to a pinhole first")


# ------------------------------------------------------------------------------------------- whole images
def _single(cam: CameraModel) -> CameraModel:
    if cam.params.ndim != 1:
        raise ValueError(f"{cam.NAME}: expected one camera (params of shape (P,)), got {tuple(cam.params.shape)}")
    return cam


def pixel_grid(width: int, height: int, dtype=torch.float64, device=None) -> Tensor:
    """``(H, W, 2)`` pixel centres ``(u, v)``."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return torch.stack([u, v], -1)


def valid_pixel_mask(cam: CameraModel, width: int, height: int) -> Tensor:
    """``(H, W)`` bool: pixels whose ray the model defines one-to-one (unprojection valid and reprojecting
    onto the pixel within 1e-6 px)."""
    cam = _single(cam)
    uv = pixel_grid(width, height, cam.dtype, cam.device)
    rays, ok = cam.unproject_with_valid(uv, unit_norm=True)
    back, ok2 = cam.project(torch.where(ok[..., None], rays, torch.ones_like(rays)))
    return ok & ok2 & ((back - uv).norm(dim=-1) < 1e-6)


def _axis_angles(cam: CameraModel, width: float, height: float, samples: int = 2049) -> tuple[float, float]:
    """Largest valid ray angle (rad) from the optical axis along each half axis from the principal point to
    half the image size, summed per axis (the module's field-of-view convention)."""
    eq = cam.equivalent_pinhole()
    cx, cy = float(eq[2]), float(eq[3])
    t = torch.linspace(0.0, 1.0, samples, dtype=torch.float64)
    out = []
    for du, dv, half in ((1, 0, width / 2), (-1, 0, width / 2), (0, 1, height / 2), (0, -1, height / 2)):
        uv = torch.stack([cx + du * half * t, cy + dv * half * t], -1).to(cam.dtype)
        rays, ok = cam.unproject_with_valid(uv, unit_norm=True)
        ang = torch.acos(rays[..., 2].double().clamp(-1, 1))
        ang = torch.where(ok, ang, torch.zeros_like(ang))
        out.append(float(ang.max()))
    return out[0] + out[1], out[2] + out[3]


def camera_fov_deg(cam: CameraModel, width: float, height: float) -> tuple[float, float]:
    """Horizontal and vertical field of view (deg) of one camera over a ``width x height`` image: the angles of
    the rays at ``cx -+ W/2`` and ``cy -+ H/2`` from the optical axis, summed (pinhole: ``2 atan(W / 2 f)``).
    Where the image border lies outside the valid field of view, the last valid ray counts. Panoramas:
    360 x 180."""
    cam = _single(cam)
    if isinstance(cam, EquirectangularCamera):
        return 360.0, 180.0
    ax, ay = _axis_angles(cam, width, height)
    return math.degrees(ax), math.degrees(ay)


def _inside(uv: Tensor, ok: Tensor, width: int, height: int) -> Tensor:
    return ok & (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= height - 0.5)


def _border(width: int, height: int, n: int = 65, dtype=torch.float64) -> Tensor:
    xs = torch.linspace(-0.5, width - 0.5, n, dtype=dtype)
    ys = torch.linspace(-0.5, height - 0.5, n, dtype=dtype)
    return torch.cat([torch.stack([xs, torch.full_like(xs, -0.5)], -1),
                      torch.stack([xs, torch.full_like(xs, height - 0.5)], -1),
                      torch.stack([torch.full_like(ys, -0.5), ys], -1),
                      torch.stack([torch.full_like(ys, width - 0.5), ys], -1)])


def rectifying_pinhole(cam: CameraModel, width: int, height: int, out_width: int | None = None,
                       out_height: int | None = None, fov_deg: float | None = None,
                       mode: str = "valid") -> np.ndarray:
    """``[fx, fy, cx, cy]`` of the ideal pinhole camera to rectify a ``width x height`` image of ``cam`` to a
    ``out_width x out_height`` image (default: the same size), principal point at the image centre, the
    aspect of the camera's equivalent pinhole:

    - ``fov_deg`` given: that horizontal field of view;
    - ``mode="valid"`` (default): the widest view in which every output pixel sees a valid pixel inside
      the recorded image (no black borders; keeps the valid field of view along the tightest border);
    - ``mode="full"``: the narrowest view that still holds every valid pixel of the recorded image border
      (nothing lost; black corners where the lens saw nothing)."""
    cam = _single(cam).to(dtype=torch.float64)
    ow, oh = int(out_width or width), int(out_height or height)
    eq = cam.equivalent_pinhole().double()
    fx0, fy0 = float(eq[0]) * ow / width, float(eq[1]) * oh / height
    ocx, ocy = (ow - 1) / 2.0, (oh - 1) / 2.0
    if fov_deg is not None:
        f = focal_for_fov(fov_deg, ow)
        return np.array([f, f * fy0 / fx0, ocx, ocy])
    if mode not in ("valid", "full"):
        raise ValueError(f"mode must be 'valid' or 'full', got {mode!r}")
    tb = _border(ow, oh)
    sb = _border(width, height)
    src_rays, src_ok = cam.unproject_with_valid(sb)  # unit-z rays of the recorded border (front only)

    def good(s: float) -> bool:
        pin = PinholeCamera(torch.tensor([s * fx0, s * fy0, ocx, ocy], dtype=torch.float64))
        if mode == "valid":
            uv, ok = cam.project(pin.unproject(tb))
            return bool(_inside(uv, ok, width, height).all())
        uv, ok = pin.project(src_rays[src_ok])
        return bool(_inside(uv, ok, ow, oh).all())

    # scale of the focal, larger = narrower view. "valid" holds from some scale up (the smallest such is
    # wanted), "full" up to some scale (the largest); bisection in log scale to 1e-12 relative
    lo, hi = 1e-3, 1e3
    want_small = mode == "valid"
    if not good(hi if want_small else lo):
        raise ValueError(f"{cam.NAME}: no pinhole view fits the valid field of view ({mode})")
    if good(lo if want_small else hi):
        s = lo if want_small else hi
    else:
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            if good(mid) == want_small:
                hi = mid
            else:
                lo = mid
        s = hi if want_small else lo
    return np.array([s * fx0, s * fy0, ocx, ocy])


def resample_maps(out_cam: CameraModel, out_width: int, out_height: int,
                  src_cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps ``(map_x, map_y)`` (float32, ``out_height x out_width``) that resample an image of
    ``src_cam`` (same centre and orientation) as seen by ``out_cam``: output pixel -> its ray -> the source
    pixel. Pixels whose ray either camera does not see get ``-1e6`` (far outside: ``cv2.remap`` fills the
    border value)."""
    out_cam = _single(out_cam).to(dtype=torch.float64)
    src_cam = _single(src_cam).to(dtype=torch.float64)
    rays, ok = out_cam.unproject_with_valid(pixel_grid(out_width, out_height), unit_norm=True)
    uv, ok2 = src_cam.project(torch.where(ok[..., None], rays, torch.ones_like(rays)))
    uv = torch.where((ok & ok2)[..., None], uv, torch.full_like(uv, -1e6))
    m = uv.numpy().astype(np.float32)
    return np.ascontiguousarray(m[..., 0]), np.ascontiguousarray(m[..., 1])


def rectify_maps(cam: CameraModel, pinhole, out_width: int, out_height: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps ``(map_x, map_y)`` (float32, ``out_height x out_width``) that resample an image of
    ``cam`` as the ideal pinhole ``[fx, fy, cx, cy]``: output pixel -> its ray -> the recorded pixel.
    Pixels whose ray the camera does not see get ``-1e6`` (far outside: ``cv2.remap`` fills the border value)."""
    pin = PinholeCamera(torch.as_tensor(np.asarray(pinhole, np.float64)[:4]))
    return resample_maps(pin, out_width, out_height, cam)


# ------------------------------------------------------------------------------------------- numpy facade
def _cam(model, params) -> CameraModel:
    if isinstance(model, CameraModel):
        return model
    p = torch.as_tensor(np.asarray(params, np.float64))
    if str(model).upper() in COLMAP_MODELS and str(model).lower() not in _MODELS:
        return camera_from_colmap(model, p)
    return camera_from_params(str(model), p)


def project_points(model, params, points) -> tuple[np.ndarray, np.ndarray]:
    """numpy: camera-frame points ``(..., 3)`` -> pixels ``(..., 2)`` and validity, float64. ``model``: a
    name of :func:`camera_from_params` or a COLMAP model name (or a :class:`CameraModel`, ``params`` unused)."""
    uv, ok = _cam(model, params).to(dtype=torch.float64).project(torch.as_tensor(np.asarray(points, np.float64)))
    return uv.numpy(), ok.numpy()


def unproject_pixels(model, params, uv, unit_norm: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """numpy: pixels ``(..., 2)`` -> rays ``(..., 3)`` (unit-z, or unit-length with ``unit_norm``) and validity."""
    cam = _cam(model, params).to(dtype=torch.float64)
    rays, ok = cam.unproject_with_valid(torch.as_tensor(np.asarray(uv, np.float64)), unit_norm=unit_norm)
    return rays.numpy(), ok.numpy()


def projection_jacobians(model, params, points) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numpy: pixels, validity, ``d uv / d point (..., 2, 3)`` and ``d uv / d params (..., 2, P)``."""
    cam = _cam(model, params).to(dtype=torch.float64)
    uv, ok, jp, jk = cam.project_with_jacobians(torch.as_tensor(np.asarray(points, np.float64)))
    return uv.numpy(), ok.numpy(), jp.numpy(), jk.numpy()
