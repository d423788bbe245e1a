"""Start the Dagster UI (``dagster dev``: webserver + daemon) on this project's workspace.

Uses DAGSTER_HOME (default ``.dagster_home``, created with deployments/local/dagster.yaml), sets the
``gpu`` pool limit from the compute resource, then replaces this process with
``dagster dev -w workspace.yaml -h 127.0.0.1 -p PORT --log-level warning`` (Dagster's services print their
warnings and errors; their per-tick INFO lines stay out of the terminal, as for every third-party logger).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

NAME = "ui"
HELP = "open the Dagster UI (dagster dev) for the vipe-dagster asset graph"


def add_arguments(p):
    p.add_argument("--port", type=int, default=3000, help="webserver port")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--dagster-home", "--dagster_home", dest="dagster_home", default=None,
                   help="Dagster instance folder (default: $DAGSTER_HOME or .dagster_home)")
    p.add_argument("--dagster-log-level", "--dagster_log_level", dest="dagster_log_level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="log level of the Dagster services (webserver, daemon)")


def dagster_executable() -> str:
    local = Path(sys.executable).with_name("dagster")
    found = str(local) if local.exists() else shutil.which("dagster")
    if not found:
        from ..errors import ConfigError

        raise ConfigError("the 'dagster' executable was not found next to Python or on PATH; "
                          "install the 'dagster' extra (pip install -e '.[dagster]')")
    return found


def build_command(port: int, host: str, workspace: str, log_level: str = "warning") -> list[str]:
    return [dagster_executable(), "dev", "-w", workspace, "-h", host, "-p", str(int(port)), "--log-level", log_level]


# `dagster dev` is the command we chose knowingly (one process tree: webserver + daemon); Dagster marks it
# superseded by `dg dev` and would say so on every start. Only that message is silenced (a literal prefix).
DEV_SUPERSEDED = "ignore:Function `dev_command` is superseded"


def quiet_env(environ) -> dict[str, str]:
    """``environ`` with the ``dagster dev`` supersession warning filtered (other PYTHONWARNINGS kept)."""
    env = dict(environ)
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), DEV_SUPERSEDED) if w)
    return env


def run(args) -> int:
    from ..definitions import WORKSPACE_YAML, apply_pool_limits, ensure_dagster_home

    home = ensure_dagster_home(args.dagster_home)
    import dagster as dg

    apply_pool_limits(dg.DagsterInstance.get())
    cmd = build_command(args.port, args.host, str(WORKSPACE_YAML), args.dagster_log_level)
    print(f"DAGSTER_HOME={home}\n$ {' '.join(cmd)}\nopen http://{args.host}:{args.port}", flush=True)
    os.chdir(WORKSPACE_YAML.parent)
    os.execvpe(cmd[0], cmd, quiet_env(os.environ))
    return 0  # not reached
