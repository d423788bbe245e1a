"""ViPE-compatible artifact store (local folder or ``s3://`` prefix).

Layout under ``root`` for a sequence ``<n>`` (byte-compatible with ViPE, see docs/architecture.md):

- ``rgb/<n>.mp4``            H.264 video of the processed frames
- ``pose/<n>.npz``           ``data`` (N,4,4) float OpenCV camera-to-world, ``inds`` (N,) int
- ``intrinsics/<n>.npz``     ``data`` (N,4) fx fy cx cy (N,5 with MEI k1), ``inds`` (N,)
- ``intrinsics/<n>_camera.txt``  ``"<idx>: PINHOLE"`` per frame
- ``depth/<n>.zip``          ``00000.exr`` ... float16 EXR, channel ``Z``, metric z-depth (read-only
  alternative: a folder of ``.npy`` files, ``depth/<n>/*.npy`` or, for a root with one sequence,
  ``depth/*.npy``, e.g. ``00000.npy`` or ``depth_000000.npy``, one HxW array per frame in name order)
- ``mask/<n>.zip``           ``00000.png`` ... uint8 instance ids (0 = background)
- ``mask/<n>.txt``           ``"<id>: <phrase>"`` lines
- ``vipe/<n>_info.pkl``      ``{"ba_residual": float}`` (ViPE's discovery marker)
- ``vipe/<n>_manifest.json`` our provenance manifest
- ``vipe/<n>_sparse.npz``    our SLAM sparse map (keyframe observations + 3D points)
- ``vipe/<n>_slam_map.pt``   the SLAM map in ViPE's sense (keyframe points with colours), written on request

Every writer is atomic; every reader of per-frame data streams one frame at a time.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import pickle
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..camera import CAMERA_TYPES as _CAMERA_TYPES
from ..errors import ArtifactError
from . import fs
from . import generation as G
from . import manifest as M
from .exr import decode_depth_exr, encode_depth_exr
from .names import check_sequence_name, sequence_name_problem

log = logging.getLogger(__name__)

CAMERA_TYPES = _CAMERA_TYPES  # one list, vipe_dagster/camera.py
_CAMERA_LINE = re.compile(r"^\s*(\d+)\s*:\s*([A-Z_]+)\s*$")
_PHRASE_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")


@dataclass
class SparseMap:
    """Sparse SLAM map: 3D points and their 2D observations in keyframes.

    ``obs_frame[k]`` is a frame index (0-based in the artifact), ``obs_point[k]`` an index into
    ``points``, ``obs_uv[k]`` the observed pixel (x, y) in the stored rgb resolution.
    """

    points: np.ndarray  # (P,3) float32 world coordinates
    colors: np.ndarray  # (P,3) uint8
    obs_frame: np.ndarray  # (K,) int32
    obs_point: np.ndarray  # (K,) int32
    obs_uv: np.ndarray  # (K,2) float32
    keyframes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # frame ids

    def validate(self, name: str = "sparse map") -> None:
        p = len(self.points)
        if self.points.shape != (p, 3) or self.colors.shape != (p, 3):
            raise ArtifactError(f"{name}: points {self.points.shape} / colors {self.colors.shape}, expected (P,3)")
        k = len(self.obs_frame)
        if self.obs_point.shape != (k,) or self.obs_uv.shape != (k, 2):
            raise ArtifactError(f"{name}: observation arrays disagree in length ({k} frames, "
                                f"{self.obs_point.shape} points, {self.obs_uv.shape} uv)")
        if k and (self.obs_point.min() < 0 or self.obs_point.max() >= p):
            raise ArtifactError(f"{name}: observation references a point outside [0, {p - 1}]")


class ArtifactStore:
    """Reads and writes ViPE-format artifacts under a local folder or ``s3://`` prefix."""

    def __init__(self, root: str, versioned: bool = True):
        """``versioned=False`` writes ViPE's layout exactly, without generation stamps and records (what ViPE
        itself and the released datasets look like); readers accept both."""
        self.root = str(root)
        self.versioned = versioned
        # generation records opened in this process and not yet published: name -> (record, replaces_old_set)
        self._open: dict[str, tuple[dict[str, Any], bool]] = {}

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r}{'' if self.versioned else ', versioned=False'})"

    # ---------------------------------------------------------------- paths
    def path(self, kind: str, name: str) -> str:
        check_sequence_name(name, f"{kind} artifact of sequence")
        rel = {
            "rgb": f"rgb/{name}.mp4",
            "pose": f"pose/{name}.npz",
            "intrinsics": f"intrinsics/{name}.npz",
            "camera": f"intrinsics/{name}_camera.txt",
            "depth": f"depth/{name}.zip",
            "mask": f"mask/{name}.zip",
            "phrases": f"mask/{name}.txt",
            "info": f"vipe/{name}_info.pkl",
            "manifest": f"vipe/{name}_manifest.json",
            "sparse": f"vipe/{name}_sparse.npz",
            "vis": f"vipe/{name}_vis.mp4",
            "slam_map": f"vipe/{name}_slam_map.pt",
        }.get(kind)
        if rel is None:
            raise ArtifactError(f"unknown artifact kind {kind!r}")
        return fs.join(self.root, *rel.split("/"))

    def exists(self, kind: str, name: str) -> bool:
        if kind == "depth" and not fs.exists(self.path(kind, name)):
            return self.npy_depth_reader(name) is not None
        return fs.exists(self.path(kind, name))

    def npy_depth_reader(self, name: str) -> NpyDepthReader | None:
        """Depth given as ``.npy`` files instead of ``depth/<name>.zip`` (None when there are none): the
        folder ``depth/<name>/``, or ``depth/*.npy`` itself when the root holds only this sequence."""
        folder = fs.join(self.root, "depth", name)
        files = _npy_files(folder)
        if not files and not fs.exists(self.path("depth", name)):
            flat = _npy_files(fs.join(self.root, "depth"))
            if flat and self.sequences() == [name]:
                folder, files = fs.join(self.root, "depth"), flat
        return NpyDepthReader(folder, files) if files else None

    def sequences(self) -> list[str]:
        """Sequence names found in the store (by any of rgb/pose/intrinsics/depth/info files)."""
        names: set[str] = set()
        for sub, pattern in (
            ("vipe", r"^(.+)_info\.pkl$"),
            ("vipe", r"^(.+)_manifest\.json$"),
            ("pose", r"^(.+)\.npz$"),
            ("rgb", r"^(.+)\.mp4$"),
            ("depth", r"^(.+)\.zip$"),
        ):
            for entry in fs.listdir(fs.join(self.root, sub)):
                m = re.match(pattern, entry)
                if m and not entry.startswith(fs._TMP_PREFIX) and sequence_name_problem(m.group(1)) is None:
                    names.add(m.group(1))
        return sorted(names)

    # ---------------------------------------------------------------- generations (see io/generation.py)
    def generation_record(self, name: str) -> dict[str, Any] | None:
        """The published generation record of ``name`` (from its manifest), or None."""
        if not self.exists("manifest", name):
            return None
        return G.valid_record(self.read_manifest(name).get(G.RECORD_KEY), self.path("manifest", name))

    def _stamp(self, name: str) -> str | None:
        return G.stamp_text(self.generation_for_write(name)) if self.versioned else None

    def begin_generation(self, name: str) -> str:
        """Open a new generation for ``name`` (ingest does this before writing the rgb).

        Nothing changes on disk until the first artifact of the new generation is in place; then the record
        is published and the files of the previous generation are removed.
        """
        rec = G.new_record()
        self._open[name] = (rec, True)
        log.info("sequence %s: new generation %s", name, rec["id"])
        return rec["id"]

    def abort_generation(self, name: str) -> None:
        """Forget a generation opened by :meth:`begin_generation` whose first file was never written."""
        if self._open.get(name, (None, False))[1]:
            self._open.pop(name)

    def generation_for_write(self, name: str) -> str:
        """The generation id a writer stamps into a new file of ``name``."""
        if name in self._open:
            return self._open[name][0]["id"]
        rec = self.generation_record(name)
        if rec is not None:
            return rec["id"]
        # no record: files copied without their manifest join the generation their stamps name (when they
        # agree); an unversioned set (ViPE's own files, a released dataset) gets a new one for its first
        # versioned file
        ids = {G.read_stamp(self, k, name) for k in G.STAMPED_KINDS if self.exists(k, name)} - {None}
        rec = G.new_record(ids.pop() if len(ids) == 1 else None)
        self._open[name] = (rec, False)
        return rec["id"]

    def _record(self, name: str, kind: str, entry: dict[str, Any]) -> None:
        """Add ``kind``'s entry to the generation record and publish it in the manifest."""
        if not self.versioned:
            return
        replacing = False
        if name in self._open:
            rec, replacing = self._open.pop(name)
        else:
            rec = self.generation_record(name) or G.new_record()
        deps = G.INPUTS.get(kind, ())
        inputs = {d: rec["artifacts"][d]["sha256"] for d in deps
                  if isinstance(rec["artifacts"].get(d), dict) and rec["artifacts"][d].get("sha256")}
        if inputs:
            entry = {**entry, "inputs": inputs}
        if kind == "rgb" and "frames" in entry:
            rec["frames"] = entry["frames"]
        rec["artifacts"][kind] = entry
        manifest = self.read_manifest(name) if self.exists("manifest", name) else {"sequence": name}
        if replacing:
            # the previous run's manifest describes the old set: keep only what identifies the sequence
            old_id = (manifest.get(G.RECORD_KEY) or {}).get("id")
            superseded = {"generation": old_id, "created": manifest.get("created")}
            manifest = {"sequence": name, "superseded": superseded}
        manifest[G.RECORD_KEY] = rec
        self._write_manifest_raw(name, manifest)
        if replacing:
            removed = [self.path(k, name) for k in G.PURGED_ON_NEW
                       if k not in rec["artifacts"] and self.exists(k, name)]
            for uri in removed:
                fs.remove(uri)
            if removed:
                log.info("sequence %s: removed %d file(s) of the previous generation: %s", name, len(removed),
                         ", ".join(removed))

    def check_set(self, name: str, kinds=None, counts: bool = True) -> G.SetReport:
        """Refuse (GenerationError) a set whose files ``kinds`` mix generations or frame counts."""
        rep = G.check_set(self, name, kinds, counts=counts)
        rep.raise_if_bad()
        return rep

    # ---------------------------------------------------------------- npz helpers
    def _write_npz(self, uri: str, **arrays: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        fs.write_bytes(uri, data)
        return data

    def _write_stamped_npz(self, name: str, kind: str, frames: int | None, **arrays: np.ndarray) -> str:
        if self.versioned:
            arrays["generation"] = np.array(self.generation_for_write(name))
        uri = self.path(kind, name)
        data = self._write_npz(uri, **arrays)
        self._record(name, kind, G.artifact_entry(data, frames=frames))
        return uri

    def _read_npz(self, uri: str) -> dict[str, np.ndarray]:
        if not fs.exists(uri):
            raise ArtifactError(f"missing artifact file {uri}")
        try:
            with np.load(io.BytesIO(fs.read_bytes(uri)), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:
            raise ArtifactError(f"{uri}: not a readable npz file ({exc})") from exc

    @staticmethod
    def _inds(inds: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
        if inds is None:
            return np.arange(n, dtype=np.int64)
        arr = np.asarray(inds, dtype=np.int64)
        if arr.shape != (n,):
            raise ArtifactError(f"inds has shape {arr.shape}, expected ({n},)")
        return arr

    # ---------------------------------------------------------------- pose
    def read_keyframe_ids(self, name: str) -> np.ndarray | None:
        """The keyframe frame ids stored with the poses (None when the pose artifact has none)."""
        return self._read_npz(self.path("pose", name)).get("keyframe_ids")

    def write_pose(self, name: str, c2w: np.ndarray, inds=None, keyframe_ids=None, valid=None) -> str:
        """``valid`` (N,) bool: False for frames whose pose is not a measurement (tracking lost); stored as
        the extra array ``valid`` beside ViPE's ``data``/``inds`` (readers that do not know it ignore it)."""
        c2w = np.asarray(c2w)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise ArtifactError(f"pose for {name}: expected (N,4,4) camera-to-world, got {c2w.shape}")
        arrays: dict[str, np.ndarray] = {"data": c2w.astype(np.float32), "inds": self._inds(inds, len(c2w))}
        if keyframe_ids is not None:
            arrays["keyframe_ids"] = np.asarray(keyframe_ids, dtype=np.int64)
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != (len(c2w),):
                raise ArtifactError(f"pose for {name}: 'valid' has shape {valid.shape}, expected ({len(c2w)},)")
            arrays["valid"] = valid
        return self._write_stamped_npz(name, "pose", len(c2w), **arrays)

    def read_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        uri = self.path("pose", name)
        z = self._read_npz(uri)
        if "data" not in z or "inds" not in z:
            raise ArtifactError(f"{uri}: expected arrays 'data' and 'inds', found {sorted(z)}")
        data = z["data"]
        if data.ndim != 3 or data.shape[1:] != (4, 4):
            raise ArtifactError(f"{uri}: 'data' has shape {data.shape}, expected (N,4,4)")
        return data, z["inds"]

    def read_pose_flags(self, name: str) -> np.ndarray | None:
        """The raw per-frame ``valid`` flags of ``pose/<name>.npz`` (None when the file has none)."""
        uri = self.path("pose", name)
        z = self._read_npz(uri)
        if "valid" not in z:
            return None
        v = np.asarray(z["valid"], bool)
        n = len(z["data"]) if "data" in z else -1
        if v.shape != (n,):
            raise ArtifactError(f"{uri}: 'valid' has shape {v.shape}, expected ({n},)")
        return v

    def pose_check(self, name: str):
        """Poses, frame indices and their :class:`~.checks.PoseCheck` (the validation every reader uses)."""
        from .checks import check_poses

        data, inds = self.read_pose(name)
        pc = check_poses(data, self.path("pose", name), valid=self.read_pose_flags(name), inds=inds)
        return data, inds, pc

    def read_pose_valid(self, name: str) -> np.ndarray:
        """(N,) bool per pose row: False where the pose is not a measurement (a lost frame holds the last
        good pose). Results without the ``valid`` array (ViPE's own, the released datasets) are all valid
        where the pose is finite."""
        uri = self.path("pose", name)
        z = self._read_npz(uri)
        data = z.get("data")
        if data is None or data.ndim != 3 or data.shape[1:] != (4, 4):
            raise ArtifactError(f"{uri}: expected 'data' of shape (N,4,4)")
        finite = np.isfinite(data).all(axis=(1, 2))
        if "valid" not in z:
            return finite
        v = np.asarray(z["valid"], bool)
        if v.shape != (len(data),):
            raise ArtifactError(f"{uri}: 'valid' has shape {v.shape}, expected ({len(data)},)")
        return v & finite

    # ---------------------------------------------------------------- intrinsics
    def write_intrinsics(self, name: str, intr: np.ndarray, inds=None, camera_type: str = "PINHOLE") -> str:
        intr = np.asarray(intr, dtype=np.float32)
        if intr.ndim == 1:
            intr = intr[None]
        if intr.ndim != 2 or intr.shape[1] < 4:
            raise ArtifactError(f"intrinsics for {name}: expected (N,4+) fx fy cx cy, got {intr.shape}")
        if camera_type not in CAMERA_TYPES:
            raise ArtifactError(f"intrinsics for {name}: camera type {camera_type!r} not in {CAMERA_TYPES}")
        ind = self._inds(inds, len(intr))
        text = "".join(f"{i}: {camera_type}\n" for i in ind).encode("utf-8")
        fs.write_bytes(self.path("camera", name), text)
        self._record(name, "camera", G.artifact_entry(text))
        return self._write_stamped_npz(name, "intrinsics", len(intr), data=intr, inds=ind)

    def read_intrinsics(self, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Return ``(data, inds, camera_types)``; camera types default to PINHOLE if the txt is absent."""
        uri = self.path("intrinsics", name)
        z = self._read_npz(uri)
        if "data" not in z or "inds" not in z:
            raise ArtifactError(f"{uri}: expected arrays 'data' and 'inds', found {sorted(z)}")
        data, inds = z["data"], z["inds"]
        if data.ndim != 2 or data.shape[1] < 4:
            raise ArtifactError(f"{uri}: 'data' has shape {data.shape}, expected (N,4+)")
        types = ["PINHOLE"] * len(inds)
        cam_uri = self.path("camera", name)
        if fs.exists(cam_uri):
            by_idx = {}
            for lineno, line in enumerate(fs.read_text(cam_uri).splitlines(), 1):
                if not line.strip():
                    continue
                m = _CAMERA_LINE.match(line)
                if not m or m.group(2) not in CAMERA_TYPES:
                    raise ArtifactError(f"{cam_uri} line {lineno}: expected '<idx>: PINHOLE|MEI|PANORAMA', got {line!r}")
                by_idx[int(m.group(1))] = m.group(2)
            types = [by_idx.get(int(i), "PINHOLE") for i in inds]
        return data, inds, types

    # ---------------------------------------------------------------- depth
    def depth_writer(self, name: str) -> FrameZipWriter:
        return FrameZipWriter(self.path("depth", name), "exr", encode_depth_exr,
                              comment=self._stamp(name),
                              on_commit=lambda entry: self._record(name, "depth", entry))

    def write_depth(self, name: str, frames: Iterable[np.ndarray]) -> str:
        with self.depth_writer(name) as w:
            for d in frames:
                w.add(d)
        return self.path("depth", name)

    def _depth_reader(self, name: str) -> FrameZipReader | NpyDepthReader:
        uri = self.path("depth", name)
        if not fs.exists(uri):
            npy = self.npy_depth_reader(name)
            if npy is not None:
                return npy
        return FrameZipReader(uri, "exr", decode_depth_exr)

    def depth_count(self, name: str) -> int:
        return self._depth_reader(name).count()

    def iter_depth(self, name: str, frames: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(index, HxW float32 depth)``; a frame that fails to decode raises ArtifactError."""
        yield from self._depth_reader(name).iter(frames)

    def read_depth(self, name: str, index: int) -> np.ndarray:
        return self._depth_reader(name).read(index)

    # ---------------------------------------------------------------- masks
    def mask_writer(self, name: str) -> FrameZipWriter:
        return FrameZipWriter(self.path("mask", name), "png", _encode_mask_png,
                              comment=self._stamp(name),
                              on_commit=lambda entry: self._record(name, "mask", entry))

    def write_masks(self, name: str, frames: Iterable[np.ndarray], phrases: dict[int, str]) -> str:
        with self.mask_writer(name) as w:
            for m in frames:
                w.add(m)
        self.write_phrases(name, phrases)
        return self.path("mask", name)

    def write_phrases(self, name: str, phrases: dict[int, str]) -> None:
        phrases = {0: "background", **{int(k): v for k, v in phrases.items()}}
        text = "".join(f"{k}: {v}\n" for k, v in sorted(phrases.items())).encode("utf-8")
        fs.write_bytes(self.path("phrases", name), text)
        self._record(name, "phrases", G.artifact_entry(text))

    def read_phrases(self, name: str) -> dict[int, str]:
        uri = self.path("phrases", name)
        if not fs.exists(uri):
            raise ArtifactError(f"missing artifact file {uri}")
        out = {}
        for lineno, line in enumerate(fs.read_text(uri).splitlines(), 1):
            if not line.strip():
                continue
            m = _PHRASE_LINE.match(line)
            if not m:
                raise ArtifactError(f"{uri} line {lineno}: expected '<id>: <phrase>', got {line!r}")
            out[int(m.group(1))] = m.group(2)
        return out

    def mask_count(self, name: str) -> int:
        return FrameZipReader(self.path("mask", name), "png", _decode_mask_png).count()

    def iter_masks(self, name: str, frames: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        yield from FrameZipReader(self.path("mask", name), "png", _decode_mask_png).iter(frames)

    def read_mask(self, name: str, index: int) -> np.ndarray:
        return FrameZipReader(self.path("mask", name), "png", _decode_mask_png).read(index)

    # ---------------------------------------------------------------- rgb
    def rgb_writer(self, name: str, fps: float, crf: int | None = None):
        from .video import VideoWriter

        return VideoWriter(self.path("rgb", name), fps=fps, crf=crf,
                           metadata={"comment": self._stamp(name)} if self.versioned else None,
                           on_commit=lambda entry: self._record(name, "rgb", entry))

    def write_rgb(self, name: str, frames: Iterable[np.ndarray], fps: float) -> str:
        with self.rgb_writer(name, fps) as w:
            for f in frames:
                w.add(f)
        return self.path("rgb", name)

    def open_rgb(self, name: str, **kwargs):
        from .video import open_video

        uri = self.path("rgb", name)
        if not fs.exists(uri):
            raise ArtifactError(f"missing artifact file {uri}")
        return open_video(uri, **kwargs)

    # ---------------------------------------------------------------- info, manifest, sparse map
    def write_info(self, name: str, info: dict[str, Any]) -> None:
        stamp = {"generation": self.generation_for_write(name)} if self.versioned else {}
        data = pickle.dumps({**dict(info), **stamp}, protocol=4)
        fs.write_bytes(self.path("info", name), data)
        self._record(name, "info", G.artifact_entry(data))

    def read_info(self, name: str) -> dict[str, Any]:
        uri = self.path("info", name)
        if not fs.exists(uri):
            raise ArtifactError(f"missing artifact file {uri}")
        obj = _SafeUnpickler(io.BytesIO(fs.read_bytes(uri))).load()
        if not isinstance(obj, dict):
            raise ArtifactError(f"{uri}: expected a dict, got {type(obj).__name__}")
        obj.pop("generation", None)  # our stamp (see io/generation.py), not part of ViPE's info
        return obj

    def write_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        """Write the manifest; its generation record is always the store's (see io/generation.py), never the
        caller's copy, so a stage that read the manifest before writing its artifacts cannot drop their
        entries."""
        rec = self.generation_record(name)
        manifest = dict(manifest)
        if rec is not None:
            manifest[G.RECORD_KEY] = rec
        self._write_manifest_raw(name, manifest)

    def update_manifest(self, name: str, stage: str, sections: dict[str, Any] | None = None, *,
                        timings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Replace ``stage``'s own sections (and its prefixed timings) in the manifest, keeping every other
        stage's; a section or timing the stage does not own is a ``ValueError`` (io/manifest.SECTION_OWNERS).
        Writers hold the sequence lock (io/locks.py), so the read-modify-write is not raced. Returns the
        manifest as written."""
        from ..provenance import STAGE_SOURCES, code_version

        sections, timings = dict(sections or {}), dict(timings or {})
        M.check_section_owner(stage, sections, timings)
        man = self.read_manifest(name) if self.exists("manifest", name) else {"sequence": name}
        man.update(sections)
        if timings:
            man.setdefault("timings", {}).update(timings)
        stamp = {"written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "sections": sorted(sections)}
        if stage in STAGE_SOURCES:
            stamp["code_version"] = code_version(stage)
        man.setdefault("stages", {})[stage] = stamp
        M.derive_sections(man)
        self.write_manifest(name, man)
        return man

    def _write_manifest_raw(self, name: str, manifest: dict[str, Any]) -> None:
        fs.write_text(self.path("manifest", name), json.dumps(manifest, indent=2, sort_keys=True, default=_json_default))

    def read_manifest(self, name: str) -> dict[str, Any]:
        uri = self.path("manifest", name)
        if not fs.exists(uri):
            raise ArtifactError(f"missing artifact file {uri}")
        try:
            return json.loads(fs.read_text(uri))
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{uri}: invalid JSON ({exc})") from exc

    def write_slam_map(self, name: str, data: bytes) -> str:
        """Write ``vipe/<name>_slam_map.pt`` (serialised by :mod:`vipe_dagster.export.slam_map`, which also
        stamps the generation into it) and record it in the generation record."""
        uri = self.path("slam_map", name)
        fs.write_bytes(uri, data)
        self._record(name, "slam_map", G.artifact_entry(data))
        return uri

    def write_sparse_map(self, name: str, sm: SparseMap) -> None:
        sm.validate(f"sparse map for {name}")
        self._write_stamped_npz(
            name, "sparse", None,
            points=sm.points.astype(np.float32), colors=sm.colors.astype(np.uint8),
            obs_frame=sm.obs_frame.astype(np.int32), obs_point=sm.obs_point.astype(np.int32),
            obs_uv=sm.obs_uv.astype(np.float32), keyframes=np.asarray(sm.keyframes, np.int32),
        )

    def read_sparse_map(self, name: str) -> SparseMap:
        uri = self.path("sparse", name)
        z = self._read_npz(uri)
        missing = {"points", "colors", "obs_frame", "obs_point", "obs_uv"} - set(z)
        if missing:
            raise ArtifactError(f"{uri}: missing arrays {sorted(missing)}")
        sm = SparseMap(z["points"], z["colors"], z["obs_frame"], z["obs_point"], z["obs_uv"],
                       z.get("keyframes", np.zeros(0, np.int32)))
        sm.validate(uri)
        return sm


# -------------------------------------------------------------------- frame zips
class FrameZipWriter:
    """Streams frames into ``%05d.<ext>`` members of a zip written atomically at close."""

    def __init__(self, uri: str, ext: str, encode, comment: str | None = None, on_commit=None):
        self.uri, self.ext, self.encode = uri, ext, encode
        self.comment, self.on_commit = comment, on_commit
        self._tmp: str | None = None
        self._stack: ExitStack | None = None
        self._zip: zipfile.ZipFile | None = None
        self.count = 0
        self._shape: tuple[int, ...] | None = None

    def __enter__(self) -> FrameZipWriter:
        self._stack = ExitStack()
        self._tmp = tmp = self._stack.enter_context(fs.local_path_for_write(self.uri, suffix=".zip"))
        # png/exr are already compressed; storing avoids paying deflate twice
        self._zip = zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED)
        if self.comment:
            self._zip.comment = self.comment.encode("utf-8")
        return self

    def add(self, frame: np.ndarray) -> None:
        assert self._zip is not None, "use FrameZipWriter as a context manager"
        frame = np.asarray(frame)
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise ArtifactError(
                f"{self.uri}: frame {self.count} has shape {frame.shape}, expected {self._shape} like frame 0"
            )
        self._zip.writestr(f"{self.count:05d}.{self.ext}", self.encode(frame))
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._zip is not None and self._stack is not None
        self._zip.close()
        commit = exc_type is None and self.on_commit is not None
        entry = G.artifact_entry(path=self._tmp, frames=self.count) if commit else None
        # closing the stack renames the temp file into place, or deletes it if an exception is active
        self._stack.__exit__(exc_type, exc, tb)
        if entry is not None:
            self.on_commit(entry)


class FrameZipReader:
    """Random and streaming access to ``%05d.<ext>`` members; decodes one member at a time."""

    def __init__(self, uri: str, ext: str, decode):
        self.uri, self.ext, self.decode = uri, ext, decode
        if not fs.exists(uri):
            raise ArtifactError(f"missing artifact file {uri}")

    def _open(self):
        stack = ExitStack()
        f = stack.enter_context(fs.open_read(self.uri))
        try:
            z = stack.enter_context(zipfile.ZipFile(f))
        except zipfile.BadZipFile as exc:
            stack.close()
            raise ArtifactError(f"{self.uri}: not a zip file ({exc})") from exc
        return stack, z

    def _members(self, z: zipfile.ZipFile) -> dict[int, str]:
        out = {}
        pat = re.compile(rf"^(\d+)\.{self.ext}$")
        for n in z.namelist():
            m = pat.match(n.rsplit("/", 1)[-1])
            if m:
                out[int(m.group(1))] = n
        return dict(sorted(out.items()))

    def count(self) -> int:
        stack, z = self._open()
        with stack:
            return len(self._members(z))

    def iter(self, frames: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        stack, z = self._open()
        with stack:
            members = self._members(z)
            wanted = members.keys() if frames is None else frames
            for i in wanted:
                if i not in members:
                    raise ArtifactError(f"{self.uri}: frame {i} ({i:05d}.{self.ext}) is missing "
                                        f"(available: {len(members)} frames)")
                yield i, self.decode(z.read(members[i]), f"{self.uri}:{members[i]}")

    def read(self, index: int) -> np.ndarray:
        return next(self.iter([index]))[1]


_NPY_INDEX = re.compile(r"(\d+)\.npy$")


def _npy_files(folder: str) -> list[str]:
    """``.npy`` files of ``folder`` sorted by the frame number ending their name (``depth_000012.npy``)."""
    found = []
    for entry in fs.listdir(folder):
        m = _NPY_INDEX.search(entry)
        if m and not entry.startswith((".", fs._TMP_PREFIX)):
            found.append((int(m.group(1)), entry))
    return [fs.join(folder, e) for _, e in sorted(found)]


class NpyDepthReader:
    """Depth maps given as a folder of ``.npy`` files, one HxW float array (metres, z-depth) per frame.

    Frame ``i`` is the ``i``-th file in the order of the number at the end of the names, which must be
    consecutive (``00000.npy, 00001.npy, ...`` or ``depth_000001.npy, ...``); non-finite values stay NaN.
    Offers the interfaces of :class:`FrameZipReader` and of the viewer's frame zips.
    """

    def __init__(self, folder: str, files: list[str]):
        self.uri, self.files = folder, list(files)
        nums = [int(_NPY_INDEX.search(f).group(1)) for f in self.files]
        gaps = [(a, b) for a, b in zip(nums, nums[1:], strict=False) if b != a + 1]
        if gaps:
            a, b = gaps[0]
            raise ArtifactError(f"{folder}: depth .npy files must be numbered consecutively (one per frame), "
                                f"but {a} is followed by {b}")
        self._members = {i: f for i, f in enumerate(self.files)}

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, index: int) -> bool:
        return index in self._members

    def count(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        path = self._members.get(int(index))
        if path is None:
            raise ArtifactError(f"{self.uri}: frame {index} is missing (available: {len(self.files)} .npy "
                                f"files)")
        try:
            arr = np.load(io.BytesIO(fs.read_bytes(path)), allow_pickle=False)
        except Exception as exc:
            raise ArtifactError(f"{path}: not a readable .npy file ({exc})") from exc
        arr = np.squeeze(np.asarray(arr))
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise ArtifactError(f"{path}: expected an HxW numeric depth map, got shape {arr.shape} "
                                f"{arr.dtype}")
        return arr.astype(np.float32)

    def iter(self, frames: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        for i in range(len(self.files)) if frames is None else frames:
            yield int(i), self.read(int(i))

    def close(self) -> None:
        pass


def _encode_mask_png(mask: np.ndarray) -> bytes:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ArtifactError(f"mask must be HxW instance ids, got shape {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.min() < 0 or mask.max() > 255:
            raise ArtifactError(f"mask ids must fit uint8, got range [{mask.min()}, {mask.max()}]")
        mask = mask.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _decode_mask_png(data: bytes, name: str = "<bytes>") -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise ArtifactError(f"{name}: not a readable PNG ({exc})") from exc
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ArtifactError(f"{name}: expected a single-channel uint8 PNG, got shape {arr.shape}")
    return arr.astype(np.uint8)


class _SafeUnpickler(pickle.Unpickler):
    """ViPE's info.pkl holds plain dicts of numbers; refuse anything that needs a class import."""

    def find_class(self, module, name):
        raise ArtifactError(f"info.pkl references {module}.{name}; only plain dicts are accepted")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
