"""A check of a pose artifact against the video itself: relative rotations against independent two-view
estimates.

Pose validity (finite, orthonormal, no jumps) cannot see a reconstruction that is smooth but wrong, such as a
flat lawn reconstructed upside down (the two-fold ambiguity of a plane): every frame moves a little, every
check on the numbers passes. This check looks at the pixels instead. For frame pairs sampled over the video it
detects SIFT keypoints (scale-space extrema: not the engine's KLT corners, which it tracks), matches them, and
estimates the relative rotation from the essential matrix (5-point RANSAC) and from the homography
decompositions (a planar scene has two valid motions, so both are candidates). Two criteria:

- the artifact's relative rotation of the pair must be close to one of the candidates (a trajectory that bends
  away from what the images show is not close to any);
- the artifact's relative pose must explain the matches about as well as the independent essential matrix
  does (median Sampson distance of the inlier matches, ours over theirs): when the two-view rotation is ill
  conditioned (small baseline, small images) both explain the pixels equally, when the trajectory is wrong
  ours does not.

Pure numpy/OpenCV (no dagster): ``vipe-dagster validate`` and the Dagster check ``pose_geometry`` call
:func:`rotation_agreement`.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from .quality import Verdict

log = logging.getLogger(__name__)


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def _candidate_rotations(p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> list[np.ndarray]:
    """Relative rotations R_{1<-0} that explain the matches: the essential matrix's and the homography's
    decompositions that keep the points in front of both cameras."""
    cands = []
    try:
        E, inl = cv2.findEssentialMat(p0, p1, K, cv2.RANSAC, 0.999, 1.0)
    except cv2.error:  # degenerate matches (a static camera: every point where it was)
        E, inl = None, None
    if E is not None and E.shape == (3, 3) and inl is not None and inl.sum() >= 15:
        m = inl.ravel() > 0
        _, R, _, _ = cv2.recoverPose(E, p0[m], p1[m], K)
        cands.append(R)
    H, hin = cv2.findHomography(p0, p1, cv2.RANSAC, 2.0)
    if H is not None and hin is not None and hin.sum() >= 15:
        m = hin.ravel() > 0
        Ki = np.linalg.inv(K)
        r0 = np.c_[p0[m], np.ones(m.sum())] @ Ki.T
        r1 = np.c_[p1[m], np.ones(m.sum())] @ Ki.T
        _, Rs, _, ns = cv2.decomposeHomographyMat(H, K)
        for R, n in zip(Rs, ns, strict=True):
            n = n.ravel()
            if np.mean(r0 @ n > 0) > 0.9 and np.mean(r1 @ (R @ n) > 0) > 0.9:
                cands.append(R)
    return cands


def _sampson_px(p0: np.ndarray, p1: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Sampson distance (px) of matches to the epipolar geometry of the relative pose (R, t)."""
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    Ki = np.linalg.inv(K)
    F = Ki.T @ tx @ R @ Ki
    x0 = np.c_[p0, np.ones(len(p0))]
    x1 = np.c_[p1, np.ones(len(p1))]
    fx0, ftx1 = x0 @ F.T, x1 @ F
    num = np.sum(x1 * fx0, axis=1) ** 2
    den = fx0[:, 0] ** 2 + fx0[:, 1] ** 2 + ftx1[:, 0] ** 2 + ftx1[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-18))


def rotation_agreement(frames: dict[int, np.ndarray], c2w: np.ndarray, intr: np.ndarray,
                       valid: np.ndarray | None = None, gaps: tuple[int, ...] = (4, 8), max_pairs: int = 24,
                       median_max_deg: float = 1.0, p90_max_deg: float = 3.0,
                       sampson_ratio_max: float = 1.5) -> Verdict:
    """Compare the relative rotations of ``c2w`` with two-view estimates from the images.

    ``frames`` maps frame index -> RGB image (only the sampled frames are needed: see :func:`sample_pairs`);
    ``intr`` is fx fy cx cy of those images. Passes when the median angle between the artifact's relative
    rotation and the nearest image-based candidate is at most ``median_max_deg``, its 90th percentile at
    most ``p90_max_deg``, and the median Sampson ratio (ours / independent) at most ``sampson_ratio_max``
    (pairs without enough matches are skipped; fewer than 3 usable pairs pass with a note, since nothing can
    be said)."""
    K = np.array([[intr[0], 0, intr[2]], [0, intr[1], intr[3]], [0, 0, 1.0]], np.float64)
    sift = cv2.SIFT_create(2000)
    feats: dict[int, tuple] = {}

    def features(i: int):
        if i not in feats:
            g = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
            feats[i] = sift.detectAndCompute(g, None)
        return feats[i]

    matcher = cv2.BFMatcher(cv2.NORM_L2)
    errs: list[float] = []
    ratios: list[float] = []
    worst: list[tuple[float, int, int]] = []
    pairs = sample_pairs(len(c2w), gaps, max_pairs, valid)
    for a, b in pairs:
        if a not in frames or b not in frames:
            continue
        (k0, d0), (k1, d1) = features(a), features(b)
        if d0 is None or d1 is None or len(k0) < 30 or len(k1) < 30:
            continue
        good = [m for m, n in (x for x in matcher.knnMatch(d0, d1, k=2) if len(x) == 2)
                if m.distance < 0.8 * n.distance]
        if len(good) < 30:
            continue
        p0 = np.float64([k0[m.queryIdx].pt for m in good])
        p1 = np.float64([k1[m.trainIdx].pt for m in good])
        cands = _candidate_rotations(p0, p1, K)
        if not cands:
            continue
        T_art = np.linalg.inv(c2w[b]) @ c2w[a]  # a -> b of the artifact
        R_art, t_art = T_art[:3, :3], T_art[:3, 3]
        e = min(_angle_deg(R @ R_art.T) for R in cands)
        errs.append(e)
        worst.append((e, a, b))
        ratio = _sampson_ratio(p0, p1, K, R_art, t_art)
        if ratio is not None:
            ratios.append(ratio)
    meta: dict[str, Any] = {"pairs_used": len(errs), "pairs_sampled": len(pairs), "gaps": list(gaps)}
    if len(errs) < 3:
        return Verdict(True, f"only {len(errs)} frame pairs had enough matches for a two-view estimate: "
                       "nothing to compare (not a failure)", meta)
    med, p90 = float(np.median(errs)), float(np.percentile(errs, 90))
    sratio = float(np.median(ratios)) if len(ratios) >= 3 else float("nan")
    worst.sort(reverse=True)
    meta.update(median_deg=round(med, 3), p90_deg=round(p90, 3), max_deg=round(worst[0][0], 3),
                sampson_ratio=round(sratio, 3), worst_pairs=[f"{a}-{b}: {e:.2f} deg" for e, a, b in worst[:3]])
    passed = med <= median_max_deg and p90 <= p90_max_deg and not sratio > sampson_ratio_max
    desc = (f"relative rotations vs independent two-view estimates (SIFT, 5-point / homography) over {len(errs)} "
            f"frame pairs: median {med:.2f} deg (limit {median_max_deg}), 90th percentile {p90:.2f} deg "
            f"(limit {p90_max_deg}); epipolar error of the matches under our poses / under theirs, median "
            f"{sratio:.2f} (limit {sampson_ratio_max})")
    if not passed:
        desc += f"; worst pairs {', '.join(meta['worst_pairs'])}: the trajectory does not match the images"
    return Verdict(passed, desc, meta)


def _sampson_ratio(p0: np.ndarray, p1: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> float | None:
    """Median Sampson distance of the RANSAC-inlier matches under the artifact's pose over that under the
    independent essential matrix; None when the artifact's pair has no translation (rotation only)."""
    n = float(np.linalg.norm(t))
    if n < 1e-9:
        return None
    try:
        E, inl = cv2.findEssentialMat(p0, p1, K, cv2.RANSAC, 0.999, 1.0)
    except cv2.error:
        return None
    if E is None or E.shape != (3, 3) or inl is None or inl.sum() < 15:
        return None
    m = inl.ravel() > 0
    _, Re, te, _ = cv2.recoverPose(E, p0[m], p1[m], K)
    theirs = float(np.median(_sampson_px(p0[m], p1[m], K, Re, te.ravel())))
    ours = float(np.median(_sampson_px(p0[m], p1[m], K, R, t / n)))
    return ours / max(theirs, 1e-6)


def sample_pairs(n: int, gaps: tuple[int, ...] = (4, 8), max_pairs: int = 24,
                 valid: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Frame pairs ``(a, a + gap)`` spread evenly over ``n`` frames, both frames valid."""
    out = []
    per_gap = max(1, max_pairs // max(len(gaps), 1))
    for g in gaps:
        if g >= n:
            continue
        starts = np.unique(np.linspace(0, n - 1 - g, per_gap).round().astype(int))
        out += [(int(a), int(a) + g) for a in starts
                if valid is None or (valid[a] and valid[a + g])]
    return sorted(set(out))


def check_sequence(store, name: str, **kwargs) -> Verdict:
    """:func:`rotation_agreement` on the artifacts of ``name`` in an :class:`~vipe_dagster.io.ArtifactStore`
    (decodes only the sampled frames). An MEI or PANORAMA sequence is judged in the pinhole view its poses were
    tracked in (:func:`vipe_dagster.camera_stages.tracked_view`): its frames resampled there, its poses turned
    with the view."""
    from .camera_stages import resample_to_view, sequence_camera, tracked_view

    c2w, _ = store.read_pose(name)
    c2w = c2w.astype(np.float64)
    valid = store.read_pose_valid(name)
    intr, _, _ = store.read_intrinsics(name)
    k = intr[0, :4].astype(np.float64)
    pairs = sample_pairs(len(c2w), kwargs.get("gaps", (4, 8)), kwargs.get("max_pairs", 24), valid)
    need = {i for p in pairs for i in p}
    stream = store.open_rgb(name)
    frames = {i: f for i, f in stream if i in need}
    if sequence_camera(store, name) != "PINHOLE":
        view = tracked_view(store, name, stream.width, stream.height)
        frames = {i: resample_to_view(f, view) for i, f in frames.items()}
        T = np.eye(4)
        T[:3, :3] = view["R"]
        c2w, k = c2w @ T, view["K"]
    return rotation_agreement(frames, c2w, k, valid, **kwargs)
