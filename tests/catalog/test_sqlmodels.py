from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from vipe_dagster.catalog.errors import DataTestError, ModelError
from vipe_dagster.catalog.sqlmodels import SqlProject, run_project


def _project(root: Path, models: dict[str, str], tests: dict[str, str] | None = None) -> Path:
    for name, sql in models.items():
        p = root / "models" / ("staging" if name.startswith("stg_") else "marts") / f"{name}.sql"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(sql)
    for name, sql in (tests or {}).items():
        p = root / "tests" / f"{name}.sql"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(sql)
    return root


def test_real_project_loads_in_dependency_order():
    proj = SqlProject()
    order = proj.order()
    for name, model in proj.models.items():
        for dep in model.refs:
            assert order.index(dep) < order.index(name), (dep, name)
    assert order[-1] == "catalog_info"
    assert {"datasets", "shards", "videos", "artifacts", "video_stats", "lineage"} <= set(order)
    assert proj.sources() == {"meta", "remote_shards", "datasets", "artifacts", "video_stats", "manifests",
                              "local_shards", "build"}


def test_ref_rendering_order_and_tests(tmp_path):
    root = _project(tmp_path, {
        "stg_x": "SELECT * FROM {{ source('x') }}",
        "b": "-- index: k\n-- test: unique(k)\n-- test[warn]: accepted_range(v, 0, 10)\n"
             "SELECT k, v * 2 AS v FROM {{ ref( 'stg_x' ) }}",
        "a": "-- test: not_null(k)\nSELECT k FROM {{ref(\"b\")}} WHERE v > 2",
    }, {"no_big": "SELECT * FROM {{ ref('b') }} WHERE v > 100"})
    proj = SqlProject(root)
    assert proj.order() == ["stg_x", "b", "a"]
    pq = tmp_path / "x.parquet"
    pl.DataFrame({"k": [1, 2, 3], "v": [1, 2, 7]}).write_parquet(pq)
    con = duckdb.connect()
    res = run_project(con, proj, {"x": str(pq)})
    assert con.execute("SELECT k FROM a ORDER BY k").fetchall() == [(2,), (3,)]
    by = {t.name: t for t in res.tests}
    assert by["b.accepted_range(v, 0, 10)"].failures == 1 and by["b.accepted_range(v, 0, 10)"].severity == "warn"
    assert by["b.unique(k)"].passed and by["a.not_null(k)"].passed and by["no_big"].passed
    assert con.execute("SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'b'").fetchone()[0] == 1
    # duplicate keys make the error-severity test fail the run
    pl.DataFrame({"k": [1, 1], "v": [1, 2]}).write_parquet(pq)
    with pytest.raises(DataTestError, match=r"b.unique\(k\)") as ei:
        run_project(duckdb.connect(), proj, {"x": str(pq)})
    assert ei.value.failures[0][1] == 1


def test_cycle_unknown_ref_and_bad_syntax(tmp_path):
    with pytest.raises(ModelError, match="dependency cycle between models: a -> b -> a"):
        SqlProject(_project(tmp_path / "c", {"a": "SELECT * FROM {{ ref('b') }}",
                                             "b": "SELECT * FROM {{ ref('a') }}"})).order()
    with pytest.raises(ModelError, match=r"ref\('nope'\) names no model"):
        SqlProject(_project(tmp_path / "u", {"a": "SELECT * FROM {{ ref('nope') }}"}))
    with pytest.raises(ModelError, match="template syntax"):
        SqlProject(_project(tmp_path / "j", {"a": "{% if x %}SELECT 1{% endif %}"}))
    with pytest.raises(ModelError, match="unknown generic test"):
        SqlProject(_project(tmp_path / "g", {"a": "-- test: positive(x)\nSELECT 1 AS x"})).data_tests()
    with pytest.raises(ModelError, match="not provided"):
        run_project(duckdb.connect(), SqlProject(_project(tmp_path / "s", {"a": "SELECT * FROM {{ source('y') }}"})),
                    {})
    with pytest.raises(ModelError, match="model a failed"):
        run_project(duckdb.connect(), SqlProject(_project(tmp_path / "f", {"a": "SELECT * FROM missing_table"})), {})
