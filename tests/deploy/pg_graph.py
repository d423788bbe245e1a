"""A small per-video asset graph for the PostgreSQL concurrency test (imported by the run processes).

Shape of the real video pipeline: ``frames`` (CPU) -> ``pose`` (pool ``gpu``) and ``preview`` (CPU, in
parallel with ``pose``) -> ``summary``. Each step does a little real numpy work so runs overlap. The executor
is the project's ``deploy_executor`` (``VIPE_EXECUTOR``/``VIPE_MAX_CONCURRENT`` from the environment).

Run one partition: ``python -c "import pg_graph; pg_graph.main()" <partition> <result.json>`` with this
folder on ``PYTHONPATH`` and ``DAGSTER_HOME`` naming the instance.
"""

import json
import sys
import time

import dagster as dg
import numpy as np

from assets_defs._common import GPU_POOL
from assets_defs._executor import deploy_executor

VIDEOS = dg.DynamicPartitionsDefinition(name="videos")


def _work(key: str, salt: int, seconds: float) -> float:
    rng = np.random.default_rng(abs(hash((key, salt))) % (2**32))
    a = rng.standard_normal((96, 96)).astype(np.float32)
    t0 = time.perf_counter()
    acc = 0.0
    while time.perf_counter() - t0 < seconds:
        acc += float(np.linalg.norm(a @ a.T))
    return acc


@dg.asset(partitions_def=VIDEOS)
def frames(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"norm": _work(context.partition_key, 0, 0.1)})


@dg.asset(partitions_def=VIDEOS, deps=[frames], pool=GPU_POOL)
def pose(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    time.sleep(0.3)  # waiting on the accelerator: the slot is held, the CPU is free
    return dg.MaterializeResult(metadata={"norm": _work(context.partition_key, 1, 0.05)})


@dg.asset(partitions_def=VIDEOS, deps=[frames])
def preview(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"norm": _work(context.partition_key, 2, 0.1)})


@dg.asset(partitions_def=VIDEOS, deps=[pose, preview])
def summary(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partition": context.partition_key})


ASSETS = [frames, pose, preview, summary]


def get_job() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=ASSETS,
        jobs=[dg.define_asset_job("deploy_pg_job", partitions_def=VIDEOS)],
        executor=deploy_executor(ASSETS),
    )
    return defs.resolve_job_def("deploy_pg_job")


def main() -> None:
    partition, out = sys.argv[1], sys.argv[2]
    instance = dg.DagsterInstance.get()
    try:
        result = dg.execute_job(dg.reconstructable(get_job), instance=instance, raise_on_error=False,
                                tags={"dagster/partition": partition, "vipe/test": "postgres-parallel"})
        with open(out, "w") as f:
            json.dump({"partition": partition, "run_id": result.run_id, "success": result.success}, f)
    finally:
        instance.dispose()
