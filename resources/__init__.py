"""Dagster resources. Each module exposes ``resources() -> dict[str, resource]`` (or a ``RESOURCES`` dict)
with its defaults; ``vipe_dagster.definitions`` discovers every public module of this package and calls the
factory when it builds the definitions, so the environment (``VIPE_ARTIFACT_ROOT``, ``VIPE_DEVICE``, ...) is
read then, never at import."""
