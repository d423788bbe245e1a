"""Advisory lock per output sequence, so two runs never write the same artifact set at the same time.

``sequence_lock(root, name)`` is held by every writer of a sequence (``infer``, ``ingest``, ``depth``,
``to-colmap`` when it records into the manifest, the Dagster assets):

- **local** root: ``<root>/.vipe-locks/<name>.lock`` locked with ``flock`` (the OS releases it when the holder
  dies, even on ``kill -9``); the file holds the holder's pid, host, command and start time for the message
  the loser gets;
- **s3://** root: the object ``<root>/.vipe-locks/<name>.lock`` created with a conditional PUT
  (``If-None-Match: *``, so exactly one of two racing runs gets it), refreshed by a heartbeat and deleted on
  release. A lock whose heartbeat expired, or whose holder ran on this host and is gone, is taken over.

Locks are re-entrant within a process (``infer`` holds it while ``ingest_video`` asks again). While the
lock is held, stale temporary files of killed runs are swept from the sequence's folders (see
``fs.sweep_stale_temps``). The loser gets :class:`BusyError`: ``busy: another run (pid ..., host ...,
started ...) holds <lock> ...``, or waits up to ``wait`` seconds first.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import fs
from .names import check_sequence_name

log = logging.getLogger(__name__)

LOCK_DIR = ".vipe-locks"
S3_TTL_S = 300.0
S3_HEARTBEAT_S = 60.0
_SEQUENCE_DIRS = ("rgb", "pose", "intrinsics", "depth", "mask", "vipe")

_held: dict[str, int] = {}  # lock identity -> re-entrancy depth (this process)
_held_guard = threading.Lock()


class BusyError(InputError):
    """Another run holds the lock of the sequence (or catalog) this run wants to write."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def holder_info(purpose: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "purpose": purpose,
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
            "expires": time.time() + S3_TTL_S}


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "another run (holder unknown)"
    return (f"another run (pid {info.get('pid', '?')} on host {info.get('host', '?')}, "
            f"{info.get('purpose', 'run')} started {info.get('started', '?')})")


def lock_uri(root: str, name: str) -> str:
    return fs.join(root, LOCK_DIR, f"{name}.lock")


@contextlib.contextmanager
def sequence_lock(root: str, name: str, purpose: str = "run", wait: float = 0.0) -> Iterator[float]:
    """Hold the write lock of sequence ``name`` under ``root``; yields the acquisition time (epoch s)."""
    check_sequence_name(name)
    uri = lock_uri(str(root), name)
    with _lock(uri, f"sequence {name!r} of {root}", purpose, wait) as t0:
        if t0 is not None:  # first acquisition in this process: clean what killed runs left
            sweep_sequence_temps(str(root), name, t0)
        yield t0 if t0 is not None else time.time()


@contextlib.contextmanager
def path_lock(lock_path: str, what: str, purpose: str = "run", wait: float = 0.0) -> Iterator[float | None]:
    """The same lock for any other resource (a catalog file, an output folder)."""
    with _lock(str(lock_path), what, purpose, wait) as t0:
        yield t0


def sweep_sequence_temps(root: str, name: str, older_than: float) -> list[str]:
    """Temporary files of killed runs in the sequence's folders (and the system temp folder)."""
    removed = fs.sweep_system_temps()
    if fs.is_remote(root):
        return removed
    stems = (name, f"{name}_camera", f"{name}_manifest", f"{name}_info", f"{name}_sparse", f"{name}_vis")
    for sub in _SEQUENCE_DIRS:
        removed += fs.sweep_stale_temps(fs.join(root, sub), older_than, stems)
    removed += fs.sweep_stale_temps(fs.join(root, "colmap"), older_than, (name,))
    return removed


@contextlib.contextmanager
def _lock(uri: str, what: str, purpose: str, wait: float) -> Iterator[float | None]:
    key = uri
    with _held_guard:
        depth = _held.get(key, 0)
        if depth:
            _held[key] = depth + 1
    if depth:
        try:
            yield None
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    impl = _s3_lock if fs.is_remote(uri) else _local_lock
    with impl(uri, what, purpose, wait) as t0:
        with _held_guard:
            _held[key] = 1
        try:
            yield t0
        finally:
            with _held_guard:
                _held.pop(key, None)


@contextlib.contextmanager
def _local_lock(uri: str, what: str, purpose: str, wait: float) -> Iterator[float]:
    path = Path(fs.get_fs(uri)[1])
    # folders this lock creates (the lock folder, the output root if it is new) go again if left empty
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot create the lock file {path} for {what} ({exc.strerror or exc})") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise BusyError(_busy_message(what, str(path), _read_local_holder(path), wait)) from None
            time.sleep(0.2)
            continue
        # the previous holder unlinks the file on release: make sure we locked the file the path names now
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        t0 = time.time()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info(purpose)).encode(), 0)
        yield t0
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked, so no one can lock this inode and believe they hold the lock
        os.close(fd)  # releases the flock
        for folder in [path.parent, *created]:  # deepest first; rmdir only removes empty folders
            try:
                folder.rmdir()
            except OSError:
                if folder != path.parent:
                    break


def _read_local_holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


def _busy_message(what: str, where: str, info: dict[str, Any] | None, wait: float) -> str:
    waited = f" (waited {wait:.0f} s)" if wait > 0 else ""
    return (f"busy: {describe_holder(info)} holds {where} for {what}{waited}; wait for it to finish "
            f"(or pass --wait SECONDS), or use another output")


@contextlib.contextmanager
def _s3_lock(uri: str, what: str, purpose: str, wait: float) -> Iterator[float]:
    fsys, path = fs.get_fs(uri)
    bucket, _, key = path.partition("/")
    deadline = time.monotonic() + max(0.0, wait)
    info = holder_info(purpose)
    while True:
        try:
            fsys.call_s3("put_object", Bucket=bucket, Key=key, Body=json.dumps(info).encode(),
                         IfNoneMatch="*")
            break
        except FileExistsError:  # s3fs maps 412 PreconditionFailed to FileExistsError
            holder = _read_s3_holder(fsys, path)
            if _s3_stale(holder):
                log.warning("taking over the stale lock %s of %s", uri, describe_holder(holder))
                with contextlib.suppress(FileNotFoundError):
                    fsys.rm_file(path)
                continue
            if time.monotonic() >= deadline:
                raise BusyError(_busy_message(what, uri, holder, wait)) from None
            time.sleep(0.5)
    t0 = time.time()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(S3_HEARTBEAT_S):
            info["expires"] = time.time() + S3_TTL_S
            try:
                fsys.pipe_file(path, json.dumps(info).encode())
            except Exception as exc:  # a missed beat only shortens the lease
                log.warning("lock heartbeat for %s failed: %s", uri, exc)

    thread = threading.Thread(target=beat, name=f"lock-heartbeat-{key}", daemon=True)
    thread.start()
    try:
        yield t0
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            fsys.rm_file(path)
        except Exception as exc:
            log.warning("could not release the lock %s (%s); it expires at its TTL", uri, exc)


def _read_s3_holder(fsys, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(fsys.cat_file(path))
    except FileNotFoundError:
        return {}
    except (ValueError, OSError):
        return None


def _s3_stale(holder: dict[str, Any] | None) -> bool:
    if holder == {}:  # vanished between the PUT and the read: just retry
        return True
    if not holder:
        return False
    if float(holder.get("expires", 0)) < time.time():
        return True
    if holder.get("host") == socket.gethostname():
        pid = int(holder.get("pid", 0) or 0)
        return pid != os.getpid() and not fs._pid_alive(pid)
    return False
