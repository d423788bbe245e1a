"""Radial-distorted synthetic videos (``synth --k1``): the ground truth is exact for the distorted lens
(photometric consistency between frames through the lens model beats the pinhole model), and the pose
stage given the right ``--intrinsics`` (lens removed at ingest) recovers the trajectory better than the
same camera taken as a pinhole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vipe_dagster import camera as C
from vipe_dagster.compat.run import execute, prepare
from vipe_dagster.eval.metrics import ate
from vipe_dagster.io import ArtifactStore, open_video

K1 = -0.1


@pytest.fixture(scope="module")
def radial(synth_scene):
    return synth_scene(trajectory="handheld", num_frames=90, width=320, height=240, k1=K1)


def _frames(res):
    return [f.astype(np.float64) for _, f in open_video(res.video_path)]


def _warp_error(res, params_model, params, i, j):
    """Mean |rgb_j(project_j(X)) - rgb_i| over the pixels of frame i lifted with the GT depth through
    ``params_model``/``params`` and projected into frame j with the same model."""
    gt, n = res.gt, res.name
    c2w, _ = gt.read_pose(n)
    depth = [d for _, d in gt.iter_depth(n)]
    frames = _frames(res)
    h, w = depth[i].shape
    cam = C.camera_from_params(params_model, np.asarray(params, np.float64))
    rays, ok = cam.unproject_with_valid(C.pixel_grid(w, h))
    X = rays.numpy().reshape(-1, 3) * depth[i].reshape(-1, 1)  # unit-z rays times z-depth
    Xw = X @ c2w[i][:3, :3].T.astype(np.float64) + c2w[i][:3, 3]
    w2c = np.linalg.inv(c2w[j].astype(np.float64))
    Xj = Xw @ w2c[:3, :3].T + w2c[:3, 3]
    uv, okj = cam.project(torch.as_tensor(Xj))
    uv = uv.numpy()
    g = C.pixel_grid(w, h).numpy().reshape(-1, 2)
    outer = np.hypot((g[:, 0] - w / 2) / (w / 2), (g[:, 1] - h / 2) / (h / 2)) > 0.6  # where the lens bends most
    inside = ok.numpy().ravel() & okj.numpy() & (uv[:, 0] > 2) & (uv[:, 0] < w - 3) & (uv[:, 1] > 2) & \
        (uv[:, 1] < h - 3) & outer
    x, y = uv[inside].T
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx_, fy_ = (x - x0)[:, None], (y - y0)[:, None]
    f = frames[j]
    a = ((1 - fx_) * (1 - fy_) * f[y0, x0] + fx_ * (1 - fy_) * f[y0, x0 + 1] + (1 - fx_) * fy_ * f[y0 + 1, x0]
         + fx_ * fy_ * f[y0 + 1, x0 + 1])  # bilinear
    b = frames[i].reshape(-1, 3)[inside]
    return float(np.abs(a - b).mean()), float(inside.mean())


def test_distorted_video_ground_truth_is_exact_for_the_lens(radial):
    K = radial.gt.read_intrinsics(radial.name)[0][0].astype(np.float64)
    man = radial.gt.read_manifest(radial.name)
    assert man["camera"]["model"] == "SIMPLE_RADIAL" and man["camera"]["params"][3] == K1
    lens, cover = _warp_error(radial, "opencv", [*K, K1], 0, 20)
    pin, _ = _warp_error(radial, "pinhole", K, 0, 20)
    print("photometric error through the lens / as pinhole:", lens, pin)
    assert cover > 0.1
    assert lens < 9.0, lens  # video coding + texture resampling
    assert pin > 1.8 * lens, (pin, lens)


def test_pose_with_the_right_intrinsics_beats_pinhole(radial, tmp_path):
    K = radial.gt.read_intrinsics(radial.name)[0][0].astype(np.float64)
    gt, _ = radial.gt.read_pose(radial.name)
    errs = {}
    for label, text in (("lens", ",".join(f"{v:.6f}" for v in [*K, K1])),
                        ("pinhole", ",".join(f"{v:.6f}" for v in K))):
        out = str(tmp_path / label)
        execute(prepare(radial.video_path, out, "pose_only", name="s", intrinsics=text, long_side=320))
        st = ArtifactStore(out)
        c2w, _ = st.read_pose("s")
        valid = st.read_pose_valid("s")
        errs[label] = ate(c2w[valid].astype(np.float64), gt[valid].astype(np.float64))["rmse_pct_of_path"]
    print("ATE % of path:", errs)
    assert errs["lens"] < errs["pinhole"], errs


def test_evaluate_samples_the_distorted_ground_truth_for_a_rectified_prediction(radial, tmp_path):
    """A prediction whose frames were rectified to the pinhole of the same K (what the pose stage does after
    self-calibrating k1) is scored against the distorted ground truth through the lens: the ground-truth depth
    rectified with the pose stage's own radial model (``slam.geometry.distort_radial``, not the camera package
    the evaluation uses) scores AbsRel ~0; compared pixel by pixel it would not."""
    import shutil

    import cv2

    from vipe_dagster.eval.evaluate import evaluate
    from vipe_dagster.slam.geometry import distort_radial

    name = radial.name
    pred_root = tmp_path / "pred"
    shutil.copytree(radial.gt.root, pred_root)
    pred = ArtifactStore(str(pred_root))
    intr = radial.gt.read_intrinsics(name)[0][0].astype(np.float64)
    h, w = next(radial.gt.iter_depth(name))[1].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    src = distort_radial(np.stack([gx.ravel(), gy.ravel()], 1), intr, np.array([K1, 0.0]))
    mx, my = (src[:, i].reshape(h, w).astype(np.float32) for i in (0, 1))
    depths = [cv2.remap(d, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
              for _, d in radial.gt.iter_depth(name)]
    with pred.depth_writer(name) as dw:
        for d in depths:
            dw.add(d)
    pose = {"intrinsics": {"fx": float(intr[0]), "k1": K1, "distortion": {"model": "RADIAL", "rectified": True}}}
    pred.update_manifest(name, "pose", {"pose": pose})
    seq = evaluate(str(pred_root), str(radial.gt.root), [name])["sequences"][0]
    assert seq["depth"]["abs_rel"] < 0.005 and "gt_resampled" in seq["depth"], seq["depth"]
    assert seq["focal"]["k1_error"] < 1e-9
    pose["intrinsics"]["distortion"]["rectified"] = False  # same depth maps, taken as the distorted image's
    pred.update_manifest(name, "pose", {"pose": pose})
    direct = evaluate(str(pred_root), str(radial.gt.root), [name])["sequences"][0]["depth"]["abs_rel"]
    print("rectified vs distorted ground truth: AbsRel through the lens", seq["depth"]["abs_rel"], "direct", direct)
    assert direct > 10 * seq["depth"]["abs_rel"] + 0.005, direct
