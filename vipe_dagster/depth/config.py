"""Configuration of the dense-depth stage (multi-view stereo + optional learned prior)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LearnedDepthConfig(BaseModel):
    """A monocular depth network (Depth-Anything-V2 layout: DINOv2 ViT backbone + DPT head).

    Weights come from the Hugging Face Hub through ``huggingface_hub.hf_hub_download`` and its cache:
    put the checkpoint in the cache (``HF_HOME`` / ``HF_HUB_CACHE`` or ``cache_dir``) beforehand on machines
    without network and set ``HF_HUB_OFFLINE=1``.
    """

    model_config = ConfigDict(extra="forbid")

    repo_id: str = Field("depth-anything/Depth-Anything-V2-Small",
                         description="Hugging Face model repository holding the checkpoint")
    filename: str = Field("depth_anything_v2_vits.pth",
                          description="checkpoint file in the repository (.pth/.pt state dict or .safetensors)")
    revision: str | None = Field(None, description="branch, tag or commit; None = the repository's main")
    cache_dir: str | None = Field(None, description="Hugging Face cache directory; None = the hub default")
    backbone: str = Field("vit_small_patch14_dinov2", description="timm DINOv2 backbone name")
    embed_dim: int | None = Field(None, description="override the backbone width (tiny test models); None = "
                                                    "the timm default")
    depth: int | None = Field(None, description="override the number of transformer blocks; None = timm default")
    num_heads: int | None = Field(None, description="override the number of attention heads; None = timm default")
    layer_indices: list[int] = Field([2, 5, 8, 11], description="blocks whose outputs feed the DPT head "
                                                                "(Depth-Anything-V2 uses 2,5,8,11 for ViT-S/B)")
    features: int = Field(64, description="DPT fusion width (64 for the V2 Small checkpoint)")
    out_channels: list[int] = Field([48, 96, 192, 384], description="DPT projection widths (V2 Small)")
    use_bn: bool = Field(False, description="batch norm in the DPT residual units (False in V2)")
    output: Literal["relative_disparity", "metric_depth"] = Field(
        "relative_disparity", description="what the head predicts: affine-invariant inverse depth (V2 relative "
                                          "models) or metric depth in metres (V2 metric models)")
    max_depth: float = Field(20.0, gt=0, description="metric models: sigmoid output times this (metres)")
    input_size: int = Field(518, ge=14, description="short side fed to the network (rounded to multiples of 14)")
    device: str = Field("cpu", description="torch device for the network")


class DepthConfig(BaseModel):
    """Dense depth by plane-sweep MVS on neighbouring frames, at the scale of the poses."""

    model_config = ConfigDict(extra="forbid")

    mvs_long_side: int = Field(256, ge=32, description="long side (px) of the images the sweep runs on")
    num_planes: int = Field(48, ge=8, le=512, description="inverse-depth hypotheses per sweep")
    coarse_to_fine: bool = Field(False, description="sweep all planes at half resolution, then only "
                                                     "refine_hypotheses per pixel around it at full resolution")
    refine_hypotheses: int = Field(7, ge=3, description="per-pixel hypotheses of the coarse-to-fine refinement")
    refine_steps: float = Field(1.5, gt=0, description="refinement half-width in coarse plane spacings")
    window: int = Field(5, ge=1, description="ZNCC window (odd, px at MVS resolution)")
    agg_window: int = Field(5, ge=1, description="box aggregation window of the cost volume (odd)")
    texture_sigma: float = Field(0.02, ge=0, description="matching costs of flat windows are blended towards the "
                                                         "uninformative value by var / (var + sigma^2) (intensity "
                                                         "std in [0,1]); 0 = off")
    sgm: bool = Field(True, description="semi-global aggregation of the cost volume (4 paths, edge-aware P2): "
                                         "carries depth into low-texture regions")
    sgm_p1: float = Field(0.03, gt=0, description="SGM penalty of a one-plane step between neighbours (cost "
                                                  "units: 1 - ZNCC, in [0, 2])")
    sgm_p2: float = Field(1.0, gt=0, description="SGM penalty of a larger jump (reduced across image edges)")
    num_sources: int = Field(4, ge=1, le=16, description="source frames per reference frame")
    best_k: int | None = Field(None, ge=1, description="sources averaged per pixel (lowest costs); None = half")
    sweep_every: int = Field(3, ge=1, description="sweep at least every k-th frame (and the last); the frames "
                                                  "between take the fused depth of the swept frames around them")
    sweep_parallax_px: float = Field(6.0, gt=0, description="also sweep a frame once its parallax to the last swept "
                                                            "frame reaches this (px at MVS resolution, median depth)")
    fuse_radius: int = Field(8, ge=0, description="each output frame fuses (per-pixel median) the filtered depths "
                                                  "of the swept frames within +-this many frames, warped by the "
                                                  "poses, and always those of the nearest swept frame on each side")
    fill_from_sweep: bool = Field(True, description="holes left by the filters first take the fused sweep depth "
                                                    "that passes the geometric check with plausible_factor times "
                                                    "the tolerances (best with sgm), then the edge-aware fill")
    min_seen: float = Field(0.5, ge=0.0, le=1.0, description="a pixel's sweep depth counts only where some source "
                                                            "sees the pixel at this share of the hypotheses or "
                                                            "more: near the image border, where a near surface "
                                                            "leaves every source's view, only the far hypotheses "
                                                            "remain to match and the winner is biased far; 0 = off")
    plausible_factor: float = Field(3.0, ge=1.0, description="tolerance factor of the relaxed geometric check "
                                                             "for the depth that fills holes")
    use_masks: bool = Field(True, description="when mask/<n>.zip exists (one mask per frame), moving-object "
                                              "pixels are not measured: they are filled from the static depth "
                                              "around them and are never reliable")
    max_frame_gap: int = Field(30, ge=1, description="sources come from frames within +-this many frames")
    scene_depth_cells: int = Field(8, ge=1, description="the median scene depth (at which parallax is "
                                                        "measured) weighs the sparse points by image area: "
                                                        "the median of per-cell medians, this many square "
                                                        "cells along the image's long side")
    min_parallax_px: float = Field(6.0, gt=0, description="least parallax (px at MVS resolution, at the median "
                                                          "scene depth) between reference and source")
    source_spacing: float = Field(0.5, ge=0, description="sources must differ from each other by this share of "
                                                         "min_parallax_px of parallax")
    max_parallax_px: float = Field(48.0, gt=0, description="sources with more parallax than this are used only "
                                                           "when too few others qualify")
    depth_range: tuple[float, float] | None = Field(
        None, description="(near, far) in pose units when there is no sparse map; None = estimate it with a "
                          "wide coarse sweep on the first frames",
        json_schema_extra={"cli": {"metavar": ["NEAR", "FAR"]}})
    range_percentiles: tuple[float, float] = Field((1.0, 99.0), description="percentiles of sparse/coarse "
                                                                              "depths that bound the sweep",
                                                   json_schema_extra={"cli": {"metavar": ["LO", "HI"]}})
    range_margin: float = Field(1.5, ge=1.0, description="the range is widened by this factor on both ends")
    min_confidence: float = Field(0.3, ge=0, le=1, description="sweep confidence below which a pixel is dropped")
    consistency_rel: float = Field(0.03, gt=0, description="relative depth agreement for the geometric check")
    consistency_px: float = Field(1.5, gt=0, description="forward-backward reprojection error limit (px, MVS res)")
    min_consistent: int = Field(1, ge=0, description="neighbours that must agree (0 disables the filter)")
    fill_sigma_color: float = Field(0.08, gt=0, description="joint-bilateral colour sigma (rgb in [0,1])")
    fill_iterations: int = Field(8, ge=0, description="edge-aware fill passes (dilations 1,2,4,...); the "
                                                       "remaining holes take the nearest valid depth")
    static_baseline_ratio: float = Field(0.002, ge=0, description="camera counts as static when every camera "
                                                                   "centre is within this fraction of the "
                                                                   "median depth from the first one")
    learned: LearnedDepthConfig | None = Field(None, description="optional learned monocular depth; required "
                                                                  "for static cameras")
    device: str = Field("cpu", description="torch device of the sweep (cpu, cuda, cuda:1, ...)")
    sweep_chunk: int = Field(0, ge=0, description="depth hypotheses per cost-volume chunk (memory vs speed; the "
                                                  "depth does not depend on it); 0 = 4 on the CPU, 8 on a GPU")
    workers: int = Field(0, ge=0, description="frames swept in parallel by a pool of threads; 0 = one per CPU "
                                              "core this process may use")
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads while the depth stage runs (0 = "
                                                    "leave torch's setting); parallelism comes from workers")

    @model_validator(mode="after")
    def _check(self) -> DepthConfig:
        for key in ("window", "agg_window"):
            if getattr(self, key) % 2 == 0:
                raise ValueError(f"{key} must be odd, got {getattr(self, key)}")
        if self.depth_range is not None and not (0 < self.depth_range[0] < self.depth_range[1]):
            raise ValueError(f"depth_range must satisfy 0 < near < far, got {self.depth_range}")
        lo, hi = self.range_percentiles
        if not (0 <= lo < hi <= 100):
            raise ValueError(f"range_percentiles must satisfy 0 <= lo < hi <= 100, got {self.range_percentiles}")
        return self


class MetricScaleConfig(BaseModel):
    """Metric cues (at most one of ``scale``, ``known_distance``, ``camera_height``; a metric depth model in
    ``DepthConfig.learned`` is used when none of them is given). See :mod:`vipe_dagster.depth.scale`."""

    model_config = ConfigDict(extra="forbid")

    scale: float | None = Field(None, gt=0, description="metric cue: metres per pose unit (per unit of the "
                                                        "relative reconstruction), given by the user",
                                json_schema_extra={"cli": {"flags": ["--metric_scale", "--metric-scale"],
                                                           "dest": "metric_scale"}})
    known_distance: tuple[int, int, float] | None = Field(
        None, description="metric cue: (frame i, frame j, metres): the distance in metres between the camera "
                          "centres of processed frames I and J",
        json_schema_extra={"cli": {"metavar": ["I", "J", "METRES"]}})
    camera_height: float | None = Field(None, gt=0, description="metric cue: height in metres of the camera "
                                                                "above the ground plane")
    use_depth_model: bool = Field(True, description="take the scale from a metric depth model when one is "
                                                    "configured (DepthConfig.learned with output metric_depth)")
    model_frames: int = Field(12, ge=1, description="frames the metric depth model is compared on")

    @model_validator(mode="after")
    def _one_cue(self) -> MetricScaleConfig:
        given = [k for k in ("scale", "known_distance", "camera_height") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one metric cue, got {', '.join(given)}")
        if self.known_distance is not None:
            i, j, m = self.known_distance
            if i == j or i < 0 or j < 0 or not m > 0:
                raise ValueError(f"known_distance must be two different frames >= 0 and a positive distance, "
                                 f"got {self.known_distance}")
        return self

    @property
    def given(self) -> bool:
        return any(getattr(self, k) is not None for k in ("scale", "known_distance", "camera_height"))
