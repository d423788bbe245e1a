"""Event-log storages whose pool (op concurrency) bookkeeping is one critical section across processes.

Why: Dagster's SQL event log claims a pool slot in several separate statements (``has_unassigned_slots`` ->
insert an *assigned* pending step -> ``SELECT ... FOR UPDATE SKIP LOCKED`` of a free slot -> ``UPDATE``). On
PostgreSQL the event-log engine runs in AUTOCOMMIT, so the row lock ends with its own statement and nothing
makes the sequence atomic: run processes that reach the ``gpu`` pool in the same instant all see a free slot,
all mark themselves assigned and may overwrite the same slot row; each then believes it holds a slot. We
measured it: eight runs on a pool of 2 had 4 ``pose`` steps running at once (the postgres parallel test in
``tests/deploy``). On a GPU host that is two models too many on the device.

These subclasses take one lock around every operation that reads or changes pool slots or the pending-step
queue (claim, free per step and per run, limit changes, default-limit initialisation). The lock is
re-entrant within a thread, because freeing a slot assigns the next pending step through the same methods.

* :class:`PoolLockedPostgresEventLogStorage`: a PostgreSQL session advisory lock taken on a connection of
  its own (every process and host on the same database serialises on it; the server drops it if the holder
  dies).
* :class:`PoolLockedSqliteEventLogStorage`: an exclusive ``flock`` on ``<base_dir>/.pool.lock`` (every
  process on the machine that opens the instance); :class:`PoolLockedSqliteStorage` is ``storage: sqlite``
  with that event log.

``deployments/compose/dagster.yaml`` names the PostgreSQL one as its ``event_log_storage``,
``deployments/local/dagster.yaml`` the SQLite one as ``storage: custom``. Config schemas are the parents'.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData

# advisory-lock key: a fixed 31-bit number derived from a name, shared by every process using the database
POOL_LOCK_NAME = "vipe-dagster/pool-bookkeeping"
POOL_LOCK_KEY = zlib.crc32(POOL_LOCK_NAME.encode()) & 0x7FFFFFFF
SQLITE_LOCK_FILE = ".pool.lock"

_GUARDED = ("claim_concurrency_slot", "free_concurrency_slot_for_step", "free_concurrency_slots_for_run",
            "set_concurrency_slots", "delete_concurrency_limit", "initialize_concurrency_limit_to_default")


class _PoolLockMixin:
    """Runs the pool methods of a SQL event log inside ``self._pool_lock()``, a context manager each concrete
    storage defines (re-entrant per thread: only the outermost section takes the lock)."""

    @contextlib.contextmanager
    def _pool_section(self) -> Iterator[None]:
        state = self.__dict__.setdefault("_pool_lock_local", threading.local())
        depth = getattr(state, "depth", 0)
        if depth:
            state.depth = depth + 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        with self._pool_lock():
            state.depth = 1
            try:
                yield
            finally:
                state.depth = 0


def _guard(name: str):
    def method(self, *args: Any, **kwargs: Any):
        with self._pool_section():
            return getattr(super(self._guarded_base, self), name)(*args, **kwargs)
    method.__name__ = name
    method.__doc__ = f"``{name}`` of the parent storage, inside the pool lock."
    return method


def _install_guards(cls: type) -> type:
    for name in _GUARDED:
        setattr(cls, name, _guard(name))
    cls._guarded_base = cls
    return cls


@_install_guards
class PoolLockedSqliteEventLogStorage(_PoolLockMixin, SqliteEventLogStorage):
    """SQLite event log (``base_dir`` as for ``SqliteEventLogStorage``) with process-safe pool claims."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # noqa: D102 - the parent's schema
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def _pool_lock(self) -> Iterator[None]:
        os.makedirs(self._base_dir, exist_ok=True)
        fd = os.open(os.path.join(self._base_dir, SQLITE_LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


class PoolLockedSqliteStorage(DagsterSqliteStorage):
    """``storage: sqlite`` (same ``base_dir`` and file layout under it) with :class:`PoolLockedSqliteEventLogStorage`
    as its event log. Use as ``storage: custom: {module: resources.pool_storage, class: PoolLockedSqliteStorage,
    config: {base_dir: ...}}``."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = PoolLockedSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # noqa: D102 - the parent's schema
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return ConfigurableClassData(__name__, PoolLockedSqliteEventLogStorage.__name__,
                                     yaml.dump({"base_dir": _event_logs_directory(self.base_dir)}))


def _postgres_class() -> type:
    from dagster_postgres.event_log.event_log import PostgresEventLogStorage
    from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
    from sqlalchemy import pool as db_pool
    from sqlalchemy import text

    @_install_guards
    class PoolLockedPostgresEventLogStorage(_PoolLockMixin, PostgresEventLogStorage):
        """PostgreSQL event log (``postgres_db`` / ``postgres_url`` as for ``PostgresEventLogStorage``) whose
        pool claims hold a session advisory lock."""

        @classmethod
        def from_config_value(cls, inst_data, config_value):  # noqa: D102 - the parent's schema
            return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                       should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                       token_provider=get_token_provider_from_config(config_value))

        def _lock_engine(self):
            engine = self.__dict__.get("_pool_lock_engine")
            if engine is None:
                engine = create_pg_engine(self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                                          poolclass=db_pool.NullPool)
                self.__dict__["_pool_lock_engine"] = engine
            return engine

        @contextlib.contextmanager
        def _pool_lock(self) -> Iterator[None]:
            # a connection of its own: the storage's statements run on fresh connections (NullPool) while
            # this session holds the lock; if the process dies the server ends the session and the lock
            with self._lock_engine().connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": POOL_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": POOL_LOCK_KEY})

        def dispose(self) -> None:
            engine = self.__dict__.pop("_pool_lock_engine", None)
            if engine is not None:
                engine.dispose()
            super().dispose()

    PoolLockedPostgresEventLogStorage.__module__ = __name__
    PoolLockedPostgresEventLogStorage.__qualname__ = "PoolLockedPostgresEventLogStorage"
    return PoolLockedPostgresEventLogStorage


def __getattr__(name: str):
    # dagster-postgres is optional (the compose / Helm images have it; a local install may not)
    if name == "PoolLockedPostgresEventLogStorage":
        cls = _postgres_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
