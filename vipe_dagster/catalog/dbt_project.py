"""The catalog's SQL models as a dbt project (``dbt_like_sql/``), run with dbt-core + dbt-duckdb, offline.

Project layout::

    dbt_project.yml, profiles.yml   project vipe_catalog; the DuckDB file is ``--vars '{catalog_db: PATH}'``,
                                    else ``$VIPE_CATALOG_DBT_DB`` (relative paths: to dbt's working folder)
    models/sources.yml              the raw tables ``raw_<name>`` the Python loader writes (RAW_TABLES)
    models/{staging,marts}/*.sql    one SELECT per model, materialized as a table; indexes in
                                    ``config(meta={'indexes': [[col, ...]]})`` (macros/indexes.sql)
    models/marts/schema.yml         generic data tests (unique, not_null, accepted_values and the project's own
                                    unique_combination, accepted_range in tests/generic/)
    tests/*.sql                     singular data tests: a SELECT of the offending rows, ``config(severity='warn')``

dbt runs in a subprocess (dbt's ``cli()`` under this interpreter) so its global state, logging and the DuckDB file handle
end with the process: the caller must have closed its own connection to the file before. Anonymous usage
statistics are off and the project has no packages, so nothing is fetched from the network.

``manifest_path()`` parses the project once per content (``target/parse-<hash>/manifest.json``) for the
Dagster definitions; ``run_models`` / ``run_tests`` are the engine's build path (``build.build_catalog``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError

log = logging.getLogger(__name__)

PROJECT_ENV = "VIPE_DBT_PROJECT"
DB_ENV = "VIPE_CATALOG_DBT_DB"
# dbt builds into a file of this name inside its working folder: a constant profile keeps dbt's partial
# parse valid from one build to the next (dbt reparses the whole project when the profile changes)
WORK_DB_NAME = "catalog.duckdb"
RAW_TABLES = ("meta", "remote_shards", "datasets", "artifacts", "video_stats", "manifests", "local_shards",
              "build")
# dbt's console script, run by this interpreter (``-m dbt.cli.main`` warns that the module is already imported)
_DBT_MAIN = "import sys; from dbt.cli.main import cli; sys.argv[0] = 'dbt'; sys.exit(cli())"
_HASHED_SUFFIXES = (".sql", ".yml", ".yaml", ".md", ".csv")
_SKIP_DIRS = {"target", "logs", "dbt_packages"}


def project_dir() -> Path:
    """``dbt_like_sql/`` of the source tree (override with ``VIPE_DBT_PROJECT``)."""
    env = os.environ.get(PROJECT_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "dbt_like_sql"
    if not (path / "dbt_project.yml").is_file():
        raise ModelError(f"{path}: no dbt_project.yml; expected the catalog's dbt project (dbt_like_sql/)")
    return path


def project_files(project: Path) -> list[Path]:
    out = []
    for p in sorted(project.rglob("*")):
        rel = p.relative_to(project)
        if p.is_file() and p.suffix in _HASHED_SUFFIXES and not (set(rel.parts[:-1]) & _SKIP_DIRS):
            out.append(p)
    return out


def content_hash(project: Path | None = None) -> str:
    """sha256 over the project's SQL/YAML files (paths and bytes) and the dbt version: the manifest's cache key."""
    import dbt.version

    project = project or project_dir()
    h = hashlib.sha256(f"dbt-core {dbt.version.__version__}\n".encode())
    for p in project_files(project):
        h.update(str(p.relative_to(project)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def dbt_executable() -> str:
    """The ``dbt`` script of this interpreter's environment (the venv's bin/ need not be on PATH)."""
    here = Path(sys.executable).with_name("dbt")
    return str(here) if here.is_file() else (shutil.which("dbt") or "dbt")


def dbt_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false",
                "DBT_VERSION_CHECK": "false", "DO_NOT_TRACK": "1"})
    env.update(extra or {})
    return env


def _invoke(args: list[str], project: Path, work: Path, db_env: str, timeout: float | None = None
            ) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", _DBT_MAIN, *args, "--project-dir", str(project), "--profiles-dir",
           str(project), "--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    log.debug("dbt: %s (cwd %s)", " ".join(cmd), work)
    return subprocess.run(cmd, cwd=work, env=dbt_env({DB_ENV: db_env}), capture_output=True, text=True,
                          timeout=timeout)


def _last_error(proc: subprocess.CompletedProcess) -> str:
    """dbt's own report (from its first error line on), else the last lines of its output."""
    lines = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if ln.strip()]
    first = next((i for i, ln in enumerate(lines) if "error" in ln.lower()), max(0, len(lines) - 12))
    return "\n".join(lines[first:first + 20])


def manifest_path(project: Path | None = None) -> Path:
    """``manifest.json`` of the project, parsed by ``dbt parse`` once per content hash (cached under target/).

    The parse runs offline (no database connection, no packages); a concurrent loader that wins the race
    publishes its folder first and the loser's copy is discarded."""
    project = project or project_dir()
    digest = content_hash(project)
    out = project / "target" / f"parse-{digest}"
    manifest = out / "manifest.json"
    if manifest.is_file():
        return manifest
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-parse-{digest}-", dir=out.parent))
    try:
        t0 = time.perf_counter()
        proc = _invoke(["parse", "--quiet"], project, tmp, WORK_DB_NAME)
        if proc.returncode != 0 or not (tmp / "target" / "manifest.json").is_file():
            raise ModelError(f"{project}: dbt parse failed (exit {proc.returncode}):\n{_last_error(proc)}")
        log.info("dbt parse of %s (%s) in %.1f s", project, digest, time.perf_counter() - t0)
        try:
            os.replace(tmp / "target", out)
        except OSError:
            if not manifest.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in out.parent.glob("parse-*"):
        if old != out and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return manifest


@dataclass
class TestResult:
    name: str
    severity: str
    failures: int
    sample: list[tuple]
    seconds: float
    model: str | None = None

    @property
    def passed(self) -> bool:
        return self.failures == 0


@dataclass
class DbtRun:
    model_seconds: dict[str, float]
    tests: list[TestResult]


def _results(work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    run_results = json.loads((work / "target" / "run_results.json").read_text())
    manifest = json.loads((work / "target" / "manifest.json").read_text())
    return run_results["results"], manifest


def _seed_partial_parse(project: Path, work: Path) -> None:
    """Start from the cached parse of this content (dbt then skips its full parse)."""
    try:
        src = manifest_path(project).parent / "partial_parse.msgpack"
    except ModelError:
        return
    if src.is_file():
        (work / "target").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, work / "target" / "partial_parse.msgpack")


def run_models(work: Path, project: Path | None = None, timeout: float | None = None) -> dict[str, float]:
    """``dbt run`` of every model into ``work/catalog.duckdb`` (raw tables loaded); returns seconds per model."""
    project = project or project_dir()
    _seed_partial_parse(project, work)
    proc = _invoke(["run"], project, work, WORK_DB_NAME, timeout)
    try:
        results, _ = _results(work)
    except (OSError, ValueError):
        results = []
    failed = [r for r in results if r["status"] not in ("success",)]
    if proc.returncode != 0 or failed:
        detail = "; ".join(f"{r['unique_id'].split('.')[-1]}: {r.get('message')}" for r in failed)
        raise ModelError(f"dbt run of {project} failed (exit {proc.returncode}): "
                         f"{detail or _last_error(proc)}")
    return {r["unique_id"].split(".")[-1]: float(r["execution_time"]) for r in results}


def run_tests(work: Path, project: Path | None = None, sample: int = 5, timeout: float | None = None
              ) -> list[TestResult]:
    """``dbt test`` of every data test on ``work/catalog.duckdb``; a sample of the offending rows of each
    failing test is read afterwards with the test's compiled SQL."""
    import duckdb

    project = project or project_dir()
    proc = _invoke(["test"], project, work, WORK_DB_NAME, timeout)
    try:
        results, manifest = _results(work)
    except (OSError, ValueError):
        raise ModelError(f"dbt test of {project} produced no results (exit {proc.returncode}):\n"
                         f"{_last_error(proc)}") from None
    broken = [r for r in results if r["status"] in ("error", "skipped")]
    if broken:
        raise ModelError("data test(s) could not run: " + "; ".join(
            f"{r['unique_id'].split('.')[2]}: {r.get('message')}" for r in broken))
    out: list[TestResult] = []
    failing_sql: dict[int, str] = {}
    for r in results:
        node = manifest["nodes"][r["unique_id"]]
        attached = node.get("attached_node") or (node.get("depends_on", {}).get("nodes") or [None])[0]
        failures = int(r.get("failures") or 0)
        if failures:
            failing_sql[len(out)] = r.get("compiled_code") or ""
        out.append(TestResult(node["name"], str(node["config"].get("severity", "error")).lower(), failures, [],
                              float(r["execution_time"]), attached.split(".")[-1] if attached else None))
    if failing_sql:
        con = duckdb.connect(str(work / WORK_DB_NAME), read_only=True)
        try:
            for i, sql in failing_sql.items():
                if sql.strip():
                    out[i].sample = con.execute(f"SELECT * FROM ({sql.strip().rstrip(';')}) AS failing "
                                                f"LIMIT {int(sample)}").fetchall()
        finally:
            con.close()
    return sorted(out, key=lambda t: t.name)
