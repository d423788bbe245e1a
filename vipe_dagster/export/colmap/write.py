"""Write an export: the COLMAP model (text or binary), the PLY, the statistics, atomically."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...io import ArtifactStore, fs
from ..colmap_format import SparseModel, write_model, write_text
from ..ply import write_ply
from .cameras import ImageSet
from .tracks import PointSet

STATS_FILE = "export_stats.json"


def assemble_model(images: ImageSet, sparse: PointSet, dense: PointSet, notes: list[str]) -> SparseModel:
    """The COLMAP model: sparse points first, then dense; observations grouped by image."""
    n_sp = len(sparse.xyz)
    obs_img = np.concatenate([sparse.obs_image, dense.obs_image])
    order = np.argsort(obs_img, kind="stable")
    xyz = np.concatenate([sparse.xyz, dense.xyz])
    return SparseModel(
        cameras=list(images.cameras.values()), image_ids=images.image_ids, qvec=images.qvec, tvec=images.trans,
        image_camera_ids=images.image_cam, image_names=images.names,
        obs_image=obs_img[order], obs_xy=np.concatenate([sparse.obs_xy, dense.obs_xy])[order],
        obs_point=np.concatenate([sparse.obs_point, dense.obs_point + n_sp])[order],
        point_ids=np.arange(1, len(xyz) + 1), xyz=xyz, rgb=np.concatenate([sparse.rgb, dense.rgb]),
        error=np.concatenate([sparse.error, dense.error]), header_notes=notes)


def write_files(stage: Path, model: SparseModel, fmt: str, reference_layout: bool, name: str, sparse: PointSet,
                cloud_xyz: np.ndarray, cloud_rgb: np.ndarray) -> None:
    """``sparse/0`` in ``fmt`` (plus the top-level text model with ``reference_layout``) and ``points.ply``
    holding the sparse points and every dense point (``cloud_*``)."""
    write_model(model, stage / "sparse" / "0", fmt)
    if reference_layout:
        write_text(dataclasses.replace(model, image_names=[f"images/{n}" for n in model.image_names]), stage)
    comments = [f"vipe-dagster COLMAP export of {name}: {len(sparse.xyz)} sparse + {len(cloud_xyz)} dense points"]
    write_ply(stage / "points.ply", np.concatenate([sparse.xyz, cloud_xyz]), np.concatenate([sparse.rgb, cloud_rgb]),
              comments)


def export_stats(store: ArtifactStore, name: str, out_dir: str, fmt: str, source: str, images: ImageSet,
                 model: SparseModel, num_points_ply: int, notes: list[str], warnings: list[str],
                 sparse_stats: dict | None, dense_stats: dict | None, timings: dict[str, float]) -> dict[str, Any]:
    """The content of ``export_stats.json`` (and of the manifest's ``colmap_export`` entry)."""
    frame_ids, cameras = images.frame_ids, images.cameras
    return {
        "sequence": name, "artifact_root": store.root, "out_dir": out_dir, "format": fmt,
        "generation": (store.generation_record(name) or {}).get("id"),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "points_source": source, "dense_only": source == "dense_only", "notes": notes,
        "warnings": warnings, "pixel_convention": "COLMAP (top-left pixel centre at 0.5, 0.5)",
        "num_images": len(frame_ids), "num_cameras": len(cameras),
        "cameras": [{"camera_id": c.camera_id, "model": c.model, "width": c.width, "height": c.height,
                     "params": c.params.tolist()} for c in cameras.values()],
        "frames": {"first": int(frame_ids[0]), "last": int(frame_ids[-1]), "count": len(frame_ids)},
        "num_points": len(model.xyz), "num_points_ply": num_points_ply,
        "num_observations": int(len(model.obs_image)),
        "sparse": sparse_stats, "dense": dense_stats, "timings_s": timings,
    }


def write_atomically(out_dir: str, fill: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fill(stage)`` on a staging folder that becomes ``out_dir`` only when it succeeds.

    ``fill`` writes the export and returns its statistics, written as ``export_stats.json``; on
    ``s3://`` the objects appear one by one, so the stats file goes last and marks completion. A failed
    export leaves no empty parent folder (e.g. ``<root>/colmap/``) that it created itself.
    """
    remote_out = fs.is_remote(out_dir)
    new_parent = None if remote_out else Path(fs.get_fs(out_dir)[1]).parent
    if new_parent is not None and new_parent.exists():
        new_parent = None
    if not remote_out:  # stage folders of killed exports (their pid is gone) beside the output
        fs.sweep_stale_temps(Path(fs.get_fs(out_dir)[1]).parent)
    fs.sweep_system_temps()
    try:
        with fs.atomic_dir(out_dir) as stage:
            stage_p = Path(stage)
            stats = fill(stage_p)
            if not remote_out:
                (stage_p / STATS_FILE).write_text(json.dumps(stats, indent=2), encoding="utf-8")
        if remote_out:
            fs.write_text(fs.join(out_dir, STATS_FILE), json.dumps(stats, indent=2))
    except BaseException:
        if new_parent is not None and new_parent.exists() and not any(new_parent.iterdir()):
            new_parent.rmdir()
        raise
    return stats
