"""Dagster resources. Each module exposes ``RESOURCES: dict[str, resource]`` with its defaults;
``vipe_dagster.definitions`` discovers every public module of this package."""
