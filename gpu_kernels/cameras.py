"""Camera models as batched torch code (device and dtype follow the parameters / inputs).

Conventions
-----------
* OpenCV camera axes: x right, y down, z forward. Pixel ``(u, v)`` = (column, row) with the centre of the
  top-left pixel at ``(0, 0)`` (OpenCV / projectaria convention).
* ``params`` has shape ``(..., P)``. Its batch dimensions align with the *leading* batch dimensions of the
  points: ``params (B, P)`` with ``points (B, N, 3)`` uses camera ``b`` for ``points[b]``; ``params (P,)``
  serves every point.
* ``project(points) -> (uv, valid)``: ``uv (..., 2)`` is always finite; ``valid`` is False for points with
  ``z <= min_depth`` (behind or on the camera plane) and, for fisheye models, outside the field of view in
  which the radial distortion polynomial is monotonic (and optionally beyond ``max_theta``).
* ``unproject(uv) -> rays``: by default rays are **unit-z** ``(x/z, y/z, 1)`` so that ``ray * z_depth`` is the
  3-D point; ``unit_norm=True`` returns unit-length rays instead. Every model here only covers ``z > 0``.
* ``project_with_jacobians`` returns ``d uv / d point`` ``(..., 2, 3)`` and ``d uv / d params``
  ``(..., 2, P)`` analytically.
* ``scaled(s)`` gives the camera for an image resized by ``s``: ``f' = s f`` and ``c' = s (c + 0.5) - 0.5``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = [
    "CameraModel",
    "PinholeCamera",
    "KannalaBrandtCamera",
    "Fisheye624Camera",
    "camera_from_params",
]


class CameraModel(ABC):
    """Base class; subclasses define ``NAME``, ``PARAM_NAMES`` and the projection."""

    NAME: str = ""
    PARAM_NAMES: tuple[str, ...] = ()

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
        return out

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
        a, b, valid = self._unproject_normalized(uv)
        rays = torch.stack([a, b, torch.ones_like(a)], dim=-1)
        if unit_norm:
            rays = rays / torch.linalg.vector_norm(rays, dim=-1, keepdim=True)
        return rays, valid

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

    @abstractmethod
    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised coordinates ``a = x/z``, ``b = y/z`` and validity of pixels ``uv``."""

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

    def __init__(self, params: Tensor | list[float] | tuple[float, ...], min_depth: float = 1e-6,
                 max_theta: float | None = None) -> None:
        """``max_theta`` (radians, < pi/2) optionally limits the valid field of view further."""
        super().__init__(params, min_depth)
        cap = math.pi / 2 - 1e-6 if max_theta is None else min(float(max_theta), math.pi / 2 - 1e-6)
        self.theta_limit = _theta_max(self.params[..., self.K_SLICE], cap)

    def _new(self, params: Tensor) -> CameraModel:
        out = super()._new(params)
        out.theta_limit = self.theta_limit.to(params.device, params.dtype)  # type: ignore[attr-defined]
        return out

    def _ks(self, nd: int, like: Tensor) -> list[Tensor]:
        return [self._pget(i, nd, like) for i in range(self.K_SLICE.start, self.K_SLICE.stop)]

    def _theta_lim(self, nd: int, like: Tensor) -> Tensor:
        v = self.theta_limit.to(like.device, like.dtype)
        return v.reshape(tuple(v.shape) + (1,) * (nd - v.ndim))

    def _invert_radial(self, xr: Tensor, yr: Tensor, ks: list[Tensor], nd: int) -> tuple[Tensor, Tensor, Tensor]:
        """Solve ``theta_d(theta) = |(xr, yr)|`` by Newton; returns (a, b, valid)."""
        rd = torch.sqrt(xr * xr + yr * yr)
        lim = self._theta_lim(nd, xr)
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
        valid = valid & (rad["theta"] <= self._theta_lim(nd, points))
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
        valid = valid & (rad["theta"] <= self._theta_lim(nd, points))
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


_MODELS: dict[str, type[CameraModel]] = {
    "pinhole": PinholeCamera,
    "kannala_brandt": KannalaBrandtCamera,
    "opencv_fisheye": KannalaBrandtCamera,
    "kannalabrandtk3": KannalaBrandtCamera,
    "fisheye624": Fisheye624Camera,
    "fisheyeradtanthinprism": Fisheye624Camera,
}


def camera_from_params(name: str, params: Tensor | list[float], **kwargs: float) -> CameraModel:
    """Build a camera by model name (``pinhole``; ``kannala_brandt`` / ``opencv_fisheye`` /
    ``KANNALABRANDTK3``; ``fisheye624`` / ``FisheyeRadTanThinPrism``)."""
    key = name.lower()
    if key not in _MODELS:
        raise ValueError(f"unknown camera model {name!r}; expected one of {sorted(_MODELS)}")
    return _MODELS[key](params, **kwargs)

