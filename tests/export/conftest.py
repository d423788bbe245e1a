"""Fixtures for the export tests: synthetic scenes with ground truth (see colmap_scene.py)."""

from __future__ import annotations

import pytest
from colmap_scene import Scene, make_scene


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="session")
def scene_nosparse(tmp_path_factory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene_nosparse"), name="released", with_sparse=False,
                      fx=240.0, fy=252.0, seed=1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def export_moto_endpoint():
    """A moto S3 server on loopback for the S3 export tests of this folder; stopped afterwards."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def export_s3_bucket(export_moto_endpoint, monkeypatch):
    """A fresh bucket, with the environment pointing vipe_dagster.io.fs (fsspec/s3fs) at moto."""
    import uuid

    import s3fs

    monkeypatch.setenv("VIPE_S3_ENDPOINT_URL", export_moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    bucket = f"colmap-{uuid.uuid4().hex[:10]}"
    fsys = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": export_moto_endpoint})
    fsys.mkdir(bucket)
    s3fs.S3FileSystem.clear_instance_cache()
    yield fsys, bucket
    s3fs.S3FileSystem.clear_instance_cache()
