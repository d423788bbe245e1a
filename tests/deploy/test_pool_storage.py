"""Pool-slot claims are atomic across processes (resources/pool_storage.py).

Eight claimers reach a pool of 2 slots in the same instant, each with its own instance opened from the
deployment's dagster.yaml (its own connections, as separate run processes have): exactly 2 get a slot, the rest wait, and the slot rows name
exactly the claimers that were told they hold one. Freeing hands the slots to the waiting claimers, still
never more than 2 at once. Real PostgreSQL (the compose instance class) and real SQLite files (the local one).
"""

from __future__ import annotations

import contextlib
import shutil
import threading

import pytest

from .conftest import DEPLOY, compose_instance_env

N = 8
SLOTS = 2
POOL = "gpu"


def _claim(storage, run_id: str, barrier: threading.Barrier, got: dict, i: int) -> None:
    barrier.wait()
    got[i] = storage.claim_concurrency_slot(POOL, run_id, "pose").is_claimed


def _contend(make_storage, rounds: int = 4) -> list[int]:
    """Claims by N claimers released together; returns how many held a slot after each wave."""
    admin = make_storage()
    admin.set_concurrency_slots(POOL, SLOTS)
    storages = [make_storage() for _ in range(N)]
    runs = [f"run-{i}" for i in range(N)]
    held: set[int] = set()
    done: set[int] = set()
    history = []
    try:
        for _ in range(rounds):
            waiting = [i for i in range(N) if i not in held and i not in done]
            if not waiting:
                break
            barrier = threading.Barrier(len(waiting))
            got: dict[int, bool] = {}

            threads = [threading.Thread(target=_claim, args=(storages[i], runs[i], barrier, got, i))
                       for i in waiting]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            held |= {i for i, ok in got.items() if ok}
            info = admin.get_concurrency_info(POOL)
            owners = {(s.run_id, s.step_key) for s in info.claimed_slots}
            # the table and the claimers agree, and the limit holds
            assert owners == {(runs[i], "pose") for i in held}, (owners, sorted(held))
            history.append(len(held))
            # the holders finish: their slots go to the next claimers
            for i in sorted(held):
                storages[i].free_concurrency_slot_for_step(runs[i], "pose")
            done |= held
            held = set()
        assert admin.get_concurrency_info(POOL).active_slot_count == 0
    finally:
        for s in [admin, *storages]:
            s.dispose()
    return history


@contextlib.contextmanager
def _instances(home, yaml_name: str):
    """A factory of event logs of instances opened from ``deployments/<yaml_name>`` (what every run process
    does); every instance is disposed at the end."""
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY / yaml_name, home / "dagster.yaml")
    opened = []

    def make():
        opened.append(dg.DagsterInstance.from_config(str(home)))
        return opened[-1].event_log_storage

    try:
        yield make
    finally:
        for inst in opened:
            inst.dispose()


@pytest.mark.slow
def test_postgres_pool_claims_never_exceed_the_limit(postgres_server, tmp_path, monkeypatch):
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is needed for the PostgreSQL instance")
    from resources.pool_storage import PoolLockedPostgresEventLogStorage

    compose_instance_env(postgres_server, "pool", tmp_path, monkeypatch)
    with _instances(tmp_path / "home", "compose/dagster.yaml") as make:
        assert isinstance(make(), PoolLockedPostgresEventLogStorage)
        history = _contend(make)
    assert history == [SLOTS] * (N // SLOTS), history


@pytest.mark.slow
def test_sqlite_pool_claims_never_exceed_the_limit(tmp_path, monkeypatch):
    from resources.pool_storage import PoolLockedSqliteEventLogStorage

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with _instances(tmp_path / "home", "local/dagster.yaml") as make:
        assert isinstance(make(), PoolLockedSqliteEventLogStorage)
        history = _contend(make)
    assert history == [SLOTS] * (N // SLOTS), history


def test_pool_lock_is_reentrant_and_released(tmp_path):
    """Freeing a slot assigns the next pending step through the guarded methods: the lock must not deadlock
    on itself, and it is free again afterwards (another descriptor can take it at once)."""
    import fcntl
    import os

    from resources.pool_storage import SQLITE_LOCK_FILE, PoolLockedSqliteEventLogStorage

    s = PoolLockedSqliteEventLogStorage(str(tmp_path))
    try:
        with s._pool_section(), s._pool_section():
            fd = os.open(tmp_path / SQLITE_LOCK_FILE, os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        fd = os.open(tmp_path / SQLITE_LOCK_FILE, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        s.dispose()
