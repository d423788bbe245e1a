"""Dense depth and dynamic masks: speed at 512 px on the CPU, accuracy against synthetic ground truth.

Inputs are the generator's exact poses and intrinsics (the depth stage alone, no SLAM), so the numbers
isolate multi-view stereo + filtering + fill. Sweeps run on the stage's worker threads (one per core).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

SUITE = "depth"
TITLE = "Dense depth"


def _inputs(res, root: str, kinds=("rgb", "pose", "intrinsics", "camera")):
    from ...io import ArtifactStore, fs

    store = ArtifactStore(root)
    for kind in kinds:
        fs.write_bytes(store.path(kind, res.name), fs.read_bytes(res.gt.path(kind, res.name)))
    return store


def run(quick: bool = False) -> list[dict]:
    import numpy as np

    if not hasattr(np, "infty"):
        np.infty = np.inf  # pyrender on numpy 2
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

    from ...depth.config import DepthConfig
    from ...depth.run import run_depth
    from ...masks import run_masks
    from ...synth import SceneConfig, generate
    from ..metrics import depth_metrics

    n = 12 if quick else 24
    rows: list[dict] = []
    tmp = tempfile.mkdtemp(prefix="vipe-bench-depth-")
    try:
        cases = [("indoor", "orbit", {}), ("indoor", "forward", {}),
                 ("indoor", "orbit", {"coarse_to_fine": True}),
                 ("indoor", "orbit", {"coarse_to_fine": True, "sweep_every": 2})]
        if quick:
            cases = cases[:1]
        scenes = {}
        for scene, traj, overrides in cases:
            if (scene, traj) not in scenes:
                scenes[scene, traj] = generate(
                    SceneConfig(trajectory=traj, scene=scene, num_frames=n, width=512, height=384, seed=1),
                    os.path.join(tmp, f"{scene}_{traj}"))
            res = scenes[scene, traj]
            out_dir = os.path.join(tmp, f"{scene}_{traj}_out")
            shutil.rmtree(out_dir, ignore_errors=True)
            store = _inputs(res, out_dir)
            cfg = DepthConfig(**overrides)
            t0 = time.perf_counter()
            out = run_depth(store, res.name, cfg)
            wall = time.perf_counter() - t0
            ms = [depth_metrics(p, g, align="median")
                  for (_, p), (_, g) in zip(store.iter_depth(res.name), res.gt.iter_depth(res.name), strict=True)]
            variant = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
            label = f"{scene}/{traj} [{variant}]"
            rows.append({"suite": SUITE, "name": f"MVS depth {label}, {n} frames 512x384", "value": wall, "unit": "s",
                         "frames": n, "target": ">= 3 frames/s for the full pipeline",
                         "note": f"sweep at {cfg.mvs_long_side} px, {cfg.num_planes} planes, {cfg.num_sources} "
                                 f"sources, {cfg.workers or 'one per core'} sweep workers x {cfg.torch_threads} "
                                 f"torch thread(s); range {out.range_source}"})
            rows.append({"suite": SUITE, "name": f"depth AbsRel {label}",
                         "value": float(np.mean([m["abs_rel"] for m in ms])), "unit": "ratio", "target": "<= 0.05",
                         "note": f"median-aligned, GT poses; delta1 {np.mean([m['delta1'] for m in ms]):.3f}"})
            rows.append({"suite": SUITE, "name": f"depth valid pixels {label}",
                         "value": float(np.mean([m["valid_fraction"] for m in ms])), "unit": "fraction",
                         "target": ">= 0.85",
                         "note": f"after fill; kept by confidence + geometric filter: {out.mvs_valid_fraction:.3f}; "
                                 f"reliable (ViPE rule) {out.reliable_fraction:.3f}"})
        res = generate(SceneConfig(trajectory="fixed", scene="indoor", num_frames=n, width=512, height=384,
                                   moving_objects=2, seed=3), os.path.join(tmp, "fixed"))
        store = _inputs(res, os.path.join(tmp, "fixed_out"))
        t0 = time.perf_counter()
        mres = run_masks(store, res.name)
        wall = time.perf_counter() - t0
        inter = union = 0
        for (_, p), (_, g) in zip(store.iter_masks(res.name), res.gt.iter_masks(res.name), strict=True):
            inter += int(((p > 0) & (g > 0)).sum())
            union += int(((p > 0) | (g > 0)).sum())
        rows.append({"suite": SUITE, "name": f"masks, fixed camera, {n} frames 512x384", "value": wall, "unit": "s",
                     "frames": n, "note": mres.method})
        rows.append({"suite": SUITE, "name": "mask IoU vs GT (fixed camera, 2 movers)", "value": inter / max(union, 1),
                     "unit": "IoU", "target": ">= 0.7"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
