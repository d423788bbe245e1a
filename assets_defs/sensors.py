"""Sensors that turn new videos in a watched folder or S3 prefix into ``videos`` partitions and runs.

Each tick lists the location, registers files that are new or changed (fingerprint: S3 ETag, or size +
mtime locally), adds their dynamic partitions, records a ``raw_video`` observation carrying the data
version, and requests one ``video_pipeline`` run per video. The cursor stores the fingerprint of every
file already handled, so a restarted daemon (same cursor) does not register or run anything twice;
run keys ``<key>:<data version>`` make Dagster drop duplicates even if a cursor is lost.
"""

import json
import time

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.sources import IncomingVideosResource
from vipe_dagster.io import ArtifactStore
from vipe_dagster.registry import VideoRegistry, scan_location

from ._common import DATA_VERSION_TAG, VIDEO_PIPELINE_JOB, VIDEOS

CURSOR_VERSION = 1


def load_cursor(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        return {}
    return dict(data.get("seen", {}))


def dump_cursor(seen: dict[str, str]) -> str:
    return json.dumps({"v": CURSOR_VERSION, "seen": dict(sorted(seen.items()))}, separators=(",", ":"))


def scan_and_register(context: dg.SensorEvaluationContext, store: ArtifactStore, location: str,
                      settle_seconds: float, max_per_tick: int, long_side: int | None) -> dg.SensorResult | dg.SkipReason:
    """One sensor tick over ``location`` (shared by the folder and S3 sensors)."""
    seen = load_cursor(context.cursor)
    files = scan_location(location)
    present = {f.uri for f in files}
    now = time.time()
    todo = [f for f in files if seen.get(f.uri) != f.fingerprint
            and not (settle_seconds > 0 and f.etag is None and f.mtime is not None
                         and now - f.mtime < settle_seconds)]
    registry = VideoRegistry(store)
    known = set(context.instance.get_dynamic_partitions(VIDEOS.name))
    new_keys: list[str] = []
    runs: list[dg.RunRequest] = []
    events: list[dg.AssetObservation] = []
    for f in todo[:max_per_tick]:
        prev_key = registry.key_for_uri(f.uri)
        opts = {"long_side": long_side}
        if prev_key:  # keep the frame range / size a user gave this video
            prev = registry.get(prev_key)
            opts = {"start_frame": prev.start_frame, "end_frame": prev.end_frame, "frame_skip": prev.frame_skip,
                    "long_side": prev.long_side}
        entry, changed = registry.register(f.uri, key=prev_key, src=f, **opts)
        seen[f.uri] = f.fingerprint
        if entry.key not in known and entry.key not in new_keys:
            new_keys.append(entry.key)
        elif not changed:
            continue  # already registered and partitioned with this content (cursor was lost)
        events.append(dg.AssetObservation(
            asset_key="raw_video", partition=entry.key, tags={DATA_VERSION_TAG: entry.data_version},
            metadata={"uri": dg.MetadataValue.path(f.uri), "size_bytes": f.size, "fingerprint": f.fingerprint}))
        runs.append(dg.RunRequest(partition_key=entry.key, run_key=f"{entry.key}:{entry.data_version}",
                                  tags={"vipe/source_uri": f.uri}))
    # forget files that disappeared so the cursor does not grow without bound
    seen = {u: fp for u, fp in seen.items() if u in present}
    if not runs and not new_keys:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new or changed videos in {location}"),
                               cursor=dump_cursor(seen))
    context.log.info(f"{location}: {len(new_keys)} new partition(s), {len(runs)} run request(s)")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[VIDEOS.build_add_request(new_keys)] if new_keys else [],
        asset_events=events,
        cursor=dump_cursor(seen),
    )


@dg.sensor(job=VIDEO_PIPELINE_JOB, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Registers videos dropped into the incoming folder (resource `incoming.folder`).")
def incoming_videos_folder(context: dg.SensorEvaluationContext, artifacts: ArtifactStoreResource,
                           incoming: IncomingVideosResource):
    if not incoming.folder:
        return dg.SkipReason("resource incoming.folder is not set")
    return scan_and_register(context, artifacts.store(), incoming.folder, incoming.settle_seconds,
                             incoming.max_per_tick, incoming.long_side)


@dg.sensor(job=VIDEO_PIPELINE_JOB, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Registers videos uploaded under an S3 prefix (resource `incoming.s3_prefix`); "
                       "the data version is the object's ETag.")
def incoming_videos_s3(context: dg.SensorEvaluationContext, artifacts: ArtifactStoreResource,
                       incoming: IncomingVideosResource):
    if not incoming.s3_prefix:
        return dg.SkipReason("resource incoming.s3_prefix is not set (env VIPE_WATCH_S3_PREFIX)")
    return scan_and_register(context, artifacts.store(), incoming.s3_prefix, incoming.settle_seconds,
                             incoming.max_per_tick, incoming.long_side)


SENSORS = [incoming_videos_folder, incoming_videos_s3]
