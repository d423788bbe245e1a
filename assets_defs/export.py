"""COLMAP export per video: ``colmap_export`` (sparse-map tracks + dense points from the depth maps)."""

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from vipe_dagster.export.colmap import export_colmap
from vipe_dagster.export.colmap.options import ColmapExportOptions
from vipe_dagster.io import fs
from vipe_dagster.options import build_model

from ._common import (
    BACKFILL,
    EXPORT_CODE_VERSION,
    RETRY,
    VIDEO_GROUP,
    VIDEOS,
    engine_step,
    placement_tags,
)
from ._config import engine_values, run_config_class
from .depth import DEPTH, MASKS
from .pose import INTRINSICS, POSE

ColmapExportConfig = run_config_class(
    "ColmapExportConfig", ColmapExportOptions,
    doc="COLMAP export settings (`vipe_dagster.export.colmap.options`, the same as `vipe-dagster to-colmap`'s): a "
        "text model with sparse + dense points by default.")


def _r(v):
    return round(float(v), 4) if v is not None else None


@dg.asset(
    partitions_def=VIDEOS,
    deps=[POSE, INTRINSICS, DEPTH, MASKS],  # after the masks: they rewrite the depth of moving objects
    group_name=VIDEO_GROUP,
    code_version=EXPORT_CODE_VERSION,
    backfill_policy=BACKFILL,
    retry_policy=RETRY,
    op_tags=placement_tags("cpu"),
    kinds={"colmap"},
    description="A COLMAP reconstruction `colmap/<key>/` (images, cameras/images/points3D in `bin` or "
                "`text`, points.ply, export_stats.json), written atomically; metadata carries its "
                "reprojection statistics.",
)
def colmap_export(context: dg.AssetExecutionContext, config: ColmapExportConfig,
                  artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    key = context.partition_key
    store = artifacts.store()
    out_dir = fs.join(store.root, "colmap", key)
    with engine_step(context, store, key, "colmap_export"):
        opts = build_model(ColmapExportOptions, engine_values(config), "colmap_export run config", cli=False)
        res = export_colmap(store, key, out_dir, opts)
    sparse = (res.stats.get("sparse") or {}).get("reprojection_error_px") or {}
    dense = (res.stats.get("dense") or {}).get("reprojection_error_px") or {}
    track = (res.stats.get("sparse") or {}).get("track_length") or {}
    meta = {
        "format": res.fmt,
        "points_source": res.points_source,
        "num_images": res.num_images,
        "num_cameras": res.num_cameras,
        "num_points": res.num_points,
        "num_sparse_points": res.num_sparse_points,
        "num_dense_points": res.num_dense_points,
        "num_observations": res.num_observations,
        "reproj_error_mean_px": _r(sparse.get("mean")),
        "reproj_error_median_px": _r(sparse.get("median")),
        "reproj_error_p95_px": _r(sparse.get("p95")),
        "dense_reproj_error_median_px": _r(dense.get("median")),
        "mean_track_length": _r(track.get("mean")),
        "warnings": "; ".join(res.warnings) or None,
        "seconds": _r(res.stats.get("timings_s", {}).get("total_s")),
        "colmap_dir": dg.MetadataValue.path(res.out_dir),
        "stats_uri": dg.MetadataValue.path(fs.join(res.out_dir, "export_stats.json")),
    }
    return dg.MaterializeResult(metadata={k: v for k, v in meta.items() if v is not None})


ASSETS = [colmap_export]
