"""Facts about the running process that the engine records in manifests and the benchmarks report."""

from __future__ import annotations

import resource


def vm_hwm_kb() -> int | None:
    """Peak resident set size of this process's address space (``VmHWM``), in kB; None off Linux.

    Unlike ``ru_maxrss`` it starts afresh at ``exec``, so a process started by a large parent reports its
    own peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (``VmHWM``, else ``ru_maxrss``)."""
    kb = vm_hwm_kb()
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (None off Linux or when it names none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        return None
