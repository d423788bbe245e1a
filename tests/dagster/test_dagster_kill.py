"""SIGKILL a `dagster asset materialize` run during ingest: no partial artifact; a re-run succeeds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vipe_dagster.io import ArtifactStore, probe
from vipe_dagster.registry import VideoRegistry

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def _materialize_cmd(key: str) -> list[str]:
    return [str(DAGSTER), "asset", "materialize", "-m", "vipe_dagster.definitions", "-a", "defs",
            "-d", str(REPO), "--select", "processed_video", "--partition", key]


@pytest.mark.slow
def test_killed_run_leaves_no_partial_artifact_and_rerun_succeeds(tmp_path, dagster_home, video_maker):
    root = tmp_path / "artifacts"
    # long enough that ingest (decode + H.264 encode at source size) is still running when we kill it
    video = video_maker(tmp_path / "long.mp4", n=360, w=640, h=360, seed=3)
    store = ArtifactStore(str(root))
    entry, _ = VideoRegistry(store).register(str(video), long_side=0)
    import dagster as dg

    inst = dg.DagsterInstance.get()
    inst.add_dynamic_partitions("videos", [entry.key])
    inst.dispose()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "VIPE_ARTIFACT_ROOT": str(root),
           "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    final = Path(store.path("rgb", entry.key))
    rgb_dir = final.parent

    proc = subprocess.Popen(_materialize_cmd(entry.key), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    temp = []
    try:
        while time.time() < deadline and proc.poll() is None:
            temp = [p for p in rgb_dir.glob(".tmp-*")] if rgb_dir.exists() else []
            if temp and temp[0].stat().st_size > 0:
                break
            time.sleep(0.02)
        assert temp, f"ingest never started writing (rc={proc.poll()}): {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists(), "a killed run must not leave the rgb artifact"
    assert not Path(store.path("manifest", entry.key)).exists()
    assert entry.key not in store.sequences()

    done = subprocess.run(_materialize_cmd(entry.key), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = probe(str(final))
    assert (info.num_frames, info.width, info.height) == (360, 640, 360)
    assert not list(rgb_dir.glob(".tmp-*")), "the re-run removes the temporary file the killed run left"
    assert store.read_manifest(entry.key)["frames"]["count"] == 360
