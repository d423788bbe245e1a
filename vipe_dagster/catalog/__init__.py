"""Annotation catalog: released ViPE datasets (hf://, s3://, local mirrors), shard downloads, DuckDB catalog.

- ``sources``: dataset registry and ``DatasetSource`` (one fsspec code path for every location)
- ``download``: resumable, checksummed, safe shard download and extraction
- ``stats``: per-video statistics and file inventory of ViPE-format artifact folders
- ``dbt_project``: runs the dbt project ``dbt_like_sql/`` (dbt-core + dbt-duckdb, offline) and caches its parse
- ``build``: atomic catalog build and read-only queries
"""
