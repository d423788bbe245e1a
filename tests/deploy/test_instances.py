"""Every YAML under deployments/ parses; the Dagster instance loads from the local (SQLite) and the
PostgreSQL configuration, the latter against a real PostgreSQL server."""

from __future__ import annotations

import shutil
import warnings

import pytest
import yaml

from .conftest import DEPLOY, compose_instance_env

warnings.filterwarnings("ignore", module="dagster")


def _yaml_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_every_deployment_yaml_parses():
    files = _yaml_files()
    names = {str(p.relative_to(DEPLOY)) for p in files}
    assert {"local/dagster.yaml", "compose/dagster.yaml", "compose/docker-compose.yaml",
            "compose/workspace.yaml", "helm/values.yaml"} <= names, names
    for p in files:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
        assert docs, f"{p} holds no YAML document"
        assert all(isinstance(d, dict) for d in docs), f"{p}: expected mappings at top level"


def test_local_instance_loads(tmp_path, monkeypatch):
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.runs import SqliteRunStorage

    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inst = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(inst.run_storage, SqliteRunStorage)
        assert isinstance(inst.run_coordinator, QueuedRunCoordinator)
        assert inst.get_concurrency_config().pool_config.default_pool_limit == 1
        assert inst.get_concurrency_config().pool_config.pool_granularity.value == "op"
    finally:
        inst.dispose()


def test_postgres_instance_loads_and_holds_pool_limits(postgres_server, tmp_path, monkeypatch):
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is needed for the PostgreSQL instance")
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    compose_instance_env(postgres_server, "load", tmp_path, monkeypatch)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "compose" / "dagster.yaml", home / "dagster.yaml")
    inst = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(inst.run_storage, PostgresRunStorage)
        assert isinstance(inst.event_log_storage, PostgresEventLogStorage)
        assert isinstance(inst.schedule_storage, PostgresScheduleStorage)
        assert isinstance(inst.run_coordinator, QueuedRunCoordinator)
        # the gpu pool limit lives in the database, shared by every process that opens the instance
        inst.event_log_storage.set_concurrency_slots("gpu", 3)
        other = dg.DagsterInstance.from_config(str(home))
        try:
            assert other.event_log_storage.get_concurrency_info("gpu").slot_count == 3
        finally:
            other.dispose()
    finally:
        inst.dispose()
