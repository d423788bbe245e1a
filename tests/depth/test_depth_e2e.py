"""End to end: SLAM poses + sparse map (pose branch) -> dense depth, against synthetic ground truth."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_depth_on_slam_poses(scene, inputs_only):
    from vipe_dagster.depth.run import run_depth
    from vipe_dagster.eval.metrics import depth_metrics
    from vipe_dagster.pipeline import run_pose

    res = scene(trajectory="orbit", scene="indoor", seed=1, num_frames=40, fps=30.0, width=512, height=384)
    store = inputs_only(res, kinds=("rgb",))
    run_pose(store, res.name)
    out = run_depth(store, res.name)
    assert out.range_source == "sparse_map"
    ms = [depth_metrics(p, g, align="median")
          for (_, p), (_, g) in zip(store.iter_depth(res.name), res.gt.iter_depth(res.name), strict=True)]
    abs_rel = float(np.mean([m["abs_rel"] for m in ms]))
    valid = float(np.mean([m["valid_fraction"] for m in ms]))
    print(f"SLAM poses: depth AbsRel {abs_rel:.4f}, valid {valid:.3f}, MVS kept {out.mvs_valid_fraction:.3f}")
    assert valid >= 0.85 and abs_rel <= 0.05
