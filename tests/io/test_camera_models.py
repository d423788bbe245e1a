"""Readers accept every ViPE camera model (issue 18, part 4): PINHOLE, MEI and PANORAMA result folders.

Valid MEI and PANORAMA results pass ``validate``, get their field of view from the camera model in the
catalog (NULL with a reason for a panorama) and are refused by ``to-colmap`` / the point-cloud renderer as
unsupported, never as bad data; broken ones fail with a message naming the file and the frame.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vipe_dagster import camera as cammod
from vipe_dagster.catalog.stats import scan_root, sequence_stats
from vipe_dagster.errors import ArtifactError
from vipe_dagster.io import ArtifactStore
from vipe_dagster.io.checks import check_intrinsics
from vipe_dagster.io.validate import validate_sequence

REPO = Path(__file__).resolve().parents[2]
N = 5
SIZES = {"PINHOLE": (48, 32), "MEI": (48, 32), "PANORAMA": (64, 32)}


def _params(model: str, w: int, h: int) -> list[float]:
    f = cammod.focal_for_fov(39.3, w)  # the issue's released MEI sequence: 39.3 deg by the pinhole formula
    return {"PINHOLE": [f, f, w / 2, h / 2], "MEI": [f, f, w / 2, h / 2, 0.5], "PANORAMA": [0.0] * 4}[model]


def write_result(root: Path, name: str, model: str, intr: np.ndarray | None = None) -> ArtifactStore:
    """A complete result in ViPE's layout (no generation stamps, like the released datasets)."""
    w, h = SIZES[model]
    store = ArtifactStore(str(root), versioned=False)
    rng = np.random.default_rng(3)
    c2w = np.tile(np.eye(4), (N, 1, 1))
    c2w[:, :3, :3] = Rotation.from_rotvec(rng.normal(size=(N, 3)) * 0.1).as_matrix()
    c2w[:, :3, 3] = np.cumsum(rng.normal(size=(N, 3)) * 0.05, axis=0)
    frames = []
    for i in range(N):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
        f[4:12, 4 + i:12 + i, 2] = 255
        frames.append(f)
    store.write_rgb(name, frames, fps=30.0)
    store.write_pose(name, c2w.astype(np.float32))
    if intr is None:
        intr = np.tile(np.array(_params(model, w, h), np.float32), (N, 1))
    store.write_intrinsics(name, intr, camera_type=model)
    store.write_depth(name, [rng.uniform(0.5, 5.0, (h, w)).astype(np.float32) for _ in range(N)])
    store.write_masks(name, [np.zeros((h, w), np.uint8)] * N, {})
    store.write_info(name, {"finished": True} if model == "PANORAMA" else {"ba_residual": 0.0})
    return store


def _findings(store: ArtifactStore, name: str) -> dict:
    return {f.check: f for f in validate_sequence(store, name)}


# ---------------------------------------------------------------------- the camera module
def _mei_border_angle_by_bisection(f: float, xi: float, half_size: float) -> float:
    """Angle of the ray that projects (forward model only) to ``half_size`` px from the centre."""
    lo, hi = 0.0, cammod.mei_max_angle(xi) - 1e-12
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        uv, ok = cammod.mei_project(np.array([[math.sin(mid), 0.0, math.cos(mid)]]), [f, f, 0.0, 0.0, xi])
        if ok[0] and uv[0, 0] < half_size:
            lo = mid
        else:
            hi = mid
    return 2.0 * math.degrees(lo)


@pytest.mark.parametrize("xi", [0.0, 0.3, 0.5, 0.8, 1.0, 1.6])
def test_mei_fov_is_the_border_ray_angle(xi):
    w, h, f = 640, 480, 400.0
    fov = cammod.field_of_view("MEI", [f, f, w / 2, h / 2, xi], w, h)
    assert fov.x_deg == pytest.approx(_mei_border_angle_by_bisection(f, xi, w / 2), abs=1e-6)
    assert fov.y_deg == pytest.approx(_mei_border_angle_by_bisection(f, xi, h / 2), abs=1e-6)
    if xi == 0.0:
        assert fov.x_deg == pytest.approx(cammod.pinhole_fov_deg(w, f), abs=1e-9)
    else:  # wider than the pinhole formula and than the centre-equivalent pinhole f / (1 + xi)
        assert fov.x_deg > cammod.pinhole_fov_deg(w, f / (1 + xi)) > cammod.pinhole_fov_deg(w, f)


def test_issue_example_39_3_deg_pinhole_formula():
    """The issue's MEI sequence: 39.3 deg by the pinhole formula; f / (1 + xi) with xi 0.5 gives the issue's
    56.4 deg, the real border rays are 58.7 deg apart."""
    w, h = 640, 480
    p = _params("MEI", w, h)
    assert cammod.pinhole_fov_deg(w, p[0]) == pytest.approx(39.3)
    assert cammod.pinhole_fov_deg(w, cammod.equivalent_pinhole("MEI", p)[0]) == pytest.approx(56.35, abs=0.01)
    assert cammod.field_of_view("MEI", p, w, h).x_deg == pytest.approx(58.66, abs=0.01)


def test_mei_wider_than_its_image_circle_has_a_note():
    fov = cammod.field_of_view("MEI", [100.0, 100.0, 320, 240, 3.0], 640, 480)
    assert fov.x_deg == pytest.approx(2 * math.degrees(math.acos(-1 / 3)))
    assert "outside the MEI image circle" in fov.note


def test_mei_round_trip_and_panorama_rays():
    p = [300.0, 310.0, 321.0, 239.0, 0.9]
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 0], [640, 480], (200, 2))
    rays, ok = cammod.mei_unproject(uv, p)
    assert ok.all() and np.allclose(np.linalg.norm(rays, axis=1), 1.0)
    back, ok2 = cammod.mei_project(rays * rng.uniform(0.5, 9.0, (200, 1)), p)
    assert ok2.all() and np.abs(back - uv).max() < 1e-9
    w, h = 8, 4
    r = cammod.panorama_rays(np.array([3.5, 0.0]), np.array([1.5, 0.0]), w, h)  # centre pixel, top-left
    np.testing.assert_allclose(r[0], [0, 0, 1], atol=1e-12)
    assert r[1, 1] < -0.9 and np.allclose(np.linalg.norm(r, axis=1), 1.0)  # top row looks up (-y)
    assert cammod.field_of_view("PANORAMA", [0] * 4, w, h) == cammod.FieldOfView(None, None,
                                                                                 cammod.PANORAMA_FOV_NOTE)


@pytest.mark.parametrize("model,row,ok", [
    ("PINHOLE", [300, 300, 20, 10], True),
    ("PINHOLE", [-300, 300, 20, 10], False),
    ("PINHOLE", [300, 300, 20, 10, 0.4], False),  # a distortion a PINHOLE camera cannot hold
    ("PINHOLE", [300, 300, 20, 10, 0.0], True),
    ("MEI", [300, 300, 20, 10, 0.7], True),
    ("MEI", [300, 300, 20, 10, 2.5], True),
    ("MEI", [300, -3, 20, 10, 0.7], False),
    ("MEI", [300, 300, 20, 10, -1.0], False),
    ("MEI", [300, 300, 20, 10, np.nan], False),
    ("MEI", [300, 300, 20, 10], False),  # no xi column
    ("PANORAMA", [0, 0, 0, 0], True),
    ("PANORAMA", [0, 0, 0, 0, 0], True),
    ("PANORAMA", [300, 300, 20, 10], False),
    ("PANORAMA", [0, 0, np.nan, 0], False),
])
def test_per_model_rules(model, row, ok):
    ic = check_intrinsics(np.array([row, row], np.float64), "k.npz", [model, model], np.array([4, 5]))
    assert ic.ok is ok
    if not ok:
        assert ic.problems[0].startswith("k.npz: frame 4 has intrinsics") and f"({model}" in ic.problems[0]
        assert "expected" in ic.problems[0] and "1 more frame" in ic.problems[0]


# ---------------------------------------------------------------------- validate
@pytest.mark.parametrize("model", ["PINHOLE", "MEI", "PANORAMA"])
def test_valid_results_pass_validate(tmp_path, model):
    store = write_result(tmp_path, "seq", model)
    findings = _findings(store, "seq")
    assert all(f.ok for f in findings.values()), [f for f in findings.values() if not f.ok]
    assert model in findings["intrinsics_columns"].detail


BROKEN = {
    "mei_negative_focal": ("MEI", lambda a: a.__setitem__((3, 0), -a[3, 0]), "intrinsics_focal_positive",
                           "frame 3 has intrinsics"),
    "mei_xi": ("MEI", lambda a: a.__setitem__((2, 4), -1.5), "intrinsics_focal_positive", "xi > -1"),
    "pinhole_negative_focal": ("PINHOLE", lambda a: a.__setitem__((1, 1), -5.0), "intrinsics_focal_positive",
                               "frame 1 has intrinsics"),
    "panorama_garbage": ("PANORAMA", lambda a: a.__setitem__((2, 0), 300.0), "intrinsics_focal_positive",
                         "expected all zeros"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_results_fail_validate_naming_file_and_frame(tmp_path, case):
    model, breakit, check, fragment = BROKEN[case]
    w, h = SIZES[model]
    intr = np.tile(np.array(_params(model, w, h), np.float32), (N, 1))
    breakit(intr)
    store = write_result(tmp_path, "seq", model, intr)
    f = _findings(store, "seq")[check]
    assert not f.ok and store.path("intrinsics", "seq") in f.detail and fragment in f.detail, f.detail


def test_mei_columns_without_camera_txt_are_flagged_with_a_hint(tmp_path):
    """ViPE assumes PINHOLE when ``<n>_camera.txt`` is absent: 5 columns with an xi then contradict it."""
    store = write_result(tmp_path, "seq", "MEI")
    os.remove(store.path("camera", "seq"))
    f = _findings(store, "seq")["intrinsics_focal_positive"]
    assert not f.ok and "(PINHOLE)" in f.detail and "looks like MEI" in f.detail and "frame 0" in f.detail


def test_mei_without_xi_column_fails_columns(tmp_path):
    w, h = SIZES["MEI"]
    intr = np.tile(np.array(_params("PINHOLE", w, h), np.float32), (N, 1))  # 4 columns, MEI in _camera.txt
    store = write_result(tmp_path, "seq", "MEI", intr)
    f = _findings(store, "seq")
    assert not f["intrinsics_columns"].ok and "expected (N,5) for MEI" in f["intrinsics_columns"].detail
    assert not f["intrinsics_focal_positive"].ok
    assert "4 columns where MEI needs 5" in f["intrinsics_focal_positive"].detail


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vipe_dagster.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_validate_and_to_colmap(tmp_path):
    """The commands a user types: validate passes released-style MEI and PANORAMA results and fails a broken
    one; to-colmap refuses the panorama as unsupported (valid data), with one ``error:`` line."""
    root = tmp_path / "vipe"
    write_result(root, "mei_seq", "MEI")
    store = write_result(root, "pano_seq", "PANORAMA")
    p = _cli("validate", str(root))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS pano_seq intrinsics_focal_positive" in p.stdout and "PASS mei_seq intrinsics_columns" in p.stdout
    p = _cli("to-colmap", str(root), "--sequence", "pano_seq", "-o", str(tmp_path / "colmap"))
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(err) == 1 and "Traceback" not in p.stderr, p.stderr
    assert store.path("intrinsics", "pano_seq") in err[0] and "frame 0" in err[0]
    assert "no equirectangular camera model" in err[0] and "valid ViPE data" in err[0]
    assert not (tmp_path / "colmap").exists()
    bad = np.zeros((N, 4), np.float32)
    bad[3, 2] = 17.0
    write_result(root, "pano_seq", "PANORAMA", bad)
    p = _cli("validate", str(root), "--sequence", "pano_seq")
    assert p.returncode == 1
    fails = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL")]
    assert fails and all("intrinsics_focal_positive" in ln for ln in fails), p.stdout
    assert "pano_seq.npz: frame 3 has intrinsics" in fails[0] and "expected all zeros" in fails[0]


# ---------------------------------------------------------------------- catalog
def test_catalog_fov_from_the_camera_model(tmp_path):
    present = {"rgb", "pose", "intrinsics", "depth", "mask"}
    write_result(tmp_path, "mei", "MEI")
    write_result(tmp_path, "pano", "PANORAMA")
    write_result(tmp_path, "pin", "PINHOLE")
    w, h = SIZES["MEI"]
    p = np.float32(_params("MEI", w, h))
    mei = sequence_stats(str(tmp_path), "mei", present)
    assert mei["camera_type"] == "MEI" and mei["intrinsics_valid"] and mei["problems"] is None
    assert mei["xi"] == pytest.approx(0.5)
    assert mei["fov_x_deg"] == pytest.approx(_mei_border_angle_by_bisection(float(p[0]), 0.5, w / 2), abs=1e-6)
    assert mei["fov_y_deg"] == pytest.approx(_mei_border_angle_by_bisection(float(p[1]), 0.5, h / 2), abs=1e-6)
    assert mei["fov_x_deg"] == pytest.approx(58.66, abs=0.01)  # not the pinhole formula's 39.3
    pin = sequence_stats(str(tmp_path), "pin", present)
    assert pin["fov_x_deg"] == pytest.approx(39.3, abs=1e-4) and pin["fov_note"] is None
    pano = sequence_stats(str(tmp_path), "pano", present)
    assert pano["camera_type"] == "PANORAMA" and pano["intrinsics_valid"] is True and pano["problems"] is None
    assert pano["fov_x_deg"] is None and pano["fov_y_deg"] is None and pano["fx"] is None
    assert "360 x 180" in pano["fov_note"]
    assert (pano["width"], pano["height"]) == SIZES["PANORAMA"]
    stats = scan_root(str(tmp_path)).stats  # the typed table the catalog writes
    rows = {r["sequence"]: r for r in stats.iter_rows(named=True)}
    assert rows["pano"]["fov_x_deg"] is None and rows["pano"]["fov_note"] == cammod.PANORAMA_FOV_NOTE
    assert rows["mei"]["fov_x_deg"] == pytest.approx(mei["fov_x_deg"]) and rows["mei"]["xi"] == pytest.approx(0.5)


# ---------------------------------------------------------------------- point clouds (render-ego)
@pytest.mark.parametrize("model", ["MEI", "PANORAMA"])
def test_point_cloud_reader_unprojects_mei_and_panorama(tmp_path, model):
    """render-ego's point clouds use each frame's camera model: MEI z-depth through the unified unprojection,
    PANORAMA ray distance; broken intrinsics are refused naming file and frame."""
    from vipe_dagster.render.pointcloud import ArtifactReader, all_frames_background

    store = write_result(tmp_path, "seq", model)
    reader = ArtifactReader(store, "seq")
    assert reader.camera_types == [model] * N
    w, h = SIZES[model]
    const = np.full((h, w), 3.0, np.float32)
    store.write_depth("seq", [const] * N)  # flat depth: every pixel reliable
    reader = ArtifactReader(store, "seq")
    pc = all_frames_background(reader, 0, 0, step=1)
    assert len(pc) > 0.5 * w * h
    c2w = store.read_pose("seq")[0][0].astype(np.float64)
    cam = (pc.xyz.astype(np.float64) - c2w[:3, 3]) @ c2w[:3, :3]  # back to the camera frame
    if model == "PANORAMA":
        np.testing.assert_allclose(np.linalg.norm(cam, axis=1), 3.0, rtol=1e-5)
        assert cam[:, 2].min() < -2.5  # behind the camera too: a full sphere
    else:
        np.testing.assert_allclose(cam[:, 2], 3.0, rtol=1e-5)  # z-depth
        uv, ok = cammod.mei_project(cam, _params("MEI", w, h))
        assert ok.all()
        np.testing.assert_allclose(uv, np.round(uv), atol=1e-3)  # they project back onto the pixel grid
    bad = np.tile(np.array(_params(model, w, h), np.float32), (N, 1))
    bad[1, 1] = -1.0
    write_result(tmp_path, "seq", model, bad)
    with pytest.raises(ArtifactError, match=r"seq\.npz: frame 1 has intrinsics"):
        ArtifactReader(store, "seq")


@pytest.mark.parametrize("model", ["MEI", "PANORAMA"])
def test_viewer_source_accepts_mei_and_panorama(tmp_path, model):
    """The viewer draws MEI frustums with the centre-equivalent pinhole, a panorama with a 60-degree guess,
    and unprojects panorama depth as ray distance."""
    from vipe_dagster.viz.frames import SequenceSource
    from vipe_dagster.viz.geometry import unproject_frame

    store = write_result(tmp_path, "seq", model)
    src = SequenceSource(store, "seq")
    w, h = SIZES[model]
    assert (src.width, src.height) == (w, h) and src.model(0) == model
    if model == "MEI":
        np.testing.assert_allclose(src.K(0), cammod.equivalent_pinhole("MEI", _params("MEI", w, h)), rtol=1e-6)
    else:
        assert src.K(0)[0] == pytest.approx(cammod.focal_for_fov(60.0, w), rel=1e-6)
    depth = np.full((h, w), 2.0, np.float32)
    pts = unproject_frame(depth, src.raw_K(0), src.c2w[0], None, None, step=2, model=model)["static"][0]
    assert len(pts) > 0
    dist = np.linalg.norm(pts - src.c2w[0][:3, 3], axis=1)
    if model == "PANORAMA":
        np.testing.assert_allclose(dist, 2.0, rtol=1e-5)  # ray distance
    else:
        assert dist.min() >= 2.0 - 1e-5 and dist.max() > 2.05  # z-depth: off-axis points are farther
    bad = np.tile(np.array(_params(model, w, h), np.float32), (N, 1))
    bad[2, 0] = -bad[2, 0] if model == "MEI" else 5.0
    write_result(tmp_path, "seq", model, bad)
    with pytest.raises(ArtifactError, match=r"seq\.npz: frame 2 has intrinsics"):
        SequenceSource(store, "seq")


def test_scale_intrinsics_is_exact_for_mei_and_keeps_panorama_zeros():
    p = np.array([300.0, 310.0, 321.0, 239.0, 0.9])
    sx, sy = 0.5, 0.25
    q = cammod.scale_intrinsics(p, sx, sy, "MEI")
    assert q[4] == p[4]
    pts = np.random.default_rng(1).uniform([-2, -2, 0.5], [2, 2, 4], (50, 3))
    uv, _ = cammod.mei_project(pts, p)
    uv2, _ = cammod.mei_project(pts, q)
    np.testing.assert_allclose(uv2, (uv + 0.5) * [sx, sy] - 0.5, atol=1e-9)  # pixel-centre convention
    both = cammod.scale_intrinsics(np.array([[300.0, 300, 20, 10], [0, 0, 0, 0]]), 2.0, 2.0, ["PINHOLE", "PANORAMA"])
    np.testing.assert_allclose(both, [[600, 600, 40.5, 20.5], [0, 0, 0, 0]])


# ---------------------------------------------------------------------- eval
def test_eval_compares_mei_xi_and_fov_and_skips_panorama_focal(tmp_path):
    from vipe_dagster.eval.evaluate import evaluate_sequence, format_table

    w, h = SIZES["MEI"]
    gt = write_result(tmp_path / "gt", "mei", "MEI")
    pred_intr = np.tile(np.array(_params("MEI", w, h), np.float32), (N, 1))
    pred_intr[:, 0:2] *= 1.02
    pred_intr[:, 4] = 0.55
    pred = write_result(tmp_path / "pred", "mei", "MEI", pred_intr)
    r = evaluate_sequence(pred, gt, "mei")
    f = r["focal"]
    assert f["model"] == "MEI" and f["percent"] == pytest.approx(2.0, abs=1e-3)
    assert f["xi_error"] == pytest.approx(0.05, abs=1e-6)
    fov_p = _mei_border_angle_by_bisection(float(pred_intr[0, 0]), float(pred_intr[0, 4]), w / 2)
    fov_g = _mei_border_angle_by_bisection(float(_params("MEI", w, h)[0]), 0.5, w / 2)
    assert f["fov_deg_error"] == pytest.approx(abs(fov_p - fov_g), abs=1e-4)
    gt = write_result(tmp_path / "gt", "pano", "PANORAMA")
    pred = write_result(tmp_path / "pred", "pano", "PANORAMA")
    r = evaluate_sequence(pred, gt, "pano")  # zeros used to raise "focal lengths must be positive"
    assert "focal" not in r and "no focal to compare" in r["focal_note"]
    assert r["ate"]["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert "no focal to compare" in format_table({"sequences": [r]})
