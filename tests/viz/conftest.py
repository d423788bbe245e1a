"""Synthetic ViPE-format results for the viewer and video tests (analytic planes + a moving sphere)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vipe_dagster.io import ArtifactStore
from vipe_dagster.viz.planes import make_scene, write_scene


@pytest.fixture(scope="session")
def plane_result(tmp_path_factory):
    """(store, scene): 40 frames of 160x120 with rgb, depth, poses, intrinsics and masks."""
    root = tmp_path_factory.mktemp("viz_planes")
    store = ArtifactStore(str(root))
    scene = make_scene(160, 120, 40)
    write_scene(store, "planes", scene)
    return store, scene


@pytest.fixture(scope="session")
def ego_result(tmp_path_factory):
    """A store with one sequence and an EgoX-style render folder (meta.json + ego_Prior.mp4)."""
    root = tmp_path_factory.mktemp("viz_ego")
    store = ArtifactStore(str(root))
    scene = make_scene(64, 48, 12)
    write_scene(store, "cam01_static", scene)
    n = scene.n_frames
    exo_w2c = np.eye(4)
    exo_w2c[:3, 3] = [0.5, -0.2, 1.0]
    ego_c2w_world = []
    for i in range(n):
        m = np.eye(4)
        m[:3, 3] = [0.1 * i, -0.5, 1.5]
        ego_c2w_world.append(m)
    meta = {"test_datasets": [{
        "exo_path": "./takes/x/cam01.mp4",
        "camera_extrinsics": exo_w2c[:3].tolist(),
        "ego_intrinsics": [[150, 0, 255.5], [0, 150, 255.5], [0, 0, 1]],
        "ego_extrinsics": [np.linalg.inv(m)[:3].tolist() for m in ego_c2w_world],
    }]}
    folder = root / "render" / "take1" / "cam01"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    from vipe_dagster.io import VideoWriter

    with VideoWriter(str(folder / "ego_Prior.mp4"), fps=30) as w:
        for i in range(n):
            img = np.zeros((64, 64, 3), np.uint8)
            img[:, : 4 * (i + 1)] = (200, 30, 180)
            w.add(img)
    expected = np.stack([exo_w2c @ m for m in ego_c2w_world])
    return store, scene, expected
