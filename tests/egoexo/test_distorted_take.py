"""Generated rig takes look like Ego-Exo4D: the exo videos are Kannala-Brandt images whose coefficients are in
``gopro_calibs.csv`` (checked with OpenCV's fisheye model, an independent implementation)."""

import json

import cv2
import numpy as np

from vipe_dagster.egoexo import formats as F
from vipe_dagster.egoexo.exo_infer import video_intrinsics
from vipe_dagster.egoexo.rig_depth import undistort_kb
from vipe_dagster.synth.egoexo_take import GOPRO_KB, _kb_rays, cast, generate_rig_take

W, H = 160, 120


def test_exo_videos_are_kannala_brandt_images_of_their_calibration(tmp_path):
    take = generate_rig_take(str(tmp_path / "take"), num_cameras=2, num_frames=2, exo_size=(W, H), exo_focal=110.0,
                             resolution=32)
    calib = F.read_gopro_calibs(take.gopro_calibs)["cam01"]
    assert calib.width == 2 * W and calib.height == 2 * H  # at the "full GoPro" size, as Ego-Exo4D's
    k, dist = video_intrinsics(calib, W, H, take.gopro_calibs)
    np.testing.assert_allclose(dist, GOPRO_KB)
    np.testing.assert_allclose(k, [110.0, 110.0, (W - 1) / 2, (H - 1) / 2], atol=1e-9)
    assert json.loads(open(take.camera_pose_json).read())["cam01"]["distortion_coeffs"] == list(GOPRO_KB)

    # the generator's per-pixel rays (vipe_dagster.camera) land back on their pixels under OpenCV's fisheye model
    u, v = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    rays = _kb_rays(take.K, GOPRO_KB, W, H)
    Kc = np.array([[k[0], 0, k[2]], [0, k[1], k[3]], [0, 0, 1.0]])
    uv, _ = cv2.fisheye.projectPoints(rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), Kc, np.asarray(dist))
    assert np.abs(uv.reshape(H, W, 2) - np.stack([u, v], -1)).max() < 1e-6
    # the corner rays are wider than a pinhole's with the same focal length: the lens distorts
    assert abs(rays[0, 0, 0]) > 1.1 * (k[2] / k[0])

    # OpenCV's undistortion of the video frame is the exact pinhole ray cast (up to H.264 and resampling);
    # the distorted frame itself is not
    frame = cv2.cvtColor(cv2.VideoCapture(take.videos["cam01"]).read()[1], cv2.COLOR_BGR2RGB).astype(float)
    T = take.T_world_cam["cam01"]
    pin_rays = np.stack([(u - k[2]) / k[0], (v - k[3]) / k[1], np.ones_like(u)], -1)
    t, rgb = cast(T[:3, 3], pin_rays @ T[:3, :3].T)
    pinhole = rgb * 255
    inner = np.zeros((H, W), bool)
    inner[4:-4, 4:-4] = True
    err_und = np.abs(undistort_kb(frame, k, dist) - pinhole)[inner].mean()
    err_raw = np.abs(frame - pinhole)[inner].mean()
    print(f"mean abs error against the pinhole ray cast: undistorted {err_und:.2f}, distorted {err_raw:.2f}")
    assert err_und < 0.45 * err_raw
    # ground truth: the rectified depth is the pinhole ray cast's; the video depth differs off-centre
    np.testing.assert_allclose(take.gt_depth("cam01"), t, rtol=1e-5)
    dv = take.gt_depth_distorted("cam01")
    assert abs(dv[H // 2, W // 2] - t[H // 2, W // 2]) < 0.05 * t[H // 2, W // 2]
    assert np.abs(dv - t).mean() > 0.05
