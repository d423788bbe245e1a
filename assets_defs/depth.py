"""Dense depth and dynamic-object masks per video: ``depth_maps``, ``dynamic_masks`` and the blocking
``depth_valid`` check."""

import time

import dagster as dg
import numpy as np
from pydantic import Field

from resources.artifacts import ArtifactStoreResource
from resources.compute import ComputeResource
from resources.models import ModelHubResource
from vipe_dagster.camera_stages import run_depth_on_camera, run_masks_on_camera, sequence_camera
from vipe_dagster.depth.config import DepthConfig, LearnedDepthConfig
from vipe_dagster.depth.quality import (
    MAX_TEMPORAL_INCONSISTENCY,
    MAX_UNMEASURED_FRAMES,
    MIN_MEASURED_MEAN,
    depth_quality,
)
from vipe_dagster.depth.run import run_depth
from vipe_dagster.io import ArtifactStore, fs
from vipe_dagster.masks.config import MaskConfig
from vipe_dagster.masks.run import run_masks
from vipe_dagster.options import build_model
from vipe_dagster.previews import depth_sheet, markdown_image, mask_sheet

from ._common import (
    BACKFILL,
    DEPTH_CODE_VERSION,
    GPU_POOL,
    MASKS_CODE_VERSION,
    RETRY,
    VIDEO_GROUP,
    VIDEOS,
    engine_step,
    placement_tags,
    sidecar_path,
)
from ._config import engine_values, run_config_class
from .pose import INTRINSICS, POSE

DEPTH = dg.AssetKey("depth_maps")
MASKS = dg.AssetKey("dynamic_masks")
MIN_VALID_FRACTION = 0.95
"""``depth_valid``: every frame must have at least this share of finite, positive depth."""


DepthRunConfig = run_config_class(
    "DepthRunConfig", DepthConfig, exclude=("device", "learned"),
    also={"learned_filename": (LearnedDepthConfig, "filename")},
    extra={
        "learned_repo_id": (str | None, Field(
            default=None, description="Hugging Face repo of a learned depth prior (required for fixed cameras); "
                                      "weights must be in the model_hub cache, e.g. "
                                      "depth-anything/Depth-Anything-V2-Small; None = no learned prior")),
    },
    doc="Dense-depth settings of one run: every `DepthConfig` setting (the device comes from the `compute` "
        "resource) and an optional learned prior.")


def build_depth_config(cfg, device: str, cache_dir: str | None) -> DepthConfig:
    learned = None
    if cfg.learned_repo_id:
        learned = LearnedDepthConfig(repo_id=cfg.learned_repo_id, filename=cfg.learned_filename,
                                     cache_dir=cache_dir, device=device)
    return build_model(DepthConfig, engine_values(cfg), "depth_maps run config", cli=False, device=device,
                       learned=learned)


def depth_statistics(store: ArtifactStore, key: str, max_frames: int | None = None) -> dict:
    """Finite/positive fraction per frame (all frames, or ``max_frames`` evenly spaced) and percentiles."""
    n = store.depth_count(key)
    frames = range(n) if max_frames is None or n <= max_frames else \
        sorted({int(round(x)) for x in np.linspace(0, n - 1, max_frames)})
    fractions, samples = [], []
    rng = np.random.default_rng(0)
    for _, d in store.iter_depth(key, frames):
        ok = np.isfinite(d) & (d > 0)
        fractions.append(float(ok.mean()))
        v = d[ok]
        if v.size:
            samples.append(rng.choice(v, min(v.size, 20_000), replace=False))
    vals = np.concatenate(samples) if samples else np.zeros(0)
    pct = {f"p{q}": round(float(np.percentile(vals, q)), 4) for q in (5, 50, 95)} if vals.size else {}
    return {"count": n, "frames": list(frames), "fractions": fractions, "percentiles": pct}


def _preview_frames(n: int) -> list[int]:
    return sorted({0, n // 3, (2 * n) // 3, n - 1}) if n > 0 else []


def _depth_preview(store: ArtifactStore, key: str, n: int, stats: dict, scale: str) -> bytes | None:
    """Four frames beside their depth on one colour scale (5th-95th percentile of the sampled depth)."""
    pct = stats["percentiles"]
    if not pct or n == 0:
        return None
    wanted = _preview_frames(n)
    depth = dict(store.iter_depth(key, wanted))
    items = [(i, frame, depth[i]) for i, frame in store.open_rgb(key) if i in depth]
    unit = "m" if scale == "metric" else "rel."
    hi = pct["p95"] if pct["p95"] > pct["p5"] else pct["p5"] + 1.0
    return depth_sheet(items, pct["p5"], hi, unit)


@dg.asset(
    key=DEPTH,
    partitions_def=VIDEOS,
    deps=[POSE, INTRINSICS],
    group_name=VIDEO_GROUP,
    code_version=DEPTH_CODE_VERSION,
    backfill_policy=BACKFILL,
    pool=GPU_POOL,
    retry_policy=RETRY,
    op_tags=placement_tags("gpu"),
    kinds={"pytorch"},
    description="Dense per-frame depth `depth/<key>.zip` at the pose scale: plane-sweep MVS on neighbouring "
                "frames (+ an optional learned prior). A fixed camera has no parallax and needs a learned "
                "prior (`learned_repo_id`): without one the step fails with the engine's error. An MEI or "
                "PANORAMA sequence (slam_pose preset wide_angle / panorama) is swept on virtual pinhole views "
                "and written in its camera's image (MEI z-depth, panorama ray distance).",
)
def depth_maps(context: dg.AssetExecutionContext, config: DepthRunConfig, artifacts: ArtifactStoreResource,
               compute: ComputeResource, model_hub: ModelHubResource) -> dg.MaterializeResult:
    key = context.partition_key
    store = artifacts.store()
    with compute.step_device(key) as device:
        cfg = build_depth_config(config, device, model_hub.cache_dir)
        context.log.info(f"dense depth for {key} on {device} (MVS {cfg.mvs_long_side} px, {cfg.num_planes} "
                         f"planes)")
        with engine_step(context, store, key, "depth_maps"):
            camera = sequence_camera(store, key)  # MEI / PANORAMA: on virtual pinhole views, written back
            res = run_depth(store, key, cfg) if camera == "PINHOLE" else run_depth_on_camera(store, key, cfg)
    t0 = time.perf_counter()
    stats = depth_statistics(store, key, max_frames=16)
    png = _depth_preview(store, key, res.num_frames, stats, res.scale)
    meta = {
        "num_frames": res.num_frames,
        "image_size": f"{res.width}x{res.height}",
        "method": res.method,
        "camera_model": camera,
        "scale": res.scale,
        "depth_range": f"[{res.depth_range[0]:.4g}, {res.depth_range[1]:.4g}]" if res.depth_range else None,
        "range_source": res.range_source,
        "mvs_valid_fraction": round(res.mvs_valid_fraction, 4),
        "reliable_fraction": round(res.reliable_fraction, 4) if np.isfinite(res.reliable_fraction) else None,
        "valid_fraction": round(float(np.mean(stats["fractions"])), 4),
        **{f"depth_{k}": v for k, v in stats["percentiles"].items()},
        "seconds": round(res.seconds, 3),
        "frames_per_second": round(res.frames_per_s, 3),
        "device": device,
        "depth_uri": dg.MetadataValue.path(store.path("depth", key)),
    }
    if png:
        preview_uri = sidecar_path(store, key, "depth.png")
        fs.write_bytes(preview_uri, png)
        meta["preview"] = dg.MetadataValue.md(markdown_image(png, f"{key} depth"))
        meta["preview_uri"] = dg.MetadataValue.path(preview_uri)
    meta["postprocess_seconds"] = round(time.perf_counter() - t0, 3)
    return dg.MaterializeResult(metadata={k: v for k, v in meta.items() if v is not None})


@dg.asset_check(asset=DEPTH, blocking=True, partitions_def=VIDEOS,
                description=f"One depth map per pose, every frame >= {MIN_VALID_FRACTION:.0%} finite, positive "
                            f"depth; the measured (not filled) share >= {MIN_MEASURED_MEAN:.0%} on average with at "
                            f"most {MAX_UNMEASURED_FRAMES:.0%} of the frames nearly unmeasured; frames 5 apart agree "
                            f"after warping by the poses (median disagreement <= {MAX_TEMPORAL_INCONSISTENCY:.0%}). "
                            "Blocking: a COLMAP export or ego render from it would be garbage.")
def depth_valid(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    key = context.partition_key
    store = artifacts.store()
    from vipe_dagster.io.generation import check_set

    gen = check_set(store, key, ("rgb", "pose", "intrinsics", "depth"), counts=False)  # counts: below
    if not gen.ok:
        return dg.AssetCheckResult(passed=False, metadata={"generation": gen.generation or "unversioned"},
                                   description=gen.problems[0])
    poses, _ = store.read_pose(key)
    stats = depth_statistics(store, key)
    fr = np.asarray(stats["fractions"]) if stats["fractions"] else np.zeros(1)
    meta = {"depth_frames": stats["count"], "pose_frames": len(poses),
            "min_valid_fraction": round(float(fr.min()), 4), "mean_valid_fraction": round(float(fr.mean()), 4)}
    uri = store.path("depth", key)
    if stats["count"] != len(poses):
        return dg.AssetCheckResult(passed=False, metadata=meta,
                                   description=f"{uri} has {stats['count']} frames but {store.path('pose', key)} "
                                               f"has {len(poses)}")
    # frames without a measured pose have no depth by design (depth/run.py): judged on the others
    measured = store.read_pose_valid(key)[np.asarray(stats["frames"], int)]  # pose count == depth count here
    bad = np.flatnonzero((fr < MIN_VALID_FRACTION) & measured)
    if bad.size:
        k = int(bad[0])
        return dg.AssetCheckResult(
            passed=False, metadata={**meta, "bad_frames": len(bad)},
            description=f"{uri}: {len(bad)} frame(s) below {MIN_VALID_FRACTION:.0%} finite positive depth, first "
                        f"frame {stats['frames'][k]} with {fr[k]:.1%}")
    q = depth_quality(store, key)
    for k_, v in (("measured_fraction_mean", q["measured_mean"]), ("measured_fraction_min", q["measured_min"]),
                  ("nearly_unmeasured_frames", q["unmeasured_frames"]),
                  ("temporal_consistency", q["temporal_consistency"]),
                  ("temporal_consistency_p90", q["temporal_consistency_p90"]), ("consistency_pairs", q["pairs"])):
        if v is not None and (not isinstance(v, float) or np.isfinite(v)):
            meta[k_] = round(float(v), 4) if isinstance(v, float) else v
    if q["problems"]:
        return dg.AssetCheckResult(passed=False, metadata=meta, description="; ".join(q["problems"]))
    share = (f", {q['measured_mean']:.1%} measured (not filled) on average" if q["measured_mean"] is not None
             else ", no confidence sidecar (measured share not checked)")
    return dg.AssetCheckResult(passed=True, metadata=meta,
                               description=f"{stats['count']} depth frames, finite and positive on "
                                           f">= {fr[measured].min() if measured.any() else 0.0:.1%} of every measured frame{share}; frames 5 "
                                           f"apart agree to "
                                           f"{q['temporal_consistency']:.1%} (median)")


MaskRunConfig = run_config_class("MaskRunConfig", MaskConfig,
                                 doc="Dynamic-mask settings of one run: every `MaskConfig` setting.")


@dg.asset(
    key=MASKS,
    partitions_def=VIDEOS,
    deps=[POSE, INTRINSICS, DEPTH],
    group_name=VIDEO_GROUP,
    code_version=MASKS_CODE_VERSION,
    backfill_policy=BACKFILL,
    pool=GPU_POOL,
    retry_policy=RETRY,
    op_tags=placement_tags("gpu"),
    kinds={"opencv"},
    description="Dynamic-object instance masks `mask/<key>.zip` + `.txt`: temporal background model for a "
                "fixed camera, flow residual against the rigid flow of poses + depth for a moving one. "
                "Materialized alone (without depth) it falls back to the epipolar residual. An MEI or "
                "PANORAMA sequence is masked on the pinhole view its poses were tracked in and written back.",
)
def dynamic_masks(context: dg.AssetExecutionContext, config: MaskRunConfig,
                  artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    key = context.partition_key
    store = artifacts.store()
    cfg = build_model(MaskConfig, engine_values(config), "dynamic_masks run config", cli=False)
    with engine_step(context, store, key, "dynamic_masks"):
        camera = sequence_camera(store, key)  # MEI / PANORAMA: on the tracked pinhole view, written back
        res = run_masks(store, key, cfg) if camera == "PINHOLE" else run_masks_on_camera(store, key, cfg)
    wanted = _preview_frames(res.num_frames)
    png = mask_sheet([(i, frame, store.read_mask(key, i)) for i, frame in store.open_rgb(key) if i in wanted])
    preview_uri = sidecar_path(store, key, "masks.png")
    fs.write_bytes(preview_uri, png)
    meta = {
        "num_frames": res.num_frames,
        "method": res.method,
        "num_instances": res.num_instances,
        "foreground_fraction": round(res.foreground_fraction, 4),
        "seconds": round(res.seconds, 3),
        "frames_per_second": round(res.num_frames / max(res.seconds, 1e-9), 3),
        "mask_uri": dg.MetadataValue.path(store.path("mask", key)),
        "preview": dg.MetadataValue.md(markdown_image(png, f"{key} dynamic masks")),
        "preview_uri": dg.MetadataValue.path(preview_uri),
    }
    refilled = (res.motion or {}).get("depth_refilled") or {}
    if refilled.get("frames"):
        # the mask stage rewrote the depth of the moving objects: the depth preview shows the depth as it is now
        man = store.read_manifest(key) if store.exists("manifest", key) else {}
        dpng = _depth_preview(store, key, res.num_frames, depth_statistics(store, key, max_frames=16),
                              str(man.get("scale", "relative")))
        if dpng:
            depth_uri = sidecar_path(store, key, "depth.png")
            fs.write_bytes(depth_uri, dpng)
            meta["depth_refilled_fraction"] = round(float(refilled.get("pixel_fraction", 0.0)), 4)
            meta["depth_preview"] = dg.MetadataValue.md(markdown_image(dpng, f"{key} depth, moving objects refilled"))
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(asset=MASKS, blocking=False, partitions_def=VIDEOS,
                description="Moving camera: frames with a clearly moving region (coherent motion residual above "
                            "twice the frame's robust threshold over >= 1% of the image, against the rigid flow of "
                            "poses + depth) must "
                            "have masks covering it; fails when more than 25% of such frames are missed. Fixed "
                            "cameras are not judged.")
def masks_cover_motion(context: dg.AssetCheckExecutionContext,
                       artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    from vipe_dagster.masks.quality import masks_cover_motion as judge

    key = context.partition_key
    store = artifacts.store()
    q = judge(store, key)
    meta = {"checked_frames": q["checked_frames"], "strong_motion_frames": len(q["strong_frames"]),
            "missed_frames": len(q["missed_frames"]), "residual": q["method"]}
    if q["problems"]:
        return dg.AssetCheckResult(passed=False, metadata=meta, description="; ".join(q["problems"]))
    return dg.AssetCheckResult(passed=True, metadata=meta,
                               description=f"{len(q['strong_frames'])} of {q['checked_frames']} sampled frames "
                                           f"move clearly; masks cover the moving region in "
                                           f"{len(q['strong_frames']) - len(q['missed_frames'])} of them")


ASSETS = [depth_maps, dynamic_masks]
CHECKS = [depth_valid, masks_cover_motion]
