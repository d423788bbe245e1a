"""Ego-Exo4D branch: ``ego_render`` per take x exo camera, ``best_ego_view`` per take, and a sensor that
registers takes found under the configured takes root.

Partitions. ``ego_views`` is one dynamic partition set of ``<take>__<cam>`` keys, ``takes`` one of take
keys. A ``MultiPartitionsDefinition(takes x exo_cameras)`` would be the cross product of every take with
every camera ever seen, so a take without ``cam04`` would still show ``take|cam04``, a partition that
can never succeed; only pairs that discovery found renderable are registered here. Backfills over
"these takes" or "only cam02" select keys by prefix / suffix (``vipe_dagster.egoexo.takes.select_views``,
or the UI's partition filter, e.g. ``*__cam02``).
"""

import json

import cv2
import dagster as dg
import numpy as np
from pydantic import Field

from resources.artifacts import ArtifactStoreResource
from resources.compute import ComputeResource
from resources.egoexo import EgoExoResource
from vipe_dagster.egoexo.takes import SEP, Discovery, split_view_key, take_key_map
from vipe_dagster.io import fs
from vipe_dagster.previews import contact_sheet, markdown_image
from vipe_dagster.provenance import code_version
from vipe_dagster.render.config import EGO_PRIOR_PRESET, EgoRenderConfig

from ._common import BACKFILL, GPU_POOL, RETRY, classify_failures, engine_logs_to_dagster, placement_tags
from ._config import engine_values, run_config_class

EGO_VIEWS = dg.DynamicPartitionsDefinition(name="ego_views")
"""One partition per renderable take x exo camera: ``<take>__<cam>``."""
TAKES = dg.DynamicPartitionsDefinition(name="takes")
"""One partition per Ego-Exo4D take with at least one renderable camera."""

EGOEXO_GROUP = "egoexo"
EGO_RENDER_CODE_VERSION = code_version("ego_render")
BEST_VIEW_CODE_VERSION = code_version("best_ego_view")
EGO_RENDER = dg.AssetKey("ego_render")
EXO_VIDEO = dg.AssetKey("exo_video")
EXO_INFERENCE = dg.AssetKey("exo_inference")
EXO_INFERENCE_CODE_VERSION = code_version("exo_inference")
COVERAGE_CHECK = "render_coverage"
CAMERA_ID_CHECK = "camera_ids"


EgoRenderRunConfig = run_config_class(
    "EgoRenderRunConfig", EgoRenderConfig,
    fields=("resolution", "point_size", "subsample", "fish_eye_rendering", "use_mean_bg", "only_bg", "near_clip",
            "points_per_pixel", "voxel_size", "normalize", "background", "backend", "start_frame", "end_frame"),
    preset=EGO_PRIOR_PRESET,
    extra={"min_coverage": (float, Field(default=0.2, ge=0, le=1,
                                         description="render_coverage warns below this mean coverage"))},
    doc="How the ego view is rendered (`vipe_dagster.render.config.EgoRenderConfig`; the take's files, the "
        "output folder and the device come from the resources). Defaults: the engine's, with the ego-prior "
        "preset `EGO_PRIOR_PRESET` (fisheye Aria camera, mean background) where `render-ego` keeps the "
        "reference's flags off.")


def artifacts_rgb(vipe_dir: str, sequence: str) -> str:
    from vipe_dagster.io import ArtifactStore

    return ArtifactStore(vipe_dir).path("rgb", sequence)


def _render_dir(store_root: str) -> str:
    return fs.join(store_root, "render")


def _read_image(uri: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(fs.read_bytes(uri), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


EXO_VIDEO_CODE_VERSION = code_version("exo_video")


@dg.asset(
    key=EXO_VIDEO,
    partitions_def=EGO_VIEWS,
    group_name=EGOEXO_GROUP,
    code_version=EXO_VIDEO_CODE_VERSION,
    backfill_policy=BACKFILL,
    kinds={"mp4"},
    description="The frame-aligned video of one exo camera of a take "
                "(`takes/<take>/frame_aligned_videos/downscaled/448/<cam>.mp4` under the takes root), recorded "
                "as it is (frames, size, fps; data version: sha256 of the bytes, or the S3 ETag). Its blocking "
                "`camera_ids` check stops the take x camera before inference when the camera is not calibrated.",
)
def exo_video(context: dg.AssetExecutionContext, egoexo: EgoExoResource) -> dg.MaterializeResult:
    from vipe_dagster.egoexo.takes import VIDEO_SUBDIR
    from vipe_dagster.io.video import probe
    from vipe_dagster.registry import source_data_version

    key = context.partition_key
    take_key, cam = split_view_key(key)
    take = _take_name(egoexo.takes_root, take_key, egoexo.discover({take_key}))
    if take is None:
        raise dg.Failure(description=f"error: no take folder under {egoexo.takes_root} has the partition key "
                                     f"{take_key!r}")
    video = fs.join(egoexo.takes_root, "takes", take, *VIDEO_SUBDIR.split("/"), f"{cam}.mp4")
    if not fs.exists(video):
        raise dg.Failure(description=f"error: {video} does not exist (expected the frame-aligned video of exo "
                                     f"camera {cam} of take {take!r})")
    with classify_failures(context):
        info = probe(video)
        version = source_data_version(video)
    return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata={
        "take": take, "camera": cam, "path": dg.MetadataValue.path(video), "num_frames": info.num_frames,
        "resolution": f"{info.width}x{info.height}", "fps": round(float(info.fps or 0.0), 3),
        "bytes": fs.size(video)})


def _exo_inference_config() -> type[dg.Config]:
    from vipe_dagster.egoexo.exo_infer import ExoInferConfig
    from vipe_dagster.egoexo.rig_depth import RigDepthConfig

    return run_config_class(
        "ExoInferenceRunConfig", ExoInferConfig, fields=("start_frame", "end_frame", "fill_holes", "fill_method"),
        also={"long_side": (RigDepthConfig, "long_side")},
        doc="Fixed-camera inference of an exo camera; depth from the take's calibrated exo rig "
            "(`vipe_dagster.egoexo.exo_infer.ExoInferConfig`).")


ExoInferenceRunConfig = _exo_inference_config()


@dg.asset(
    key=EXO_INFERENCE,
    partitions_def=EGO_VIEWS,
    deps=[EXO_VIDEO],
    group_name=EGOEXO_GROUP,
    code_version=EXO_INFERENCE_CODE_VERSION,
    backfill_policy=BACKFILL,
    pool=GPU_POOL,
    retry_policy=RETRY,
    op_tags=placement_tags("gpu"),
    kinds={"pytorch"},
    description="Fixed-camera inference of one exo camera from its video: identity poses, the take's GoPro "
                "calibration (KB undistorted), metric depth of the static background by plane sweep against the "
                "take's other calibrated exo cameras (scale: metric, source: rig calibration). ViPE layout under "
                "`<takes_root>/vipe_results/<take>/<cam>/`.",
)
def exo_inference(context: dg.AssetExecutionContext, config: ExoInferenceRunConfig, egoexo: EgoExoResource,
                  compute: ComputeResource) -> dg.MaterializeResult:
    from vipe_dagster.egoexo import exo_infer as xi
    from vipe_dagster.egoexo.rig_depth import RigDepthConfig
    from vipe_dagster.egoexo.takes import rig_cache_dir, vipe_result_dir

    key = context.partition_key
    take_key, cam = split_view_key(key)
    take = egoexo.discover_raw({take_key}).get(take_key)
    with compute.step_device(key) as device:
        cfg = xi.ExoInferConfig(**engine_values(config),
                                rig=RigDepthConfig(long_side=config.long_side, device=device))
        out = vipe_result_dir(egoexo.takes_root, take.take, cam)
        context.log.info(f"exo inference {take.take}/{cam} on {device} -> {out}")
        with classify_failures(context), engine_logs_to_dagster(context):
            cache = xi.RigCache(rig_cache_dir(egoexo.takes_root, take.take, xi.rig_cache_key(take, cfg)))
            res = xi.infer_exo_camera(take, cam, out, cfg, xi.rig_views(take, cfg), cache)
    rep = res.report
    return dg.MaterializeResult(metadata={
        "take": take.take, "camera": cam, "num_frames": res.num_frames,
        "scale": rep["scale"], "depth_source": rep["source"],
        "covered_fraction": rep["covered_fraction"], "filled_fraction": rep["filled_fraction"],
        "seen_by": dg.MetadataValue.json(rep["seen_by"]), "rig_cameras": ", ".join(rep["others"]),
        "depth_range_m": dg.MetadataValue.json(rep["depth_range_m"]),
        "median_depth_m": rep["median_depth_m"], "intrinsics": dg.MetadataValue.json(rep["intrinsics"]),
        "source_video": dg.MetadataValue.path(take.exo_videos[cam]), "vipe_dir": dg.MetadataValue.path(out),
        "seconds": round(res.seconds, 2)})


@dg.asset(
    key=EGO_RENDER,
    partitions_def=EGO_VIEWS,
    deps=[EXO_INFERENCE],
    group_name=EGOEXO_GROUP,
    code_version=EGO_RENDER_CODE_VERSION,
    backfill_policy=BACKFILL,
    pool=GPU_POOL,
    retry_policy=RETRY,
    op_tags=placement_tags("gpu"),
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(COVERAGE_CHECK, asset=EGO_RENDER, partitions_def=EGO_VIEWS,
                                   description="Mean share of ego pixels covered by exo points is at least "
                                               "`min_coverage` (WARN otherwise: the exo camera sees little of "
                                               "what the wearer sees).")],
    description="The ego (Aria) view of a take rendered from one exo camera's ViPE points: PNG frames + "
                "mp4 + render_meta.json under `<artifact_root>/render/<take>/<cam>/`, written atomically.",
)
def ego_render(context: dg.AssetExecutionContext, config: EgoRenderRunConfig, artifacts: ArtifactStoreResource,
               egoexo: EgoExoResource, compute: ComputeResource):
    from vipe_dagster.render.ego import render_ego

    key = context.partition_key
    view = egoexo.discover({split_view_key(key)[0]}).get(key)
    out_root = _render_dir(artifacts.store().root)
    cfg = EgoRenderConfig(
        input_dir=view.vipe_dir, out_dir=out_root, ego_camera_pose_path=view.camera_pose_json,
        exo_camera_pose_path=view.gopro_calibs, online_calibration_path=view.online_calibration,
        output="both", artifact_name=view.sequence, **engine_values(config))
    with compute.step_device(key) as device:
        cfg.device = device
        context.log.info(f"rendering {view.take}/{view.cam} from {view.vipe_dir} on {device}")
        with classify_failures(context), engine_logs_to_dagster(context):
            res = render_ego(cfg)
    n = len(res.frames)
    pick = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, 8))})
    tiles = [(res.frames[i], _read_image(fs.join(res.out_path, f"frame_{res.frames[i]:06d}.png"))) for i in pick]
    png = contact_sheet(tiles, tile_width=160)
    preview_uri = fs.join(res.out_path, "contact_sheet.png")
    fs.write_bytes(preview_uri, png)
    mean_cov = res.mean_coverage
    yield dg.MaterializeResult(
        asset_key=EGO_RENDER,
        metadata={
            "take": view.take, "camera": view.cam,
            "mean_coverage": round(mean_cov, 4),
            "min_coverage": round(float(min(res.coverage)), 4),
            "num_frames": n, "frame_range": f"[{res.frames[0]}, {res.frames[-1]}]",
            "num_background_points": res.num_background_points,
            "seconds": round(res.seconds, 3),
            "frames_per_second": round(n / max(res.seconds, 1e-9), 2),
            "render_dir": dg.MetadataValue.path(res.out_path),
            "preview": dg.MetadataValue.md(markdown_image(png, f"{key} ego render")),
            "preview_uri": dg.MetadataValue.path(preview_uri),
        },
        check_results=[dg.AssetCheckResult(
            check_name=COVERAGE_CHECK, asset_key=EGO_RENDER, passed=mean_cov >= config.min_coverage,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"mean_coverage": round(mean_cov, 4), "threshold": config.min_coverage},
            description=f"mean coverage {mean_cov:.1%} over {n} frames of {view.take}/{view.cam} "
                        f"({'>=' if mean_cov >= config.min_coverage else '<'} {config.min_coverage:.0%})")],
    )


def skip_report(skipped: list[tuple[str, str, str]], limit: int = 200) -> str:
    """Markdown table of discovery's skipped takes / cameras / files with the reason."""
    if not skipped:
        return "nothing skipped"
    rows = [f"| {t} | {c} | {r.replace('|', '/')} |" for t, c, r in skipped[:limit]]
    more = [f"| ... | ... | {len(skipped) - limit} more |"] if len(skipped) > limit else []
    return "\n".join(["| take | camera / folder | reason |", "|---|---|---|", *rows, *more])


def _take_name(root: str, take_key: str, found: Discovery) -> str | None:
    """The on-disk take name of a take partition key (from discovery, else from the folder names)."""
    for v in found.views:
        if v.take_key == take_key:
            return v.take
    names: set[str] = set()
    for sub in ("vipe_results", "takes"):
        d = fs.join(root, sub)
        if fs.exists(d):
            names.update(fs.listdir(d))
    return {k: t for t, k in take_key_map(sorted(names)).items()}.get(take_key)


def camera_id_result(egoexo: EgoExoResource, key: str, raw: bool) -> dg.AssetCheckResult:
    """The camera-ID check of view ``key`` (``vipe_dagster.egoexo.camera_check``). ``raw``: the view as a video
    of the raw layout (frame range: the video's frames; why discovery left the camera out, if it did), else as
    a ViPE result (frame range: the result's frames)."""
    from vipe_dagster.egoexo.camera_check import check_camera_ids
    from vipe_dagster.egoexo.takes import VIDEO_SUBDIR, PoseFile
    from vipe_dagster.io.video import probe

    take_key, cam = split_view_key(key)
    found = egoexo.discover({take_key})
    view = None if raw else next((v for v in found.views if v.key == key), None)
    take = view.take if view else _take_name(egoexo.takes_root, take_key, found)
    if take is None:
        return dg.AssetCheckResult(passed=False, description=f"error: no take folder under {egoexo.takes_root} "
                                                             f"has the partition key {take_key!r}")
    last = (view.num_frames - 1) if view else 0
    pose = PoseFile(view.camera_pose_json, "", "") if view else None  # discovery's JSON (metadata.take_name)
    skipped = found.skipped
    if raw:
        video = fs.join(egoexo.takes_root, "takes", take, *VIDEO_SUBDIR.split("/"), f"{cam}.mp4")
        if fs.exists(video):
            last = max(probe(video).num_frames - 1, 0)
        rd = egoexo.discover_raw({take_key})
        skipped = rd.skipped
        usable = any(cam in t.exo_videos for t in rd.takes)
    else:
        usable = view is not None
    rep = check_camera_ids(egoexo.takes_root, take, cam, 0, last, pose=pose)
    if not usable:
        what = "no exo inference" if raw else "not renderable"
        rep.problems += [f"{what}: {r}" for t, c, r in skipped
                         if t == take and (c == "*" or c == cam or c.startswith(cam + "_"))] or \
                        [f"{what}: discovery found no {'video' if raw else 'ViPE result'} of {cam} in take {take!r}"]
    meta = {k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in rep.facts.items()}
    meta["problems"] = dg.MetadataValue.json(rep.problems)
    return dg.AssetCheckResult(passed=rep.passed, metadata=meta, description=rep.describe())


_CAMERA_ID_DOC = ("The view's exo camera is in the take's calibration (a `gopro_calibs.csv` row, or the camera_pose "
                  "JSON's entry for a take without that file) and in the take (its video or a ViPE result folder, "
                  "EgoX names like `cam02_static_vda_fixedcam` included), and the take's camera_pose JSON has an "
                  "Aria trajectory over every frame. Blocking: ")


@dg.asset_check(asset=EXO_VIDEO, name=CAMERA_ID_CHECK, blocking=True, partitions_def=EGO_VIEWS,
                description=_CAMERA_ID_DOC + "exo inference of a camera the rig cannot place does not run.")
def exo_camera_ids(context: dg.AssetCheckExecutionContext, egoexo: EgoExoResource) -> dg.AssetCheckResult:
    return camera_id_result(egoexo, context.partition_key, raw=True)


@dg.asset_check(asset=EGO_RENDER, name=CAMERA_ID_CHECK, blocking=True, partitions_def=EGO_VIEWS,
                description=_CAMERA_ID_DOC + "a render placed by the wrong camera or pose is garbage.")
def camera_ids(context: dg.AssetCheckExecutionContext, egoexo: EgoExoResource) -> dg.AssetCheckResult:
    return camera_id_result(egoexo, context.partition_key, raw=False)


def latest_renders(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, dg.EventLogRecord]:
    """The latest ``ego_render`` materialization record of each view key that has one."""
    out = {}
    for k in keys:
        recs = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=EGO_RENDER, asset_partitions=[k]), limit=1).records
        if recs:
            out[k] = recs[0]
    return out


@dg.asset(
    partitions_def=TAKES,
    deps=[dg.AssetDep(EGO_RENDER, partition_mapping=dg.AllPartitionMapping())],
    group_name=EGOEXO_GROUP,
    code_version=BEST_VIEW_CODE_VERSION,
    backfill_policy=BACKFILL,
    kinds={"json"},
    description="Per take: the exo camera whose ego render has the highest mean coverage "
                "(`render/<take>/best_view.json`), with the scores of every rendered camera, and the reference's "
                "`best_ego_view_rendering/<take>/{ego_Prior, exo_GT, ego_GT}` + `metadata.json` (render <-> "
                "source frame map) under the artifact root.",
)
def best_ego_view(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource,
                  egoexo: EgoExoResource) -> dg.MaterializeResult:
    take_key = context.partition_key
    found = egoexo.discover({take_key})
    views = found.of_take(take_key)
    registered = [k for k in context.instance.get_dynamic_partitions(EGO_VIEWS.name)
                  if k.startswith(take_key + SEP) and split_view_key(k)[0] == take_key]
    keys = sorted(set(registered) | {v.key for v in views})
    recs = latest_renders(context.instance, keys)
    if not recs:
        raise dg.Failure(description=f"take {take_key!r}: none of its ego views {keys or '(none registered)'} has "
                                     f"been rendered; materialize ego_render for them first")
    scores = {split_view_key(k)[1]: float(r.asset_materialization.metadata["mean_coverage"].value)
              for k, r in recs.items()}
    missing = sorted(split_view_key(k)[1] for k in keys if k not in recs)
    if missing:
        context.log.warning(f"take {take_key}: cameras {missing} are not rendered yet and are not compared")
    best = max(sorted(scores), key=lambda c: scores[c])
    best_rec = recs[f"{take_key}{SEP}{best}"].asset_materialization.metadata
    doc = {"take": take_key, "best_camera": best, "scores": scores, "not_rendered": missing,
           "render_dir": best_rec["render_dir"].value}
    # beside the renders, which live under the take's folder name (render/<take>/<cam>/...)
    take_dir = views[0].take if views else take_key
    out_uri = fs.join(_render_dir(artifacts.store().root), take_dir, "best_view.json")
    fs.write_text(out_uri, json.dumps(doc, indent=2))
    # the reference's best_ego_view_rendering/<take>/{ego_Prior, exo_GT, ego_GT} + metadata.json
    from vipe_dagster.egoexo.best_view import write_best_view
    from vipe_dagster.egoexo.takes import best_view_dir

    raw = next((t for t in egoexo.discover_raw({take_key}).takes), None)
    best_vipe = next((v for v in views if v.cam == best), None)
    exo_video = raw.exo_videos.get(best) if raw else None
    if exo_video is None and best_vipe is not None:  # no raw video: the ViPE result's own rgb
        exo_video = artifacts_rgb(best_vipe.vipe_dir, best_vipe.sequence)
    ego_video = next(iter(sorted(raw.ego_videos.items())), (None, None))[1] if raw else None
    bv_dir = best_view_dir(artifacts.store().root, take_dir)
    with classify_failures(context):
        bv = write_best_view(bv_dir, take_dir, best, doc["render_dir"], scores, exo_video, ego_video)
    table = "| camera | mean coverage |\n|---|---|\n" + "\n".join(
        f"| {'**' + c + '**' if c == best else c} | {scores[c]:.4f} |" for c in sorted(scores))
    take_name = views[0].take if views else take_key
    skipped = [(t, c, r) for t, c, r in found.skipped if t == take_name]
    meta = {"best_camera": best, "best_mean_coverage": round(scores[best], 4), "scores": dg.MetadataValue.md(table),
            "skipped": dg.MetadataValue.md(skip_report(skipped)), "num_skipped": len(skipped),
            "scores_json": dg.MetadataValue.json(scores), "num_cameras": len(scores),
            "not_rendered": ", ".join(missing) or None, "best_render_dir": dg.MetadataValue.path(doc["render_dir"]),
            "best_view_uri": dg.MetadataValue.path(out_uri), "best_view_dir": dg.MetadataValue.path(bv_dir),
            "best_view_frames": dg.MetadataValue.json(bv["num_frames"])}
    if "preview" in best_rec:
        meta["preview"] = best_rec["preview"]
    return dg.MaterializeResult(metadata={k: v for k, v in meta.items() if v is not None})


EGO_RENDER_JOB = dg.define_asset_job("ego_render_job", selection=[EGO_RENDER], partitions_def=EGO_VIEWS,
                                     description="Render the ego view of one take x exo camera.")
EXO_VIEW_JOB = dg.define_asset_job("exo_view_job", selection=[EXO_VIDEO, EXO_INFERENCE, EGO_RENDER],
                                    partitions_def=EGO_VIEWS,
                                    description="From one exo camera's video: the video (camera-ID check), "
                                                "fixed-camera inference (rig depth), then the ego render.")
BEST_VIEW_JOB = dg.define_asset_job("best_ego_view_job", selection=["best_ego_view"], partitions_def=TAKES,
                                    description="Choose the best exo camera of one take.")


def plan_takes_tick(instance: dg.DagsterInstance, discovery, max_runs: int, raw=None) -> dict:
    """What one sensor tick does: partitions to add, ego renders to request for views never rendered,
    and best-view runs for takes whose every camera is rendered and newer than their best view. ``raw``
    (a :class:`RawDiscovery`): exo camera videos of the raw layout without a ViPE result yet get an
    ``exo_view_job`` run (exo inference, then the ego render)."""
    known_takes = set(instance.get_dynamic_partitions(TAKES.name))
    known_views = set(instance.get_dynamic_partitions(EGO_VIEWS.name))
    raw_views = [k for k in (raw.view_keys if raw is not None else []) if k not in set(discovery.view_keys)]
    take_keys = sorted(set(discovery.take_keys) | {split_view_key(k)[0] for k in raw_views})
    new_takes = [t for t in take_keys if t not in known_takes]
    new_views = [k for k in sorted(set(discovery.view_keys) | set(raw_views)) if k not in known_views]
    rendered = instance.get_latest_storage_id_by_partition(EGO_RENDER, dg.DagsterEventType.ASSET_MATERIALIZATION)
    best = instance.get_latest_storage_id_by_partition(dg.AssetKey("best_ego_view"),
                                                       dg.DagsterEventType.ASSET_MATERIALIZATION)
    runs: list[dg.RunRequest] = []
    for k in raw_views:
        if k not in rendered and len(runs) < max_runs:
            runs.append(dg.RunRequest(job_name=EXO_VIEW_JOB.name, partition_key=k, run_key=f"exo_view:{k}"))
    for k in discovery.view_keys:
        if k not in rendered and len(runs) < max_runs:
            runs.append(dg.RunRequest(job_name=EGO_RENDER_JOB.name, partition_key=k, run_key=f"ego_render:{k}"))
    for t in discovery.take_keys:
        keys = sorted({v.key for v in discovery.of_take(t)} | {k for k in raw_views if split_view_key(k)[0] == t})
        if keys and all(k in rendered for k in keys) and len(runs) < max_runs:
            newest = max(rendered[k] for k in keys)
            if best.get(t, -1) < newest:
                runs.append(dg.RunRequest(job_name=BEST_VIEW_JOB.name, partition_key=t,
                                          run_key=f"best_ego_view:{t}:{newest}"))
    return {"new_takes": new_takes, "new_views": new_views, "runs": runs}


@dg.sensor(jobs=[EGO_RENDER_JOB, EXO_VIEW_JOB, BEST_VIEW_JOB], minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Registers Ego-Exo4D takes under resource `egoexo.takes_root` (only renderable take x "
                       "camera pairs: a ViPE result, or an exo video of the raw layout), requests exo inference "
                       "for videos without a result and the ego renders, then each take's best view.")
def egoexo_takes(context: dg.SensorEvaluationContext, egoexo: EgoExoResource):
    found = egoexo.discover()
    for t, c, r in found.skipped:  # every skipped take / camera / folder, in the tick's log in the UI
        context.log.warning(f"skipped {t}/{c}: {r}")
    raw = egoexo.discover_raw()
    for t, c, r in raw.skipped:  # the raw layout's skipped cameras/videos, for takes that have videos at all
        if t != "*" and not r.startswith("no video folder"):
            context.log.warning(f"skipped video {t}/{c}: {r}")
    plan = plan_takes_tick(context.instance, found, egoexo.max_per_tick, raw)
    reqs = []
    if plan["new_takes"]:
        reqs.append(TAKES.build_add_request(plan["new_takes"]))
    if plan["new_views"]:
        reqs.append(EGO_VIEWS.build_add_request(plan["new_views"]))
    if not reqs and not plan["runs"]:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"no new takes or renders under {egoexo.takes_root} ({len(found.view_keys)} views, "
            f"{len(found.skipped)} skipped: see the tick's log)"))
    context.log.info(f"{egoexo.takes_root}: {len(plan['new_takes'])} new take(s), {len(plan['new_views'])} new "
                     f"view(s), {len(plan['runs'])} run request(s)")
    return dg.SensorResult(run_requests=plan["runs"], dynamic_partitions_requests=reqs)


ASSETS = [exo_video, exo_inference, ego_render, best_ego_view]
CHECKS = [exo_camera_ids, camera_ids]
JOBS = [EGO_RENDER_JOB, EXO_VIEW_JOB, BEST_VIEW_JOB]
SENSORS = [egoexo_takes]
