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
    seed_residual_px: float = Field(2.5, ge=0, description="a moving-object seed (connected component) needs this "
                                                           "mean residual (px at mask res); 0 = off")
    static_residual_px: float = Field(1.25, ge=0, description="depth from multi-view stereo (manifest depth.method "
                                                              "mvs*): a seed must also keep this median residual (px "
                                                              "at mask res) against the best static explanation of "
                                                              "its flow, the depth triangulated from the flow clamped "
                                                              "to the depth range around the seed, unless it touches "
                                                              "a seed that does (0 = off)")
    grow_margin: float = Field(0.5, ge=0, description="each motion seed is grown inside its box enlarged by this "
                                                     "share of its size: residual against the depth the "
                                                     "surrounding static scene would have there (0 = off)")
    fooled_ratio: float = Field(1.0, ge=1.0, description="a seed whose median depth is this much farther than the "
                                                         "surface around it counts as fooled depth (growth applies)")
    grabcut_iterations: int = Field(1, ge=0, description="GrabCut iterations completing each object by colour "
                                                         "inside that box (0 = off)")
    hold_frames: int = Field(15, ge=0, description="an object that stops moving keeps its mask (carried by the "
                                                   "optical flow) for this many frames")
    hold_min_frames: int = Field(3, ge=1, description="only objects seen moving in at least this many frames are "
                                                      "held")
    strong_motion_fraction: float = Field(0.01, ge=0, le=1, description="a frame has strong motion when its largest "
                                                                        "region of residual above 2 residual_px "
                                                                        "covers this share of the image (reported "
                                                                        "for the mask check)")
    refill_depth: bool = Field(True, description="moving camera with depth: the depth of moving objects is "
                                                 "replaced by the fill of the static depth around them and marked "
                                                 "not measured")
    # cleanup and instances
    open_px: int = Field(3, ge=1, description="morphological opening kernel (px, mask res)")
    close_px: int = Field(7, ge=1, description="morphological closing kernel (px, mask res)")
    min_area_fraction: float = Field(0.002, ge=0, description="components smaller than this image fraction drop")
    match_iou: float = Field(0.2, ge=0, le=1, description="a component keeps the id of the previous frame's "
                                                          "instance it overlaps with at least this IoU")
    static_rotation_deg: float = Field(0.05, ge=0, description="fixed camera: rotation spread below this")
    static_translation: float = Field(1e-6, ge=0, description="fixed camera: camera-centre spread below this "
                                                              "(pose units)")
