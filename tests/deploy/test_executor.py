"""Executor selection by environment, and GPU placement of ``gpu``-pool steps under the k8s executor.

The placement check builds the real Kubernetes Job objects with ``dagster_k8s`` (its step handler's container
context and ``construct_dagster_k8s_job``) from the resolved job's execution plan: no cluster is needed.
"""

from __future__ import annotations

import warnings

import pytest

from vipe_dagster.deploy_config import executor_settings, gpu_step_k8s_config
from vipe_dagster.errors import ConfigError

from .conftest import helm_user_code_env

warnings.filterwarnings("ignore", module="dagster")

K8S_ENV = {
    "VIPE_EXECUTOR": "k8s",
    "VIPE_K8S_GPU_LIMIT": "2",
    "VIPE_K8S_GPU_NODE_SELECTOR": "cloud.google.com/gke-accelerator=nvidia-l4, vipe/pool=gpu",
    "VIPE_K8S_GPU_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},'
                                ' {"key": "vipe/gpu-only", "operator": "Equal", "value": "true",'
                                ' "effect": "NoExecute"}]',
}


def test_settings_choose_executor_from_environment():
    assert executor_settings({"VIPE_EXECUTOR": "in_process"}).kind == "in_process"
    assert executor_settings({"VIPE_EXECUTOR": "In-Process"}).kind == "in_process"
    s = executor_settings({"VIPE_EXECUTOR": "multiprocess", "VIPE_MAX_CONCURRENT": "3"})
    assert (s.kind, s.max_concurrent) == ("multiprocess", 3)
    # auto outside Kubernetes: multiprocess, whatever is installed
    assert executor_settings({}).kind == "multiprocess"


def test_settings_reject_bad_values_naming_the_variable():
    with pytest.raises(ConfigError, match="VIPE_EXECUTOR='celery'"):
        executor_settings({"VIPE_EXECUTOR": "celery"})
    with pytest.raises(ConfigError, match="VIPE_MAX_CONCURRENT='0'"):
        executor_settings({"VIPE_MAX_CONCURRENT": "0"})
    with pytest.raises(ConfigError, match="VIPE_MAX_CONCURRENT='two'"):
        executor_settings({"VIPE_MAX_CONCURRENT": "two"})
    with pytest.raises(ConfigError, match="VIPE_MP_START_METHOD='fork'"):
        executor_settings({"VIPE_MP_START_METHOD": "fork"})
    with pytest.raises(ConfigError, match="VIPE_K8S_GPU_NODE_SELECTOR"):
        gpu_step_k8s_config({"VIPE_K8S_GPU_NODE_SELECTOR": "gpu"})
    with pytest.raises(ConfigError, match="VIPE_K8S_GPU_TOLERATIONS"):
        gpu_step_k8s_config({"VIPE_K8S_GPU_TOLERATIONS": '{"key": "x"}'})
    with pytest.raises(ConfigError, match="VIPE_K8S_GPU_CONFIG"):
        gpu_step_k8s_config({"VIPE_K8S_GPU_CONFIG": "[1, 2"})


def test_k8s_without_dagster_k8s_is_a_config_error(monkeypatch):
    import vipe_dagster.deploy_config as dc

    monkeypatch.setattr(dc, "dagster_k8s_available", lambda: False)
    with pytest.raises(ConfigError, match="dagster-k8s"):
        dc.executor_settings({"VIPE_EXECUTOR": "k8s"})
    # auto inside a pod falls back to multiprocess when dagster-k8s is missing
    assert dc.executor_settings({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).kind == "multiprocess"


def test_gpu_step_defaults_tolerate_the_gpu_taint():
    cfg = gpu_step_k8s_config({})
    assert cfg["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert cfg["pod_spec_config"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "node_selector" not in cfg["pod_spec_config"]


def _resolved_config(executor_def) -> dict:
    """The configuration a ``.configured`` executor definition runs with."""
    value = executor_def.config_schema.resolve_config({}).value
    return value.get("config", value)


def _definitions(environ):
    import dagster as dg

    from assets_defs._common import GPU_POOL, VIDEOS
    from assets_defs._executor import with_deploy_executor
    from assets_defs.video import processed_video
    from vipe_dagster.definitions import build_definitions

    # stand-ins for the engine's GPU assets (pool "gpu"): one relies on the executor's placement, one
    # carries its own dagster-k8s/config tag, which must win unchanged
    @dg.asset(partitions_def=VIDEOS, deps=[processed_video], pool=GPU_POOL, group_name="deploy_test")
    def gpu_pose() -> None:
        return None

    own = {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "4"}}}}
    import json

    @dg.asset(partitions_def=VIDEOS, deps=[gpu_pose], pool=GPU_POOL, group_name="deploy_test",
              op_tags={"dagster-k8s/config": json.dumps(own)})
    def gpu_depth() -> None:
        return None

    from assets_defs.pose import slam_pose  # the engine's real GPU asset

    job = dg.define_asset_job("deploy_test_job", selection=dg.AssetSelection.assets(
        processed_video, slam_pose, gpu_pose, gpu_depth), partitions_def=VIDEOS)
    base = dg.Definitions.merge(build_definitions(with_executor=False), dg.Definitions(assets=[gpu_pose, gpu_depth], jobs=[job]))
    return with_deploy_executor(base, environ)


def test_local_executors_resolve_on_the_real_jobs():
    defs = _definitions({"VIPE_EXECUTOR": "in_process"})
    assert defs.resolve_job_def("video_pipeline").executor_def.name == "in_process"
    defs = _definitions({"VIPE_EXECUTOR": "multiprocess", "VIPE_MAX_CONCURRENT": "2"})
    ex = defs.resolve_job_def("video_pipeline").executor_def
    assert ex.name == "multiprocess"
    assert _resolved_config(ex)["max_concurrent"] == 2
    assert _resolved_config(ex)["start_method"] == {"forkserver": {}}
    ex = _definitions({"VIPE_EXECUTOR": "multiprocess", "VIPE_MP_START_METHOD": "spawn"}).resolve_job_def(
        "video_pipeline").executor_def
    assert _resolved_config(ex)["start_method"] == {"spawn": {}}


def _step_jobs(defs, tmp_path):
    """Kubernetes Job objects dagster_k8s would create for each step of ``deploy_test_job``."""
    from types import SimpleNamespace

    from dagster._core.execution.api import create_execution_plan
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.executor import K8sStepHandler
    from dagster_k8s.job import construct_dagster_k8s_job

    job_def = defs.resolve_job_def("deploy_test_job")
    assert job_def.executor_def.name == "k8s"
    exc_cfg = _resolved_config(job_def.executor_def)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        "clusters: [{name: t, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: t, user: {token: x}}]\ncontexts: [{name: t, context: {cluster: t, user: t}}]\n")
    handler = K8sStepHandler(image="vipe-dagster-gpu:test", container_context=K8sContainerContext(),
                             load_incluster_config=False, kubeconfig_file=str(kubeconfig),
                             per_step_k8s_config=exc_cfg["per_step_k8s_config"])
    # what the Helm chart's K8sRunLauncher passes on to step jobs (only these fields are read here)
    launcher = SimpleNamespace(job_image=None, dagster_home="/opt/dagster/dagster_home",
                               instance_config_map="dagster-instance",
                               postgres_password_secret="dagster-postgresql-secret")
    plan = create_execution_plan(job_def)
    jobs = {}
    for step in plan.get_all_steps_in_topo_order():
        ctx = SimpleNamespace(
            execute_step_args=SimpleNamespace(step_keys_to_execute=[step.key]),
            dagster_run=SimpleNamespace(job_code_origin=None, tags={}),
            instance=SimpleNamespace(run_launcher=None),
            step_tags={step.key: step.tags},
            get_step_context=lambda key, s=step: SimpleNamespace(step=s),
        )
        container_context = handler._get_container_context(ctx)
        job_config = container_context.get_k8s_job_config("vipe-dagster-gpu:test", launcher)
        jobs[step.key] = (step, construct_dagster_k8s_job(
            job_config=job_config, args=["dagster", "api", "execute_step"], job_name=f"step-{step.key}",
            user_defined_k8s_config=container_context.run_k8s_config, pod_name=f"step-{step.key}",
            component="step_worker"))
    return exc_cfg, jobs


def test_gpu_pool_steps_get_gpu_placement_under_k8s(tmp_path):
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is optional; install it to test k8s placement")
    defs = _definitions(K8S_ENV)
    exc_cfg, jobs = _step_jobs(defs, tmp_path)
    # gpu-pool ops without their own tag are configured by the executor, nothing else
    per_step = exc_cfg["per_step_k8s_config"]
    assert "gpu_pose" in per_step and "gpu_depth" not in per_step and "processed_video" not in per_step
    assert all(step.pool == "gpu" for step, _ in (jobs[k] for k in per_step if k in jobs))

    step, job = jobs["gpu_pose"]
    assert step.pool == "gpu"
    pod = job.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "2"}
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4", "vipe/pool": "gpu"}
    tol = [(t.key, t.operator, t.value, t.effect) for t in pod.tolerations]
    assert tol == [("nvidia.com/gpu", "Exists", None, "NoSchedule"), ("vipe/gpu-only", "Equal", "true", "NoExecute")]

    step, job = jobs["slam_pose"]  # the real SLAM asset (pool gpu)
    assert step.pool == "gpu"
    pod = job.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "2"}
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4", "vipe/pool": "gpu"}

    step, job = jobs["gpu_depth"]  # explicit op tag: 4 GPUs, no executor defaults mixed in
    assert step.pool == "gpu"
    pod = job.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "4"}
    assert not pod.tolerations and not pod.node_selector

    step, job = jobs["processed_video"]  # CPU step: no GPU, no GPU node pool
    pod = job.spec.template.spec
    assert not (pod.containers[0].resources and pod.containers[0].resources.limits
                and "nvidia.com/gpu" in pod.containers[0].resources.limits)
    assert not pod.tolerations and not pod.node_selector


def test_helm_values_place_gpu_steps_on_the_gpu_node_pool(tmp_path):
    """The environment deployments/helm/values.yaml gives the user code selects the k8s executor and puts
    gpu-pool steps on the labelled GPU nodes, CPU steps on the CPU nodes."""
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is optional; install it to test k8s placement")
    env = helm_user_code_env()
    assert executor_settings(env).kind == "k8s"
    _, jobs = _step_jobs(_definitions(env), tmp_path)
    pod = jobs["gpu_pose"][1].spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"vipe.dev/pool": "gpu"}
    assert [(t.key, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "NoSchedule")]
    pod = jobs["slam_pose"][1].spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"vipe.dev/pool": "gpu"}


def test_real_gpu_pool_assets_all_get_placement():
    """Whatever GPU assets the engine defines (pool 'gpu'), each is placed on a GPU node under k8s."""
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is optional; install it to test k8s placement")
    from assets_defs._executor import K8S_CONFIG_TAG, pool_ops
    from vipe_dagster.definitions import build_definitions

    defs = _definitions(K8S_ENV)
    exc_cfg = _resolved_config(defs.resolve_job_def("video_pipeline").executor_def)
    real = pool_ops(build_definitions().assets or [])
    for name, op in real.items():
        if K8S_CONFIG_TAG in (op.tags or {}):
            assert "nvidia.com/gpu" in op.tags[K8S_CONFIG_TAG], name
        else:
            limits = exc_cfg["per_step_k8s_config"][name]["container_config"]["resources"]["limits"]
            assert limits == {"nvidia.com/gpu": "2"}, name


_REAL_GPU_STEPS = r"""
import json, os
os.environ.update({"VIPE_EXECUTOR": "k8s", "VIPE_K8S_GPU_LIMIT": "1",
                   "VIPE_K8S_GPU_NODE_SELECTOR": "vipe.dev/pool=gpu"})
os.environ.pop("VIPE_K8S_GPU_TOLERATIONS", None)
os.environ.pop("VIPE_K8S_GPU_CONFIG", None)
from assets_defs._executor import K8S_CONFIG_TAG, gpu_per_step_k8s_config, pool_ops
from vipe_dagster.definitions import build_definitions
from vipe_dagster.deploy_config import gpu_step_k8s_config

assets = build_definitions().assets
per = gpu_per_step_k8s_config(assets, gpu_step_k8s_config())
out = {}
for name, op in pool_ops(assets).items():
    tag = (op.tags or {}).get(K8S_CONFIG_TAG)
    cfg = per.get(name) or (json.loads(tag) if isinstance(tag, str) else tag) or {}
    out[name] = cfg.get("pod_spec_config", {}).get("tolerations")
print("RESULT" + json.dumps(out))
"""


def test_documented_k8s_variables_keep_the_gpu_toleration_on_real_gpu_steps(tmp_path):
    """With only VIPE_K8S_GPU_LIMIT / _NODE_SELECTOR in the process environment (as the docs show), the engine's
    real gpu-pool steps still tolerate the nvidia.com/gpu taint. The assets are built in a fresh interpreter
    because op tags are evaluated when the asset modules are imported."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "DAGSTER_HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-c", _REAL_GPU_STEPS], capture_output=True, text=True, env=env,
                       cwd=root, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    tol = json.loads(p.stdout.split("RESULT", 1)[1])
    assert {"slam_pose", "depth_maps", "ego_render"} <= set(tol)
    for name, t in tol.items():
        assert t == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], name
