"""Released ViPE datasets and their mirrors, read through one fsspec code path.

A *source* is a dataset repository in the ViPE layout::

    meta.parquet                         one row per video: sequence, num_frames, tar_name (+ dataset extras)
    payload/<tar_name>/<attribute>.tar   attribute in rgb | depth | intrinsics | pose

It can live on the Hugging Face Hub (``hf://datasets/nvidia/vipe-web360``, read with huggingface_hub's
``HfFileSystem`` at a pinned revision), in a local folder (``file:///mirror`` or a plain path) or under an
``s3://bucket/prefix`` mirror. Whatever the location, every read goes through ``DatasetSource.fs`` (an
``fsspec.AbstractFileSystem``) and ``DatasetSource.root``; nothing below this module knows the difference.

Data version: for the Hub it is the revision's commit sha (a branch or tag is resolved once and then pinned);
for mirrors it is the S3 ETag or the sha256 of ``meta.parquet``.

``HF_HUB_OFFLINE=1`` is respected: no request is sent to the Hub; the revision and files come from the local
Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``), and anything not cached raises ``OfflineError``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import polars as pl
import pyarrow.parquet as pq

from ..io import fs as vfs
from .errors import OfflineError, SourceError

log = logging.getLogger(__name__)

ATTRIBUTES = ("rgb", "depth", "intrinsics", "pose")
BASE_COLUMNS = ("sequence", "num_frames", "tar_name")
META_FILE = "meta.parquet"
PAYLOAD_DIR = "payload"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TAR_RE = re.compile(r"^[a-z0-9]{4}-[0-9a-f]{8}$")


@dataclass(frozen=True)
class DatasetSpec:
    """One released ViPE dataset (facts from the dataset cards and ViPE's docs/dataset.md)."""

    name: str
    title: str
    hf_repo: str
    prefix: str
    license: str
    videos: int
    frames: int
    extra_columns: tuple[str, ...] = ()
    num_frames_range: tuple[int, int] | None = None
    rgb_hosted: bool = True

    @property
    def expected_columns(self) -> tuple[str, ...]:
        return BASE_COLUMNS + self.extra_columns

    @property
    def hf_uri(self) -> str:
        return f"hf://datasets/{self.hf_repo}"


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("dynpose-100kpp", "Dynpose-100K++", "nvidia/vipe-dynpose-100kpp", "dpsp", "CC-BY-NC-4.0",
                    99_501, 15_800_000, ("youtube_link", "youtube_timestamp"), None, rgb_hosted=False),
        DatasetSpec("wild-sdg-1m", "Wild-SDG-1M", "nvidia/vipe-wild-sdg-1m", "wsdg", "CC-BY-NC-4.0",
                    966_448, 78_200_000, (), (26, 81)),
        DatasetSpec("web360", "Web360", "nvidia/vipe-web360", "w360", "CC-BY-4.0",
                    2_114, 212_000, (), (70, 501)),
    )
}


def dataset_spec(key: str) -> DatasetSpec | None:
    """Look a dataset up by name, tar prefix or HF repo id (``nvidia/vipe-web360``)."""
    key = key.strip().lower()
    for spec in DATASETS.values():
        if key in (spec.name, spec.prefix, spec.hf_repo.lower(), spec.hf_repo.split("/")[-1].lower()):
            return spec
    return None


def spec_for_prefix(tar_name: str) -> DatasetSpec | None:
    head = tar_name.split("-", 1)[0]
    return next((s for s in DATASETS.values() if s.prefix == head), None)


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass
class DatasetSource:
    """A dataset repository reachable through ``fs`` under ``root`` (no trailing slash)."""

    uri: str
    fs: fsspec.AbstractFileSystem
    root: str
    kind: str  # "hf" | "hf-cache" | "local" | "s3" | other fsspec protocol
    revision: str | None = None
    spec: DatasetSpec | None = None
    _meta: pl.DataFrame | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ paths
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if self.root else posixpath.join(*parts)

    def meta_path(self) -> str:
        return self.path(META_FILE)

    def shard_path(self, tar_name: str, attribute: str) -> str:
        if attribute not in ATTRIBUTES:
            raise SourceError(f"unknown attribute {attribute!r}; expected one of {', '.join(ATTRIBUTES)}")
        return self.path(PAYLOAD_DIR, tar_name, f"{attribute}.tar")

    def display(self, path: str) -> str:
        """A human-readable location for messages (the source URI plus the relative path)."""
        rel = path[len(self.root):].lstrip("/") if path.startswith(self.root) else path
        return f"{self.uri.rstrip('/')}/{rel}"

    @property
    def name(self) -> str:
        if self.spec is not None:
            return self.spec.name
        return "custom:" + (posixpath.basename(self.root.rstrip("/")) or self.uri)

    # ------------------------------------------------------------------ reads
    def exists(self, path: str) -> bool:
        try:
            return bool(self.fs.exists(path))
        except Exception as exc:  # network errors, permission errors
            raise SourceError(f"cannot check {self.display(path)}: {exc}") from exc

    def info(self, path: str) -> dict[str, Any]:
        try:
            return dict(self.fs.info(path))
        except FileNotFoundError as exc:
            raise SourceError(f"{self.display(path)} does not exist") from exc
        except Exception as exc:
            raise SourceError(f"cannot stat {self.display(path)}: {exc}") from exc

    def open(self, path: str, block_size: int | None = None):
        try:
            kwargs = {"block_size": block_size} if block_size else {}
            return self.fs.open(path, "rb", **kwargs)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.display(path)} does not exist") from exc
        except Exception as exc:
            raise SourceError(f"cannot open {self.display(path)}: {exc}") from exc

    def read_meta(self, refresh: bool = False) -> pl.DataFrame:
        """``meta.parquet`` normalised: sequence (str), num_frames (int32), tar_name (str), extras, dataset."""
        if self._meta is not None and not refresh:
            return self._meta
        path = self.meta_path()
        with self.open(path) as f:
            try:
                table = pq.read_table(f)
            except Exception as exc:
                raise SourceError(f"{self.display(path)}: not a readable parquet file ({exc})") from exc
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        missing = [c for c in BASE_COLUMNS if c not in df.columns]
        if missing:
            raise SourceError(f"{self.display(path)}: missing column(s) {missing}; expected at least "
                              f"{list(BASE_COLUMNS)}, found {df.columns}")
        if self.spec is None:
            prefixes = df.select(pl.col("tar_name").cast(pl.Utf8).str.split("-").list.first().unique()).to_series()
            specs = {spec_for_prefix(p + "-") for p in prefixes.to_list() if p is not None}
            if len(specs) == 1 and None not in specs:
                self.spec = specs.pop()
        if self.spec is not None:
            missing = [c for c in self.spec.expected_columns if c not in df.columns]
            if missing:
                raise SourceError(f"{self.display(path)}: {self.spec.title} meta lacks column(s) {missing}; "
                                  f"expected {list(self.spec.expected_columns)}, found {df.columns}")
        try:
            out = df.select(
                pl.col("sequence").cast(pl.Utf8),
                pl.col("num_frames").cast(pl.Int32),
                pl.col("tar_name").cast(pl.Utf8),
                (pl.col("youtube_link").cast(pl.Utf8) if "youtube_link" in df.columns
                 else pl.lit(None, pl.Utf8).alias("youtube_link")),
                (pl.col("youtube_timestamp").cast(pl.Utf8) if "youtube_timestamp" in df.columns
                 else pl.lit(None, pl.Utf8).alias("youtube_timestamp")),
            ).with_columns(pl.lit(self.name).alias("dataset"))
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{self.display(path)}: column types not as expected ({exc})") from exc
        self._meta = out
        return out

    def list_payload(self) -> pl.DataFrame:
        """Every ``payload/<tar_name>/<attribute>.tar`` present: tar_name, attribute, path, bytes."""
        base = self.path(PAYLOAD_DIR)
        rows: dict[str, list] = {"tar_name": [], "attribute": [], "path": [], "bytes": []}
        try:
            found = self.fs.find(base, detail=True) if self.fs.exists(base) else {}
        except Exception as exc:
            raise SourceError(f"cannot list {self.display(base)}: {exc}") from exc
        for p, info in sorted(found.items()):
            rel = p[len(base):].lstrip("/") if p.startswith(base) else p
            parts = rel.split("/")
            if len(parts) != 2 or not parts[1].endswith(".tar"):
                continue
            attr = parts[1][: -len(".tar")]
            if attr not in ATTRIBUTES:
                continue
            rows["tar_name"].append(parts[0])
            rows["attribute"].append(attr)
            rows["path"].append(self.display(p))
            size = info.get("size")
            rows["bytes"].append(int(size) if size is not None else None)
        return pl.DataFrame(rows, schema={"tar_name": pl.Utf8, "attribute": pl.Utf8, "path": pl.Utf8,
                                          "bytes": pl.Int64})

    def data_version(self) -> str:
        """The revision sha on the Hub; otherwise the meta.parquet ETag or content sha256."""
        if self.revision:
            return self.revision
        info = self.info(self.meta_path())
        for key in ("ETag", "etag", "e_tag"):
            if info.get(key):
                return "etag:" + str(info[key]).strip('"')
        h = hashlib.sha256()
        with self.open(self.meta_path()) as f:
            while block := f.read(1 << 20):
                h.update(block)
        return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------- resolution
_HF_URI = re.compile(r"^hf://(?:(datasets|spaces|models)/)?([^/@]+/[^/@]+)(?:@([^/]+))?(/.*)?$")


def open_source(uri_or_name: str, revision: str | None = None, dataset: str | None = None,
                storage_options: dict[str, Any] | None = None) -> DatasetSource:
    """Resolve a dataset name (``web360``, ``w360``, ``nvidia/vipe-web360``) or a URI to a ``DatasetSource``.

    ``revision`` pins a Hub revision (branch, tag or sha); ``hf://...@<rev>`` does too. ``dataset`` names the
    registry entry for a mirror whose tar prefix should not be inferred. ``storage_options`` are passed to
    fsspec for remote mirrors (defaults come from the environment, see ``vipe_dagster.io.fs``).
    """
    raw = str(uri_or_name).strip()
    spec = dataset_spec(dataset) if dataset else None
    if dataset and spec is None:
        raise SourceError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if "://" not in raw and not raw.startswith(("/", ".", "~")) and not Path(raw).exists():
        named = dataset_spec(raw)
        if named is None:
            raise SourceError(f"{raw!r} is neither a known dataset ({', '.join(DATASETS)}) nor an existing path/URI")
        spec = spec or named
        raw = named.hf_uri
    if raw.startswith("hf://"):
        return _open_hf(raw, revision, spec)
    if revision:
        raise SourceError(f"--revision applies to hf:// sources only, not {raw}")
    if raw.startswith("file://") or "://" not in raw:
        fsys, root = vfs.get_fs(raw)
        if not fsys.isdir(root):
            raise SourceError(f"dataset folder {raw} does not exist")
        return DatasetSource(raw, fsys, root.rstrip("/"), "local", None, spec or _spec_from_folder(root))
    protocol = raw.split("://", 1)[0]
    try:
        if storage_options is not None:
            fsys, root = fsspec.core.url_to_fs(raw, **storage_options)
        else:
            fsys, root = vfs.get_fs(raw)
    except Exception as exc:
        raise SourceError(f"cannot open {raw}: {exc}") from exc
    return DatasetSource(raw, fsys, root.rstrip("/"), protocol, None, spec or _spec_from_folder(root))


def _spec_from_folder(root: str) -> DatasetSpec | None:
    """A mirror folder named like the dataset (``vipe-web360``, ``web360``, ``w360``); else inferred from meta."""
    return dataset_spec(posixpath.basename(root.rstrip("/")))


def _open_hf(uri: str, revision: str | None, spec: DatasetSpec | None) -> DatasetSource:
    m = _HF_URI.match(uri.rstrip("/"))
    if not m:
        raise SourceError(f"cannot parse {uri}; expected hf://datasets/<owner>/<repo>[@revision][/subdir]")
    repo_type, repo_id, uri_rev, sub = (m.group(1) or "models"), m.group(2), m.group(3), (m.group(4) or "")
    if repo_type != "datasets":
        raise SourceError(f"{uri}: ViPE datasets are Hub *dataset* repos (hf://datasets/...), not {repo_type}")
    if revision and uri_rev and revision != uri_rev:
        raise SourceError(f"{uri}: revision {uri_rev!r} in the URI disagrees with --revision {revision!r}")
    rev = revision or uri_rev
    spec = spec or dataset_spec(repo_id)
    base_uri = f"hf://datasets/{repo_id}"
    if hf_offline():
        sha, snap = _hf_cached_snapshot(repo_id, rev)
        root = str(snap) + sub
        log.info("HF_HUB_OFFLINE: using cached snapshot %s of %s", sha[:12], repo_id)
        return DatasetSource(f"{base_uri}@{sha}{sub}", fsspec.filesystem("file"), root.rstrip("/"),
                             "hf-cache", sha, spec)
    from huggingface_hub import HfApi, HfFileSystem

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read per call: constants are frozen at import
    try:
        info = HfApi(endpoint=endpoint).dataset_info(repo_id, revision=rev)
    except Exception as exc:
        raise SourceError(f"cannot resolve revision {rev or 'main'} of hf dataset {repo_id}: {exc}") from exc
    sha = info.sha
    if not sha:
        raise SourceError(f"hf dataset {repo_id}@{rev or 'main'} reported no commit sha")
    fsys = HfFileSystem(endpoint=endpoint) if endpoint else HfFileSystem()
    root = f"datasets/{repo_id}@{sha}{sub}"
    return DatasetSource(f"{base_uri}@{sha}{sub}", fsys, root.rstrip("/"), "hf", sha, spec)


def _hf_cached_snapshot(repo_id: str, rev: str | None) -> tuple[str, Path]:
    repo_dir = hf_cache_dir() / ("datasets--" + repo_id.replace("/", "--"))
    if rev and _SHA_RE.match(rev):
        sha = rev
    else:
        ref = repo_dir / "refs" / (rev or "main")
        if not ref.is_file():
            raise OfflineError(f"HF_HUB_OFFLINE is set and {ref} does not exist: revision {rev or 'main'} of "
                               f"{repo_id} was never cached; unset HF_HUB_OFFLINE or pin a cached sha")
        sha = ref.read_text().strip()
    snap = repo_dir / "snapshots" / sha
    if not snap.is_dir():
        raise OfflineError(f"HF_HUB_OFFLINE is set and snapshot {sha} of {repo_id} is not cached ({snap})")
    return sha, snap


def is_tar_name(name: str) -> bool:
    """True for a full shard name such as ``wsdg-003e2c86`` (prefix, dash, 8 hex digits)."""
    return bool(_TAR_RE.match(name))
