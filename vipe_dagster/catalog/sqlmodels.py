"""A small dbt-like runner for the catalog's SQL models (no Jinja, no dbt dependency).

Project layout (``dbt_like_sql/`` at the repository root)::

    models/<layer>/<name>.sql   one SELECT per model; the file name is the model (table) name
    tests/<name>.sql            singular data tests: a SELECT returning the offending rows (0 rows = pass)

Inside SQL, ``{{ ref('model') }}`` names another model (a dependency) and ``{{ source('name') }}`` a raw input
table (loaded by the runner from Parquet as ``raw_<name>``); both are replaced with a regular expression.
Models run in topological order, each as ``CREATE OR REPLACE TABLE <name> AS <select>``.

Header comments (lines starting with ``--`` before the SQL) configure a model::

    -- index: dataset, tar_name               an index created after the table
    -- test: unique(dataset, sequence)        generic tests: unique, not_null, accepted_range(col, lo, hi),
    -- test: not_null(sequence, dataset)      accepted_values(col, 'a', 'b', ...)
    -- test[warn]: accepted_range(num_frames, 1, 100000)   ``[warn]`` reports without failing the run
    -- severity: warn                         (in a singular test file) the test only warns
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataTestError, ModelError

log = logging.getLogger(__name__)

_REF = re.compile(r"\{\{\s*ref\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\)\s*\}\}")
_SOURCE = re.compile(r"\{\{\s*source\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\)\s*\}\}")
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DIRECTIVE = re.compile(r"^--\s*(index|test(?:\[(warn|error)\])?|severity)\s*:\s*(.+?)\s*$")
_GENERIC = re.compile(r"^([a-z_]+)\((.*)\)$")


def default_project_dir() -> Path:
    """``dbt_like_sql/`` of the source tree (override with ``VIPE_SQL_MODELS``)."""
    import os

    env = os.environ.get("VIPE_SQL_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "dbt_like_sql"


@dataclass
class DataTest:
    name: str
    sql: str  # rendered; returns offending rows
    severity: str = "error"
    model: str | None = None


@dataclass
class Model:
    name: str
    path: Path
    sql: str  # raw, with ref()/source()
    refs: list[str]
    sources: list[str]
    indexes: list[list[str]] = field(default_factory=list)
    tests: list[tuple[str, str]] = field(default_factory=list)  # (severity, generic test expression)


@dataclass
class TestResult:
    name: str
    severity: str
    failures: int
    sample: list[tuple]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.failures == 0


@dataclass
class RunResult:
    order: list[str]
    model_seconds: dict[str, float]
    tests: list[TestResult]

    @property
    def failed_tests(self) -> list[TestResult]:
        return [t for t in self.tests if not t.passed]


def _split_args(text: str) -> list[str]:
    out, cur, quote = [], "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur += ch
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _ident(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise ModelError(f"{where}: {name!r} is not a plain column/model name")
    return name


class SqlProject:
    """The models and tests of one project folder."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_project_dir()
        if not (self.root / "models").is_dir():
            raise ModelError(f"{self.root}: no models/ folder; expected a dbt_like_sql project")
        self.models: dict[str, Model] = {}
        for path in sorted((self.root / "models").rglob("*.sql")):
            name = path.stem
            _ident(name, str(path))
            if name in self.models:
                raise ModelError(f"{path}: model {name} also defined in {self.models[name].path}")
            self.models[name] = self._parse_model(path)
        self.singular: list[tuple[Path, str, str]] = []
        tests_dir = self.root / "tests"
        for path in sorted(tests_dir.glob("*.sql")) if tests_dir.is_dir() else []:
            sql = path.read_text()
            sev = "error"
            for line in sql.splitlines():
                m = _DIRECTIVE.match(line.strip())
                if m and m.group(1) == "severity":
                    sev = m.group(3).lower()
            if sev not in ("warn", "error"):
                raise ModelError(f"{path}: severity {sev!r}, expected warn or error")
            self.singular.append((path, sql, sev))
        for m in self.models.values():
            for r in m.refs:
                if r not in self.models:
                    raise ModelError(f"{m.path}: ref('{r}') names no model (known: {', '.join(sorted(self.models))})")
        for path, sql, _ in self.singular:
            for r in _REF.findall(sql):
                if r not in self.models:
                    raise ModelError(f"{path}: ref('{r}') names no model")

    @staticmethod
    def _parse_model(path: Path) -> Model:
        sql = path.read_text()
        m = Model(path.stem, path, sql, list(dict.fromkeys(_REF.findall(sql))),
                  list(dict.fromkeys(_SOURCE.findall(sql))))
        for line in sql.splitlines():
            line = line.strip()
            if not line.startswith("--"):
                if line:
                    break
                continue
            d = _DIRECTIVE.match(line)
            if not d:
                continue
            kind, sev, arg = d.group(1), d.group(2) or "error", d.group(3)
            if kind == "index":
                m.indexes.append([_ident(c.strip(), str(path)) for c in arg.split(",")])
            elif kind.startswith("test"):
                if not _GENERIC.match(arg):
                    raise ModelError(f"{path}: test {arg!r} is not of the form name(args)")
                m.tests.append((sev, arg))
        stripped = _SOURCE.sub("x", _REF.sub("x", sql))
        if _LEFTOVER.search(stripped):
            raise ModelError(f"{path}: template syntax other than ref()/source() is not supported")
        return m

    # ------------------------------------------------------------------ ordering and rendering
    def order(self) -> list[str]:
        """Topological order (dependencies first; ties by name); a cycle raises ModelError naming it."""
        done: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, stack: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                cyc = stack[stack.index(n):] + [n]
                raise ModelError(f"dependency cycle between models: {' -> '.join(cyc)}")
            state[n] = 1
            for r in sorted(self.models[n].refs):
                visit(r, stack + [n])
            state[n] = 2
            done.append(n)

        for n in sorted(self.models):
            visit(n, [])
        return done

    def render(self, sql: str, where: str = "") -> str:
        def ref(m: re.Match) -> str:
            if m.group(1) not in self.models:
                raise ModelError(f"{where}: ref('{m.group(1)}') names no model")
            return m.group(1)

        return _SOURCE.sub(lambda m: f"raw_{m.group(1)}", _REF.sub(ref, sql))

    def sources(self) -> set[str]:
        return {s for m in self.models.values() for s in m.sources}

    def data_tests(self) -> list[DataTest]:
        out: list[DataTest] = []
        for m in (self.models[n] for n in self.order()):
            for sev, expr in m.tests:
                out.append(DataTest(f"{m.name}.{expr}", _generic_sql(m.name, expr, str(m.path)), sev, m.name))
        for path, sql, sev in self.singular:
            out.append(DataTest(path.stem, self.render(sql, str(path)).strip().rstrip(";"), sev))
        return out


def _generic_sql(model: str, expr: str, where: str) -> str:
    m = _GENERIC.match(expr)
    assert m is not None
    kind, args = m.group(1), _split_args(m.group(2))
    if kind == "unique":
        cols = ", ".join(_ident(a, where) for a in args)
        return f"SELECT {cols}, count(*) AS n FROM {model} GROUP BY {cols} HAVING count(*) > 1"
    if kind == "not_null":
        cond = " OR ".join(f"{_ident(a, where)} IS NULL" for a in args)
        return f"SELECT * FROM {model} WHERE {cond}"
    if kind == "accepted_range":
        if len(args) != 3:
            raise ModelError(f"{where}: accepted_range(col, min, max) takes 3 arguments, got {args}")
        col = _ident(args[0], where)
        lo, hi = (float(a) for a in args[1:])
        return f"SELECT * FROM {model} WHERE {col} < {lo!r} OR {col} > {hi!r}"
    if kind == "accepted_values":
        col = _ident(args[0], where)
        vals = args[1:]
        if not vals or not all(re.match(r"^'[^']*'$", v) for v in vals):
            raise ModelError(f"{where}: accepted_values needs quoted values, got {vals}")
        return f"SELECT * FROM {model} WHERE {col} IS NOT NULL AND {col} NOT IN ({', '.join(vals)})"
    raise ModelError(f"{where}: unknown generic test {kind!r} (unique, not_null, accepted_range, accepted_values)")


def _quote(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def run_project(con: Any, project: SqlProject, sources: Mapping[str, str], *, run_tests: bool = True,
                raise_on_failure: bool = True) -> RunResult:
    """Load ``sources`` (name -> Parquet path) as ``raw_<name>``, build every model, index, then test.

    A failing error-severity test raises ``DataTestError`` after all tests ran (``raise_on_failure``).
    """
    missing = project.sources() - set(sources)
    if missing:
        raise ModelError(f"models need source(s) {sorted(missing)}, not provided")
    for name, path in sources.items():
        _ident(name, "source")
        con.execute(f"CREATE OR REPLACE TABLE raw_{name} AS SELECT * FROM read_parquet({_quote(path)})")
    order = project.order()
    timings: dict[str, float] = {}
    for name in order:
        model = project.models[name]
        sql = project.render(model.sql, str(model.path)).strip().rstrip(";")
        t0 = time.perf_counter()
        try:
            con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")
            for i, cols in enumerate(model.indexes):
                con.execute(f"CREATE INDEX idx_{name}_{i} ON {name} ({', '.join(cols)})")
        except Exception as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"{model.path}: model {name} failed: {exc}") from exc
        timings[name] = time.perf_counter() - t0
        log.debug("model %s built in %.3f s", name, timings[name])
    results: list[TestResult] = []
    if run_tests:
        results = run_tests_only(con, project)
        errors = [t for t in results if not t.passed and t.severity == "error"]
        for t in results:
            if not t.passed:
                log.log(logging.ERROR if t.severity == "error" else logging.WARNING,
                        "data test %s: %d failing row(s), e.g. %s", t.name, t.failures, t.sample[:3])
        if errors and raise_on_failure:
            raise DataTestError(
                "catalog data tests failed: " + "; ".join(f"{t.name} ({t.failures} rows, e.g. {t.sample[:2]})"
                                                          for t in errors),
                [(t.name, t.failures, t.sample) for t in errors])
    return RunResult(order, timings, results)


def run_tests_only(con: Any, project: SqlProject, sample: int = 5) -> list[TestResult]:
    out = []
    for t in project.data_tests():
        t0 = time.perf_counter()
        try:
            n = con.execute(f"SELECT count(*) FROM ({t.sql}) AS failing").fetchone()[0]
            rows = con.execute(f"SELECT * FROM ({t.sql}) AS failing LIMIT {int(sample)}").fetchall() if n else []
        except Exception as exc:
            raise ModelError(f"data test {t.name} could not run: {exc}") from exc
        out.append(TestResult(t.name, t.severity, int(n), rows, time.perf_counter() - t0))
    return out
