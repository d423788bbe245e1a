"""The one camera module: the camera models of ViPE artifacts (numpy: validation, field of view, MEI and
panorama rays) and the batched torch camera models every layer projects with.

One home for the camera maths every reader shares (``validate``, the catalog, ``to-colmap``, the viewer,
the point-cloud renderer, quality checks, SLAM, depth, the renderers); it never imports dagster.
``gpu_kernels/cameras.py`` re-exports the torch models.

Torch models (second half of the file; conventions in :class:`CameraModel`): :class:`PinholeCamera`,
:class:`BrownCamera` (OpenCV radial-tangential k1 k2 p1 p2 k3), :class:`KannalaBrandtCamera` (OpenCV
fisheye), :class:`Fisheye624Camera` (Aria FisheyeRadTanThinPrism), :class:`MeiCamera` (unified, xi +
optional distortion) and :class:`EquirectangularCamera`; each projects with Jacobians w.r.t. the point and
the intrinsics, unprojects (closed form or Newton) with a validity mask, and gives its equivalent pinhole.
Whole-image helpers: :func:`camera_fov_deg`, :func:`valid_pixel_mask`, :func:`rectifying_pinhole`,
:func:`rectify_maps` (``cv2.remap``); COLMAP names: :func:`camera_from_colmap`,
:func:`colmap_camera_model`; numpy facade: :func:`project_points`, :func:`unproject_pixels`,
:func:`projection_jacobians`.

Models, as ``intrinsics/<n>.npz`` and ``intrinsics/<n>_camera.txt`` hold them (spec §2-§3):

- ``PINHOLE`` ``[fx, fy, cx, cy]``: ``u = fx X / Z + cx``. Needs finite values with ``fx, fy > 0``.
- ``MEI`` (unified, "simple_mei") ``[fx, fy, cx, cy, xi]`` (ViPE calls xi ``k1``):
  ``u = fx X / (Z + xi |P|) + cx``. Needs a fifth column, finite values, ``fx, fy > 0`` and ``xi > -1``
  (at ``xi <= -1`` no ray in front of the camera projects). Its equivalent pinhole is ``f / (1 + xi)``
  (the pinhole that agrees with it at the image centre).
- ``PANORAMA`` (equirectangular): the intrinsics are all zeros, as ViPE writes them. Pixel ``(u, v)`` of a
  ``W x H`` image has ``theta = ((u + 0.5) / W - 0.5) 2 pi``, ``phi = (v + 0.5) / H pi`` and the unit ray
  ``(sin phi sin theta, -cos phi, sin phi cos theta)``; its depth is ray distance.

Field of view (``field_of_view``): the full angle between the rays through the two image borders at half
the image size from the optical axis, ``2 theta(W / 2)`` horizontally and ``2 theta(H / 2)`` vertically.
For a pinhole ``theta(s) = atan(s / f)``. For MEI the ray of the normalised radius ``r = s / f`` is the
closed-form unified unprojection ``eta = (xi + sqrt(1 + (1 - xi^2) r^2)) / (1 + r^2)``, ray
``(eta r, eta - xi)``, so ``theta(s) = atan2(eta r, eta - xi)``; with ``xi > 1`` radii beyond
``1 / sqrt(xi^2 - 1)`` are outside the image circle and the angle stops at ``acos(-1 / xi)``. (Using the
pinhole formula on MEI focals understates a wide-angle lens; ``f / (1 + xi)`` is only the centre's
equivalent and understates it too.) A panorama covers 360 x 180 deg and has no pinhole field of view:
``field_of_view`` returns ``None`` for it, with the reason.

The numpy part (:mod:`.basic`) is imported eagerly; the torch models (:mod:`.models`) on first use of one of
their names, so that importing the camera module (every artifact reader does) does not import torch.
"""

from __future__ import annotations

from .basic import *  # noqa: F403
from .basic import __all__ as _BASIC

_MODELS_MODULE = None


def __getattr__(name: str):
    global _MODELS_MODULE
    if name.startswith("__"):
        raise AttributeError(name)
    if _MODELS_MODULE is None:
        import importlib

        _MODELS_MODULE = importlib.import_module(__name__ + ".models")
    if name == "models":
        return _MODELS_MODULE
    try:
        return getattr(_MODELS_MODULE, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = list(_BASIC)
