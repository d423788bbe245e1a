"""Pose engine on real footage and on what goes wrong there: the planar two-fold ambiguity (the bundled
dog-example at the demo's 384 px), the geometry check that sees a wrong trajectory, a featureless cut
(relocalisation into the same world), and explicit inputs (a stale mask artifact changes nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vipe_dagster.config import PoseConfig, preset
from vipe_dagster.errors import InputError
from vipe_dagster.geometry_check import check_sequence
from vipe_dagster.io import ArtifactStore
from vipe_dagster.pipeline import infer, run_pose

from .conftest import ate_sim3

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dog384_flipped"


def _turn_deg(c2w: np.ndarray) -> float:
    d = c2w[-1][:3, :3].T @ c2w[0][:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))


@pytest.fixture(scope="module")
def dog384(sample_video, tmp_path_factory):
    """The demo's input: dog-example frames 0-63 at 384 px, poses by the current engine."""
    root = tmp_path_factory.mktemp("dog384")
    cfg = preset("pose_only")
    cfg.pose.long_side = 384
    res = infer(str(sample_video), str(root), cfg, end_frame=63)
    return ArtifactStore(str(root)), res.name


def test_flat_lawn_is_not_flipped_at_384px(dog384):
    store, name = dog384
    c2w, _ = store.read_pose(name)
    # the camera backs away over a flat lawn and turns a few degrees (lawn homographies: ~3.5 deg); the
    # upside-down solution pitched by 73 deg over the same 2 s
    assert _turn_deg(c2w) < 10.0
    assert store.read_pose_valid(name).all()
    verdict = check_sequence(store, name)
    assert verdict.passed, verdict.description
    assert verdict.metadata["pairs_used"] >= 10


def test_geometry_check_fails_on_the_flipped_demo_result(dog384, tmp_path):
    store, name = dog384
    bad = ArtifactStore(str(tmp_path / "flipped"))
    (tmp_path / "flipped" / "rgb").mkdir(parents=True)
    shutil.copy(store.path("rgb", name), bad.path("rgb", name))
    flipped = np.load(FIXTURE / "pose.npz")["data"]
    intr = np.load(FIXTURE / "intrinsics.npz")["data"]
    assert _turn_deg(flipped) > 60  # the old engine's result, kept as a fixture
    bad.write_pose(name, flipped)
    bad.write_intrinsics(name, intr)
    verdict = check_sequence(bad, name)
    assert not verdict.passed
    assert "does not match the images" in verdict.description
    # the user-facing validator flags it too (and passes the good result)
    import subprocess
    import sys

    def validate(root) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "validate", str(root), "--require",
                               "rgb,pose,intrinsics"], capture_output=True, text=True, timeout=300)

    run = validate(tmp_path / "flipped")
    assert run.returncode == 1 and f"FAIL {name} pose_geometry" in run.stdout, run.stdout + run.stderr
    run = validate(store.root)
    assert run.returncode == 0 and f"PASS {name} pose_geometry" in run.stdout, run.stdout + run.stderr


def test_geometry_check_fails_on_a_corrupted_good_trajectory(dog384, tmp_path):
    from scipy.spatial.transform import Rotation

    store, name = dog384
    c2w, _ = store.read_pose(name)
    intr, _, _ = store.read_intrinsics(name)
    bent = c2w.astype(np.float64).copy()
    for i in range(len(bent)):  # a slow extra pitch of 0.6 deg per frame, smooth: no jump check sees it
        bent[i, :3, :3] = bent[i, :3, :3] @ Rotation.from_euler("x", 0.6 * i, degrees=True).as_matrix()
    bad = ArtifactStore(str(tmp_path / "bent"))
    (tmp_path / "bent" / "rgb").mkdir(parents=True)
    shutil.copy(store.path("rgb", name), bad.path("rgb", name))
    bad.write_pose(name, bent)
    bad.write_intrinsics(name, intr)
    assert not check_sequence(bad, name).passed


def test_a_stale_mask_artifact_is_not_used_unless_asked(dog384, tmp_path):
    store, name = dog384
    root = tmp_path / "s"
    (root / "rgb").mkdir(parents=True)
    shutil.copy(store.path("rgb", name), root / "rgb" / f"{name}.mp4")
    s = ArtifactStore(str(root))
    cfg = PoseConfig(long_side=384)
    first = run_pose(s, name, cfg)
    n = first.num_frames
    h, w = 216, 384
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 1  # half the image "dynamic": would change the result if it were used
    s.write_masks(name, [mask] * n, {1: "dynamic object"})
    again = run_pose(s, name, cfg)
    np.testing.assert_allclose(again.intrinsics, first.intrinsics)
    man = s.read_manifest(name)
    assert set(man["pose"]["inputs"]) == {"rgb"} and man["pose"]["inputs"]["rgb"]["sha256"].startswith("sha256:")
    used = run_pose(s, name, PoseConfig(long_side=384, use_masks=True))
    assert set(s.read_manifest(name)["pose"]["inputs"]) == {"rgb", "mask"}
    assert not np.allclose(used.intrinsics, first.intrinsics)
    (root / "mask" / f"{name}.zip").unlink()
    with pytest.raises(InputError, match="use_masks"):
        run_pose(s, name, PoseConfig(long_side=384, use_masks=True))


@pytest.mark.slow
def test_featureless_cut_is_invalid_and_tracking_resumes_in_the_same_world(synth_scene, tmp_path):
    res = synth_scene("handheld", hfov_deg=60.0, num_frames=90, width=512, height=384)
    frames = [f for _, f in res.gt.open_rgb(res.name)]
    a, b = 40, 47
    for i in range(a, b + 1):
        frames[i] = np.full_like(frames[i], 128)  # a featureless cut (lens covered, blank wall)
    store = ArtifactStore(str(tmp_path / "out"))
    store.write_rgb(res.name, frames, 30.0)
    run_pose(store, res.name, PoseConfig())
    c2w, _ = store.read_pose(res.name)
    gt, _ = res.gt.read_pose(res.name)
    valid = store.read_pose_valid(res.name)
    man = store.read_manifest(res.name)["pose"]
    assert not valid[a : b + 1].any()  # the cut is not presented as measured
    assert valid[:a].all() and valid[b + 1 :].mean() > 0.9
    assert man["relocalised"] >= 1 and man["segments"] == 1 and man["unconnected_frames"] == 0
    # one similarity for all valid frames: after the cut the poses are in the same world and scale
    rmse, pct = ate_sim3(c2w[valid], gt[valid])
    assert pct <= 0.5, f"ATE {rmse:.4f} = {pct:.2f}% of the path"
