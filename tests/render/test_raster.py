"""The native rasteriser against the exact splat (gpu_kernels.splat) and against hand-derived cases."""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np
import pytest
import torch

from gpu_kernels.cameras import Fisheye624Camera, KannalaBrandtCamera, PinholeCamera
from gpu_kernels.splat import splat
from vipe_dagster.egoexo.formats import DEFAULT_ARIA_RGB_PARAMS
from vipe_dagster.render import raster
from vipe_dagster.render.ego_camera import RotatedCW, fisheye_camera
from vipe_dagster.render.raster import PointRasterizer

if shutil.which("cc") is None and shutil.which("gcc") is None:
    pytest.skip("no C compiler on this machine: the native rasteriser cannot be built", allow_module_level=True)

H = W = 96


def _cloud(n: int, seed: int = 0, theta_max: float = 1.2, near: float = 0.3, far: float = 5.0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, generator=g, dtype=torch.float64) * theta_max
    phi = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    dirs = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1)
    pts = (dirs * (near + (far - near) * torch.rand(n, 1, generator=g, dtype=torch.float64))).float()
    rgb = (torch.rand(n, 3, generator=g) * 256).clamp(max=255).to(torch.uint8)
    return pts.numpy(), rgb.numpy()


def _cameras(size: int) -> dict[str, object]:
    s = size / 448
    return {
        "fisheye624_rotated": fisheye_camera(DEFAULT_ARIA_RGB_PARAMS, size),
        "pinhole": PinholeCamera(torch.tensor([70.0 * s * 4, 75.0 * s * 4, size / 2 - 0.3, size / 2 + 0.2],
                                              dtype=torch.float64)),
        "kannala_brandt": KannalaBrandtCamera(torch.tensor([40.0 * s * 4, 41.0 * s * 4, size / 2, size / 2 - 1.0,
                                                            0.05, -0.01, 0.002, -0.0004], dtype=torch.float64)),
    }


def _reference(xyz, rgb, camera, radius, k, mode, background, size=H):
    cam = camera.base if isinstance(camera, RotatedCW) else camera
    cam32 = cam.to(dtype=torch.float32)
    cam_ref = RotatedCW(cam32, camera.raw_height) if isinstance(camera, RotatedCW) else cam32
    img, depth, mask = splat(torch.from_numpy(xyz), torch.from_numpy(rgb).float() / 255.0, cam_ref, size, size,
                             radius=radius, k=k, background=background, mode=mode)
    return img.numpy(), depth.numpy(), mask.numpy()


def _psnr_u8(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean()
    return math.inf if err == 0 else 10 * math.log10(255.0**2 / err)


def test_native_kernel_builds_and_loads():
    assert raster.native_available(), raster.native_error()


@pytest.mark.parametrize("cam_name", ["fisheye624_rotated", "pinhole", "kannala_brandt"])
@pytest.mark.parametrize("mode", ["front_to_back", "normalized", "nearest"])
@pytest.mark.parametrize("radius,k", [(1.5, 20), (1.0, 3), (2.0, 5), (0.6, 20), (3.3, 8)])
def test_random_clouds_match_the_exact_splat(cam_name, mode, radius, k):
    xyz, rgb = _cloud(6000, seed=int(radius * 10) + k)
    cam = _cameras(H)[cam_name]
    bg = (0.1, 0.2, 0.3)
    ref_img, ref_depth, ref_mask = _reference(xyz, rgb, cam, radius, k, mode, bg)
    with PointRasterizer(threads=2) as r:
        out = r.render(xyz, rgb, cam, H, W, radius=radius, k=k, mode=mode, background=bg, depth=True,
                       float_image=True)
    iou = (ref_mask & out.mask).sum() / max((ref_mask | out.mask).sum(), 1)
    assert ref_mask.mean() > 0.2
    assert iou >= 0.999, iou
    # colours: the same float32 arithmetic, up to the order of float sums and pixels on a disk boundary
    close = np.abs(ref_img - out.image_float).max(-1) < 1e-4
    assert close.mean() >= 0.995, close.mean()
    ref_u8 = (np.clip(ref_img, 0, 1) * 255).astype(np.uint8)
    union = ref_mask | out.mask
    assert _psnr_u8(ref_u8, out.image, union) >= 45.0
    both = ref_mask & out.mask
    assert np.mean(np.abs(ref_depth[both] - out.depth[both]) < 1e-4) >= 0.995
    assert (out.depth[~out.mask] == 0).all() and np.allclose(out.image_float[~out.mask], bg)


def test_lone_point_is_a_disk_with_linear_alpha():
    """One point on the optical axis of a pinhole: a disk of radius r around the principal point, alpha
    1 - d^2 / r^2, over the background (front to back), the exact colour (normalized)."""
    cam = PinholeCamera(torch.tensor([100.0, 100.0, 20.25, 30.5], dtype=torch.float64))
    xyz = np.array([[0.0, 0.0, 2.0]], np.float32)
    rgb = np.array([[255, 51, 0]], np.uint8)
    r = 2.5
    with PointRasterizer(threads=1) as ras:
        ftb = ras.render(xyz, rgb, cam, 64, 48, radius=r, mode="front_to_back", float_image=True, depth=True)
        nrm = ras.render(xyz, rgb, cam, 64, 48, radius=r, mode="normalized", float_image=True)
    rows, cols = np.mgrid[0:64, 0:48]
    d2 = (cols - 20.25) ** 2 + (rows - 30.5) ** 2
    inside = d2 < r * r
    assert (ftb.mask == inside).all() and (nrm.mask == inside).all()
    alpha = 1 - d2[inside] / (r * r)
    np.testing.assert_allclose(ftb.image_float[inside], alpha[:, None] * np.array([1.0, 0.2, 0.0]), atol=1e-6)
    np.testing.assert_allclose(nrm.image_float[inside], np.tile([1.0, 0.2, 0.0], (inside.sum(), 1)), atol=1e-6)
    assert (ftb.depth[inside] == 2.0).all() and (ftb.depth[~inside] == 0).all()


def test_depth_order_and_k_nearest_do_not_depend_on_input_order():
    """Three points projecting to the same pixel centre: the nearest composites first, k = 2 drops the
    farthest; shuffling the input changes nothing."""
    cam = PinholeCamera(torch.tensor([50.0, 50.0, 8.0, 8.0], dtype=torch.float64))
    z = np.array([3.0, 1.0, 2.0], np.float32)
    xyz = np.stack([np.zeros(3), np.zeros(3), z], -1).astype(np.float32)
    rgb = np.array([[0, 0, 255], [255, 0, 0], [0, 255, 0]], np.uint8)  # blue far, red near, green middle
    r = 1.5
    a = 1.0  # alpha at the centre pixel (d = 0)
    outs = []
    with PointRasterizer(threads=1) as ras:
        for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
            outs.append(ras.render(xyz[perm], rgb[perm], cam, 16, 16, radius=r, k=2, mode="front_to_back",
                                   float_image=True, depth=True))
    for o in outs:
        np.testing.assert_array_equal(o.image_float, outs[0].image_float)
        assert o.depth[8, 8] == 1.0
    # centre pixel: red with alpha 1 hides everything
    np.testing.assert_allclose(outs[0].image_float[8, 8], [a, 0, 0])
    # a neighbour at d = 1: alpha = 1 - 1/2.25 for each; red first, then green; blue is the 3rd (k = 2)
    al = 1 - 1 / 2.25
    np.testing.assert_allclose(outs[0].image_float[8, 9], [al, al * (1 - al), 0], rtol=1e-6)


def test_points_behind_outside_or_invalid_are_never_drawn():
    cam = fisheye_camera(DEFAULT_ARIA_RGB_PARAMS, 64)
    lim = float(cam.base.theta_limit)
    far_side = [math.sin(lim + 0.05), 0.0, math.cos(lim + 0.05)]  # beyond the valid field of view
    xyz = np.array([[0, 0, -2.0], [0.1, 0.1, -0.5], [0, 0, 0], far_side, [np.nan, 0, 1], [np.inf, 0, 1],
                    [0, 0, np.inf]], np.float32)
    rgb = np.full((len(xyz), 3), 255, np.uint8)
    with PointRasterizer() as ras:
        kept = ras.project(xyz, rgb, cam, 64, 64, radius=3.0)
        out = ras.composite(64, 64, radius=3.0)
    assert kept == 0 and not out.mask.any() and (out.image == 0).all()


def test_near_clip_drops_points_near_the_camera():
    cam = PinholeCamera(torch.tensor([40.0, 40.0, 15.5, 15.5], dtype=torch.float64))
    xyz = np.array([[0, 0, 0.3], [0.5, 0, 2.0]], np.float32)
    rgb = np.full((2, 3), 200, np.uint8)
    w2c = np.eye(4)
    w2c[:3, 3] = [0.0, 0.0, 0.1]  # camera 0.1 m behind the world origin along z
    with PointRasterizer() as ras:
        assert ras.project(xyz, rgb, cam, 32, 32, w2c=w2c, near_clip=0.5) == 1
        assert ras.projected()[0, 2] == pytest.approx(2.1)
        assert ras.project(xyz, rgb, cam, 32, 32, w2c=w2c, near_clip=0.0) == 2


@pytest.mark.parametrize("cam_name", ["fisheye624_rotated", "pinhole", "kannala_brandt"])
def test_native_projection_matches_gpu_kernels_cameras(cam_name):
    """The fused C projection (float32) against gpu_kernels.cameras (the reference, float64): world points
    seen through a rotated and translated camera, over the whole valid field of view."""
    from gpu_kernels.lie import so3_exp

    cam = _cameras(448)[cam_name]
    xyz, rgb = _cloud(20000, seed=3, theta_max=1.5, near=0.05)
    w2c = np.eye(4)
    w2c[:3, :3] = so3_exp(torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)).numpy()
    w2c[:3, 3] = [0.05, -0.1, 0.2]
    world = ((xyz.astype(np.float64) - w2c[:3, 3]) @ w2c[:3, :3]).astype(np.float32)  # camera -> world
    pc = torch.from_numpy(world.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3])
    uv, valid = cam.project(pc)
    uv = uv.numpy()
    m = 0.01  # away from the culling bounds, where float32 and float64 may decide differently
    lim = getattr(cam.base if isinstance(cam, RotatedCW) else cam, "theta_limit", None)
    theta = np.arctan2(np.linalg.norm(pc.numpy()[:, :2], axis=1), pc.numpy()[:, 2])
    sure = valid.numpy() & (uv[:, 0] > -1.5 + m) & (uv[:, 0] < 448.5 - m) & (uv[:, 1] > -1.5 + m) & \
        (uv[:, 1] < 448.5 - m) & ((theta < float(lim) - 1e-4) if lim is not None else True)
    assert sure.sum() > 5000
    with PointRasterizer() as ras:
        assert ras.project(world[sure], rgb[sure], cam, 448, 448, w2c=w2c, radius=1.5) == sure.sum()
        got = ras.projected()
    np.testing.assert_allclose(got[:, :2], uv[sure], atol=2e-3)
    np.testing.assert_allclose(got[:, 2], pc.numpy()[sure, 2], rtol=1e-5)


def test_any_camera_model_goes_through_gpu_kernels_projection():
    """A camera the kernel does not know (here: a subclass with another name) is projected by
    gpu_kernels.cameras and drawn natively, with the same result as the fused projection."""

    class OtherFisheye(Fisheye624Camera):
        NAME = "other_fisheye"

    base = fisheye_camera(DEFAULT_ARIA_RGB_PARAMS, H)
    other = RotatedCW(OtherFisheye(base.base.params), H)
    xyz, rgb = _cloud(5000, seed=5)
    with PointRasterizer() as ras:
        a = ras.render(xyz, rgb, base, H, W, float_image=True)
        b = ras.render(xyz, rgb, other, H, W, float_image=True)
    iou = (a.mask & b.mask).sum() / (a.mask | b.mask).sum()
    assert iou >= 0.999
    assert np.mean(np.abs(a.image_float - b.image_float).max(-1) < 1e-4) >= 0.995


def test_thread_count_does_not_change_the_output():
    xyz, rgb = _cloud(40000, seed=9)
    cam = _cameras(200)["fisheye624_rotated"]
    outs = []
    for threads in (1, 2, 5):
        with PointRasterizer(threads=threads) as ras:
            outs.append(ras.render(xyz, rgb, cam, 200, 200, radius=1.5, mode="front_to_back", float_image=True))
    for o in outs[1:]:
        np.testing.assert_array_equal(o.image_float, outs[0].image_float)
        np.testing.assert_array_equal(o.mask, outs[0].mask)


def test_bad_arguments_are_rejected():
    cam = _cameras(32)["pinhole"]
    xyz, rgb = _cloud(10)
    with PointRasterizer() as ras:
        with pytest.raises(ValueError, match="colours"):
            ras.project(xyz, rgb[:5], cam, 32, 32)
        with pytest.raises(ValueError, match="radius"):
            ras.project(xyz, rgb, cam, 32, 32, radius=0.0)
        with pytest.raises(ValueError, match="must follow a project"):
            ras.composite(32, 32)
        ras.project(xyz, rgb, cam, 32, 32, radius=1.5)
        with pytest.raises(ValueError, match="same size and radius"):
            ras.composite(32, 32, radius=2.0)
        with pytest.raises(ValueError, match="unknown mode"):
            ras.composite(32, 32, mode="max")


def test_unavailable_kernel_is_reported(monkeypatch, caplog):
    """No compiler (or VIPE_RASTER_NATIVE=0): native_available() is False with the reason, and the ego
    renderer's backend choice falls back to the exact splat with a warning."""
    from vipe_dagster.render.ego import EgoRenderConfig, resolve_backend

    try:
        monkeypatch.setenv("CC", "/nonexistent/cc")
        raster._reset_for_tests()
        assert not raster.native_available()
        assert "no C compiler" in raster.native_error()
        monkeypatch.delenv("CC")
        monkeypatch.setenv("VIPE_RASTER_NATIVE", "0")
        raster._reset_for_tests()
        assert "VIPE_RASTER_NATIVE=0" in raster.native_error()
        cfg = EgoRenderConfig(input_dir="x", out_dir="y", backend="auto")
        with caplog.at_level(logging.WARNING, logger="vipe_dagster.render.ego"):
            assert resolve_backend(cfg) == "splat"
        assert "falling back to the exact splat" in caplog.text
        with pytest.raises(raster.NativeUnavailable):
            PointRasterizer()
    finally:
        monkeypatch.undo()
        raster._reset_for_tests()
    assert raster.native_available()


def test_build_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("VIPE_NATIVE_CACHE", str(tmp_path / "native"))
    try:
        raster._reset_for_tests()
        lib = raster.load_native()
        built = list((tmp_path / "native").glob("point_raster-*.so"))
        assert len(built) == 1 and lib is raster.load_native()
        raster._reset_for_tests()
        raster.load_native()  # a new process (here: a reset) loads the cached library, builds nothing new
        assert list((tmp_path / "native").glob("point_raster-*.so")) == built
    finally:
        monkeypatch.undo()
        raster._reset_for_tests()
