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

import torch
from torch import Tensor

__all__ = ["CameraModel", "PinholeCamera", "camera_from_params"]


class CameraModel:
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
            return v.reshape(*v.shape[:-1], *([1] * extra), v.shape[-1])
        return v.reshape(*v.shape, *([1] * extra))

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

    # ------------------------------------------------------------------ to implement
    def _project(self, points: Tensor, jacobians: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        raise NotImplementedError

    def _unproject_normalized(self, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

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


_MODELS: dict[str, type[CameraModel]] = {"pinhole": PinholeCamera}


def camera_from_params(name: str, params: Tensor | list[float], **kwargs: float) -> CameraModel:
    """Build a camera by model name (``pinhole``, ``kannala_brandt`` / ``opencv_fisheye``, ``fisheye624``)."""
    key = name.lower()
    if key not in _MODELS:
        raise ValueError(f"unknown camera model {name!r}; expected one of {sorted(_MODELS)}")
    return _MODELS[key](params, **kwargs)

