"""The run executor, chosen by the deployment's environment (``vipe_dagster.deploy_config``).

* ``in_process`` / ``multiprocess``: Dagster's own executors (``VIPE_MAX_CONCURRENT`` caps child processes,
  ``VIPE_MP_START_METHOD`` picks forkserver (default) or spawn). The multiprocess configuration is fixed by
  the environment, so the launchpad does not offer executor settings.
* ``k8s``: ``dagster_k8s.k8s_job_executor`` (only imported when selected; ``dagster-k8s`` is optional). Every
  step becomes a Kubernetes Job; steps of assets in pool ``gpu`` that carry no ``dagster-k8s/config`` op tag
  of their own get the GPU placement (``nvidia.com/gpu`` limit, node selector, tolerations) through the
  executor's ``per_step_k8s_config``, so a new GPU asset only has to say ``pool=GPU_POOL``.

How many GPU steps run at once across all runs is the instance's ``gpu`` pool limit (``concurrency.pools``
in dagster.yaml / the Helm values), not the executor: steps wait for a pool slot before their pod is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from vipe_dagster.deploy_config import ExecutorSettings, executor_settings

from ._common import GPU_POOL

K8S_CONFIG_TAG = "dagster-k8s/config"


def _op_defs(assets_def: Any) -> Iterable[dg.OpDefinition]:
    node = getattr(assets_def, "node_def", None)
    if node is None:
        return []
    if isinstance(node, dg.OpDefinition):
        return [node]
    return list(node.iterate_op_defs())


def pool_ops(assets: Iterable[Any], pool: str = GPU_POOL) -> dict[str, dg.OpDefinition]:
    """Op name -> op of every asset (or asset check) op that claims ``pool``."""
    out: dict[str, dg.OpDefinition] = {}
    for a in assets:
        for op in _op_defs(a):
            if getattr(op, "pool", None) == pool:
                out[op.name] = op
    return out


def gpu_per_step_k8s_config(assets: Iterable[Any], step_config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``per_step_k8s_config`` for the k8s executor: GPU placement for every ``gpu``-pool op that has no
    ``dagster-k8s/config`` tag of its own (an explicit tag on the asset wins and is not duplicated)."""
    return {name: dict(step_config) for name, op in sorted(pool_ops(assets).items())
            if K8S_CONFIG_TAG not in (op.tags or {})}


def build_executor(settings: ExecutorSettings, assets: Iterable[Any] = ()) -> dg.ExecutorDefinition:
    if settings.kind == "in_process":
        return dg.in_process_executor
    if settings.kind == "multiprocess":
        mp: dict[str, Any] = {"start_method": {settings.start_method: {}}}
        if settings.max_concurrent:
            mp["max_concurrent"] = settings.max_concurrent
        return dg.multiprocess_executor.configured(mp, name="multiprocess")
    from dagster_k8s import k8s_job_executor  # optional dependency, checked by executor_settings

    cfg: dict[str, Any] = {"per_step_k8s_config": gpu_per_step_k8s_config(assets, settings.gpu_step_k8s_config)}
    if settings.max_concurrent:
        cfg["max_concurrent"] = settings.max_concurrent
    if settings.namespace:
        cfg["job_namespace"] = settings.namespace
    if settings.step_image:
        cfg["job_image"] = settings.step_image
    return k8s_job_executor.configured(cfg, name="k8s")


def deploy_executor(assets: Iterable[Any], environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor for ``dg.Definitions(executor=...)`` given the discovered assets and the environment."""
    assets = list(assets)
    return build_executor(executor_settings(environ), assets)


def with_deploy_executor(defs: dg.Definitions, environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """``defs`` plus the environment's executor (unchanged when ``defs`` already names one)."""
    if defs.executor is not None:
        return defs
    return dg.Definitions.merge(defs, dg.Definitions(executor=deploy_executor(defs.assets or [], environ)))
