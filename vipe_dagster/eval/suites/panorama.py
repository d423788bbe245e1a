"""Equirectangular (360 x 180 deg) videos through ``--pipeline panorama``, against exact ground truth.

Input: ``vipe-dagster synth --panorama`` videos (six cube faces rendered and resampled through the
equirectangular model; depth = ray distance), 1024 x 512, processed at that size (``--long_side 1024``: virtual
views of 388 px, 100 deg), hand-held and forward (``quick``: one 40-frame hand-held video). Each video is
inferred with ``--pipeline panorama`` (poses from one yaw view's SLAM, plane-sweep depth on six views stitched
back as ray distance) and scored with :func:`vipe_dagster.eval.evaluate.evaluate`: ATE (Sim(3)) as % of the
path, depth AbsRel of the ray distance (per-frame median-aligned, every equirectangular pixel). Targets from
the camera-model issue: ATE <= 0.5 % of path, AbsRel <= 0.06.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

SUITE = "panorama"
TITLE = "Equirectangular panoramas (--pipeline panorama)"

WIDTH, HEIGHT = 1024, 512


def run(quick: bool = False) -> list[dict]:
    from .wide_angle import generated_videos, infer_and_score

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for traj, n, res in generated_videos(tmp, quick, width=WIDTH, height=HEIGHT, panorama=True):
            seq, camera, cpu = infer_and_score(res, str(Path(tmp) / f"pano_{traj}"), "panorama", long_side=WIDTH)
            ate, dep = seq["ate"], seq.get("depth", {})
            proc = camera.get("processing", {})
            label = f"{traj}, {n} frames {WIDTH}x{HEIGHT} equirectangular"
            rows += [
                {"name": f"panorama ATE ({label})", "value": ate["rmse_pct_of_path"], "unit": "% of path",
                 "frames": n, "target": "<= 0.5",
                 "note": f"Sim(3)-aligned, {ate['path_length']:.2f} m path, rotation {ate['rot_rmse_deg']:.2f} deg; "
                         f"{proc.get('tracked_view')} view ({proc.get('view_px')} px, {proc.get('fov_deg')} deg) tracked"},
                {"name": f"panorama depth AbsRel, ray distance, every pixel ({traj})",
                 "value": dep.get("abs_rel", float("nan")), "unit": "", "target": "<= 0.06",
                 "note": f"per-frame median-aligned, delta1 {dep.get('delta1', float('nan')):.3f}, valid "
                         f"{dep.get('valid_fraction', float('nan')):.3f}; views cover "
                         f"{camera.get('depth_coverage_views', float('nan')):.1%} of the image"},
                {"name": f"panorama infer CPU time ({traj})", "value": cpu, "unit": "CPU-s", "frames": n,
                 "note": "process time of the whole run (ingest, pose, depth on 6 views, writes)"},
            ]
    return rows
