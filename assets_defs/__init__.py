"""Dagster assets, checks, sensors, schedules and jobs, one module per asset family."""
