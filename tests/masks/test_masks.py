"""Dynamic masks against synthetic ground-truth instance masks."""

from __future__ import annotations

import numpy as np
import pytest

from vipe_dagster.errors import ArtifactError
from vipe_dagster.masks import MaskConfig, is_fixed_camera, run_masks


def _iou(store, gt, name) -> tuple[float, int]:
    inter = union = 0
    n = 0
    for (i, pred), (j, ref) in zip(store.iter_masks(name), gt.iter_masks(name), strict=True):
        assert i == j and pred.shape == ref.shape and pred.dtype == np.uint8
        inter += int(((pred > 0) & (ref > 0)).sum())
        union += int(((pred > 0) | (ref > 0)).sum())
        n += 1
    return inter / max(union, 1), n


def test_fixed_camera_background_model_iou(scene, inputs_only):
    res = scene(trajectory="fixed", scene="indoor", seed=3, moving_objects=2, num_frames=30)
    store = inputs_only(res)
    out = run_masks(store, res.name)
    assert out.method == "background_model"
    iou, n = _iou(store, res.gt, res.name)
    print(f"fixed camera mask IoU {iou:.3f} over {n} frames, {out.num_instances} instances")
    assert n == res.config.num_frames
    assert iou >= 0.7
    phrases = store.read_phrases(res.name)
    assert phrases[0] == "background" and set(phrases) == set(range(out.num_instances + 1))
    ids = set()
    for _, m in store.iter_masks(res.name):
        ids |= set(np.unique(m).tolist())
    assert ids <= set(phrases)


def test_moving_camera_motion_residual(scene, inputs_only):
    """Orbiting camera, GT depth as the depth input: flow residual against the rigid flow finds the movers."""
    res = scene(trajectory="orbit", scene="indoor", seed=3, moving_objects=2, num_frames=16)
    store = inputs_only(res, kinds=("rgb", "pose", "intrinsics", "camera", "depth"))
    out = run_masks(store, res.name)
    assert out.method == "motion_residual+depth"
    iou, _ = _iou(store, res.gt, res.name)
    print(f"moving camera mask IoU {iou:.3f}, {out.num_instances} instances")
    assert iou >= 0.4
    # without depth, the epipolar (Sampson) residual is used
    store2 = inputs_only(res, folder="no-depth")
    out2 = run_masks(store2, res.name)
    assert out2.method == "motion_residual+epipolar"
    assert store2.mask_count(res.name) == res.config.num_frames


def test_fixed_camera_detection():
    poses = np.tile(np.eye(4), (5, 1, 1))
    assert is_fixed_camera(poses, MaskConfig())
    poses[3, 0, 3] = 0.01
    assert not is_fixed_camera(poses, MaskConfig())


def test_mismatched_inputs_raise(scene, inputs_only):
    res = scene(trajectory="fixed", scene="indoor", seed=3, moving_objects=2, num_frames=30)
    store = inputs_only(res)
    poses, _ = store.read_pose(res.name)
    store.write_pose(res.name, poses[:10])
    with pytest.raises(ArtifactError, match="frames"):
        run_masks(store, res.name)
    assert not store.exists("mask", res.name)


def test_moving_objects_are_refilled_in_the_depth_and_the_set_stays_consistent(scene, inputs_only):
    """The mask stage replaces the depth of moving objects by the static depth around them, marks it not
    measured in the confidence sidecar, commits depth before masks (the masks record the depth they used) and
    writes per-instance statistics next to mask/<n>.txt."""
    import json

    from vipe_dagster.depth.quality import conf_writer, iter_kept
    from vipe_dagster.masks.run import instances_path

    res = scene(trajectory="orbit", scene="indoor", seed=3, moving_objects=2, num_frames=16)
    store = inputs_only(res, kinds=("rgb", "pose", "intrinsics", "camera", "depth"))
    h, w = res.config.height, res.config.width
    with conf_writer(store, res.name) as cw:
        for _ in range(res.config.num_frames):
            cw.add(np.full((h, w), 200, np.uint8))
    before = [d for _, d in store.iter_depth(res.name)]
    out = run_masks(store, res.name)
    assert out.num_instances > 0 and out.motion["depth_refilled"]["frames"] > 0
    store.check_set(res.name)  # depth rewritten before the masks that used it: one consistent generation
    changed = dyn_share = 0.0
    for (i, d), (_, m), (_, kept) in zip(store.iter_depth(res.name), store.iter_masks(res.name),
                                         iter_kept(store, res.name), strict=True):
        dyn = m > 0
        if dyn.any():
            assert not kept[dyn].any()  # moving pixels are not measured
            changed += float((np.abs(d[dyn] - before[i][dyn]) > 1e-3 * before[i][dyn]).mean())
            dyn_share += 1
        np.testing.assert_allclose(d[~cv2_dilate(dyn)], before[i][~cv2_dilate(dyn)], rtol=1e-3)
    assert changed / max(dyn_share, 1) > 0.5
    table = json.loads(open(instances_path(store, res.name)).read())
    assert table["instances"] and all(v["frames_present"] >= 1 and v["mean_area_fraction"] > 0
                                      for v in table["instances"].values())


def cv2_dilate(mask, px=6):
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


def test_frames_without_a_measured_pose_get_no_motion_evidence(scene, inputs_only):
    """A frame flagged invalid in pose/<n>.npz holds a copied pose: comparing its flow with the rigid flow of
    that pose would call the whole static scene moving. Such frames get an empty mask and are not used as
    the neighbour of another frame; the rest keep their accuracy."""
    res = scene(trajectory="orbit", scene="indoor", seed=3, moving_objects=2, num_frames=16)
    store = inputs_only(res, kinds=("rgb", "pose", "intrinsics", "camera", "depth"))
    c2w, inds = store.read_pose(res.name)
    n = len(c2w)
    bad = [6, 7]
    wrong = c2w.copy()
    wrong[bad] = c2w[5]  # tracking lost after frame 5: the last good pose is held
    valid = np.ones(n, bool)
    valid[bad] = False
    store.write_pose(res.name, wrong, inds, valid=valid)
    out = run_masks(store, res.name)
    assert out.motion["frames_without_pose"] == 2
    masks = dict(store.iter_masks(res.name))
    assert all(not masks[k].any() for k in bad)
    inter = union = 0
    for i, ref in res.gt.iter_masks(res.name):
        if i not in bad:
            inter += int(((masks[i] > 0) & (ref > 0)).sum())
            union += int(((masks[i] > 0) | (ref > 0)).sum())
    assert inter / union >= 0.4


def test_depth_errors_on_static_structure_are_not_motion(scene, inputs_only):
    """A static scene whose depth map is wrong in one region (what the stereo gives at occlusion borders and
    grazing surfaces): the flow there disagrees with the rigid flow of the wrong depth, but a static point at
    a depth of the surrounding surface explains it, so no mask. Without that test (static_residual_px 0) the
    region is reported as a moving object. The test applies to multi-view stereo depth only: an independent
    depth (ground truth above, a learned model) that disagrees with the flow is motion evidence, and movers
    along the epipolar lines are found only that way (the orbit test above)."""
    from vipe_dagster.masks.run import _triangulated_depth

    res = scene(trajectory="handheld", scene="indoor", seed=0, moving_objects=0, num_frames=16)
    h, w = res.config.height, res.config.width
    depth = [d.copy() for _, d in res.gt.iter_depth(res.name)]
    # the rigid flow of the exact depth triangulates back to that depth
    poses, _ = res.gt.read_pose(res.name)
    intr, _, _ = res.gt.read_intrinsics(res.name)
    k = intr[0].astype(np.float64)
    c2w = poses.astype(np.float64)
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    d0 = depth[0].astype(np.float64)
    p = np.stack([(uu - k[2]) / k[0] * d0, (vv - k[3]) / k[1] * d0, d0], -1)
    t_ba = np.linalg.inv(c2w[4]) @ c2w[0]
    q = p @ t_ba[:3, :3].T + t_ba[:3, 3]
    flow = np.stack([k[0] * q[..., 0] / q[..., 2] + k[2] - uu, k[1] * q[..., 1] / q[..., 2] + k[3] - vv], -1)
    tri = _triangulated_depth(flow, k, k, c2w[0], c2w[4])
    ok = np.isfinite(tri)
    assert ok.mean() > 0.95
    np.testing.assert_allclose(tri[ok], d0[ok], rtol=1e-6)

    y0, y1, x0, x1 = h // 4, h // 2, w // 3, 2 * w // 3  # 1/12 of the image, 60 % too far in every frame
    for d in depth:
        d[y0:y1, x0:x1] *= 1.6
    fg = {}
    for label, px in (("with", MaskConfig().static_residual_px), ("without", 0.0)):
        s = inputs_only(res, folder=f"static-{label}")
        s.write_depth(res.name, depth)
        s.update_manifest(res.name, "depth", {"depth": {"method": "mvs"}})  # the test applies to stereo depth
        run_masks(s, res.name, MaskConfig(static_residual_px=px))
        fg[label] = float(np.mean([(m[y0:y1, x0:x1] > 0).mean() for _, m in s.iter_masks(res.name)]))
    print(f"share of the wrong-depth region masked: with the static test {fg['with']:.3f}, without {fg['without']:.3f}")
    assert fg["without"] > 0.2  # the residual alone calls the region a moving object
    assert fg["with"] < 0.02
