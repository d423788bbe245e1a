"""Copy a Dagster instance (e.g. the embedded SQLite default) into another (e.g. PostgreSQL).

Copies, in this order: job and execution-plan snapshots and runs (oldest first) with every event of each run
(so the asset catalog, materialized partitions and data versions come along), asset observations and
materializations reported outside runs (``vipe-dagster register``), dynamic partitions (``videos`` by
default), pool limits (``gpu``) and sensor/schedule state including cursors (so the ``incoming`` sensor
does not register and run every video again). Ticks and daemon heartbeats are not copied.

The target must hold no runs yet (copying twice would duplicate history). Both instances are opened from
their ``dagster.yaml`` folders; the target needs ``dagster-postgres`` when it is PostgreSQL. Imports dagster
lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

NAME = "migrate-instance"
HELP = "copy runs, events, partitions, pool limits and sensor state from one Dagster instance to another"

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("source", help="DAGSTER_HOME folder of the instance to copy from (e.g. .dagster_home)")
    p.add_argument("target", help="DAGSTER_HOME folder of the instance to copy to (its dagster.yaml names "
                                  "the PostgreSQL database)")
    p.add_argument("--partitions", nargs="*", default=["videos"],
                   help="dynamic partitions definitions to copy (default: videos)")


def migrate(source: Any, target: Any, partitions_defs: Iterable[str] = ("videos",)) -> dict[str, int]:
    """Copy ``source`` into ``target`` (two open ``DagsterInstance``); returns counts of what was copied."""
    from dagster import DagsterEventType, EventRecordsFilter

    from ..errors import ConfigError

    if target.get_runs_count() > 0:
        raise ConfigError(f"target instance {target.root_directory or target} already holds runs; "
                          "migrate into an empty instance")
    counts = {"runs": 0, "events": 0, "runless_events": 0, "partitions": 0, "pools": 0, "instigators": 0}
    src_runs, dst_runs = source.run_storage, target.run_storage
    copied_runs: set[str] = set()
    for run in reversed(list(source.get_runs())):
        for snap_id, get, has, add in (
            (run.job_snapshot_id, src_runs.get_job_snapshot, dst_runs.has_job_snapshot,
             dst_runs.add_job_snapshot),
            (run.execution_plan_snapshot_id, src_runs.get_execution_plan_snapshot,
             dst_runs.has_execution_plan_snapshot, dst_runs.add_execution_plan_snapshot),
        ):
            if snap_id and not has(snap_id):
                new_id = add(get(snap_id))
                if new_id != snap_id:
                    raise ConfigError(f"snapshot {snap_id} of run {run.run_id} was stored as {new_id}; "
                                      "the instances run different dagster versions")
        dst_runs.add_run(run)
        for entry in source.all_logs(run.run_id):
            target.event_log_storage.store_event(entry)
            counts["events"] += 1
        copied_runs.add(run.run_id)
        counts["runs"] += 1

    for event_type in (DagsterEventType.ASSET_OBSERVATION, DagsterEventType.ASSET_MATERIALIZATION):
        records = source.event_log_storage.get_event_records(
            EventRecordsFilter(event_type=event_type), ascending=True)
        for rec in records:
            if rec.event_log_entry.run_id not in copied_runs:
                target.event_log_storage.store_event(rec.event_log_entry)
                counts["runless_events"] += 1

    for name in partitions_defs:
        keys = list(source.get_dynamic_partitions(name))
        new = [k for k in keys if not target.has_dynamic_partition(name, k)]
        if new:
            target.add_dynamic_partitions(name, new)
        counts["partitions"] += len(new)

    src_events = source.event_log_storage
    for key in sorted(src_events.get_concurrency_keys()):
        info = src_events.get_concurrency_info(key)
        if info.slot_count is not None and info.slot_count >= 0:
            target.event_log_storage.set_concurrency_slots(key, info.slot_count)
            counts["pools"] += 1

    if source.schedule_storage is not None and target.schedule_storage is not None:
        for state in source.schedule_storage.all_instigator_state():
            if target.schedule_storage.get_instigator_state(state.instigator_origin_id,
                                                            state.selector_id) is None:
                target.schedule_storage.add_instigator_state(state)
                counts["instigators"] += 1
    log.info("migrated %s", counts)
    return counts


def run(args) -> int:
    import os

    from ..errors import InputError

    for home in (args.source, args.target):
        if not os.path.isfile(os.path.join(home, "dagster.yaml")):
            raise InputError(f"{home}: expected a DAGSTER_HOME folder with a dagster.yaml")
    if os.path.realpath(args.source) == os.path.realpath(args.target):
        raise InputError(f"source and target are the same folder {args.source}")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import dagster as dg

    source = dg.DagsterInstance.from_config(os.path.abspath(args.source))
    try:
        target = dg.DagsterInstance.from_config(os.path.abspath(args.target))
        try:
            counts = migrate(source, target, args.partitions)
        finally:
            target.dispose()
    finally:
        source.dispose()
    print("\t".join(f"{k}={v}" for k, v in counts.items()))
    return 0
