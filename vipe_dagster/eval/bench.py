"""Benchmark harness behind ``vipe-dagster bench``.

Every module in :mod:`vipe_dagster.eval.suites` defines ``SUITE`` (a name), optionally ``TITLE`` (the
``## heading`` in ``docs/benchmarks.md``) and ``run(quick: bool = False) -> list[dict]``. A row is
``{"suite", "name", "value", "unit", "target"?, "note"?, "frames"?}``; when a row with unit ``"s"`` names
the ``frames`` it processed, the harness adds its frames/s.

Each suite runs in its own subprocess, so its wall time and peak resident memory are its own. The peak is
the child's ``VmHWM`` (high-water RSS of its address space, which starts fresh at ``exec``) combined with
``ru_maxrss`` of anything the suite itself spawned. ``ru_maxrss`` of the child as seen by the parent
(``os.wait4``) is also recorded, but it is not used as the peak: Linux folds the parent's RSS at fork time
into a child's ``ru_maxrss``, so a large parent (a test runner, a notebook) would inflate it. Results go to JSON and, per suite, into a marked block of a Markdown
file (``<!-- bench:<suite>:begin -->`` ... ``<!-- bench:<suite>:end -->``); the rest of the file is kept.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..errors import ConfigError
from ..io import fs
from ..procinfo import cpu_model, vm_hwm_kb

log = logging.getLogger(__name__)

SUITES_PACKAGE = "vipe_dagster.eval.suites"
REQUIRED_ROW_KEYS = ("name", "value", "unit")


def make_row(suite: str, name: str, value: float, unit: str, target: str | None = None, note: str | None = None,
             frames: int | None = None) -> dict:
    """One result row of ``suite`` in the harness's format (optional keys only when given)."""
    r: dict[str, Any] = {"suite": suite, "name": name, "value": float(value), "unit": unit}
    for key, v in (("target", target), ("note", note), ("frames", frames)):
        if v is not None:
            r[key] = v
    return r


# ---------------------------------------------------------------- discovery
def discover_suites(package: str = SUITES_PACKAGE) -> dict[str, dict[str, str]]:
    """``{suite_name: {"module": ..., "title": ...}}`` for every suite module in ``package``."""
    import pkgutil

    pkg = importlib.import_module(package)
    found: dict[str, dict[str, str]] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        modname = f"{package}.{info.name}"
        mod = importlib.import_module(modname)
        suite = getattr(mod, "SUITE", None)
        if not isinstance(suite, str) or not callable(getattr(mod, "run", None)):
            log.warning("%s defines no SUITE/run(); skipped", modname)
            continue
        if suite in found:
            raise ConfigError(f"benchmark suite {suite!r} is defined twice ({found[suite]['module']}, {modname})")
        found[suite] = {"module": modname, "title": str(getattr(mod, "TITLE", suite))}
    return found


# ---------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python/torch versions, GPU (nvidia-smi) and the current load."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    info["cpu_model"] = cpu_model() or platform.processor() or "unknown"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["ram_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
                    break
    except OSError:
        pass
    for pkg in ("torch", "numpy", "pyrender", "opencv-python-headless"):
        try:
            info[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:
            info[f"{pkg}_version"] = None
    info["gpu"] = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            gpus = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
            info["gpu"] = "; ".join(gpus) or None
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def describe_machine(m: dict[str, Any]) -> str:
    cores = m.get("cpu_affinity") or m.get("cpu_count")
    parts = [f"{cores}-core {m.get('machine', '')} CPU ({m.get('cpu_model', 'unknown')})",
             f"{m.get('ram_gb', '?')} GB RAM"]
    parts.append(f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    parts.append(f"torch {m.get('torch_version')}")
    load = m.get("load_avg_1m")
    if load is not None and cores and load > 0.5 * cores:
        parts.append(f"shared with other jobs during measurement (1-min load {load})")
    return ", ".join(parts)


# ---------------------------------------------------------------- running
def _normalise_rows(suite: str, rows: Any) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise ConfigError(f"suite {suite}: run() returned {type(rows).__name__}, expected a list of dicts")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in REQUIRED_ROW_KEYS):
            raise ConfigError(f"suite {suite}: row {i} must be a dict with keys {REQUIRED_ROW_KEYS}, got {row!r}")
        row = {"suite": suite, **row}
        if row.get("unit") == "s" and row.get("frames") and row.get("value"):
            row["frames_per_s"] = float(row["frames"]) / float(row["value"])
        out.append(row)
    return out


def run_suite(module: str, quick: bool = False, timeout_s: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one suite module in a subprocess; return rows, wall time, peak RSS and status."""
    fd, out_path = tempfile.mkstemp(prefix="vipe-bench-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "vipe_dagster.eval.bench", "--child", module, "--out", out_path]
    if quick:
        cmd.append("--quick")
    child_env = {**os.environ, "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl"), **(env or {})}
    t0 = time.perf_counter()
    stderr_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr_file, env=child_env,
                            start_new_session=True)
    timed_out = threading.Event()

    def _kill():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, _kill) if timeout_s else None
    if timer:
        timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if timer:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    stderr_file.seek(0)
    err_tail = stderr_file.read()[-4000:]
    stderr_file.close()
    result: dict[str, Any] = {"module": module, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0,
                              "user_cpu_s": usage.ru_utime, "sys_cpu_s": usage.ru_stime,
                              "exit_code": proc.returncode, "ok": False, "rows": []}
    try:
        if timed_out.is_set():
            result["error"] = f"timed out after {timeout_s} s"
        elif proc.returncode != 0:
            result["error"] = f"exit code {proc.returncode}: {err_tail.strip()[-1500:]}"
        else:
            with open(out_path) as f:
                payload = json.load(f)
            result["suite"] = payload["suite"]
            own = max(payload.get("vm_hwm_kb") or 0, payload.get("children_maxrss_kb") or 0)
            if own:
                result["wait4_maxrss_mb"] = result["peak_rss_mb"]
                result["peak_rss_mb"] = own / 1024.0
            result["rows"] = _normalise_rows(payload["suite"], payload["rows"])
            result["ok"] = True
    finally:
        os.unlink(out_path)
    return result


def run_bench(suites: list[str] | None = None, quick: bool = False, json_out: str | None = None,
              markdown: str | None = None, timeout_s: float | None = None,
              package: str = SUITES_PACKAGE) -> dict[str, Any]:
    """Run the chosen suites (default: all), write JSON and update the Markdown blocks."""
    available = discover_suites(package)
    chosen = list(suites) if suites else list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise ConfigError(f"unknown benchmark suite(s) {', '.join(unknown)}; available: {', '.join(available)}")
    machine = machine_info()
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    results = []
    for name in chosen:
        log.info("bench: running suite %s (%s)%s", name, available[name]["module"], " [quick]" if quick else "")
        r = run_suite(available[name]["module"], quick=quick, timeout_s=timeout_s)
        r.setdefault("suite", name)
        r["title"] = available[name]["title"]
        if not r["ok"]:
            log.error("bench: suite %s failed: %s", name, r.get("error"))
        results.append(r)
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    report = {"date": started, "quick": quick, "machine": machine, "machine_description": describe_machine(machine),
              "suites": results}
    if json_out:
        fs.write_text(json_out, json.dumps(report, indent=2, default=str))
    if markdown:
        update_markdown(markdown, report)
    return report


# ---------------------------------------------------------------- markdown
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1000:
            return f"{v:.4g}"
        if 1000 <= abs(v) < 1e7:
            return f"{v:.0f}"
        return f"{v:.3e}"
    return "" if v is None else str(v)


def render_block(suite_result: dict[str, Any], report: dict[str, Any]) -> str:
    """Markdown for one suite: provenance line and a table of rows."""
    r = suite_result
    cmd = f"vipe-dagster bench --suite {r['suite']}" + (" --quick" if report.get("quick") else "")
    lines = [f"Measured {report['date']} with `{cmd}` on {report['machine_description']}.",
             f"Suite wall time {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
             f"(CPU user {r.get('user_cpu_s', 0):.1f} s)."]
    if not r["ok"]:
        lines.append(f"\n**Suite failed:** {r.get('error', 'unknown error')}")
        return "\n".join(lines)
    lines += ["", "| measurement | value | unit | frames/s | target | note |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        fps = row.get("frames_per_s")
        lines.append(f"| {row['name']} | {_fmt(row['value'])} | {row['unit']} | {_fmt(fps) if fps else ''} | "
                     f"{row.get('target', '') or ''} | {row.get('note', '') or ''} |")
    return "\n".join(lines)


def update_markdown(path: str, report: dict[str, Any]) -> str:
    """Replace (or append) each suite's marked block in ``path``; keep everything else."""
    text = fs.read_text(path) if fs.exists(path) else "# Benchmarks\n"
    for r in report["suites"]:
        suite = r["suite"]
        begin, end = f"<!-- bench:{suite}:begin -->", f"<!-- bench:{suite}:end -->"
        block = f"{begin}\n{render_block(r, report)}\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text, count=1)
            continue
        heading = f"## {r.get('title') or suite}"
        m = re.search(r"^" + re.escape(heading) + r"[ \t]*$", text, re.M)
        if m:
            # a hand-written section with this heading: put the block right under the heading line
            text = text[:m.end()] + "\n\n" + block + "\n" + text[m.end():]
        else:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    if not text.endswith("\n"):
        text += "\n"
    fs.write_text(path, text)
    return text


# ---------------------------------------------------------------- child entry point
def _child_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="vipe_dagster.eval.bench")
    p.add_argument("--child", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    mod = importlib.import_module(a.child)
    rows = mod.run(quick=a.quick)
    import resource

    payload = {"suite": mod.SUITE, "rows": rows, "vm_hwm_kb": vm_hwm_kb(),
               "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}
    with open(a.out, "w") as f:
        json.dump(payload, f, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
