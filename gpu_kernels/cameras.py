"""The batched torch camera models, re-exported from the one camera module :mod:`vipe_dagster.camera`
(pinhole, Brown/OpenCV, Kannala-Brandt, Aria Fisheye624, MEI, equirectangular; conventions in its doc)."""

from vipe_dagster.camera import (
    BrownCamera,
    CameraModel,
    EquirectangularCamera,
    Fisheye624Camera,
    KannalaBrandtCamera,
    MeiCamera,
    PinholeCamera,
    camera_from_params,
)

__all__ = [
    "CameraModel",
    "PinholeCamera",
    "BrownCamera",
    "KannalaBrandtCamera",
    "Fisheye624Camera",
    "MeiCamera",
    "EquirectangularCamera",
    "camera_from_params",
]
