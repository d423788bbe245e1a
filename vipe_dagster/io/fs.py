"""Filesystem access for local paths and ``s3://`` URIs through fsspec, with atomic writes.

Atomicity: a local write goes to a hidden temporary file in the destination folder and is then
``os.replace``-d into place, so readers see the old file or the new one and never a torn one.
An ``s3://`` write is staged in a local temporary file and uploaded with a single PUT (S3 makes an
object visible only when its upload completes), so a crash leaves no partial object either.

S3 settings come from the environment: ``VIPE_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"
_SYSTEM_TMP_PREFIX = ".tmp-vipe-"
# every temporary name carries the writer's pid: ".tmp-<stem>-<pid>-<8 hex><suffix>"
_TMP_PID = re.compile(r"-(\d+)-[0-9a-f]{8}")
STALE_TMP_AGE_S = 24 * 3600.0


def tmp_tag() -> str:
    """``<pid>-<8 hex>``: the unique part of a temporary name; the pid lets a later run tell a dead writer's
    leftovers from a live writer's work in progress."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike, older_than: float | None = None, stems: tuple[str, ...] = (),
                      prefix: str = _TMP_PREFIX) -> list[str]:
    """Remove this project's temporary files and folders left in ``folder`` by killed runs.

    Only entries named ``<prefix>...`` are considered. One is removed when its writer (the pid in its name) is
    no longer running, when it belongs to one of ``stems`` (a sequence whose lock the caller holds) and was
    last modified before ``older_than`` (the lock's acquisition time), or when it is older than a day and
    carries no pid. Returns what was removed. Local folders only (remote writes never stage remotely).
    """
    import time

    d = Path(folder)
    if is_remote(str(folder)) or not d.is_dir():
        return []
    removed = []
    now = time.time()
    for p in d.iterdir():
        name = p.name
        if not name.startswith(prefix):
            continue
        try:
            mtime = p.lstat().st_mtime
        except FileNotFoundError:
            continue
        found = _TMP_PID.findall(name)
        pid = int(found[-1]) if found else None
        mine = any(name.startswith(f"{_TMP_PREFIX}{s}-") for s in stems)
        stale = (pid is not None and pid != os.getpid() and not _pid_alive(pid)) \
            or (mine and older_than is not None and mtime < older_than and pid != os.getpid()) \
            or (pid is None and now - mtime > STALE_TMP_AGE_S)
        if not stale:
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(str(p))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove stale temporary %s: %s", p, exc)
    if removed:
        log.info("removed %d stale temporary file(s) of killed runs in %s", len(removed), d)
    return removed


def sweep_system_temps() -> list[str]:
    """Remote writes and reads stage in the system temp folder as ``.tmp-vipe-<pid>-...``: remove those of
    dead pids."""
    return sweep_stale_temps(tempfile.gettempdir(), prefix=_SYSTEM_TMP_PREFIX)


def is_remote(uri: str | os.PathLike) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_storage_options() -> dict[str, Any]:
    """fsspec/s3fs options derived from the environment (endpoint and credentials)."""
    opts: dict[str, Any] = {}
    endpoint = os.environ.get("VIPE_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        opts["key"], opts["secret"] = key, secret
    return opts


_TRANSIENT_NAMES = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                    "ConnectionClosedError", "ClientConnectorError", "ServerDisconnectedError",
                    "ProxyConnectionError", "ClientOSError", "ServerTimeoutError", "IncompleteReadError",
                    "ResponseStreamingError")
_TRANSIENT_CODES = ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                    "RequestTimeTooSkewed", "503", "500", "502", "504")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is worth retrying: network failures, timeouts,
    S3 throttling and 5xx answers, a busy lock. Input errors (bad files, bad options, missing credentials or
    buckets) are not."""
    from ..errors import TransientError, VipeError

    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        if isinstance(e, TransientError) or type(e).__name__ == "BusyError":
            return True
        if isinstance(e, VipeError) and e.__cause__ is None:
            return False
        if isinstance(e, ConnectionError | TimeoutError) or type(e).__name__ in _TRANSIENT_NAMES:
            return True
        if type(e).__name__ == "ClientError" and any(c in str(e) for c in _TRANSIENT_CODES):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def remote_error_message(exc: BaseException, uri: str) -> str | None:
    """A one-line explanation of an S3/remote access failure (None when ``exc`` is not one)."""
    name = type(exc).__name__
    text = str(exc)
    endpoint = (os.environ.get("VIPE_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
                or "the default AWS endpoint")
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (f"{uri}: no usable S3 credentials ({text}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                f"(endpoint: VIPE_S3_ENDPOINT_URL or AWS_ENDPOINT_URL)")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ClientConnectorError", "ServerDisconnectedError", "InvalidURL", "ProxyConnectionError"):
        return f"{uri}: cannot reach the S3 endpoint {endpoint} ({text})"
    if name == "ParamValidationError" or "Invalid bucket name" in text:
        return f"{uri}: not a valid S3 location ({text}); expected s3://bucket/prefix"
    codes = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403",
             "ExpiredToken", "InvalidToken")
    if isinstance(exc, PermissionError) or any(c in text for c in codes):
        return f"{uri}: S3 refused the credentials or the operation ({text}); check AWS_ACCESS_KEY_ID, " \
               f"AWS_SECRET_ACCESS_KEY and the bucket policy (endpoint {endpoint})"
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return f"{uri}: the S3 bucket does not exist ({text})"
    if name in ("ClientError", "BotoCoreError", "NoRegionError") or type(exc).__module__.startswith(
            ("botocore", "aiobotocore", "s3fs", "aiohttp")):
        return f"{uri}: S3 request failed ({name}: {text})"
    return None


def preflight_write(root: str | os.PathLike, what: str = "output") -> None:
    """Check before any work that ``root`` (a folder or s3:// prefix) can be written: for S3 the credentials,
    the bucket and the write permission (a probe object is written and deleted); locally that it is a
    folder (or can be created) and is writable. Raises InputError with a one-line reason."""
    from ..errors import InputError

    root = str(root)
    if not is_remote(root):
        p = Path(get_fs(root)[1])
        existing = next(a for a in (p, *p.parents) if a.exists() or a == a.parent)
        if not existing.is_dir():
            raise InputError(f"{what} {root}: {existing} is a file, expected a folder "
                             f"(or s3://bucket/prefix)")
        if existing != p:  # nothing is created before the work starts: the nearest folder must allow it
            if not os.access(existing, os.W_OK | os.X_OK):
                raise InputError(f"{what} {root} cannot be created: {existing} is not writable")
            return
        try:
            probe = p / f"{_TMP_PREFIX}probe-{tmp_tag()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"{what} {root} is not writable ({exc.strerror or exc})") from None
        return
    uri = root.rstrip("/")
    try:
        fsys, path = get_fs(uri)
        bucket = path.split("/", 1)[0]
        if not bucket:
            raise InputError(f"{what} {root}: expected s3://bucket/prefix")
        fsys.ls(bucket)  # credentials + bucket
        probe = f"{path.rstrip('/')}/{_TMP_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fsys.pipe_file(probe, b"")
        fsys.rm_file(probe)
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError(f"{what} {root}: the S3 bucket does not exist ({exc})") from None
    except Exception as exc:
        _raise_remote(exc, root, what)


def preflight_read(uri: str | os.PathLike, what: str = "Input") -> None:
    """Check that ``uri`` exists and is reachable (remote: credentials and bucket), with a one-line error."""
    from ..errors import InputError

    uri = str(uri)
    try:
        fsys, path = get_fs(uri)
        found = fsys.exists(path)
    except Exception as exc:
        _raise_remote(exc, uri, what)
    if not found:
        raise InputError(f"{what} not found: {uri}")


def _raise_remote(exc: Exception, uri: str, what: str) -> None:
    """Re-raise a remote failure as one line: TransientError when retrying may help, else InputError."""
    from ..errors import InputError, TransientError

    msg = remote_error_message(exc, uri)
    if msg is None:
        raise exc
    cls = TransientError if is_transient(exc) else InputError
    raise cls(f"{what} {msg}") from None


def get_fs(uri: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or a URI."""
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if not is_remote(uri):
        return fsspec.filesystem("file"), str(Path(uri).expanduser().absolute())
    protocol = uri.split("://", 1)[0]
    opts = s3_storage_options() if protocol in ("s3", "s3a") else {}
    fs, path = fsspec.core.url_to_fs(uri, **opts)
    return fs, path


def join(root: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or URI (always with '/')."""
    root = str(root)
    if is_remote(root):
        return posixpath.join(root.rstrip("/"), *parts)
    return str(Path(root).joinpath(*parts))


def exists(uri: str | os.PathLike) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def size(uri: str | os.PathLike) -> int:
    fs, path = get_fs(uri)
    return int(fs.size(path))


def open_read(uri: str | os.PathLike, mode: str = "rb") -> IO:
    fs, path = get_fs(uri)
    return fs.open(path, mode)


def read_bytes(uri: str | os.PathLike) -> bytes:
    with open_read(uri) as f:
        return f.read()


def read_text(uri: str | os.PathLike) -> str:
    return read_bytes(uri).decode("utf-8")


def listdir(uri: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries in a folder; empty if it does not exist."""
    fs, path = get_fs(uri)
    if not fs.exists(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def remove(uri: str | os.PathLike, recursive: bool = False) -> None:
    fs, path = get_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


@contextlib.contextmanager
def local_path_for_write(uri: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a local temporary path; on success it becomes ``uri`` atomically.

    On any exception the temporary file is deleted and ``uri`` is left untouched.
    """
    uri = str(uri)
    suffix = suffix or Path(uri).suffix
    if not is_remote(uri):
        dest = Path(get_fs(uri)[1])
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f"{_TMP_PREFIX}{dest.stem}-{tmp_tag()}{suffix}"
        try:
            yield str(tmp)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        return
    fs, path = get_fs(uri)
    fd, tmp = tempfile.mkstemp(prefix=f"{_SYSTEM_TMP_PREFIX}{tmp_tag()}", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        fs.put_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(uri: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open ``uri`` for writing; the content appears only if the block succeeds."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports 'wb' and 'w', got {mode!r}")
    with local_path_for_write(uri) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    with atomic_open(uri, "wb") as f:
        f.write(data)


def write_text(uri: str | os.PathLike, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(uri: str | os.PathLike) -> Iterator[str]:
    """Yield a local staging folder; on success it replaces the folder ``uri``.

    Local: the staging folder sits beside the destination and is swapped in with renames.
    Remote: files are uploaded one by one after the block succeeds (each object atomic).
    """
    uri = str(uri)
    if not is_remote(uri):
        dest = Path(get_fs(uri)[1])
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{dest.name}-{tmp_tag()}-", dir=dest.parent))
        old = dest.parent / f"{_TMP_PREFIX}{dest.name}-old-{tmp_tag()}"
        try:
            yield str(stage)
            if dest.exists():
                os.replace(dest, old)
            os.replace(stage, dest)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        return
    fs, path = get_fs(uri)
    stage = tempfile.mkdtemp(prefix=f"{_SYSTEM_TMP_PREFIX}{tmp_tag()}-")
    try:
        yield stage
        for local in sorted(Path(stage).rglob("*")):
            if local.is_file():
                fs.put_file(str(local), posixpath.join(path, local.relative_to(stage).as_posix()))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike) -> Iterator[str]:
    """Yield a local path holding the content of ``uri`` (downloaded if remote)."""
    uri = str(uri)
    if not is_remote(uri):
        yield get_fs(uri)[1]
        return
    fs, path = get_fs(uri)
    fd, tmp = tempfile.mkstemp(prefix=f"{_SYSTEM_TMP_PREFIX}{tmp_tag()}", suffix=Path(path).suffix)
    os.close(fd)
    try:
        fs.get_file(path, tmp)
        yield tmp
    finally:
        os.unlink(tmp)
