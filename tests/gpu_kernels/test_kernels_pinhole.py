"""Pinhole camera against OpenCV ``cv2.projectPoints``; Jacobians against finite differences."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gpu_kernels.cameras import PinholeCamera, camera_from_params


def _points(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3, generator=g, dtype=torch.float64)
    p[:, 2] = p[:, 2].abs() * 3 + 0.2
    return p


def test_pinhole_matches_opencv():
    k = [612.3, 598.1, 321.7, 239.2]
    cam = PinholeCamera(torch.tensor(k, dtype=torch.float64))
    pts = _points(5000)
    uv, valid = cam.project(pts)
    kmat = np.array([[k[0], 0, k[2]], [0, k[1], k[3]], [0, 0, 1]])
    ref, _ = cv2.projectPoints(pts.numpy(), np.zeros(3), np.zeros(3), kmat, None)
    np.testing.assert_allclose(uv.numpy(), ref[:, 0], atol=1e-9)
    assert bool(valid.all())
    # float32 follows the input dtype
    uv32, _ = cam.to(dtype=torch.float32).project(pts.float())
    assert uv32.dtype == torch.float32
    np.testing.assert_allclose(uv32.double().numpy(), ref[:, 0], atol=1e-3)


def test_pinhole_unproject_round_trip_and_validity():
    cam = PinholeCamera([500.0, 510.0, 320.0, 240.0])
    pts = _points(1000).float()
    uv, _ = cam.project(pts)
    rays = cam.unproject(uv)
    assert torch.allclose(rays[:, 2], torch.ones(1000))
    assert torch.allclose(rays * pts[:, 2:], pts, atol=1e-4)
    unit = cam.unproject(uv, unit_norm=True)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(1000), atol=1e-6)
    behind = torch.tensor([[0.1, 0.2, -1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1e-9]])
    _, valid = cam.project(behind)
    assert not bool(valid.any())


def test_pinhole_jacobians_finite_differences():
    cam = PinholeCamera(torch.tensor([500.0, 510.0, 320.0, 240.0], dtype=torch.float64))
    pts = _points(200, seed=3)
    _, _, jp, jk = cam.project_with_jacobians(pts)
    eps = 1e-6
    for i in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[i] = eps
        num = (cam.project(pts + d)[0] - cam.project(pts - d)[0]) / (2 * eps)
        assert (jp[..., i] - num).abs().max() < 1e-5
    for i in range(4):
        d = torch.zeros(4, dtype=torch.float64)
        d[i] = eps
        num = (PinholeCamera(cam.params + d).project(pts)[0] - PinholeCamera(cam.params - d).project(pts)[0]) / (
            2 * eps)
        assert (jk[..., i] - num).abs().max() < 1e-5


def test_batched_params_and_scaling():
    params = torch.tensor([[500.0, 500.0, 320.0, 240.0], [250.0, 250.0, 160.0, 120.0]])
    cam = PinholeCamera(params)
    pts = _points(10).float()[None].expand(2, 10, 3)
    uv, _ = cam.project(pts)
    assert uv.shape == (2, 10, 2)
    single = PinholeCamera(params[1]).project(pts[1])[0]
    assert torch.allclose(uv[1], single)
    half = PinholeCamera(params[0]).scaled(0.5)
    # pixel-centre convention: c' = s (c + 0.5) - 0.5
    assert torch.allclose(half.params, torch.tensor([250.0, 250.0, 159.75, 119.75]))
    assert isinstance(camera_from_params("PINHOLE", [1.0, 1.0, 0.0, 0.0]), PinholeCamera)
    with pytest.raises(ValueError, match="fx, fy, cx, cy"):
        PinholeCamera([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown camera model"):
        camera_from_params("nope", [1.0])
