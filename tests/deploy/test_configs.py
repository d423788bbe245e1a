"""Consistency of the deployment files with each other and with the code (no Docker or cluster needed)."""

from __future__ import annotations

import importlib
import re
import tomllib

import yaml

from .conftest import DEPLOY, REPO, helm_user_code_env, helm_values


def _env_refs(node) -> set[str]:
    """Names in ``{env: NAME}`` sources of a Dagster instance YAML."""
    out: set[str] = set()
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            out.add(node["env"])
        for v in node.values():
            out |= _env_refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= _env_refs(v)
    return out


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose" / "docker-compose.yaml").read_text())


def _service_env(svc: dict) -> dict:
    env = svc.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_compose_services_and_gpu_reservation():
    c = _compose()
    services = c["services"]
    assert {"postgres", "pools", "user-code", "webserver", "daemon"} <= set(services)
    devices = services["user-code"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # only the user-code container (where runs execute) holds GPUs
    assert all("deploy" not in s for name, s in services.items() if name != "user-code")
    for name in ("webserver", "daemon", "user-code"):
        assert services[name]["depends_on"]["pools"]["condition"] == "service_completed_successfully"
    assert services["pools"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["pools"]["command"][:5] == ["dagster", "instance", "concurrency", "set", "gpu"]


def test_compose_gives_every_instance_variable_to_every_dagster_container():
    needed = _env_refs(yaml.safe_load((DEPLOY / "compose" / "dagster.yaml").read_text()))
    assert {"DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_COMPUTE_LOG_DIR"} <= needed
    services = _compose()["services"]
    for name in ("pools", "user-code", "webserver", "daemon"):
        env = _service_env(services[name])
        assert needed <= set(env), (name, needed - set(env))
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        mounts = [v.split(":")[:2] for v in services[name]["volumes"]]
        assert ["./dagster.yaml", "/opt/dagster/dagster_home/dagster.yaml"] in mounts, name
    # the database the instance points at is the one the postgres service creates
    pg = _service_env(services["postgres"])
    web = _service_env(services["webserver"])
    assert (web["DAGSTER_POSTGRES_USER"], web["DAGSTER_POSTGRES_DB"]) == (pg["POSTGRES_USER"], pg["POSTGRES_DB"])
    assert web["DAGSTER_POSTGRES_HOST"] == "postgres"


def test_compose_workspace_points_at_the_code_server():
    ws = yaml.safe_load((DEPLOY / "compose" / "workspace.yaml").read_text())
    grpc = ws["load_from"][0]["grpc_server"]
    cmd = _compose()["services"]["user-code"]["command"]
    assert grpc["host"] == "user-code"
    assert str(grpc["port"]) == cmd[cmd.index("--port") + 1]
    module, attr = cmd[cmd.index("--module-name") + 1], cmd[cmd.index("--attribute") + 1]
    assert module == "vipe_dagster.definitions" and attr == "defs"
    for svc in ("webserver", "daemon"):
        c = _compose()["services"][svc]["command"]
        assert c[c.index("--workspace") + 1] == "/opt/dagster/workspace.yaml"
    for p in (_compose()["services"]["user-code"]["build"]["dockerfile"],
              _compose()["services"]["pools"]["build"]["dockerfile"]):
        assert (REPO / p).is_file(), p


def test_code_location_named_by_the_deployments_imports():
    values = helm_values()
    args = values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"]
    module = importlib.import_module(args[args.index("--module-name") + 1])
    assert getattr(module, args[args.index("--attribute") + 1]) is not None


def test_helm_values_k8s_launcher_pools_postgres_s3():
    v = helm_values()
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["postgresql"]["enabled"] is False and v["postgresql"]["postgresqlHost"]
    assert v["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert v["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert v["computeLogManager"]["config"]["s3ComputeLogManager"]["bucket"]
    assert v["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    conc = v["concurrency"]
    assert conc["enabled"] is True
    assert conc["pools"]["granularity"] == "op" and conc["pools"]["defaultLimit"] >= 1
    # the chart refuses run limits in both places
    assert "maxConcurrentRuns" not in v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    dep = v["dagster-user-deployments"]["deployments"][0]
    assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
    env = helm_user_code_env()
    assert env["VIPE_EXECUTOR"] == "k8s"
    # services and run pods on CPU nodes; the GPU node label only in the GPU step placement
    assert dep["nodeSelector"] == v["dagsterWebserver"]["nodeSelector"] == v["dagsterDaemon"]["nodeSelector"]
    run_pod = v["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert run_pod["nodeSelector"] == dep["nodeSelector"]
    gpu_label = dict([env["VIPE_K8S_GPU_NODE_SELECTOR"].split("=", 1)])
    assert gpu_label != dep["nodeSelector"]


def test_helm_overlay_only_overrides_maps():
    base = helm_values()
    overlay = yaml.safe_load((DEPLOY / "helm" / "values-gpu-pool-4.yaml").read_text())

    def walk(o, b, path=""):
        for k, val in o.items():
            assert k in b, f"{path}{k} is not a key of values.yaml"
            assert not isinstance(val, list), f"{path}{k}: lists replace the base list in Helm"
            if isinstance(val, dict):
                walk(val, b[k], f"{path}{k}.")
    walk(overlay, base)
    assert overlay["concurrency"]["pools"]["defaultLimit"] > base["concurrency"]["pools"]["defaultLimit"]


def test_dockerfiles_match_the_project():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    requires = py["project"]["requires-python"]
    req = (REPO / "requirements.txt").read_text()
    torch_pin = re.search(r"^torch==(\S+)$", req, re.M).group(1)
    dagster_pin = re.search(r"^dagster==(\S+)$", req, re.M).group(1)
    aws_pin = re.search(r"^dagster-aws==(\S+)$", req, re.M).group(1)
    packages = [p.rstrip("*") for p in py["tool"]["setuptools"]["packages"]["find"]["include"]]
    for kind in ("cpu", "gpu"):
        text = (DEPLOY / "docker" / f"Dockerfile.{kind}").read_text()
        base = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.M)
        assert base, kind
        assert f">={base.group(1)}.{base.group(2)}" in requires
        assert f"torch=={torch_pin}" in text
        assert f"DAGSTER_LIB_VERSION={aws_pin}" in text and dagster_pin.startswith("1.")
        assert '"dagster-postgres==${DAGSTER_LIB_VERSION}"' in text and '"dagster-k8s==${DAGSTER_LIB_VERSION}"' in text
        for src in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M):
            for part in src.split():
                assert (REPO / part).exists(), (kind, part)
        ignore = (DEPLOY / "docker" / f"Dockerfile.{kind}.dockerignore").read_text().split()
        for pkg in packages:
            if (REPO / pkg).is_dir():
                assert f"!{pkg}" in ignore, (kind, pkg)
        assert "vipe_dagster.definitions" in text
    assert "download.pytorch.org/whl/cpu" in (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics" in (DEPLOY / "docker" / "Dockerfile.gpu").read_text()
