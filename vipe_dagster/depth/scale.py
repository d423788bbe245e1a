"""Metric scale: turn a relative-scale reconstruction (poses, sparse map, depth) into metres from one cue.

Without a metric cue the SLAM output has an arbitrary scale (median scene depth about 1) and the manifest
says ``scale: relative``. Each cue below gives one factor ``s`` (metres per pose unit) for the whole
sequence; :func:`apply_scale` multiplies the camera centres, the sparse points and (when already written)
the depth maps by it and records ``scale: metric`` with its source in the manifest.

* ``user``: a factor given by the user (``--metric_scale``).
* ``known_distance``: the distance in metres between the camera centres of two frames (``--known_distance
  I J METRES``), e.g. a measured rig baseline or a tape-measured walk.
* ``camera_height``: the height in metres of the camera above a ground plane (``--camera_height``). The
  ground is the dominant plane of the sparse map below the cameras, roughly perpendicular to the cameras'
  mean image-down axis (RANSAC, then least squares on its inliers); ``s = height / median distance of the
  camera centres to it``.
* ``metric_depth_model``: a metric monocular model (Depth-Anything-V2 layout, ``output="metric_depth"``).
  It runs on up to ``model_frames`` frames with sparse-map observations; ``s`` is the median over all those
  observations of ``model depth / SLAM depth`` (one robust scale for the whole sequence, never per frame).

Each estimator also reports a spread (robust relative scatter of the per-observation factors, or the plane
fit residual) so a bad cue is visible in the manifest; a cue that cannot be evaluated raises
:class:`MetricScaleError` naming what was missing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError
from ..io import ArtifactStore

log = logging.getLogger(__name__)


class MetricScaleError(InputError):
    """A metric cue was given but cannot be evaluated on this sequence."""


@dataclass
class MetricScale:
    """One metric factor for a sequence: ``metres = factor * pose units``."""

    factor: float
    source: str  # "user" | "known_distance" | "camera_height" | "metric_depth_model"
    spread: float = float("nan")  # robust relative scatter of the evidence (nan: exact by definition)
    support: int = 0  # observations / inliers behind the estimate
    detail: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


# ------------------------------------------------------------------------------------------ estimators
def scale_from_known_distance(c2w: np.ndarray, i: int, j: int, metres: float) -> MetricScale:
    """Factor that puts the camera centres of frames ``i`` and ``j`` ``metres`` apart."""
    n = len(c2w)
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise MetricScaleError(f"known distance: frames {i} and {j} must be two different frames in [0, {n - 1}]")
    if not metres > 0:
        raise MetricScaleError(f"known distance: expected a positive distance in metres, got {metres}")
    d = float(np.linalg.norm(c2w[i, :3, 3] - c2w[j, :3, 3]))
    if not d > 1e-9:
        raise MetricScaleError(f"known distance: the camera centres of frames {i} and {j} coincide in the "
                               f"reconstruction ({d:.3g} pose units), so they cannot fix the scale")
    return MetricScale(metres / d, "known_distance", support=2,
                       detail={"frames": [int(i), int(j)], "metres": float(metres), "pose_units": d})


def fit_ground_plane(points: np.ndarray, c2w: np.ndarray, max_tilt_deg: float = 30.0, inlier_rel: float = 0.01,
                     iterations: int = 500, seed: int = 0) -> tuple[np.ndarray, float, int, float]:
    """Ground plane ``n . x = d`` (unit ``n`` pointing from the plane towards the cameras) of a sparse map.

    Candidate planes (RANSAC on 3 points) must be within ``max_tilt_deg`` of perpendicular to the cameras'
    mean image-down axis (OpenCV +y) and have the camera centres above them (on the side opposite to
    "down"). Inliers lie within ``inlier_rel`` times the median camera-to-point distance. The plane with the
    most inliers is refined by least squares (SVD) on them. Returns ``(n, d, inliers, rms residual)``.
    """
    pts = np.asarray(points, np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) < 30:
        raise MetricScaleError(f"camera height: the sparse map has {len(pts)} points; a ground plane needs at "
                               f"least 30")
    centres = c2w[:, :3, 3].astype(np.float64)
    down = c2w[:, :3, 1].astype(np.float64).mean(0)
    down /= max(np.linalg.norm(down), 1e-12)
    scale = float(np.median(np.linalg.norm(pts - centres.mean(0), axis=1)))
    tol = inlier_rel * scale
    cos_tilt = np.cos(np.radians(max_tilt_deg))
    rng = np.random.default_rng(seed)
    best = (-1, None, 0.0)
    for _ in range(iterations):
        a, b, c = pts[rng.choice(len(pts), 3, replace=False)]
        nrm = np.cross(b - a, c - a)
        ln = np.linalg.norm(nrm)
        if ln < 1e-12:
            continue
        nrm /= ln
        if nrm @ down > 0:
            nrm = -nrm  # point "up", away from the image-down direction
        if -(nrm @ down) < cos_tilt:
            continue
        d = float(nrm @ a)
        if np.median(centres @ nrm - d) <= tol:  # cameras must be above the plane
            continue
        cnt = int((np.abs(pts @ nrm - d) < tol).sum())
        if cnt > best[0]:
            best = (cnt, nrm, d)
    if best[1] is None or best[0] < 20:
        raise MetricScaleError("camera height: no ground plane found in the sparse map (a plane below the "
                               "cameras, roughly perpendicular to their image-down axis, with >= 20 points)")
    nrm, d = best[1], best[2]
    for _ in range(2):  # least-squares refinement on the inliers
        inl = pts[np.abs(pts @ nrm - d) < tol]
        mu = inl.mean(0)
        _, _, vt = np.linalg.svd(inl - mu, full_matrices=False)
        n2 = vt[2] if vt[2] @ nrm > 0 else -vt[2]
        nrm, d = n2, float(n2 @ mu)
    inl = pts[np.abs(pts @ nrm - d) < tol]
    rms = float(np.sqrt(np.mean((inl @ nrm - d) ** 2)))
    return nrm, d, len(inl), rms


def scale_from_camera_height(c2w: np.ndarray, points: np.ndarray, height_m: float,
                             valid: np.ndarray | None = None) -> MetricScale:
    """Factor that puts the (median) camera centre ``height_m`` metres above the sparse map's ground plane."""
    if not height_m > 0:
        raise MetricScaleError(f"camera height: expected a positive height in metres, got {height_m}")
    use = c2w if valid is None else c2w[np.asarray(valid, bool)]
    nrm, d, inliers, rms = fit_ground_plane(points, use)
    heights = use[:, :3, 3] @ nrm - d
    h = float(np.median(heights))
    if not h > 0:
        raise MetricScaleError("camera height: the cameras are not above the fitted ground plane")
    spread = float(np.median(np.abs(heights - h)) * 1.4826 / h)
    return MetricScale(height_m / h, "camera_height", spread=spread, support=inliers,
                       detail={"height_m": float(height_m), "height_pose_units": h, "plane_normal": nrm.tolist(),
                               "plane_rms_pose_units": rms, "height_spread_rel": spread})


def scale_from_depth_ratios(ratios: np.ndarray, source: str, detail: dict | None = None,
                            min_support: int = 50) -> MetricScale:
    """One robust factor from per-observation ratios ``metric depth / pose-unit depth`` (median of logs)."""
    r = np.asarray(ratios, np.float64)
    r = r[np.isfinite(r) & (r > 0)]
    if r.size < min_support:
        raise MetricScaleError(f"{source}: only {r.size} usable depth comparisons (need {min_support})")
    lr = np.log(r)
    med = float(np.median(lr))
    spread = float(1.4826 * np.median(np.abs(lr - med)))
    return MetricScale(float(np.exp(med)), source, spread=spread, support=int(r.size), detail=detail or {})


def scale_from_metric_model(store: ArtifactStore, name: str, model, model_frames: int = 12) -> MetricScale:
    """Compare a metric depth model with the SLAM sparse map on up to ``model_frames`` frames (evenly spaced
    among those with the most observations); see the module docstring."""
    if getattr(model, "output", None) != "metric_depth":
        raise MetricScaleError("metric depth model: the configured model predicts relative depth "
                               "(LearnedDepthConfig.output must be 'metric_depth')")
    if not store.exists("sparse", name):
        raise MetricScaleError(f"metric depth model: {store.path('sparse', name)} is missing (run poses first)")
    sm = store.read_sparse_map(name)
    c2w, _ = store.read_pose(name)
    c2w = c2w.astype(np.float64)
    frames, counts = np.unique(sm.obs_frame, return_counts=True)
    frames = frames[counts >= 20]
    if frames.size == 0:
        raise MetricScaleError(f"metric depth model: no frame of {name} has 20 sparse-map observations")
    pick = set(frames[np.unique(np.linspace(0, frames.size - 1, min(model_frames, frames.size)).round()
                                .astype(int))].tolist())
    ratios = []
    for i, frame in store.open_rgb(name):
        if i not in pick:
            continue
        pred = np.asarray(model.predict(frame), np.float32)
        sel = sm.obs_frame == i
        pts = sm.points[sm.obs_point[sel]].astype(np.float64)
        uv = sm.obs_uv[sel].astype(np.float64)
        w2c = np.linalg.inv(c2w[i])
        z = pts @ w2c[2, :3] + w2c[2, 3]
        h, w = pred.shape
        u = np.clip(np.rint(uv[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.rint(uv[:, 1]).astype(int), 0, h - 1)
        ok = z > 0
        ratios.append(pred[v[ok], u[ok]] / z[ok])
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    return scale_from_depth_ratios(r, "metric_depth_model", {"frames": sorted(pick), "model_frames": len(pick)})


# ------------------------------------------------------------------------------------------ applying
def apply_scale(store: ArtifactStore, name: str, ms: MetricScale) -> MetricScale:
    """Multiply poses (camera centres), sparse points and existing depth maps by ``ms.factor``; record it.

    The manifest gets ``scale: "metric"``, ``scale_source`` (:meth:`MetricScale.manifest`) and
    ``pose.scale: "metric"``. Each artifact is rewritten atomically.
    """
    s = float(ms.factor)
    if not (np.isfinite(s) and s > 0):
        raise MetricScaleError(f"{ms.source}: metric factor {s} is not a positive number")
    uri = store.path("pose", name)
    arrays = store._read_npz(uri)
    if "data" not in arrays or "inds" not in arrays:
        raise ArtifactError(f"{uri}: expected arrays 'data' and 'inds'")
    data = arrays["data"].astype(np.float64)
    data[:, :3, 3] *= s
    store.write_pose(name, data.astype(np.float32), inds=arrays["inds"], keyframe_ids=arrays.get("keyframe_ids"),
                     valid=arrays.get("valid"))
    if store.exists("sparse", name):
        from ..io import SparseMap

        sm = store.read_sparse_map(name)
        store.write_sparse_map(name, SparseMap(points=(sm.points.astype(np.float64) * s).astype(sm.points.dtype),
                                               colors=sm.colors, obs_frame=sm.obs_frame, obs_point=sm.obs_point,
                                               obs_uv=sm.obs_uv, keyframes=sm.keyframes))
    if store.exists("depth", name):
        frames = [d * np.float32(s) for _, d in store.iter_depth(name)]
        store.write_depth(name, frames)
    store.update_manifest(name, "metric_scale", {"scale_source": {
        **ms.manifest(), "scale": "metric",
        "note": f"metric from {ms.source} (factor {s:.6g} applied to the pose stage's relative solution)"}})
    log.info("metric scale %s: factor %.6g from %s (spread %.3g, support %d)", name, s, ms.source, ms.spread,
             ms.support)
    return ms


def resolve_metric_scale(store: ArtifactStore, name: str, config, learned=None) -> MetricScale | None:
    """The metric factor from the cue in ``config`` (a :class:`~vipe_dagster.depth.config.MetricScaleConfig`),
    else from a metric depth model in ``learned`` (a LearnedDepthConfig), else None (no cue)."""
    c2w, _ = store.read_pose(name)
    c2w = c2w.astype(np.float64)
    if config is not None and config.scale is not None:
        return MetricScale(float(config.scale), "user", support=1, detail={"factor": float(config.scale)})
    if config is not None and config.known_distance is not None:
        i, j, m = config.known_distance
        return scale_from_known_distance(c2w, int(i), int(j), float(m))
    if config is not None and config.camera_height is not None:
        if not store.exists("sparse", name):
            raise MetricScaleError(f"camera height: {store.path('sparse', name)} is missing (run poses first)")
        sm = store.read_sparse_map(name)
        return scale_from_camera_height(c2w, sm.points, float(config.camera_height), store.read_pose_valid(name))
    if learned is not None and learned.output == "metric_depth" and (config is None or config.use_depth_model):
        from .learned import load_depth_model

        centres = c2w[:, :3, 3]
        if len(c2w) and float(np.abs(centres - centres[0]).max()) <= 1e-9:
            # a fixed camera: no translation to scale and no sparse map to compare with; its depth comes from
            # the metric model alone (depth/learned.py), so it is metric as written
            return MetricScale(1.0, "metric_depth_model", support=len(c2w),
                               detail={"fixed_camera": True, "note": "depth is the metric model's output; the "
                                                                      "poses have no translation to scale"})

        return scale_from_metric_model(store, name, load_depth_model(learned),
                                       config.model_frames if config is not None else 12)
    return None


def make_metric(store: ArtifactStore, name: str, config, learned=None) -> MetricScale | None:
    """:func:`resolve_metric_scale` then :func:`apply_scale`; None (and nothing changed) without a cue."""
    ms = resolve_metric_scale(store, name, config, learned)
    return apply_scale(store, name, ms) if ms is not None else None
