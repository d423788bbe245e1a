"""Given lens models: ``--intrinsics`` with distortion, ``--camera-model``, the JSON intrinsics file, and the
rectification at ingest (a distorted rendering of a known scene comes out as the ideal pinhole rendering)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vipe_dagster import camera as C
from vipe_dagster.cli import main
from vipe_dagster.config import IntrinsicsConfig, parse_camera, parse_camera_json
from vipe_dagster.errors import ConfigError
from vipe_dagster.io import ArtifactStore


def test_parse_camera_forms():
    assert parse_camera("500,510,320,240") == {"fx": 500, "fy": 510, "cx": 320, "cy": 240, "camera_model": "pinhole"}
    c = parse_camera("500 510 320 240 -0.1")
    assert c["camera_model"] == "radial" and c["k1"] == -0.1
    c = parse_camera("500,510,320,240,-0.1,0.02,1e-3,-2e-3,0.01")
    assert (c["k2"], c["p1"], c["p2"], c["k3"]) == (0.02, 1e-3, -2e-3, 0.01)
    c = parse_camera("500,500,320,240,0.03,0.01,-0.007,0.001", "fisheye")
    assert c["camera_model"] == "fisheye" and c["k4"] == 0.001 and "p1" not in c
    assert parse_camera("300,300,320,240,0.8", "mei")["xi"] == 0.8
    for text, model, msg in [("500,500,320,240,0.1,0.2,0.3", None, "for camera model radial"),
                             ("500,500,320,240,0.1", "pinhole", "for camera model pinhole"),
                             ("500,500,320,240,0.1", "fisheye", "k1,k2,k3,k4"),
                             ("500,500,320,240,-1.5", "mei", "xi must be > -1"),
                             ("500,500,320", None, "expected 4 numbers")]:
        with pytest.raises(ConfigError, match=msg):
            parse_camera(text, model)


def test_intrinsics_config_rules():
    assert IntrinsicsConfig(camera_model="pinhole").radial_terms == 0
    assert IntrinsicsConfig(camera_model="radial", radial_terms=0).radial_terms == 1
    with pytest.raises(ValueError, match="self-calibration is not available"):
        IntrinsicsConfig(camera_model="fisheye")
    with pytest.raises(ValueError, match="pinhole has no distortion"):
        IntrinsicsConfig(fx=500, camera_model="pinhole", k1=0.1)
    assert IntrinsicsConfig(fx=500, cx=1, cy=2, k1=-0.1).given_distortion() == ("opencv", [500, 500, 1, 2, -0.1, 0, 0, 0, 0])
    assert IntrinsicsConfig(fx=500, cx=1, cy=2).given_distortion() is None


def test_parse_camera_json_colmap_order_and_scaling(tmp_path):
    c = parse_camera_json(json.dumps({"model": "OPENCV", "params": [500, 510, 320, 240, -0.1, 0.01, 1e-3, 2e-3],
                                      "width": 640, "height": 480}), "K.json", (640, 480))
    assert c == {"fx": 500, "fy": 510, "cx": 320, "cy": 240, "k1": -0.1, "k2": 0.01, "p1": 1e-3, "p2": 2e-3,
                 "camera_model": "radial"}
    # a calibration at 1280x960 for a 640x480 video: scaled (pixel-centre convention)
    c = parse_camera_json(json.dumps({"model": "SIMPLE_RADIAL", "params": [1000, 639.5, 479.5, -0.04],
                                      "width": 1280, "height": 960}), "K.json", (640, 480))
    assert (c["fx"], c["fy"], c["cx"], c["cy"], c["k1"]) == (500, 500, 319.5, 239.5, -0.04)
    c = parse_camera_json(json.dumps({"model": "OPENCV_FISHEYE", "params": [500, 500, 320, 240, .1, .2, .3, .4]}),
                          "K.json", (640, 480))
    assert c["camera_model"] == "fisheye" and c["k4"] == 0.4
    for doc, msg in [({"model": "THIN_PRISM_FISHEYE", "params": [1]}, "not supported"),
                     ({"model": "RADIAL", "params": [500, 320, 240]}, r"RADIAL takes 5"),
                     ({"model": "PINHOLE", "params": [500, 500, 320, 240], "width": 640, "height": 360},
                      "another aspect ratio"),
                     ({"params": [1]}, "expected a JSON object")]:
        with pytest.raises(ConfigError, match=msg):
            parse_camera_json(json.dumps(doc), "K.json", (640, 480))


def test_cli_camera_model_errors(tmp_path, capsys):
    dog = "samples/dog-example.mp4"
    assert main(["infer", dog, "-o", str(tmp_path / "a"), "--camera-model", "fisheye"]) == 2
    assert "self-calibration is not available" in capsys.readouterr().err
    assert main(["infer", dog, "-o", str(tmp_path / "b"), "--intrinsics", "500,500,320,240,0.1,0.2,0.3"]) == 2
    assert "for camera model radial" in capsys.readouterr().err
    f = tmp_path / "K.json"
    f.write_text(json.dumps({"model": "OPENCV_FISHEYE", "params": [500, 500, 320, 240, .1, .2, .3, .4]}))
    assert main(["infer", dog, "-o", str(tmp_path / "c"), "--intrinsics-file", str(f), "--camera-model", "radial"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _pattern(rays: np.ndarray) -> np.ndarray:
    """Grey level of a textured plane z = 1 seen along unit-z rays (smooth: exact under bilinear sampling)."""
    a, b = rays[..., 0], rays[..., 1]
    return 127.0 + 60.0 * np.sin(21.0 * a) * np.cos(17.0 * b) + 40.0 * np.sin(11.0 * (a + b))


@pytest.mark.parametrize("model,params", [
    ("radial", [300.0, 300.0, 159.5, 119.5, -0.25, 0.06, 1e-3, -1e-3]),
    ("fisheye", [200.0, 200.0, 159.5, 119.5, 0.03, 0.01, -0.007, 0.001]),
])
def test_given_distortion_is_rectified_at_ingest(tmp_path, model, params):
    """Frames of a known scene rendered through a distorted lens come out of ingest as the ideal pinhole
    rendering of the same scene (the pinhole the manifest and the intrinsics record)."""
    W, H = 320, 240
    lens = C.camera_from_params("opencv" if model == "radial" else "kannala_brandt", np.array(params))
    rays, ok = lens.unproject_with_valid(C.pixel_grid(W, H))
    distorted = np.where(ok.numpy(), _pattern(rays.numpy()), 0).clip(0, 255).astype(np.uint8)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:04d}.png"), cv2.cvtColor(distorted, cv2.COLOR_GRAY2BGR))
    out = tmp_path / "out"
    rc = main(["infer", "--image-dir", str(frames), "-o", str(out), "--pipeline", "pose_only",
               "--assume_fixed_camera_pose", "--long_side", str(W), "--camera-model", model,
               "--intrinsics", ",".join(str(v) for v in params)])
    assert rc == 0
    store = ArtifactStore(str(out))
    man = store.read_manifest("frames")
    cam = man["camera"]
    assert cam["rectified"] and cam["model"] == ("OPENCV" if model == "radial" else "OPENCV_FISHEYE")
    np.testing.assert_allclose(cam["params_processing_px"], params, atol=1e-9)
    pin = np.array(cam["rectification"]["pinhole"])
    np.testing.assert_allclose(pin, C.rectifying_pinhole(lens, W, H), atol=1e-9)
    intr, _, types = store.read_intrinsics("frames")
    assert types[0] == "PINHOLE"
    np.testing.assert_allclose(intr[0, :4], pin, atol=1e-3)
    stream = store.open_rgb("frames")
    _, frame = next(iter(stream))
    got = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float64) if frame.ndim == 3 else frame.astype(np.float64)
    ideal = _pattern(C.PinholeCamera(pin).unproject(C.pixel_grid(W, H)).numpy())
    inner = (slice(4, H - 4), slice(4, W - 4))
    err = np.abs(got - ideal)[inner]
    unrectified = np.abs(distorted.astype(np.float64) - ideal)[inner]
    assert err.mean() < 3.0, err.mean()  # video coding + bilinear resampling
    # the distortion matters: without rectification most of the frame is far off
    assert np.percentile(unrectified, 90) > 4 * np.percentile(err, 90), (np.percentile(unrectified, 90),
                                                                         np.percentile(err, 90))


def test_given_distortion_source_resolution_output(tmp_path):
    """--output_resolution source: the source-size frames go through the same rectification (scaled)."""
    W, H = 320, 240
    params = [300.0, 300.0, 159.5, 119.5, -0.25, 0.06]
    lens = C.camera_from_params("opencv", np.array(params))
    rays, ok = lens.unproject_with_valid(C.pixel_grid(W, H))
    distorted = np.where(ok.numpy(), _pattern(rays.numpy()), 0).clip(0, 255).astype(np.uint8)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:04d}.png"), cv2.cvtColor(distorted, cv2.COLOR_GRAY2BGR))
    out = tmp_path / "out"
    rc = main(["infer", "--image-dir", str(frames), "-o", str(out), "--pipeline", "pose_only",
               "--assume_fixed_camera_pose", "--long_side", "160", "--output_resolution", "source",
               "--intrinsics", ",".join(str(v) for v in params)])
    assert rc == 0
    store = ArtifactStore(str(out))
    intr, _, _ = store.read_intrinsics("frames")
    _, frame = next(iter(store.open_rgb("frames")))
    assert frame.shape[:2] == (H, W)
    got = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float64)
    ideal = _pattern(C.PinholeCamera(intr[0, :4].astype(np.float64)).unproject(C.pixel_grid(W, H)).numpy())
    err = np.abs(got - ideal)[4:-4, 4:-4]
    assert err.mean() < 3.0, err.mean()


def test_pose_stage_alone_refuses_a_lens_it_cannot_model(tmp_path):
    from vipe_dagster.config import PoseConfig
    from vipe_dagster.pipeline import run_pose

    cfg = PoseConfig()
    cfg.intrinsics = IntrinsicsConfig(fx=500, fy=500, cx=160, cy=120, k1=-0.1, p1=1e-3, camera_model="radial")
    with pytest.raises(ConfigError, match="rectifying the frames at ingest"):
        run_pose(ArtifactStore(str(tmp_path)), "x", cfg)
