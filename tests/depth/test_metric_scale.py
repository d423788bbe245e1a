"""Metric scale from one cue: user factor, known distance, camera height, metric depth model.

Inputs: a generated scene whose ground truth is metric (world y up, floor at y = 0). The "relative"
reconstruction is the ground truth shrunk by an unknown factor (camera centres and a sparse map of
back-projected ground-truth depth on a pixel grid), as SLAM would deliver it; each cue must recover the
factor, and dense depth computed afterwards must come out in metres without any alignment.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm  # noqa: F401  (import before the synth fixture loads pyrender's EGL)

from vipe_dagster.depth.config import DepthConfig, MetricScaleConfig
from vipe_dagster.depth.run import run_depth
from vipe_dagster.depth.scale import (
    MetricScaleError,
    fit_ground_plane,
    make_metric,
    scale_from_depth_ratios,
)
from vipe_dagster.io import SparseMap

SHRINK = 3.7  # the unknown factor between the metric truth and the "relative" reconstruction
FAST = DepthConfig(mvs_long_side=192, num_planes=48, max_frame_gap=5)


def _relative_store(res, inputs_only, folder="rel"):
    """GT rgb/intrinsics, GT poses with centres / SHRINK, and a sparse map of GT depth / SHRINK."""
    store = inputs_only(res, folder=folder)
    c2w = res.gt.read_pose(res.name)[0].astype(np.float64)
    k = res.gt.read_intrinsics(res.name)[0][0, :4].astype(np.float64)
    pts, obs_f, obs_uv = [], [], []
    for i, d in res.gt.iter_depth(res.name, range(0, len(c2w), 3)):
        vv, uu = np.mgrid[4:d.shape[0]:12, 4:d.shape[1]:12]
        z = d[vv, uu].astype(np.float64)
        ok = np.isfinite(z) & (z > 0)
        cam = np.stack([(uu[ok] - k[2]) / k[0] * z[ok], (vv[ok] - k[3]) / k[1] * z[ok], z[ok]], 1)
        pts.append(cam @ c2w[i, :3, :3].T + c2w[i, :3, 3])
        obs_f.append(np.full(ok.sum(), i))
        obs_uv.append(np.stack([uu[ok], vv[ok]], 1))
    points = np.concatenate(pts) / SHRINK
    rel = c2w.copy()
    rel[:, :3, 3] /= SHRINK
    store.write_pose(res.name, rel.astype(np.float32), inds=np.arange(len(rel)))
    store.write_sparse_map(res.name, SparseMap(points=points.astype(np.float32),
                                               colors=np.zeros((len(points), 3), np.uint8),
                                               obs_frame=np.concatenate(obs_f).astype(np.int32),
                                               obs_point=np.arange(len(points), dtype=np.int32),
                                               obs_uv=np.concatenate(obs_uv).astype(np.float32)))
    store.write_manifest(res.name, {"sequence": res.name, "scale": "relative", "pose": {"scale": "relative"}})
    return store, c2w


def _metric_depth_error(store, res) -> float:
    """Median over frames of the median |d / d_gt - 1| with NO scale alignment."""
    errs = []
    for (_, p), (_, g) in zip(store.iter_depth(res.name), res.gt.iter_depth(res.name), strict=True):
        ok = np.isfinite(g) & (g > 0) & np.isfinite(p) & (p > 0)
        errs.append(np.median(np.abs(p[ok] / g[ok] - 1.0)))
    return float(np.median(errs))


def _check_metric(store, res, c2w_gt, source):
    store.check_set(res.name)  # rescaled files are recorded in the generation like any other write
    man = store.read_manifest(res.name)
    assert man["scale"] == "metric" and man["scale_source"]["source"] == source
    # the pose stage's own section is left as it wrote it; the rescale is the metric-scale stage's section
    assert man["pose"]["scale"] == "relative" and man["scale_source"]["scale"] == "metric"
    assert set(man["stages"]["metric_scale"]["sections"]) == {"scale_source"}
    c2w = store.read_pose(res.name)[0].astype(np.float64)
    np.testing.assert_allclose(c2w[:, :3, 3], c2w_gt[:, :3, 3], rtol=0.05, atol=0.05 * np.ptp(c2w_gt[:, :3, 3]))
    out = run_depth(store, res.name, FAST)
    assert out.scale == "metric"
    err = _metric_depth_error(store, res)
    print(f"{source}: factor {man['scale_source']['factor']:.4f} (truth {SHRINK}), metric depth error {err:.4f}")
    assert err <= 0.05


def test_camera_height_makes_depth_metric(scene, inputs_only):
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store, c2w_gt = _relative_store(res, inputs_only)
    height = float(np.median(c2w_gt[:, 1, 3]))  # world y up, floor at y = 0
    ms = make_metric(store, res.name, MetricScaleConfig(camera_height=height))
    assert ms.factor == pytest.approx(SHRINK, rel=0.03)
    _check_metric(store, res, c2w_gt, "camera_height")


def test_user_scale_and_known_distance(scene, inputs_only):
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store, c2w_gt = _relative_store(res, inputs_only, folder="user")
    ms = make_metric(store, res.name, MetricScaleConfig(scale=SHRINK))
    assert ms.factor == SHRINK and ms.source == "user"
    _check_metric(store, res, c2w_gt, "user")

    store, c2w_gt = _relative_store(res, inputs_only, folder="dist")
    last = len(c2w_gt) - 1
    metres = float(np.linalg.norm(c2w_gt[0, :3, 3] - c2w_gt[last, :3, 3]))
    ms = make_metric(store, res.name, MetricScaleConfig(known_distance=(0, last, metres)))
    assert ms.factor == pytest.approx(SHRINK, rel=1e-4)
    _check_metric(store, res, c2w_gt, "known_distance")


def test_no_cue_leaves_the_reconstruction_relative(scene, inputs_only):
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store, _ = _relative_store(res, inputs_only, folder="none")
    before = store.read_pose(res.name)[0].copy()
    assert make_metric(store, res.name, MetricScaleConfig()) is None
    np.testing.assert_array_equal(store.read_pose(res.name)[0], before)
    assert store.read_manifest(res.name)["scale"] == "relative"


def test_metric_depth_model_sets_the_scale(scene, inputs_only, tmp_path, monkeypatch):
    """A tiny random-weight Depth-Anything-V2 checkpoint, loaded offline from a Hugging Face cache through the
    product's loading code, declared metric; its prediction is made metric by construction (the test replaces
    the network's output by the ground-truth depth of the frame times 5 % log-normal noise and 10 % gross
    outliers), so the estimated factor must match the truth."""
    from test_learned import _random_net, _write_hf_cache, tiny_config

    from vipe_dagster.depth import learned

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store, c2w_gt = _relative_store(res, inputs_only, folder="model")
    cfg = tiny_config(str(tmp_path / "hf-cache"), output="metric_depth")
    _write_hf_cache(tmp_path / "hf-cache", _random_net(cfg))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gt_frames = [(f.astype(np.int16), d) for (_, f), (_, d) in zip(res.gt.open_rgb(res.name),
                                                                    res.gt.iter_depth(res.name), strict=True)]
    rng = np.random.default_rng(0)
    calls = []

    def metric_by_construction(self, rgb):
        net_out = learned.DepthModel.__dict__["_orig_predict"](self, rgb)  # the network still runs
        assert net_out.shape == rgb.shape[:2]
        k = int(np.argmin([np.abs(f - rgb).mean() for f, _ in gt_frames]))
        calls.append(k)
        d = gt_frames[k][1] * np.exp(rng.normal(0, 0.05, gt_frames[k][1].shape))
        bad = rng.random(d.shape) < 0.1
        d[bad] *= rng.uniform(0.2, 5.0, bad.sum())
        return d.astype(np.float32)

    monkeypatch.setattr(learned.DepthModel, "_orig_predict", learned.DepthModel.predict, raising=False)
    monkeypatch.setattr(learned.DepthModel, "predict", metric_by_construction)
    ms = make_metric(store, res.name, MetricScaleConfig(model_frames=4), cfg)
    assert ms is not None and ms.source == "metric_depth_model"
    assert len(calls) == 4
    assert ms.factor == pytest.approx(SHRINK, rel=0.02)
    monkeypatch.setattr(learned.DepthModel, "predict", learned.DepthModel._orig_predict)
    _check_metric(store, res, c2w_gt, "metric_depth_model")


def test_relative_model_or_missing_ground_is_refused(scene, inputs_only, tmp_path):
    from test_learned import tiny_config

    from vipe_dagster.depth.scale import resolve_metric_scale

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store, c2w = _relative_store(res, inputs_only, folder="refuse")
    # a relative model is no metric cue
    assert resolve_metric_scale(store, res.name, MetricScaleConfig(), tiny_config(str(tmp_path))) is None
    # no plane below the cameras: a flat layer of points 3 m above them (world y up)
    rng = np.random.default_rng(0)
    above = np.stack([rng.uniform(-5, 5, 500), np.full(500, c2w[:, 1, 3].max() + 3.0), rng.uniform(-5, 5, 500)], 1)
    with pytest.raises(MetricScaleError, match="no ground plane"):
        fit_ground_plane(above, c2w)
    with pytest.raises(MetricScaleError, match="usable depth comparisons"):
        scale_from_depth_ratios(np.full(10, 2.0), "metric_depth_model")
    with pytest.raises(ValueError, match="at most one metric cue"):
        MetricScaleConfig(scale=2.0, camera_height=1.5)


def test_fixed_camera_with_a_metric_model_is_metric_as_written(tmp_path, monkeypatch):
    """A fixed camera has no sparse map to compare the model with and no translation to scale: its depth is
    the metric model's own output, so the scale is metric with factor 1 (ViPE's lyra / static_vda presets on
    an exo camera). A relative model on the same camera stays relative."""
    from test_learned import _random_net, _write_hf_cache, tiny_config

    from vipe_dagster.depth.scale import resolve_metric_scale
    from vipe_dagster.io import ArtifactStore

    store = ArtifactStore(str(tmp_path / "fixed"))
    store.write_pose("cam01", np.repeat(np.eye(4, dtype=np.float32)[None], 6, axis=0))
    metric = tiny_config(str(tmp_path / "hf"), output="metric_depth")
    _write_hf_cache(tmp_path / "hf", _random_net(metric))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ms = resolve_metric_scale(store, "cam01", MetricScaleConfig(), metric)
    assert ms is not None and ms.factor == 1.0 and ms.source == "metric_depth_model" and ms.detail["fixed_camera"]
    assert resolve_metric_scale(store, "cam01", MetricScaleConfig(), tiny_config(str(tmp_path / "hf"))) is None
    moving = np.repeat(np.eye(4, dtype=np.float32)[None], 6, axis=0)
    moving[:, 0, 3] = np.linspace(0, 1, 6)
    store.write_pose("walk", moving)
    with pytest.raises(MetricScaleError, match="sparse"):  # a moving camera still needs the map
        resolve_metric_scale(store, "walk", MetricScaleConfig(), metric)
