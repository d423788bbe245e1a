"""Build the annotation catalog (a DuckDB file) atomically, and query it read-only.

``build_catalog`` gathers the raw inputs in Python (``meta.parquet`` of every source, the payload listing,
files and statistics of local artifact roots, our manifests) and loads them as raw tables into a *temporary*
DuckDB file beside the destination; dbt (the project ``dbt_like_sql/``, see ``dbt_project``) builds the models
and runs the data tests in that file, and only then is it renamed over ``db_path``. Readers therefore see the old catalog or the new one, never a partial file.
A lock file (``<db>.lock``, ``flock``) admits one writer at a time; a failed build leaves the old catalog.

``query`` opens the catalog with ``read_only=True`` and external access disabled, so a query can neither
change the catalog nor write (``COPY ... TO``) or attach other files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import io
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..io import fs as vfs
from .dbt_project import RAW_TABLES, WORK_DB_NAME, TestResult, run_models, run_tests
from .dbt_project import project_dir as dbt_project_dir
from .errors import CatalogError, CatalogLockedError, DataTestError, QueryError
from .sources import DatasetSource, open_source
from .stats import scan_roots

log = logging.getLogger(__name__)

DEFAULT_DB = "data/catalog.duckdb"
FORMATS = ("table", "csv", "json", "parquet")

META_SCHEMA = {"sequence": pl.Utf8, "num_frames": pl.Int32, "tar_name": pl.Utf8, "youtube_link": pl.Utf8,
               "youtube_timestamp": pl.Utf8, "dataset": pl.Utf8}
REMOTE_SCHEMA = {"dataset": pl.Utf8, "tar_name": pl.Utf8, "attribute": pl.Utf8, "path": pl.Utf8, "bytes": pl.Int64}
DATASET_SCHEMA = {"name": pl.Utf8, "title": pl.Utf8, "hf_repo": pl.Utf8, "prefix": pl.Utf8, "license": pl.Utf8,
                  "source_uri": pl.Utf8, "source_kind": pl.Utf8, "data_version": pl.Utf8,
                  "expected_videos": pl.Int64, "expected_frames": pl.Int64, "num_frames_min": pl.Int32,
                  "num_frames_max": pl.Int32, "rgb_hosted": pl.Boolean}


def default_db_path() -> str:
    return os.environ.get("VIPE_CATALOG_DB", DEFAULT_DB)


@dataclass
class BuildResult:
    db_path: str
    build_id: str
    seconds: float
    counts: dict[str, int]
    data_versions: dict[str, str]
    tests: list[TestResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[TestResult]:
        return [t for t in self.tests if not t.passed]

    def summary(self) -> dict[str, Any]:
        return {"db_path": self.db_path, "build_id": self.build_id, "seconds": round(self.seconds, 3),
                "counts": self.counts, "data_versions": self.data_versions,
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "tests": {"passed": sum(t.passed for t in self.tests), "failed": len(self.warnings)},
                "warnings": [f"{t.name}: {t.failures} row(s)" for t in self.warnings]}


@contextlib.contextmanager
def writer_lock(db_path: str | os.PathLike, timeout: float = 0.0) -> Iterator[None]:
    """Exclusive advisory lock on ``<db>.lock`` (released by the OS if the process dies)."""
    lock_path = Path(str(db_path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    from ..io.locks import describe_holder

                    try:
                        holder = json.loads(lock_path.read_text() or "null")
                    except (OSError, ValueError):
                        holder = None
                    who = describe_holder(holder if isinstance(holder, dict) else None)
                    raise CatalogLockedError(
                        f"busy: {who} holds {lock_path} (another catalog build); waited {timeout:.0f} s, "
                        f"retry later or pass --wait SECONDS") from None
                time.sleep(0.1)
        from ..io.locks import holder_info

        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info("catalog build")).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _source_rows(src: DatasetSource, list_payload: bool) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    meta = src.read_meta()
    remote = src.list_payload() if list_payload else pl.DataFrame(schema=REMOTE_SCHEMA)
    if "dataset" not in remote.columns:
        remote = remote.with_columns(pl.lit(src.name).alias("dataset"))
    spec = src.spec
    prefix = spec.prefix if spec else None
    if prefix is None:
        prefixes = meta.get_column("tar_name").str.split("-").list.first().unique().to_list()
        prefix = prefixes[0] if len(prefixes) == 1 else None
    row = {"name": src.name, "title": spec.title if spec else src.name, "hf_repo": spec.hf_repo if spec else None,
           "prefix": prefix, "license": spec.license if spec else None, "source_uri": src.uri.rstrip("/"),
           "source_kind": src.kind, "data_version": src.data_version(),
           "expected_videos": spec.videos if spec else None, "expected_frames": spec.frames if spec else None,
           "num_frames_min": spec.num_frames_range[0] if spec and spec.num_frames_range else None,
           "num_frames_max": spec.num_frames_range[1] if spec and spec.num_frames_range else None,
           "rgb_hosted": spec.rgb_hosted if spec else True}
    return meta.select(list(META_SCHEMA)), remote.select(list(REMOTE_SCHEMA)), row


@dataclass
class RawTables:
    """The raw inputs of one build (the dbt sources ``catalog_raw.<name>``), gathered in Python."""

    build_id: str
    tables: dict[str, pl.DataFrame]
    data_versions: dict[str, str]
    timings: dict[str, float]


def gather_raw(sources: Iterable[str | DatasetSource], artifact_roots: Iterable[str] = (),
               db_path: str | os.PathLike | None = None, *, list_payload: bool = True, stats_cache: bool = True,
               depth_frames: int = 8) -> RawTables:
    """Read every source's meta.parquet (and payload listing) and scan the artifact roots."""
    from .. import __version__

    db = Path(db_path or default_db_path()).expanduser().absolute()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    metas, remotes, ds_rows, versions = [], [], [], {}
    for s in sources:
        src = s if isinstance(s, DatasetSource) else open_source(str(s))
        meta, remote, row = _source_rows(src, list_payload)
        if row["name"] in versions:
            raise CatalogError(f"dataset {row['name']} given twice (second source {src.uri})")
        versions[row["name"]] = row["data_version"]
        metas.append(meta)
        remotes.append(remote)
        ds_rows.append(row)
    timings["read_sources"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    roots = [str(r) for r in artifact_roots]
    scan = scan_roots(roots, cache_path=(str(db) + ".stats.parquet") if stats_cache and roots else None,
                      depth_frames=depth_frames)
    timings["scan_artifacts"] = time.perf_counter() - t0
    build_id = uuid.uuid4().hex[:12]
    tables = {
        "meta": pl.concat(metas) if metas else pl.DataFrame(schema=META_SCHEMA),
        "remote_shards": pl.concat(remotes) if remotes else pl.DataFrame(schema=REMOTE_SCHEMA),
        "datasets": pl.DataFrame(ds_rows, schema=DATASET_SCHEMA),
        "artifacts": scan.artifacts, "video_stats": scan.stats, "manifests": scan.manifests,
        "local_shards": scan.local_shards,
        "build": pl.DataFrame({"build_id": [build_id], "built_at": [_dt.datetime.now(_dt.UTC)],
                               "code_version": [__version__]}),
    }
    assert set(tables) == set(RAW_TABLES)
    return RawTables(build_id, tables, versions, timings)


def load_raw(staging_db: str | os.PathLike, raw: RawTables, threads: int | None = None) -> float:
    """Write the raw tables ``raw_<name>`` into ``staging_db`` (through Parquet) and close the connection, so
    that dbt (another process) can open the file. Returns the seconds spent."""
    import duckdb

    t0 = time.perf_counter()
    staging = Path(staging_db)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-raw-{staging.stem}-{vfs.tmp_tag()}-", dir=staging.parent))
    try:
        paths = {}
        for name, df in raw.tables.items():
            paths[name] = work / f"{name}.parquet"
            df.write_parquet(paths[name], compression="lz4", statistics=False)
        con = duckdb.connect(str(staging))
        try:
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            con.execute("SET enable_progress_bar = false")
            for name, path in paths.items():
                con.execute(f"CREATE OR REPLACE TABLE raw_{name} AS SELECT * FROM read_parquet(?)", [str(path)])
            con.execute("CHECKPOINT")
        finally:
            con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - t0


def _catalog_counts(con) -> dict[str, int]:
    keys = ["datasets", "shards", "videos", "artifacts", "video_stats", "lineage"]
    row = con.execute(f"SELECT {', '.join(keys)} FROM catalog_info").fetchone()
    return {k: int(v) for k, v in zip(keys, row, strict=True)}


def _drop_raw(con) -> None:
    for name in RAW_TABLES:
        con.execute(f"DROP TABLE IF EXISTS raw_{name}")
    con.execute("CHECKPOINT")


def _replace(src: Path, db: Path) -> None:
    wal = Path(str(db) + ".wal")
    if wal.exists():  # a stale WAL of an earlier read-write session would be replayed on the new file
        wal.unlink()
    os.replace(src, db)


def _raise_on_errors(tests: list[TestResult]) -> None:
    for t in tests:
        if not t.passed:
            log.log(logging.ERROR if t.severity == "error" else logging.WARNING,
                    "data test %s: %d failing row(s), e.g. %s", t.name, t.failures, t.sample[:3])
    errors = [t for t in tests if not t.passed and t.severity == "error"]
    if errors:
        raise DataTestError(
            "catalog data tests failed: " + "; ".join(f"{t.name} ({t.failures} rows, e.g. {t.sample[:2]})"
                                                      for t in errors),
            [(t.name, t.failures, t.sample) for t in errors])


def build_catalog(sources: Iterable[str | DatasetSource], artifact_roots: Iterable[str] = (),
                  db_path: str | os.PathLike | None = None, *, models_dir: str | os.PathLike | None = None,
                  list_payload: bool = True, stats_cache: bool = True, depth_frames: int = 8,
                  lock_timeout: float = 0.0, threads: int | None = None) -> BuildResult:
    """Build the catalog into a temporary DuckDB file and rename it over ``db_path`` when every test passed.

    The raw tables are loaded in Python, then ``dbt run`` builds the models and ``dbt test`` runs every data
    test (all of them, so a failure report is complete); an error-severity failure raises ``DataTestError``
    and leaves the old catalog in place. ``threads`` limits DuckDB while loading the raw tables; dbt's DuckDB
    connection uses DuckDB's default (all cores)."""
    import duckdb

    t_start = time.perf_counter()
    db = Path(db_path or default_db_path()).expanduser().absolute()
    db.parent.mkdir(parents=True, exist_ok=True)
    project = Path(models_dir) if models_dir else dbt_project_dir()
    with writer_lock(db, lock_timeout):
        # this build holds the writer lock: temporary files of earlier builds of this catalog are leftovers
        vfs.sweep_stale_temps(db.parent, older_than=time.time(),
                              stems=(f"catalog-{db.stem}", db.stem, f"{db.name}.stats", f"raw-{db.stem}"))
        vfs.sweep_system_temps()
        work = Path(tempfile.mkdtemp(prefix=f".tmp-catalog-{db.stem}-{vfs.tmp_tag()}-", dir=db.parent))
        tmp_db = work / WORK_DB_NAME
        try:
            raw = gather_raw(sources, artifact_roots, db, list_payload=list_payload, stats_cache=stats_cache,
                             depth_frames=depth_frames)
            timings = dict(raw.timings)
            timings["load_raw"] = load_raw(tmp_db, raw, threads)
            t0 = time.perf_counter()
            model_seconds = run_models(work, project)
            timings["dbt_run"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            tests = run_tests(work, project)
            timings["dbt_test"] = time.perf_counter() - t0
            _raise_on_errors(tests)
            con = duckdb.connect(str(tmp_db))
            try:
                counts = _catalog_counts(con)
                _drop_raw(con)
            finally:
                con.close()
            timings.update({f"model_{k}": v for k, v in model_seconds.items()})
            _replace(tmp_db, db)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t_start
    log.info("catalog %s built in %.2f s: %s", db, seconds, counts)
    return BuildResult(str(db), raw.build_id, seconds, counts, raw.data_versions, tests, timings)


# ---------------------------------------------------------------------- staged build (Dagster)
def staging_dir(db_path: str | os.PathLike | None = None) -> Path:
    """``<catalog stem>.dbt/`` beside the catalog: the persistent staging file dbt builds into under Dagster
    (``catalog.duckdb`` with the raw tables and every model), published by ``publish_staged``."""
    db = Path(db_path or default_db_path()).expanduser().absolute()
    return db.parent / f"{db.stem}.dbt"


def stage_raw(sources: Iterable[str | DatasetSource], artifact_roots: Iterable[str] = (),
              db_path: str | os.PathLike | None = None, *, list_payload: bool = True, depth_frames: int = 8,
              lock_timeout: float = 0.0) -> RawTables:
    """Load the raw tables into the staging file of ``db_path`` (the dbt models then run on it)."""
    db = Path(db_path or default_db_path()).expanduser().absolute()
    stage = staging_dir(db)
    stage.mkdir(parents=True, exist_ok=True)
    with writer_lock(db, lock_timeout):
        raw = gather_raw(sources, artifact_roots, db, list_payload=list_payload, depth_frames=depth_frames)
        raw.timings["load_raw"] = load_raw(stage / WORK_DB_NAME, raw)
    return raw


def publish_staged(db_path: str | os.PathLike | None = None, lock_timeout: float = 0.0
                   ) -> tuple[dict[str, int], str]:
    """Copy the staging file (models built and tested by dbt), drop its raw tables and rename the copy over
    the catalog atomically. Returns the row counts of catalog_info and the build id."""
    import duckdb

    db = Path(db_path or default_db_path()).expanduser().absolute()
    staged = staging_dir(db) / WORK_DB_NAME
    if not staged.is_file():
        raise CatalogError(f"no staged catalog at {staged}; materialize the catalog_raw and dbt assets first")
    with writer_lock(db, lock_timeout):
        tmp = db.parent / f".tmp-catalog-{db.stem}-{vfs.tmp_tag()}.duckdb"
        try:
            shutil.copyfile(staged, tmp)
            con = duckdb.connect(str(tmp))
            try:
                counts = _catalog_counts(con)
                build_id = con.execute("SELECT build_id FROM catalog_info").fetchone()[0]
                _drop_raw(con)
            finally:
                con.close()
            _replace(tmp, db)
        finally:
            for p in (tmp, Path(str(tmp) + ".wal")):
                if p.exists():
                    p.unlink()
    return counts, build_id


# ---------------------------------------------------------------------- read side
DEFAULT_QUERY_TIMEOUT_S = 60.0
DEFAULT_QUERY_MEMORY = "2GB"


def connect_readonly(db_path: str | os.PathLike | None = None, threads: int | None = None,
                     memory_limit: str | None = None):
    """A DuckDB connection that cannot write the catalog nor touch other files (settings locked)."""
    import duckdb

    db = Path(db_path or default_db_path()).expanduser().absolute()
    if not db.is_file():
        raise CatalogError(f"no catalog at {db}; build one with `vipe-dagster catalog build`")
    try:
        config: dict[str, Any] = {"enable_external_access": False, "lock_configuration": True}
        if threads:
            config["threads"] = int(threads)
        if memory_limit:
            config["memory_limit"] = str(memory_limit)
        return duckdb.connect(str(db), read_only=True, config=config)
    except duckdb.Error as exc:
        if memory_limit and "memory" in str(exc).lower():
            raise QueryError(f"invalid memory limit {memory_limit!r} ({exc}); use e.g. 512MB or 4GB") \
                from None
        raise CatalogError(f"cannot open catalog {db} read-only: {exc}") from exc


def query_arrow(db_path: str | os.PathLike | None, sql: str, params: Sequence[Any] | None = None,
                timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S,
                memory_limit: str | None = DEFAULT_QUERY_MEMORY):
    """Run ``sql`` on a fresh read-only connection and return a ``pyarrow.Table``.

    The statement is cancelled after ``timeout_s`` seconds (None or 0: no limit) and DuckDB may use at most
    ``memory_limit`` (spilling is impossible: external access is off), so one query cannot hang or exhaust
    the machine."""
    import threading

    import duckdb

    con = connect_readonly(db_path, memory_limit=memory_limit)
    timer = None
    fired = threading.Event()
    if timeout_s:
        def cancel() -> None:
            fired.set()
            con.interrupt()

        timer = threading.Timer(float(timeout_s), cancel)
        timer.daemon = True
        timer.start()
    try:
        rel = con.sql(sql, params=list(params)) if params else con.sql(sql)
        if rel is None:  # a statement without a result set
            import pyarrow as pa

            return pa.table({})
        return rel.to_arrow_table()
    except (duckdb.Error, RuntimeError) as exc:
        if fired.is_set():
            raise QueryError(f"query cancelled after {timeout_s:g} s (statement timeout; raise it with "
                             f"--timeout)") from None
        if "memory" in str(exc).lower() and isinstance(exc, duckdb.OutOfMemoryException):
            raise QueryError(f"query needs more than the memory limit {memory_limit} (raise it with "
                             f"--memory-limit): {exc}") from None
        if not isinstance(exc, duckdb.Error):
            raise
        raise QueryError(f"query rejected by the catalog ({db_path or default_db_path()}): {exc}") from exc
    finally:
        if timer is not None:
            timer.cancel()
        con.close()


def _csv_safe(table):
    """Nested columns (lists, structs, maps) as JSON text: CSV has no notation for them."""
    import pyarrow as pa

    cols = []
    for col in table.columns:
        if pa.types.is_nested(col.type):
            text = [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()]
            col = pa.array(text, pa.string())
        cols.append(col)
    return pa.table(dict(zip(table.column_names, cols, strict=True)))


def query(db_path: str | os.PathLike | None, sql: str, fmt: str = "table", output: str | os.PathLike | None = None,
          params: Sequence[Any] | None = None, timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S,
          memory_limit: str | None = DEFAULT_QUERY_MEMORY) -> str | bytes | None:
    """Run a read-only query; return text (table/csv/json) or Parquet bytes, or write to ``output``."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    table = query_arrow(db_path, sql, params, timeout_s=timeout_s, memory_limit=memory_limit)
    data: str | bytes
    if fmt == "parquet":
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(_csv_safe(table), buf)
        data = buf.getvalue().decode("utf-8")
    else:
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        if fmt == "json":
            data = json.dumps(df.to_dicts(), default=str, indent=1)
        else:
            with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=100, tbl_width_chars=200,
                           tbl_hide_dataframe_shape=False):
                data = str(df)
    if output is None:
        return data
    vfs.write_bytes(str(output), data if isinstance(data, bytes) else data.encode("utf-8"))
    return None
