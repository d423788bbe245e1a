"""Provenance manifests (``vipe/<n>_manifest.json``): input identity, code, config, versions, timings."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import fs

MANIFEST_SCHEMA = 1
_TRACKED_PACKAGES = ("numpy", "torch", "opencv-python-headless", "av", "OpenEXR", "scipy", "dagster", "duckdb")


def content_hash(uri: str, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's bytes (streamed), or of every file in a folder in name order."""
    fsys, path = fs.get_fs(uri)
    h = hashlib.sha256()
    files = sorted(fsys.find(path)) if fsys.isdir(path) else [path]
    for p in files:
        if fsys.isdir(path):
            h.update(p[len(path):].encode())
        with fsys.open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return f"sha256:{h.hexdigest()}"


def package_versions() -> dict[str, str]:
    out = {}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def base_manifest(input_uri: str, input_hash: str, config: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__
    from ..provenance import git_sha

    return {
        "schema": MANIFEST_SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "input": {"uri": str(input_uri), "hash": input_hash},
        "code_version": __version__,
        "git_sha": git_sha(),
        "config": config,
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
    }
