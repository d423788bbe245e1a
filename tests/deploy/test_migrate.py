"""Migrating from the embedded SQLite instance to PostgreSQL with ``vipe-dagster migrate-instance``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import warnings

import pytest

from .conftest import DEPLOY, REPO, create_database, postgres_env

warnings.filterwarnings("ignore", module="dagster")


def test_migrate_sqlite_to_postgres(postgres_server, tmp_path, monkeypatch):
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is needed for the PostgreSQL instance")
    import dagster as dg

    from . import pg_graph

    src_home, dst_home = tmp_path / "sqlite_home", tmp_path / "pg_home"
    src_home.mkdir()
    dst_home.mkdir()
    shutil.copyfile(DEPLOY / "local" / "dagster.yaml", src_home / "dagster.yaml")
    shutil.copyfile(DEPLOY / "compose" / "dagster.yaml", dst_home / "dagster.yaml")
    db = create_database(postgres_server, f"mig_{uuid.uuid4().hex[:8]}")
    env = postgres_env(postgres_server, db) | {"DAGSTER_COMPUTE_LOG_DIR": str(tmp_path / "logs")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_HOME", str(src_home))
    monkeypatch.setenv("VIPE_EXECUTOR", "in_process")

    src = dg.DagsterInstance.from_config(str(src_home))
    keys = ["video-00", "video-01", "video-02"]
    src.add_dynamic_partitions("videos", keys)
    src.event_log_storage.set_concurrency_slots("gpu", 3)
    job = pg_graph.get_job()
    for key in keys[:2]:
        assert job.execute_in_process(instance=src, partition_key=key).success
    src.report_runless_asset_event(dg.AssetObservation(asset_key="frames", partition="video-02",
                                                       tags={"dagster/data_version": "abc123"}))
    src_runs = {r.run_id: len(src.all_logs(r.run_id)) for r in src.get_runs()}
    src_latest = src.get_latest_materialization_event(dg.AssetKey("summary")).asset_materialization
    src.dispose()

    cli = [sys.executable, "-m", "vipe_dagster.cli", "migrate-instance", str(src_home), str(dst_home)]
    proc_env = dict(os.environ)
    out = subprocess.run(cli, cwd=REPO, env=proc_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "runs=2" in out.stdout and "pools=1" in out.stdout and "partitions=3" in out.stdout, out.stdout

    dst = dg.DagsterInstance.from_config(str(dst_home))
    try:
        from dagster_postgres import PostgresRunStorage

        assert isinstance(dst.run_storage, PostgresRunStorage)
        assert {r.run_id: len(dst.all_logs(r.run_id)) for r in dst.get_runs()} == src_runs
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in dst.get_runs())
        for asset in ("frames", "pose", "preview", "summary"):
            assert dst.get_materialized_partitions(dg.AssetKey(asset)) == set(keys[:2]), asset
        assert dst.get_latest_materialization_event(dg.AssetKey("summary")).asset_materialization == src_latest
        assert set(dst.get_dynamic_partitions("videos")) == set(keys)
        assert dst.event_log_storage.get_concurrency_info("gpu").slot_count == 3
        obs = dst.fetch_observations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("frames"),
                                                           asset_partitions=["video-02"]), limit=1).records
        assert obs and obs[0].event_log_entry.asset_observation.tags["dagster/data_version"] == "abc123"
    finally:
        dst.dispose()

    # a second migration into the now non-empty target is refused, naming the target
    again = subprocess.run(cli, cwd=REPO, env=proc_env, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already holds runs" in again.stderr


def test_migrate_rejects_missing_instance_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "migrate-instance", str(tmp_path / "nope"),
                          str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "expected a DAGSTER_HOME folder with a dagster.yaml" in out.stderr
