"""Fixtures for the Dagster layer: small videos, temporary instances, a moto S3 server."""

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "dog-example.mp4"
BIN = Path(sys.executable).parent

warnings.filterwarnings("ignore", module="dagster")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_video(path: Path, n: int = 24, w: int = 160, h: int = 96, seed: int = 0, fps: float = 24.0) -> Path:
    """A textured image panning right by 2 px per frame, written as H.264 mp4."""
    from vipe_dagster.io import VideoWriter

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(h, w + 2 * n + 8, 3), dtype=np.uint8)
    with VideoWriter(str(path), fps=fps) as wr:
        for i in range(n):
            wr.add(np.ascontiguousarray(base[:, 2 * i: 2 * i + w]))
    return path


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A DAGSTER_HOME with the project's local dagster.yaml (SQLite, queued runs, pools)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deployments" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(dagster_home):
    import dagster as dg

    inst = dg.DagsterInstance.get()
    yield inst
    inst.dispose()


@pytest.fixture(scope="session")
def moto_server():
    """``moto_server`` on a free 127.0.0.1 port; yields its endpoint URL, stopped at the end."""
    exe = BIN / "moto_server"
    if not exe.exists():
        pytest.skip("moto_server is not installed")
    port = free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """Environment for s3fs against moto, and a fresh bucket; yields ``s3://bucket``."""
    monkeypatch.setenv("VIPE_S3_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    import uuid

    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"vipe-{uuid.uuid4().hex[:10]}"
    fsys = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": moto_server})
    fsys.mkdir(bucket)  # no region: us-east-1 LocationConstraint is rejected
    return f"s3://{bucket}"


@pytest.fixture(scope="session")
def video_maker():
    """``make_video(path, n, w, h, seed, fps)``: a small textured panning mp4."""
    return make_video


@pytest.fixture(scope="session")
def port_maker():
    return free_port
