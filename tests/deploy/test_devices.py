"""GPU pinning of ``gpu``-pool steps (``vipe_dagster.devices``) with a faked device count: no GPU needed."""

from __future__ import annotations

import contextlib

import pytest

from vipe_dagster import devices
from vipe_dagster.devices import claim_device, preferred_index
from vipe_dagster.errors import ConfigError


def _claim(key, n, env, calls):
    return claim_device(key, count=n, environ=env, set_current=calls.append)


def test_concurrent_steps_get_distinct_devices_round_robin(tmp_path):
    env = {"VIPE_GPU_LOCK_DIR": str(tmp_path)}
    calls: list[int] = []
    keys = [f"take{i}__cam0{i % 4 + 1}" for i in range(4)]
    with contextlib.ExitStack() as stack:
        got = [stack.enter_context(_claim(k, 4, env, calls)) for k in keys]
        assert sorted(c.index for c in got) == [0, 1, 2, 3]  # four steps held at once: one GPU each
        assert [c.device for c in got] == [f"cuda:{c.index}" for c in got]
        assert all(c.how == "claimed" for c in got)
        # a fifth concurrent step (pool limit above the device count) shares its key's own device
        with _claim("extra", 4, env, calls) as c5:
            assert c5.how == "shared" and c5.index == preferred_index("extra", 4)
    assert calls[:4] == [c.index for c in got]
    # released: the first key gets its preferred device again, stable across calls
    with _claim(keys[0], 4, env, calls) as c:
        assert c.index == preferred_index(keys[0], 4) and c.how == "claimed"


def test_preferred_index_spreads_keys_over_devices():
    idx = [preferred_index(f"take_{i:03d}__cam01", 4) for i in range(64)]
    assert set(idx) == {0, 1, 2, 3}
    assert idx == [preferred_index(f"take_{i:03d}__cam01", 4) for i in range(64)]


def test_deployment_device_wins_and_is_checked(tmp_path):
    calls: list[int] = []
    env = {"VIPE_CUDA_DEVICE": "cuda:2", "VIPE_GPU_LOCK_DIR": str(tmp_path)}
    with _claim("k", 4, env, calls) as c:
        assert (c.device, c.how) == ("cuda:2", "env") and calls == [2]
    with pytest.raises(ConfigError, match="VIPE_CUDA_DEVICE='5'.*4 CUDA device"):
        with _claim("k", 4, {"VIPE_CUDA_DEVICE": "5"}, calls):
            pass
    with pytest.raises(ConfigError, match="VIPE_CUDA_DEVICE='gpu1'"):
        with _claim("k", 4, {"VIPE_CUDA_DEVICE": "gpu1"}, calls):
            pass


def test_single_device_and_cpu():
    calls: list[int] = []
    with _claim("k", 1, {}, calls) as c:
        assert (c.device, c.how) == ("cuda:0", "single")
    with _claim("k", 0, {}, calls) as c:
        assert c.device == "cpu"
    with claim_device("k", want_cuda=False, count=4, environ={}, set_current=calls.append) as c:
        assert c.device == "cpu"
    assert calls == [0]


def test_compute_resource_pins_steps_by_partition_key(monkeypatch, tmp_path):
    from resources.compute import ComputeResource

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 3)
    current: list[int] = []
    monkeypatch.setattr(devices, "set_current_device", current.append)
    monkeypatch.setenv("VIPE_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("VIPE_CUDA_DEVICE", raising=False)
    res = ComputeResource(device="auto")
    assert res.resolved_device() == "cuda" and res.pool_limit() == 3
    with res.step_device("a") as d1, res.step_device("b") as d2, res.step_device("c") as d3:
        assert sorted((d1, d2, d3)) == ["cuda:0", "cuda:1", "cuda:2"]
    assert current == [int(d[-1]) for d in (d1, d2, d3)]
    with ComputeResource(device="cpu").step_device("a") as d:
        assert d == "cpu"


def test_engine_modules_do_not_import_dagster(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import sys; import vipe_dagster.devices, vipe_dagster.deploy_config, vipe_dagster.egoexo.takes, "
            "vipe_dagster.egoexo.camera_check as c; "
            f"c.check_camera_ids({str(tmp_path)!r}, 't', 'cam01', 0, 1); "
            "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                       env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"
