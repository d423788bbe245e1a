"""Annotation catalog: released ViPE datasets (hf://, s3://, local mirrors), shard downloads, DuckDB catalog.

- ``sources``: dataset registry and ``DatasetSource`` (one fsspec code path for every location)
- ``download``: resumable, checksummed, safe shard download and extraction
- ``stats``: per-video statistics and file inventory of ViPE-format artifact folders
- ``sqlmodels``: the dbt-like runner of ``dbt_like_sql/`` (ref(), topological order, data tests)
- ``build``: atomic catalog build and read-only queries
"""
