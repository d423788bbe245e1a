"""Pydantic configuration models with named presets, shared by the CLI and the Dagster resources.

Every value has a documented default. Presets:

- ``default``: poses + intrinsics (weight-free SLAM) + dense depth (plane-sweep MVS) + dynamic masks
- ``pose_only``: weight-free visual SLAM with focal self-calibration, no depth
- ``fixed_camera``: a static camera: identity poses, focal from the prior or from the user, background-model
  masks; dense depth only with a learned depth model (``depth_config.learned``)

The reference's (NVIDIA ViPE) preset names are accepted too; what each runs here, and which learned
checkpoint takes the reference model's role, is in :mod:`vipe_dagster.compat.presets`
(docs/reference_commands.md):

- ``no_vda``: as ``default`` (there is no temporal video-depth model to switch off)
- ``static_vda``: as ``default`` without dynamic-object masks
- ``lyra``: as ``default`` (the EgoX renderer's preset; with a fixed camera it needs a learned depth model)
- ``dav3``: as ``default`` with a learned depth model aligned to the multi-view depth (weights required)
- ``wide_angle``: an MEI (unified, xi) camera: every frame is rectified to a pinhole view for SLAM, BA and
  plane-sweep depth, depth is warped back to the MEI image; MEI intrinsics rows and ``MEI`` in
  ``_camera.txt`` (:mod:`vipe_dagster.wide_angle`); masks computed on the pinhole view, warped back
- ``panorama``: an equirectangular (360 x 180 deg) video split into virtual pinhole views (100 deg, fixed
  intrinsics): poses from one yaw view's SLAM (the front
  view unless it lacks texture), plane-sweep depth on 4 yaw + bottom + top views stitched back
  as ray distance; all-zero ``PANORAMA`` intrinsics rows (:mod:`vipe_dagster.panorama`); no dynamic masks
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .depth.config import DepthConfig, MetricScaleConfig
from .errors import ConfigError
from .masks.config import MaskConfig

PRESETS = ("default", "pose_only", "fixed_camera", "no_vda", "static_vda", "lyra", "dav3", "wide_angle",
           "panorama")
UNAVAILABLE_PRESETS: dict[str, str] = {}
"""Reference presets that need a camera model this engine does not run yet (a separate issue)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrackingConfig(_Model):
    """KLT feature tracking (cv2.goodFeaturesToTrack + calcOpticalFlowPyrLK)."""

    max_features: int = Field(800, ge=50, description="target number of live tracks per frame")
    min_distance_px: float = Field(8.0, gt=0, description="minimum spacing of new corners (px at processing size)")
    quality_level: float = Field(0.005, gt=0, lt=1, description="Shi-Tomasi quality level of new corners")
    win_size: int = Field(21, ge=5, description="LK window size (px)")
    pyr_levels: int = Field(3, ge=0, description="LK pyramid levels")
    fb_max_px: float = Field(1.0, gt=0, description="forward-backward consistency threshold (px)")
    min_tracks: int = Field(40, ge=8, description="fewer surviving tracks than this marks the frame as lost")
    border_px: int = Field(8, ge=0, description="tracks closer than this to the image border are dropped")


class KeyframeConfig(_Model):
    """When a frame becomes a keyframe."""

    flow_frac: float = Field(0.04, gt=0, description="median track displacement since the last keyframe, "
                             "as a fraction of the image width, that triggers a keyframe")
    track_loss_frac: float = Field(0.3, gt=0, lt=1, description="fraction of the last keyframe's mapped tracks "
                                   "lost that triggers a keyframe")
    max_gap: int = Field(15, ge=1, description="a keyframe at least every this many frames")
    init_min_parallax_deg: float = Field(1.0, gt=0, description="median rotation-compensated parallax needed "
                                         "before the two-view initialisation is accepted")
    init_max_parallax_deg: float = Field(20.0, gt=0, description="a two-view motion whose median rotation-"
                                         "compensated parallax exceeds this is rejected: the initialisation "
                                         "accepts the first pair past init_min_parallax_deg, so a video's true "
                                         "pair sits near it, and tens of degrees mean a wrong rotation (a "
                                         "near-homography pair's twisted or planar alternative)")
    init_ambiguity_ratio: float = Field(0.5, gt=0, le=1, description="a planar scene has two two-view "
                                        "motions: the initialisation waits until the better one's accumulated "
                                        "reprojection error on later frames is below this fraction of the other's")
    init_planar_min_frames: int = Field(5, ge=1, description="later frames that must be seen before a planar "
                                        "scene's motion hypothesis is chosen")
    init_max_frames: int = Field(90, ge=2, description="frames to search for an initialisation pair before "
                                 "the segment is declared rotation-only")


class MapConfig(_Model):
    """Long-term data association: map points re-found by descriptor after their KLT track ended."""

    reassociate: bool = Field(True, description="at each keyframe, match new corners to map points that project "
                              "near them (SIFT descriptors of the keyframe corners), so a revisited part of the "
                              "scene reuses its old points instead of new ones (less drift)")
    radius_frac: float = Field(0.02, gt=0, description="search radius around a map point's projection, as a "
                               "fraction of the image width")
    max_desc_dist: float = Field(350.0, gt=0, description="largest SIFT descriptor distance (L2, 0-512 scale) "
                                 "of an accepted match")
    ratio: float = Field(0.9, gt=0, le=1, description="best / second-best descriptor distance needed to accept "
                         "a match (Lowe's ratio test among the candidates in the radius)")
    desc_size_px: float = Field(16.0, gt=0, description="SIFT descriptor support (keypoint size, px)")
    desc_scale: float = Field(0.5, gt=0, le=1, description="descriptors are computed on the frame scaled by this "
                              "factor (SIFT's scale space costs ~150 ms per 512x384 frame at full size)")
    recent_keyframes: int = Field(30, ge=1, description="the points of this many latest keyframes are candidates")
    loop_keyframes: int = Field(20, ge=0, description="plus the points of up to this many older keyframes "
                                "that viewed the scene from nearby (loop candidates)")
    relocalise: bool = Field(True, description="after tracking is lost, look for each new frame in the old map "
                             "(descriptor matches + PnP) and continue in the old world when it is found")
    reloc_keyframes: int = Field(40, ge=1, description="relocalisation matches the points of this many latest "
                                 "keyframes of the lost map")
    reloc_wait_frames: int = Field(15, ge=0, description="frames after a loss during which no new map is "
                                   "started (the old one is looked for first)")
    reloc_max_frames: int = Field(300, ge=0, description="frames after a loss during which relocalisation "
                                  "is tried")


class BAConfig(_Model):
    """Bundle adjustment (``gpu_kernels.ba``)."""

    window: int = Field(10, ge=2, description="keyframes optimised by the windowed BA (older ones fixed)")
    window_iters: int = Field(8, ge=1, description="LM iterations of the windowed BA")
    global_iters: int = Field(30, ge=1, description="LM iterations of the final global BA")
    window_tol: float = Field(1e-5, gt=0, description="windowed BA stops when the relative cost decrease "
                              "of a step is below this")
    window_float64: bool = Field(False, description="windowed BA in float64 (default float32: about 7 % faster, "
                                                    "same accuracy on the generated scenes; global BA is always float64)")
    global_tol: float = Field(1e-8, gt=0, description="the same for global BA (and focal calibration)")
    loss: Literal["huber", "cauchy", "l2"] = Field("huber", description="robust loss on reprojection residuals")
    loss_scale_px: float = Field(1.5, gt=0, description="robust loss scale (px)")
    outlier_px: float = Field(3.0, gt=0, description="observations with larger reprojection error are dropped")
    min_obs: int = Field(2, ge=2, description="keyframe observations a map point needs to stay in BA")
    track_consistency_p: float = Field(1e-6, ge=0, lt=1, description="after the final global BA, a map point "
                                       "whose reprojection errors, summed over its observations, exceed the "
                                       "chi-square bound of this tail probability (noise estimated robustly "
                                       "from all observations) is dropped and the BA runs again: a corner that "
                                       "slides along an occlusion or a shadow fits no static point, and its "
                                       "errors, each below outlier_px, bias the self-calibrated focal; 0 = off")
    device: str = Field("cpu", description="torch device of the BA ('cpu', 'cuda')")
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads during BA on CPU (0 = torch's "
                               "default); the BA problems are small and extra threads only contend "
                               "(8x slower on a loaded 2-core machine)")


class IntrinsicsConfig(_Model):
    """Camera intrinsics in pixels of the processed rgb; unset values are estimated."""

    fx: float | None = Field(None, gt=0, description="focal x (px); None = estimate")
    fy: float | None = Field(None, gt=0, description="focal y (px); None = same as fx")
    cx: float | None = Field(None, description="principal point x (px); None = image centre")
    cy: float | None = Field(None, description="principal point y (px); None = image centre")
    camera_model: Literal["pinhole", "radial", "fisheye", "mei"] | None = Field(
        None, description="lens model: pinhole (no distortion, none estimated), radial (OpenCV/Brown k1 k2 p1 p2 "
        "k3; self-calibration always estimates k1), fisheye (Kannala-Brandt / OpenCV fisheye k1..k4, given only), "
        "mei (unified xi, given only); None = radial when distortion is given, else self-calibration decides")
    k1: float | None = Field(None, description="given distortion k1 (radial: OpenCV convention; fisheye: "
                             "Kannala-Brandt theta^3 term); None = pinhole when fx is given, self-calibrated "
                             "otherwise. Given distortion is removed at ingest (the video is rectified to the "
                             "ideal pinhole that keeps the valid field of view)")
    k2: float | None = Field(None, description="given distortion k2 (with k1)")
    p1: float | None = Field(None, description="given tangential distortion p1 (radial model)")
    p2: float | None = Field(None, description="given tangential distortion p2 (radial model)")
    k3: float | None = Field(None, description="given distortion k3 (radial: r^6 term; fisheye: theta^7 term)")
    k4: float | None = Field(None, description="given fisheye distortion k4 (theta^9 term)")
    xi: float | None = Field(None, gt=-1, description="given MEI (unified) xi")
    radial_terms: int = Field(1, ge=0, le=2, description="radial distortion coefficients self-calibrated with "
                              "the focal (0 = pinhole, 1 = k1, 2 = k1 and k2); frames with a significant "
                              "estimated distortion are rectified to a pinhole camera after the pose stage")
    radial_keyframes: int = Field(16, ge=3, description="the radial terms are first estimated (global BA with "
                                  "the focal) once the map has this many keyframes, and refined at the end")
    radial_min_chi2: float = Field(50.0, gt=0, description="self-calibrated radial terms are kept only if they "
                                   "lower the squared reprojection error by this many noise variances (a "
                                   "likelihood-ratio test against the pinhole fit)")
    rectify_min_px: float = Field(0.5, ge=0, description="rewrite rgb as the ideal pinhole camera when the "
                                  "estimated (or given) distortion moves some pixel by at least this much")
    fov_prior_deg: float = Field(60.0, gt=5, lt=170, description="horizontal FoV prior used to start the "
                                 "focal search when fx is not given")
    estimate_focal: bool = Field(True, description="refine the focal in BA (ignored when fx is given)")
    focal_sweep: bool = Field(True, description="choose the starting focal by a BA-cost sweep over FoVs")
    calibration_pass: bool = Field(True, description="estimate the focal on the first keyframes in a first "
                                   "pass, then build the map with it (re-reads the start of the video)")
    calibration_rounds: int = Field(3, ge=1, description="maximum rounds of the calibration pass")
    calibration_keyframes: int = Field(8, ge=3, description="keyframes mapped in each calibration round")
    sweep_fov_deg: tuple[float, float] = Field((30.0, 110.0), description="FoV range of the focal sweep")

    @property
    def given(self) -> bool:
        return self.fx is not None

    @model_validator(mode="after")
    def _fy_needs_fx(self):
        if self.fy is not None and self.fx is None:
            raise ValueError("fy given without fx")
        given = {k: getattr(self, k) for k in ("k1", "k2", "p1", "p2", "k3", "k4", "xi") if getattr(self, k) is not None}
        if self.fx is None and any(k != "k1" and k != "k2" for k in given):
            raise ValueError(f"distortion {sorted(given)} given without fx (give the whole camera)")
        model = self.camera_model
        if model in ("fisheye", "mei") and self.fx is None:
            raise ValueError(f"camera_model {model} needs the given camera (fx fy cx cy and its distortion): "
                             f"its self-calibration is not available")
        if model == "mei" and self.xi is None:
            raise ValueError("camera_model mei needs xi")
        if model != "mei" and self.xi is not None:
            raise ValueError("xi is a parameter of camera_model mei")
        if model == "fisheye" and any(k in given for k in ("p1", "p2")):
            raise ValueError("the fisheye (Kannala-Brandt) model has no p1 p2")
        if model in ("radial", "pinhole", None) and "k4" in given:
            raise ValueError("k4 is a parameter of camera_model fisheye")
        if model == "pinhole" and given:
            raise ValueError(f"camera_model pinhole has no distortion, got {sorted(given)}")
        if model == "pinhole":  # (__dict__: no re-validation of the assignment)
            self.__dict__["radial_terms"] = 0
        elif model == "radial" and self.radial_terms == 0:
            self.__dict__["radial_terms"] = 1
        return self

    def given_distortion(self) -> tuple[str, list[float]] | None:
        """The given lens as ``(camera-module model name, [fx, fy, cx, cy, ...])`` when a camera with a
        distortion is given (fx and a non-zero distortion), else ``None``."""
        if self.fx is None:
            return None
        fx = float(self.fx)
        fy = float(self.fy if self.fy is not None else self.fx)
        head = [fx, fy, float(self.cx if self.cx is not None else float("nan")),
                float(self.cy if self.cy is not None else float("nan"))]
        z = [float(v or 0.0) for v in (self.k1, self.k2, self.p1, self.p2, self.k3, self.k4, self.xi)]
        k1, k2, p1, p2, k3, k4, xi = z
        if self.camera_model == "mei":
            return "mei", head + [xi, k1, k2, p1, p2]
        if self.camera_model == "fisheye":
            return "kannala_brandt", head + [k1, k2, k3, k4]
        if not any((k1, k2, p1, p2, k3)):
            return None
        return "opencv", head + [k1, k2, p1, p2, k3]


class PoseConfig(_Model):
    """Weight-free visual SLAM with focal self-calibration."""

    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    keyframe: KeyframeConfig = Field(default_factory=KeyframeConfig)
    ba: BAConfig = Field(default_factory=BAConfig)
    map: MapConfig = Field(default_factory=MapConfig)
    intrinsics: IntrinsicsConfig = Field(default_factory=IntrinsicsConfig)
    assume_fixed_camera_pose: bool = Field(False, description="static camera: identity poses, no SLAM")
    long_side: int = Field(512, ge=0, description="processing size: long side of the ingested rgb (px, a "
                           "multiple of 8 is used); 0 = the source size")
    use_masks: bool = Field(False, description="ignore tracks on the dynamic-object masks of mask/<n>.zip (an "
                            "earlier run's or given masks; the run fails if they are missing). Off by default: "
                            "a mask left in the store never changes a result silently; the manifest lists every "
                            "input the pose stage read, with its content hash")
    seed: int = Field(0, description="seed for RANSAC and everything random")

    @field_validator("long_side")
    @classmethod
    def _long_side(cls, v: int) -> int:
        if 0 < v < 64:
            raise ValueError(f"must be 0 (the source size) or >= 64 px, got {v}")
        return v


class MeiConfig(_Model):
    """The MEI (unified) camera of ``--pipeline wide_angle`` (``camera: mei``)."""

    xi_init: float = Field(1.0, gt=-1, description="xi the self-calibration starts from when no MEI camera is "
                           "given (the frames are rectified with it; the radial terms the pose stage estimates "
                           "on that view then give the focal and xi)")
    fov_prior_deg: float = Field(150.0, gt=5, lt=220, description="horizontal FoV of the starting MEI focal when "
                                 "no camera is given")
    rectify_focal_scale: float = Field(0.8, gt=0, description="focal of the pinhole view SLAM and depth run on, "
                                       "as a fraction of the MEI's equivalent pinhole focal f / (1 + xi) (smaller: "
                                       "wider view at a lower resolution; never wider than the MEI image holds)")


class PanoramaConfig(_Model):
    """The virtual pinhole views of ``--pipeline panorama`` (``camera: panorama``, :mod:`vipe_dagster.panorama`)."""

    view_px: int = Field(0, ge=0, description="side of the square virtual views (px); 0 = the size whose central "
                         "resolution equals the equirectangular frame's (0.38 x its width: 388 px at 1024x512; "
                         "the reference uses 512)")
    fov_deg: float = Field(100.0, gt=60, lt=150, description="field of view of the virtual views (the reference's "
                           "100 deg; 4 yaw views need more than 90)")
    track_view: Literal["auto", "front", "right", "back", "left"] = Field(
        "auto", description="the yaw view SLAM runs on (poses of the panorama camera follow through its fixed "
        "rotation); auto = front unless the first frame has fewer than half as many corners there as in the "
        "best-textured yaw view")
    top_view: bool = Field(True, description="also compute depth on a view looking straight up (the reference's "
                           "rig has 4 yaw views and a bottom view; without it the cap above ~50 deg elevation "
                           "has no depth)")


class PipelineConfig(_Model):
    """Top-level config: which stages run, and their settings."""

    preset: Literal["default", "pose_only", "fixed_camera", "no_vda", "static_vda", "lyra", "dav3",
                    "wide_angle", "panorama"] = Field("default", description="preset name")
    camera: Literal["pinhole", "mei", "panorama"] = Field(
        "pinhole", description="camera model of the video: pinhole (lens distortion given with --intrinsics is "
        "rectified at ingest), mei (wide-angle: processed on a pinhole rectification, artifacts in ViPE's MEI "
        "layout) or panorama (equirectangular: processed on virtual pinhole views, artifacts in ViPE's panorama "
        "layout)")
    mei: MeiConfig = Field(default_factory=MeiConfig, description="MEI camera settings (camera: mei)")
    panorama: PanoramaConfig = Field(default_factory=PanoramaConfig,
                                     description="virtual views of an equirectangular video (camera: panorama)")
    depth: bool = Field(True, description="compute dense depth (plane-sweep MVS; learned model if configured)")
    masks: bool = Field(True, description="compute dynamic-object masks (background model / motion residual)")
    visualize: bool = Field(False, description="write vipe/<n>_vis.mp4 (rgb | depth | mask | trajectory)",
                            json_schema_extra={"cli": {"aliases": ["-v"]}})
    pose: PoseConfig = Field(default_factory=PoseConfig)
    depth_config: DepthConfig = Field(default_factory=DepthConfig, description="dense depth settings")
    mask_config: MaskConfig = Field(default_factory=MaskConfig, description="dynamic mask settings")
    metric: MetricScaleConfig = Field(default_factory=MetricScaleConfig,
                                      description="metric cue (user scale, known distance, camera height, or a "
                                                  "metric depth model); none = relative scale")

    @field_validator("preset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; choose one of {PRESETS}")
        return v


def preset(name: str) -> PipelineConfig:
    """Return the named preset (see the module docstring); weights are resolved by ``compat.presets``."""
    if name == "default":
        return PipelineConfig(preset="default", depth=True, masks=True)
    if name == "pose_only":
        return PipelineConfig(preset="pose_only", depth=False, masks=False)
    if name == "fixed_camera":
        # a static camera has no parallax: depth only with a learned model (``depth_config.learned``)
        return PipelineConfig(preset="fixed_camera", depth=False, masks=True,
                              pose=PoseConfig(assume_fixed_camera_pose=True))
    if name in ("no_vda", "lyra", "dav3"):
        return PipelineConfig(preset=name, depth=True, masks=True)
    if name == "static_vda":
        return PipelineConfig(preset="static_vda", depth=True, masks=False)
    if name == "wide_angle":
        return PipelineConfig(preset="wide_angle", depth=True, masks=True, camera="mei")
    if name == "panorama":
        # the equirectangular frames are processed at pose.long_side (512x256 by default: virtual views of
        # ~194 px; --long_side 1024 gives ~388 px views); no dynamic masks
        return PipelineConfig(preset="panorama", depth=True, masks=False, camera="panorama")
    if name in UNAVAILABLE_PRESETS:
        raise ConfigError(f"pipeline preset {name!r} is not available yet: it needs "
                          f"{UNAVAILABLE_PRESETS[name]}, which this engine does not run yet; choose one of "
                          f"{', '.join(PRESETS)}")
    raise ConfigError(f"unknown pipeline preset {name!r}; choose one of {', '.join(PRESETS)}")


def parse_intrinsics(text: str, source: str = "--intrinsics") -> tuple[float, float, float, float]:
    """Parse ``"fx,fy,cx,cy"`` (commas or whitespace); raise ConfigError naming ``source`` on bad input."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 4:
        raise ConfigError(f"{source}: expected 4 numbers 'fx,fy,cx,cy', got {len(parts)} in {text!r}")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise ConfigError(f"{source}: expected 4 numbers 'fx,fy,cx,cy', got {text!r} ({exc})") from exc
    fx, fy, cx, cy = vals
    if not all(v == v and abs(v) != float("inf") for v in vals):
        raise ConfigError(f"{source}: intrinsics must be finite, got {text!r}")
    if fx <= 0 or fy <= 0:
        raise ConfigError(f"{source}: focal lengths must be > 0, got fx={fx}, fy={fy}")
    return fx, fy, cx, cy


# the values after fx fy cx cy in --intrinsics, per --camera-model (None: radial when there are any)
CAMERA_MODEL_TAILS = {
    "pinhole": ((),),
    "radial": ((), ("k1",), ("k1", "k2"), ("k1", "k2", "p1", "p2"), ("k1", "k2", "p1", "p2", "k3")),
    "fisheye": (("k1", "k2", "k3", "k4"),),
    "mei": (("xi",), ("xi", "k1", "k2", "p1", "p2")),
}
# COLMAP camera models accepted in an intrinsics file: (our camera_model, parameter names as COLMAP orders them)
COLMAP_FILE_MODELS = {
    "SIMPLE_PINHOLE": ("pinhole", ("f", "cx", "cy")),
    "PINHOLE": ("pinhole", ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": ("radial", ("f", "cx", "cy", "k1")),
    "RADIAL": ("radial", ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": ("radial", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    "FULL_OPENCV": ("radial", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
    "OPENCV_FISHEYE": ("fisheye", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    "MEI": ("mei", ("fx", "fy", "cx", "cy", "xi")),
}


def parse_camera(text: str, camera_model: str | None = None, source: str = "--intrinsics") -> dict:
    """Parse ``--intrinsics`` ``"fx,fy,cx,cy[,...]"`` for ``camera_model`` (the tails of
    ``CAMERA_MODEL_TAILS``; ``None``: pinhole for 4 values, radial for more) into IntrinsicsConfig fields
    (``camera_model``, ``fx`` ... in the source video's pixels); a ConfigError names ``source``."""
    parts = [p for p in text.replace(",", " ").split() if p]
    model = camera_model or ("pinhole" if len(parts) == 4 else "radial")
    tails = CAMERA_MODEL_TAILS.get(model)
    if tails is None:
        raise ConfigError(f"--camera-model: expected one of {', '.join(CAMERA_MODEL_TAILS)}, got {camera_model!r}")
    forms = " or ".join("'" + ",".join(("fx", "fy", "cx", "cy") + t) + "'" for t in tails)
    if len(parts) < 4:
        raise ConfigError(f"{source}: expected 4 numbers 'fx,fy,cx,cy' (then the distortion: {forms}), got "
                          f"{len(parts)} in {text!r}")
    tail = next((t for t in tails if len(t) == len(parts) - 4), None)
    if tail is None:
        raise ConfigError(f"{source}: expected {forms} for camera model {model}, got {len(parts)} numbers in {text!r}")
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"{source}: expected numbers {forms}, got {text!r} ({exc})") from exc
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{source}: intrinsics must be finite, got {text!r}")
    if vals[0] <= 0 or vals[1] <= 0:
        raise ConfigError(f"{source}: focal lengths must be > 0, got fx={vals[0]}, fy={vals[1]}")
    out = dict(zip(("fx", "fy", "cx", "cy") + tail, vals, strict=True))
    if model == "mei" and out["xi"] <= -1:
        raise ConfigError(f"{source}: MEI xi must be > -1, got {out['xi']}")
    out["camera_model"] = model
    return out


def parse_camera_json(text: str, source: str, video_size: tuple[int, int] | None = None) -> dict:
    """An intrinsics file in JSON, ``{"model": COLMAP name, "params": [...], "width": W, "height": H}``
    (``COLMAP_FILE_MODELS``; parameters in COLMAP's order, pixel centres at integer coordinates as OpenCV
    has them), as IntrinsicsConfig fields in pixels of the source video: a calibration made at another
    size of the same aspect is scaled to ``video_size``."""
    import json

    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(d, dict) or "model" not in d or "params" not in d:
        raise ConfigError(f"{source}: expected a JSON object with \"model\" (one of {', '.join(COLMAP_FILE_MODELS)}),"
                          f" \"params\" and optionally \"width\", \"height\"")
    name = str(d["model"]).upper()
    if name not in COLMAP_FILE_MODELS:
        raise ConfigError(f"{source}: model {d['model']!r} not supported; expected one of "
                          f"{', '.join(COLMAP_FILE_MODELS)}")
    model, names = COLMAP_FILE_MODELS[name]
    try:
        vals = [float(v) for v in d["params"]]
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: \"params\" must be a list of numbers, got {d['params']!r}") from None
    if len(vals) != len(names) or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{source}: {name} takes {len(names)} finite numbers ({' '.join(names)}), got {vals}")
    p = dict(zip(names, vals, strict=True))
    if "f" in p:
        p["fx"] = p["fy"] = p.pop("f")
    if name == "FULL_OPENCV":
        if any(p.pop(k) != 0 for k in ("k4", "k5", "k6")):
            raise ConfigError(f"{source}: FULL_OPENCV rational terms k4 k5 k6 are not supported (give 0)")
    if p["fx"] <= 0 or p["fy"] <= 0:
        raise ConfigError(f"{source}: focal lengths must be > 0, got {vals}")
    w, h = d.get("width"), d.get("height")
    if (w is None) != (h is None):
        raise ConfigError(f"{source}: give both \"width\" and \"height\" (the calibration's image size) or neither")
    if w is not None and video_size is not None and (int(w), int(h)) != tuple(video_size):
        sx, sy = video_size[0] / float(w), video_size[1] / float(h)
        if abs(sx / sy - 1) > 0.01:
            raise ConfigError(f"{source}: calibrated at {w}x{h}, but the video is {video_size[0]}x{video_size[1]} "
                              f"(another aspect ratio: a crop, which the file cannot describe)")
        p["fx"], p["fy"] = p["fx"] * sx, p["fy"] * sy
        p["cx"], p["cy"] = (p["cx"] + 0.5) * sx - 0.5, (p["cy"] + 0.5) * sy - 0.5
    p["camera_model"] = model
    return p
