"""Ego-Exo4D / Aria / EgoX readers on files written the way those datasets lay them out."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vipe_dagster.egoexo import formats as F
from vipe_dagster.errors import InputError


def _w2c(seed):
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
    T[:3, 3] = rng.normal(size=3)
    return T


def test_camera_pose_json(tmp_path):
    p = tmp_path / "take.json"
    ego = {str(f): _w2c(f)[:3].tolist() for f in (12, 10, 11)}
    p.write_text(json.dumps({
        "metadata": {"take_name": "cmu_bike01_2", "take_uid": "abc"},
        "cam02": {"camera_intrinsics": [[1800, 0, 1920], [0, 1800, 1080], [0, 0, 1]],
                  "camera_extrinsics": _w2c(99)[:3].tolist(), "distortion_coeffs": [0.1, 0.01, 0, 0]},
        "aria01": {"camera_intrinsics": [[150, 0, 255.5], [0, 150, 255.5], [0, 0, 1]], "camera_extrinsics": ego},
    }))
    cp = F.read_camera_pose_json(str(p))
    assert cp.take_name == "cmu_bike01_2" and list(cp.exo) == ["cam02"]
    np.testing.assert_allclose(cp.exo["cam02"].w2c, _w2c(99))
    assert cp.ego.label == "aria01" and cp.ego.frames.tolist() == [10, 11, 12]
    np.testing.assert_allclose(cp.ego.w2c[0], _w2c(10))
    part = cp.ego.slice(11, 12)
    assert part.frames.tolist() == [11, 12]
    with pytest.raises(InputError, match=r"ego frames \[13\] are missing; available take frames \[10, 12\]"):
        cp.ego.slice(11, 13)


def test_camera_pose_json_errors(tmp_path):
    p = tmp_path / "noaria.json"
    p.write_text(json.dumps({"cam01": {"camera_intrinsics": np.eye(3).tolist(),
                                       "camera_extrinsics": np.eye(4)[:3].tolist()}}))
    with pytest.raises(InputError, match=r"No aria camera found in camera pose file .*noaria\.json"):
        F.read_camera_pose_json(str(p))
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops")
    with pytest.raises(InputError, match=r"bad\.json: invalid JSON at line 2"):
        F.read_camera_pose_json(str(bad))
    with pytest.raises(InputError, match=r"file not found: .*missing\.json"):
        F.read_camera_pose_json(str(tmp_path / "missing.json"))


def _gopro_csv(path, rows):
    cols = ["cam_uid", "graph_uid", "tx_world_cam", "ty_world_cam", "tz_world_cam", "qx_world_cam", "qy_world_cam",
            "qz_world_cam", "qw_world_cam", "image_width", "image_height", "intrinsics_type",
            *[f"intrinsics_{i}" for i in range(8)], "start_frame_idx", "end_frame_idx"]
    lines = [",".join(cols)]
    for cam, T in rows:
        q = Rotation.from_matrix(T[:3, :3]).as_quat()  # x y z w
        vals = [cam, "g", *T[:3, 3], *q, 3840, 2160, "KANNALABRANDTK3", 1800, 1801, 1920, 1080, 0.1, 0.01, 0.001, 0.0, -1, -1]
        lines.append(",".join(str(v) for v in vals))
    path.write_text("\n".join(lines) + "\n")


def test_gopro_calibs(tmp_path):
    p = tmp_path / "gopro_calibs.csv"
    T1, T2 = np.linalg.inv(_w2c(1)), np.linalg.inv(_w2c(2))
    _gopro_csv(p, [("cam01", T1), ("cam02", T2)])
    cal = F.exo_camera_from_csv(str(p), "cam02")
    np.testing.assert_allclose(cal.T_world_cam, T2, atol=1e-12)
    np.testing.assert_allclose(cal.w2c, _w2c(2), atol=1e-9)
    assert (cal.width, cal.height) == (3840, 2160) and cal.intrinsics[1] == 1801
    with pytest.raises(InputError, match=r"Camera cam09 not found in .*gopro_calibs\.csv \(cameras: cam01, cam02\)"):
        F.exo_camera_from_csv(str(p), "cam09")


def _calib_line(ts, f=1220.592):
    params = [f, 1464.618, 1442.370, 0.41438, -0.48598, 0.13849, 1.14600, -1.66763, 0.63010,
              7.903e-4, -3.461e-4, -1.078e-3, 7.70e-5, 5.214e-4, -1.066e-4]
    return json.dumps({"tracking_timestamp_us": ts, "utc_timestamp_ns": ts * 1000, "ImuCalibrations": [],
                       "CameraCalibrations": [
                           {"Label": "camera-slam-left", "Projection": {"Name": "FisheyeRadTanThinPrism", "Params": [0] * 15},
                            "T_Device_Camera": {"Translation": [0, 0, 0], "UnitQuaternion": [1, [0, 0, 0]]}},
                           {"Label": "camera-rgb", "Projection": {"Name": "FisheyeRadTanThinPrism", "Params": params},
                            "T_Device_Camera": {"Translation": [0.01, -0.02, 0.03],
                                                "UnitQuaternion": [0.9238795, [0.3826834, 0, 0]]}}]})


def test_online_calibration_nearest_in_time(tmp_path):
    p = tmp_path / "online_calibration.jsonl"
    p.write_text("\n".join([_calib_line(3000, 1000.0), _calib_line(1000, 1100.0), _calib_line(2000, 1200.0)]) + "\n")
    cal = F.read_online_calibration(str(p))
    assert [c.tracking_timestamp_us for c in cal] == [1000, 2000, 3000]
    np.testing.assert_allclose(cal[0].T_device_camera[:3, 3], [0.01, -0.02, 0.03])
    np.testing.assert_allclose(Rotation.from_matrix(cal[0].T_device_camera[:3, :3]).as_rotvec(), [np.pi / 4, 0, 0], atol=1e-6)
    assert F.nearest_calibration(cal, 1400).params[0] == 1100.0
    assert F.nearest_calibration(cal, 1600).params[0] == 1200.0
    assert F.nearest_calibration(cal, 99999).params[0] == 1000.0
    assert F.nearest_calibration(cal, 0).params[0] == 1100.0


def test_online_calibration_errors(tmp_path):
    p = tmp_path / "oc.jsonl"
    p.write_text(_calib_line(1) + "\n" + json.dumps({"tracking_timestamp_us": 2, "CameraCalibrations": [
        {"Label": "camera-rgb", "Projection": {"Name": "Pinhole", "Params": [1, 2, 3]}}]}) + "\n")
    with pytest.raises(InputError, match=r"oc\.jsonl line 2: camera-rgb projection is 'Pinhole' with 3 params"):
        F.read_online_calibration(str(p))


def test_scale_fisheye624_matches_projectaria_rescale():
    from projectaria_tools.core import calibration
    from projectaria_tools.core.sophus import SE3

    params = F.DEFAULT_ARIA_RGB_PARAMS
    cam = calibration.CameraCalibration("camera-rgb", calibration.CameraModelType.FISHEYE624, params,
                                        SE3.from_matrix(np.eye(4)), 2880, 2880, None, np.deg2rad(90), "SN0")
    s = 448 / 2880
    ref = cam.rescale(np.array([448, 448]), s)
    ours = F.scale_fisheye624(params, s)
    np.testing.assert_allclose(ours, ref.get_projection_params(), rtol=1e-9, atol=1e-9)
    # and projection at the scaled size equals the scaled full-size projection with the half-pixel rule
    p3 = np.array([0.2, -0.1, 1.0])
    full, small = cam.project(p3), ref.project(p3)
    np.testing.assert_allclose(small, s * (full + 0.5) - 0.5, atol=1e-6)


def test_rotate_cw_pixels_matches_cv2_rotate():
    h, w = 5, 7
    img = np.zeros((h, w), np.uint8)
    uv = np.array([[6, 1], [0, 0], [3, 4]], float)  # (col, row) in the raw image
    for k, (u, v) in enumerate(uv.astype(int), start=1):
        img[v, u] = k
    rot = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    new = F.rotate_cw_pixels(uv, raw_height=h).astype(int)
    for k, (u, v) in enumerate(new, start=1):
        assert rot[v, u] == k


def test_closed_loop_trajectory(tmp_path):
    p = tmp_path / "closed_loop_trajectory.csv"
    cols = "graph_uid,tracking_timestamp_us,utc_timestamp_ns,tx_world_device,ty_world_device,tz_world_device," \
           "qx_world_device,qy_world_device,qz_world_device,qw_world_device,quality_score"
    rows = [f"g,{ts},0,{ts / 1e6},0,0,0,0,0,1,0.9" for ts in (2000, 1000)]
    p.write_text(cols + "\n" + "\n".join(rows) + "\n")
    tr = F.read_closed_loop_trajectory(str(p))
    assert tr.tracking_timestamp_us.tolist() == [1000, 2000]
    np.testing.assert_allclose(tr.T_world_device[1, :3, 3], [0.002, 0, 0])
    p.write_text(cols + "\n" + "g,1,0,0,0,0,0,0,0,2,0.5\n")
    with pytest.raises(InputError, match=r"closed_loop_trajectory\.csv line 2: quaternion .* is not unit length"):
        F.read_closed_loop_trajectory(str(p))


def test_egox_meta(tmp_path):
    p = tmp_path / "meta.json"
    p.write_text(json.dumps({"test_datasets": [
        {"exo_path": "./takes/other/cam01.mp4", "camera_extrinsics": np.eye(4)[:3].tolist(),
         "ego_intrinsics": [[150, 0, 255.5], [0, 150, 255.5], [0, 0, 1]], "ego_extrinsics": []},
        {"exo_path": "./takes/joker/exo.mp4", "camera_extrinsics": _w2c(5)[:3].tolist(),
         "camera_intrinsics": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
         "ego_intrinsics": [[150, 0, 255.5], [0, 150, 255.5], [0, 0, 1]],
         "ego_extrinsics": [_w2c(i)[:3].tolist() for i in range(3)]},
    ]}))
    s = F.read_egox_meta(str(p), "joker")
    assert s.ego_w2c.shape == (3, 4, 4)
    np.testing.assert_allclose(s.exo_w2c, _w2c(5))
    with pytest.raises(InputError, match=r"No matching sample found for video_name='nobody' in .*meta\.json"):
        F.read_egox_meta(str(p), "nobody")


@pytest.mark.parametrize("d,cam", [("vipe_results/cmu_bike01_2/cam02_static_vda_fixedcam", "cam02"),
                                   ("out/gp01", "gp01"), ("x/aria01_render", "aria01")])
def test_find_camera_id(d, cam):
    assert F.find_camera_id(d) == cam


def test_find_camera_id_error():
    with pytest.raises(InputError, match=r"No valid camera ID found in directory results/cam2x/exo"):
        F.find_camera_id("results/cam2x/exo")
