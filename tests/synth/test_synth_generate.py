"""Generator outputs: layout, determinism, video, masks, trajectories, CLI and bad configurations."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vipe_dagster.cli import main
from vipe_dagster.errors import ConfigError
from vipe_dagster.io import ArtifactStore, open_video
from vipe_dagster.synth import SceneConfig, generate, path_length


def _arrays(res):
    gt, n = res.gt, res.name
    out = {"pose": gt.read_pose(n)[0], "intr": gt.read_intrinsics(n)[0]}
    out["depth"] = np.stack([d for _, d in gt.iter_depth(n)])
    out["mask"] = np.stack([m for _, m in gt.iter_masks(n)])
    return out


def test_layout_and_scene_json(synth_scene):
    res = synth_scene(scene="indoor", trajectory="forward", moving_objects=2, seed=1)
    root = os.path.dirname(res.video_path)
    assert res.name == "synth_indoor_forward_s1"
    assert os.path.basename(res.video_path) == f"{res.name}.mp4"
    assert res.gt.root == os.path.join(root, "gt")
    for kind in ("rgb", "pose", "intrinsics", "camera", "depth", "mask", "phrases", "manifest"):
        assert res.gt.exists(kind, res.name), kind
    assert res.gt.sequences() == [res.name]
    assert res.gt.read_phrases(res.name) == {0: "background", 1: "moving box 1", 2: "moving box 2"}
    desc = json.load(open(res.scene_json))
    c2w, inds = res.gt.read_pose(res.name)
    assert list(inds) == list(range(24)) and c2w.shape == (24, 4, 4)
    assert desc["trajectory_length_m"] == pytest.approx(path_length(c2w.astype(np.float64)), rel=1e-5)
    assert desc["config"]["moving_objects"] == 2 and desc["config"]["name"] == res.name
    assert sum(o["instance_id"] > 0 for o in desc["objects"]) == 2
    assert sum(o["kind"] == "box" and o["instance_id"] == 0 for o in desc["objects"]) >= 5
    # rotations are orthonormal, intrinsics match the configured field of view
    R = c2w[:, :3, :3].astype(np.float64)
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(R), 1.0, atol=1e-5)
    fx, fy, cx, cy = res.gt.read_intrinsics(res.name)[0][0]
    assert np.degrees(2 * np.arctan(256 / 2 / fx)) == pytest.approx(60.0, abs=1e-4)
    assert (fy, cx, cy) == pytest.approx((fx, 127.5, 95.5))
    man = res.gt.read_manifest(res.name)
    assert man["scale_status"] == "metric" and man["num_frames"] == 24


def test_static_objects_at_several_depths(synth_scene):
    res = synth_scene(scene="indoor", trajectory="forward", moving_objects=2, seed=1)
    d = res.gt.read_depth(res.name, 0)
    assert np.percentile(d, 95) / np.percentile(d, 5) > 2.0


def test_same_seed_gives_identical_ground_truth(tmp_path, synth_scene):
    a = synth_scene(scene="indoor", trajectory="handheld", moving_objects=1, seed=4)
    b = generate(SceneConfig(trajectory="handheld", moving_objects=1, seed=4, num_frames=24, width=256, height=192),
                 str(tmp_path / "again"))
    c = generate(SceneConfig(trajectory="handheld", moving_objects=1, seed=5, num_frames=24, width=256, height=192),
                 str(tmp_path / "other"))
    A, B, C = _arrays(a), _arrays(b), _arrays(c)
    for key in A:
        assert A[key].dtype == B[key].dtype and np.array_equal(A[key], B[key]), key
    assert not np.array_equal(A["pose"], C["pose"]) and not np.array_equal(A["depth"], C["depth"])


def test_video_decodes_to_all_frames_and_matches_the_render(synth_scene):
    from vipe_dagster.synth import Scene
    from vipe_dagster.synth.render import SceneRenderer

    res = synth_scene(scene="outdoor", trajectory="forward", moving_objects=1, seed=3)
    stream = open_video(res.video_path)
    assert (stream.info.num_frames, stream.width, stream.height) == (24, 256, 192)
    assert stream.info.fps == pytest.approx(30.0)
    frames = dict(stream)
    assert sorted(frames) == list(range(24))
    gt_stream = res.gt.open_rgb(res.name)
    assert gt_stream.info.num_frames == 24
    with SceneRenderer(Scene(res.config)) as r:
        raw20, raw19 = r.render(20)[0].astype(np.float64), r.render(19)[0].astype(np.float64)

    def psnr(a, b):
        return 10 * np.log10(255 ** 2 / ((a.astype(np.float64) - b) ** 2).mean())

    # lossy H.264 (crf 18) of a high-contrast texture; the right frame, in the right order
    assert psnr(frames[20], raw20) > 25.0
    assert psnr(frames[20], raw20) > psnr(frames[20], raw19) + 5.0


def test_masks_follow_moving_objects(synth_scene):
    res = synth_scene(scene="indoor", trajectory="fixed", moving_objects=2, seed=2)
    masks = np.stack([m for _, m in res.gt.iter_masks(res.name)])
    assert masks.shape == (24, 192, 256)
    assert set(np.unique(masks)) == {0, 1, 2}
    # the camera is fixed, so the moving objects' pixels change from frame to frame
    for obj_id in (1, 2):
        first, last = masks[0] == obj_id, masks[-1] == obj_id
        assert first.sum() > 50 and last.sum() > 50
        assert (first ^ last).sum() > 0.1 * first.sum()
    static = synth_scene(scene="indoor", trajectory="fixed", moving_objects=0, seed=2)
    assert all((m == 0).all() for _, m in static.gt.iter_masks(static.name))
    assert static.gt.read_phrases(static.name) == {0: "background"}


@pytest.mark.parametrize("trajectory", ["forward", "orbit", "handheld", "rotation", "fixed"])
def test_trajectory_motion_is_realistic(synth_scene, trajectory):
    res = synth_scene(scene="indoor", trajectory=trajectory, seed=0)
    c2w = res.gt.read_pose(res.name)[0].astype(np.float64)
    step = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
    rel = np.einsum("nij,nik->njk", c2w[:-1, :3, :3], c2w[1:, :3, :3])
    ang = np.degrees(Rotation.from_matrix(rel).magnitude())
    if trajectory == "fixed":
        assert step.max() < 1e-6 and ang.max() < 1e-3
    elif trajectory == "rotation":
        assert step.max() < 1e-6 and 0.1 < ang.mean() < 3.0
    else:
        # walking / orbiting / hand-held speeds at 30 fps: 0.3 cm to 8 cm per frame
        assert 0.003 < step.mean() < 0.08, step.mean()
        assert ang.max() < 3.0
    if trajectory == "forward":
        fwd = c2w[0, :3, 2]
        assert (c2w[-1, :3, 3] - c2w[0, :3, 3]) @ fwd > 0.5
    if trajectory == "orbit":
        r = np.linalg.norm(c2w[:, [0, 2], 3], axis=1)
        assert r.std() < 1e-3 * r.mean()


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["synth", "--scene", "outdoor", "--trajectory", "rotation", "--num-frames", "6", "--width", "96",
               "--height", "64", "--moving_objects", "1", "--seed", "9", "--name", "tiny", "-o", str(out),
               "--no-progress"])
    assert rc == 0
    assert "tiny: 6 frames 96x64" in capsys.readouterr().out
    store = ArtifactStore(str(out / "gt"))
    assert store.depth_count("tiny") == 6 and store.mask_count("tiny") == 6
    assert (out / "tiny.mp4").exists() and (out / "tiny_scene.json").exists()


@pytest.mark.parametrize("kw,needle", [
    ({"trajectory": "spiral"}, "trajectory 'spiral'"),
    ({"scene": "space"}, "scene 'space'"),
    ({"num_frames": 0}, "num_frames"),
    ({"width": 255}, "width"),
    ({"hfov_deg": 179.0}, "hfov_deg"),
    ({"moving_objects": 300}, "moving_objects"),
    ({"name": "a/b"}, "name"),
    ({"fps": 0.0}, "fps"),
])
def test_bad_config_raises_and_writes_nothing(tmp_path, kw, needle):
    with pytest.raises(ConfigError, match=needle):
        generate(SceneConfig(**kw), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_cli_bad_config_exit_code(tmp_path, capsys):
    rc = main(["synth", "--width", "101", "-o", str(tmp_path / "x"), "--no-progress"])
    assert rc == 2
    assert "width must be an even number" in capsys.readouterr().err


@pytest.mark.parametrize("scene", ["indoor", "outdoor"])
@pytest.mark.parametrize("trajectory", ["forward", "orbit", "handheld", "rotation", "fixed"])
def test_camera_keeps_clear_of_objects_and_sees_the_moving_ones(scene, trajectory):
    from vipe_dagster.synth import Scene
    from vipe_dagster.synth.scene import INDOOR_ROOM

    for seed in (0, 1):
        s = Scene(SceneConfig(trajectory=trajectory, scene=scene, moving_objects=2, seed=seed, num_frames=60))
        K, W, H = s.intrinsics, s.config.width, s.config.height
        cams = s.c2w[:, :3, 3]
        if scene == "indoor":
            lo = np.array([b[0] for b in INDOOR_ROOM]) + 0.5
            hi = np.array([b[1] for b in INDOOR_ROOM]) - 0.5
            assert (cams > lo).all() and (cams < hi).all(), "camera must stay inside the room"
        for obj in s.objects:
            if obj.kind != "box" or obj.name == "ground":
                continue
            for k in range(0, 60, 2):
                T = obj.world_pose(float(s.times[k]))
                q = np.abs(T[:3, :3].T @ (cams[k] - T[:3, 3])) - np.asarray(obj.half_extents)
                dist = np.linalg.norm(np.maximum(q, 0)) + min(q.max(), 0.0)  # signed distance to the box
                assert dist > (0.3 if scene == "indoor" else 1.5), (obj.name, k, dist)
        for obj in (o for o in s.objects if o.instance_id):
            seen = 0
            for k in range(60):
                w2c = np.linalg.inv(s.c2w[k])
                pc = w2c[:3, :3] @ obj.world_pose(float(s.times[k]))[:3, 3] + w2c[:3, 3]
                if pc[2] > 0.2:
                    u, v = K.fx * pc[0] / pc[2] + K.cx, K.fy * pc[1] / pc[2] + K.cy
                    seen += (0 <= u < W) and (0 <= v < H)
            assert seen >= 12, f"{obj.name} is in view in only {seen} of 60 frames"


def test_presets_and_cli_preset_override(tmp_path, capsys):
    from vipe_dagster.synth import benchmark_configs, preset, preset_names

    names = preset_names()
    cfgs = benchmark_configs()
    assert len(cfgs) == len(names) >= 6 and {c.trajectory for c in cfgs} == set(
        ["forward", "orbit", "handheld", "rotation", "fixed"])
    assert any(c.moving_objects for c in cfgs) and {c.scene for c in cfgs} == {"indoor", "outdoor"}
    q = preset("indoor_orbit", quick=True)
    assert (q.num_frames, q.width, q.height, q.name) == (30, 256, 192, "indoor_orbit")
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        preset("nope")
    assert main(["synth", "--list-presets"]) == 0
    assert "indoor_handheld_dynamic" in capsys.readouterr().out
    rc = main(["synth", "--preset", "outdoor_orbit_dynamic", "--num-frames", "4", "--width", "64", "--height", "48",
               "-o", str(tmp_path), "--no-progress"])
    assert rc == 0
    desc = json.load(open(tmp_path / "outdoor_orbit_dynamic_scene.json"))
    assert desc["config"] == {**desc["config"], "scene": "outdoor", "trajectory": "orbit", "moving_objects": 2,
                              "seed": 5, "num_frames": 4, "width": 64}


def test_missing_gl_platform_is_a_clear_error(tmp_path):
    import ctypes.util
    import subprocess
    import sys

    if ctypes.util.find_library("OSMesa"):
        pytest.skip("OSMesa is installed here, so it cannot stand in for a missing GL platform")
    env = {**os.environ, "PYOPENGL_PLATFORM": "osmesa"}
    out = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "synth", "--num-frames", "2", "--width", "64",
                          "--height", "48", "-o", str(tmp_path / "o"), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "could not set up offscreen OpenGL" in out.stderr and "PYOPENGL_PLATFORM=egl" in out.stderr
    assert not (tmp_path / "o").exists()
