"""``vipe-dagster infer --assume_fixed_camera_pose`` on an exo camera of an Ego-Exo4D take with other calibrated exo
cameras: the depth comes from the rig (metric), not from a learned model."""

import json

import numpy as np

from vipe_dagster.cli import main
from vipe_dagster.io import ArtifactStore
from vipe_dagster.synth.egoexo_take import generate_rig_take


def test_fixed_camera_infer_uses_the_exo_rig(tmp_path, capsys):
    # pinhole videos (k0..k3 = 0): the video's own frames are the pinhole view
    take = generate_rig_take(str(tmp_path / "take"), num_cameras=3, num_frames=6, exo_size=(192, 144),
                             exo_focal=140.0, resolution=48, kb=None)
    out = tmp_path / "out"
    rc = main(["infer", take.videos["cam01"], "-o", str(out), "--pipeline", "default", "--assume_fixed_camera_pose",
               "--long_side", "192"])
    assert rc == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{"):])
    assert summary["depth"]["source"] == "rig calibration" and summary["depth"]["scale"] == "metric"
    store = ArtifactStore(str(out))
    man = store.read_manifest("cam01")
    rig = man["rig_depth"]
    assert rig["scale"] == "metric" and rig["source"] == "rig calibration" and rig["others"] == ["cam02", "cam03"]
    assert 0 < rig["covered_fraction"] <= 1 and 0 <= rig["filled_fraction"] <= 1 - rig["covered_fraction"] + 1e-4
    k, _, _ = store.read_intrinsics("cam01")
    np.testing.assert_allclose(k[0], [140.0, 140.0, 95.5, 71.5], atol=1e-3)  # from gopro_calibs.csv (2x size)
    c2w, _ = store.read_pose("cam01")
    assert np.allclose(c2w, np.eye(4))
    d = store.read_depth("cam01", 0).astype(np.float64)
    gt = take.gt_depth("cam01").astype(np.float64)
    seen = take.gt_seen_by_other("cam01")
    rel = np.abs(d - gt)[seen] / gt[seen]
    print(f"rig depth via infer: covered {rig['covered_fraction']:.3f}, median rel err {np.median(rel):.4f}, "
          f"AbsRel {rel.mean():.4f} on GT-seen pixels (dense)")
    assert np.median(rel) < 0.03  # metric with no alignment


def test_fixed_camera_infer_rectifies_a_kannala_brandt_rig_camera(tmp_path, capsys):
    """Ego-Exo4D's exo videos are Kannala-Brandt images: infer takes the lens from gopro_calibs.csv, rectifies
    the frames at ingest (as for --camera-model fisheye) and resamples the rig depth into that pinhole view.
    Checked against OpenCV's fisheye undistortion and the generator's exact depth."""
    import cv2

    take = generate_rig_take(str(tmp_path / "take"), num_cameras=3, num_frames=6, exo_size=(192, 144),
                             exo_focal=140.0, resolution=48)
    out = tmp_path / "out"
    rc = main(["infer", take.videos["cam01"], "-o", str(out), "--pipeline", "default", "--assume_fixed_camera_pose",
               "--long_side", "192"])
    assert rc == 0, capsys.readouterr().err
    store = ArtifactStore(str(out))
    man = store.read_manifest("cam01")
    lens = man["camera"]
    assert lens["model"] == "OPENCV_FISHEYE" and lens["rectified"]
    pin = store.read_intrinsics("cam01")[0][0]
    assert np.allclose(pin, lens["rectification"]["pinhole"])
    K = np.array([[140.0, 0, 95.5], [0, 140.0, 71.5], [0, 0, 1]])  # gopro_calibs.csv (2x size) scaled to 192 px
    dist = np.asarray(lens["params_processing_px"][4:8], np.float64)
    Kp = np.array([[pin[0], 0, pin[2]], [0, pin[1], pin[3]], [0, 0, 1]])
    # the frames are OpenCV's undistortion of the recorded video to the written pinhole (up to H.264 noise)
    from vipe_dagster.io.video import open_video

    raw = next(iter(open_video(take.videos["cam01"], 0, 0)))[1]
    got = next(iter(store.open_rgb("cam01")))[1].astype(np.float64)[4:-4, 4:-4]

    def error(d, shift_px=0.0):  # mean |difference| to OpenCV's undistortion with lens d to Kp shifted
        K2 = Kp + np.array([[0, 0, shift_px], [0, 0, 0], [0, 0, 0]])
        m1, m2 = cv2.fisheye.initUndistortRectifyMap(K, d, np.eye(3), K2, (192, 144), cv2.CV_32FC1)
        return np.abs(got - cv2.remap(raw, m1, m2, cv2.INTER_LINEAR).astype(np.float64)[4:-4, 4:-4]).mean()

    e = error(dist)
    print(f"frame vs OpenCV fisheye undistortion: {e:.2f} (lens ignored {error(0 * dist):.2f}, 0.5 px off "
          f"{error(dist, 0.5):.2f}) grey levels")
    assert e < 8.0 and e < 0.8 * error(0 * dist) and e < 0.9 * error(dist, 0.5) and e < 0.9 * error(dist, -0.5)
    # rig depth in the rectified view: the exact depth of the calibration's pinhole, warped by K Kp^-1
    gt = cv2.warpPerspective(take.gt_depth("cam01").astype(np.float32), K @ np.linalg.inv(Kp), (192, 144),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=float("nan"))
    seen = cv2.warpPerspective(take.gt_seen_by_other("cam01").astype(np.uint8), K @ np.linalg.inv(Kp), (192, 144),
                               flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    d = store.read_depth("cam01", 0).astype(np.float64)
    ok = seen & np.isfinite(gt) & np.isfinite(d)
    assert ok.mean() > 0.3
    rel = np.abs(d - gt)[ok] / gt[ok]
    print(f"KB rig camera via infer: median rel err {np.median(rel):.4f}, AbsRel {rel.mean():.4f} on "
          f"{ok.mean():.2f} of the pixels")
    assert np.median(rel) < 0.03  # metric with no alignment, in the rectified view
