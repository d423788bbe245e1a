"""Shared fixtures: repository paths, the sample video, and a moto S3 server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
# background clouds of ego renders: in-memory cache only, never the user's ~/.cache (tests that need the disk
# cache give their own folder)
os.environ.setdefault("VIPE_CLOUD_CACHE", "off")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = REPO / "samples" / "dog-example.mp4"


@pytest.fixture(scope="session")
def sample_video() -> Path:
    assert SAMPLE_VIDEO.exists(), f"missing bundled sample {SAMPLE_VIDEO}"
    return SAMPLE_VIDEO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 endpoint (moto server) on loopback for the whole session; stopped at the end."""
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}") from None
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start within 30 s")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    """Environment pointing vipe_dagster.io.fs (fsspec/s3fs) at the moto server; yields the endpoint URL."""
    import s3fs

    monkeypatch.setenv("VIPE_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    yield moto_endpoint
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_bucket(s3_env):
    """A fresh bucket on the moto server (environment set as in ``s3_env``); yields ``(s3fs, bucket)``."""
    import s3fs

    bucket = f"vipe-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": s3_env})
    fs.mkdir(bucket)  # no region: a us-east-1 LocationConstraint is rejected by S3
    s3fs.S3FileSystem.clear_instance_cache()
    yield fs, bucket


@pytest.fixture
def s3_root(s3_bucket):
    """``s3://<fresh bucket>/artifacts`` with the environment pointing at the moto server."""
    return f"s3://{s3_bucket[1]}/artifacts"
