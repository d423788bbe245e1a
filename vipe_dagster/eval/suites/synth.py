"""Synthetic scene generation speed: a 100-frame 512x384 scene must render well under 60 s on 2 cores."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

SUITE = "synth"
TITLE = "Synthetic scenes"


def _dir_size_mb(path: str) -> float:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 1e6


def run(quick: bool = False) -> list[dict]:
    from ...synth import SceneConfig, generate

    n = 30 if quick else 100
    cases = [
        ("indoor", "forward", 0),
        ("outdoor", "orbit", 2),
        ("indoor", "handheld", 3),
    ]
    if quick:
        cases = cases[:1]
    rows = []
    tmp = tempfile.mkdtemp(prefix="vipe-bench-synth-")
    try:
        for scene, traj, moving in cases:
            cfg = SceneConfig(trajectory=traj, scene=scene, num_frames=n, width=512, height=384,
                              moving_objects=moving, seed=0)
            out = os.path.join(tmp, f"{scene}_{traj}")
            t0 = time.perf_counter()
            res = generate(cfg, out)
            wall = time.perf_counter() - t0
            man = res.gt.read_manifest(res.name)
            desc = json.load(open(res.scene_json))
            label = f"{scene}/{traj}, {moving} moving, {n} frames 512x384"
            rows.append({"suite": SUITE, "name": f"generate {label}", "value": wall, "unit": "s", "frames": n,
                         "target": "< 60 s (100 frames, 2 cores)",
                         "note": f"path {desc['trajectory_length_m']:.2f} m, "
                                 f"depth {desc['depth_range_m'][0]:.2f}-{desc['depth_range_m'][1]:.2f} m"})
            rows.append({"suite": SUITE, "name": f"render passes only ({scene}/{traj})",
                         "value": man["timings_s"]["render"], "unit": "s", "frames": n,
                         "note": "colour (MSAA) + depth/instance pass, pyrender EGL"})
            rows.append({"suite": SUITE, "name": f"output size ({scene}/{traj})", "value": _dir_size_mb(out),
                         "unit": "MB", "note": "mp4 x2, depth EXR zip, mask zip, npz, json"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
