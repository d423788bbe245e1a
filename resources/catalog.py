"""``catalog_db``: where the annotation catalog lives and which dataset sources feed it; ``dbt``: the dbt CLI
of the catalog's dbt project (``dbt_like_sql/``)."""


import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource
from pydantic import Field

from vipe_dagster.catalog.build import (
    BuildResult,
    RawTables,
    build_catalog,
    default_db_path,
    publish_staged,
    query,
    query_arrow,
    stage_raw,
    staging_dir,
    writer_lock,
)
from vipe_dagster.catalog.dbt_project import WORK_DB_NAME, dbt_executable
from vipe_dagster.catalog.dbt_project import project_dir as dbt_project_dir
from vipe_dagster.catalog.sources import DATASETS, DatasetSource, open_source

_SHA = re.compile(r"^[0-9a-f]{40}$")


class CatalogResource(ConfigurableResource):
    """The DuckDB annotation catalog and its inputs.

    ``sources`` maps a dataset name (``dynpose-100kpp``, ``wild-sdg-1m``, ``web360``) to a URI; a dataset not
    listed is read from the Hub (``hf://datasets/nvidia/vipe-...``). ``revisions`` pins Hub revisions.
    ``datasets`` selects which released datasets are catalogued (default: all three).
    """

    db_path: str = Field(default_factory=default_db_path, description="DuckDB catalog file")
    datasets: list[str] = Field(default_factory=lambda: list(DATASETS), description="datasets to catalogue")
    sources: dict[str, str] = Field(default_factory=dict, description="dataset name -> URI of a mirror")
    revisions: dict[str, str] = Field(default_factory=dict, description="dataset name -> pinned Hub revision")
    artifact_roots: list[str] = Field(default_factory=list, description="ViPE-format folders to catalogue")
    list_payload: bool = Field(default=True, description="list payload/ tars of every source at build time")
    depth_frames: int = Field(default=8, description="depth frames sampled per video for statistics")
    lock_timeout_s: float = Field(default=600.0, description="how long a build waits for another build's lock")

    def source_uri(self, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        return self.sources.get(name) or DATASETS[name].hf_uri

    def open_source(self, name: str, revision: str | None = None) -> DatasetSource:
        """Open a dataset; ``revision`` (a Hub sha from a materialization) pins hf:// sources only."""
        uri = self.source_uri(name)
        rev = revision if (revision and uri.startswith("hf://") and _SHA.match(revision)) else None
        rev = rev or (self.revisions.get(name) if uri.startswith("hf://") else None)
        return open_source(uri, revision=rev, dataset=name)

    def build(self, revisions: dict[str, str] | None = None) -> BuildResult:
        srcs = [self.open_source(n, (revisions or {}).get(n)) for n in self.datasets]
        return build_catalog(srcs, self.artifact_roots, self.db_path, list_payload=self.list_payload,
                             depth_frames=self.depth_frames, lock_timeout=self.lock_timeout_s)

    # the staged build of the Dagster assets: raw tables -> dbt build (assets_defs/catalog.py) -> publish
    @property
    def staging_db_path(self) -> Path:
        return staging_dir(self.db_path) / WORK_DB_NAME

    def stage(self, revisions: dict[str, str] | None = None) -> RawTables:
        srcs = [self.open_source(n, (revisions or {}).get(n)) for n in self.datasets]
        return stage_raw(srcs, self.artifact_roots, self.db_path, list_payload=self.list_payload,
                         depth_frames=self.depth_frames, lock_timeout=self.lock_timeout_s)

    def writer_lock(self) -> AbstractContextManager[None]:
        return writer_lock(self.db_path, self.lock_timeout_s)

    def publish(self) -> tuple[dict[str, int], str]:
        return publish_staged(self.db_path, self.lock_timeout_s)

    def query(self, sql: str, fmt: str = "table") -> Any:
        return query(self.db_path, sql, fmt)

    def query_arrow(self, sql: str):
        return query_arrow(self.db_path, sql)


def dbt_resource() -> DbtCliResource:
    """The dbt CLI of the catalog project (profiles.yml inside it; no packages, no usage statistics)."""
    project = str(dbt_project_dir())
    return DbtCliResource(project_dir=project, profiles_dir=project, dbt_executable=dbt_executable())


def resources() -> dict[str, ConfigurableResource]:
    """Default resources; ``VIPE_CATALOG_DB`` (the default ``db_path``) is read when the definitions are built."""
    return {"catalog_db": CatalogResource(), "dbt": dbt_resource()}


def __getattr__(name: str):
    if name == "RESOURCES":  # the older module-level dict, built on access (no environment read at import)
        return resources()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
