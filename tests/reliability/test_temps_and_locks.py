"""Temporary files of killed runs are cleaned (issue 21, item 6) and writers of one sequence are serialised
by a lock (item 7), tested with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import REPO, SAMPLE, assert_clean_error, cli

from vipe_dagster.io import ArtifactStore, fs
from vipe_dagster.io.exr import decode_depth_exr, encode_depth_exr
from vipe_dagster.io.locks import BusyError, lock_uri, sequence_lock

ENV = {**os.environ, "PYOPENGL_PLATFORM": "egl", "PYTHONPATH": str(REPO)}
SEQ = "dog-example"


def _spawn(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vipe_dagster.cli", *map(str, args)], env={**ENV, **kw},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) first:\n{proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------- locks
def test_two_infer_runs_on_one_output_are_serialised(tmp_path):
    out = tmp_path / "out"
    lock = Path(fs.get_fs(lock_uri(str(out), SEQ))[1])
    first = _spawn("infer", SAMPLE, "-o", out, "--end_frame", "23", "--long_side", "128", "--pipeline",
                   "pose_only")
    try:
        _wait_for(lock.exists, first)
        holder = json.loads(lock.read_text() or "{}")
        loser = cli("infer", SAMPLE, "-o", out, "--end_frame", "11", "--long_side", "128")
        line = assert_clean_error(loser, "busy: another run", f"pid {first.pid} on host", "infer started",
                                  str(lock), f"sequence '{SEQ}'")
        assert holder.get("pid") == first.pid and holder["started"] in line
        waiter = _spawn("infer", SAMPLE, "-o", out, "--end_frame", "11", "--long_side", "128", "--pipeline",
                        "pose_only", "--wait", "600")
        assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
        assert waiter.wait(timeout=600) == 0, waiter.stderr.read()[-2000:]
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
    store = ArtifactStore(str(out))
    rep = store.check_set(SEQ)
    assert rep.ok and rep.counts["pose"] == 12  # the waiting run went second and its set is complete
    assert not lock.exists() and not lock.parent.exists()  # released and cleaned up


def test_lock_is_reentrant_and_released_on_kill(tmp_path):
    root = str(tmp_path / "out")
    with sequence_lock(root, "s"), sequence_lock(root, "s"):  # infer -> ingest in one process
        pass
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from vipe_dagster.io.locks import sequence_lock\n"
        f"with sequence_lock({root!r}, 's', 'test holder'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n")], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"busy: another run \(pid {holder.pid} on host .*test holder"):
            with sequence_lock(root, "s"):
                pass
        holder.send_signal(signal.SIGKILL)  # the OS releases a flock with its holder
        holder.wait()
        with sequence_lock(root, "s", wait=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()


def test_s3_lock_conditional_put(s3_root):
    s3_vars = {k: v for k, v in os.environ.items() if k.startswith(("AWS", "VIPE"))}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from vipe_dagster.io.locks import sequence_lock\n"
        f"with sequence_lock({s3_root!r}, 's', 'test holder'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n")], env={**ENV, **s3_vars}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"pid {holder.pid} .*\.vipe-locks/s\.lock"):
            with sequence_lock(s3_root, "s"):
                pass
        # a killed holder on this host: its lock object is taken over
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with sequence_lock(s3_root, "s"):
            assert fs.exists(lock_uri(s3_root, "s"))
        assert not fs.exists(lock_uri(s3_root, "s"))
    finally:
        if holder.poll() is None:
            holder.kill()


def test_s3_lock_of_another_host_is_respected_until_it_expires(s3_root):
    uri = lock_uri(s3_root, "s")
    info = {"pid": 1, "host": "elsewhere", "started": "2030-01-01T00:00:00+00:00", "purpose": "infer",
            "expires": time.time() + 60}
    fs.write_text(uri, json.dumps(info))
    with pytest.raises(BusyError, match="pid 1 on host elsewhere"):
        with sequence_lock(s3_root, "s"):
            pass
    fs.write_text(uri, json.dumps({**info, "expires": time.time() - 1}))  # its heartbeat stopped
    with sequence_lock(s3_root, "s"):
        pass


# ---------------------------------------------------------------------- temporary files
def test_killed_infer_leftovers_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    proc = _spawn("infer", SAMPLE, "-o", out, "--end_frame", "47", "--long_side", "128")
    try:
        _wait_for(lambda: (out / "depth").exists() and any((out / "depth").glob(".tmp-*.zip")), proc,
                  timeout=300)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    left = sorted(p.name for p in out.rglob(".tmp-*"))
    assert left, "the kill left the depth stage's temporary zip"
    run = cli("infer", SAMPLE, "-o", out, "--end_frame", "7", "--long_side", "128", "--pipeline", "pose_only")
    assert run.rc == 0, run.err[-2000:]
    assert sorted(p.name for p in out.rglob(".tmp-*")) == []


def test_killed_render_stage_folder_is_removed_by_the_next_render(tmp_path, egoexo_take):
    out = tmp_path / "renders"
    args = ["render-ego", "--input_dir", egoexo_take.vipe_dir, "--out_dir", out, "--meta_json_path",
            egoexo_take.meta_json, "--resolution", "64"]
    dead = _dead_pid()
    stage_parent = out / Path(egoexo_take.vipe_dir).parts[-2] / "cam01"  # <out>/<take>/<cam>/
    stage_parent.mkdir(parents=True)
    stale = stage_parent / f".tmp-test_output_pts1.5-{dead}-0123abcd-xyz"
    stale.mkdir()
    (stale / "frame_000000.png").write_bytes(b"partial")
    run = cli(*args)
    assert run.rc == 0, run.err[-2000:]
    assert not stale.exists()
    assert [p.name for p in stage_parent.iterdir()] == ["test_output_pts1.5"]


def test_killed_catalog_build_leftovers_are_removed(tmp_path, dog_result):
    db = tmp_path / "c.duckdb"
    dead = _dead_pid()
    work = tmp_path / f".tmp-catalog-c-{dead}-0123abcd-x1"
    work.mkdir()
    (work / "meta.parquet").write_bytes(b"partial")
    tmp_db = tmp_path / f".tmp-c-{dead}-89abcdef.duckdb"
    tmp_db.write_bytes(b"partial")
    other_live = tmp_path / f".tmp-catalog-other-{os.getpid()}-0123abcd-x2"  # a live build of another catalog
    other_live.mkdir()
    assert cli("catalog", "build", "--artifacts", dog_result, "--db", db).rc == 0
    assert not work.exists() and not tmp_db.exists() and other_live.exists()


def test_system_temp_leftovers_of_dead_runs_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = _dead_pid()
    dead_file = tmp_path / f".tmp-vipe-{dead}-0123abcdxyz.zip"
    dead_file.write_bytes(b"x")
    live_file = tmp_path / f".tmp-vipe-{os.getpid()}-0123abcdxyz.zip"
    live_file.write_bytes(b"x")
    unrelated = tmp_path / "tmpabc.exr"
    unrelated.write_bytes(b"x")
    removed = fs.sweep_system_temps()
    assert removed == [str(dead_file)]
    assert live_file.exists() and unrelated.exists()


def test_sweep_rules(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    names = {
        f".tmp-seq-{dead}-0123abcd.npz": False,  # writer gone
        f".tmp-other-{live}-0123abcd.npz": True,  # a live writer of another sequence
        f".tmp-seq_manifest-{live}-0123abcd.json": True,  # our own live file
        "seq.npz": True,  # not a temp
    }
    for n in names:
        (tmp_path / n).write_bytes(b"")
    old = tmp_path / ".tmp-seq-legacy.npz"  # no pid in the name, older than the lock holder
    old.write_bytes(b"")
    os.utime(old, (time.time() - 100, time.time() - 100))
    fs.sweep_stale_temps(tmp_path, older_than=time.time() - 10, stems=("seq",))
    for n, keep in names.items():
        assert (tmp_path / n).exists() == keep, n
    assert not old.exists()


def test_exr_codec_uses_no_temporary_files(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    d = np.random.default_rng(0).uniform(0.5, 9.0, (31, 17)).astype(np.float32)
    back = decode_depth_exr(encode_depth_exr(d))
    np.testing.assert_allclose(back, d.astype(np.float16).astype(np.float32))
    with pytest.raises(Exception, match="not a readable OpenEXR file"):
        decode_depth_exr(b"garbage", "x.zip:00000.exr")
    assert list(tmp_path.iterdir()) == []


def test_failed_writes_leave_no_temporary_files(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(RuntimeError):
        with store.depth_writer("s") as w:
            w.add(np.ones((4, 4), np.float32))
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.rglob(".tmp-*")) == [] and not store.exists("depth", "s")
