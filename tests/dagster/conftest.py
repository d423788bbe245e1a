"""Fixtures for the Dagster layer: small videos, temporary instances, a moto S3 server."""

import os
import shutil
import socket
import sys
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


@pytest.fixture
def s3_uri(s3_bucket):
    """``s3://<fresh bucket>`` on the shared moto server (tests/conftest.py), environment set."""
    return f"s3://{s3_bucket[1]}"


@pytest.fixture(scope="session")
def video_maker():
    """``make_video(path, n, w, h, seed, fps)``: a small textured panning mp4."""
    return make_video


@pytest.fixture(scope="session")
def port_maker():
    return free_port
