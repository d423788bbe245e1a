"""Work shared between the focal calibration rounds and the main pass (keyframe SIFT descriptors) and the pose
stage's torch thread setting change the speed only: the poses and intrinsics stay bitwise the same."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vipe_dagster.config import PoseConfig
from vipe_dagster.io import open_video
from vipe_dagster.slam.system import SlamSystem

DOG = Path(__file__).resolve().parents[2] / "samples" / "dog-example.mp4"


@pytest.fixture(scope="module")
def frames():
    return [f for _, f in open_video(str(DOG), 0, 3, 1, 256)]


def _corners(frame):
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.goodFeaturesToTrack(gray, 300, 0.01, 7).reshape(-1, 2).astype(np.float64)


def test_descriptor_cache_gives_the_computed_descriptors_and_misses_on_other_inputs(frames):
    h, w = frames[0].shape[:2]
    uv = _corners(frames[0])
    first = SlamSystem(PoseConfig(), w, h)
    want = first._compute_descriptors(frames[0], uv)
    assert want.shape == (len(uv), 128) and want.any(axis=1).mean() > 0.9
    shared: dict = {}
    first.desc_cache = shared
    np.testing.assert_array_equal(first._descriptors(frames[0], uv), want)
    assert len(shared) == 1

    later = SlamSystem(PoseConfig(), w, h)
    later.desc_cache, later.desc_cache_store = shared, False
    calls = []
    compute = later._compute_descriptors
    later._compute_descriptors = lambda rgb, p: calls.append(1) or compute(rgb, p)
    got = later._descriptors(frames[0], uv)
    np.testing.assert_array_equal(got, want)
    assert calls == []  # served from the cache
    got[:] = 0  # callers own their copy
    np.testing.assert_array_equal(later._descriptors(frames[0], uv), want)
    # another frame, or pixels moved by a rounding error: computed again, and the reading pass adds nothing
    other = later._descriptors(frames[1], uv)
    np.testing.assert_array_equal(other, compute(frames[1], uv))
    later._descriptors(frames[0], uv + 1e-9)
    assert len(calls) == 2 and len(shared) == 1


def test_pose_stage_is_bitwise_unchanged_by_the_descriptor_cache_and_restores_torch_threads(tmp_path, monkeypatch):
    import torch

    from vipe_dagster.config import PipelineConfig
    from vipe_dagster.io import ArtifactStore
    from vipe_dagster.pipeline import infer

    def run(root):
        cfg = PipelineConfig(preset="pose_only", depth=False, masks=False)
        cfg.pose.long_side = 256
        res = infer(str(DOG), str(root), cfg, end_frame=79)
        store = ArtifactStore(str(root))
        return res, store.read_pose(res.name)[0], store.read_intrinsics(res.name)[0]

    computed = []
    compute = SlamSystem._compute_descriptors
    monkeypatch.setattr(SlamSystem, "_compute_descriptors", lambda self, rgb, uv: computed.append(1) or
                        compute(self, rgb, uv))
    threads = torch.get_num_threads()
    res, pose, intr = run(tmp_path / "cached")
    n_cached = len(computed)
    assert torch.get_num_threads() == threads
    assert res.pose.num_frames == 80 and len(res.pose.keyframes) >= 3
    # the same run with every descriptor computed afresh
    monkeypatch.setattr(SlamSystem, "desc_cache", property(lambda self: None, lambda self, v: None),
                        raising=False)
    _, pose_ref, intr_ref = run(tmp_path / "fresh")
    assert 0 < n_cached < len(computed) - n_cached  # the main pass found the calibration rounds' descriptors
    np.testing.assert_array_equal(pose, pose_ref)
    np.testing.assert_array_equal(intr, intr_ref)
