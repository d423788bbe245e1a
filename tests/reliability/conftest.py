"""Fixtures of the reliability suite: a small real result of the sample video, a synthetic Ego-Exo4D take,
an S3 server that checks credentials, and an environment without any AWS credentials."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rel_helpers import SAMPLE, cli


@pytest.fixture(scope="session")
def dog_result(tmp_path_factory) -> Path:
    """A real result of the sample video (frames 0-15 at 128 px, every stage) made once by the CLI."""
    root = tmp_path_factory.mktemp("dog") / "res"
    run = cli("infer", SAMPLE, "-o", root, "--end_frame", "15", "--long_side", "128")
    assert run.rc == 0, run.err[-3000:]
    return root


@pytest.fixture
def dog(dog_result, tmp_path) -> Path:
    """A private copy of the sample result."""
    dst = tmp_path / "res"
    shutil.copytree(dog_result, dst)
    return dst


@pytest.fixture(scope="session")
def egoexo_take(tmp_path_factory):
    from vipe_dagster.synth.egoexo_take import generate_take

    return generate_take(str(tmp_path_factory.mktemp("take")), num_frames=4, resolution=96)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_auth_endpoint():
    """An S3 server that checks credentials (moto with IAM auth on): every key it does not know is refused."""
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto_server (auth) did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def no_aws_env(monkeypatch, tmp_path):
    """No credentials anywhere (environment, ~/.aws files, instance metadata): what a fresh machine has."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "VIPE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch
