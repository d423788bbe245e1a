"""Which CUDA device one engine step uses (no dagster import: the orchestration layer calls this).

On a multi-GPU host every step of the ``gpu`` pool would otherwise run on ``cuda`` (= GPU 0) while the
other GPUs idle. :func:`claim_device` gives each step one device:

1. ``VIPE_CUDA_DEVICE`` (an index into the visible devices) set by the deployment wins: the step uses
   exactly that device (a Kubernetes pod with one ``nvidia.com/gpu`` sees it as index 0 anyway).
2. Otherwise the devices are claimed round-robin starting at a stable index derived from the step's key
   (the partition key): ``crc32(key) % count``. The claim is an exclusive ``flock`` on
   ``<VIPE_GPU_LOCK_DIR>/cuda<N>.lock`` (default ``$TMPDIR/vipe-gpu-locks``) held while the step runs, so
   concurrent steps on one host (the ``gpu`` pool limit = number of GPUs) each get a different device; a
   step that finds every device claimed (pool limit above the device count) shares the one its key
   hashes to.
3. One visible device (or none): ``cuda:0`` (or ``cpu``), no lock.

The device string is ``cuda:<index>``; callers pass it on to torch, and :func:`claim_device` also makes
it torch's current device for the step so kernels that allocate on the "current" device follow it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from .errors import ConfigError

log = logging.getLogger(__name__)

DEVICE_ENV = "VIPE_CUDA_DEVICE"
LOCK_DIR_ENV = "VIPE_GPU_LOCK_DIR"


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without torch or without CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def preferred_index(key: str, count: int) -> int:
    """Stable start index of ``key`` among ``count`` devices (same key -> same device on every host)."""
    if count < 1:
        raise ValueError(f"device count must be >= 1, got {count}")
    return zlib.crc32(key.encode("utf-8")) % count


def deployment_device(count: int, environ: Mapping[str, str] | None = None) -> int | None:
    """The device index the deployment pins (``VIPE_CUDA_DEVICE``), checked against ``count``."""
    env = os.environ if environ is None else environ
    raw = (env.get(DEVICE_ENV) or "").strip()
    if not raw:
        return None
    value = raw.removeprefix("cuda:")
    if not value.isdigit():
        raise ConfigError(f"environment variable {DEVICE_ENV}={raw!r}: expected a device index "
                          f"such as 0 or cuda:1")
    index = int(value)
    if index >= count:
        raise ConfigError(f"environment variable {DEVICE_ENV}={raw!r}: only {count} CUDA device(s) are "
                          f"visible to this process (indices 0..{count - 1})")
    return index


def set_current_device(index: int) -> None:
    """Make ``cuda:<index>`` torch's current device in this (step) process."""
    import torch

    torch.cuda.set_device(index)


@dataclass
class DeviceClaim:
    device: str  # "cpu" or "cuda:<n>"
    index: int | None
    how: str  # "cpu", "single", "env", "claimed", "shared"


def _try_lock(path: str):
    import fcntl

    f = open(path, "a+")  # noqa: SIM115 - held open for the step's lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def claim_device(key: str, want_cuda: bool = True, count: int | None = None,
                 environ: Mapping[str, str] | None = None,
                 set_current: Callable[[int], None] | None = None) -> Iterator[DeviceClaim]:
    """One device for the step identified by ``key`` while the ``with`` block runs (module docstring).

    ``count`` defaults to :func:`cuda_device_count`; ``set_current`` (default ``torch.cuda.set_device``)
    is called with the chosen index. ``want_cuda=False`` yields ``cpu``."""
    env = os.environ if environ is None else environ
    n = cuda_device_count() if count is None else int(count)
    if not want_cuda or n < 1:
        yield DeviceClaim("cpu", None, "cpu")
        return
    if set_current is None:
        set_current = set_current_device
    pinned = deployment_device(n, env)
    if pinned is not None:
        set_current(pinned)
        yield DeviceClaim(f"cuda:{pinned}", pinned, "env")
        return
    if n == 1:
        set_current(0)
        yield DeviceClaim("cuda:0", 0, "single")
        return
    lock_dir = (env.get(LOCK_DIR_ENV) or "").strip() or os.path.join(tempfile.gettempdir(), "vipe-gpu-locks")
    os.makedirs(lock_dir, exist_ok=True)
    start = preferred_index(key, n)
    held = None
    index = start
    for k in range(n):
        i = (start + k) % n
        held = _try_lock(os.path.join(lock_dir, f"cuda{i}.lock"))
        if held is not None:
            index = i
            break
    how = "claimed" if held is not None else "shared"
    if held is None:
        log.warning("all %d CUDA devices are claimed by other steps (is the gpu pool limit above the device "
                    "count?); step %s shares cuda:%d", n, key, index)
    try:
        set_current(index)
        yield DeviceClaim(f"cuda:{index}", index, how)
    finally:
        if held is not None:
            held.close()  # closing the descriptor releases the flock
