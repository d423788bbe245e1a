"""Reading what a command printed on stderr: log lines (ours, third-party, Dagster's run log) and the problems
issue 22 names (a line printed twice, third-party INFO, Beta/Preview warnings, a stray ``[]``)."""

from __future__ import annotations

import re

OURS = ("vipe_dagster", "vipe", "assets_defs", "resources", "gpu_kernels")
# "INFO vipe_dagster.pipeline: message" (our console format), possibly after a progress bar on the same line
_PLAIN = re.compile(r"(?:^|\])\s*(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
# "2026-12-05 21:57:26 +0000 - dagster - INFO - job - run id - step - message" (Dagster's console logger)
_DAGSTER = re.compile(r"^\d{4}-\d\d-\d\d [\d:]+ [+-]\d{4} - dagster - (\w+) - (.*)$")


def is_ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OURS)


def log_lines(stderr: str) -> list[tuple[str, str, str]]:
    """``(source, level, text)`` per log line: source ``plain`` with text ``name: message``, or ``dagster``
    with text the step's message (a forwarded engine record reads ``name: message`` there too)."""
    out = []
    for raw in stderr.split("\n"):
        line = raw.split("\r")[-1] if not _PLAIN.search(raw) else raw  # progress bars redraw with \r
        m = _DAGSTER.match(line)
        if m:
            parts = m.group(2).split(" - ", 3)  # job - run id - step - message
            out.append(("dagster", m.group(1), parts[-1]))
            continue
        m = _PLAIN.search(line)
        if m:
            out.append(("plain", m.group(1), f"{m.group(2)}: {m.group(3)}"))
    return out


def problems(stderr: str) -> list[str]:
    """Everything wrong with a command's stderr by issue 22's standard (empty when it is clean)."""
    found = []
    lines = log_lines(stderr)
    for (_, _, a), (_, _, b) in zip(lines, lines[1:], strict=False):
        if a == b:
            found.append(f"printed twice in a row: {a}")
    forwarded = {t for src, _, t in lines if src == "dagster"}
    found += [f"in the run log and printed again: {t}" for src, _, t in lines if src == "plain" and t in forwarded]
    for src, level, text in lines:
        if src == "plain" and level in ("DEBUG", "INFO") and not is_ours(text.split(":", 1)[0]):
            found.append(f"third-party {level} line: {text}")
    for raw in stderr.splitlines():
        if re.search(r"\b(BetaWarning|PreviewWarning)\b", raw):
            found.append(f"Dagster beta/preview warning: {raw.strip()}")
        if raw.strip() == "[]":
            found.append("stray '[]' line")
    return found
