"""Helpers of the reliability suite: the real CLI in a subprocess and snapshots of what a command touched.

Every bad-input case asserts the same contract: exit code 2, exactly one ``error:`` line on stderr naming
what is wrong, no traceback, and nothing written or changed outside the output's temporary area.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "dog-example.mp4"


@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run ``vipe-dagster ARGS`` as a real process (what a user types)."""
    full_env = {**os.environ, "PYOPENGL_PLATFORM": "egl", "PYTHONPATH": str(REPO), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", *map(str, args)], cwd=cwd, env=full_env,
                       capture_output=True, text=True, timeout=timeout)
    return Run([str(a) for a in args], p.returncode, p.stdout, p.stderr)


def assert_clean_error(run: Run, *fragments: str) -> str:
    """rc 2, one ``error:`` line containing every fragment, no traceback; returns the line."""
    assert "Traceback" not in run.err, f"traceback for {run.args}:\n{run.err[-3000:]}"
    assert run.rc == 2, f"rc {run.rc} for {run.args}:\n{run.err[-2000:]}"
    lines = run.error_lines
    assert len(lines) == 1, f"expected one error line for {run.args}, got {lines}\n{run.err[-2000:]}"
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``roots`` with (size, mtime_ns): compare before/after a command."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        if not root.exists():
            continue
        for p in [root, *root.rglob("*")]:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file() else 0)
    return out


def system_temps() -> set[str]:
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(".tmp-vipe-")}


