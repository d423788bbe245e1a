"""``vipe-dagster infer --assume_fixed_camera_pose`` on an exo camera of an Ego-Exo4D take with other calibrated exo
cameras: the depth comes from the rig (metric), not from a learned model."""

import json

import numpy as np

from vipe_dagster.cli import main
from vipe_dagster.io import ArtifactStore
from vipe_dagster.synth.egoexo_take import generate_rig_take


def test_fixed_camera_infer_uses_the_exo_rig(tmp_path, capsys):
    # pinhole videos (k0..k3 = 0): this path writes the video's own frames (see the refusal below)
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
    assert 0 < rig["covered_fraction"] <= 1
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


def test_fixed_camera_infer_refuses_a_kannala_brandt_rig_camera(tmp_path, capsys):
    """A take whose exo videos are Kannala-Brandt images (as Ego-Exo4D's): infer would write distorted frames
    next to an undistorted rig depth, so it stops with one error line that names the calibration and the asset
    that undistorts."""
    take = generate_rig_take(str(tmp_path / "take"), num_cameras=2, num_frames=2, exo_size=(96, 72),
                             exo_focal=70.0, resolution=16)
    rc = main(["infer", take.videos["cam01"], "-o", str(tmp_path / "out"), "--pipeline", "default",
               "--assume_fixed_camera_pose"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"error: {take.gopro_calibs}: camera cam01 has Kannala-Brandt distortion" in err
    assert "exo_inference asset" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npz"))
