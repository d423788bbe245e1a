"""One generation per artifact set: the rule that keeps files of different runs from being paired.

A *generation* is one run's artifact set of a sequence. Ingest (``begin_generation``) opens a new one;
every stage that later writes an artifact of that sequence joins it. The rule, applied by
``ArtifactStore``'s writers and checked by :func:`check_set`, which every consumer calls:

- **stamp**: every file a writer produces carries the generation id: ``generation`` array in the npz files
  (pose, intrinsics, sparse map), the zip comment ``vipe-generation=<id>`` of depth/mask zips, the ``comment``
  tag of the rgb mp4, a ``generation`` key in info.pkl. Readers that do not know the stamp ignore it (ViPE's
  tools, the EgoX renderer).
- **record**: ``vipe/<n>_manifest.json`` holds ``generation: {id, created, frames, artifacts}``; after every
  write the artifact's entry (frames, bytes, sha256 and, for derived artifacts, the sha256 of the inputs it
  was computed from) is added and the manifest is rewritten, so the manifest always describes what is on
  disk. A new generation's record is published right after its first file (the rgb) is in place, and files
  of the previous generation are then removed, so a killed re-run leaves either the old set, or a new set
  whose stale files are refused.
- **check**: a set is consistent when every stamped file carries the manifest's generation id, every file the
  record lists is stamped, the small files (npz, txt, pkl) still have their recorded sha256, derived artifacts
  were computed from the inputs now present, and the per-frame attributes have one frame count. A consumer
  refuses an inconsistent set with a message naming the file, its generation and the expected one.
- **compatibility**: files without a stamp and not listed by a record (ViPE's released datasets, results of
  ViPE itself) are accepted as they are; without any record the stamps present must agree with each other.
  For such unversioned sets a frame-count mismatch is a warning, not an error (the released datasets have
  known off-by-one rgb/pose counts).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import logging
import pickle
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ArtifactError
from . import fs

if TYPE_CHECKING:
    from .artifacts import ArtifactStore

log = logging.getLogger(__name__)

RECORD_KEY = "generation"
STAMP_PREFIX = "vipe-generation="
STAMPED_KINDS = ("rgb", "pose", "intrinsics", "sparse", "info", "depth", "mask")
HASHED_ONLY = ("camera", "phrases")  # companions without room for a stamp: checked by their recorded sha256
SMALL_KINDS = ("pose", "intrinsics", "camera", "phrases", "info")  # re-hashed on every check
PER_FRAME_KINDS = ("rgb", "pose", "intrinsics", "depth", "mask")
SET_KINDS = STAMPED_KINDS + HASHED_ONLY
INPUTS = {"depth": ("pose", "intrinsics"), "mask": ("pose", "intrinsics", "depth")}
"""Derived artifact -> the artifacts it is computed from (their recorded sha256 is kept with it)."""
PURGED_ON_NEW = ("pose", "intrinsics", "camera", "sparse", "info", "depth", "mask", "phrases", "vis",
                 "slam_map")
"""Files of a sequence that belong to the previous generation once a new rgb is in place."""


class GenerationError(ArtifactError):
    """An artifact set mixes files of different runs, or a file no longer matches its record."""


def new_generation_id() -> str:
    return f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def new_record(gen_id: str | None = None) -> dict[str, Any]:
    return {"id": gen_id or new_generation_id(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "artifacts": {}}


def stamp_text(gen_id: str) -> str:
    return f"{STAMP_PREFIX}{gen_id}"


def parse_stamp(text: object) -> str | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if isinstance(text, str) and text.startswith(STAMP_PREFIX):
        return text[len(STAMP_PREFIX):].strip() or None
    return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def artifact_entry(data: bytes | None = None, path: str | None = None,
                   frames: int | None = None) -> dict[str, Any]:
    """A record entry for a file just written (from its bytes or its local staging path)."""
    if data is not None:
        digest, size = sha256_bytes(data), len(data)
    else:
        assert path is not None
        import os

        digest, size = sha256_file(path), os.path.getsize(path)
    entry: dict[str, Any] = {"sha256": digest, "bytes": size, "written": _now()}
    if frames is not None:
        entry["frames"] = int(frames)
    return entry


def valid_record(rec: object, where: str) -> dict[str, Any] | None:
    """The manifest's generation record, or None when there is none; a malformed one is an error."""
    if rec is None:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) \
            or not isinstance(rec.get("artifacts"), dict):
        raise GenerationError(f"{where}: '{RECORD_KEY}' must be an object with a string 'id' and an "
                              f"'artifacts' object, got {str(rec)[:120]}")
    return rec


# ---------------------------------------------------------------------- reading stamps and counts
def read_stamp(store: ArtifactStore, kind: str, name: str) -> str | None:
    """The generation id stamped into one artifact file (None for files without a stamp)."""
    uri = store.path(kind, name)
    if kind in ("pose", "intrinsics", "sparse"):
        try:
            with np.load(io.BytesIO(fs.read_bytes(uri)), allow_pickle=False) as z:
                if "generation" not in z.files:
                    return None
                return str(z["generation"]) or None
        except Exception as exc:
            raise ArtifactError(f"{uri}: not a readable npz file ({exc})") from exc
    if kind in ("depth", "mask"):
        if kind == "depth" and not fs.exists(uri):
            return None  # depth given as .npy files (ArtifactStore.npy_depth_reader): no stamp
        try:
            with fs.open_read(uri) as f, zipfile.ZipFile(f) as zf:
                return parse_stamp(zf.comment)
        except zipfile.BadZipFile as exc:
            raise ArtifactError(f"{uri}: not a zip file ({exc})") from exc
    if kind == "info":
        from .artifacts import _SafeUnpickler

        try:
            obj = _SafeUnpickler(io.BytesIO(fs.read_bytes(uri))).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise ArtifactError(f"{uri}: not a readable pickle ({exc})") from exc
        return str(obj.get("generation")) if isinstance(obj, dict) and obj.get("generation") else None
    if kind == "rgb":
        import av

        try:
            with fs.open_read(uri) as f, av.open(f, mode="r") as c:
                return parse_stamp(c.metadata.get("comment"))
        except Exception as exc:
            raise ArtifactError(f"{uri}: not a readable video file ({type(exc).__name__}: {exc})") from exc
    return None


def frame_count(store: ArtifactStore, kind: str, name: str) -> int:
    """Number of frames of one per-frame artifact (rgb counted by demuxing)."""
    if kind == "rgb":
        from .video import probe

        return probe(store.path("rgb", name)).num_frames
    if kind == "pose":
        return len(store.read_pose(name)[0])
    if kind == "intrinsics":
        return len(store.read_intrinsics(name)[0])
    if kind == "depth":
        return store.depth_count(name)
    if kind == "mask":
        return store.mask_count(name)
    raise ArtifactError(f"{kind} is not a per-frame artifact")


# ---------------------------------------------------------------------- the check
@dataclass
class SetReport:
    """Outcome of :func:`check_set` for one sequence."""

    name: str
    generation: str | None
    stamps: dict[str, str | None] = field(default_factory=dict)
    counts: dict[str, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def versioned(self) -> bool:
        return self.generation is not None or any(self.stamps.values())

    def raise_if_bad(self) -> None:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
            raise GenerationError(self.problems[0] + more)


def check_set(store: ArtifactStore, name: str, kinds: Iterable[str] | None = None, counts: bool = True,
              hashes: bool = True) -> SetReport:
    """Check that the artifacts ``kinds`` (default: all) of sequence ``name`` form one generation.

    Only files that exist are looked at (whether a consumer needs a file is its own business).
    ``counts``: compare the frame counts of the per-frame attributes; ``hashes``: re-hash the small files.
    """
    wanted = [k for k in (kinds or SET_KINDS) if k in SET_KINDS]
    for k, deps in INPUTS.items():  # a derived artifact is only consistent together with its inputs
        if k in wanted:
            wanted += [d for d in deps if d not in wanted]
    man_uri = store.path("manifest", name)
    rec = None
    interrupted = False
    if fs.exists(man_uri):
        man = store.read_manifest(name)
        rec = valid_record(man.get(RECORD_KEY), man_uri)
        res = man.get("output_resolution")
        interrupted = isinstance(res, dict) and res.get("complete") is False
    gen = rec["id"] if rec else None
    rep = SetReport(name, gen)
    if interrupted:  # compat/resolution.py: a rewrite at the source size that did not finish
        rep.problems.append(f"{man_uri}: the rewrite of {name!r} at the source resolution "
                            f"(--output_resolution source) did not finish, so its files mix two sizes; "
                            f"re-run the pipeline for {name!r}")
    present = [k for k in wanted if store.exists(k, name)]
    for k in present:
        if k in STAMPED_KINDS:
            rep.stamps[k] = read_stamp(store, k, name)
    listed = rec["artifacts"] if rec else {}
    if rec is None:
        ids: dict[str, list[str]] = {}
        for k, s in rep.stamps.items():
            if s:
                ids.setdefault(s, []).append(k)
        if len(ids) > 1:
            (g1, k1), (g2, k2) = sorted(ids.items(), key=lambda kv: kv[1])[:2]
            rep.problems.append(
                f"{store.path(k1[0], name)} belongs to generation {g1} but {store.path(k2[0], name)} to "
                f"generation {g2}, and there is no generation record in {man_uri}: the files come from "
                f"different runs; re-run the pipeline for {name!r}")
    else:
        by_gen = [k for k, s in rep.stamps.items() if s == gen]
        witness = f" like {store.path(by_gen[0], name)}" if by_gen else ""
        for k, s in rep.stamps.items():
            uri = store.path(k, name)
            if s is not None and s != gen:
                rep.problems.append(
                    f"{uri} belongs to generation {s}, but {man_uri} expects generation {gen}{witness}: "
                    f"the set mixes files of two runs (an interrupted re-run?); re-run the pipeline for "
                    f"{name!r}")
            elif s is None and k in listed:
                rep.problems.append(
                    f"{uri} carries no generation stamp, but {man_uri} records it as written by generation "
                    f"{gen}: the file was replaced from elsewhere; re-run the pipeline for {name!r}")
    if counts and not rep.problems:
        from .checks import check_counts

        for k in PER_FRAME_KINDS:
            if k in present:
                rep.counts[k] = frame_count(store, k, name)
        mismatch = check_counts({store.path(k, name): v for k, v in rep.counts.items()}, f"sequence {name!r}")
        if mismatch and rep.versioned:
            rep.problems.append(mismatch[0] + (f" in generation {gen}" if gen else ""))
        elif mismatch:
            rep.warnings.append(mismatch[0] + " (unversioned artifacts, e.g. a released dataset)")
    if rec is not None and hashes and not rep.problems:
        for k in present:
            entry = listed.get(k)
            if k in SMALL_KINDS and isinstance(entry, dict) and entry.get("sha256"):
                digest = sha256_bytes(fs.read_bytes(store.path(k, name)))
                if digest != entry["sha256"]:
                    rep.problems.append(
                        f"{store.path(k, name)} changed after generation {gen} wrote it (sha256 "
                        f"{digest[:12]}..., recorded {entry['sha256'][:12]}...); re-run the pipeline for "
                        f"{name!r}")
    if rec is not None and not rep.problems:
        for k in present:
            entry = listed.get(k)
            inputs = entry.get("inputs") if isinstance(entry, dict) else None
            for dep, digest in (inputs or {}).items():
                now = listed.get(dep, {}).get("sha256") if isinstance(listed.get(dep), dict) else None
                if now is not None and now != digest and store.exists(dep, name):
                    rep.problems.append(
                        f"{store.path(k, name)} was computed from another {store.path(dep, name)} (sha256 "
                        f"{digest[:12]}..., now {now[:12]}...) of generation {gen}; re-run the {k} stage")
    for w in rep.warnings:
        log.warning("%s", w)
    return rep
