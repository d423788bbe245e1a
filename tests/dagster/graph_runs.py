"""Helpers shared by the Dagster graph tests: register a video partition and run the per-video job."""

from __future__ import annotations

import dagster as dg

from assets_defs._common import DATA_VERSION_TAG
from vipe_dagster.definitions import build_definitions


def register(instance, artifacts, uri, **opts):
    """Register ``uri`` as a ``videos`` partition with its data version, as the sensors do."""
    entry, _ = artifacts.registry().register(str(uri), **opts)
    instance.add_dynamic_partitions("videos", [entry.key])
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key="raw_video", partition=entry.key, tags={DATA_VERSION_TAG: entry.data_version}))
    return entry


def run_video_pipeline(instance, artifacts, key, run_config=None):
    """Run ``video_pipeline`` for one partition; returns ``(defs, job, result, checks, materializations)``."""
    defs = build_definitions({"artifacts": artifacts})
    job = defs.resolve_job_def("video_pipeline")
    result = job.execute_in_process(instance=instance, partition_key=key, run_config=run_config or {},
                                    raise_on_error=False)
    checks = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    mats = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
            for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    return defs, job, result, checks, mats
