"""A private PostgreSQL server for the deployment tests (Debian ``postgresql`` binaries, 127.0.0.1, free port).

PostgreSQL refuses to run as root, so as root (CI) the cluster is created and run as the ``postgres``
system user when it exists, else ``nobody``, in a directory of its own under the system temp dir. The server
is stopped and its files removed at the end of the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deployments"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path | None:
    env = os.environ.get("VIPE_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@pytest.fixture(scope="session")
def postgres_server():
    """``dict(host, port, user, password, db)`` of a running private PostgreSQL cluster."""
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is needed for the PostgreSQL instance")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install the Debian package postgresql")
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="vipe-pg-"))
    data = base / "data"
    prefix: list[str] = []
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root without runuser (util-linux): cannot start PostgreSQL as another user")
        prefix = [runuser, "-u", user.pw_name, "--"]

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], cwd=base, capture_output=True, text=True, timeout=120)

    init = run([str(bindir / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust", "-E", "UTF8",
                "--no-sync", "--locale=C"])
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
    port = free_port()
    opts = f"-h 127.0.0.1 -p {port} -k {base} -c max_connections=300 -c fsync=off -c full_page_writes=off"
    start = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", opts,
                 "-w", "-t", "60", "start"])
    try:
        if start.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            pytest.fail(f"pg_ctl start failed ({start.returncode}): {start.stderr[-1500:]} {log[-1500:]}")
        created = run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"])
        if created.returncode != 0:
            pytest.fail(f"createdb failed: {created.stderr[-1500:]}")
        deadline = time.monotonic() + 30
        while True:  # accept TCP connections before handing the server out
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield {"host": "127.0.0.1", "port": port, "user": "dagster", "password": "", "db": "dagster",
               "log": base / "server.log"}
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def postgres_env(server: dict, db: str | None = None) -> dict[str, str]:
    """Environment variables read by deployments/compose/dagster.yaml."""
    return {
        "DAGSTER_POSTGRES_HOST": server["host"],
        "DAGSTER_POSTGRES_PORT": str(server["port"]),
        "DAGSTER_POSTGRES_USER": server["user"],
        "DAGSTER_POSTGRES_PASSWORD": server["password"],
        "DAGSTER_POSTGRES_DB": db or server["db"],
    }


def compose_instance_env(server: dict, prefix: str, tmp_path: Path, monkeypatch) -> str:
    """A fresh database on ``server`` and the environment deployments/compose/dagster.yaml reads (set with
    ``monkeypatch``: connection variables and the compute-log folder under ``tmp_path``); returns its name."""
    import uuid

    db = create_database(server, f"{prefix}_{uuid.uuid4().hex[:8]}")
    for k, v in postgres_env(server, db).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_DIR", str(tmp_path / "logs"))
    return db


def create_database(server: dict, name: str) -> str:
    """A fresh database on ``server`` (one per test keeps tests independent)."""
    import psycopg2

    conn = psycopg2.connect(host=server["host"], port=server["port"], user=server["user"], dbname=server["db"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def helm_values() -> dict:
    import yaml

    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def helm_user_code_env() -> dict[str, str]:
    """Environment of the user-code deployment (and, via includeConfigInLaunchedRuns, of run/step pods)."""
    dep = helm_values()["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in dep["env"]}
    for item in helm_values()["runLauncher"]["config"]["k8sRunLauncher"].get("envVars", []):
        k, _, v = item.partition("=")
        env.setdefault(k, v)
    return env
