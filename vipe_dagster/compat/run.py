"""One inference run, shared by every front end: ``vipe-dagster infer``, ``vipe infer`` and ``run.py``.

:func:`prepare` does everything that can fail cheaply (input, output, preset, weights, options, frame range,
sequence name) and returns an :class:`InferRequest`; nothing is written before it returns. :func:`execute`
takes the sequence lock and runs :func:`vipe_dagster.pipeline.infer`, then the optional output steps in
this order: artifacts at the source resolution, the SLAM map, the visualisation video; the manifest records
the preset (with the learned checkpoint, if any) and what each step did.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import PipelineConfig, parse_camera, parse_camera_json, parse_intrinsics, preset
from ..errors import ConfigError
from .presets import ResolvedWeights, resolve_weights
from .resolution import MODES, check_output_resolution

log = logging.getLogger(__name__)


@dataclass
class InferRequest:
    source: str
    output: str
    name: str
    config: PipelineConfig
    weights: ResolvedWeights
    start_frame: int | None = None
    end_frame: int | None = None
    frame_skip: int = 1
    intrinsics_source_px: tuple[float, float, float, float] | None = None
    camera_source_px: dict | None = None  # IntrinsicsConfig fields of a given lens model (distortion, model)
    output_resolution: str = "processing"
    save_slam_map: bool = False
    num_frames: int = 0
    source_size: tuple[int, int] = (0, 0)
    processing_size: tuple[int, int] = (0, 0)
    rig: Any = None  # (RawTake, cam): a fixed exo camera whose depth comes from the take's calibrated exo rig


@dataclass
class RunResult:
    request: InferRequest
    infer: Any  # vipe_dagster.pipeline.InferResult
    output_resolution: dict | None = None
    slam_map: dict | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = self.infer.summary()
        d["sequence"] = self.request.name
        d["output"] = self.request.output
        d["preset"] = self.request.config.preset
        if self.request.weights.checkpoint:
            d["learned_checkpoint"] = self.request.weights.checkpoint
        d["resolution"] = {
            "mode": self.request.output_resolution,
            "size": list(self.output_resolution["output_size"])
            if self.output_resolution
            else list(self.request.processing_size),
        }
        if self.slam_map:
            d["slam_map"] = self.slam_map
        if "rig_depth" in self.extra:
            r = self.extra["rig_depth"]
            d["depth"] = {"source": r["source"], "scale": r["scale"], "covered_fraction": r["covered_fraction"],
                          "rig": [r["camera"], *r["others"]], "filled_fraction": r["filled_fraction"]}
        d["seconds"] = round(self.seconds, 2)
        return d


def exo_intrinsics_from_gt(text: str, width: int, height: int) -> tuple[float, float, float, float]:
    """The EgoX fork's ``--use_exo_intrinsic_gt``: a 3x3 K (JSON, or a JSON file) of the exo camera at any
    resolution with the principal point at the image centre, scaled to the video: ``f' = f (H/2) / cy``,
    ``c' = (W/2, H/2)``."""
    import json
    from pathlib import Path

    raw = text
    if not text.lstrip().startswith("[") and Path(text).is_file():
        raw = Path(text).read_text()
    try:
        k = json.loads(raw)
        if len(k) != 3 or any(len(r) != 3 for r in k):
            raise ValueError("not 3x3")
        fx, fy, cy = float(k[0][0]), float(k[1][1]), float(k[1][2])
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigError(
            f"--use_exo_intrinsic_gt: expected a 3x3 intrinsics matrix as JSON (or a JSON file), "
            f"got {text[:80]!r} ({exc})"
        ) from None
    if not (fx > 0 and fy > 0 and cy > 0):
        raise ConfigError(f"--use_exo_intrinsic_gt: fx, fy and cy must be > 0, got {fx}, {fy}, {cy}")
    s = (height / 2.0) / cy
    return fx * s, fy * s, width / 2.0, height / 2.0


def prepare(
    source: str,
    output: str,
    pipeline: str = "default",
    *,
    name: str | None = None,
    start_frame: int | None = None,
    end_frame: int | None = None,
    frame_skip: int = 1,
    long_side: int | None = None,
    fixed_camera: bool = False,
    intrinsics: str | None = None,
    intrinsics_file: str | None = None,
    exo_intrinsic_gt: str | None = None,
    seed: int | None = None,
    visualize: bool = False,
    depth_model: str | None = None,
    hf_cache: str | None = None,
    output_resolution: str = "processing",
    save_slam_map: bool = False,
    config: PipelineConfig | None = None,
    depth_model_metric: bool = False,
    depth_model_max_depth: float | None = None,
    metric_scale: float | None = None,
    known_distance: tuple | list | None = None,
    camera_height: float | None = None,
    camera_model: str | None = None,
) -> InferRequest:
    """Validate a run before any work (see the module docstring). ``config`` replaces the preset's config
    (run.py builds it from overrides); the flags still apply on top of it."""
    from ..io import fs, open_video
    from ..io.names import check_sequence_name

    if output_resolution not in MODES:
        raise ConfigError(f"--output_resolution must be one of {', '.join(MODES)}, got {output_resolution!r}")
    fs.preflight_read(source, "Video")
    fs.preflight_write(output, "output (-o)")
    cfg = config.model_copy(deep=True) if config is not None else preset(pipeline)
    if long_side is not None:
        set_field(cfg.pose, "long_side", long_side, "--long_side")
    if seed is not None:
        set_field(cfg.pose, "seed", seed, "--seed")
    if fixed_camera:
        cfg.pose.assume_fixed_camera_pose = True
    cfg.visualize = cfg.visualize or visualize
    given = [x for x in (intrinsics, intrinsics_file, exo_intrinsic_gt) if x is not None]
    if len(given) > 1:
        raise ConfigError("give at most one of --intrinsics, --intrinsics_file and --use_exo_intrinsic_gt")
    rig = None
    if cfg.pose.assume_fixed_camera_pose and cfg.depth and depth_model is None and cfg.depth_config.learned is None:
        # a fixed exo camera of an Ego-Exo4D take with other calibrated exo cameras: metric depth from that rig
        # (vipe_dagster.egoexo.rig_depth) instead of a learned model; poses and masks as usual
        from ..egoexo.exo_infer import rig_for_video

        rig = rig_for_video(source)
        if rig is not None:
            cfg.depth = False
    weights = resolve_weights(cfg, depth_model, hf_cache, metric=depth_model_metric,
                              max_depth=depth_model_max_depth)
    if metric_scale is not None or known_distance is not None or camera_height is not None:
        from ..depth.config import MetricScaleConfig

        try:
            kd = known_distance
            cfg.metric = MetricScaleConfig(
                scale=metric_scale, camera_height=camera_height,
                known_distance=(int(kd[0]), int(kd[1]), float(kd[2])) if kd else None)
        except (ValueError, TypeError, IndexError) as exc:
            raise ConfigError(f"invalid metric cue: {exc}") from None
    stream = open_video(source, start_frame, end_frame, frame_skip, cfg.pose.long_side)  # validates the range
    src_w, src_h = check_output_resolution(output_resolution, stream)
    intr = None
    camera = None
    if cfg.camera == "panorama":  # equirectangular: 2:1 frames, no intrinsics (vipe_dagster.panorama)
        from ..panorama import check_equirect

        check_equirect(source, stream.info.width, stream.info.height)  # the recorded size in the message
        if camera_model is not None or given:
            raise ConfigError("--pipeline panorama takes no --intrinsics / --intrinsics_file / --camera-model: an "
                              "equirectangular camera has no intrinsics (ViPE writes all-zero PANORAMA rows) and "
                              "its virtual views' intrinsics follow from their size and FoV")
    if cfg.camera == "mei" and camera_model is None and (intrinsics is not None or intrinsics_file is not None):
        camera_model = "mei"  # --pipeline wide_angle: --intrinsics fx,fy,cx,cy,xi
    if cfg.camera == "mei" and camera_model not in (None, "mei"):
        raise ConfigError(f"--pipeline wide_angle runs an MEI camera; --camera-model {camera_model} does not fit it "
                          f"(give --camera-model mei or leave it out)")
    if intrinsics is not None:
        camera = parse_camera(intrinsics, camera_model)
    elif intrinsics_file is not None:
        camera = read_camera_file(intrinsics_file, (src_w, src_h), camera_model)
    elif exo_intrinsic_gt is not None:
        intr = exo_intrinsics_from_gt(exo_intrinsic_gt, src_w, src_h)
    elif rig is not None:  # the camera's calibration, so that the rig depth and the intrinsics agree
        intr, camera = rig_intrinsics(rig, src_w, src_h)
    if camera_model is not None and camera is None:
        set_field(cfg.pose.intrinsics, "camera_model", camera_model, "--camera-model")
    if camera is not None:
        intr = (camera["fx"], camera["fy"], camera["cx"], camera["cy"])
        check_camera_fields(camera, "--intrinsics" if intrinsics is not None else intrinsics_file)
        if len(camera) > 5 or camera["camera_model"] != "pinhole":
            camera_source = camera
        else:
            camera_source = None
    else:
        camera_source = None
    seq = check_sequence_name(name or stream.name, "--name" if name else "video name")
    return InferRequest(
        source=source,
        output=output,
        name=seq,
        config=cfg,
        weights=weights,
        start_frame=start_frame,
        end_frame=end_frame,
        frame_skip=frame_skip,
        intrinsics_source_px=intr,
        camera_source_px=camera_source,
        output_resolution=output_resolution,
        save_slam_map=save_slam_map,
        num_frames=len(stream),
        source_size=(src_w, src_h),
        processing_size=(stream.width, stream.height),
        rig=rig,
    )


def rig_intrinsics(rig, width: int, height: int) -> tuple[tuple[float, float, float, float], dict | None]:
    """fx fy cx cy of a rig camera's video from ``gopro_calibs.csv``, and with a Kannala-Brandt calibration the
    camera as ``--intrinsics ... --camera-model fisheye`` gives it (source-video pixels): the frames are then
    rectified at ingest like any given fisheye lens, and :func:`write_rig_depth` resamples the rig's depth (made
    on the pinhole with the calibration's fx fy cx cy) to that rectified view."""
    from ..egoexo import formats as F
    from ..egoexo.exo_infer import video_intrinsics

    take, cam = rig
    k, dist = video_intrinsics(F.read_gopro_calibs(take.gopro_calibs)[cam], width, height, take.gopro_calibs)
    intr = tuple(float(x) for x in k)
    if not any(dist):
        return intr, None
    camera = dict(zip(("fx", "fy", "cx", "cy"), intr, strict=True))
    camera.update({f"k{i + 1}": float(d) for i, d in enumerate(dist)}, camera_model="fisheye")
    return intr, camera


def resample_pinhole_depth(depth, k_from, k_to, size: tuple[int, int]):
    """Z-depth of a pinhole view ``k_from`` (fx fy cx cy at ``depth``'s size) seen through another pinhole
    ``k_to`` with the same centre and axes at ``size`` (w, h): z is unchanged, each pixel takes the nearest
    sample along its ray; pixels outside ``k_from``'s image get NaN."""
    import cv2
    import numpy as np

    from .. import camera as cam

    mx, my = cam.rectify_maps(cam.camera_from_params("pinhole", np.asarray(k_from, np.float64)), k_to, *size)
    return cv2.remap(np.ascontiguousarray(depth, np.float32), mx, my, interpolation=cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))


def write_rig_depth(req: InferRequest, store) -> dict:
    """Metric depth of a fixed exo camera from its take's calibrated exo rig, written as every frame's depth
    at the processing size; returns the rig report (also in the manifest's ``rig_depth``)."""
    import numpy as np

    from ..depth.mvs import edge_aware_fill
    from ..egoexo.exo_infer import ExoInferConfig, rig_views
    from ..egoexo.rig_depth import RigDepthConfig, rig_depth

    take, cam = req.rig
    cfg = ExoInferConfig(start_frame=req.start_frame or 0, end_frame=req.end_frame,
                         rig=RigDepthConfig(device=req.config.depth_config.device))
    views = rig_views(take, cfg)
    rd = rig_depth(list(views.values()), cam, cfg.rig)
    dense = edge_aware_fill(rd.depth, views[cam].image, req.config.depth_config.fill_sigma_color,
                            req.config.depth_config.fill_iterations) if np.isfinite(rd.depth).any() else rd.depth
    # the written intrinsics are the processing view's (the calibration's pinhole scaled, or the view rectified
    # from the KB lens at ingest): the rig depth is resampled along the rays into it
    filled = round(float(np.isfinite(dense).mean() - np.isfinite(rd.depth).mean()), 4)  # of the rig's view
    k_proc = store.read_intrinsics(req.name)[0][0, :4]
    dense = resample_pinhole_depth(dense, views[cam].k, k_proc, req.processing_size)
    n = store.read_pose(req.name)[0].shape[0]
    store.write_depth(req.name, (dense for _ in range(n)))
    return {**rd.report, "filled_fraction": filled,
            "take": take.take, "calibration": take.gopro_calibs}


def set_field(model, field_name: str, value, flag: str) -> None:
    """Assign a validated config field; a rejected value becomes one ConfigError line naming ``flag``."""
    from pydantic import ValidationError

    try:
        setattr(model, field_name, value)
    except ValidationError as exc:
        reasons = "; ".join(e.get("msg", str(e)) for e in exc.errors())
        raise ConfigError(f"{flag} {value!r}: {reasons}") from None


def check_camera_fields(camera: dict, source: str) -> None:
    """A given camera's fields must make a valid IntrinsicsConfig (one ConfigError line naming ``source``)."""
    from pydantic import ValidationError

    from ..config import IntrinsicsConfig

    try:
        IntrinsicsConfig(**camera)
    except ValidationError as exc:
        reasons = "; ".join(e.get("msg", str(e)) for e in exc.errors())
        raise ConfigError(f"{source}: {reasons}") from None


def read_camera_file(path: str, video_size: tuple[int, int], camera_model: str | None = None) -> dict:
    """An intrinsics file: JSON ``{"model", "params", "width", "height"}`` (COLMAP names and order, see
    :func:`vipe_dagster.config.parse_camera_json`) or a text line ``fx fy cx cy[ ...]`` as ``--intrinsics``.
    Returns IntrinsicsConfig fields in source-video pixels."""
    from ..io import fs

    if not fs.exists(path):
        raise ConfigError(f"intrinsics file not found: {path} (expected JSON {{\"model\", \"params\", \"width\", "
                          f"\"height\"}} or a text line 'fx fy cx cy')")
    text = fs.read_text(path)
    if text.lstrip().startswith("{"):
        cam = parse_camera_json(text, path, video_size)
        if camera_model is not None and camera_model != cam["camera_model"]:
            raise ConfigError(f"--camera-model {camera_model} contradicts {path}, whose model is "
                              f"{cam['camera_model']}")
        return cam
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(f"{path}: empty intrinsics file (expected 'fx fy cx cy')")
    return parse_camera(lines[0], camera_model, source=path)


def read_intrinsics_file(path: str) -> tuple[float, float, float, float]:
    from ..io import fs

    if not fs.exists(path):
        raise ConfigError(f"intrinsics file not found: {path} (expected a text file with 'fx fy cx cy')")
    lines = [ln for ln in fs.read_text(path).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(f"{path}: empty intrinsics file (expected 'fx fy cx cy')")
    return parse_intrinsics(lines[0], source=path)


def execute(req: InferRequest, progress: bool = False, wait: float = 0.0) -> RunResult:
    """Run a prepared request under the sequence's lock (see the module docstring)."""
    from ..io import ArtifactStore
    from ..io.locks import sequence_lock
    from ..pipeline import infer

    t0 = time.perf_counter()
    cfg = req.config.model_copy(deep=True)
    visualize, cfg.visualize = cfg.visualize, False
    with sequence_lock(req.output, req.name, "infer", wait=wait):
        res = infer(
            req.source,
            req.output,
            cfg,
            name=req.name,
            progress=progress,
            start_frame=req.start_frame,
            end_frame=req.end_frame,
            frame_skip=req.frame_skip,
            intrinsics_source_px=req.intrinsics_source_px,
            camera_source_px=req.camera_source_px,
        )
        store = ArtifactStore(req.output)
        out = RunResult(req, res)
        if req.rig is not None:
            out.extra["rig_depth"] = write_rig_depth(req, store)
        if req.output_resolution == "source":
            from .resolution import to_source_resolution

            out.output_resolution = to_source_resolution(
                store, req.name, req.source, req.start_frame, req.end_frame, req.frame_skip, progress=progress
            )
        if req.save_slam_map:
            from ..export.slam_map import write_slam_map

            uri, sm = write_slam_map(store, req.name)
            out.slam_map = {
                "uri": uri,
                "points": len(sm),
                "keyframes": len(sm.frame_inds),
                "source": sm.source,
            }
        if visualize:
            from ..viz.video import write_vis_video

            res.vis_uri = write_vis_video(store, req.name)
        out.seconds = time.perf_counter() - t0
        man = store.read_manifest(req.name)
        sections = {"preset": req.weights.as_dict(), "pipeline": man.get("pipeline") or {}}
        pipe = sections["pipeline"]
        stages = pipe.setdefault("stages", ["pose"])
        for stage, on in (
            ("output_resolution_source", out.output_resolution is not None),
            ("slam_map", out.slam_map is not None),
            ("visualize", visualize),
        ):
            if on and stage not in stages:
                stages.append(stage)
        if out.slam_map:
            sections["slam_map"] = out.slam_map
        if "rig_depth" in out.extra:
            sections["rig_depth"] = out.extra["rig_depth"]
            if "rig_depth" not in stages:
                stages.append("rig_depth")
        store.update_manifest(req.name, "pipeline", sections)
        if "output_resolution" not in man:
            store.update_manifest(req.name, "output_resolution", {
                "output_resolution": {"mode": "processing", "output_size": list(req.processing_size)}})
    return out
