from __future__ import annotations

import hashlib
import shutil

import polars as pl
import pytest

dagster = pytest.importorskip("dagster")

from dagster import (  # noqa: E402
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    RunRequest,
    build_schedule_context,
    define_asset_job,
    instance_for_test,
    materialize,
)

from assets_defs.catalog import (  # noqa: E402
    ASSETS,
    BUILD_KEYS,
    CHECKS,
    JOBS,
    RAW_KEYS,
    SCHEDULES,
    annotation_catalog,
    catalog_dbt_models,
    latest_data_version,
)
from resources.catalog import RESOURCES, CatalogResource, dbt_resource  # noqa: E402
from vipe_dagster.catalog.build import query_arrow  # noqa: E402


@pytest.fixture
def repos(small_repos, tmp_path):
    """Private copies (the test edits one of them)."""
    out = {}
    for name, repo in small_repos.items():
        shutil.copytree(repo.root, tmp_path / "repos" / repo.root.name)
        out[name] = str(tmp_path / "repos" / repo.root.name)
    return out


def _resource(repos, tmp_path) -> CatalogResource:
    return CatalogResource(db_path=str(tmp_path / "catalog.duckdb"), sources=repos, artifact_roots=[])


def _res(catalog_db: CatalogResource) -> dict:
    return {"catalog_db": catalog_db, "dbt": dbt_resource()}


# the dbt data tests of dbt_like_sql/ that guard the released videos (asset checks of catalog/videos)
VIDEO_CHECKS = {"unique_videos_sequence", "not_null_videos_sequence", "not_null_videos_dataset",
                "not_null_videos_num_frames", "accepted_range_videos_num_frames__100000__1",
                "frame_count_in_dataset_range", "shard_prefix_consistency", "shard_single_dataset"}


def test_module_lists_and_resource_defaults():
    # 3 meta assets, catalog_raw (8 raw tables), the dbt models, annotation_catalog
    assert len(ASSETS) == 6 and len(CHECKS) == 2 and len(SCHEDULES) == 1 and len(JOBS) == 1
    assert isinstance(RESOURCES["catalog_db"], CatalogResource)
    assert RESOURCES["catalog_db"].source_uri("web360") == "hf://datasets/nvidia/vipe-web360"
    defs = Definitions(assets=ASSETS, asset_checks=CHECKS, schedules=SCHEDULES, jobs=JOBS, resources=RESOURCES)
    assert defs.resolve_job_def("catalog_refresh") is not None


def test_materialize_meta_and_catalog_then_checks(repos, tmp_path):
    res_def = _resource(repos, tmp_path)
    instance = DagsterInstance.ephemeral()
    result = materialize(ASSETS, instance=instance, resources=_res(res_def))
    assert result.success
    # every dbt model is an asset (lineage raw table -> staging -> marts -> the published catalog)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized >= {*RAW_KEYS.values(), *catalog_dbt_models.keys, annotation_catalog.key}
    # and every dbt data test an asset check, evaluated in the same run
    dbt_evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {c.name for c in catalog_dbt_models.check_keys} == set(dbt_evals)
    assert VIDEO_CHECKS <= {c.name for c in catalog_dbt_models.check_keys
                            if c.asset_key == AssetKey(["catalog", "videos"])}
    assert all(e.passed for e in dbt_evals.values()), {k: e.metadata for k, e in dbt_evals.items() if not e.passed}
    key = AssetKey(["hf_dataset_meta", "web360"])
    md = result.asset_materializations_for_node("hf_dataset_meta__web360")[0].metadata
    sha = "sha256:" + hashlib.sha256(open(f"{repos['web360']}/meta.parquet", "rb").read()).hexdigest()
    assert md["revision"].value == sha and md["videos"].value == 2
    assert latest_data_version(instance, key) == sha
    cat = result.asset_materializations_for_node("annotation_catalog")[0].metadata
    assert cat["rows_videos"].value == 6
    assert query_arrow(res_def.db_path, "SELECT count(*) AS n FROM videos").to_pylist() == [{"n": 6}]

    # the checks, run through the refresh job (assets + checks of the catalog group)
    defs = Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=JOBS, resources=_res(res_def))
    run = defs.resolve_job_def("catalog_refresh").execute_in_process(instance=instance)
    assert run.success
    evals = {e.check_name: e for e in run.get_asset_check_evaluations()}
    assert set(evals) == {"catalog_schema", "catalog_expectations"} | set(dbt_evals)
    assert all(e.passed for e in evals.values()), {k: e.metadata for k, e in evals.items() if not e.passed}


def test_checks_fail_on_bad_catalog(repos, tmp_path):
    # a web360 row outside 70-501 frames and a duplicated sequence
    meta = pl.read_parquet(f"{repos['web360']}/meta.parquet")
    bad = pl.concat([meta, meta.head(1), meta.head(1).with_columns(pl.lit(100003, pl.Int64).alias("sequence"),
                                                                    pl.lit(5, meta.schema["num_frames"]).alias("num_frames"))])
    bad.write_parquet(f"{repos['web360']}/meta.parquet")
    res_def = _resource(repos, tmp_path)
    instance = DagsterInstance.ephemeral()
    # the build itself refuses bad data: the catalog asset fails and no catalog file appears
    result = materialize(ASSETS, instance=instance, resources=_res(res_def), raise_on_error=False)
    assert not result.success
    assert not (tmp_path / "catalog.duckdb").exists()
    # the dbt data tests, asset checks of catalog/videos, say why (a failing error test stops the models
    # downstream of videos, so the tests that also read datasets do not run)
    evals = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evals["unique_videos_sequence"] is False
    assert evals["accepted_range_videos_num_frames__100000__1"] is True
    assert evals["not_null_videos_sequence"] is True
    assert "annotation_catalog" not in {e.asset_key.to_user_string()
                                        for e in result.get_asset_materialization_events()}
    # a catalog tampered with after its build (no tests ran on it) is caught by the checks
    import duckdb

    good = CatalogResource(db_path=str(tmp_path / "catalog.duckdb"), datasets=["wild-sdg-1m", "dynpose-100kpp"],
                           sources={k: v for k, v in repos.items() if k != "web360"})
    good.build()
    con = duckdb.connect(good.db_path)
    con.execute("INSERT INTO videos (sequence, dataset, tar_name, num_frames) "
                "SELECT sequence, dataset, 'w360-a6680dd8', 3 FROM videos LIMIT 1")
    con.close()
    job = Definitions(
        assets=ASSETS, asset_checks=CHECKS, resources=_res(good),
        jobs=[define_asset_job("checks_only", selection=AssetSelection.checks_for_assets(annotation_catalog))],
    ).resolve_job_def("checks_only")
    run = job.execute_in_process(instance=instance, raise_on_error=False)
    evals = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert evals["catalog_expectations"] is False  # num_frames 3 and a duplicated sequence
    assert evals["catalog_schema"] is True


def test_daily_schedule_skips_when_revisions_unchanged(repos, tmp_path):
    res_def = _resource(repos, tmp_path)
    with instance_for_test() as instance:
        _schedule_ticks(instance, res_def, repos)


def _schedule_ticks(instance, res_def, repos):
    (sched,) = SCHEDULES

    def tick():
        with build_schedule_context(instance=instance, resources={"catalog_db": res_def}) as ctx:
            return sched.evaluate_tick(ctx)

    first = tick()
    assert len(first.run_requests) == 1  # nothing materialized yet: every dataset counts as changed
    materialize(ASSETS, instance=instance, resources=_res(res_def))
    second = tick()
    assert not second.run_requests and second.skip_message.startswith("dataset revisions unchanged")
    # a new revision of one dataset requests exactly that dataset's metadata plus the catalog
    meta = pl.read_parquet(f"{repos['web360']}/meta.parquet")
    meta.with_columns(pl.col("num_frames") + 1).write_parquet(f"{repos['web360']}/meta.parquet")
    third = tick()
    (req,) = third.run_requests
    assert isinstance(req, RunRequest)
    assert set(req.asset_selection) == {AssetKey(["hf_dataset_meta", "web360"]), *BUILD_KEYS}
    assert set(BUILD_KEYS) == {*RAW_KEYS.values(), *catalog_dbt_models.keys, AssetKey("annotation_catalog")}
    assert req.tags["catalog/changed"] == "web360"


def test_hub_revision_is_the_data_version_and_drives_the_schedule(small_repos, tmp_path, monkeypatch):
    from catalog_fakes import FakeHub

    sha1, sha2 = "a" * 40, "b" * 40
    hub = FakeHub({"nvidia/vipe-web360": (small_repos["web360"].root, sha1)})
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        res_def = CatalogResource(db_path=str(tmp_path / "c.duckdb"), datasets=["web360"])
        assert res_def.source_uri("web360") == "hf://datasets/nvidia/vipe-web360"
        with instance_for_test() as instance:
            key = AssetKey(["hf_dataset_meta", "web360"])
            result = materialize(ASSETS, instance=instance, resources=_res(res_def),
                                 selection=[key, *BUILD_KEYS])
            assert result.success and latest_data_version(instance, key) == sha1
            (sched,) = SCHEDULES
            with build_schedule_context(instance=instance, resources={"catalog_db": res_def}) as ctx:
                tick = sched.evaluate_tick(ctx)
            assert not tick.run_requests and sha1[:12] in tick.skip_message
            hub.repos["nvidia/vipe-web360"] = (small_repos["web360"].root, sha2)  # a new commit on main
            with build_schedule_context(instance=instance, resources={"catalog_db": res_def}) as ctx:
                tick = sched.evaluate_tick(ctx)
            (req,) = tick.run_requests
            assert set(req.asset_selection) == {key, *BUILD_KEYS}
        assert query_arrow(res_def.db_path, "SELECT data_version FROM datasets WHERE name = 'web360'"
                           ).to_pylist() == [{"data_version": sha1}]
    finally:
        hub.close()
