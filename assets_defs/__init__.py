"""Dagster asset families. Every public module may expose ``ASSETS``, ``CHECKS``, ``JOBS``, ``SCHEDULES``
and ``SENSORS`` lists; ``vipe_dagster.definitions`` discovers them. Modules starting with ``_`` hold
shared helpers and are not discovered."""
