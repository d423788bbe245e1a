"""Job snapshots are the same in every process, so the UI re-executes a run without a version warning.

The UI matches a run to the loaded job by the job's snapshot id; a run launched by one process (``vipe-dagster
demo``, a sensor, the daemon) and re-executed from the webserver's code server is only recognized when both
processes compute the same id. Python salts ``hash()`` of strings per process, so anything in the definitions
ordered by a set iteration changes the id with ``PYTHONHASHSEED`` (it did: the two blocking checks of
pose_trajectory, see assets_defs/pose.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dagster")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import json
from vipe_dagster.definitions import build_definitions
defs = build_definitions()
jobs = {j.name: j.get_job_snapshot_id() for j in defs.resolve_all_job_defs()}
print("SNAPSHOTS " + json.dumps(jobs, sort_keys=True))
"""


def _snapshot_ids(seed: int, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(REPO),
           "DAGSTER_HOME": str(tmp_path / f"home{seed}")}
    (tmp_path / f"home{seed}").mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("SNAPSHOTS ")][-1]
    return json.loads(line.removeprefix("SNAPSHOTS "))


def test_job_snapshot_ids_do_not_depend_on_the_hash_seed(tmp_path):
    a, b = _snapshot_ids(1, tmp_path), _snapshot_ids(2, tmp_path)
    assert "video_pipeline" in a and "catalog_refresh" in a
    assert a == b, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
