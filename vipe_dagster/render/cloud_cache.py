"""Background point clouds cached per exo result (a take's camera) and build settings.

Building the background cloud reads every frame of the exo result (video, depth, masks) and usually costs
more than rendering a short clip, so renders of the same take and camera (another point size, pinhole and
fisheye, a re-run after a code change elsewhere) reuse it:

- in memory, the last few clouds of this process;
- on disk (``$VIPE_CLOUD_CACHE``, else ``$XDG_CACHE_HOME/vipe_dagster/ego_clouds`` or
  ``~/.cache/vipe_dagster/ego_clouds``; ``VIPE_CLOUD_CACHE=off`` disables it), one ``.npz`` per cloud,
  written atomically, oldest files evicted beyond ``max_bytes``.

The key covers the result's location and sequence, its generation stamp, the size and modification time (or
ETag) of every artifact file the cloud is built from, the build settings and the code version of the
``ego_render`` stage, so a changed input or renderer never reads a stale cloud.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..io import fs
from .pointcloud import ArtifactReader, PointCloud

log = logging.getLogger(__name__)

_KINDS = ("pose", "intrinsics", "camera", "depth", "rgb", "mask", "phrases")


def _file_signature(uri: str) -> list:
    if not fs.exists(uri):
        return [uri, None]
    if not fs.is_remote(uri):
        st = os.stat(uri)
        return [os.path.realpath(uri), st.st_size, st.st_mtime_ns]
    fsys, path = fs.get_fs(uri)
    info = fsys.info(path)
    return [uri, info.get("size"), str(info.get("ETag") or info.get("etag") or info.get("LastModified") or "")]


def cache_key(reader: ArtifactReader, use_mean_bg: bool, step: int, voxel_size: float | None) -> str:
    from ..provenance import source_digest

    store, name = reader.store, reader.name
    parts = {
        "root": str(store.root) if fs.is_remote(str(store.root)) else os.path.realpath(str(store.root)),
        "sequence": name,
        "generation": (store.generation_record(name) or {}).get("id"),
        "files": [_file_signature(store.path(k, name)) for k in _KINDS],
        "settings": {"mean_bg": bool(use_mean_bg), "step": int(step), "voxel": voxel_size,
                     "range": list(reader.inference_range)},
        "code": source_digest("ego_render"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def default_directory() -> Path | None:
    env = os.environ.get("VIPE_CLOUD_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "none", "false"):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vipe_dagster" / "ego_clouds"


class CloudCache:
    """Memory (``memory_items`` clouds) + optional disk cache of :class:`PointCloud` by key."""

    def __init__(self, directory: str | Path | None, max_bytes: int = 2 << 30, memory_items: int = 2):
        self.directory = Path(directory) if directory is not None else None
        self.max_bytes = int(max_bytes)
        self.memory_items = int(memory_items)
        self._mem: OrderedDict[str, PointCloud] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"cloud-{key}.npz"

    def get(self, key: str) -> PointCloud | None:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        if self.directory is None:
            return None
        p = self._path(key)
        try:
            with np.load(p) as z:
                xyz, rgb = z["xyz"], z["rgb"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:  # a damaged file is a miss, not an error
            log.warning("ignoring unreadable cached cloud %s: %s", p, exc)
            return None
        if xyz.dtype != np.float32 or rgb.dtype != np.uint8 or xyz.shape != rgb.shape or xyz.ndim != 2:
            log.warning("ignoring malformed cached cloud %s", p)
            return None
        try:
            os.utime(p)  # most recently used survives eviction
        except OSError:
            pass
        cloud = PointCloud(xyz, rgb)
        self._remember(key, cloud)
        return cloud

    def _remember(self, key: str, cloud: PointCloud) -> None:
        with self._lock:
            self._mem[key] = cloud
            self._mem.move_to_end(key)
            while len(self._mem) > self.memory_items:
                self._mem.popitem(last=False)

    def put(self, key: str, cloud: PointCloud) -> None:
        self._remember(key, cloud)
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cloud-", suffix=".npz.tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, xyz=np.ascontiguousarray(cloud.xyz, np.float32),
                         rgb=np.ascontiguousarray(cloud.rgb, np.uint8))
            os.replace(tmp, self._path(key))
        except OSError as exc:
            log.warning("could not cache the background cloud in %s: %s", self.directory, exc)
            return
        self._evict()

    def _evict(self) -> None:
        assert self.directory is not None
        files = []
        for p in self.directory.glob("cloud-*.npz"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(s for _, s, _ in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
                total -= size
            except OSError:
                pass


_caches: dict[str, CloudCache] = {}
_caches_lock = threading.Lock()


def cache_for(setting: str | None) -> CloudCache | None:
    """The process-wide cache for an ``EgoRenderConfig.cloud_cache`` setting: ``"auto"`` (memory + the
    default folder, see :func:`default_directory`), ``"memory"`` (no disk), a folder, or None / ``"off"``."""
    if setting is None or str(setting).strip().lower() in ("off", "none", "false", "0", ""):
        return None
    if setting == "memory":
        directory = None
    elif setting == "auto":
        directory = default_directory()
    else:
        directory = Path(setting).expanduser()
    name = "<memory>" if directory is None else str(directory)
    with _caches_lock:
        if name not in _caches:
            _caches[name] = CloudCache(directory)
        return _caches[name]
