"""Lie group kernels against scipy Rotation plus property tests (exp/log round trips, Jacobians vs finite
differences) on random and edge-case inputs in float32 and float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gpu_kernels import lie

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-5, torch.float64: 1e-11}


def _rand_rotvec(n: int, dtype: torch.dtype, max_angle: float = math.pi, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, 3, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return w.to(dtype)


def _edge_rotvecs(dtype: torch.dtype) -> torch.Tensor:
    axes = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0.3, -0.8, 0.5]], dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    angles = [0.0, 1e-12, 1e-8, 1e-6, 1e-4, 0.049, 0.051, 1.0, math.pi - 1e-2, math.pi - 1e-5, math.pi - 1e-7]
    return torch.stack([a * ang for a in axes for ang in angles]).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_exp_matches_scipy(dtype):
    w = torch.cat([_rand_rotvec(2000, dtype), _edge_rotvecs(dtype)])
    ref = Rotation.from_rotvec(w.double().numpy()).as_matrix()
    got = lie.so3_exp(w)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), ref, atol=TOL[dtype] * 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_log_matches_scipy_including_near_pi(dtype):
    rots = Rotation.random(2000, random_state=1)
    near_pi = Rotation.from_rotvec(_edge_rotvecs(torch.float64).numpy())
    mats = np.concatenate([rots.as_matrix(), near_pi.as_matrix()])
    got = lie.so3_log(torch.tensor(mats, dtype=dtype)).double().numpy()
    ref = Rotation.from_matrix(mats).as_rotvec()
    # at exactly pi the sign of the axis is ambiguous: compare the rotations they generate
    np.testing.assert_allclose(Rotation.from_rotvec(got).as_matrix(), mats, atol=TOL[dtype] * 20)
    away = np.linalg.norm(ref, axis=-1) < math.pi - 1e-3
    np.testing.assert_allclose(got[away], ref[away], atol=TOL[dtype] * 20)
    # angle recovered to precision even next to pi
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), np.linalg.norm(ref, axis=-1),
                               atol=3e-6 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quaternion_round_trip_matches_scipy(dtype):
    rots = Rotation.random(500, random_state=2)
    q_xyzw = rots.as_quat()
    q_wxyz = torch.tensor(np.roll(q_xyzw, 1, axis=-1), dtype=dtype)
    np.testing.assert_allclose(lie.quat_to_so3(q_wxyz).double().numpy(), rots.as_matrix(), atol=TOL[dtype] * 5)
    back = lie.so3_to_quat(torch.tensor(rots.as_matrix(), dtype=dtype)).double().numpy()
    ref = np.roll(q_xyzw, 1, axis=-1)
    ref = np.where(ref[:, :1] < 0, -ref, ref)
    np.testing.assert_allclose(back, ref, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_exp_log_round_trip(dtype):
    w = torch.cat([_rand_rotvec(1000, dtype, max_angle=math.pi - 1e-3), _edge_rotvecs(dtype)[:-3]])
    back = lie.so3_log(lie.so3_exp(w))
    tol = 5e-6 if dtype == torch.float32 else 1e-10
    assert (back - w).abs().max() < tol * 10
    r = lie.so3_exp(_rand_rotvec(500, dtype, seed=3))
    assert (lie.so3_exp(lie.so3_log(r)) - r).abs().max() < TOL[dtype] * 10


def _num_jac(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    cols = []
    for i in range(x.shape[-1]):
        d = torch.zeros_like(x)
        d[..., i] = eps
        cols.append((f(x + d) - f(x - d)) / (2 * eps))
    return torch.stack(cols, dim=-1)


def test_so3_jacobians_against_finite_differences():
    phi = torch.cat([_rand_rotvec(200, torch.float64, max_angle=math.pi - 0.05, seed=4),
                     torch.tensor([[0.0, 0, 0], [1e-7, 0, 0], [0, 0.04, 0.01], [0, 0, 3.0]], dtype=torch.float64)])
    r0 = lie.so3_exp(phi)
    # left: exp(phi + d) = exp(J_l d) exp(phi)  -> d/dd log(exp(phi + d) exp(phi)^T) = J_l
    jl_num = _num_jac(lambda p: lie.so3_log(lie.so3_exp(p) @ r0.transpose(-1, -2)), phi)
    jr_num = _num_jac(lambda p: lie.so3_log(r0.transpose(-1, -2) @ lie.so3_exp(p)), phi)
    jl, jr = lie.so3_left_jacobian(phi), lie.so3_right_jacobian(phi)
    assert (jl - jl_num).abs().max() < 1e-7
    assert (jr - jr_num).abs().max() < 1e-7
    eye = torch.eye(3, dtype=torch.float64)
    assert (lie.so3_left_jacobian_inv(phi) @ jl - eye).abs().max() < 1e-10
    assert (lie.so3_right_jacobian_inv(phi) @ jr - eye).abs().max() < 1e-10


def test_so3_jacobians_float32_close_to_float64():
    phi = torch.cat([_rand_rotvec(500, torch.float64), _edge_rotvecs(torch.float64)])
    for fn in (lie.so3_left_jacobian, lie.so3_right_jacobian, lie.so3_left_jacobian_inv,
               lie.so3_right_jacobian_inv):
        a = fn(phi)
        b = fn(phi.float()).double()
        assert torch.isfinite(b).all()
        assert ((a - b).abs() / a.abs().clamp_min(1)).max() < 1e-4, fn.__name__


def _rand_se3(n: int, dtype: torch.dtype, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rho = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2
    return torch.cat([rho, _rand_rotvec(n, torch.float64, math.pi - 1e-3, seed)], -1).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_se3_exp_log_and_group_ops(dtype):
    xi = torch.cat([_rand_se3(1000, dtype),
                    torch.cat([torch.randn(_edge_rotvecs(dtype)[:-3].shape[0], 3, dtype=dtype),
                               _edge_rotvecs(dtype)[:-3]], -1)])
    t = lie.se3_exp(xi)
    assert t.dtype == dtype and t.shape == (xi.shape[0], 4, 4)
    # rotation part is scipy's, translation is J_l rho
    ref_r = Rotation.from_rotvec(xi[:, 3:].double().numpy()).as_matrix()
    np.testing.assert_allclose(t[:, :3, :3].double().numpy(), ref_r, atol=TOL[dtype] * 5)
    tol = 5e-5 if dtype == torch.float32 else 1e-9
    assert (lie.se3_log(t) - xi).abs().max() < tol
    eye = torch.eye(4, dtype=dtype)
    assert (lie.se3_compose(t, lie.se3_inv(t)) - eye).abs().max() < tol
    p = torch.randn(1000 + xi.shape[0] - 1000, 3, dtype=dtype)
    ref = (t[:, :3, :3] @ p[:, :, None])[:, :, 0] + t[:, :3, 3]
    assert (lie.se3_act(t, p) - ref).abs().max() < tol
    # matrix exponential definition
    m = torch.zeros(xi.shape[0], 4, 4, dtype=torch.float64)
    m[:, :3, :3] = lie.skew(xi[:, 3:].double())
    m[:, :3, 3] = xi[:, :3].double()
    assert (torch.linalg.matrix_exp(m) - t.double()).abs().max() < tol * 10


def test_se3_adjoint_identity():
    t = lie.se3_exp(_rand_se3(300, torch.float64))
    xi = torch.randn(300, 6, dtype=torch.float64) * 0.3
    lhs = t @ lie.se3_exp(xi) @ lie.se3_inv(t)
    rhs = lie.se3_exp((lie.se3_adjoint(t) @ xi[:, :, None])[:, :, 0])
    assert (lhs - rhs).abs().max() < 1e-10


def test_se3_interpolate_endpoints_and_midpoint():
    t0 = lie.se3_exp(_rand_se3(50, torch.float64, seed=7))
    t1 = lie.se3_exp(_rand_se3(50, torch.float64, seed=8))
    assert (lie.se3_interpolate(t0, t1, 0.0) - t0).abs().max() < 1e-10
    assert (lie.se3_interpolate(t0, t1, 1.0) - t1).abs().max() < 1e-9
    mid = lie.se3_interpolate(t0, t1, torch.full((50,), 0.5, dtype=torch.float64))
    # the midpoint is halfway along the geodesic: mid^-1 T1 == T0^-1 mid
    a = lie.se3_log(lie.se3_inv(mid) @ t1)
    b = lie.se3_log(lie.se3_inv(t0) @ mid)
    assert (a - b).abs().max() < 1e-9
    # rotation part equals scipy Slerp-compatible geodesic midpoint
    r0 = Rotation.from_matrix(t0[:, :3, :3].numpy())
    r1 = Rotation.from_matrix(t1[:, :3, :3].numpy())
    ref = r0 * Rotation.from_rotvec(0.5 * (r0.inv() * r1).as_rotvec())
    np.testing.assert_allclose(mid[:, :3, :3].numpy(), ref.as_matrix(), atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sim3_exp_log_and_group_ops(dtype):
    xi6 = _rand_se3(500, dtype, seed=9)
    g = torch.Generator().manual_seed(10)
    sigma = torch.cat([torch.randn(490, 1, generator=g, dtype=torch.float64) * 0.7,
                       torch.tensor([[0.0], [1e-9], [-1e-9], [1e-5], [1.5], [-1.5], [0], [0], [0], [0]],
                                    dtype=torch.float64)]).to(dtype)
    xi6[-4:, 3:] = torch.tensor([[0, 0, 0], [1e-9, 0, 0], [0, 0, math.pi - 1e-4], [0, 1e-6, 0]], dtype=dtype)
    x = torch.cat([xi6, sigma], -1)
    s = lie.sim3_exp(x)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    assert s.dtype == dtype
    # matches the matrix exponential of the sim3 generator
    m = torch.zeros(500, 4, 4, dtype=torch.float64)
    m[:, :3, :3] = lie.skew(x[:, 3:6].double()) + x[:, 6, None, None].double() * torch.eye(3, dtype=torch.float64)
    m[:, :3, 3] = x[:, :3].double()
    assert (torch.linalg.matrix_exp(m) - s.double()).abs().max() < tol
    assert (lie.sim3_scale(s) - torch.exp(x[:, 6])).abs().max() < tol * 10
    assert (lie.sim3_log(s) - x).abs().max() < tol * 10
    assert (lie.sim3_compose(s, lie.sim3_inv(s)) - torch.eye(4, dtype=dtype)).abs().max() < tol
    p = torch.randn(500, 3, dtype=dtype)
    sc = torch.exp(x[:, 6])[:, None]
    ref = sc * (lie.so3_exp(x[:, 3:6]) @ p[:, :, None])[:, :, 0] + s[:, :3, 3]
    assert (lie.sim3_act(s, p) - ref).abs().max() < tol * 10
    # sim3 with sigma = 0 reduces to se3
    x0 = x.clone()
    x0[:, 6] = 0
    assert (lie.sim3_exp(x0) - lie.se3_exp(x0[:, :6])).abs().max() < tol


def test_batch_broadcast_and_bad_shapes():
    w = _rand_rotvec(24, torch.float64).reshape(2, 3, 4, 3)
    assert lie.so3_exp(w).shape == (2, 3, 4, 3, 3)
    assert lie.se3_act(lie.se3_exp(torch.zeros(2, 1, 6)), torch.ones(2, 5, 3)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="shape"):
        lie.so3_exp(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="shape"):
        lie.se3_exp(torch.zeros(3))


def test_batch_shapes_broadcast_like_torch():
    """se3_from_rt / Sim(3) broadcast their batch shapes without torch.broadcast_shapes (which imports
    torch._refs on first use); the result and the refusal match torch's rule."""
    from gpu_kernels.lie import _broadcast_shapes

    for shapes in [((), ()), ((3,), (1,)), ((2, 1), (5,)), ((4, 3), (3,)), ((1,), (7, 1)), ((0,), (1,)),
                   ((0,), ()), ((2, 1, 4), (3, 1))]:
        assert _broadcast_shapes(*shapes) == tuple(torch.broadcast_shapes(*shapes)), shapes
    with pytest.raises(ValueError, match="do not broadcast"):
        _broadcast_shapes((2,), (3,))
    r = torch.eye(3).expand(5, 3, 3)
    t = torch.arange(3.0)
    out = lie.se3_from_rt(r, t)
    assert out.shape == (5, 4, 4) and torch.equal(out[:, :3, 3], t.expand(5, 3))
