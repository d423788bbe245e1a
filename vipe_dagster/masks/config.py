"""Configuration of the dynamic-object mask stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MaskConfig(BaseModel):
    """Dynamic masks: temporal background model (fixed camera) or motion residual (moving camera)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "background", "motion"] = Field(
        "auto", description="auto: background model when the poses say the camera is fixed, else motion residual")
    long_side: int = Field(320, ge=32, description="long side (px) the masks are computed at (upsampled after)")
    # fixed camera: background model
    background_samples: int = Field(41, ge=3, description="frames (evenly spaced) whose per-pixel median is the "
                                                          "background")
    threshold_k: float = Field(6.0, gt=0, description="foreground when the colour difference exceeds k robust "
                                                      "sigmas (1.4826 MAD) of the frame's difference image")
    min_threshold: float = Field(0.08, ge=0, description="lower bound of the difference threshold (rgb in [0,1])")
    # moving camera: flow residual against the flow the poses (and depth) induce
    flow_gap: int = Field(2, ge=1, description="frames between the pairs whose flow is compared")
    residual_px: float = Field(1.5, gt=0, description="lower bound of the residual threshold (px at mask res)")
    residual_k: float = Field(4.0, gt=0, description="residual threshold in robust sigmas of the frame")
    use_depth: bool = Field(True, description="use depth/<n>.zip for the full rigid flow when present; otherwise "
                                              "the Sampson distance to the epipolar line is the residual")
    # cleanup and instances
    open_px: int = Field(3, ge=1, description="morphological opening kernel (px, mask res)")
    close_px: int = Field(7, ge=1, description="morphological closing kernel (px, mask res)")
    min_area_fraction: float = Field(0.002, ge=0, description="components smaller than this image fraction drop")
    match_iou: float = Field(0.2, ge=0, le=1, description="a component keeps the id of the previous frame's "
                                                          "instance it overlaps with at least this IoU")
    static_rotation_deg: float = Field(0.05, ge=0, description="fixed camera: rotation spread below this")
    static_translation: float = Field(1e-6, ge=0, description="fixed camera: camera-centre spread below this "
                                                              "(pose units)")
