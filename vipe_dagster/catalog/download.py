"""Download and extract dataset shards (parity with ViPE's ``scripts/download_dataset.py``, made safe).

Flow (as in ViPE): read ``meta.parquet``, keep rows whose ``tar_name`` starts with ``prefix`` (a full shard
name selects that one shard), and for every selected shard and attribute fetch
``payload/<tar_name>/<attribute>.tar`` and extract it into ``<output>/<attribute>/``. Beyond ViPE:

- **checksummed**: each tar is streamed once into a local temporary file while its sha256 is computed; the
  tar digest and the sha256 of every extracted file are recorded in ``<output>/.vipe_download_state.json``;
- **resumable**: a shard whose recorded files all exist and verify (sha256, or size with ``verify="size"``)
  is skipped; a changed remote (size differs) or a corrupted local file makes it download again; an
  interrupted transfer keeps its bytes in ``<output>/.partial/`` and the next run continues from there
  (same remote path, size and data version, else it starts over);
- **safe extraction**: every member is checked before anything is written: absolute names, ``..``
  components, symlinks, hard links and devices reject the whole shard; only regular files are written,
  each atomically (temp file + rename) and only inside ``<output>/<attribute>/``;
- **incomplete shards are flagged**: the sequences found in a tar are compared with the shard's videos in
  ``meta.parquet`` (a real ``wsdg-a2de74e8/pose.tar`` holds 562 of 1,000 poses);
- **unhosted RGB is fetched** where ViPE's downloader gets it (:mod:`.fetchers`): Dynpose-100K++ clips from
  YouTube through ``yt-dlp``, Web360 from its zip archive; the fetched files are recorded like a shard's
  (status ``fetched``), so a rerun verifies them and fetches only what is still missing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from ..io import fs as vfs
from ..io.names import check_token, is_token, safe_local_join, sequence_name_problem
from .errors import DownloadError, SourceError, UnsafeArchiveError
from .fetchers import FetchUnavailable, RgbFetcher, RgbRequest
from .sources import ATTRIBUTES, DatasetSource, open_source

log = logging.getLogger(__name__)

STATE_FILE = ".vipe_download_state.json"
STATE_SCHEMA = 1
_CHUNK = 1 << 20
OK_STATUSES = ("extracted", "fetched", "skipped")
_SUFFIXES = {"rgb": (".mp4",), "depth": (".zip",), "pose": (".npz",), "intrinsics": (".npz", "_camera.txt")}


@dataclass
class ShardResult:
    tar_name: str
    attribute: str
    status: str  # extracted | fetched | skipped | missing | rejected | failed
    remote: str
    sha256: str | None = None
    bytes: int | None = None
    files: int = 0
    sequences_found: int = 0
    sequences_expected: int = 0
    missing_sequences: list[str] = field(default_factory=list)
    unexpected_sequences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return (self.status in OK_STATUSES and self.sequences_found >= self.sequences_expected
                and not self.missing_sequences)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["complete"] = self.complete
        d["missing_sequences"] = self.missing_sequences[:20]
        d["unexpected_sequences"] = self.unexpected_sequences[:20]
        return d


@dataclass
class DownloadReport:
    source: str
    data_version: str
    output: str
    shards: list[ShardResult]

    @property
    def ok(self) -> bool:
        """True when nothing was rejected or failed (missing remotes and incomplete shards are warnings)."""
        return all(s.status not in ("rejected", "failed") for s in self.shards)

    @property
    def incomplete(self) -> list[ShardResult]:
        return [s for s in self.shards if s.status in OK_STATUSES and not s.complete]

    @property
    def complete(self) -> bool:
        """True when every selected shard is present with all its sequences (the CLI's exit code 0)."""
        return all(s.complete for s in self.shards)

    def table(self) -> str:
        """One line per shard: name, status, sequences found / expected, first problem."""
        rows = [(f"{s.tar_name}/{s.attribute}", _label(s), f"{s.sequences_found}/{s.sequences_expected}",
                 "; ".join(s.problems)) for s in self.shards]
        head = ("shard", "status", "sequences", "problem")
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for s in self.shards:
            counts[s.status] = counts.get(s.status, 0) + 1
        return {"source": self.source, "data_version": self.data_version, "output": self.output,
                "counts": counts, "incomplete": [f"{s.tar_name}/{s.attribute}.tar" for s in self.incomplete],
                "shards": [s.as_dict() for s in self.shards]}


def _label(s: ShardResult) -> str:
    """The status a person reads: INCOMPLETE / MISSING / FAILED / REJECTED for anything not complete."""
    if s.complete:
        return s.status
    if s.status in OK_STATUSES:
        return "INCOMPLETE"
    return s.status.upper()


# ---------------------------------------------------------------------- selection
def select_shards(meta: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """Rows of ``meta`` whose ``tar_name`` starts with ``prefix`` (ViPE's filter); empty prefix = all."""
    prefix = (prefix or "").strip()
    return meta.filter(pl.col("tar_name").str.starts_with(prefix)) if prefix else meta


def parse_attributes(text: str | Sequence[str]) -> list[str]:
    items = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    bad = [a for a in items if a not in ATTRIBUTES]
    if bad or not items:
        raise SourceError(f"attributes {bad or items} not understood; choose from {', '.join(ATTRIBUTES)}")
    return list(dict.fromkeys(items))


def check_meta_names(meta: pl.DataFrame, label: str) -> None:
    """Refuse ``meta.parquet`` rows whose ``tar_name`` or ``sequence`` could address a path outside its
    folder.

    ``tar_name`` becomes ``payload/<tar_name>/`` on the source and ``.partial/<tar_name>-<attr>.tar`` in the
    output, so it must be a plain token (``wsdg-003e2c86``); a sequence name must be a valid artifact name.
    The first offending row is named (0-based row number in the file) and nothing is downloaded.
    """
    numbered = meta if "_row" in meta.columns else meta.with_row_index("_row")
    rows = numbered.select("_row", "tar_name", "sequence").iter_rows()
    for row, tar, seq in rows:
        if not is_token(tar):
            raise SourceError(f"{label} row {row}: tar_name {tar!r} is not a valid shard name (expected "
                              f"letters, digits, '.', '_' or '-' like 'wsdg-003e2c86', no path separators "
                              f"or '..'); "
                              f"refusing to download anything from this source")
        problem = sequence_name_problem(seq)
        if problem:
            raise SourceError(f"{label} row {row}: sequence {seq!r} is not a valid sequence name "
                              f"({problem}); refusing to download anything from this source")


# ---------------------------------------------------------------------- safe members
def member_target(member: tarfile.TarInfo, attribute: str, tar_label: str) -> str | None:
    """The relative path (inside ``<output>/<attribute>/``) a member extracts to; None for directories.

    Raises ``UnsafeArchiveError`` for anything that is not a plain file or folder with a safe relative name.
    Members may be stored as ``<file>`` or as ``<attribute>/<file>`` (the leading attribute is stripped).
    """
    name = member.name
    where = f"{tar_label}: member {name!r}"
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{where} is a {'symlink' if member.issym() else 'hard link'} "
                                 f"to {member.linkname!r}; only regular files are extracted")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device, fifo or other special file; only regular files are extracted")
    if "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(f"{where} contains a backslash or NUL; expected a plain relative path")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{where} is an absolute path; expected a path relative to {attribute}/")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"{where} contains '..'; it would be written outside {attribute}/")
    if parts and parts[0] == attribute:
        parts = parts[1:]
    if member.isdir() or not parts:
        return None
    return "/".join(parts)


def sequence_of(filename: str, attribute: str) -> str | None:
    base = posixpath.basename(filename)
    for suffix in _SUFFIXES[attribute]:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return None


# ---------------------------------------------------------------------- state file
class DownloadState:
    """``<output>/.vipe_download_state.json``: per shard the tar digest and every extracted file's digest."""

    def __init__(self, output: Path):
        self.path = output / STATE_FILE
        self.data: dict[str, Any] = {"schema": STATE_SCHEMA, "sources": {}, "shards": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
            except (json.JSONDecodeError, OSError) as exc:
                raise DownloadError(f"{self.path}: unreadable download state ({exc}); delete it to start over") from exc
            if not isinstance(loaded, dict) or loaded.get("schema") != STATE_SCHEMA:
                raise DownloadError(f"{self.path}: state schema {loaded.get('schema') if isinstance(loaded, dict) else '?'}"
                                    f", expected {STATE_SCHEMA}")
            self.data = loaded

    @staticmethod
    def key(tar_name: str, attribute: str) -> str:
        return f"{tar_name}/{attribute}"

    def get(self, tar_name: str, attribute: str) -> dict[str, Any] | None:
        return self.data["shards"].get(self.key(tar_name, attribute))

    def put(self, tar_name: str, attribute: str, entry: dict[str, Any]) -> None:
        self.data["shards"][self.key(tar_name, attribute)] = entry
        self.save()

    def drop(self, tar_name: str, attribute: str) -> None:
        if self.data["shards"].pop(self.key(tar_name, attribute), None) is not None:
            self.save()

    def note_source(self, uri: str, version: str) -> None:
        self.data["sources"][uri] = {"data_version": version, "seen": _now()}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        vfs.write_text(str(self.path), json.dumps(self.data, indent=1, sort_keys=True))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def verify_entry(output: Path, attribute: str, entry: dict[str, Any], mode: str = "sha256") -> list[str]:
    """Problems with the files a state entry recorded (empty list = all present and matching)."""
    problems = []
    for rel, rec in sorted(entry.get("files", {}).items()):
        p = output / attribute / rel
        if not p.is_file():
            problems.append(f"{p} is missing")
        elif p.stat().st_size != rec["bytes"]:
            problems.append(f"{p} has {p.stat().st_size} bytes, recorded {rec['bytes']}")
        elif mode == "sha256" and file_sha256(p) != rec["sha256"]:
            problems.append(f"{p} sha256 differs from the recorded {rec['sha256'][:12]}...")
    return problems


# ---------------------------------------------------------------------- download
def download(source: str | DatasetSource, prefix: str, attributes: str | Sequence[str], output: str | os.PathLike,
             *, verify: str = "sha256", revision: str | None = None,
             progress: Callable[[ShardResult], None] | None = None,
             rgb_fetcher: RgbFetcher | None = None) -> DownloadReport:
    """Download and safely extract the selected shards; see the module docstring.

    Returns a report; shards that were rejected (unsafe members) or failed are listed there, nothing of
    them is extracted. With ``rgb_fetcher`` (e.g. :func:`.fetchers.default_rgb_fetcher`, what the CLI
    passes) a missing remote RGB tar is fetched from the dataset's original source; without one nothing is
    fetched (the library never reaches the internet on its own). Other missing remote tars, and RGB whose
    fetcher cannot run, are reported as ``missing``.
    """
    if verify not in ("sha256", "size"):
        raise DownloadError(f"verify must be 'sha256' or 'size', got {verify!r}")
    src = source if isinstance(source, DatasetSource) else open_source(str(source), revision=revision)
    attrs = parse_attributes(attributes)
    out = Path(output).expanduser().absolute()
    meta = src.read_meta()
    selected = select_shards(meta.with_row_index("_row"), prefix)
    if selected.height == 0:
        sample = meta.get_column("tar_name").unique().sort().head(5).to_list()
        raise SourceError(f"no shard of {src.display(src.meta_path())} matches prefix {prefix!r} "
                          f"(shards look like {sample})")
    check_meta_names(selected, src.display(src.meta_path()))
    expected: dict[str, list[str]] = {
        t: seqs for t, seqs in selected.group_by("tar_name").agg(pl.col("sequence")).sort("tar_name").iter_rows()
    }
    rgb_rows: dict[str, list[RgbRequest]] = {}
    if "rgb" in attrs:
        cols = selected.columns
        for row in selected.iter_rows(named=True):
            rgb_rows.setdefault(row["tar_name"], []).append(RgbRequest(
                str(row["sequence"]), int(row["num_frames"]),
                row.get("youtube_link") if "youtube_link" in cols else None,
                row.get("youtube_timestamp") if "youtube_timestamp" in cols else None))
    out.mkdir(parents=True, exist_ok=True)
    version = src.data_version()
    results: list[ShardResult] = []
    with _output_lock(out):
        state = DownloadState(out)
        state.note_source(src.uri, version)
        for tar_name, seqs in expected.items():
            for attr in attrs:
                fetcher = rgb_fetcher if attr == "rgb" else None
                res = _one_shard(src, tar_name, attr, seqs, out, state, verify, version, fetcher,
                                 rgb_rows.get(tar_name, []))
                results.append(res)
                log.info("%s/%s.tar: %s (%d/%d sequences)%s", tar_name, attr, res.status, res.sequences_found,
                         res.sequences_expected,
                         "" if res.complete or res.status in ("missing", "rejected", "failed") else " INCOMPLETE")
                if progress:
                    progress(res)
    return DownloadReport(src.uri, version, str(out), results)


@contextlib.contextmanager
def _output_lock(out: Path) -> Iterator[None]:
    """One downloader per output folder (they share the state file and the partial downloads)."""
    fd = os.open(out / ".vipe_download.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(f"another download is writing to {out} (lock {out / '.vipe_download.lock'})") from None
        yield
    finally:
        os.close(fd)


def _one_shard(src: DatasetSource, tar_name: str, attr: str, seqs: list[str], out: Path, state: DownloadState,
               verify: str, version: str, fetcher: RgbFetcher | None = None,
               rgb_requests: list[RgbRequest] | None = None) -> ShardResult:
    remote = src.shard_path(tar_name, attr)
    res = ShardResult(tar_name, attr, "missing", src.display(remote), sequences_expected=len(seqs))
    expected = set(seqs)
    if not src.exists(remote):
        note = " (Dynpose RGB is not hosted; ViPE fetches it from YouTube)" if (
            attr == "rgb" and src.spec is not None and not src.spec.rgb_hosted) else ""
        res.problems.append(f"{res.remote} does not exist{note}")
        if fetcher is not None:
            _fetch_rgb(fetcher, res, rgb_requests or [], expected, out, state, verify, version)
        return res
    remote_size = src.info(remote).get("size")
    entry = state.get(tar_name, attr)
    if entry is not None:
        stale = remote_size is not None and entry.get("bytes") is not None and int(remote_size) != entry["bytes"]
        problems = ["remote size changed"] if stale else verify_entry(out, attr, entry, verify)
        if not problems:
            _fill_from_entry(res, entry, expected, "skipped")
            return res
        log.warning("%s/%s.tar will be downloaded again: %s", tar_name, attr, "; ".join(problems[:3]))
    tmp_dir = out / ".partial"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    part = safe_local_join(tmp_dir, f"{tar_name}-{attr}.tar", where=f"staging file of {tar_name}/{attr}.tar")
    keep_partial = False
    try:
        res.sha256, res.bytes = _fetch(src, remote, part, remote_size, version)
        files = _extract(str(part), res.remote, attr, out)
    except UnsafeArchiveError as exc:
        res.status = "rejected"
        res.problems.append(str(exc))
        state.drop(tar_name, attr)
        log.error("%s", exc)
        return res
    except _TransferError as exc:  # interrupted transfer: keep the bytes so a rerun continues from there
        keep_partial = True
        res.status = "failed"
        res.problems.append(f"{res.remote}: {exc.__cause__ or exc}")
        log.error("%s: transfer interrupted after %d bytes (%s); rerun to resume", res.remote,
                  part.stat().st_size if part.exists() else 0, exc.__cause__ or exc)
        return res
    except (DownloadError, SourceError, tarfile.TarError, OSError) as exc:
        res.status = "failed"
        res.problems.append(f"{res.remote}: {exc}")
        log.error("%s: %s", res.remote, exc)
        return res
    finally:
        if not keep_partial:
            for p in (part, part.with_suffix(".json")):
                if p.exists():
                    p.unlink()
        if tmp_dir.exists() and not any(tmp_dir.iterdir()):
            tmp_dir.rmdir()
    entry = {"tar_sha256": res.sha256, "bytes": res.bytes, "remote": res.remote, "data_version": version,
             "extracted": _now(), "files": files, "expected_sequences": len(seqs)}
    _fill_from_entry(res, entry, expected, "extracted")
    entry["complete"] = res.complete
    entry["sequences_found"] = res.sequences_found
    state.put(tar_name, attr, entry)
    return res


def _fetch_rgb(fetcher: RgbFetcher, res: ShardResult, requests: list[RgbRequest], expected: set[str],
               out: Path, state: DownloadState, verify: str, version: str) -> None:
    """RGB of a shard whose tar is not hosted, from the dataset's original source (see .fetchers)."""
    entry = state.get(res.tar_name, "rgb") or {}
    files = {}
    if entry.get("fetched_from"):  # keep what an earlier run fetched and still verifies
        for rel, rec in entry.get("files", {}).items():
            if not verify_entry(out, "rgb", {"files": {rel: rec}}, verify):
                files[rel] = rec
    have = {sequence_of(rel, "rgb") for rel in files}
    todo = [r for r in requests if r.sequence not in have]
    if not todo and files:
        _fill_from_entry(res, {**entry, "files": files}, expected, "skipped")
        res.remote = entry.get("fetched_from", res.remote)
        return
    try:
        fetcher.check()
    except FetchUnavailable as exc:
        res.problems.append(str(exc))
        log.error("%s/rgb: %s", res.tar_name, exc)
        return
    dest = out / "rgb"
    if dest.exists() and dest.resolve().parent != out.resolve():
        res.status = "rejected"
        res.problems.append(f"{dest} resolves to {dest.resolve()}, outside {out}; refusing to write fetched "
                            f"RGB through a symlinked folder")
        return
    try:
        dest.mkdir(parents=True, exist_ok=True)
        got = fetcher.fetch(todo, dest)
    except (DownloadError, OSError) as exc:
        res.status = "failed"
        res.problems.append(str(exc))
        log.error("%s/rgb: %s", res.tar_name, exc)
        return
    for rel, rec in got.files.items():
        files[rel] = {"sha256": rec["sha256"], "bytes": rec["bytes"]}
    new_entry = {"tar_sha256": None, "bytes": None, "remote": fetcher.source, "fetched_from": fetcher.source,
                 "data_version": version, "extracted": _now(), "files": files,
                 "expected_sequences": len(expected)}
    res.problems.clear()
    _fill_from_entry(res, new_entry, expected, "fetched")
    res.remote = fetcher.source
    for seq, why in sorted(got.problems.items())[:5]:
        res.problems.append(f"{seq}: {why}")
    if len(got.problems) > 5:
        res.problems.append(f"... and {len(got.problems) - 5} more sequence(s) not fetched")
    new_entry["complete"] = res.complete
    new_entry["sequences_found"] = res.sequences_found
    state.put(res.tar_name, "rgb", new_entry)


class _TransferError(DownloadError):
    """Reading the remote tar failed part-way (network, server); the partial file is kept."""


def _fetch(src: DatasetSource, remote: str, part: Path, remote_size: int | None, version: str) -> tuple[str, int]:
    """Stream ``remote`` into ``part`` (continuing a kept partial download of the same remote version).

    Returns ``(sha256 hex, bytes)``. The sidecar ``part.json`` identifies what the partial bytes belong to;
    a partial file of another remote, size or data version is discarded.
    """
    sidecar = part.with_suffix(".json")
    ident = {"remote": src.display(remote), "size": remote_size, "data_version": version}
    h, offset = hashlib.sha256(), 0
    if part.exists() and sidecar.exists():
        try:
            same = json.loads(sidecar.read_text()) == ident
        except (json.JSONDecodeError, OSError):
            same = False
        size = part.stat().st_size
        if same and remote_size is not None and 0 < size < int(remote_size):
            with open(part, "rb") as f:
                while block := f.read(_CHUNK):
                    h.update(block)
            offset = size
            log.info("resuming %s at byte %d of %d", ident["remote"], offset, remote_size)
    if offset == 0:
        part.unlink(missing_ok=True)
        vfs.write_text(str(sidecar), json.dumps(ident))
    nbytes = offset
    with open(part, "ab" if offset else "wb") as fout:
        try:
            with src.open(remote, block_size=8 * _CHUNK) as fin:
                if offset:
                    fin.seek(offset)
                while block := fin.read(8 * _CHUNK):
                    h.update(block)
                    fout.write(block)
                    nbytes += len(block)
        except SourceError:
            raise
        except Exception as exc:
            fout.flush()
            raise _TransferError(f"transfer of {ident['remote']} interrupted") from exc
    if remote_size is not None and nbytes != int(remote_size):
        raise DownloadError(f"{ident['remote']}: read {nbytes} bytes, the source reports {remote_size}")
    return h.hexdigest(), nbytes


def _fill_from_entry(res: ShardResult, entry: dict[str, Any], expected: set[str], status: str) -> None:
    found = {sequence_of(rel, res.attribute) for rel in entry.get("files", {})} - {None}
    res.status = status
    res.sha256 = res.sha256 or entry.get("tar_sha256")
    res.bytes = res.bytes if res.bytes is not None else entry.get("bytes")
    res.files = len(entry.get("files", {}))
    res.sequences_found = len(found & expected)
    res.missing_sequences = sorted(expected - found)
    res.unexpected_sequences = sorted(found - expected)
    if res.missing_sequences:
        res.problems.append(f"incomplete shard: {res.sequences_found} of {len(expected)} sequences in "
                            f"{res.tar_name}/{res.attribute}.tar")
    if res.unexpected_sequences:
        res.problems.append(f"{len(res.unexpected_sequences)} sequence(s) in the tar are not in meta.parquet")


def _extract(tar_path: str, label: str, attribute: str, out: Path) -> dict[str, dict[str, Any]]:
    """Validate every member first, then write the regular files atomically under ``out/attribute``."""
    dest_root = (out / attribute).resolve()
    if dest_root.parent != out.resolve():
        raise UnsafeArchiveError(f"{out / attribute} resolves to {dest_root}, outside {out}; "
                                 f"refusing to extract {label} through a symlinked folder")
    try:
        tf = tarfile.open(tar_path, mode="r:*")
    except tarfile.TarError as exc:
        raise DownloadError(f"{label}: not a tar archive ({exc})") from exc
    with tf:
        plan: list[tuple[tarfile.TarInfo, str]] = []
        seen: set[str] = set()
        for member in tf.getmembers():
            rel = member_target(member, attribute, label)
            if rel is None:
                continue
            target = (dest_root / rel).resolve()
            if dest_root not in target.parents:
                raise UnsafeArchiveError(f"{label}: member {member.name!r} resolves to {target}, outside {dest_root}")
            if rel in seen:
                raise UnsafeArchiveError(f"{label}: member {member.name!r} appears twice")
            seen.add(rel)
            plan.append((member, rel))
        files: dict[str, dict[str, Any]] = {}
        for member, rel in plan:
            src = tf.extractfile(member)
            if src is None:
                raise DownloadError(f"{label}: member {member.name!r} has no data")
            h, n = hashlib.sha256(), 0
            with src, vfs.atomic_open(str(dest_root / rel), "wb") as dst:
                while block := src.read(_CHUNK):
                    h.update(block)
                    dst.write(block)
                    n += len(block)
            files[rel] = {"sha256": h.hexdigest(), "bytes": n}
    return files


def remove_shard(output: str | os.PathLike, tar_name: str, attributes: Iterable[str] = ATTRIBUTES) -> int:
    """Delete the files a shard extracted (per the state file) and forget it; returns files removed."""
    out = Path(output)
    check_token(tar_name, "shard name")
    state = DownloadState(out)
    removed = 0
    for attr in attributes:
        entry = state.get(tar_name, attr)
        if not entry:
            continue
        for rel in entry.get("files", {}):
            p = out / attr / rel
            if p.is_file():
                p.unlink()
                removed += 1
        state.drop(tar_name, attr)
    partial = out / ".partial"
    if partial.exists() and not any(partial.iterdir()):
        shutil.rmtree(partial, ignore_errors=True)
    return removed
