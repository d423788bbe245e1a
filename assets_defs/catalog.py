"""Dagster assets of the annotation catalog.

- ``hf_dataset_meta/<dataset>`` (one asset per released dataset): reads ``meta.parquet`` at the source's
  current revision; its **data version is the Hub revision sha** (or the mirror's ETag / content hash).
- ``catalog_raw/<table>`` (one multi-asset): reads the sources at the revisions the upstream assets recorded
  (Hub sources are pinned to those shas) and scans the artifact roots into the raw tables of the staging
  DuckDB file (``<catalog stem>.dbt/catalog.duckdb``).
- ``catalog/<model>``: the dbt models of ``dbt_like_sql/`` (dagster-dbt ``@dbt_assets``, ``dbt build`` on the
  staging file); every dbt data test is an asset check of its model (unique sequences, frame-count ranges,
  shard prefix consistency, ...).
- ``annotation_catalog``: publishes the staging file atomically over the catalog (raw tables dropped).
- checks on ``annotation_catalog``: schema of the published tables and a great-expectations suite.
- ``catalog_daily_refresh``: a daily schedule that resolves every source's current revision and requests a
  run only for datasets whose revision changed (``SkipReason`` when none did).
"""


import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    DataVersion,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    multi_asset,
    schedule,
)
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from resources.catalog import CatalogResource
from vipe_dagster.catalog.dbt_project import RAW_TABLES
from vipe_dagster.catalog.dbt_project import manifest_path as dbt_manifest_path
from vipe_dagster.catalog.dbt_project import project_dir as dbt_project_dir
from vipe_dagster.catalog.sources import DATASETS, DatasetSpec

from ._common import RETRY, classify_failures

log = logging.getLogger(__name__)

GROUP = "catalog"
META_PREFIX = "hf_dataset_meta"
RAW_SOURCE = "catalog_raw"  # the dbt source of the raw tables (dbt_like_sql/models/sources.yml)
DATA_VERSION_TAG = "dagster/data_version"

# tables and the columns downstream users rely on
REQUIRED_SCHEMA: dict[str, tuple[str, ...]] = {
    "datasets": ("name", "hf_repo", "prefix", "license", "data_version", "videos", "frames"),
    "shards": ("dataset", "tar_name", "attribute", "remote_path", "remote_bytes", "videos", "local_status",
               "checksum", "member_count"),
    "videos": ("sequence", "dataset", "tar_name", "num_frames", "youtube_link", "youtube_timestamp",
               "rgb_source", "annotation_source", "has_rgb", "has_pose", "has_depth"),
    "artifacts": ("root", "sequence", "attribute", "path", "frame_count", "validated", "frame_mismatch"),
    "video_stats": ("sequence", "dataset", "width", "height", "camera_type", "fx", "fy", "fov_x_deg",
                    "fov_y_deg", "fov_note", "path_length", "total_rotation_deg", "is_static", "depth_p05", "depth_p50",
                    "depth_p95", "invalid_depth_fraction"),
    "lineage": ("sequence", "manifest_path", "input_uri", "input_hash", "code_version", "scale"),
    "catalog_info": ("build_id", "built_at", "videos"),
}


def meta_key(spec: DatasetSpec) -> AssetKey:
    return AssetKey([META_PREFIX, spec.name.replace("-", "_")])


def _meta_asset(spec: DatasetSpec):
    @asset(
        key=meta_key(spec),
        group_name=GROUP,
        description=f"{spec.title} meta.parquet ({spec.hf_repo}, tar prefix {spec.prefix}, {spec.license}); "
                    "data version = Hub revision sha",
        kinds={"parquet"},
        metadata={"hf_repo": spec.hf_repo, "prefix": spec.prefix, "license": spec.license},
        retry_policy=RETRY,
    )
    def _meta(context: AssetExecutionContext, catalog_db: CatalogResource) -> MaterializeResult:
        with classify_failures(context):
            src = catalog_db.open_source(spec.name)
            meta = src.read_meta()
            version = src.data_version()
        shards = meta.get_column("tar_name").n_unique()
        frames = int(meta.get_column("num_frames").sum() or 0)
        context.log.info("%s @ %s: %d videos in %d shards", spec.name, version, meta.height, shards)
        return MaterializeResult(
            data_version=DataVersion(version),
            metadata={"revision": version, "source": src.uri, "videos": meta.height, "shards": shards,
                      "frames": frames, "expected_videos": spec.videos,
                      "num_frames_min": int(meta.get_column("num_frames").min() or 0),
                      "num_frames_max": int(meta.get_column("num_frames").max() or 0)},
        )

    return _meta


META_ASSETS = [_meta_asset(spec) for spec in DATASETS.values()]
META_KEYS = {spec.name: meta_key(spec) for spec in DATASETS.values()}


def latest_data_version(instance, key: AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return (event.asset_materialization.tags or {}).get(DATA_VERSION_TAG)


RAW_KEYS = {name: AssetKey([RAW_SOURCE, name]) for name in RAW_TABLES}


@multi_asset(
    specs=[AssetSpec(key, group_name=GROUP, deps=list(META_KEYS.values()), kinds={"duckdb"},
                     description=f"raw_{name}: raw input of the catalog's dbt models, gathered in Python "
                                 f"(vipe_dagster.catalog.build.gather_raw) into the staging DuckDB file")
           for name, key in RAW_KEYS.items()],
    name="catalog_raw",
    retry_policy=RETRY,
)
def catalog_raw(context: AssetExecutionContext, catalog_db: CatalogResource):
    """Reads the sources at the revisions the meta assets recorded (Hub sources pinned to those shas) and
    scans the artifact roots; the dbt models then build from these tables."""
    pinned = {}
    for name in catalog_db.datasets:
        version = latest_data_version(context.instance, META_KEYS[name])
        if version:
            pinned[name] = version
    with classify_failures(context):
        raw = catalog_db.stage(pinned)
    for name, key in RAW_KEYS.items():
        yield MaterializeResult(asset_key=key, metadata={
            "rows": raw.tables[name].height, "build_id": raw.build_id,
            "staging_db": MetadataValue.path(str(catalog_db.staging_db_path)),
            **({"data_versions": raw.data_versions} if name == "datasets" else {})})


class CatalogDbtTranslator(DagsterDbtTranslator):
    """dbt models as ``catalog/<model>`` in the catalog group; sources keep ``catalog_raw/<table>``."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return AssetKey([GROUP, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return GROUP


DBT_PROJECT = DbtProject(project_dir=dbt_project_dir(),
                         target_path=dbt_manifest_path().parent.relative_to(dbt_project_dir()))


@dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, name="catalog_dbt_models",
            dagster_dbt_translator=CatalogDbtTranslator(), retry_policy=RETRY)
def catalog_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, catalog_db: CatalogResource):
    """``dbt build`` of the selected models on the staging file: each model a table, each data test an
    asset check of its model; an error-severity failure stops the models downstream (and the publish)."""
    staging = catalog_db.staging_db_path
    if not staging.is_file():
        raise Failure(f"error: no staging catalog at {staging}; materialize the catalog_raw assets first")
    # dagster-dbt echoes every dbt event on stdout; the run log gets the structured events (materializations,
    # check evaluations) and a summary, dbt's full log stays in <staging folder>/target/dbt.log
    echo = io.StringIO()
    with catalog_db.writer_lock(), contextlib.redirect_stdout(echo):
        invocation = dbt.cli(["build", "--vars", json.dumps({"catalog_db": str(staging)})], context=context,
                             target_path=staging.parent / "target", raise_on_error=False)
        events = list(invocation.stream())
    yield from events
    lines = [ln.strip() for ln in echo.getvalue().splitlines() if ln.strip()]
    summary = next((ln for ln in reversed(lines) if ln.startswith("Done.")), lines[-1] if lines else "")
    context.log.info("dbt build on %s: %s", staging, summary)
    if not invocation.is_successful():
        failed = [ln for ln in lines if " FAIL " in ln or " ERROR " in ln or ln.startswith("Failure in")]
        raise Failure(f"error: dbt build of the catalog failed ({summary}): " + "; ".join(failed[:8]),
                      metadata={"dbt_log": MetadataValue.path(str(staging.parent / "target" / "dbt.log"))})


@asset(
    group_name=GROUP,
    deps=sorted(catalog_dbt_models.keys, key=lambda k: k.to_user_string()),
    kinds={"duckdb"},
    retry_policy=RETRY,
    description="DuckDB annotation catalog (datasets, shards, videos, artifacts, video_stats, lineage): the "
                "staging file that dbt built and tested, published atomically (raw tables dropped)",
)
def annotation_catalog(context: AssetExecutionContext, catalog_db: CatalogResource) -> MaterializeResult:
    with classify_failures(context):
        counts, build_id = catalog_db.publish()
    versions = {r["name"]: r["data_version"] for r in catalog_db.query_arrow(
        "SELECT name, data_version FROM datasets WHERE name <> 'local'").to_pylist()}
    digest = hashlib.sha256("|".join(f"{k}={v}" for k, v in sorted(versions.items())).encode())
    md: dict[str, Any] = {"db_path": MetadataValue.path(catalog_db.db_path), "build_id": build_id,
                          "data_versions": versions, **{f"rows_{k}": v for k, v in counts.items()}}
    return MaterializeResult(metadata=md, data_version=DataVersion(digest.hexdigest()[:16] + "-" + build_id))


# ---------------------------------------------------------------------- checks
@asset_check(asset=annotation_catalog, blocking=True, description="every catalog table has its required columns")
def catalog_schema(catalog_db: CatalogResource) -> AssetCheckResult:
    cols = catalog_db.query_arrow("SELECT table_name, column_name FROM duckdb_columns()").to_pylist()
    have: dict[str, set[str]] = {}
    for r in cols:
        have.setdefault(r["table_name"], set()).add(r["column_name"])
    missing = {t: sorted(set(c) - have.get(t, set())) for t, c in REQUIRED_SCHEMA.items()}
    missing = {t: c for t, c in missing.items() if c or t not in have}
    return AssetCheckResult(passed=not missing, metadata={"missing": MetadataValue.json(missing),
                                                          "tables": sorted(have)})


@asset_check(asset=annotation_catalog, description="great-expectations suite over videos and video_stats")
def catalog_expectations(catalog_db: CatalogResource) -> AssetCheckResult:
    import great_expectations as gx

    from vipe_dagster.quality import gx_context

    ctx = gx_context()
    source = ctx.data_sources.add_pandas("catalog")
    outcomes: dict[str, Any] = {}
    suites = {
        "videos": ("SELECT sequence, dataset, tar_name, num_frames FROM videos", [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="sequence"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="sequence"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="dataset"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="num_frames", min_value=1, max_value=100000),
            gx.expectations.ExpectColumnValuesToMatchRegex(column="tar_name", regex=r"^[a-z0-9]{4}-[0-9a-f]{8}$"),
        ]),
        "video_stats": ("SELECT fov_x_deg, fov_y_deg, invalid_depth_fraction, path_length FROM video_stats", [
            gx.expectations.ExpectColumnValuesToBeBetween(column="fov_x_deg", min_value=0, max_value=360),
            gx.expectations.ExpectColumnValuesToBeBetween(column="fov_y_deg", min_value=0, max_value=360),
            gx.expectations.ExpectColumnValuesToBeBetween(column="invalid_depth_fraction", min_value=0, max_value=1),
            gx.expectations.ExpectColumnValuesToBeBetween(column="path_length", min_value=0),
        ]),
    }
    passed = True
    for table, (sql, expectations) in suites.items():
        df = catalog_db.query_arrow(sql).to_pandas()  # great-expectations validates pandas frames
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"catalog_{table}"))
        for e in expectations:
            suite.add_expectation(e)
        batch_def = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe(f"{table}_all")
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"vd_{table}", data=batch_def, suite=suite))
        result = vd.run(batch_parameters={"dataframe": df})
        passed &= bool(result.success)
        outcomes[table] = {r.expectation_config.type: bool(r.success) for r in result.results}
        outcomes[table]["rows"] = len(df)
    return AssetCheckResult(passed=passed, metadata={"results": MetadataValue.json(outcomes)})


# the assets a rebuild runs after the changed meta assets: raw tables, dbt models, publish
BUILD_KEYS = [*RAW_KEYS.values(), *sorted(catalog_dbt_models.keys, key=lambda k: k.to_user_string()),
              annotation_catalog.key]


# ---------------------------------------------------------------------- job and schedule
catalog_refresh_job = define_asset_job(
    "catalog_refresh", selection=AssetSelection.groups(GROUP),
    description="read dataset metadata at the current revisions and rebuild the annotation catalog")


@schedule(cron_schedule="0 4 * * *", job=catalog_refresh_job, name="catalog_daily_refresh",
          default_status=DefaultScheduleStatus.STOPPED,
          description="daily: rebuild the catalog only when a dataset revision changed")
def catalog_daily_refresh(context: ScheduleEvaluationContext, catalog_db: CatalogResource):
    changed, unchanged = {}, {}
    for name in catalog_db.datasets:
        current = catalog_db.open_source(name).data_version()
        last = latest_data_version(context.instance, META_KEYS[name])
        (unchanged if current == last else changed)[name] = current
    if not changed:
        return SkipReason("dataset revisions unchanged: " + ", ".join(f"{k}@{v[:12]}" for k, v in unchanged.items()))
    run_key = "catalog-" + hashlib.sha256(repr(sorted(changed.items())).encode()).hexdigest()[:16]
    return RunRequest(run_key=run_key, asset_selection=[META_KEYS[n] for n in changed] + BUILD_KEYS,
                      tags={"catalog/changed": ",".join(sorted(changed))})


ASSETS = [*META_ASSETS, catalog_raw, catalog_dbt_models, annotation_catalog]
CHECKS = [catalog_schema, catalog_expectations]
SCHEDULES = [catalog_daily_refresh]
JOBS = [catalog_refresh_job]
