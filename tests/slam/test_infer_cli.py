"""``vipe-dagster infer`` argument handling and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from vipe_dagster.cli import main
from vipe_dagster.config import PipelineConfig, parse_intrinsics, preset
from vipe_dagster.errors import ConfigError, FrameRangeError
from vipe_dagster.io import ArtifactStore

DOG = "samples/dog-example.mp4"


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,100,50,50", "100,100,nan,50", "1,2,3,4,5", ""])
def test_bad_intrinsics_string(text):
    with pytest.raises(ConfigError):
        parse_intrinsics(text)


def test_parse_intrinsics_accepts_commas_and_spaces():
    assert parse_intrinsics("500, 510 320 240") == (500.0, 510.0, 320.0, 240.0)


def test_presets():
    assert preset("pose_only").depth is False
    assert preset("fixed_camera").pose.assume_fixed_camera_pose is True
    assert preset("default").depth is True
    with pytest.raises(ConfigError):
        preset("nope")
    with pytest.raises(ValueError):
        PipelineConfig(preset="pose_only", bogus=1)


def test_cli_bad_intrinsics_string(tmp_path, capsys):
    rc = main(["infer", DOG, "-o", str(tmp_path), "--intrinsics", "500,500,320"])
    assert rc == 2
    assert "expected 4 numbers" in capsys.readouterr().err
    assert not (tmp_path / "rgb").exists()  # nothing written


def test_cli_missing_intrinsics_file(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    rc = main(["infer", DOG, "-o", str(tmp_path / "out"), "--intrinsics-file", str(missing)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "intrinsics file not found" in err and str(missing) in err


def test_cli_range_error_uses_foundation_message(tmp_path, capsys):
    rc = main(["infer", DOG, "-o", str(tmp_path), "--start_frame", "0", "--end_frame", "300"])
    assert rc == 2
    assert "Frame range [0, 300] exceeds available frames [0, 121] in dog-example.mp4" in capsys.readouterr().err
    with pytest.raises(FrameRangeError):
        from vipe_dagster.pipeline import infer

        infer(DOG, str(tmp_path), preset("pose_only"), start_frame=50, end_frame=10)


def test_cli_default_pipeline_is_rejected(tmp_path, capsys):
    rc = main(["infer", DOG, "-o", str(tmp_path), "--pipeline", "default"])
    assert rc == 2
    assert "dense depth, which is not available in this build" in capsys.readouterr().err


def test_cli_fixed_camera_with_intrinsics_file(tmp_path, capsys):
    f = tmp_path / "K.txt"
    f.write_text("# fx fy cx cy of the 1280x720 source\n1000 1000 639.5 359.5\n")
    out = tmp_path / "out"
    rc = main(["infer", DOG, "-o", str(out), "--end_frame", "9", "--assume_fixed_camera_pose",
               "--intrinsics-file", str(f), "--long_side", "512"])
    assert rc == 0
    store = ArtifactStore(str(out))
    data, inds, _ = store.read_intrinsics("dog-example")
    # 1280x720 -> 512x288: a factor of 0.4, principal point in the pixel-centre convention
    np.testing.assert_allclose(data[0], [400.0, 400.0, 255.5, 143.5], atol=1e-3)
    c2w, _ = store.read_pose("dog-example")
    assert c2w.shape == (10, 4, 4) and np.allclose(c2w, np.eye(4))
    m = store.read_manifest("dog-example")
    assert m["pose"]["fixed_camera"] is True and m["frames"]["count"] == 10


def test_cli_image_dir_and_missing_input(tmp_path, capsys):
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:04d}.png"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    out = tmp_path / "out"
    rc = main(["infer", "--image-dir", str(frames), "-o", str(out), "--pipeline", "fixed_camera", "--long_side", "160"])
    assert rc == 0
    c2w, inds = ArtifactStore(str(out)).read_pose("frames")
    assert c2w.shape == (5, 4, 4) and list(inds) == list(range(5))
    rc = main(["infer", "-o", str(out)])
    assert rc == 2 and "VIDEO path or --image-dir" in capsys.readouterr().err
