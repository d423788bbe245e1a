"""Dynamic-object masks: temporal background model (fixed camera), motion residual (moving camera)."""

from .config import MaskConfig
from .run import MaskResult, is_fixed_camera, run_masks

__all__ = ["MaskConfig", "MaskResult", "is_fixed_camera", "run_masks"]
