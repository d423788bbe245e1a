"""Scan ViPE-format artifact folders into tables: files present, per-video statistics, manifests, shards.

Everything here is computed in Python from the artifacts themselves (never from our earlier outputs) and
returned as polars DataFrames, which ``build.py`` writes to Parquet for the SQL models.

Per-video statistics (one row per sequence and artifact root):

- ``width``/``height``: rgb stream size, else the depth map size, else ``2*cx`` x ``2*cy`` (``size_source``);
- ``camera_type``: from ``intrinsics/<n>_camera.txt`` (``MIXED`` if frames disagree);
- ``fx, fy, cx, cy`` (and ``xi`` for MEI): medians over frames; ``fov_x_deg``/``fov_y_deg`` from the camera
  model (:func:`vipe_dagster.camera.field_of_view`): ``2 atan(W / 2fx)`` for PINHOLE, the angle between the
  border rays of the unified model for MEI; NULL for PANORAMA (and MIXED), with the reason in ``fov_note``
  (a panorama's zero intrinsics are valid and its fx..cy are NULL);
- ``path_length``: sum of distances between consecutive camera centres (artifact units, metres if metric);
  ``total_rotation_deg``: sum of geodesic angles between consecutive orientations; ``max_displacement`` and
  ``max_rotation_deg``: farthest from frame 0; ``is_static`` when both stay under the thresholds;
- ``depth_p05/p50/p95``: percentiles of valid depth (finite and > 0) over up to ``depth_frames`` evenly
  spaced frames; ``invalid_depth_fraction`` over the same pixels;
- every attribute's frame count (``rgb/pose/intrinsics/depth/mask_frames``, all counted, never sampled) and
  ``frame_counts_agree``; ``pose_valid``/``intrinsics_valid`` by the shared rules of ``io/checks.py``
  (finite, orthonormal, positive focal, frame indices), ``pose_usable_frames`` (not flagged invalid);
  ``generation``/``generation_ok`` by the one-generation rule of ``io/generation.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import camera as cam
from ..errors import VipeError
from ..io import ArtifactStore
from ..io import fs as vfs
from ..io import generation as G
from ..io.checks import check_counts, check_intrinsics
from .download import STATE_FILE

log = logging.getLogger(__name__)

STATIC_TRANSLATION = 0.01  # max camera-centre displacement (artifact units) for a static camera
STATIC_ROTATION_DEG = 1.0

_KINDS = (  # (subdir, regex -> sequence, attribute, format)
    ("rgb", re.compile(r"^(.+)\.mp4$"), "rgb", "mp4"),
    ("pose", re.compile(r"^(.+)\.npz$"), "pose", "npz"),
    ("intrinsics", re.compile(r"^(.+)_camera\.txt$"), "camera", "txt"),
    ("intrinsics", re.compile(r"^(.+)\.npz$"), "intrinsics", "npz"),
    ("depth", re.compile(r"^(.+)\.zip$"), "depth", "exr-zip"),
    ("mask", re.compile(r"^(.+)\.zip$"), "mask", "png-zip"),
    ("vipe", re.compile(r"^(.+)_manifest\.json$"), "manifest", "json"),
)

ARTIFACT_SCHEMA = {
    "root": pl.Utf8, "sequence": pl.Utf8, "attribute": pl.Utf8, "path": pl.Utf8, "format": pl.Utf8,
    "bytes": pl.Int64, "mtime": pl.Float64, "recorded_sha256": pl.Utf8, "tar_name": pl.Utf8,
}
STATS_SCHEMA = {
    "root": pl.Utf8, "sequence": pl.Utf8, "fingerprint": pl.Utf8,
    "pose_frames": pl.Int32, "intrinsics_frames": pl.Int32, "depth_frames": pl.Int32, "rgb_frames": pl.Int32,
    "mask_frames": pl.Int32, "pose_usable_frames": pl.Int32,
    "pose_valid": pl.Boolean, "intrinsics_valid": pl.Boolean, "depth_valid": pl.Boolean, "rgb_valid": pl.Boolean,
    "mask_valid": pl.Boolean, "frame_counts_agree": pl.Boolean, "generation": pl.Utf8,
    "generation_ok": pl.Boolean,
    "width": pl.Int32, "height": pl.Int32, "size_source": pl.Utf8, "camera_type": pl.Utf8,
    "fx": pl.Float64, "fy": pl.Float64, "cx": pl.Float64, "cy": pl.Float64,
    "xi": pl.Float64, "fov_x_deg": pl.Float64, "fov_y_deg": pl.Float64, "fov_note": pl.Utf8,
    "path_length": pl.Float64, "total_rotation_deg": pl.Float64, "max_displacement": pl.Float64,
    "max_rotation_deg": pl.Float64, "is_static": pl.Boolean,
    "depth_p05": pl.Float64, "depth_p50": pl.Float64, "depth_p95": pl.Float64,
    "invalid_depth_fraction": pl.Float64, "depth_frames_sampled": pl.Int32, "problems": pl.Utf8,
}
MANIFEST_SCHEMA = {
    "root": pl.Utf8, "sequence": pl.Utf8, "path": pl.Utf8, "created": pl.Utf8, "input_uri": pl.Utf8,
    "input_hash": pl.Utf8, "code_version": pl.Utf8, "scale": pl.Utf8, "config_json": pl.Utf8,
    "packages_json": pl.Utf8, "timings_json": pl.Utf8, "metrics_json": pl.Utf8, "manifest_json": pl.Utf8,
}
LOCAL_SHARD_SCHEMA = {
    "root": pl.Utf8, "tar_name": pl.Utf8, "attribute": pl.Utf8, "remote": pl.Utf8, "tar_sha256": pl.Utf8,
    "bytes": pl.Int64, "files": pl.Int32, "expected_sequences": pl.Int32, "sequences_found": pl.Int32,
    "complete": pl.Boolean, "extracted": pl.Utf8, "data_version": pl.Utf8,
}


@dataclass
class RootScan:
    artifacts: pl.DataFrame
    stats: pl.DataFrame
    manifests: pl.DataFrame
    local_shards: pl.DataFrame


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def list_artifacts(root: str) -> pl.DataFrame:
    """Every artifact file under ``root`` (local or remote) with size and mtime; temp files skipped."""
    fsys, base = vfs.get_fs(root)
    rows: list[dict[str, Any]] = []
    state = _read_state(root)
    owner = {}
    recorded = {}
    for key, entry in (state.get("shards") or {}).items():
        tar, attr = key.split("/", 1)
        for rel, rec in entry.get("files", {}).items():
            owner[(attr, rel)] = tar
            recorded[(attr, rel)] = rec.get("sha256")
    for sub, rx, attribute, fmt in _KINDS:
        d = f"{base.rstrip('/')}/{sub}"
        try:
            entries = fsys.ls(d, detail=True) if fsys.exists(d) else []
        except FileNotFoundError:
            entries = []
        for info in entries:
            name = os.path.basename(str(info["name"]).rstrip("/"))
            if info.get("type") != "file" or name.startswith(vfs._TMP_PREFIX):
                continue
            m = rx.match(name)
            if not m or (attribute == "intrinsics" and name.endswith("_camera.txt")):
                continue
            mtime = info.get("mtime") or info.get("LastModified")
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            dl_attr = "intrinsics" if attribute == "camera" else attribute
            rows.append({"root": root, "sequence": m.group(1), "attribute": attribute,
                         "path": vfs.join(root, sub, name), "format": fmt, "bytes": int(info.get("size") or 0),
                         "mtime": float(mtime) if mtime is not None else None,
                         "recorded_sha256": recorded.get((dl_attr, name)), "tar_name": owner.get((dl_attr, name))})
    return pl.DataFrame(rows, schema=ARTIFACT_SCHEMA) if rows else _empty(ARTIFACT_SCHEMA)


def _read_state(root: str) -> dict[str, Any]:
    uri = vfs.join(root, STATE_FILE)
    if not vfs.exists(uri):
        return {}
    try:
        return json.loads(vfs.read_text(uri))
    except json.JSONDecodeError as exc:
        log.warning("%s: unreadable download state (%s); shard provenance skipped", uri, exc)
        return {}


def local_shards(root: str) -> pl.DataFrame:
    rows = []
    for key, e in (_read_state(root).get("shards") or {}).items():
        tar, attr = key.split("/", 1)
        rows.append({"root": root, "tar_name": tar, "attribute": attr, "remote": e.get("remote"),
                     "tar_sha256": e.get("tar_sha256"), "bytes": e.get("bytes"), "files": len(e.get("files", {})),
                     "expected_sequences": e.get("expected_sequences"), "sequences_found": e.get("sequences_found"),
                     "complete": e.get("complete"), "extracted": e.get("extracted"),
                     "data_version": e.get("data_version")})
    return pl.DataFrame(rows, schema=LOCAL_SHARD_SCHEMA) if rows else _empty(LOCAL_SHARD_SCHEMA)


# ---------------------------------------------------------------------- geometry
def rotation_angle_deg(r: np.ndarray) -> np.ndarray:
    """Geodesic angle of rotation matrices (..., 3, 3) in degrees."""
    tr = np.trace(r, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def nearest_rotation(r: np.ndarray) -> np.ndarray:
    """The rotation matrices closest (Frobenius) to ``r`` (..., 3, 3), by SVD: U diag(1, 1, det(U V^T)) V^T."""
    u, _, vt = np.linalg.svd(r)
    d = np.ones(r.shape[:-1])
    d[..., -1] = np.sign(np.linalg.det(u @ vt))
    return (u * d[..., None, :]) @ vt


def trajectory_stats(c2w: np.ndarray) -> dict[str, float | bool]:
    c2w = np.asarray(c2w, dtype=np.float64)
    # rotations projected onto SO(3) first: the trace formula of the angle is not robust to a scaled matrix
    # (7-Scenes' ground-truth rotations have det 0.99967: 1.5 deg of spurious turn per frame pair otherwise)
    centres, rots = c2w[:, :3, 3], nearest_rotation(c2w[:, :3, :3])
    if len(c2w) < 2:
        return {"path_length": 0.0, "total_rotation_deg": 0.0, "max_displacement": 0.0, "max_rotation_deg": 0.0,
                "is_static": True}
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    rel = np.einsum("nji,njk->nik", rots[:-1], rots[1:])  # R_i^T R_{i+1}
    to_first = np.einsum("ji,njk->nik", rots[0], rots)
    disp = float(np.linalg.norm(centres - centres[0], axis=1).max())
    max_rot = float(rotation_angle_deg(to_first).max())
    return {"path_length": float(steps.sum()), "total_rotation_deg": float(rotation_angle_deg(rel).sum()),
            "max_displacement": disp, "max_rotation_deg": max_rot,
            "is_static": bool(disp <= STATIC_TRANSLATION and max_rot <= STATIC_ROTATION_DEG)}


# ---------------------------------------------------------------------- per sequence
def sequence_stats(root: str, sequence: str, present: set[str], depth_frames: int = 8) -> dict[str, Any]:
    """Statistics of one sequence's artifacts; problems are collected, not raised."""
    store = ArtifactStore(root)
    row: dict[str, Any] = {k: None for k in STATS_SCHEMA}
    row.update(root=root, sequence=sequence)
    problems: list[str] = []
    width = height = None
    size_source = None
    if "rgb" in present:
        try:
            from ..io import probe

            info = probe(store.path("rgb", sequence))
            row["rgb_frames"], width, height, size_source = info.num_frames, info.width, info.height, "rgb"
            row["rgb_valid"] = info.num_frames > 0
        except (VipeError, Exception) as exc:  # a broken mp4 is a finding, not a crash
            row["rgb_valid"] = False
            problems.append(f"rgb: {exc}")
    if "pose" in present:
        try:
            data, inds, pcheck = store.pose_check(sequence)
            row["pose_frames"] = len(data)
            row["pose_usable_frames"] = int(pcheck.usable.sum())
            ok = pcheck.ok and np.array_equal(inds, np.arange(len(inds)))
            row["pose_valid"] = ok
            if not pcheck.ok:
                problems.append(f"pose: {pcheck.problems[0]}")
            elif not ok:
                problems.append(f"pose: frame indices 'inds' are not 0..{len(inds) - 1}")
            if pcheck.usable.any():
                row.update(trajectory_stats(data[pcheck.usable]))
        except VipeError as exc:
            row["pose_valid"] = False
            problems.append(f"pose: {exc}")
    cx = cy = None
    if "intrinsics" in present:
        try:
            data, inds, types = store.read_intrinsics(sequence)
            row["intrinsics_frames"] = len(data)
            icheck = check_intrinsics(data, store.path("intrinsics", sequence), types, inds)
            ok = icheck.ok and np.array_equal(inds, np.arange(len(inds)))
            row["camera_type"] = types[0] if len(set(types)) == 1 else ("MIXED" if types else None)
            good = data[icheck.ok_frames]
            if len(good):
                med = np.median(good.astype(np.float64), axis=0)
                row["fx"], row["fy"], cx, cy = float(med[0]), float(med[1]), float(med[2]), float(med[3])
                row["cx"], row["cy"] = cx, cy
                if row["camera_type"] == "MEI" and len(med) > 4:
                    row["xi"] = float(med[4])
                elif row["camera_type"] == "PANORAMA":  # zeros: no focal or principal point (fov_note says so)
                    row["fx"] = row["fy"] = row["cx"] = row["cy"] = cx = cy = None
            row["intrinsics_valid"] = ok
            if not icheck.ok:
                problems.append(f"intrinsics: {icheck.problems[0]}")
            elif not ok:
                problems.append(f"intrinsics: frame indices 'inds' are not 0..{len(inds) - 1}")
        except VipeError as exc:
            row["intrinsics_valid"] = False
            problems.append(f"intrinsics: {exc}")
    if "depth" in present:
        try:
            n = store.depth_count(sequence)
            row["depth_frames"] = n
            pick = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(depth_frames, n))}) if n else []
            vals, invalid, total, shape = [], 0, 0, None
            for _, d in store.iter_depth(sequence, pick):
                shape = d.shape
                good = np.isfinite(d) & (d > 0)
                invalid += int(d.size - good.sum())
                total += d.size
                vals.append(d[good].astype(np.float64))
            if total:
                v = np.concatenate(vals)
                row["invalid_depth_fraction"] = invalid / total
                row["depth_frames_sampled"] = len(pick)
                if v.size:
                    row["depth_p05"], row["depth_p50"], row["depth_p95"] = (float(x) for x in
                                                                            np.percentile(v, [5, 50, 95]))
                if width is None and shape is not None:
                    height, width, size_source = int(shape[0]), int(shape[1]), "depth"
            row["depth_valid"] = n > 0 and total > 0 and row["invalid_depth_fraction"] < 1.0
        except VipeError as exc:
            row["depth_valid"] = False
            problems.append(f"depth: {exc}")
    if "mask" in present:
        try:
            row["mask_frames"] = store.mask_count(sequence)
            row["mask_valid"] = row["mask_frames"] > 0
        except VipeError as exc:
            row["mask_valid"] = False
            problems.append(f"mask: {exc}")
    counts = {store.path(k, sequence): row[f"{k}_frames"]
              for k in ("rgb", "pose", "intrinsics", "depth", "mask") if row[f"{k}_frames"] is not None}
    mismatch = check_counts(counts, f"sequence {sequence!r}")
    row["frame_counts_agree"] = not mismatch
    problems += mismatch
    try:  # the one-generation rule (stamps, record, hashes, lineage); counts were compared above
        rep = G.check_set(store, sequence, counts=False)
        row["generation"], row["generation_ok"] = rep.generation, rep.ok
        problems += [f"generation: {p}" for p in rep.problems]
    except VipeError as exc:
        row["generation_ok"] = False
        problems.append(f"generation: {exc}")
    if row["generation_ok"] is False:
        # files of two runs: no statistic computed from them is trustworthy (the counts stay: they show it)
        for k in ("path_length", "total_rotation_deg", "max_displacement", "max_rotation_deg", "is_static",
                  "depth_p05", "depth_p50", "depth_p95", "invalid_depth_fraction", "fx", "fy", "cx", "cy", "xi"):
            row[k] = None
        cx = cy = None
    if width is None and cx is not None and cy is not None:
        width, height, size_source = int(round(2 * cx)), int(round(2 * cy)), "principal_point"
    row["width"], row["height"], row["size_source"] = width, height, size_source
    row["fov_note"] = None
    ctype = row["camera_type"]
    if ctype in cam.CAMERA_TYPES and row["fx"] is not None:
        params = [row["fx"], row["fy"], row["cx"], row["cy"]] + ([row["xi"]] if ctype == "MEI" else [])
        if ctype == "MEI" and row["xi"] is None:
            row["fov_note"] = "MEI camera without an xi column: no field of view"
        else:
            fov = cam.field_of_view(ctype, params, width, height)
            row["fov_x_deg"], row["fov_y_deg"], row["fov_note"] = fov.x_deg, fov.y_deg, fov.note
    elif ctype == "PANORAMA":
        row["fov_note"] = cam.PANORAMA_FOV_NOTE
    elif ctype == "MIXED":
        row["fov_note"] = "frames use different camera models: no single field of view"
    row["problems"] = "; ".join(problems) or None
    return row


def read_manifest_row(root: str, sequence: str) -> dict[str, Any]:
    store = ArtifactStore(root)
    uri = store.path("manifest", sequence)
    row: dict[str, Any] = {k: None for k in MANIFEST_SCHEMA}
    row.update(root=root, sequence=sequence, path=uri)
    try:
        m = store.read_manifest(sequence)
    except VipeError as exc:
        log.warning("%s", exc)
        row["manifest_json"] = json.dumps({"error": str(exc)})
        return row
    inp = m.get("input") if isinstance(m.get("input"), dict) else {}
    scale = m.get("scale_status") or m.get("scale")
    if isinstance(scale, dict):
        scale = scale.get("status")

    def js(key: str, *alts: str) -> str | None:
        for k in (key, *alts):
            if k in m:
                return json.dumps(m[k], sort_keys=True, default=str)
        return None

    row.update(created=m.get("created"), input_uri=inp.get("uri"), input_hash=inp.get("hash"),
               code_version=m.get("code_version"), scale=str(scale) if scale is not None else None,
               config_json=js("config"), packages_json=js("packages"), timings_json=js("timings"),
               metrics_json=js("metrics", "quality", "quality_metrics"),
               manifest_json=json.dumps(m, sort_keys=True, default=str))
    return row


def _fingerprint(files: pl.DataFrame) -> str:
    parts = sorted(f"{p}:{b}:{t}" for p, b, t in files.select("path", "bytes", "mtime").iter_rows())
    return "|".join(parts)


def scan_root(root: str, cache: pl.DataFrame | None = None, depth_frames: int = 8) -> RootScan:
    """Scan one artifact root; statistics of sequences whose files are unchanged come from ``cache``."""
    arts = list_artifacts(root)
    cached: dict[tuple[str, str], dict[str, Any]] = {}
    if cache is not None and cache.height:
        for r in cache.filter(pl.col("root") == root).iter_rows(named=True):
            cached[(r["sequence"], r["fingerprint"])] = r
    stats_rows, manifest_rows = [], []
    for (seq,), files in arts.sort("sequence").group_by(["sequence"], maintain_order=True):
        present = set(files.get_column("attribute").to_list())
        if present & {"rgb", "pose", "intrinsics", "depth", "mask"}:
            # every file of the set: a changed manifest (generation record) or mask also invalidates the row
            stat_files = files
            fp = _fingerprint(stat_files)
            row = cached.get((seq, fp))
            if row is None:
                row = sequence_stats(root, seq, present, depth_frames)
                row["fingerprint"] = fp
            stats_rows.append(row)
        if "manifest" in present:
            manifest_rows.append(read_manifest_row(root, seq))
    stats = pl.DataFrame(stats_rows, schema=STATS_SCHEMA) if stats_rows else _empty(STATS_SCHEMA)
    manifests = pl.DataFrame(manifest_rows, schema=MANIFEST_SCHEMA) if manifest_rows else _empty(MANIFEST_SCHEMA)
    return RootScan(arts, stats, manifests, local_shards(root))


def scan_roots(roots: Iterable[str], cache_path: str | os.PathLike | None = None, depth_frames: int = 8) -> RootScan:
    """Scan several roots and refresh the statistics cache (a Parquet file) if ``cache_path`` is given."""
    cache = None
    if cache_path and Path(cache_path).exists():
        try:
            cache = pl.read_parquet(cache_path)
            if set(cache.columns) != set(STATS_SCHEMA):
                cache = None
        except Exception as exc:  # a corrupt cache is rebuilt, never trusted
            log.warning("ignoring unreadable stats cache %s (%s)", cache_path, exc)
            cache = None
    scans = [scan_root(str(r), cache, depth_frames) for r in roots]
    out = RootScan(
        pl.concat([s.artifacts for s in scans]) if scans else _empty(ARTIFACT_SCHEMA),
        pl.concat([s.stats for s in scans]) if scans else _empty(STATS_SCHEMA),
        pl.concat([s.manifests for s in scans]) if scans else _empty(MANIFEST_SCHEMA),
        pl.concat([s.local_shards for s in scans]) if scans else _empty(LOCAL_SHARD_SCHEMA),
    )
    if cache_path:
        with vfs.local_path_for_write(str(cache_path), suffix=".parquet") as tmp:
            out.stats.write_parquet(tmp)
    return out
