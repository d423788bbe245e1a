"""scripts/gpu_bench.sh in its CPU-only mode: it runs to completion, says "no CUDA", and the CPU side of every
check and measurement works (on a CUDA machine the same script compares CUDA with the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_bench.sh"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU-only mode (this machine has CUDA)")


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPT), "--quick", "--no-install", "--json", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_cpu_only_run_reports_no_cuda_and_exercises_every_check(tmp_path):
    proc, rep = _run(tmp_path, "--skip-infer")
    assert "no CUDA" in proc.stdout
    assert rep["cuda"] is False and rep["ok"] is True
    names = [c["name"] for c in rep["checks"]]
    assert len(names) == 4 and any("bundle adjustment" in n for n in names) and any("ego render" in n for n in names)
    # the CPU side of every check ran and agreed with itself (an error would show as status "error")
    assert all(c["status"] == "skipped" and "CPU side ran" in c["detail"] for c in rep["checks"]), rep["checks"]
    speed = {r["what"]: r for r in rep["speed"]}
    assert any("backend raster on cpu: render only" in w for w in speed)
    assert all("error" not in r and r["frames_per_s"] > 0 for r in rep["speed"]), rep["speed"]


@pytest.mark.slow
def test_cpu_only_run_measures_infer(tmp_path):
    proc, rep = _run(tmp_path, "--skip-render")
    infer = [r for r in rep["speed"] if r["what"].startswith("infer")]
    assert len(infer) == 1 and infer[0]["device"] == "cpu" and infer[0]["frames_per_s"] > 0, rep["speed"]
    assert "pose_s" in infer[0]["stages_s"]


def test_a_failing_check_fails_the_run(monkeypatch, capsys):
    """With a device given (here the CPU standing in for CUDA) a disagreeing check makes the run fail."""
    import io

    from vipe_dagster.eval import gpu_bench

    monkeypatch.setattr(gpu_bench, "check_ba", lambda device: gpu_bench.Check("bundle adjustment", "fail", "differs"))
    buf = io.StringIO()
    rep = gpu_bench.run(device="cpu", quick=True, skip_infer=True, skip_render=True, out=buf)
    assert rep["ok"] is False and "FAILED: bundle adjustment" in buf.getvalue()
    assert [c["status"] for c in rep["checks"]] == ["fail", "pass", "pass", "pass"]
