"""Dagster composition root: ``defs`` for ``dagster dev -w workspace.yaml`` / ``dagster asset materialize``.

Every public module of ``assets_defs`` may expose ``ASSETS``, ``CHECKS``, ``JOBS``, ``SCHEDULES`` and
``SENSORS`` lists, every public module of ``resources`` a ``RESOURCES`` dict of defaults; both packages
are discovered, so a new asset family is one new module in each. This is the only engine-side module
that imports dagster (besides the CLI's ``ui``/``demo`` hand-offs).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg

from assets_defs._executor import deploy_executor

from .errors import ConfigError

ASSET_PACKAGES = ("assets_defs",)
RESOURCE_PACKAGES = ("resources",)
_LISTS = ("ASSETS", "CHECKS", "JOBS", "SCHEDULES", "SENSORS")


def iter_modules(package: str) -> Iterator[ModuleType]:
    """Public submodules of ``package`` (names not starting with ``_``), in name order."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")


def collect() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {k: [] for k in _LISTS}
    for package in ASSET_PACKAGES:
        for mod in iter_modules(package):
            for name in _LISTS:
                out[name].extend(getattr(mod, name, None) or [])
    return out


def default_resources() -> dict[str, Any]:
    found: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for package in RESOURCE_PACKAGES:
        for mod in iter_modules(package):
            factory = getattr(mod, "resources", None)
            declared = factory() if callable(factory) else (getattr(mod, "RESOURCES", None) or {})
            for key, res in declared.items():
                if key in found:
                    raise ConfigError(f"resource key {key!r} is defined by both {owner[key]} and {mod.__name__}")
                found[key], owner[key] = res, mod.__name__
    return found


def build_definitions(resources: Mapping[str, Any] | None = None, with_executor: bool = True) -> dg.Definitions:
    """All discovered definitions; ``resources`` replaces defaults key by key (tests, demo).

    The executor comes from the environment (``VIPE_EXECUTOR``, see ``docs/deploy.md``); ``with_executor=False``
    leaves it out so a caller can add assets first and then attach one (``assets_defs._executor``).
    """
    parts = collect()
    res = default_resources()
    res.update(resources or {})
    return dg.Definitions(
        assets=parts["ASSETS"],
        asset_checks=parts["CHECKS"],
        jobs=parts["JOBS"],
        schedules=parts["SCHEDULES"],
        sensors=parts["SENSORS"],
        resources=res,
        executor=deploy_executor(parts["ASSETS"]) if with_executor else None,
    )


_DEFS: dg.Definitions | None = None


def get_defs() -> dg.Definitions:
    """The code location's definitions, built on first use (``vipe_dagster.definitions:defs``).

    Nothing is read from the environment at import: the resource factories (``resources/*.py``), the executor
    (``VIPE_EXECUTOR``, ...) and the GPU/CPU placement tags read it when the definitions are first built, i.e.
    when the code location loads (a Dagster code server or run worker is one process with a fixed
    environment). :func:`build_definitions` builds a fresh copy from the environment of the moment."""
    global _DEFS
    if _DEFS is None:
        _DEFS = build_definitions()
    return _DEFS


def __getattr__(name: str) -> Any:
    if name == "defs":  # Dagster loads ``vipe_dagster.definitions:defs`` by attribute: built on first access
        return get_defs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------- local instance helpers
REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_INSTANCE_YAML = REPO_ROOT / "deployments" / "local" / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"


def ensure_dagster_home(path: str | os.PathLike | None = None) -> Path:
    """Resolve ``DAGSTER_HOME`` (argument > environment > ``./.dagster_home``), create it, put the local
    ``dagster.yaml`` (SQLite, queued runs, pools) there if it has none, and export it."""
    home = Path(path or os.environ.get("DAGSTER_HOME") or ".dagster_home").expanduser().absolute()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        if not LOCAL_INSTANCE_YAML.exists():
            raise ConfigError(f"{LOCAL_INSTANCE_YAML} is missing; cannot create {target}")
        shutil.copyfile(LOCAL_INSTANCE_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def apply_pool_limits(instance: dg.DagsterInstance, definitions: dg.Definitions | None = None) -> dict[str, int]:
    """Set the ``gpu`` pool's limit from the ``compute`` resource (number of GPUs, or 1 on CPU)."""
    from assets_defs._common import GPU_POOL

    compute = (definitions or get_defs()).resources.get("compute")
    limit = compute.pool_limit() if compute is not None else 1
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, limit)
    return {GPU_POOL: limit}
