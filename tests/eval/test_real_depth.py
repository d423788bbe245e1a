"""Real-footage depth evaluation: registration of a depth camera into the colour camera, one-scale and per-frame
metrics, measured share and temporal consistency, on a 7-Scenes-like folder made from a generated scene (so the
truth is known), and the benchmark rows."""

from __future__ import annotations

import numpy as np
import pytest
import timm  # noqa: F401  (before pyrender's EGL)

from vipe_dagster.eval import real_depth
from vipe_dagster.eval.real_depth import RgbdRegistration, register_depth
from vipe_dagster.eval.realdata import SevenScenes


def test_register_depth_moves_a_wall_by_the_baseline_parallax():
    reg = RgbdRegistration(depth_k=(100.0, 100.0, 31.5, 23.5), rgb_k=(80.0, 80.0, 31.5, 23.5),
                           t_rgb_from_depth=(-0.05, 0.0, 0.0))
    wall = np.full((48, 64), 2.0, np.float32)
    out = register_depth(wall, reg, np.array(reg.rgb_k), (64, 48))
    assert np.nanmedian(out) == pytest.approx(2.0)
    # the colour camera has the wider view: the wall covers its centre, not its border
    assert np.isfinite(out[24, 32]) and not np.isfinite(out[24, 1])
    # depth pixel (u, v) lands at 31.5 + 80 * ((u - 31.5) / 100 * 2 - 0.05) / 2
    d = np.full((48, 64), np.nan, np.float32)
    d[23, 41] = 2.0
    out = register_depth(np.nan_to_num(d), reg, np.array(reg.rgb_k), (64, 48))
    v, u = np.argwhere(np.isfinite(out))[0]
    assert (v, u) == (round(23.5 + 80 * (23 - 23.5) / 100 - 0.0), round(31.5 + 80 * ((41 - 31.5) / 100 - 0.025)))


def test_rgb_pose_is_the_depth_pose_moved_by_the_translation():
    reg = real_depth.SEVEN_SCENES_REGISTRATION
    c2w = np.eye(4)[None].repeat(2, 0)
    c2w[1, :3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    out = real_depth.rgb_c2w(c2w, reg)
    t = np.asarray(reg.t_rgb_from_depth)
    np.testing.assert_allclose(out[0, :3, 3], -t)
    np.testing.assert_allclose(out[1, :3, 3], c2w[1, :3, :3] @ -t)


@pytest.fixture(scope="module")
def fake_7scenes(tmp_path_factory):
    """A 7-Scenes-like folder (colour jpg, uint16 mm depth png, c2w pose txt) from a generated orbit whose depth
    camera is the colour camera (identity registration)."""
    import os

    import cv2

    if not hasattr(np, "infty"):
        np.infty = np.inf
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from vipe_dagster.synth import SceneConfig, generate

    res = generate(SceneConfig(trajectory="orbit", scene="indoor", seed=1, num_frames=16, fps=10.0, width=256,
                               height=192), str(tmp_path_factory.mktemp("gen")))
    root = tmp_path_factory.mktemp("seq") / "fake7"
    root.mkdir()
    c2w = res.gt.read_pose(res.name)[0]
    for (i, rgb), (_, d) in zip(res.gt.open_rgb(res.name), res.gt.iter_depth(res.name), strict=True):
        cv2.imwrite(str(root / f"frame-{i:06d}.color.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / f"frame-{i:06d}.depth.png"), np.clip(d * 1000, 0, 65000).astype(np.uint16))
        np.savetxt(root / f"frame-{i:06d}.pose.txt", c2w[i])
    k = res.gt.read_intrinsics(res.name)[0][0, :4].astype(float)
    reg = RgbdRegistration(depth_k=tuple(k), rgb_k=tuple(k), t_rgb_from_depth=(0.0, 0.0, 0.0))
    return SevenScenes(root), reg


def test_depth_evaluation_and_rows_on_a_generated_sequence(fake_7scenes, tmp_path):
    from vipe_dagster.depth.config import DepthConfig
    from vipe_dagster.depth.run import run_depth

    seq, reg = fake_7scenes
    store, name = real_depth.write_gt_pose_store(seq, tmp_path / "run", long_side=256, reg=reg)
    assert store.read_manifest(name)["scale"] == "metric"
    run_depth(store, name, DepthConfig(mvs_long_side=192))
    m = real_depth.evaluate_depth(store, name, seq, reg=reg, consistency_gap=3)
    assert m["frames"] == len(seq)
    assert m["abs_rel"] < 0.06 and m["delta1"] > 0.95
    assert m["scale"] == pytest.approx(1.0, abs=0.05)  # metric poses give metric depth
    assert m["scale_cov"] < 0.03 and 0.3 < m["kept_fraction"] <= 1.0
    assert m["kept_abs_rel"] <= m["abs_rel"] + 1e-9 and m["temporal_consistency"] < 0.03

    # a per-frame scale flicker is seen by the per-frame scale spread and the temporal consistency, and the
    # one-scale error exceeds the per-frame-scale error
    rng = np.random.default_rng(0)
    store.write_depth(name, [d * np.float32(rng.uniform(0.85, 1.15)) for _, d in store.iter_depth(name)])
    f = real_depth.evaluate_depth(store, name, seq, reg=reg, consistency_gap=3)
    assert f["scale_cov"] > 0.05 and f["temporal_consistency"] > 0.05
    assert f["abs_rel"] > f["abs_rel_per_frame_scale"] + 0.02

    rows = real_depth.depth_rows(store, name, seq, "fake", depth_seconds=2.0, gt_poses=True, reg=reg)
    names = [r["name"] for r in rows]
    assert any("one scale per sequence" in n for n in names) and any("coefficient of variation" in n for n in names)
    assert any("temporal consistency" in n for n in names) and any("measured share" in n for n in names)
    assert all(r["suite"] == "real" for r in rows)
    assert next(r for r in rows if "AbsRel, one scale" in r["name"])["target"] == "<= 0.06"
