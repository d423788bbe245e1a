"""Lie groups SO(3), SE(3) and Sim(3) as batched functions on torch tensors.

Every function accepts arbitrary leading batch dimensions, works on CPU and CUDA, and keeps the device and
dtype of its inputs (float32 and float64 are supported).

Conventions
-----------
* Rotations are 3x3 matrices ``R`` acting on column vectors, ``x' = R x``.
* Rigid transforms are 4x4 homogeneous matrices ``T = [[R, t], [0, 1]]``, ``x' = R x + t``.
* Similarities are 4x4 matrices ``S = [[s R, t], [0, 1]]``, ``x' = s R x + t``.
* ``hat``/``skew`` maps ``w`` to the cross-product matrix ``[w]_x`` with ``[w]_x v = w x v``.
* SE(3) tangent vectors are ordered ``xi = [rho, phi]``: ``rho`` (3, translation part) first, ``phi``
  (3, rotation vector) second, ``se3_exp(xi) = expm([[phi]_x, rho], [0, 0]])``.
* Sim(3) tangent vectors are ordered ``[rho, phi, sigma]`` with ``sigma = log(s)``.
* Perturbations: the *left* Jacobian ``J_l(phi)`` satisfies ``exp(phi + d) ~= exp(J_l d) exp(phi)`` and the
  *right* Jacobian ``J_r(phi) = J_l(-phi)`` satisfies ``exp(phi + d) ~= exp(phi) exp(J_r d)``.
* The adjoint is defined by ``T exp(xi) T^-1 = exp(Ad(T) xi)``.

Numerics: closed forms switch to Taylor series below a small-angle threshold (the unused branch is evaluated
at a safe argument so gradients stay finite), ``so3_log`` goes through a Shepperd quaternion so it stays
accurate at angles near pi, and the Sim(3) ``V`` matrix is obtained from ``torch.linalg.matrix_exp`` of a
block matrix, which is exact for every (phi, sigma) including sigma -> 0 and phi -> 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "skew",
    "vee",
    "so3_exp",
    "so3_log",
    "so3_left_jacobian",
    "so3_right_jacobian",
    "so3_left_jacobian_inv",
    "so3_right_jacobian_inv",
    "quat_to_so3",
    "so3_to_quat",
    "se3_from_rt",
    "se3_exp",
    "se3_log",
    "se3_inv",
    "se3_compose",
    "se3_act",
    "se3_adjoint",
    "se3_interpolate",
    "sim3_exp",
    "sim3_log",
    "sim3_inv",
    "sim3_compose",
    "sim3_act",
    "sim3_scale",
]

# Below this angle (radians) the series expansions are used; their truncation error is < 1e-12 there.
_SMALL_ANGLE = 0.05


def _check_last(x: Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape[-len(shape) :]) != shape:
        raise ValueError(f"{name}: expected a tensor of shape (..., {', '.join(map(str, shape))}), got {tuple(x.shape)}")


def skew(w: Tensor) -> Tensor:
    """``(...,3) -> (...,3,3)`` cross-product matrix ``[w]_x``."""
    _check_last(w, (3,), "skew")
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*w.shape[:-1], 3, 3)


def vee(m: Tensor) -> Tensor:
    """Inverse of :func:`skew` for the antisymmetric part of ``(...,3,3)``: returns ``(...,3)``."""
    _check_last(m, (3, 3), "vee")
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], dim=-1
    )


def _eye(n: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device)


def _so3_coeffs(theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A = sin t / t, B = (1 - cos t) / t^2, C = (t - sin t) / t^3 with series near 0."""
    small = theta < _SMALL_ANGLE
    t = torch.where(small, torch.full_like(theta, 1.0), theta)
    t2s = theta * theta
    a = torch.where(small, 1 - t2s / 6 + t2s * t2s / 120, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2s / 24 + t2s * t2s / 720, (1 - torch.cos(t)) / (t * t))
    c = torch.where(small, 1.0 / 6 - t2s / 120 + t2s * t2s / 5040, (t - torch.sin(t)) / (t * t * t))
    return a, b, c


def so3_exp(w: Tensor) -> Tensor:
    """Rotation vector ``(...,3)`` -> rotation matrix ``(...,3,3)`` (Rodrigues)."""
    _check_last(w, (3,), "so3_exp")
    theta = torch.linalg.vector_norm(w, dim=-1)
    a, b, _ = _so3_coeffs(theta)
    k = skew(w)
    return _eye(3, w) + a[..., None, None] * k + b[..., None, None] * (k @ k)


def so3_to_quat(r: Tensor) -> Tensor:
    """Rotation matrix ``(...,3,3)`` -> unit quaternion ``(...,4)`` ordered ``[w, x, y, z]`` with ``w >= 0``.

    Shepperd's method: the largest of the four candidate denominators is used, so the result is accurate
    for every rotation (including angles near pi)."""
    _check_last(r, (3, 3), "so3_to_quat")
    r00, r11, r22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    tr = r00 + r11 + r22
    # candidates 4*q_i^2
    cand = torch.stack([1 + tr, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], dim=-1)
    best = cand.argmax(dim=-1, keepdim=True)
    d = torch.sqrt(cand.gather(-1, best).clamp_min(1e-30)).squeeze(-1)  # = 2|q_best|
    s21, s02, s10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]
    a01, a02, a12 = r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1]
    q0 = torch.stack([d * d, s21, s02, s10], dim=-1)
    q1 = torch.stack([s21, d * d, a01, a02], dim=-1)
    q2 = torch.stack([s02, a01, d * d, a12], dim=-1)
    q3 = torch.stack([s10, a02, a12, d * d], dim=-1)
    allq = torch.stack([q0, q1, q2, q3], dim=-2)  # (...,4,4)
    q = allq.gather(-2, best[..., None].expand(*best.shape[:-1], 1, 4)).squeeze(-2) / (2 * d[..., None])
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_to_so3(q: Tensor) -> Tensor:
    """Quaternion ``(...,4)`` ordered ``[w, x, y, z]`` (normalised here) -> rotation matrix ``(...,3,3)``."""
    _check_last(q, (4,), "quat_to_so3")
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def so3_log(r: Tensor) -> Tensor:
    """Rotation matrix ``(...,3,3)`` -> rotation vector ``(...,3)`` with angle in ``[0, pi]``."""
    q = so3_to_quat(r)
    w, v = q[..., 0], q[..., 1:]
    n = torch.linalg.vector_norm(v, dim=-1)
    # angle = 2 atan2(n, w); factor = angle / n, series 2/w (1 - n^2/(3 w^2)) for small n (w ~ 1)
    small = n < 1e-4
    n_safe = torch.where(small, torch.ones_like(n), n)
    w_safe = torch.where(small, w, torch.ones_like(w))
    factor = torch.where(
        small, 2.0 / w_safe * (1 - n * n / (3 * w_safe * w_safe)), 2.0 * torch.atan2(n_safe, w) / n_safe
    )
    return factor[..., None] * v


def so3_left_jacobian(phi: Tensor) -> Tensor:
    """Left Jacobian ``J_l(phi) = I + B [phi]_x + C [phi]_x^2`` of SO(3), ``(...,3) -> (...,3,3)``."""
    _check_last(phi, (3,), "so3_left_jacobian")
    theta = torch.linalg.vector_norm(phi, dim=-1)
    _, b, c = _so3_coeffs(theta)
    k = skew(phi)
    return _eye(3, phi) + b[..., None, None] * k + c[..., None, None] * (k @ k)


def so3_right_jacobian(phi: Tensor) -> Tensor:
    """Right Jacobian ``J_r(phi) = J_l(-phi)``."""
    return so3_left_jacobian(-phi)


def _jinv_coeff(theta: Tensor) -> Tensor:
    """D = 1/t^2 - cot(t/2)/(2t), the [phi]_x^2 coefficient of the inverse Jacobians."""
    small = theta < _SMALL_ANGLE
    t = torch.where(small, torch.ones_like(theta), theta)
    t2s = theta * theta
    direct = 1 / (t * t) - torch.cos(t / 2) / (2 * t * torch.sin(t / 2))
    series = 1.0 / 12 + t2s / 720 + t2s * t2s / 30240
    return torch.where(small, series, direct)


def so3_left_jacobian_inv(phi: Tensor) -> Tensor:
    """Inverse left Jacobian ``J_l^-1(phi) = I - 1/2 [phi]_x + D [phi]_x^2`` (valid for angle < 2 pi)."""
    _check_last(phi, (3,), "so3_left_jacobian_inv")
    theta = torch.linalg.vector_norm(phi, dim=-1)
    d = _jinv_coeff(theta)
    k = skew(phi)
    return _eye(3, phi) - 0.5 * k + d[..., None, None] * (k @ k)


def so3_right_jacobian_inv(phi: Tensor) -> Tensor:
    """Inverse right Jacobian ``J_r^-1(phi) = J_l^-1(-phi)``."""
    return so3_left_jacobian_inv(-phi)


# ----------------------------------------------------------------------------------------------- SE(3)


def _broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of batch shapes. (``torch.broadcast_shapes`` imports ``torch._refs`` on its first
    call: 0.3-0.7 s in every process that runs a pose step.)"""
    n = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(-n, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i and s[i] != 1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def se3_from_rt(r: Tensor, t: Tensor) -> Tensor:
    """Assemble ``(...,4,4)`` from rotation ``(...,3,3)`` and translation ``(...,3)`` (broadcast)."""
    _check_last(r, (3, 3), "se3_from_rt")
    _check_last(t, (3,), "se3_from_rt")
    batch = _broadcast_shapes(r.shape[:-2], t.shape[:-1])
    out = torch.zeros(*batch, 4, 4, dtype=r.dtype, device=r.device)
    out[..., :3, :3] = r
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out


def se3_exp(xi: Tensor) -> Tensor:
    """Tangent ``xi = [rho, phi]`` ``(...,6)`` -> rigid transform ``(...,4,4)``: ``R = exp(phi)``,
    ``t = J_l(phi) rho``."""
    _check_last(xi, (6,), "se3_exp")
    rho, phi = xi[..., :3], xi[..., 3:]
    r = so3_exp(phi)
    t = (so3_left_jacobian(phi) @ rho[..., None])[..., 0]
    return se3_from_rt(r, t)


def se3_log(t_mat: Tensor) -> Tensor:
    """Rigid transform ``(...,4,4)`` -> tangent ``[rho, phi]`` ``(...,6)``."""
    _check_last(t_mat, (4, 4), "se3_log")
    phi = so3_log(t_mat[..., :3, :3])
    rho = (so3_left_jacobian_inv(phi) @ t_mat[..., :3, 3:4])[..., 0]
    return torch.cat([rho, phi], dim=-1)


def se3_inv(t_mat: Tensor) -> Tensor:
    """Inverse of a rigid transform ``(...,4,4)``: ``[[R^T, -R^T t], [0, 1]]``."""
    _check_last(t_mat, (4, 4), "se3_inv")
    rt = t_mat[..., :3, :3].transpose(-1, -2)
    return se3_from_rt(rt, -(rt @ t_mat[..., :3, 3:4])[..., 0])


def se3_compose(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` for ``(...,4,4)`` transforms (broadcast); applies ``b`` first."""
    _check_last(a, (4, 4), "se3_compose")
    _check_last(b, (4, 4), "se3_compose")
    return a @ b


def se3_act(t_mat: Tensor, p: Tensor) -> Tensor:
    """Apply ``(...,4,4)`` to points ``(...,3)``: ``R p + t``. The transform's batch dims broadcast against
    the points' leading dims, e.g. ``T (B,4,4)`` with ``p (B,N,3)`` -> pass ``T[:, None]``."""
    _check_last(t_mat, (4, 4), "se3_act")
    _check_last(p, (3,), "se3_act")
    return (t_mat[..., :3, :3] @ p[..., None])[..., 0] + t_mat[..., :3, 3]


def se3_adjoint(t_mat: Tensor) -> Tensor:
    """Adjoint ``(...,6,6)`` for the ``[rho, phi]`` ordering: ``[[R, [t]_x R], [0, R]]``."""
    _check_last(t_mat, (4, 4), "se3_adjoint")
    r = t_mat[..., :3, :3]
    tx = skew(t_mat[..., :3, 3])
    top = torch.cat([r, tx @ r], dim=-1)
    bot = torch.cat([torch.zeros_like(r), r], dim=-1)
    return torch.cat([top, bot], dim=-2)


def se3_interpolate(t0: Tensor, t1: Tensor, t: Tensor | float) -> Tensor:
    """Geodesic interpolation ``T0 exp(t log(T0^-1 T1))``; ``t`` is a float or a tensor broadcast against
    the batch dims (``t=0`` gives ``T0``, ``t=1`` gives ``T1``)."""
    delta = se3_log(se3_inv(t0) @ t1)
    tt = torch.as_tensor(t, dtype=delta.dtype, device=delta.device)
    return t0 @ se3_exp(tt[..., None] * delta)


# ---------------------------------------------------------------------------------------------- Sim(3)


def _sim3_v(phi: Tensor, sigma: Tensor) -> Tensor:
    """``V = int_0^1 exp(sigma u) exp(u [phi]_x) du`` as the top-right block of a 6x6 matrix exponential."""
    batch = _broadcast_shapes(phi.shape[:-1], sigma.shape)
    a = skew(phi) + sigma[..., None, None] * _eye(3, phi)
    m = torch.zeros(*batch, 6, 6, dtype=phi.dtype, device=phi.device)
    m[..., :3, :3] = a
    m[..., :3, 3:] = _eye(3, phi)
    return torch.linalg.matrix_exp(m)[..., :3, 3:]


def sim3_exp(x: Tensor) -> Tensor:
    """Tangent ``[rho, phi, sigma]`` ``(...,7)`` -> similarity ``(...,4,4)`` = ``[[e^sigma R, V rho], [0, 1]]``."""
    _check_last(x, (7,), "sim3_exp")
    rho, phi, sigma = x[..., :3], x[..., 3:6], x[..., 6]
    r = so3_exp(phi) * torch.exp(sigma)[..., None, None]
    t = (_sim3_v(phi, sigma) @ rho[..., None])[..., 0]
    return se3_from_rt(r, t)


def sim3_scale(s_mat: Tensor) -> Tensor:
    """Scale factor ``s`` ``(...)`` of a similarity ``(...,4,4)`` (cube root of the determinant)."""
    _check_last(s_mat, (4, 4), "sim3_scale")
    det = torch.linalg.det(s_mat[..., :3, :3])
    return det.sign() * det.abs().pow(1.0 / 3.0)


def sim3_log(s_mat: Tensor) -> Tensor:
    """Similarity ``(...,4,4)`` -> tangent ``[rho, phi, sigma]`` ``(...,7)``."""
    s = sim3_scale(s_mat)
    r = s_mat[..., :3, :3] / s[..., None, None]
    phi = so3_log(r)
    sigma = torch.log(s)
    v = _sim3_v(phi, sigma)
    rho = torch.linalg.solve(v, s_mat[..., :3, 3:4])[..., 0]
    return torch.cat([rho, phi, sigma[..., None]], dim=-1)


def sim3_inv(s_mat: Tensor) -> Tensor:
    """Inverse similarity: ``[[R^T / s, -R^T t / s], [0, 1]]``."""
    s = sim3_scale(s_mat)
    rt = s_mat[..., :3, :3].transpose(-1, -2) / (s * s)[..., None, None]  # = R^T / s
    return se3_from_rt(rt, -(rt @ s_mat[..., :3, 3:4])[..., 0])


def sim3_compose(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` for similarities (applies ``b`` first)."""
    _check_last(a, (4, 4), "sim3_compose")
    _check_last(b, (4, 4), "sim3_compose")
    return a @ b


def sim3_act(s_mat: Tensor, p: Tensor) -> Tensor:
    """Apply a similarity to points: ``s R p + t`` (broadcast like :func:`se3_act`)."""
    _check_last(s_mat, (4, 4), "sim3_act")
    _check_last(p, (3,), "sim3_act")
    return (s_mat[..., :3, :3] @ p[..., None])[..., 0] + s_mat[..., :3, 3]
