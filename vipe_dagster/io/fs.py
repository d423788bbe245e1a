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
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec

_TMP_PREFIX = ".tmp-"


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
        tmp = dest.parent / f"{_TMP_PREFIX}{dest.stem}-{uuid.uuid4().hex[:8]}{suffix}"
        try:
            yield str(tmp)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        return
    fs, path = get_fs(uri)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=suffix)
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
        stage = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{dest.name}-", dir=dest.parent))
        old = dest.parent / f"{_TMP_PREFIX}{dest.name}-old-{uuid.uuid4().hex[:8]}"
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
    stage = tempfile.mkdtemp(prefix=_TMP_PREFIX)
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
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=Path(path).suffix)
    os.close(fd)
    try:
        fs.get_file(path, tmp)
        yield tmp
    finally:
        os.unlink(tmp)
