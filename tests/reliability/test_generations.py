"""One generation per artifact set (issue 21, item 2): a killed re-run never gets paired with the old run.

The audit's case: frames 0-15 completed, then a re-run for frames 60-75 was killed after ingest, leaving rgb
of 60-75 beside poses of 0-15; to-colmap warned and exited 0, render-ego and the catalog accepted the set.
Here the two disk states such a kill can leave are rebuilt exactly (and once by a real ``kill -9``), every
consumer is shown to refuse them, and a clean re-run is shown to complete.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from rel_helpers import REPO, SAMPLE, assert_clean_error, cli

from vipe_dagster.io import ArtifactStore

SEQ = "dog-example"


def _second_run(tmp_path: Path) -> Path:
    """rgb + manifest of a re-run for frames 60-75, as ingest writes them."""
    other = tmp_path / "rerun"
    run = cli("ingest", SAMPLE, "-o", other, "--start_frame", "60", "--end_frame", "75", "--long_side", "128")
    assert run.rc == 0, run.err
    return other


def _killed_after_rgb(dog: Path, other: Path) -> None:
    """Killed right after the new rgb was renamed into place, before the new record was published."""
    shutil.copy2(other / "rgb" / f"{SEQ}.mp4", dog / "rgb" / f"{SEQ}.mp4")


def _killed_after_publish(dog: Path, other: Path) -> None:
    """Killed after the new record was published, before the old generation's files were removed."""
    _killed_after_rgb(dog, other)
    shutil.copy2(other / "vipe" / f"{SEQ}_manifest.json", dog / "vipe" / f"{SEQ}_manifest.json")


def _generations(dog: Path, other: Path) -> tuple[str, str]:
    old = json.loads((dog / "vipe" / f"{SEQ}_manifest.json").read_text())["generation"]["id"]
    new = json.loads((other / "vipe" / f"{SEQ}_manifest.json").read_text())["generation"]["id"]
    assert old != new
    return old, new


def _catalog_row(dog: Path, db: Path) -> dict:
    run = cli("catalog", "build", "--artifacts", dog, "--db", db)
    assert run.rc == 0, run.err
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM video_stats WHERE sequence = '{SEQ}'")
        return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    finally:
        con.close()


@pytest.mark.parametrize("state", [_killed_after_rgb, _killed_after_publish])
def test_every_consumer_refuses_a_mixed_set(dog, tmp_path, state):
    other = _second_run(tmp_path)
    old, new = _generations(dog, other)
    state(dog, other)
    # COLMAP export: the audit saw a warning and rc 0
    line = assert_clean_error(cli("to-colmap", dog, "--sequence", SEQ), "belongs to generation", "re-run")
    assert old in line and new in line
    assert not (dog / "colmap").exists()
    # dense depth on the mixed inputs
    line = assert_clean_error(cli("depth", dog), "generation")
    assert old in line and new in line
    # the visualisation video (the viewer's frame source)
    assert_clean_error(cli("visualize", dog, "--write_video"), "generation")
    # validate reports the failed rule (its contract: rc 1 with FAIL lines)
    run = cli("validate", dog)
    assert run.rc == 1 and "Traceback" not in run.err
    assert any(ln.startswith(f"FAIL {SEQ} generation:") and old in ln and new in ln
               for ln in run.out.splitlines())
    # the catalog flags the set and computes no statistics from it
    row = _catalog_row(dog, tmp_path / "c.duckdb")
    assert row["generation_ok"] is False and "generation" in row["problems"]
    assert row["path_length"] is None and row["depth_p50"] is None


def test_render_ego_refuses_a_mixed_set(egoexo_take, tmp_path):
    cam = tmp_path / "t" / "cam01"
    shutil.copytree(egoexo_take.vipe_dir, cam)
    name = ArtifactStore(str(cam)).sequences()[0]
    frames = [f for _, f in ArtifactStore(str(cam)).open_rgb(name)]
    ArtifactStore(str(tmp_path / "elsewhere")).write_rgb(name, frames, fps=30)  # a second run's rgb
    shutil.copy2(tmp_path / "elsewhere" / "rgb" / f"{name}.mp4", cam / "rgb" / f"{name}.mp4")
    run = cli("render-ego", "--input_dir", cam, "--out_dir", tmp_path / "out", "--meta_json_path",
              egoexo_take.meta_json, "--resolution", "64")
    assert_clean_error(run, f"rgb/{name}.mp4 belongs to generation")
    assert not (tmp_path / "out").exists()


def test_clean_rerun_completes_and_replaces_the_old_set(dog, tmp_path):
    other = _second_run(tmp_path)
    _killed_after_publish(dog, other)
    run = cli("infer", SAMPLE, "-o", dog, "--start_frame", "60", "--end_frame", "75", "--long_side", "128",
              "--pipeline", "pose_only")
    assert run.rc == 0, run.err[-2000:]
    store = ArtifactStore(str(dog))
    rep = store.check_set(SEQ)
    assert rep.ok and rep.counts["rgb"] == rep.counts["pose"] == 16
    # the depth and masks of the old run do not survive a pose-only re-run: they belong to the old generation
    assert not store.exists("depth", SEQ) and not store.exists("mask", SEQ)
    assert store.read_manifest(SEQ)["frames"]["source_indices"][0] == 60
    run = cli("to-colmap", dog, "--sequence", SEQ)
    assert run.rc == 0, run.err[-2000:]
    run = cli("validate", dog, "--require", "rgb,pose,intrinsics,info")
    assert run.rc == 0, run.out
    assert _catalog_row(dog, tmp_path / "c.duckdb")["generation_ok"] is True


def test_real_kill_during_a_rerun_then_recovery(dog, tmp_path):
    """kill -9 a re-run as soon as its new generation is published: whatever it left is refused by the
    consumers, and no temporary file survives the next run."""
    man = dog / "vipe" / f"{SEQ}_manifest.json"
    old = json.loads(man.read_text())["generation"]["id"]
    env = {**os.environ, "PYOPENGL_PLATFORM": "egl", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "vipe_dagster.cli", "infer", str(SAMPLE), "-o", str(dog),
                             "--start_frame", "60", "--end_frame", "121", "--long_side", "128"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(man.read_text())["generation"]["id"] != old:
                    break
            except (ValueError, KeyError, FileNotFoundError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the re-run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    # whatever state the kill left (stale poses beside new rgb, or no poses yet), nothing pairs them
    run = cli("to-colmap", dog, "--sequence", SEQ)
    assert_clean_error(run)
    assert ("belongs to generation" in run.err) or ("missing pose file" in run.err)
    run = cli("infer", SAMPLE, "-o", dog, "--start_frame", "60", "--end_frame", "75", "--long_side", "128",
              "--pipeline", "pose_only")
    assert run.rc == 0, run.err[-2000:]
    assert ArtifactStore(str(dog)).check_set(SEQ).ok
    leftovers = [p for p in dog.rglob(".tmp-*")]
    assert leftovers == [], leftovers


def test_pose_rerun_invalidates_depth_computed_from_the_old_poses(dog):
    """Within one generation, depth records the poses it was computed from: new poses make it stale."""
    store = ArtifactStore(str(dog))
    c2w, inds = store.read_pose(SEQ)
    c2w[:, :3, 3] *= 2.0  # a pose stage re-run with another scale
    store.write_pose(SEQ, c2w, inds)
    run = cli("to-colmap", dog, "--sequence", SEQ, "--dense")
    assert_clean_error(run, f"depth/{SEQ}.zip was computed from another", f"pose/{SEQ}.npz",
                       "re-run the depth stage")


def test_a_file_replaced_from_elsewhere_is_refused(dog):
    store = ArtifactStore(str(dog))
    c2w, inds = store.read_pose(SEQ)
    buf = dog / "pose" / f"{SEQ}.npz"
    np.savez(buf, data=c2w, inds=inds)  # written by another tool: no stamp
    run = cli("to-colmap", dog, "--sequence", SEQ)
    assert_clean_error(run, f"pose/{SEQ}.npz carries no generation stamp",
                       "records it as written by generation")
