"""`vipe-dagster depth` command."""

from __future__ import annotations

import subprocess
import sys


def test_cli_static_camera_error_and_bad_model_flag(scene, inputs_only):
    res = scene(trajectory="fixed", scene="indoor", seed=2, moving_objects=1)
    store = inputs_only(res)
    cmd = [sys.executable, "-m", "vipe_dagster.cli", "depth", store.root, "--name", res.name]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "no parallax" in p.stderr and "--depth" not in p.stdout
    p = subprocess.run(cmd + ["--depth-model", "no-colon"], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "REPO_ID:FILENAME" in p.stderr
    assert not store.exists("depth", res.name)
