"""Camera poses and intrinsics: one SLAM run per video writes both (``@multi_asset``), plus their checks."""

import time
import warnings
from typing import Literal

import dagster as dg
import numpy as np
from pydantic import Field, ValidationError

from resources.artifacts import ArtifactStoreResource
from resources.compute import ComputeResource
from vipe_dagster.camera import field_of_view
from vipe_dagster.camera_stages import run_pose_on_camera
from vipe_dagster.config import (
    PRESETS,
    BAConfig,
    IntrinsicsConfig,
    KeyframeConfig,
    MapConfig,
    MeiConfig,
    PanoramaConfig,
    PipelineConfig,
    PoseConfig,
    TrackingConfig,
    preset,
)
from vipe_dagster.errors import ConfigError
from vipe_dagster.io import fs
from vipe_dagster.pipeline import run_pose
from vipe_dagster.previews import markdown_image, trajectory_views
from vipe_dagster.quality import (
    expectations_report,
    frame_metrics_table,
    intrinsics_plausibility,
    pose_validity,
)

from ._common import (
    BACKFILL,
    GPU_POOL,
    POSE_CODE_VERSION,
    RETRY,
    VIDEO_GROUP,
    VIDEOS,
    engine_step,
    placement_tags,
    sidecar_path,
)
from ._config import engine_values, run_config_class, section_config_class
from .video import processed_video

INTRINSICS = dg.AssetKey("camera_intrinsics")
POSE = dg.AssetKey("pose_trajectory")


POSE_SECTIONS = {
    "tracking": section_config_class("PoseTrackingRunConfig", TrackingConfig),
    "keyframe": section_config_class("PoseKeyframeRunConfig", KeyframeConfig),
    "ba": section_config_class("PoseBARunConfig", BAConfig, exclude=("device",)),
    "map": section_config_class("PoseMapRunConfig", MapConfig),
    "intrinsics": section_config_class("PoseIntrinsicsRunConfig", IntrinsicsConfig),
}
"""Every nested section of ``PoseConfig`` as typed nested run config (the BA device is the compute resource's)."""

MeiRunConfig = section_config_class("MeiRunConfig", MeiConfig)
PanoramaRunConfig = section_config_class("PanoramaRunConfig", PanoramaConfig)

PoseRunConfig = run_config_class(
    "PoseRunConfig", PoseConfig, fields=("seed", "use_masks"), sections=POSE_SECTIONS,
    extra={
        "preset": (Literal[PRESETS], Field(
            default="pose_only", description="pose_only | fixed_camera (identity poses) | wide_angle (an MEI "
                                             "camera) | panorama (equirectangular); the other pinhole presets' "
                                             "pose part is the same as pose_only. wide_angle and panorama track "
                                             "a pinhole view of the recorded frames and write MEI / PANORAMA "
                                             "intrinsics; depth_maps and dynamic_masks follow the camera")),
    },
    also_sections={"mei": (PipelineConfig, "mei", MeiRunConfig),
                   "panorama": (PipelineConfig, "panorama", PanoramaRunConfig)},
    doc="Which pose preset to run, the seed, and every `PoseConfig` section as typed nested config "
        "(`intrinsics: {fx: 900.0}`, `ba: {window: 12}`, `tracking: {max_features: 1200}`), plus the MEI and "
        "panorama settings of the wide_angle / panorama presets. Left out: "
        "`ba.device` (the compute resource's), `assume_fixed_camera_pose` (the `fixed_camera` preset) and "
        "`long_side` (the processing size is `processed_video`'s).")


def build_pipeline_config(cfg, device: str) -> PipelineConfig:
    """The preset's PipelineConfig with the run config's pose settings, camera sections and compute device."""
    pipe = preset(cfg.preset).model_copy(deep=True)
    pipe.pose = build_pose_config(cfg, device)
    try:
        pipe.mei = MeiConfig.model_validate(engine_values(cfg.mei))
        pipe.panorama = PanoramaConfig.model_validate(engine_values(cfg.panorama))
    except ValidationError as exc:
        raise ConfigError(f"invalid slam_pose run config: {exc}") from exc
    return pipe


def build_pose_config(cfg, device: str) -> PoseConfig:
    """PoseConfig from a preset, the run config's settings and sections, and the compute device.

    The sections replace the preset's: every preset's sections are the engine defaults (a preset differs
    only in ``assume_fixed_camera_pose``; tests/test_config_single_source.py checks it), so a section left
    at its run-config defaults keeps the preset's values."""
    pipe = preset(cfg.preset)
    base = pipe.pose.model_dump()
    for name, value in engine_values(cfg).items():
        if name in POSE_SECTIONS:
            base[name].update(value)
        else:
            base[name] = value
    base["ba"]["device"] = device
    try:
        return PoseConfig.model_validate(base)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid slam_pose run config: {problems}") from exc


@dg.multi_asset(
    name="slam_pose",
    specs=[
        dg.AssetSpec(INTRINSICS, deps=[processed_video], group_name=VIDEO_GROUP, code_version=POSE_CODE_VERSION,
                     kinds={"pytorch"}, partitions_def=VIDEOS,
                     description="Per-frame fx fy cx cy in pixels of the processed rgb (`intrinsics/<key>.npz` "
                                 "+ `_camera.txt`)."),
        dg.AssetSpec(POSE, deps=[processed_video], group_name=VIDEO_GROUP, code_version=POSE_CODE_VERSION,
                     kinds={"pytorch"}, partitions_def=VIDEOS,
                     description="Per-frame OpenCV camera-to-world poses (`pose/<key>.npz`), sparse map, "
                                 "ViPE info.pkl, per-frame metrics table and a trajectory preview (top and side views with scale bars)."),
    ],
    partitions_def=VIDEOS,
    backfill_policy=BACKFILL,
    pool=GPU_POOL,
    retry_policy=RETRY,
    op_tags=placement_tags("gpu"),
    can_subset=False,
)
def slam_pose(context: dg.AssetExecutionContext, config: PoseRunConfig, artifacts: ArtifactStoreResource,
              compute: ComputeResource):
    key = context.partition_key
    store = artifacts.store()
    with compute.step_device(key) as device:
        pipe = build_pipeline_config(config, device)
        context.log.info(f"SLAM on {store.path('rgb', key)} with preset {config.preset} ({pipe.camera} camera) "
                         f"on {device}")
        with engine_step(context, store, key, "slam_pose"):
            store.check_set(key, ("rgb",))
            if pipe.camera == "pinhole":
                res = run_pose(store, key, pipe.pose)
            else:
                res, _ = run_pose_on_camera(store, key, pipe)
    t0 = time.perf_counter()
    c2w, _ = store.read_pose(key)
    intr, _, types = store.read_intrinsics(key)
    manifest = store.read_manifest(key)
    frames = manifest.get("frames", {})
    width, height = int(frames.get("width", 0)), int(frames.get("height", 0))
    src = frames.get("source_indices") or list(range(len(c2w)))
    table = frame_metrics_table(c2w, intr, res.keyframes, src)
    metrics_uri = sidecar_path(store, key, "frame_metrics.parquet")
    with fs.local_path_for_write(metrics_uri, suffix=".parquet") as tmp:
        table.write_parquet(tmp)
    verdict = pose_validity(c2w)
    unit = "m" if res.scale == "metric" else "relative units (median depth 1)"
    png = trajectory_views(c2w, res.keyframes, store.read_pose_valid(key), unit,
                           title=f"{key}: {len(c2w)} frames, scale {res.scale}")
    preview_uri = sidecar_path(store, key, "trajectory.png")
    fs.write_bytes(preview_uri, png)
    camera = types[0]
    fx, fy, cx, cy = (float(v) for v in intr[0, :4])
    hfov = field_of_view(camera, intr[0], width, height).x_deg
    frame_range = f"[{src[0]}, {src[-1]}]" if src else "[]"
    common = {"frame_range": frame_range, "num_frames": res.num_frames, "seconds": round(res.seconds, 3),
              "frames_per_second": round(res.frames_per_second, 2), "device": device, "preset": config.preset}
    yield dg.MaterializeResult(
        asset_key=INTRINSICS,
        metadata={
            **common,
            "camera_model": camera,
            "fx": round(fx, 3), "fy": round(fy, 3), "cx": round(cx, 3), "cy": round(cy, 3),
            **({"xi": round(float(intr[0, 4]), 4)} if camera == "MEI" else {}),
            "hfov_deg": round(hfov, 2) if hfov is not None else None,
            "image_size": f"{width}x{height}",
            "focal_source": manifest.get("pose", {}).get("intrinsics", {}).get("source", "unknown"),
            "intrinsics_uri": dg.MetadataValue.path(store.path("intrinsics", key)),
            "camera_txt_uri": dg.MetadataValue.path(store.path("camera", key)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=POSE,
        metadata={
            **common,
            "num_keyframes": len(res.keyframes),
            "scale": res.scale,
            "rotation_only": res.rotation_only,
            "tracking_ok_fraction": round(res.tracking_ok_fraction, 4),
            "mean_reproj_px": round(res.mean_reproj_px, 4) if np.isfinite(res.mean_reproj_px) else None,
            "path_length": round(float(verdict.metadata.get("path_length", 0.0)), 4),
            "pose_uri": dg.MetadataValue.path(store.path("pose", key)),
            "sparse_map_uri": dg.MetadataValue.path(store.path("sparse", key)),
            "frame_metrics_uri": dg.MetadataValue.path(metrics_uri),
            "preview": dg.MetadataValue.md(markdown_image(png, f"{key} trajectory")),
            "preview_uri": dg.MetadataValue.path(preview_uri),
            "postprocess_seconds": round(time.perf_counter() - t0, 3),
        },
    )


def pose_valid_result(store, key: str) -> dg.AssetCheckResult:
    """``pose_valid``: one artifact set (same generation), finite orthonormal poses, no frame jumps."""
    from vipe_dagster.io.generation import check_set

    gen = check_set(store, key, ("rgb", "pose", "intrinsics", "camera", "sparse", "info"))
    if not gen.ok:  # poses of another run than the rgb: everything downstream would pair them
        return dg.AssetCheckResult(asset_key=POSE, check_name="pose_valid", passed=False,
                                   description=gen.problems[0],
                                   metadata={"generation": gen.generation or "unversioned"})
    c2w, _ = store.read_pose(key)
    v = pose_validity(c2w, valid=store.read_pose_flags(key))
    return dg.AssetCheckResult(asset_key=POSE, check_name="pose_valid", passed=v.passed,
                               description=v.description, metadata=_scalars(v.metadata))


def pose_geometry_result(store, key: str) -> dg.AssetCheckResult:
    """``pose_geometry``: relative rotations agree with independent two-view estimates from the pixels."""
    from vipe_dagster.geometry_check import check_sequence

    v = check_sequence(store, key)
    return dg.AssetCheckResult(asset_key=POSE, check_name="pose_geometry", passed=v.passed,
                               description=v.description, metadata=_scalars(v.metadata))


_POSE_CHECKS = {"pose_valid": pose_valid_result, "pose_geometry": pose_geometry_result}

with warnings.catch_warnings():  # partitions_def on an AssetCheckSpec is a preview feature of Dagster 1.13
    warnings.simplefilter("ignore", dg.PreviewWarning)
    POSE_CHECK_SPECS = [
        dg.AssetCheckSpec("pose_valid", asset=POSE, blocking=True, partitions_def=VIDEOS,
                          description="Poses are finite, rotations orthonormal with det 1, and no frame jumps "
                                      "(translation > 8x the median step, or > 30 deg turn). Blocking."),
        dg.AssetCheckSpec("pose_geometry", asset=POSE, blocking=True, partitions_def=VIDEOS,
                          description="The trajectory matches the video: relative rotations of sampled frame "
                                      "pairs agree with independent two-view estimates from the pixels (SIFT, "
                                      "5-point / homography) and explain the matches as well as they do. Catches "
                                      "smooth but wrong geometry (a plane reconstructed upside down). Blocking."),
    ]


# Both blocking checks of pose_trajectory live in one op. As two @asset_check ops, each with the output
# "result", Dagster orders their fan-in into the downstream steps by iterating a set (sorted by output name
# only, a tie), so the job's snapshot id changed with PYTHONHASHSEED: the UI's code server never found the
# snapshot of a run launched by another process and warned on re-execution that the job "may be a different
# version". One op gives the two checks distinct output names and the snapshot a fixed order.
@dg.multi_asset_check(specs=POSE_CHECK_SPECS, can_subset=True, name="pose_trajectory_checks",
                      description="pose_valid and pose_geometry (blocking checks of pose_trajectory)")
def pose_checks(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource):
    store = artifacts.store()
    for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
        yield _POSE_CHECKS[check_key.name](store, context.partition_key)


@dg.asset_check(asset=INTRINSICS, blocking=True, partitions_def=VIDEOS,
                description="Focals positive with fx/fy near 1, principal point inside the image, "
                            "horizontal FoV in [15, 160] deg (MEI: up to 220, xi > -1), focal stable across "
                            "frames; PANORAMA rows all zeros (ViPE's layout). Blocking.")
def intrinsics_plausible(context: dg.AssetCheckExecutionContext,
                         artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    store = artifacts.store()
    intr, _, types = store.read_intrinsics(context.partition_key)
    frames = store.read_manifest(context.partition_key).get("frames", {})
    if len(set(types)) > 1:
        return dg.AssetCheckResult(passed=False, description=f"{store.path('camera', context.partition_key)}: "
                                   f"camera models {sorted(set(types))} in one sequence")
    v = intrinsics_plausibility(intr, int(frames["width"]), int(frames["height"]), camera_type=types[0])
    return dg.AssetCheckResult(passed=v.passed, description=v.description, metadata=_scalars(v.metadata))


@dg.asset_check(asset=POSE, partitions_def=VIDEOS,
                description="great-expectations suite over the partition's per-frame metrics table "
                            "(row count, unique/increasing frames, no nulls, intrinsics and step ranges).")
def frame_metrics_expectations(context: dg.AssetCheckExecutionContext,
                               artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    import polars as pl

    store = artifacts.store()
    key = context.partition_key
    frames = store.read_manifest(key).get("frames", {})
    with fs.local_copy(sidecar_path(store, key, "frame_metrics.parquet")) as path:
        df = pl.read_parquet(path)
    camera = store.read_intrinsics(key)[2][0]
    v = expectations_report(df, int(frames["width"]), int(frames["height"]), int(frames["count"]),
                            camera_type=camera)
    table = dg.MetadataValue.md("| expectation | column | ok | observed |\n|---|---|---|---|\n" + "\n".join(
        f"| {r['expectation']} | {r['column']} | {'yes' if r['success'] else '**no**'} | {r['observed']} |"
        for r in v.metadata["results"]))
    return dg.AssetCheckResult(passed=v.passed, description=v.description,
                               severity=dg.AssetCheckSeverity.WARN,
                               metadata={"evaluated": v.metadata["evaluated"], "failed": v.metadata["failed"],
                                         "results": table})


def _scalars(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if isinstance(v, int | float | str | bool)}


ASSETS = [slam_pose]
CHECKS = [pose_checks, intrinsics_plausible, frame_metrics_expectations]
