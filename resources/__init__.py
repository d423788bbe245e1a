"""Dagster ConfigurableResources (artifact store, compute device, model hub, catalog DB)."""
