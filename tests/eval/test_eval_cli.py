"""`vipe-dagster eval` on a generated scene against a perturbed copy of its own ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vipe_dagster.cli import main
from vipe_dagster.errors import ArtifactError
from vipe_dagster.eval.evaluate import evaluate
from vipe_dagster.io import ArtifactStore
from vipe_dagster.synth import SceneConfig, generate


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    cfg = SceneConfig(trajectory="handheld", scene="indoor", num_frames=20, width=128, height=96,
                      moving_objects=1, seed=11, name="seq")
    return generate(cfg, str(tmp_path_factory.mktemp("scene")))


def make_prediction(scene, root, scale=0.5, focal_factor=1.02, offset=None, hole_rows=8):
    """A prediction = the GT under a known Sim3 (or offset), focal scaled, depth scaled with a hole band."""
    gt = scene.gt
    pred = ArtifactStore(str(root))
    c2w, inds = gt.read_pose(scene.name)
    c2w = c2w.astype(np.float64)
    out = c2w.copy()
    if offset is not None:
        out[:, :3, 3] += offset
    else:
        R = Rotation.from_rotvec([0.2, -0.5, 0.1]).as_matrix()
        out[:, :3, :3] = R @ c2w[:, :3, :3]
        out[:, :3, 3] = scale * c2w[:, :3, 3] @ R.T + np.array([3.0, -1.0, 2.0])
    pred.write_pose(scene.name, out, inds=inds)
    intr = gt.read_intrinsics(scene.name)[0].copy()
    intr[:, :2] *= focal_factor
    pred.write_intrinsics(scene.name, intr, inds=inds)
    frames = []
    for _, d in gt.iter_depth(scene.name):
        d = d * (scale if offset is None else 1.0)
        d[:hole_rows] = 0.0  # no prediction in the top rows
        frames.append(d)
    pred.write_depth(scene.name, frames)
    masks = [m for _, m in gt.iter_masks(scene.name)]
    for k in range(5):  # the first five frames miss the moving object
        masks[k] = np.zeros_like(masks[k])
    pred.write_masks(scene.name, masks, {1: "thing"})
    return pred


def test_eval_api_recovers_known_perturbation(scene, tmp_path):
    make_prediction(scene, tmp_path / "pred")
    res = evaluate(str(tmp_path / "pred"), scene.gt.root)
    (r,) = res["sequences"]
    assert r["sequence"] == "seq" and r["frames"] == 20
    assert r["ate"]["rmse"] < 1e-5 and r["ate"]["scale"] == pytest.approx(2.0, rel=1e-5)
    assert r["rpe"]["trans_max"] < 1e-5 and r["rpe"]["rot_max_deg"] < 1e-3
    assert r["ate_se3"]["rmse"] > 0.01  # without scale correction the half-size copy is off
    assert r["focal"]["percent"] == pytest.approx(2.0, abs=1e-4)
    d = r["depth"]
    assert d["frames"] == 20 and d["abs_rel"] < 1e-6 and d["delta1"] == 1.0
    assert d["valid_fraction"] == pytest.approx(1 - 8 / 96)
    assert d["scale"] == pytest.approx(2.0, rel=1e-6)
    # the trajectory's Sim3 scale also fixes the depth scale; no alignment leaves AbsRel = 0.5 exactly
    r_pose = evaluate(str(tmp_path / "pred"), scene.gt.root, depth_align="pose")["sequences"][0]["depth"]
    assert r_pose["abs_rel"] < 1e-5
    r_none = evaluate(str(tmp_path / "pred"), scene.gt.root, depth_align="none")["sequences"][0]["depth"]
    assert r_none["abs_rel"] == pytest.approx(0.5, abs=1e-6)
    gt_masks = np.stack([m for _, m in scene.gt.iter_masks("seq")]) > 0
    assert gt_masks[:5].sum() > 0
    mk = r["masks"]
    assert mk["frames"] == 20 and mk["precision"] == 1.0
    assert mk["recall"] == pytest.approx(gt_masks[5:].sum() / gt_masks.sum())
    assert mk["iou"] == pytest.approx(mk["recall"])
    r_static = evaluate(str(tmp_path / "pred"), scene.gt.root, static_only=True, depth_stride=4)
    assert r_static["sequences"][0]["depth"]["frames"] == 5


def test_eval_cli_table_and_json(scene, tmp_path, capsys):
    make_prediction(scene, tmp_path / "pred", offset=np.array([0.1, 0.0, 0.0]), focal_factor=0.97)
    out_json = tmp_path / "m.json"
    rc = main(["eval", str(tmp_path / "pred"), scene.gt.root, "--sequence", "seq", "--align", "none",
               "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ATE RMSE (none)" in text and "focal error" in text and "depth AbsRel" in text
    data = json.loads(out_json.read_text())
    r = data["sequences"][0]
    assert r["ate"]["rmse"] == pytest.approx(0.1, abs=1e-6) and r["ate"]["max"] == pytest.approx(0.1, abs=1e-6)
    assert r["rpe"]["trans_max"] < 1e-6  # a constant offset leaves relative motion unchanged
    assert r["focal"]["percent"] == pytest.approx(3.0, abs=1e-4)
    assert r["ate"]["path_length"] == pytest.approx(json.load(open(scene.scene_json))["trajectory_length_m"],
                                                    rel=1e-5)


def test_eval_errors(scene, tmp_path, capsys):
    with pytest.raises(ArtifactError, match="no sequence is present in both"):
        evaluate(str(tmp_path / "empty"), scene.gt.root)
    rc = main(["eval", str(tmp_path / "empty"), scene.gt.root, "--sequence", "seq"])
    assert rc == 2 and "has no poses for sequence 'seq'" in capsys.readouterr().err
    pred = ArtifactStore(str(tmp_path / "few"))
    pred.write_pose("seq", np.tile(np.eye(4), (2, 1, 1)), inds=[0, 1])
    with pytest.raises(ArtifactError, match="share 2 frame indices"):
        evaluate(str(tmp_path / "few"), scene.gt.root)


def test_eval_fixed_camera_scene(tmp_path, capsys):
    res = generate(SceneConfig(trajectory="fixed", num_frames=6, width=64, height=48, name="still"),
                   str(tmp_path / "s"))
    rc = main(["eval", res.gt.root, res.gt.root, "--json", str(tmp_path / "m.json")])
    assert rc == 0
    r = json.loads((tmp_path / "m.json").read_text())["sequences"][0]
    assert r["ate"]["rmse"] == 0.0 and r["ate"]["path_length"] == 0.0
    assert r["ate"]["rmse_pct_of_path"] is None  # undefined for a camera that does not move (NaN -> null)
    assert r["masks"]["iou"] == 1.0  # both masks are empty: full agreement


def test_prediction_over_a_sub_range_is_paired_by_frame_number(scene, tmp_path):
    """A prediction for frames 5..19 (zip members 0..14) must be compared with GT frames 5..19."""
    gt = scene.gt
    c2w, inds = gt.read_pose("seq")
    pred = ArtifactStore(str(tmp_path / "sub"))
    pred.write_pose("seq", c2w[5:], inds=inds[5:])
    pred.write_intrinsics("seq", gt.read_intrinsics("seq")[0][5:], inds=inds[5:])
    pred.write_depth("seq", [d for _, d in gt.iter_depth("seq", range(5, 20))])
    pred.write_masks("seq", [m for _, m in gt.iter_masks("seq", range(5, 20))], {1: "thing"})
    r = evaluate(str(tmp_path / "sub"), gt.root)["sequences"][0]
    assert r["frames"] == 15 and r["ate"]["rmse"] < 1e-6
    assert r["depth"]["frames"] == 15 and r["depth"]["abs_rel"] == 0.0
    assert r["masks"]["iou"] == 1.0 and r["masks"]["frames"] == 15


def test_frames_flagged_invalid_are_not_scored(scene, tmp_path):
    from vipe_dagster.io import ArtifactStore

    make_prediction(scene, tmp_path / "pred")
    pred = ArtifactStore(str(tmp_path / "pred"))
    c2w, inds = pred.read_pose("seq")
    held = c2w.copy()
    held[10:14] = held[9]  # a lost stretch holding the last good pose, flagged invalid
    valid = np.ones(len(c2w), bool)
    valid[10:14] = False
    pred.write_pose("seq", held, inds=inds, valid=valid)
    r = evaluate(str(tmp_path / "pred"), scene.gt.root)["sequences"][0]
    assert r["frames"] == 16 and r["frames_invalid"] == 4
    assert r["ate"]["rmse"] < 1e-5  # the held poses are not measurements and do not count
    pred.write_pose("seq", held, inds=inds)  # the same poses presented as measured
    assert evaluate(str(tmp_path / "pred"), scene.gt.root)["sequences"][0]["ate"]["rmse"] > 1e-3
