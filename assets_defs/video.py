"""Source videos and their processed copies: ``raw_video`` (observable source) -> ``processed_video``."""

import hashlib
import json
import time

import dagster as dg
from pydantic import Field

from resources.artifacts import ArtifactStoreResource
from vipe_dagster.errors import FrameRangeError, VipeError
from vipe_dagster.ingest import ingest_video
from vipe_dagster.io import fs, probe, resolve_range
from vipe_dagster.io.validate import validate_sequence
from vipe_dagster.previews import contact_sheet, markdown_image

from ._common import (
    BACKFILL,
    INGEST_CODE_VERSION,
    RETRY,
    VIDEO_GROUP,
    VIDEO_PIPELINE_JOB,
    VIDEOS,
    engine_step,
    placement_tags,
    sidecar_path,
)


@dg.observable_source_asset(
    partitions_def=VIDEOS,
    group_name=VIDEO_GROUP,
    description="A source video (local file or s3:// object) registered as a `videos` partition. "
                "Data version: sha256 of the content for local files, the ETag for S3 objects.",
)
def raw_video(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.DataVersionsByPartition:
    registry = artifacts.registry()
    known = set(context.instance.get_dynamic_partitions(VIDEOS.name))
    versions = {}
    missing = []
    for key in registry.keys():
        if key not in known:
            continue
        try:  # one unreadable entry or deleted video must not hide the versions of all the others
            versions[key] = dg.DataVersion(registry.current_data_version(key))
        except VipeError as exc:
            missing.append(key)
            context.log.warning(f"raw_video partition {key!r}: {exc}")
            versions[key] = dg.DataVersion(f"missing:{registry.get(key).data_version}" if registry.has(key)
                                           else "missing")
    context.log.info(f"observed {len(versions) - len(missing)} source video(s)"
                     + (f"; missing: {', '.join(missing)}" if missing else ""))
    return dg.DataVersionsByPartition(versions)


class IngestConfig(dg.Config):
    """Per-run overrides; ``None`` uses the value registered with the partition."""

    start_frame: int | None = Field(default=None, description="first source frame (0-based, inclusive)")
    end_frame: int | None = Field(default=None, description="last source frame (inclusive)")
    frame_skip: int | None = Field(default=None, description="keep every k-th frame")
    long_side: int | None = Field(default=None, description="processing long side in px (0 = source size)")


@dg.asset(
    partitions_def=VIDEOS,
    deps=[raw_video],
    group_name=VIDEO_GROUP,
    code_version=INGEST_CODE_VERSION,
    backfill_policy=BACKFILL,
    retry_policy=RETRY,
    op_tags=placement_tags("cpu"),
    kinds={"video"},
    description="The partition's frames (inclusive range, skip, processing size) as `rgb/<key>.mp4` "
                "plus `vipe/<key>_manifest.json`, written atomically.",
)
def processed_video(context: dg.AssetExecutionContext, config: IngestConfig,
                    artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    key = context.partition_key
    store = artifacts.store()
    with engine_step(context, store, key, "processed_video"):
        return _processed_video(context, config, artifacts, store, key)


def _processed_video(context: dg.AssetExecutionContext, config: IngestConfig,
                     artifacts: ArtifactStoreResource, store, key: str) -> dg.MaterializeResult:
    registry = artifacts.registry()
    entry = registry.get(key)
    # the file may have changed since it was registered: version what is read now
    source_version = registry.current_data_version(key)
    if source_version != entry.data_version:
        context.log.warning(f"{entry.uri} changed since registration ({entry.data_version} -> {source_version})")
    start = config.start_frame if config.start_frame is not None else entry.start_frame
    end = config.end_frame if config.end_frame is not None else entry.end_frame
    skip = config.frame_skip if config.frame_skip is not None else entry.frame_skip
    long_side = config.long_side if config.long_side is not None else entry.long_side
    long_side = long_side or None
    source_name = entry.uri.rstrip("/").rsplit("/", 1)[-1]

    info = probe(entry.uri)
    req_start = 0 if start is None else int(start)
    req_end = info.num_frames - 1 if end is None or end == -1 else int(end)
    if req_start > info.num_frames - 1:
        raise FrameRangeError(f"Frame range [{req_start}, {req_end}] starts after the last frame "
                              f"{info.num_frames - 1} of {source_name}: nothing to ingest")
    # ingest what exists; the blocking check `frame_range_within_video` stops downstream steps when the
    # request reaches beyond the video, and says so (the materialization records both ranges)
    eff_start, eff_end = resolve_range(info.num_frames, req_start, min(req_end, info.num_frames - 1), source_name)
    context.log.info(f"ingesting {entry.uri} frames {eff_start}..{eff_end} (skip {skip}, long side {long_side})")
    t0 = time.perf_counter()
    res = ingest_video(entry.uri, store, name=key, start_frame=eff_start, end_frame=eff_end,
                       frame_skip=skip, long_side=long_side)
    store.update_manifest(key, "ingest", {
        "request": {"start_frame": req_start, "end_frame": req_end, "frame_skip": skip, "long_side": long_side},
        "input": {**store.read_manifest(key)["input"], "data_version": source_version}, "partition": key})

    stream = store.open_rgb(key)
    wanted = sorted({0, res.num_frames // 3, (2 * res.num_frames) // 3, res.num_frames - 1})
    frames = [(res.source_frames[i], f) for i, (_, f) in enumerate(stream) if i in wanted]
    png = contact_sheet(frames)
    preview_uri = sidecar_path(store, key, "frames.png")
    fs.write_bytes(preview_uri, png)
    seconds = time.perf_counter() - t0
    version_src = json.dumps([source_version, req_start, req_end, skip, long_side, INGEST_CODE_VERSION])
    return dg.MaterializeResult(
        metadata={
            "source_uri": dg.MetadataValue.path(entry.uri),
            "source_data_version": source_version,
            "source_num_frames": info.num_frames,
            "requested_range": f"[{req_start}, {req_end}]",
            "ingested_range": f"[{res.source_frames[0]}, {res.source_frames[-1]}]",
            "frame_skip": skip,
            "num_frames": res.num_frames,
            "processing_size": f"{res.width}x{res.height}",
            "fps": round(res.fps, 3),
            "rgb_uri": dg.MetadataValue.path(res.rgb_uri),
            "manifest_uri": dg.MetadataValue.path(store.path("manifest", key)),
            "preview": dg.MetadataValue.md(markdown_image(png, f"{key} frames")),
            "preview_uri": dg.MetadataValue.path(preview_uri),
            "seconds": round(seconds, 3),
            "frames_per_second": round(res.num_frames / max(res.seconds, 1e-9), 2),
        },
        data_version=dg.DataVersion(hashlib.sha256(version_src.encode()).hexdigest()[:24]),
    )


@dg.asset_check(asset=processed_video, blocking=True, partitions_def=VIDEOS,
                description="The requested frame range lies inside the source video and every requested "
                            "frame was ingested and decodes. Blocking: pose/depth on a truncated or "
                            "unreadable video would be garbage.")
def frame_range_within_video(context: dg.AssetCheckExecutionContext,
                             artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    key = context.partition_key
    store = artifacts.store()
    m = store.read_manifest(key)
    req = m.get("request", {})
    n_src = int(m["source"]["num_frames"])
    start, end = int(req.get("start_frame", 0)), int(req.get("end_frame", n_src - 1))
    skip = int(req.get("frame_skip", 1))
    src_name = m["input"]["uri"].rstrip("/").rsplit("/", 1)[-1]
    expected = len(range(start, end + 1, skip))
    got = int(m["frames"]["count"])
    meta = {"requested_range": f"[{start}, {end}]", "available_range": f"[0, {n_src - 1}]",
            "expected_frames": expected, "ingested_frames": got}
    if end > n_src - 1:
        return dg.AssetCheckResult(
            passed=False, metadata=meta,
            description=f"Frame range [{start}, {end}] exceeds available frames [0, {n_src - 1}] in {src_name}: "
                        f"only {got} of {expected} requested frames exist, so downstream assets were not run. "
                        f"Fix the range (run config `processed_video.config.end_frame`, or re-register the "
                        f"video) and re-materialize.")
    findings = validate_sequence(store, key, expected_frames=expected, require=("rgb",))
    bad = [f for f in findings if not f.ok]
    if got != expected or bad:
        detail = "; ".join(f"{f.check}: {f.detail}" for f in bad) or f"{got} frames ingested, expected {expected}"
        return dg.AssetCheckResult(passed=False, metadata=meta, description=f"{store.path('rgb', key)}: {detail}")
    return dg.AssetCheckResult(passed=True, metadata=meta,
                               description=f"{got} frames from [{start}, {end}] of {src_name} ({n_src} frames)")


ASSETS = [raw_video, processed_video]
CHECKS = [frame_range_within_video]
JOBS = [VIDEO_PIPELINE_JOB]
