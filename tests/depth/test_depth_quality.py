"""The checks behind ``depth_valid`` (measured share, temporal consistency) and ``masks_cover_motion``: each
fails on bad data and passes on good data."""

from __future__ import annotations

import numpy as np

from vipe_dagster.depth.quality import (
    MAX_TEMPORAL_INCONSISTENCY,
    conf_writer,
    depth_quality,
    encode_confidence,
    kept_fractions,
    temporal_consistency,
)
from vipe_dagster.eval.metrics import depth_pair_consistency
from vipe_dagster.masks.quality import masks_cover_motion


def _write_conf(store, name, shares, shape):
    rng = np.random.default_rng(0)
    with conf_writer(store, name) as w:
        for s in shares:
            conf = np.where(rng.random(shape) < s, 0.8, 0.0)
            w.add(encode_confidence(conf, (shape[1], shape[0])))


def test_pair_consistency_is_zero_for_exact_depth_and_sees_a_scale_change(scene):
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    c2w = res.gt.read_pose(res.name)[0].astype(np.float64)
    k = res.gt.read_intrinsics(res.name)[0][:, :4].astype(np.float64)
    d0, d3 = res.gt.read_depth(res.name, 0), res.gt.read_depth(res.name, 3)
    med, cnt = depth_pair_consistency(d0, d3, k[0], k[3], c2w[0], c2w[3])
    assert cnt > 1000 and med < 0.01
    med2, _ = depth_pair_consistency(d0 * 1.1, d3, k[0], k[3], c2w[0], c2w[3])
    assert 0.07 < med2 < 0.13


def test_pair_consistency_follows_mei_and_panorama_depth(scene):
    """Exact MEI z-depth and exact panorama ray distance agree between frames through their own camera models
    (and not when read as a pinhole); a 10 % scale change shows."""
    for kw, kind in (({"hfov_deg": 150.0, "xi": 0.8}, "MEI"), ({"width": 256, "height": 128, "panorama": True},
                                                                "PANORAMA")):
        res = scene(trajectory="handheld", scene="indoor", seed=1, **kw)
        c2w = res.gt.read_pose(res.name)[0].astype(np.float64)
        k, _, types = res.gt.read_intrinsics(res.name)
        assert set(types) == {kind}
        d0, d4 = res.gt.read_depth(res.name, 0), res.gt.read_depth(res.name, 4)
        med, cnt = depth_pair_consistency(d0, d4, k[0], k[4], c2w[0], c2w[4], camera_type=kind)
        assert cnt > 1000 and med < 0.01, (kind, med, cnt)
        med2, _ = depth_pair_consistency(d0 * 1.1, d4, k[0], k[4], c2w[0], c2w[4], camera_type=kind)
        assert 0.07 < med2 < 0.13, (kind, med2)
        tc = temporal_consistency(res.gt, res.name, gap=4)
        assert tc["median"] < 0.01, (kind, tc["median"])
        if kind == "MEI":  # the same row as a pinhole's fx fy cx cy: the lens is ignored
            wrong, _ = depth_pair_consistency(d0, d4, k[0], k[4], c2w[0], c2w[4])
            assert wrong > 3 * max(med, 1e-3), wrong


def test_depth_quality_fails_on_all_fill_and_on_flicker_passes_on_good(scene, inputs_only):
    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store = inputs_only(res, kinds=("rgb", "pose", "intrinsics", "camera", "depth"))
    n, shape = res.config.num_frames, (res.config.height, res.config.width)
    _write_conf(store, res.name, [0.7] * n, shape)
    good = depth_quality(store, res.name, gap=3)
    assert good["problems"] == [], good
    assert abs(good["measured_mean"] - 0.7) < 0.02 and good["temporal_consistency"] < 0.01
    np.testing.assert_allclose(kept_fractions(store, res.name), 0.7, atol=0.02)

    _write_conf(store, res.name, [0.0] * n, shape)  # a depth map that is all fill
    bad = depth_quality(store, res.name, gap=3)
    assert any("measured" in p for p in bad["problems"])

    _write_conf(store, res.name, [0.7] * n, shape)
    rng = np.random.default_rng(1)
    frames = [d * np.float32(rng.uniform(0.8, 1.25)) for _, d in res.gt.iter_depth(res.name)]  # per-frame scale
    store.write_depth(res.name, frames)
    flicker = depth_quality(store, res.name, gap=3)
    assert flicker["temporal_consistency"] > MAX_TEMPORAL_INCONSISTENCY
    assert any("disagree" in p for p in flicker["problems"])
    tc = temporal_consistency(store, res.name, gap=3)
    assert len(tc["pairs"]) == n - 3


def test_mask_check_flags_empty_masks_on_a_moving_object(scene, inputs_only):
    res = scene(trajectory="orbit", scene="indoor", seed=3, moving_objects=2, num_frames=16)
    store = inputs_only(res, kinds=("rgb", "pose", "intrinsics", "camera", "depth", "mask"))
    good = masks_cover_motion(store, res.name)
    assert good["strong_frames"] and good["problems"] == [], good
    store.write_masks(res.name, [np.zeros((res.config.height, res.config.width), np.uint8)] * res.config.num_frames,
                      {})
    bad = masks_cover_motion(store, res.name)
    assert bad["problems"] and len(bad["missed_frames"]) == len(bad["strong_frames"])
    # a static scene (30 fps, as real video) has no strong motion: empty masks are right there
    still = scene(trajectory="orbit", scene="indoor", seed=1, fps=30.0, num_frames=20)
    store2 = inputs_only(still, kinds=("rgb", "pose", "intrinsics", "camera", "depth"), folder="still")
    store2.write_masks(still.name, [np.zeros((still.config.height, still.config.width), np.uint8)]
                       * still.config.num_frames, {})
    calm = masks_cover_motion(store2, still.name)
    assert calm["problems"] == [] and not calm["strong_frames"]


def test_a_stale_confidence_sidecar_is_refused(scene, inputs_only):
    from vipe_dagster.depth.quality import conf_matches_depth, depth_conf_path
    from vipe_dagster.io.artifacts import FrameZipWriter, _encode_mask_png

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store = inputs_only(res, kinds=("rgb", "pose", "intrinsics", "camera", "depth"))
    store.write_depth(res.name, [d for _, d in res.gt.iter_depth(res.name)])  # stamped with this generation
    n, shape = res.config.num_frames, (res.config.height, res.config.width)
    _write_conf(store, res.name, [0.7] * n, shape)
    assert conf_matches_depth(store, res.name) and depth_quality(store, res.name, gap=3)["problems"] == []
    with FrameZipWriter(depth_conf_path(store, res.name), "png", _encode_mask_png,
                        comment="vipe-generation=an-earlier-run") as w:
        for _ in range(n):
            w.add(np.full(shape, 200, np.uint8))
    assert not conf_matches_depth(store, res.name)
    assert any("another generation" in p for p in depth_quality(store, res.name, gap=3)["problems"])
