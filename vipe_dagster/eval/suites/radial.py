"""Radial-distorted videos (``vipe-dagster synth --k1 -0.1``) through the default pipeline with the lens
self-calibrated, against exact ground truth.

Input: generated videos whose frames went through a SIMPLE_RADIAL lens with k1 = -0.1 (barrel), 512 x 384,
hand-held and forward (``quick``: one 40-frame hand-held video). Each is inferred twice with no intrinsics:
``--camera-model radial`` (focal and k1 self-calibrated, the frames rectified to the pinhole before depth)
and ``--camera-model pinhole`` (the lens ignored). Scored with :func:`vipe_dagster.eval.evaluate.evaluate`:
ATE (Sim(3)) as % of the path, focal error, k1 error, depth AbsRel (per-frame median-aligned, every pixel;
for the rectified run the ground-truth depth is sampled where each rectified pixel's ray meets the distorted
image). Targets from the camera-model issue: ATE <= 0.5 % of path, focal <= 2 %, k1 within 0.02, AbsRel <= 0.06.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

SUITE = "radial"
TITLE = "Radial-distorted videos (k1 -0.1, lens self-calibrated)"

K1 = -0.1


def run(quick: bool = False) -> list[dict]:
    from .wide_angle import generated_videos, infer_and_score

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for traj, n, res in generated_videos(tmp, quick, width=512, height=384, k1=K1):
            label = f"{traj}, {n} frames 512x384, k1 {K1}"
            for model, what in (("radial", "lens self-calibrated"), ("pinhole", "lens ignored")):
                seq, _, cpu = infer_and_score(res, str(Path(tmp) / f"{model}_{traj}"), "default",
                                              camera_model=model)
                ate, foc, dep = seq["ate"], seq.get("focal", {}), seq.get("depth", {})
                tag = f"radial k1 {K1}, {what}"
                rows += [
                    {"name": f"{tag}: ATE ({label})", "value": ate["rmse_pct_of_path"], "unit": "% of path",
                     "frames": n, "target": "<= 0.5",
                     "note": f"Sim(3)-aligned, {ate['path_length']:.2f} m path, rotation {ate['rot_rmse_deg']:.2f} deg"},
                    {"name": f"{tag}: focal error ({traj})", "value": foc.get("percent", float("nan")), "unit": "%",
                     "target": "<= 2", "note": f"fx {foc.get('fx_pred', float('nan')):.1f} px vs "
                                               f"{foc.get('fx_gt', float('nan')):.1f} px"},
                    {"name": f"{tag}: k1 error ({traj})", "value": foc.get("k1_error", float("nan")), "unit": "",
                     "target": "<= 0.02", "note": f"k1 {foc.get('k1_pred', float('nan')):.4f} vs {K1}"},
                    {"name": f"{tag}: depth AbsRel ({traj})", "value": dep.get("abs_rel", float("nan")), "unit": "",
                     "target": "<= 0.06",
                     "note": f"per-frame median-aligned, valid {dep.get('valid_fraction', float('nan')):.3f}"
                             + ("; ground truth sampled through the lens" if dep.get("gt_resampled") else "")},
                    {"name": f"{tag}: infer CPU time ({traj})", "value": cpu, "unit": "CPU-s", "frames": n,
                     "note": "process time of the whole run (pose, depth, masks, writes)"},
                ]
    return rows
