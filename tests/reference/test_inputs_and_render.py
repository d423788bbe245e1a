"""Reference inputs and flags: bmp/tif frame folders, depth as .npy files, the renderer's frame flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from ref_helpers import REPO, run

from vipe_dagster.io import ArtifactStore, open_video, probe

RENDER = REPO / "ego_view_rendering" / "render_vipe_pointcloud.py"


def test_bmp_and_tif_frame_folders(clip, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    src = [f for _, f in open_video(str(clip), 0, 5)]
    for i, f in enumerate(src):
        ext = (".bmp", ".tif", ".tiff")[i % 3]
        cv2.imwrite(str(frames / f"frame_{i:03d}{ext}"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    info = probe(str(frames))
    assert (info.num_frames, info.width, info.height, info.kind) == (6, 320, 180, "images")
    got = [f for _, f in open_video(str(frames))]
    assert all(np.array_equal(a, b) for a, b in zip(got, src, strict=True))  # bmp/tif are lossless


def _as_reference_result(src: str, dst: Path, layout: str) -> Path:
    """A copy of a result folder as the EgoX examples ship it: no manifest, depth as .npy files."""
    shutil.copytree(src, dst)
    (dst / "vipe" / "cam01_manifest.json").unlink()
    store = ArtifactStore(str(dst))
    depths = [d for _, d in store.iter_depth("cam01")]
    (dst / "depth" / "cam01.zip").unlink()
    if layout == "flat":  # depth/*.npy, the EgoX README's layout
        for i, d in enumerate(depths):
            np.save(dst / "depth" / f"{i:05d}.npy", d)
    else:  # depth/<name>/depth_%06d.npy, what the EgoX conversion script writes
        (dst / "depth" / "cam01").mkdir()
        for i, d in enumerate(depths):
            np.save(dst / "depth" / "cam01" / f"depth_{i:06d}.npy", d)
    return dst


@pytest.mark.parametrize("layout", ["flat", "folder"])
def test_depth_given_as_npy_files_renders_like_the_zip(take, tmp_path, layout):
    base = tmp_path / "zip" / take.take / "cam01"
    shutil.copytree(take.vipe_dir, base)
    npy = _as_reference_result(take.vipe_dir, tmp_path / "npy" / take.take / "cam01", layout)
    store = ArtifactStore(str(npy))
    assert store.exists("depth", "cam01") and store.depth_count("cam01") == take.num_frames
    outs = []
    for inp, out in ((base, tmp_path / "r1"), (npy, tmp_path / "r2")):
        p = run(
            [
                "python",
                RENDER,
                "--input_dir",
                inp,
                "--out_dir",
                out,
                "--meta_json_path",
                take.meta_json,
                "--point_size",
                "1.5",
                "--resolution",
                "96",
                "--fish_eye_rendering",
                "--use_mean_bg",
                "--batch_size",
                "4",
            ],
            tmp_path,
        )
        assert p.rc == 0, p.err[-3000:]
        outs.append(sorted(out.rglob("frame_*.png")))
    assert [x.name for x in outs[0]] == [x.name for x in outs[1]] == [f"frame_{i:06d}.png" for i in range(4)]
    for a, b in zip(*outs, strict=True):
        assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b)))
    assert outs[1][0].parent.name == "test_output_mean_bg_fisheye_pts1.5"


def test_npy_numbering_gap_is_one_error_line(take, tmp_path):
    npy = _as_reference_result(take.vipe_dir, tmp_path / "t" / "cam01", "flat")
    (npy / "depth" / "00002.npy").rename(npy / "depth" / "00007.npy")
    p = run(
        [
            "python",
            RENDER,
            "--input_dir",
            npy,
            "--out_dir",
            tmp_path / "o",
            "--meta_json_path",
            take.meta_json,
        ],
        tmp_path,
    )
    assert p.rc == 2 and "Traceback" not in p.err, p.err[-2000:]
    assert len(p.error_lines) == 1 and "numbered consecutively" in p.error_lines[0]
    assert not (tmp_path / "o").exists()


def test_source_frame_flags(take, tmp_path):
    common = [
        "python",
        RENDER,
        "--input_dir",
        take.vipe_dir,
        "--ego_camera_pose_path",
        take.camera_pose_json,
        "--exo_camera_pose_path",
        take.gopro_calibs,
        "--online_calibration_path",
        take.online_calibration,
        "--resolution",
        "64",
        "--fish_eye_rendering",
        "--use_mean_bg",
    ]
    out = tmp_path / "o"
    p = run(
        [
            *common,
            "--out_dir",
            out,
            "--start_frame",
            "0",
            "--end_frame",
            "2",
            "--source_start_frame",
            "1",
            "--source_end_frame",
            "3",
            "--batch_size",
            "2",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    meta = json.loads(next(out.rglob("render_meta.json")).read_text())
    assert meta["frames"] == [0, 1, 2] and meta["take_frames"] == [1, 2, 3]
    assert next(out.rglob("render_meta.json")).parent.relative_to(out).parts[:2] == (take.take, "cam01")
    for extra, fragment in (
        (
            ["--end_frame", "2", "--source_start_frame", "1", "--source_end_frame", "2"],
            "must have the same length",
        ),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
    ):
        p = run([*common, "--out_dir", tmp_path / "bad", *extra], tmp_path)
        assert p.rc == 2 and len(p.error_lines) == 1 and fragment in p.error_lines[0], p.err[-2000:]
    p = run(
        [
            "python",
            RENDER,
            "--input_dir",
            take.vipe_dir,
            "--out_dir",
            tmp_path / "bad",
            "--meta_json_path",
            take.meta_json,
            "--source_start_frame",
            "1",
        ],
        tmp_path,
    )
    assert p.rc == 2 and "need --ego_camera_pose_path" in p.error_lines[0]
    assert not (tmp_path / "bad").exists()
    help_text = run(["python", RENDER, "--help"], tmp_path).out
    for flag in (
        "--input_dir",
        "--out_dir",
        "--meta_json_path",
        "--point_size",
        "--start_frame",
        "--end_frame",
        "--batch_size",
        "--only_bg",
        "--use_mean_bg",
        "--fish_eye_rendering",
        "--online_calibration_path",
        "--ego_camera_pose_path",
        "--exo_camera_pose_path",
        "--source_start_frame",
        "--source_end_frame",
    ):
        assert flag in help_text, flag


def test_vipe_console_script_is_declared():
    import importlib
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert (
        scripts["vipe"] == "vipe_dagster.vipe_cli:main" and scripts["vipe-dagster"] == "vipe_dagster.cli:main"
    )
    mod, func = scripts["vipe"].split(":")
    assert callable(getattr(importlib.import_module(mod), func))
    for rel in (
        "run.py",
        "scripts/vipe_to_colmap.py",
        "scripts/download_dataset.py",
        "scripts/infer_vipe.sh",
        "scripts/render_vipe.sh",
        "ego_view_rendering/render_vipe_pointcloud.py",
    ):
        assert (REPO / rel).stat().st_mode & 0o111, f"{rel} is not executable"


def test_vipe_help_lists_the_reference_flags(tmp_path):
    from ref_helpers import vipe_argv

    out = run([*vipe_argv(), "infer", "--help"], tmp_path).out
    for flag in (
        "--image-dir",
        "--output",
        "--pipeline",
        "--visualize",
        "--start_frame",
        "--end_frame",
        "--assume_fixed_camera_pose",
        "--use_exo_intrinsic_gt",
        "--long_side",
        "--output_resolution",
        "--save_slam_map",
    ):
        assert flag in out, flag
    out = run([*vipe_argv(), "visualize", "--help"], tmp_path).out
    assert "--port" in out and "--use_mean_bg" in out and Path(REPO).exists()


def test_exo_intrinsic_gt_is_scaled_to_the_video(clip, tmp_path):
    from vipe_dagster.compat.run import exo_intrinsics_from_gt
    from vipe_dagster.errors import ConfigError

    k = "[[1800, 0, 1920], [0, 1800, 1080], [0, 0, 1]]"  # an Ego-Exo4D GoPro K at 3840x2160
    assert exo_intrinsics_from_gt(k, 796, 448) == pytest.approx(
        (1800 * 224 / 1080, 1800 * 224 / 1080, 398, 224)
    )
    with pytest.raises(ConfigError, match="3x3 intrinsics matrix"):
        exo_intrinsics_from_gt("[[1, 2], [3, 4]]", 10, 10)
    with pytest.raises(ConfigError, match="must be > 0"):
        exo_intrinsics_from_gt("[[0, 0, 1], [0, 1, 1], [0, 0, 1]]", 10, 10)
    from ref_helpers import vipe_argv

    out = tmp_path / "o"
    p = run(
        [
            *vipe_argv(),
            "infer",
            clip,
            "-o",
            out,
            "--pipeline",
            "pose_only",
            "--long_side",
            "160",
            "--use_exo_intrinsic_gt",
            k,
            "--end_frame",
            "5",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    intr = ArtifactStore(str(out)).read_intrinsics("clip")[0]
    assert np.allclose(intr[0], [150.0, 150.0, 160.0, 90.0], atol=1e-3)  # f * (H/2) / cy at 320x180
    assert ArtifactStore(str(out)).read_manifest("clip")["pose"]["intrinsics"]["source"] == "given"


def test_viewer_use_mean_bg_shows_the_mean_background_from_the_start(take):
    import socket

    from vipe_dagster.viz.viewer import ResultViewer, ViewerOptions

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for on in (True, False):
        v = ResultViewer(
            ArtifactStore(take.vipe_dir),
            host="127.0.0.1",
            port=port,
            options=ViewerOptions(mean_bg_on_start=on),
        )
        try:
            v.wait_background()
            assert v.gui_mean_bg.value is on
            assert (v.scene_state()["mean_bg_points"] > 50) is on
        finally:
            v.close()
