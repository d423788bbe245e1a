"""Deployment settings read from the environment (no dagster import: the engine layer stays Dagster-free).

Which executor runs the steps of a run, and where the Kubernetes executor puts the steps of the ``gpu`` pool:

``VIPE_EXECUTOR``
    ``in_process`` (every step in the run process; debugging, tiny machines), ``multiprocess`` (one child
    process per step; the default on one machine), ``k8s`` (one Kubernetes Job per step; needs the
    ``dagster-k8s`` package) or ``auto`` (the default: ``k8s`` inside a Kubernetes pod when ``dagster-k8s``
    is importable, else ``multiprocess``).
``VIPE_MAX_CONCURRENT``
    Steps of one run that may execute at once (multiprocess: child processes, k8s: step pods). Default:
    Dagster's own (number of CPUs for multiprocess, unlimited for k8s). Global GPU limits are pools, not this.
``VIPE_MP_START_METHOD``
    How the multiprocess executor starts step processes: ``forkserver`` (default: a server process imports
    Dagster and the code location once and forks every step from it, so steps start in a fraction of the
    time) or ``spawn`` (a fresh interpreter per step; Dagster's own default).
``VIPE_K8S_GPU_LIMIT`` / ``VIPE_K8S_GPU_NODE_SELECTOR`` / ``VIPE_K8S_GPU_TOLERATIONS`` / ``VIPE_K8S_GPU_CONFIG``
    Placement of ``gpu``-pool steps (the same variables ``assets_defs._common.placement_tags`` reads). With
    the k8s executor a ``gpu`` step gets: ``nvidia.com/gpu`` request = limit ``VIPE_K8S_GPU_LIMIT`` (default
    1), node selector ``k=v,k2=v2`` (default none) and tolerations (JSON list; default: tolerate the
    ``nvidia.com/gpu`` taint that GKE/EKS/AKS GPU node pools carry), whether through the executor or the
    op tag ``placement_tags`` builds from the same variables.
    ``VIPE_K8S_GPU_CONFIG`` (JSON) replaces all of it verbatim.
``VIPE_K8S_NAMESPACE`` / ``VIPE_K8S_STEP_IMAGE``
    Namespace and image of the step Jobs (default: those of the run launcher / the run's code location).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

ExecutorKind = Literal["in_process", "multiprocess", "k8s"]
EXECUTOR_KINDS: tuple[str, ...] = ("in_process", "multiprocess", "k8s")
_ALIASES = {"inprocess": "in_process", "in-process": "in_process", "multi_process": "multiprocess",
            "kubernetes": "k8s", "k8s_job": "k8s"}

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_TOLERATIONS: list[dict[str, str]] = [
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
]


def dagster_k8s_available() -> bool:
    """True when the optional ``dagster-k8s`` package can be imported (it is not a hard requirement)."""
    return importlib.util.find_spec("dagster_k8s") is not None


def in_kubernetes(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a Kubernetes pod (the kubelet always injects ``KUBERNETES_SERVICE_HOST``)."""
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


@dataclass(frozen=True)
class ExecutorSettings:
    kind: ExecutorKind
    max_concurrent: int | None = None
    start_method: str = "forkserver"
    gpu_step_k8s_config: dict[str, Any] = field(default_factory=dict)
    namespace: str | None = None
    step_image: str | None = None


def _positive_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise ConfigError(f"environment variable {name}={raw!r}: expected a positive integer")
    return value


def gpu_step_k8s_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``dagster-k8s/config`` body for one ``gpu``-pool step (see the module docstring)."""
    env = os.environ if environ is None else environ
    raw = (env.get("VIPE_K8S_GPU_CONFIG") or "").strip()
    if raw:
        try:
            cfg = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"environment variable VIPE_K8S_GPU_CONFIG is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict):
            raise ConfigError("environment variable VIPE_K8S_GPU_CONFIG: expected a JSON object with keys like "
                              f"container_config/pod_spec_config, got {type(cfg).__name__}")
        return cfg
    limit = _positive_int(env, "VIPE_K8S_GPU_LIMIT") or 1
    pod: dict[str, Any] = {}
    selector = (env.get("VIPE_K8S_GPU_NODE_SELECTOR") or "").strip()
    if selector:
        pairs = [p.split("=", 1) for p in selector.split(",") if p.strip()]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise ConfigError("environment variable VIPE_K8S_GPU_NODE_SELECTOR: expected "
                              f"'key=value,key2=value2', got {selector!r}")
        pod["node_selector"] = {k.strip(): v.strip() for k, v in pairs}
    tol_raw = (env.get("VIPE_K8S_GPU_TOLERATIONS") or "").strip()
    if tol_raw:
        try:
            tolerations = json.loads(tol_raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"environment variable VIPE_K8S_GPU_TOLERATIONS is not valid JSON: {exc}") from None
        if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
            raise ConfigError("environment variable VIPE_K8S_GPU_TOLERATIONS: expected a JSON list of objects "
                              '(e.g. [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])')
    else:
        tolerations = [dict(t) for t in DEFAULT_GPU_TOLERATIONS]
    pod["tolerations"] = tolerations
    return {
        "container_config": {"resources": {"limits": {GPU_RESOURCE: str(limit)},
                                           "requests": {GPU_RESOURCE: str(limit)}}},
        "pod_spec_config": pod,
    }


def executor_settings(environ: Mapping[str, str] | None = None) -> ExecutorSettings:
    """Resolve ``VIPE_EXECUTOR`` and friends; raises ``ConfigError`` naming the variable on bad values."""
    env = os.environ if environ is None else environ
    raw = (env.get("VIPE_EXECUTOR") or "auto").strip().lower()
    kind = _ALIASES.get(raw, raw)
    if kind == "auto":
        kind = "k8s" if in_kubernetes(env) and dagster_k8s_available() else "multiprocess"
    if kind not in EXECUTOR_KINDS:
        raise ConfigError(f"environment variable VIPE_EXECUTOR={raw!r}: expected one of "
                          f"{', '.join(('auto', *EXECUTOR_KINDS))}")
    if kind == "k8s" and not dagster_k8s_available():
        raise ConfigError("environment variable VIPE_EXECUTOR=k8s needs the dagster-k8s package "
                          "(pip install dagster-k8s matching your dagster version)")
    max_concurrent = _positive_int(env, "VIPE_MAX_CONCURRENT")
    start = (env.get("VIPE_MP_START_METHOD") or "forkserver").strip().lower()
    if start not in ("forkserver", "spawn"):
        raise ConfigError(f"environment variable VIPE_MP_START_METHOD={start!r}: expected forkserver or spawn")
    if kind != "k8s":
        return ExecutorSettings(kind=kind, max_concurrent=max_concurrent,  # type: ignore[arg-type]
                                start_method=start)
    return ExecutorSettings(
        kind="k8s",
        max_concurrent=max_concurrent,
        gpu_step_k8s_config=gpu_step_k8s_config(env),
        namespace=(env.get("VIPE_K8S_NAMESPACE") or "").strip() or None,
        step_image=(env.get("VIPE_K8S_STEP_IMAGE") or "").strip() or None,
    )
