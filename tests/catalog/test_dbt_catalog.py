"""The catalog's dbt project on real data: 7-Scenes redkitchen (ground-truth poses, Kinect depth, the
dataset's intrinsics) written as a ViPE-format artifact root, catalogued by dbt through the CLI path and
through Dagster (every model an asset, every dbt test an asset check), checked against numbers computed here
from the dataset's own files with numpy/OpenCV/scipy.

The 7-Scenes frames are read from /work/shared/data at test time (non-commercial licence: never copied into
the repository); the test skips where they are absent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vipe_dagster.catalog import dbt_project
from vipe_dagster.catalog.build import build_catalog, query_arrow
from vipe_dagster.eval.realdata import SEVEN_SCENES_DEV, shared_data_dir
from vipe_dagster.io import ArtifactStore

SCENES = (Path(os.environ["VIPE_7SCENES"]) if os.environ.get("VIPE_7SCENES")
          else shared_data_dir() / SEVEN_SCENES_DEV)  # never committed (non-commercial)
FIRST, N = 500, 24
NAME = "redkitchen"


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory):
    import cv2

    if not (SCENES / "camera-intrinsics.txt").is_file():
        pytest.skip(f"7-Scenes frames not found at {SCENES}")
    K = np.loadtxt(SCENES / "camera-intrinsics.txt")
    c2w = np.stack([np.loadtxt(SCENES / f"frame-{FIRST + i:06d}.pose.txt") for i in range(N)])
    raw = [cv2.imread(str(SCENES / f"frame-{FIRST + i:06d}.depth.png"), cv2.IMREAD_UNCHANGED) for i in range(N)]
    assert all(d is not None and d.dtype == np.uint16 for d in raw)
    # Kinect depth in millimetres, 65535 = no measurement -> metres, 0 = invalid
    depth = [np.where(d == 65535, 0, d).astype(np.float32) / 1000.0 for d in raw]
    root = tmp_path_factory.mktemp("kitchen") / "results"
    store = ArtifactStore(str(root))
    store.write_pose(NAME, c2w.astype(np.float32))
    store.write_intrinsics(NAME, np.tile([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], (N, 1)))
    store.write_depth(NAME, depth)
    h, w = raw[0].shape
    return {"root": root, "K": K, "c2w": c2w, "raw": raw, "size": (w, h)}


def _expected(kitchen) -> dict[str, float]:
    """The statistics the catalog should hold, from the dataset's files (not from our code)."""
    from scipy.spatial.transform import Rotation

    c2w, K = kitchen["c2w"], kitchen["K"]
    w, h = kitchen["size"]
    centres = c2w[:, :3, 3]
    rel = Rotation.from_matrix(c2w[:-1, :3, :3]).inv() * Rotation.from_matrix(c2w[1:, :3, :3])
    # the catalog samples up to 8 evenly spaced depth frames (documented in docs/catalog.md)
    pick = sorted({int(round(x)) for x in np.linspace(0, N - 1, 8)})
    sampled = np.stack([kitchen["raw"][i] for i in pick])
    invalid = np.logical_or(sampled == 0, sampled == 65535)
    valid_m = sampled[~invalid].astype(np.float64) / 1000.0
    return {"path_length": float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()),
            "total_rotation_deg": float(np.degrees(rel.magnitude()).sum()),
            "fov_x_deg": math.degrees(2 * math.atan2(w / 2, K[0, 0])),
            "fov_y_deg": math.degrees(2 * math.atan2(h / 2, K[1, 1])),
            "invalid_depth_fraction": float(invalid.mean()),
            "depth_p50": float(np.percentile(valid_m, 50))}


def _stats(db) -> dict:
    rows = query_arrow(db, f"SELECT * FROM video_stats WHERE sequence = '{NAME}'").to_pylist()
    assert len(rows) == 1, rows
    return rows[0]


def _check_against_dataset(row: dict, kitchen) -> None:
    exp = _expected(kitchen)
    assert row["pose_frames"] == N and row["depth_frames"] == N and row["intrinsics_frames"] == N
    assert (row["width"], row["height"]) == kitchen["size"]
    assert row["path_length"] == pytest.approx(exp["path_length"], rel=1e-4)
    assert row["total_rotation_deg"] == pytest.approx(exp["total_rotation_deg"], rel=1e-3, abs=1e-3)
    assert row["fov_x_deg"] == pytest.approx(exp["fov_x_deg"], abs=1e-3)   # 2 atan(320 / 585) = 57.43 deg
    assert row["fov_y_deg"] == pytest.approx(exp["fov_y_deg"], abs=1e-3)
    assert row["invalid_depth_fraction"] == pytest.approx(exp["invalid_depth_fraction"], abs=1e-6)
    # the depth codec stores metres lossily (float16-class precision): 1 mm at kitchen distances
    assert row["depth_p50"] == pytest.approx(exp["depth_p50"], abs=2e-3)


@pytest.fixture(scope="module")
def cli_build(kitchen, tmp_path_factory):
    db = tmp_path_factory.mktemp("cli") / "catalog.duckdb"
    return db, build_catalog([], [str(kitchen["root"])], db, stats_cache=False)


def test_dbt_builds_the_catalog_of_real_data(kitchen, cli_build):
    db, res = cli_build
    _check_against_dataset(_stats(db), kitchen)
    assert res.counts["video_stats"] == 1 and res.counts["videos"] == 1
    assert query_arrow(db, "SELECT dataset, has_pose, has_depth FROM videos").to_pylist() == [
        {"dataset": "local", "has_pose": True, "has_depth": True}]
    # every model of the dbt project ran, and every data test of the manifest was run and reported
    manifest = json.loads(dbt_project.manifest_path().read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    tests = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    assert {k.removeprefix("model_") for k in res.timings if k.startswith("model_")} == models
    assert {t.name for t in res.tests} == tests and len(tests) == 35
    assert not [t for t in res.tests if not t.passed and t.severity == "error"]
    # the published file holds the models and no raw table
    tables = {r["table_name"] for r in query_arrow(db, "SELECT table_name FROM duckdb_tables()").to_pylist()}
    assert tables == models


def test_manifest_is_parsed_once_per_content(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    shutil.copytree(dbt_project.project_dir(), project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv(dbt_project.PROJECT_ENV, str(project))
    first = dbt_project.manifest_path()
    assert first.parent.name == f"parse-{dbt_project.content_hash(project)}"
    stamp = first.stat().st_mtime_ns
    assert dbt_project.manifest_path() == first and first.stat().st_mtime_ns == stamp  # cached: no reparse
    # an edited model is a new content: a new parse, the old one removed
    model = project / "models" / "marts" / "catalog_info.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    second = dbt_project.manifest_path()
    assert second != first and second.is_file() and not first.parent.exists()
    # a broken model: dbt parse fails with the model named
    (project / "models" / "marts" / "broken.sql").write_text("SELECT * FROM {{ ref('no_such_model') }}\n")
    from vipe_dagster.catalog.errors import ModelError

    with pytest.raises(ModelError, match=r"(?s)dbt parse failed.*no_such_model"):
        dbt_project.manifest_path()


def test_dagster_materializes_the_dbt_models_with_their_tests_as_checks(kitchen, cli_build, tmp_path):
    dg = pytest.importorskip("dagster")
    from assets_defs.catalog import ASSETS, BUILD_KEYS, RAW_KEYS, catalog_dbt_models
    from resources.catalog import CatalogResource, dbt_resource

    manifest = json.loads(dbt_project.manifest_path().read_text())
    tests = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {k.path[-1] for k in catalog_dbt_models.keys} == models
    assert {c.name for c in catalog_dbt_models.check_keys} == tests
    # lineage: raw table -> staging model -> mart
    deps = catalog_dbt_models.asset_deps
    assert deps[dg.AssetKey(["catalog", "stg_meta"])] == {RAW_KEYS["meta"]}
    assert dg.AssetKey(["catalog", "stg_meta"]) in deps[dg.AssetKey(["catalog", "videos"])]

    res = CatalogResource(db_path=str(tmp_path / "catalog.duckdb"), datasets=[],
                          artifact_roots=[str(kitchen["root"])])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(ASSETS, instance=instance, resources={"catalog_db": res, "dbt": dbt_resource()},
                            selection=BUILD_KEYS)
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == set(BUILD_KEYS)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evals) == tests
    assert all(e.passed for e in evals.values()), {k: e.metadata for k, e in evals.items() if not e.passed}
    assert evals["unique_combination_video_stats_root__sequence"].asset_key == dg.AssetKey(["catalog", "video_stats"])
    # the instance records them as check executions of the model assets (what the UI lists)
    execs = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["catalog", "videos"]), "unique_videos_sequence"), limit=5)
    assert len(execs) == 1
    # the same tables as the CLI path, the same statistics of the real data
    _check_against_dataset(_stats(res.db_path), kitchen)
    cli_db, _ = cli_build
    for table in ("videos", "video_stats", "artifacts", "shards", "datasets", "lineage"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        a, b = query_arrow(cli_db, sql).to_pylist(), query_arrow(res.db_path, sql).to_pylist()
        assert a == b, table
