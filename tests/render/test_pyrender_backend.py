"""The OpenGL (pyrender) backend and our pinhole splatting agree: coverage and depth order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu_kernels.splat import splat
from vipe_dagster.render.ego import EgoRenderConfig, render_ego
from vipe_dagster.render.ego_camera import pinhole_camera
from vipe_dagster.render.pyrender_backend import PyrenderPointRenderer
from vipe_dagster.synth.egoexo_take import generate_take

RES = 128


def _splat(xyz, rgb, w2c, cam):
    pc = torch.as_tensor(xyz @ w2c[:3, :3].T + w2c[:3, 3], dtype=torch.float32)
    img, depth, mask = splat(pc, torch.as_tensor(rgb, dtype=torch.float32) / 255, cam, RES, RES, radius=1.5,
                             mode="nearest")
    return (img.numpy() * 255).round().astype(np.uint8), depth.numpy(), mask.numpy().astype(bool)


def test_depth_order_two_planes():
    """A red plane 2 m away in front of a blue plane 4 m away: both backends show red where they overlap."""
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 120), np.linspace(-0.5, 0.5, 120)), -1).reshape(-1, 2)
    near = np.c_[g, np.full(len(g), 2.0)]
    far = np.c_[g * 2.5, np.full(len(g), 4.0)]
    xyz = np.concatenate([far, near]).astype(np.float32)  # far points first: order must not matter
    rgb = np.concatenate([np.tile([0, 0, 255], (len(far), 1)), np.tile([255, 0, 0], (len(near), 1))]).astype(np.uint8)
    cam = pinhole_camera(np.array([[150.0, 0, 255.5], [0, 150.0, 255.5], [0, 0, 1]]), RES)
    w2c = np.eye(4)
    s_img, s_depth, s_mask = _splat(xyz, rgb, w2c, cam)
    with PyrenderPointRenderer(RES, RES) as gl:
        g_img, g_depth = gl.render(xyz, rgb, w2c, cam.base.params.numpy(), point_size=1.5)
    centre = (slice(RES // 2 - 8, RES // 2 + 8),) * 2
    for img in (s_img, g_img):
        assert (img[centre][..., 0] > 200).all() and (img[centre][..., 2] < 50).all()
    for depth in (s_depth, g_depth):
        np.testing.assert_allclose(depth[centre], 2.0, rtol=1e-3)


def test_pinhole_splat_and_pyrender_agree_on_the_synthetic_take(tmp_path):
    take = generate_take(str(tmp_path / "take"), num_frames=2, resolution=RES)
    from vipe_dagster.io import ArtifactStore
    from vipe_dagster.render.ego_camera import views_from_meta
    from vipe_dagster.render.pointcloud import ArtifactReader, mean_background

    reader = ArtifactReader(ArtifactStore(take.vipe_dir), "cam01")
    cloud = mean_background(reader, 0, 1, step=1)
    T_exo, views = views_from_meta(take.meta_json, "cam01", [0, 1], RES, fisheye=False, online_calibration=None)
    world = cloud.transformed(T_exo)
    with PyrenderPointRenderer(RES, RES) as gl:
        for view in views:
            _, s_depth, s_mask = _splat(world.xyz, world.rgb, view.w2c, view.camera)
            _, g_depth = gl.render(world.xyz, world.rgb, view.w2c, view.camera.base.params.numpy(), point_size=1.5)
            g_mask = g_depth > 0
            iou = (s_mask & g_mask).sum() / (s_mask | g_mask).sum()
            both = s_mask & g_mask
            rel = np.abs(s_depth[both] - g_depth[both]) / g_depth[both]
            print(f"coverage splat {s_mask.mean():.3f} pyrender {g_mask.mean():.3f} IoU {iou:.3f} "
                  f"median depth diff {np.median(rel):.4f}")
            assert s_mask.mean() > 0.1  # the exo cloud fills about a fifth of the wide (119 deg) ego pinhole view
            assert iou > 0.95
            assert np.median(rel) < 0.01 and np.mean(rel < 0.05) > 0.97


def test_render_ego_with_pyrender_backend_and_its_bad_inputs(tmp_path):
    take = generate_take(str(tmp_path / "take"), num_frames=2, resolution=RES)
    res = render_ego(EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(tmp_path / "o"), meta_json_path=take.meta_json,
                                     resolution=RES, backend="pyrender", output="png", use_mean_bg=True))
    assert len(res.files) == 2 and min(res.coverage) > 0.1
    from vipe_dagster.errors import InputError

    with pytest.raises(InputError, match="pyrender backend renders pinhole cameras only"):
        render_ego(EgoRenderConfig(input_dir=take.vipe_dir, out_dir=str(tmp_path / "o2"), meta_json_path=take.meta_json,
                                   backend="pyrender", fish_eye_rendering=True))
