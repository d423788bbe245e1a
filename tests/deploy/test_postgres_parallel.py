"""Eight video partitions materialize at the same time, each in its own run process with the multiprocess
executor, against one real PostgreSQL server holding run, event-log and schedule storage (the compose /
production instance configuration): every run succeeds, nothing reports a lock or serialization error, every
partition of every asset is recorded, and the ``gpu`` pool limit stored in PostgreSQL holds across runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest

from .conftest import DEPLOY, REPO, create_database, postgres_env

warnings.filterwarnings("ignore", module="dagster")

N = 8
GPU_SLOTS = 2
LOCK_WORDS = ("deadlock", "could not obtain lock", "lock timeout", "database is locked",
              "could not serialize", "serializationfailure", "locknotavailable")


def _overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.slow
def test_eight_partitions_in_parallel_on_postgres(postgres_server, tmp_path):
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is needed for the PostgreSQL instance")
    import dagster as dg

    db = create_database(postgres_server, f"par_{uuid.uuid4().hex[:8]}")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "compose" / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ)
    env.update(postgres_env(postgres_server, db))
    env.update({
        "DAGSTER_HOME": str(home),
        "DAGSTER_COMPUTE_LOG_DIR": str(tmp_path / "compute_logs"),
        "VIPE_EXECUTOR": "multiprocess",
        "VIPE_MAX_CONCURRENT": "2",
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent), str(REPO), env.get("PYTHONPATH"))
                                      if p),
    })
    keys = [f"video-{i:02d}" for i in range(N)]

    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_", "VIPE_"))})
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions("videos", keys)
        instance.event_log_storage.set_concurrency_slots("gpu", GPU_SLOTS)

        procs = []
        for key in keys:
            out = tmp_path / f"{key}.json"
            log = open(tmp_path / f"{key}.log", "w")  # noqa: SIM115 - closed below
            cmd = [sys.executable, "-c", "import pg_graph; pg_graph.main()", key, str(out)]
            procs.append((key, out, log, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                                          stderr=subprocess.STDOUT)))
        failures = []
        for key, out, log, p in procs:
            try:
                rc = p.wait(timeout=420)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "timeout"
            log.close()
            text = (tmp_path / f"{key}.log").read_text()
            bad = [w for w in LOCK_WORDS if w in text.lower()]
            if rc != 0 or bad or not out.exists():
                failures.append(f"{key}: rc={rc} lock_words={bad}\n{text[-3000:]}")
        assert not failures, "\n\n".join(failures)

        results = [json.loads((tmp_path / f"{k}.json").read_text()) for k in keys]
        assert all(r["success"] for r in results), results
        run_ids = {r["run_id"] for r in results}
        assert len(run_ids) == N

        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS, run_id
            records = instance.all_logs(run_id)
            messages = " ".join((r.message or "") + " " + (r.error_info.to_string() if r.error_info else "")
                                for r in records).lower()
            assert not [w for w in LOCK_WORDS if w in messages], run_id
            steps = {r.dagster_event.step_key for r in records
                     if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
            assert steps == {"frames", "pose", "preview", "summary"}, (run_id, steps)

        for asset in ("frames", "pose", "preview", "summary"):
            done = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert done == set(keys), (asset, sorted(done))

        # the gpu pool: never more than GPU_SLOTS `pose` steps between STEP_START and STEP_SUCCESS at once
        intervals = []
        for run_id in run_ids:
            ev = {}
            for r in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START,
                                                        dg.DagsterEventType.STEP_SUCCESS}):
                if r.dagster_event.step_key == "pose":
                    ev[r.dagster_event.event_type] = r.timestamp
            intervals.append((ev[dg.DagsterEventType.STEP_START], ev[dg.DagsterEventType.STEP_SUCCESS]))
        assert 1 <= _overlap(intervals) <= GPU_SLOTS, intervals
        # runs did overlap: the parallel case was exercised, not eight runs one after another
        spans = []
        for run_id in run_ids:
            stats = instance.get_run_stats(run_id)
            spans.append((stats.start_time, stats.end_time))
        assert _overlap(spans) >= 2, spans
        info = instance.event_log_storage.get_concurrency_info("gpu")
        assert info.slot_count == GPU_SLOTS and info.active_slot_count == 0
        instance.dispose()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
