"""Fisheye camera models against independent implementations: Aria Fisheye624 against projectaria_tools,
Kannala-Brandt against OpenCV ``cv2.fisheye``; Newton unprojection round trips; analytic Jacobians against
finite differences; validity masks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from gpu_kernels.cameras import Fisheye624Camera, KannalaBrandtCamera, camera_from_params

# camera-rgb calibration quoted in the EgoX spec (cmu_bike08_2, full 2880x2880 sensor)
ARIA_RGB = [1220.592, 1464.618, 1442.370, 0.41438, -0.48598, 0.13849, 1.14600, -1.66763, 0.63010,
            7.903e-4, -3.461e-4, -1.078e-3, 7.70e-5, 5.214e-4, -1.066e-4]
# EgoX default (SLAM-camera-like) coefficients on a 512 px pinhole-like focal
ARIA_DEFAULT = [150.0, 255.5, 255.5, -0.023404, 0.093880, -0.060880, 0.0053305, 0.0033429, -0.00063563,
                5.0874e-4, -4.7471e-4, -1.13301e-3, -2.5735e-4, 9.3285e-5, 9.4250e-5]
GOPRO_KB = [1760.3, 1759.8, 1921.4, 1078.9, 0.0312, 0.0128, -0.0071, 0.0013]


def _dirs(n: int, max_theta: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    theta = np.sqrt(rng.uniform(0, 1, n)) * max_theta
    phi = rng.uniform(-np.pi, np.pi, n)
    d = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
    return d * rng.uniform(0.3, 20.0, (n, 1))


@pytest.mark.parametrize("params,max_theta", [(ARIA_RGB, 1.25), (ARIA_DEFAULT, 1.3)])
def test_fisheye624_matches_projectaria(params, max_theta):
    from projectaria_tools.core import calibration

    proj = calibration.CameraProjection(calibration.CameraModelType.FISHEYE624, np.array(params))
    pts = _dirs(3000, max_theta, seed=1)
    pts[0] = [0.0, 0.0, 2.0]  # optical axis -> principal point
    ref = np.stack([proj.project(p) for p in pts])
    cam = Fisheye624Camera(torch.tensor(params, dtype=torch.float64))
    uv, valid = cam.project(torch.tensor(pts))
    assert bool(valid.all())
    np.testing.assert_allclose(uv.numpy(), ref, atol=1e-3)
    np.testing.assert_allclose(uv[0].numpy(), params[1:3], atol=1e-9)
    # float32 path
    uv32, _ = cam.to(dtype=torch.float32).project(torch.tensor(pts, dtype=torch.float32))
    assert uv32.dtype == torch.float32
    np.testing.assert_allclose(uv32.double().numpy(), ref, atol=2e-3 * params[0] / 150)

    # unprojection: same rays as projectaria (angle < 1e-6 rad) and < 1e-6 px reprojection
    rays, ok = cam.unproject_with_valid(torch.tensor(ref))
    assert bool(ok.all())
    ref_rays = np.stack([proj.unproject(q) for q in ref])
    ref_rays /= np.linalg.norm(ref_rays, axis=1, keepdims=True)
    ours = rays.numpy() / np.linalg.norm(rays.numpy(), axis=1, keepdims=True)
    ang = np.arccos(np.clip((ours * ref_rays).sum(1), -1, 1))
    assert ang.max() < 1e-6
    true_dir = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    assert np.arccos(np.clip((ours * true_dir).sum(1), -1, 1)).max() < 1e-6
    re_uv, _ = cam.project(rays)
    assert float((re_uv - torch.tensor(ref)).norm(dim=-1).max()) < 1e-6
    np.testing.assert_allclose(rays[:, 2].numpy(), 1.0)
    unit = cam.unproject(torch.tensor(ref), unit_norm=True)
    np.testing.assert_allclose(unit.norm(dim=-1).numpy(), 1.0, atol=1e-12)


def test_kannala_brandt_matches_opencv():
    pts = _dirs(4000, 1.35, seed=2)
    cam = KannalaBrandtCamera(torch.tensor(GOPRO_KB, dtype=torch.float64))
    uv, valid = cam.project(torch.tensor(pts))
    assert bool(valid.all())
    fx, fy, cx, cy, *d = GOPRO_KB
    kmat = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    ref, _ = cv2.fisheye.projectPoints(pts[:, None, :], np.zeros(3), np.zeros(3), kmat, np.array(d))
    np.testing.assert_allclose(uv.numpy(), ref[:, 0], atol=1e-6)
    # unprojection against cv2.fisheye.undistortPoints (normalised coordinates)
    und = cv2.fisheye.undistortPoints(ref.astype(np.float64), kmat, np.array(d),
                                      criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14))
    rays, ok = cam.unproject_with_valid(torch.tensor(ref[:, 0]))
    assert bool(ok.all())
    np.testing.assert_allclose(rays[:, :2].numpy(), und[:, 0], atol=1e-6)
    np.testing.assert_allclose(rays[:, :2].numpy(), pts[:, :2] / pts[:, 2:], rtol=1e-7, atol=1e-8)
    re_uv, _ = cam.project(rays)
    assert float((re_uv - torch.tensor(ref[:, 0])).norm(dim=-1).max()) < 1e-6


def _fd_check(cam, pts: torch.Tensor, eps: float = 1e-6, tol: float = 2e-4) -> None:
    _, _, jp, jk = cam.project_with_jacobians(pts)
    for i in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[i] = eps
        num = (cam.project(pts + d)[0] - cam.project(pts - d)[0]) / (2 * eps)
        assert (jp[..., i] - num).abs().max() < tol * (1 + num.abs().max()), f"point dim {i}"
    for i in range(cam.num_params):
        d = torch.zeros(cam.num_params, dtype=torch.float64)
        d[i] = eps
        num = (type(cam)(cam.params + d).project(pts)[0] - type(cam)(cam.params - d).project(pts)[0]) / (2 * eps)
        assert (jk[..., i] - num).abs().max() < tol * (1 + num.abs().max()), f"param {cam.PARAM_NAMES[i]}"


@pytest.mark.parametrize("cls,params", [(Fisheye624Camera, ARIA_RGB), (Fisheye624Camera, ARIA_DEFAULT),
                                        (KannalaBrandtCamera, GOPRO_KB)])
def test_fisheye_jacobians_finite_differences(cls, params):
    pts = torch.tensor(_dirs(300, 1.2, seed=3))
    pts = torch.cat([pts, torch.tensor([[0.0, 0.0, 1.0], [1e-7, -2e-7, 1.0], [3e-4, 1e-4, 0.5]],
                                       dtype=torch.float64)])
    _fd_check(cls(torch.tensor(params, dtype=torch.float64)), pts)


def test_validity_behind_camera_and_outside_fov():
    cam = Fisheye624Camera(torch.tensor(ARIA_RGB))
    _, valid = cam.project(torch.tensor([[0.1, 0.1, -1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1e-9]]))
    assert not bool(valid.any())
    # non-monotonic radial polynomial: theta_d' = 1 - 1.5 theta^2 vanishes at theta = sqrt(2/3)
    kb = KannalaBrandtCamera(torch.tensor([300.0, 300.0, 320.0, 240.0, -0.5, 0.0, 0.0, 0.0]))
    lim = math.sqrt(2.0 / 3.0)
    assert abs(float(kb.theta_limit) - lim) < 1e-3
    th = torch.tensor([0.3, lim - 0.01, lim + 0.01, 1.2])
    pts = torch.stack([torch.sin(th), torch.zeros(4), torch.cos(th)], -1)
    _, valid = kb.project(pts)
    assert valid.tolist() == [True, True, False, False]
    # a pixel beyond the maximum image radius of the model cannot be unprojected
    # (max theta_d = 0.544 at theta = 0.816)
    _, ok = kb.unproject_with_valid(torch.tensor([[320.0 + 300.0 * 0.5, 240.0], [320.0 + 300.0 * 0.6, 240.0]]))
    assert ok.tolist() == [True, False]
    # an explicit field-of-view limit
    cam_fov = Fisheye624Camera(torch.tensor(ARIA_RGB), max_theta=math.radians(50))
    _, valid = cam_fov.project(torch.tensor([[math.tan(math.radians(49)), 0, 1.0], [math.tan(math.radians(51)), 0, 1.0]]))
    assert valid.tolist() == [True, False]


def test_fisheye_batched_params_and_scaling():
    p = torch.tensor([ARIA_RGB, ARIA_DEFAULT], dtype=torch.float64)
    cam = Fisheye624Camera(p)
    pts = torch.tensor(_dirs(50, 1.0, seed=4))[None].expand(2, 50, 3)
    uv, _ = cam.project(pts)
    for i in range(2):
        assert torch.allclose(uv[i], Fisheye624Camera(p[i]).project(pts[i])[0])
    rays = cam.unproject(uv)
    assert torch.allclose(rays, pts / pts[..., 2:], atol=1e-9)
    # resizing the image by s: pixel centres follow c' = s (c + 0.5) - 0.5, f' = s f
    s = 448 / 2880
    small = Fisheye624Camera(p[0]).scaled(s)
    uv_big, _ = Fisheye624Camera(p[0]).project(pts[0])
    uv_small, _ = small.project(pts[0])
    assert torch.allclose(uv_small, s * (uv_big + 0.5) - 0.5, atol=1e-9)
    assert isinstance(camera_from_params("FisheyeRadTanThinPrism", ARIA_RGB), Fisheye624Camera)
    assert isinstance(camera_from_params("KANNALABRANDTK3", GOPRO_KB), KannalaBrandtCamera)
    with pytest.raises(ValueError, match="15|f, cx, cy"):
        Fisheye624Camera(ARIA_RGB[:10])
