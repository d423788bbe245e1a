"""Ego-view rendering on a synthetic Ego-Exo4D take with exact ground truth, plus input validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vipe_dagster.cli import main
from vipe_dagster.errors import ArtifactError, FrameRangeError, InputError
from vipe_dagster.render.ego import EgoRenderConfig, output_folder, render_ego
from vipe_dagster.render.ego_camera import fisheye_camera, pinhole_camera
from vipe_dagster.synth.egoexo_take import generate_take

RES = 224


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    return generate_take(str(tmp_path_factory.mktemp("take")), num_frames=4, resolution=RES)


def _psnr(a, b, m):
    err = ((a.astype(float) - b.astype(float)) ** 2)[m].mean()
    return 10 * np.log10(255.0 ** 2 / err)


def _compare(res, take, report):
    out = Path(res.out_path)
    stats = []
    for i in res.frames:
        ours = cv2.imread(str(out / f"frame_{i:06d}.png"))
        gt = cv2.imread(str(Path(take.gt_dir) / "ego_fisheye" / f"frame_{i:06d}.png"))
        vis = cv2.imread(str(Path(take.gt_dir) / "ego_fisheye_visible" / f"frame_{i:06d}.png"), 0) > 0
        covered = ours.sum(axis=2) > 0
        cov = (covered & vis).sum() / vis.sum()
        spill = (covered & ~vis).sum() / covered.sum()
        stats.append((cov, spill, _psnr(ours, gt, covered & vis)))
        if i == res.frames[0]:
            cv2.imwrite(str(out.parent / f"side_by_side_{report}.png"), np.hstack([gt, ours, np.dstack([vis * 255] * 3)]))
    return np.array(stats)


@pytest.mark.parametrize("mode", ["meta", "native"])
def test_fisheye_render_matches_ground_truth(take, tmp_path, mode):
    common = dict(input_dir=take.vipe_dir, out_dir=str(tmp_path / "out"), point_size=1.5, fish_eye_rendering=True,
                  use_mean_bg=True, resolution=RES, subsample=1, normalize=True)
    if mode == "meta":
        cfg = EgoRenderConfig(meta_json_path=take.meta_json, **common)
    else:
        cfg = EgoRenderConfig(ego_camera_pose_path=take.camera_pose_json, exo_camera_pose_path=take.gopro_calibs,
                              online_calibration_path=take.online_calibration, **common)
    res = render_ego(cfg)
    assert res.frames == list(range(take.num_frames))
    stats = _compare(res, take, mode)
    cov, spill, psnr = stats.mean(axis=0)
    print(f"{mode}: coverage of visible {cov:.3f}, spill {spill:.3f}, PSNR {psnr:.2f} dB")
    assert cov > 0.97
    assert spill < 0.06  # splat halo of radius 1.5 px around silhouettes and the exo frustum edge
    assert psnr > 24.0
    assert (Path(res.out_path) / "ego_Prior.mp4").exists()
    meta = json.loads((Path(res.out_path) / "render_meta.json").read_text())
    assert len(meta["coverage"]) == take.num_frames


def test_fisheye_projection_matches_projectaria():
    from projectaria_tools.core import calibration

    from vipe_dagster.egoexo.formats import DEFAULT_ARIA_RGB_PARAMS, scale_fisheye624

    cam = fisheye_camera(DEFAULT_ARIA_RGB_PARAMS, 448)
    proj = calibration.CameraProjection(calibration.CameraModelType.FISHEYE624,
                                        scale_fisheye624(DEFAULT_ARIA_RGB_PARAMS, 448 / 2880))
    rng = np.random.default_rng(0)
    pts = rng.uniform([-1, -1, 0.3], [1, 1, 3], size=(3000, 3))
    uv, valid = cam.project(torch.as_tensor(pts))
    raw = np.array([proj.project(p) for p in pts])
    expected = np.stack([448 - 1 - raw[:, 1], raw[:, 0]], axis=1)
    v = valid.numpy()
    assert v.mean() > 0.9
    np.testing.assert_allclose(uv.numpy()[v], expected[v], atol=1e-3)


def test_pinhole_projection_matches_opencv():
    K = np.array([[150.0, 0, 255.5], [0, 150.0, 255.5], [0, 0, 1]])
    cam = pinhole_camera(K, 448)
    rng = np.random.default_rng(1)
    pts = rng.uniform([-1, -1, 0.5], [1, 1, 3], size=(500, 3))
    s = 448 / 512
    Ks = np.array([[150 * s, 0, s * 256 - 0.5], [0, 150 * s, s * 256 - 0.5], [0, 0, 1]])
    raw, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), Ks, None)
    raw = raw.reshape(-1, 2)
    uv, _ = cam.project(torch.as_tensor(pts))
    np.testing.assert_allclose(uv.numpy(), np.stack([447 - raw[:, 1], raw[:, 0]], axis=1), atol=1e-6)


def test_output_folder_layout():
    cfg = EgoRenderConfig(input_dir="vipe_results/cmu_bike01_2/cam02_static_vda_fixedcam/", out_dir="out",
                          meta_json_path="m.json", use_mean_bg=True, fish_eye_rendering=True, point_size=1.5)
    assert output_folder(cfg).endswith("out/cmu_bike01_2/cam02/test_output_static_vda_fixedcam_mean_bg_fisheye_pts1.5")


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_frame_range_error_before_work(take, tmp_path):
    out = tmp_path / "out"
    cfg = EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(out), meta_json_path=take.meta_json,
                          start_frame=0, end_frame=10)
    with pytest.raises(FrameRangeError, match=r"Frame range \[0, 10\] exceeds available inference results \[0, 3\]"):
        render_ego(cfg)
    assert _nothing_written(out)


def test_no_camera_id(take, tmp_path):
    d = tmp_path / "vipe_results" / "take" / "exo"
    shutil.copytree(take.vipe_dir, d)
    cfg = EgoRenderConfig(input_dir=str(d), out_dir=str(tmp_path / "o"), ego_camera_pose_path=take.camera_pose_json)
    with pytest.raises(InputError, match=r"No valid camera ID found in directory .*/take/exo"):
        render_ego(cfg)


def test_missing_pose_and_depth(take, tmp_path):
    d = tmp_path / "t" / "cam01"
    shutil.copytree(take.vipe_dir, d)
    (d / "depth" / "cam01.zip").unlink()
    cfg = EgoRenderConfig(input_dir=str(d), out_dir=str(tmp_path / "o"), meta_json_path=take.meta_json)
    with pytest.raises(ArtifactError, match=r"Depth file not found: .*depth/cam01\.zip"):
        render_ego(cfg)
    empty = tmp_path / "t2" / "cam01"
    empty.mkdir(parents=True)
    cfg = EgoRenderConfig(input_dir=str(empty), out_dir=str(tmp_path / "o"), meta_json_path=take.meta_json)
    with pytest.raises(ArtifactError, match=r"No VIPE artifacts found in .*t2/cam01"):
        render_ego(cfg)


def test_both_or_neither_mode(take, tmp_path):
    with pytest.raises(InputError, match="either --meta_json_path"):
        render_ego(EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(tmp_path)))


def test_missing_ego_frames(take, tmp_path):
    cfg = EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(tmp_path / "o"),
                          ego_camera_pose_path=take.camera_pose_json, source_start_frame=2)
    with pytest.raises(InputError, match=r"ego frames \[4, 5\] are missing; available take frames \[0, 3\]"):
        render_ego(cfg)
    assert _nothing_written(tmp_path / "o")


def test_cli_render_png_only(take, tmp_path, capsys):
    rc = main(["render-ego", "--input_dir", take.vipe_dir, "--out_dir", str(tmp_path / "o"),
               "--meta_json_path", take.meta_json, "--start_frame", "1", "--end_frame", "2",
               "--resolution", "96", "--output", "png", "--only_bg"])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "o").rglob("frame_*.png"))
    assert files == ["frame_000001.png", "frame_000002.png"]
    rc = main(["render-ego", "--input_dir", take.vipe_dir, "--out_dir", str(tmp_path / "o2"),
               "--meta_json_path", take.meta_json, "--end_frame", "9"])
    assert rc == 2 and "exceeds available inference results [0, 3]" in capsys.readouterr().err


def test_ego_pose_written_for_viewers(take, tmp_path):
    cfg = EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(tmp_path / "o"), meta_json_path=take.meta_json,
                          resolution=64, output="png", only_bg=True)
    res = render_ego(cfg)
    z = np.load(Path(res.out_path) / "ego_pose.npz")
    assert z["data"].shape == (take.num_frames, 4, 4)
    # the ego centre in the ViPE (= exo camera) frame equals the exo-frame position of the GT ego centre
    meta = json.loads(Path(take.meta_json).read_text())["test_datasets"][0]
    exo_w2c = np.vstack([np.array(meta["camera_extrinsics"]), [0, 0, 0, 1]])
    ego_w2c = np.vstack([np.array(meta["ego_extrinsics"][0]), [0, 0, 0, 1]])
    centre_world = np.linalg.inv(ego_w2c)[:3, 3]
    np.testing.assert_allclose(z["data"][0][:3, 3], exo_w2c[:3, :3] @ centre_world + exo_w2c[:3, 3], atol=1e-4)
