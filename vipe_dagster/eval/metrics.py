"""Accuracy metrics against ground truth.

- :func:`umeyama`: least-squares similarity (or rigid) transform between point sets (Umeyama 1991).
- :func:`ate`: absolute trajectory error of camera centres after Sim3 / SE3 / no alignment.
- :func:`rpe`: relative pose error over a frame offset (translation and rotation, per frame and per metre).
- :func:`depth_metrics`: AbsRel, delta < 1.25, RMSE after median / least-squares / no scale alignment.
- :func:`focal_error`: focal length error in percent and as a field-of-view difference.
- :func:`mask_metrics`: dynamic-vs-static agreement of instance masks (IoU, precision, recall).
- :func:`depth_pair_consistency`: temporal consistency of two depth maps under their poses (no ground truth).

Poses are (N,4,4) camera-to-world matrices; metrics are computed in float64.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

ALIGN_MODES = ("sim3", "se3", "none")
DEPTH_ALIGN_MODES = ("median", "lstsq", None)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` minimising ``sum ||dst_i - (s R src_i + t)||^2`` over rotations R (det +1).

    ``src`` and ``dst`` are (N,3) corresponding points; ``s`` is 1 when ``with_scale`` is False.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise InputError(f"umeyama: expected two (N,3) arrays of equal shape, got {src.shape} and {dst.shape}")
    n = len(src)
    if n < 3:
        raise InputError(f"umeyama: need at least 3 corresponding points, got {n}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / n
    cov = xd.T @ xs / n
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    if with_scale:
        if var_s <= 0:
            raise InputError("umeyama: source points are all identical; scale is undefined")
        s = float(np.trace(np.diag(D) @ S) / var_s)
    else:
        s = 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def _check_poses(pred: np.ndarray, gt: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.ndim != 3 or pred.shape[1:] != (4, 4) or gt.ndim != 3 or gt.shape[1:] != (4, 4):
        raise InputError(f"{what}: expected (N,4,4) camera-to-world poses, got {pred.shape} and {gt.shape}")
    if len(pred) != len(gt):
        raise InputError(f"{what}: predicted trajectory has {len(pred)} poses, ground truth has {len(gt)}")
    for name, arr in (("predicted", pred), ("ground-truth", gt)):
        bad = ~np.isfinite(arr).all(axis=(1, 2))
        if bad.any():
            raise InputError(f"{what}: {name} pose of frame {int(np.argmax(bad))} is not finite")
    return pred, gt


def _stats(err: np.ndarray) -> dict[str, float]:
    err = np.asarray(err, np.float64)
    return {"rmse": float(np.sqrt((err ** 2).mean())), "mean": float(err.mean()), "median": float(np.median(err)),
            "std": float(err.std()), "min": float(err.min()), "max": float(err.max())}


def path_length(c2w: np.ndarray) -> float:
    p = np.asarray(c2w, np.float64)[:, :3, 3]
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0


def align_trajectory(pred: np.ndarray, gt: np.ndarray, align: str = "sim3") -> tuple[np.ndarray, float, np.ndarray,
                                                                                        np.ndarray]:
    """Apply the ``align`` transform fitted on camera centres to ``pred``: returns (aligned, s, R, t).

    The aligned poses have rotation ``R @ R_pred`` and centre ``s R c_pred + t`` (the similarity acts on
    the world frame, so camera orientations stay orthonormal). When either trajectory's centres all
    coincide (fixed camera, pure rotation), R aligns the orientations, s = 1 and t the centroids.
    """
    if align not in ALIGN_MODES:
        raise InputError(f"alignment {align!r} is not one of {', '.join(ALIGN_MODES)}")
    pred, gt = _check_poses(pred, gt, "alignment")
    if align == "none":
        return pred.copy(), 1.0, np.eye(3), np.zeros(3)
    if _degenerate(pred[:, :3, 3]) or _degenerate(gt[:, :3, 3]):
        # fixed camera or pure rotation: the centres cannot fix a rotation or scale, so align the
        # orientations (chordal mean of R_gt R_pred^T) and the centroids, with unit scale
        M = np.einsum("nij,nkj->ik", gt[:, :3, :3], pred[:, :3, :3])
        U, _, Vt = np.linalg.svd(M)
        D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
        R = U @ D @ Vt
        s = 1.0
        t = gt[:, :3, 3].mean(axis=0) - R @ pred[:, :3, 3].mean(axis=0)
    else:
        s, R, t = umeyama(pred[:, :3, 3], gt[:, :3, 3], with_scale=(align == "sim3"))
    out = pred.copy()
    out[:, :3, :3] = R @ pred[:, :3, :3]
    out[:, :3, 3] = s * pred[:, :3, 3] @ R.T + t
    return out, s, R, t


def _degenerate(points: np.ndarray) -> bool:
    """True if the points do not span at least a line (all centres coincide up to 1e-9 of their scale)."""
    spread = np.linalg.norm(points - points.mean(axis=0), axis=1).max()
    return bool(spread <= 1e-9 * max(1.0, float(np.abs(points).max())))


def ate(pred_c2w: np.ndarray, gt_c2w: np.ndarray, align: str = "sim3") -> dict[str, float]:
    """Absolute trajectory error of camera centres (metres of the ground truth).

    Returns rmse, mean, median, std, min, max, the alignment ``scale``, the ground-truth
    ``path_length`` and ``rmse_pct_of_path`` (100 * rmse / path length), plus ``rot_rmse_deg`` of the
    aligned orientations and ``num_poses``.
    """
    aligned, s, _, _ = align_trajectory(pred_c2w, gt_c2w, align)
    gt = np.asarray(gt_c2w, np.float64)
    err = np.linalg.norm(aligned[:, :3, 3] - gt[:, :3, 3], axis=1)
    out = _stats(err)
    rel = np.einsum("nji,njk->nik", gt[:, :3, :3], aligned[:, :3, :3])
    rot = np.degrees(_rotation_angle(rel))
    plen = path_length(gt)
    out.update({
        "scale": float(s),
        "path_length": plen,
        "rmse_pct_of_path": float(100.0 * out["rmse"] / plen) if plen > 0 else float("nan"),
        "rot_rmse_deg": float(np.sqrt((rot ** 2).mean())),
        "num_poses": len(gt),
        "align": align,
    })
    return out


def _rotation_angle(R: np.ndarray) -> np.ndarray:
    """Rotation angle (radians) of (N,3,3) rotation matrices, accurate near 0 and pi."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, np.float64)
    # project onto SO(3) first so that float32 inputs do not produce spurious angles
    U, _, Vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(U @ Vt))
    U[:, :, 2] *= d[:, None]
    return Rotation.from_matrix(U @ Vt).magnitude()


def _inv_se3(T: np.ndarray) -> np.ndarray:
    out = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def rpe(pred: np.ndarray, gt: np.ndarray, delta: int = 1, align: str = "sim3",
        all_pairs: bool = True) -> dict[str, float]:
    """Relative pose error between frames ``i`` and ``i + delta``.

    ``all_pairs=True`` uses every pair ``(i, i + delta)`` (TUM convention, evo's ``all_pairs=True``);
    ``False`` uses the consecutive non-overlapping pairs ``(0, delta), (delta, 2 delta), ...`` (evo's default).

    For each pair the error is ``E = (G_i^-1 G_j)^-1 (P_i^-1 P_j)``; its translation norm (metres) and
    rotation angle (degrees) are summarised (``trans_*``, ``rot_*``). ``align="sim3"`` first scales the
    prediction with the Sim3 fit of :func:`ate` (relative errors are invariant to the rigid part), so a
    relative-scale trajectory is comparable. Also reported: ``trans_m_per_frame`` and
    ``rot_deg_per_frame`` (mean error / delta), ``trans_pct_per_m`` (100 * sum of translation errors /
    ground-truth distance travelled over the pairs) and ``rot_deg_per_m``.
    """
    if int(delta) < 1:
        raise InputError(f"rpe: delta must be >= 1 frame, got {delta}")
    delta = int(delta)
    pred_a, s, _, _ = align_trajectory(pred, gt, align)
    gt = np.asarray(gt, np.float64)
    if len(gt) <= delta:
        raise InputError(f"rpe: trajectory has {len(gt)} poses, need more than delta={delta}")
    if all_pairs:
        i = np.arange(len(gt) - delta)
    else:
        i = np.arange(0, len(gt), delta)[:-1] if len(gt) > delta else np.zeros(0, int)
        i = i[i + delta < len(gt)]
    j = i + delta
    rel_gt = _inv_se3(gt[i]) @ gt[j]
    rel_pr = _inv_se3(pred_a[i]) @ pred_a[j]
    E = _inv_se3(rel_gt) @ rel_pr
    terr = np.linalg.norm(E[:, :3, 3], axis=1)
    rerr = np.degrees(_rotation_angle(E[:, :3, :3]))
    seg = np.linalg.norm(rel_gt[:, :3, 3], axis=1)
    dist = float(seg.sum())
    out = {f"trans_{k}": v for k, v in _stats(terr).items()}
    out.update({f"rot_{k}_deg": v for k, v in _stats(rerr).items()})
    out.update({
        "delta": delta,
        "pairs": len(terr),
        "scale": float(s),
        "trans_m_per_frame": float(terr.mean() / delta),
        "rot_deg_per_frame": float(rerr.mean() / delta),
        "trans_pct_per_m": float(100.0 * terr.sum() / dist) if dist > 1e-9 else float("nan"),
        "rot_deg_per_m": float(rerr.sum() / dist) if dist > 1e-9 else float("nan"),
    })
    return out


def depth_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
                  align: str | None = "median") -> dict[str, float]:
    """Depth accuracy on pixels with valid (finite, > 0) ground truth inside ``valid``.

    ``align``: ``"median"`` scales the prediction by median(gt)/median(pred), ``"lstsq"`` by the least
    squares factor sum(p g)/sum(p^2), ``None`` keeps it. Pixels where the prediction is missing
    (non-finite or <= 0) do not enter the errors; ``valid_fraction`` is the share of evaluable pixels
    where the prediction exists. Returns abs_rel, sq_rel, rmse, delta1 (max(p/g, g/p) < 1.25), delta2,
    delta3, valid_fraction, scale and ``num_pixels``.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise InputError(f"depth_metrics: prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    if align not in DEPTH_ALIGN_MODES:
        raise InputError(f"depth alignment {align!r} is not one of median, lstsq, None")
    base = np.isfinite(gt) & (gt > 0)
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != gt.shape:
            raise InputError(f"depth_metrics: valid mask {valid.shape} does not match depth {gt.shape}")
        base &= valid
    n_base = int(base.sum())
    if n_base == 0:
        raise InputError("depth_metrics: no pixel has valid ground-truth depth")
    use = base & np.isfinite(pred) & (pred > 0)
    n = int(use.sum())
    nan = float("nan")
    if n == 0:
        return {"abs_rel": nan, "sq_rel": nan, "rmse": nan, "delta1": nan, "delta2": nan, "delta3": nan,
                "valid_fraction": 0.0, "scale": nan, "num_pixels": 0}
    p, g = pred[use], gt[use]
    if align == "median":
        s = float(np.median(g) / np.median(p))
    elif align == "lstsq":
        s = float((p * g).sum() / (p * p).sum())
    else:
        s = 1.0
    p = p * s
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25 ** 2)),
        "delta3": float(np.mean(ratio < 1.25 ** 3)),
        "valid_fraction": n / n_base,
        "scale": s,
        "num_pixels": n,
    }


def focal_error(pred_f: float, gt_f: float, size_px: float) -> dict[str, float]:
    """Focal length error: ``percent`` = 100 |f_pred - f_gt| / f_gt, and ``fov_deg_error`` = |FOV_pred - FOV_gt|
    for an image side of ``size_px`` pixels (``fov = 2 atan(size / 2f)``)."""
    pred_f, gt_f, size_px = float(pred_f), float(gt_f), float(size_px)
    if not (gt_f > 0 and pred_f > 0 and size_px > 0) or not all(map(math.isfinite, (pred_f, gt_f, size_px))):
        raise InputError(f"focal_error: focal lengths and size must be positive and finite, got "
                         f"pred={pred_f}, gt={gt_f}, size={size_px}")
    from ..camera import fov_from_focal  # the camera module imports torch: only when a focal is compared

    fov_p = float(fov_from_focal(size_px, pred_f))
    fov_g = float(fov_from_focal(size_px, gt_f))
    return {"percent": 100.0 * abs(pred_f - gt_f) / gt_f, "signed_percent": 100.0 * (pred_f - gt_f) / gt_f,
            "fov_deg_error": abs(fov_p - fov_g), "fov_pred_deg": fov_p, "fov_gt_deg": fov_g}


def mask_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Binary dynamic-object agreement: a pixel is dynamic where its instance id is > 0.

    Returns iou, precision, recall, f1 (1.0 where both masks are empty, since they agree), the counts
    ``tp``, ``fp``, ``fn`` (for pooling over frames) and the dynamic fractions of both masks.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"mask_metrics: prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    p, g = pred > 0, gt > 0
    if valid is not None:
        valid = np.asarray(valid, bool)
        p, g = p & valid, g & valid
        n = int(valid.sum())
    else:
        n = p.size
    tp, fp, fn = int((p & g).sum()), int((p & ~g).sum()), int((~p & g).sum())
    return {**mask_scores(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn,
            "pred_fraction": float(p.sum() / max(n, 1)), "gt_fraction": float(g.sum() / max(n, 1))}


def mask_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    union = tp + fp + fn
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"iou": tp / union if union else 1.0, "precision": precision, "recall": recall, "f1": f1}


def depth_pair_consistency(depth_a: np.ndarray, depth_b: np.ndarray, k_a: np.ndarray, k_b: np.ndarray,
                           c2w_a: np.ndarray, c2w_b: np.ndarray, static_a: np.ndarray | None = None,
                           static_b: np.ndarray | None = None, stride: int = 2,
                           camera_type: str = "PINHOLE") -> tuple[float, int]:
    """Median relative difference ``|z_ab - d_b| / d_b`` of frame a's depth warped into frame b.

    Pixels of a (on a ``stride`` grid, static where ``static_a`` is True) are back-projected with their
    depth, moved by the poses into b and compared with b's depth at the nearest pixel (static there too);
    points outside b do not count. Points occluded in b (behind b's surface) are not singled out: they are a
    minority near depth edges and the median ignores them, whereas excluding "points behind" would also hide
    a whole frame whose scale jumped. Returns ``(median, pixels compared)``; ``(nan, 0)`` when nothing
    overlaps. ``k`` are ``fx fy cx cy`` in pixels of the depth maps, poses camera-to-world; other ViPE cameras:
    ``camera_type`` MEI (``k`` with xi, z-depth) or PANORAMA (ray distance, ``k`` unused), through
    :func:`vipe_dagster.camera.pixel_rays` / :func:`~vipe_dagster.camera.project_depth`.
    """
    from ..camera import normalize_type, pixel_rays, project_depth

    h, w = depth_a.shape
    vv, uu = np.mgrid[0:h:stride, 0:w:stride]
    d = depth_a[vv, uu].astype(np.float64)
    ok = np.isfinite(d) & (d > 0)
    if static_a is not None:
        ok &= static_a[vv, uu]
    uu, vv, d = uu[ok].astype(np.float64), vv[ok].astype(np.float64), d[ok]
    if d.size == 0:
        return float("nan"), 0
    hb, wb = depth_b.shape
    t = np.linalg.inv(np.asarray(c2w_b, np.float64)) @ np.asarray(c2w_a, np.float64)
    p = pixel_rays(camera_type, k_a, uu, vv, w, h) * d[:, None]
    p = p[np.isfinite(p).all(1)]
    uv, z, front = project_depth(camera_type, k_b, p @ t[:3, :3].T + t[:3, 3], wb, hb)
    uv, z = uv[front], z[front]
    ub, vb = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    if normalize_type(camera_type) == "PANORAMA":
        ub = np.mod(ub, wb)
    inside = (ub >= 0) & (ub < wb) & (vb >= 0) & (vb < hb)
    ub, vb, z = ub[inside], vb[inside], z[inside]
    db = depth_b[vb, ub].astype(np.float64)
    good = np.isfinite(db) & (db > 0)
    if static_b is not None:
        good &= static_b[vb, ub]
    rel = np.abs(z[good] - db[good]) / db[good]
    if rel.size == 0:
        return float("nan"), 0
    return float(np.median(rel)), int(rel.size)
