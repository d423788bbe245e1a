""":func:`export_colmap`: load and check, cameras, sparse tracks, dense points, write (see the package doc)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArtifactError, UnsupportedCameraError
from ...io import ArtifactStore, SparseMap, fs
from .cameras import ImageSet, build_images, keep_distortion, kept_distortion
from .dense import dense_points
from .images import write_images_and_sample
from .inputs import Inputs, load_inputs, select_frames, use_sparse_map
from .options import ColmapExportOptions
from .tracks import PointSet, sparse_tracks
from .write import assemble_model, export_stats, write_atomically, write_files

log = logging.getLogger(__package__)

MANIFEST_KEY = "colmap_export"


@dataclass
class ExportResult:
    """What :func:`export_colmap` wrote."""

    sequence: str
    out_dir: str
    fmt: str
    num_images: int
    num_cameras: int
    num_points: int
    num_sparse_points: int
    num_dense_points: int
    num_observations: int
    points_source: str  # "sparse", "sparse+dense", "dense_only" or "none"
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stats")
        d["reprojection_error_px"] = (self.stats.get("sparse") or {}).get("reprojection_error_px")
        d["dense_reprojection_error_px"] = (self.stats.get("dense") or {}).get("reprojection_error_px")
        return d


@dataclass
class _Plan:
    """What is exported: checked inputs, the exported pose rows and their images, and whether dense."""

    inp: Inputs
    rows: np.ndarray
    images: ImageSet
    use_dense: bool
    warnings: list[str]
    notes: list[str]

    @property
    def source(self) -> str:
        has_sparse = self.inp.sparse is not None
        return ("sparse+dense" if self.use_dense and has_sparse else "dense_only" if self.use_dense
                else "sparse" if has_sparse else "none")


def _use_dense(store: ArtifactStore, name: str, dense: bool | None, has_sparse: bool, warnings: list[str],
               notes: list[str]) -> bool:
    """Dense points when asked for (depth required), by default (``None``) when there are depth maps, and
    always when there is no sparse map."""
    has_depth = store.exists("depth", name)
    if dense is None:
        dense = has_depth
    if dense and not has_depth:
        raise ArtifactError(f"dense COLMAP export of {name!r} needs depth maps, but {store.path('depth', name)} "
                            f"is missing")
    if has_sparse:
        return dense
    msg = f"{store.path('sparse', name)} not found: no sparse map, so no real feature tracks"
    if has_depth:
        msg += "; exporting dense points from reliable depth only (dense-only export)"
    else:
        msg += " and no depth maps; exporting cameras and poses without 3D points"
    log.warning(msg)
    warnings.append(msg)
    notes.append(msg)
    return dense or has_depth


def _plan(store: ArtifactStore, name: str, opts: ColmapExportOptions, frames, sparse_map: SparseMap | None,
          sparse_source: str | None) -> _Plan:
    pose_uri, intr_uri = store.path("pose", name), store.path("intrinsics", name)
    inp = load_inputs(store, name)
    if sparse_map is not None:
        use_sparse_map(inp, sparse_map, sparse_source, pose_uri)
    warnings: list[str] = []
    notes: list[str] = []
    rows = select_frames(inp, frames, pose_uri, store.path("rgb", name), warnings, notes)
    images = build_images(inp.c2w, inp.intr, inp.types, inp.inds, rows, inp.width, inp.height, intr_uri, pose_uri,
                          opts.rectify_mei)
    use_dense = _use_dense(store, name, opts.dense, inp.sparse is not None, warnings, notes)
    for note in images.rectifier_notes():
        log.warning(note)
        notes.append(note)
    if use_dense and any(c.model == "OPENCV_FISHEYE" for c in images.cameras.values()):
        raise UnsupportedCameraError(f"{intr_uri}: dense points are only supported for pinhole cameras")
    kept = kept_distortion(store.read_manifest(name)) if not images.rectifiers and store.exists("manifest", name) \
        else None
    if kept is not None and use_dense:
        notes.append(f"the self-calibrated radial distortion k1 {kept[0]:g} k2 {kept[1]:g} the images keep (too "
                     f"small to rectify) is left out: dense points need pinhole cameras")
    elif kept is not None:
        notes.append(keep_distortion(images, kept))
    return _Plan(inp, rows, images, use_dense, warnings, notes)


def _dense_rows(store: ArtifactStore, name: str, plan: _Plan, depth_step: int) -> set[int]:
    """Indices of the exported images that contribute dense points (every ``depth_step``-th)."""
    if not plan.use_dense:
        return set()
    dense_rows = set(range(0, len(plan.rows), depth_step))
    need = int(plan.images.frame_ids[max(dense_rows)])
    n_depth = store.depth_count(name)
    if n_depth <= need:
        raise ArtifactError(f"{store.path('depth', name)} has {n_depth} depth frames but frame {need} "
                            f"is needed for dense points")
    return dense_rows


def _fill(stage: Path, store: ArtifactStore, name: str, out_dir: str, opts: ColmapExportOptions, plan: _Plan,
          sparse: PointSet, sparse_stats: dict | None, dense_rows: set[int], timings: dict[str, float],
          t_start: float, progress: bool) -> dict[str, Any]:
    """Write images, dense points, the model and the PLY into ``stage``; return the statistics."""
    images, inp = plan.images, plan.inp
    img_dir = stage / "images"
    img_dir.mkdir()
    t0 = time.perf_counter()
    parts = write_images_and_sample(store, name, images, inp.intr[plan.rows], inp.c2w[plan.rows], img_dir,
                                    opts.jpeg_quality, dense_rows, opts.pixel_step, progress)
    timings["images_and_depth_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dense, cloud_xyz, cloud_rgb, dense_stats = PointSet.empty(), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), None
    if plan.use_dense:
        dense, cloud_xyz, cloud_rgb, dense_stats = dense_points(parts, images, opts.pixel_step, opts.voxel_size,
                                                                opts.min_track_length)
        dense_stats.update({"depth_step": opts.depth_step, "pixel_step": opts.pixel_step,
                            "frames_used": [int(images.frame_ids[i]) for i in sorted(dense_rows)],
                            "source": store.path("depth", name)})
    timings["dense_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = assemble_model(images, sparse, dense, plan.notes)
    write_files(stage, model, opts.fmt, opts.reference_layout, name, sparse, cloud_xyz, cloud_rgb)
    timings["write_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    return export_stats(store, name, out_dir, opts.fmt, plan.source, images, model,
                        len(sparse.xyz) + len(cloud_xyz), plan.notes, plan.warnings, sparse_stats, dense_stats,
                        timings)


def _record_in_manifest(store: ArtifactStore, name: str, stats: dict[str, Any]) -> None:
    store.update_manifest(name, "colmap", {MANIFEST_KEY: stats})


def export_colmap(store: ArtifactStore | str, name: str, out_dir: str | None = None,
                  options: ColmapExportOptions | None = None, *,
                  frames: Sequence[int] | range | slice | None = None, sparse_map: SparseMap | None = None,
                  sparse_source: str | None = None, update_manifest: bool = True, progress: bool = False,
                  **option_values: Any) -> ExportResult:
    """Export sequence ``name`` of ``store`` as a COLMAP model under ``out_dir`` (see the package doc).

    ``options``: what to write (:class:`ColmapExportOptions`: format, dense points, steps, voxel size,
    JPEG quality, minimum track length, MEI rectification, reference layout); keyword arguments named
    like its fields override it (``export_colmap(store, n, fmt="bin", dense=True)``).
    ``frames``: artifact frame indices (a list, a ``range`` for a stride) or a ``slice`` over the pose
    rows; default all. ``out_dir``: default ``<root>/colmap/<name>``.
    ``sparse_map``: points and tracks to export instead of ``vipe/<n>_sparse.npz`` (e.g. the SLAM map of
    :mod:`vipe_dagster.export.slam_map`), ``sparse_source`` names where they came from.
    ``update_manifest``: record the statistics in the sequence's manifest; ``progress``: a progress bar.
    """
    t_start = time.perf_counter()
    opts = ColmapExportOptions.resolve(options, option_values)
    store = store if isinstance(store, ArtifactStore) else ArtifactStore(str(store))
    out_dir = str(out_dir) if out_dir is not None else fs.join(store.root, "colmap", name)
    plan = _plan(store, name, opts, frames, sparse_map, sparse_source)

    t0 = time.perf_counter()
    sparse, sparse_stats = PointSet.empty(), None
    if plan.inp.sparse is not None:
        sparse, sparse_stats = sparse_tracks(
            plan.inp.sparse, plan.images, int(plan.inp.inds[-1]), plan.inp.width, plan.inp.height,
            opts.min_track_length, sparse_source or store.path("sparse", name), plan.warnings)
    timings = {"sparse_s": time.perf_counter() - t0}
    dense_rows = _dense_rows(store, name, plan, opts.depth_step)
    stats = write_atomically(out_dir, lambda stage: _fill(stage, store, name, out_dir, opts, plan, sparse,
                                                          sparse_stats, dense_rows, timings, t_start, progress))
    if update_manifest:
        _record_in_manifest(store, name, stats)
    n_sp = len(sparse.xyz)
    res = ExportResult(sequence=name, out_dir=out_dir, fmt=opts.fmt, num_images=len(plan.rows),
                       num_cameras=len(plan.images.cameras), num_points=stats["num_points"],
                       num_sparse_points=n_sp, num_dense_points=stats["num_points"] - n_sp,
                       num_observations=stats["num_observations"], points_source=plan.source, stats=stats,
                       warnings=plan.warnings)
    log.info("COLMAP export of %s: %d images, %d points (%s) -> %s in %.2f s", name, res.num_images,
             res.num_points, plan.source, out_dir, timings["total_s"])
    return res
