"""Ego render benchmark: the synthetic Ego-Exo4D take (exact exo result, projectaria-cast ground truth).

Renders the take's ego frames with the Aria fisheye at 448 px (mean background, radius 1.5 px, normalised
weights) through the full ``render_ego`` path (cloud build, validation, PNG + mp4 writing) and reports
frames/s, coverage of the ground-truth pixels that the exo camera sees, and PSNR on those pixels.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SUITE = "ego_render"
TITLE = "Ego rendering (EgoX ego prior)"


def run(quick: bool = False) -> list[dict]:
    import torch

    from ...render.ego import EgoRenderConfig, render_ego
    from ...synth.egoexo_take import generate_take

    torch.set_num_threads(1)
    n, res = (4, 224) if quick else (12, 448)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        take = generate_take(str(Path(tmp) / "take"), num_frames=n, resolution=res, exo_size=(640, 480),
                             exo_focal=440.0)
        rows.append({"name": f"synthetic take generation ({n} frames, {res} px GT)", "value": time.perf_counter() - t0,
                     "unit": "s"})
        cfg = EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(Path(tmp) / "out"), meta_json_path=take.meta_json,
                              fish_eye_rendering=True, use_mean_bg=True, resolution=res, point_size=1.5,
                              subsample=1, normalize=True, output="both")
        out = render_ego(cfg)
        cov, psnr = [], []
        for i in out.frames:
            ours = cv2.imread(str(Path(out.out_path) / f"frame_{i:06d}.png")).astype(float)
            gt = cv2.imread(str(Path(take.gt_dir) / "ego_fisheye" / f"frame_{i:06d}.png")).astype(float)
            vis = cv2.imread(str(Path(take.gt_dir) / "ego_fisheye_visible" / f"frame_{i:06d}.png"), 0) > 0
            covered = ours.sum(axis=2) > 0
            cov.append((covered & vis).sum() / max(vis.sum(), 1))
            m = covered & vis
            psnr.append(10 * np.log10(255.0 ** 2 / ((ours - gt) ** 2)[m].mean()))
        rows += [
            {"name": f"render-ego fisheye {res}x{res}, {out.num_background_points} points, end to end",
             "value": len(out.frames) / out.seconds, "unit": "frames/s", "frames": len(out.frames),
             "target": ">= 60 (500k points, splat only)", "note": "cloud build + PNG + mp4 included"},
            {"name": "coverage of GT pixels seen by the exo camera", "value": float(np.mean(cov)), "unit": "fraction"},
            {"name": "PSNR on covered GT pixels", "value": float(np.mean(psnr)), "unit": "dB"},
        ]
    return rows
