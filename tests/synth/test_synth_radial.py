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
