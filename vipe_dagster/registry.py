"""Video registry: partition keys for source videos and what each key points at.

Dagster partitions (and artifact sequence names) must match ``[a-z0-9_-]+``; source videos have
arbitrary names and live in folders or under ``s3://`` prefixes. The registry keeps one small JSON
document per key under ``<artifact root>/sources/<key>.json`` with the source URI, its cheap
fingerprint (local: size + mtime, S3: ETag), its data version (local: sha256 of the bytes, S3: the
ETag) and the per-video processing defaults (frame range, skip, processing size).

This module is engine code: it imports no dagster.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactError, InputError
from .io import ArtifactStore, fs
from .io.manifest import content_hash
from .io.video import VIDEO_EXTS

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[a-z0-9_-]+$")
MAX_KEY_LEN = 64
DEFAULT_LONG_SIDE = 512


def sanitize_key(name: str) -> str:
    """Turn a file name (or stem) into a partition key matching ``[a-z0-9_-]+``.

    ``"My Clip (2).MP4"`` -> ``"my-clip-2"``. The extension is dropped; runs of other characters
    become one ``-``; the result is at most 64 characters and never empty.
    """
    stem = Path(str(name).rstrip("/")).name
    for ext in VIDEO_EXTS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    key = re.sub(r"[^a-z0-9_-]+", "-", stem.lower())
    key = re.sub(r"-{2,}", "-", key).strip("-_")
    key = key[:MAX_KEY_LEN].strip("-_")
    return key or "video"


def is_valid_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key)) and len(key) <= MAX_KEY_LEN + 7


@dataclass
class SourceFile:
    """A video found at a watched location."""

    uri: str
    fingerprint: str  # cheap change detector: S3 ETag, or "<size>-<mtime_ns>" locally
    size: int
    etag: str | None = None
    mtime: float | None = None


@dataclass
class VideoEntry:
    """What a partition key stands for."""

    key: str
    uri: str
    fingerprint: str = ""
    data_version: str = ""
    start_frame: int | None = None
    end_frame: int | None = None
    frame_skip: int = 1
    long_side: int | None = DEFAULT_LONG_SIDE
    registered: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _etag(info: dict[str, Any]) -> str | None:
    for k in ("ETag", "etag", "e_tag"):
        if info.get(k):
            return str(info[k]).strip('"')
    return None


def _fingerprint(info: dict[str, Any]) -> tuple[str, str | None, float | None]:
    etag = _etag(info)
    mtime = info.get("mtime")
    if mtime is None and info.get("LastModified") is not None:
        lm = info["LastModified"]
        mtime = lm.timestamp() if hasattr(lm, "timestamp") else None
    if etag:
        return f"etag:{etag}", etag, mtime
    return f"{int(info.get('size') or 0)}-{int((mtime or 0) * 1e9)}", None, mtime


def stat_source(uri: str) -> SourceFile:
    """Fingerprint one source file (no content read)."""
    fsys, path = fs.get_fs(uri)
    if not fsys.exists(path):
        raise InputError(f"Video not found: {uri}")
    info = fsys.info(path)
    fp, etag, mtime = _fingerprint(info)
    return SourceFile(uri=uri, fingerprint=fp, size=int(info.get("size") or 0), etag=etag, mtime=mtime)


def source_data_version(uri: str, src: SourceFile | None = None) -> str:
    """Data version of a source video: the S3 ETag for ``s3://``, else sha256 of the content."""
    src = src or stat_source(uri)
    if fs.is_remote(uri) and src.etag:
        return f"etag:{src.etag}"
    return content_hash(uri)


def scan_location(location: str, recursive: bool = True) -> list[SourceFile]:
    """Video files (by extension) under a local folder or ``s3://`` prefix, sorted by URI."""
    fsys, path = fs.get_fs(location)
    if not fsys.exists(path):
        return []
    if recursive:
        found = fsys.find(path, detail=True)
    else:
        found = {e["name"]: e for e in fsys.ls(path, detail=True)}
    out = []
    remote = fs.is_remote(location)
    proto = location.split("://", 1)[0] if remote else ""
    for p, info in found.items():
        if info.get("type") == "directory":
            continue
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(".") or not name.lower().endswith(VIDEO_EXTS):
            continue
        uri = f"{proto}://{p}" if remote else p
        fp, etag, mtime = _fingerprint(info)
        out.append(SourceFile(uri=uri, fingerprint=fp, size=int(info.get("size") or 0), etag=etag, mtime=mtime))
    return sorted(out, key=lambda s: s.uri)


class VideoRegistry:
    """Partition key <-> source video mapping, stored beside the artifacts (``sources/<key>.json``)."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self.root = fs.join(store.root, "sources")
        self._by_uri: dict[str, str] | None = None  # uri -> key, loaded once per registry object

    def _path(self, key: str) -> str:
        if not is_valid_key(key):
            raise InputError(f"partition key {key!r} must match [a-z0-9_-]+ (at most {MAX_KEY_LEN} chars)")
        return fs.join(self.root, f"{key}.json")

    def keys(self) -> list[str]:
        return sorted(n[: -len(".json")] for n in fs.listdir(self.root)
                      if n.endswith(".json") and not n.startswith(fs._TMP_PREFIX))

    def entries(self) -> list[VideoEntry]:
        return [self.get(k) for k in self.keys()]

    def has(self, key: str) -> bool:
        return fs.exists(self._path(key))

    def get(self, key: str) -> VideoEntry:
        uri = self._path(key)
        if not fs.exists(uri):
            raise ArtifactError(f"video partition {key!r} is not registered (no {uri}); register it with "
                                f"`vipe-dagster demo VIDEO` or drop the file into a watched folder")
        try:
            d = json.loads(fs.read_text(uri))
            return VideoEntry(**d)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ArtifactError(f"{uri}: not a valid registry entry ({exc})") from exc

    def put(self, entry: VideoEntry) -> None:
        fs.write_text(self._path(entry.key), entry.to_json())
        if self._by_uri is not None:
            self._by_uri = {u: k for u, k in self._by_uri.items() if k != entry.key}
            self._by_uri[entry.uri] = entry.key

    def key_for_uri(self, uri: str) -> str | None:
        if self._by_uri is None:
            self._by_uri = {e.uri: e.key for e in self.entries()}
        return self._by_uri.get(uri)

    def register(self, uri: str, key: str | None = None, *, start_frame: int | None = None,
                 end_frame: int | None = None, frame_skip: int = 1, long_side: int | None = DEFAULT_LONG_SIDE,
                 src: SourceFile | None = None, data_version: str | None = None) -> tuple[VideoEntry, bool]:
        """Register (or refresh) ``uri``; returns ``(entry, changed)``.

        The key defaults to the sanitised file stem; if that key already names another URI, a short
        hash of the URI is appended. Re-registering an unchanged file changes nothing.
        """
        uri = str(uri)
        if not fs.is_remote(uri) and not uri.startswith("file://"):
            uri = str(Path(uri).expanduser().absolute())
        src = src or stat_source(uri)
        existing_key = self.key_for_uri(uri)
        if key is None:
            key = existing_key or sanitize_key(uri)
        elif not is_valid_key(key):
            raise InputError(f"partition key {key!r} for {uri} must match [a-z0-9_-]+")
        if existing_key is None and self.has(key) and self.get(key).uri != uri:
            key = f"{key[:MAX_KEY_LEN]}-{hashlib.sha1(uri.encode()).hexdigest()[:6]}"
        if self.has(key):
            old = self.get(key)
            same_opts = (old.start_frame, old.end_frame, old.frame_skip, old.long_side) == (
                start_frame, end_frame, frame_skip, long_side)
            if old.uri == uri and old.fingerprint == src.fingerprint and same_opts:
                return old, False
        entry = VideoEntry(
            key=key, uri=uri, fingerprint=src.fingerprint,
            data_version=data_version or source_data_version(uri, src),
            start_frame=start_frame, end_frame=end_frame, frame_skip=frame_skip, long_side=long_side,
            registered=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            extra={"size": src.size, **({"etag": src.etag} if src.etag else {})},
        )
        self.put(entry)
        log.info("registered video %s as partition %s (%s)", uri, key, entry.data_version)
        return entry, True

    def current_data_version(self, key: str) -> str:
        """Data version of the source now; reuses the stored one when the fingerprint is unchanged."""
        entry = self.get(key)
        src = stat_source(entry.uri)
        if src.fingerprint == entry.fingerprint and entry.data_version:
            return entry.data_version
        return source_data_version(entry.uri, src)
