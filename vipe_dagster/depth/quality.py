"""Quality measures of a depth artifact that need no ground truth.

- :func:`temporal_consistency`: does the depth of frame ``t`` agree with the depth of ``t + gap`` once
  warped by the poses? Per pair, the median relative difference on static pixels seen by both frames
  (:func:`vipe_dagster.eval.metrics.depth_pair_consistency`).
- :func:`kept_fractions`: per frame, the share of pixels the confidence and geometric filters kept (the
  rest was filled), read from the ``vipe/<n>_depth_conf.zip`` sidecar that :func:`run_depth` writes.

Both stream the artifacts (two frames in memory at a time) and are used by the Dagster ``depth_valid``
check and by the benchmarks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from ..errors import ArtifactError
from ..eval.metrics import depth_pair_consistency
from ..io import ArtifactStore, fs

log = logging.getLogger(__name__)


def depth_conf_path(store: ArtifactStore, name: str) -> str:
    """``vipe/<name>_depth_conf.zip``: per frame a uint8 PNG, 0 = filled (not measured), ``1 + 254 c`` = kept by
    the filters with sweep confidence ``c``, at the rgb resolution."""
    return fs.join(store.root, "vipe", f"{name}_depth_conf.zip")


def conf_writer(store: ArtifactStore, name: str):
    """Writer of the confidence sidecar, stamped with the sequence's generation like the depth it describes."""
    from ..io.artifacts import FrameZipWriter, _encode_mask_png

    return FrameZipWriter(depth_conf_path(store, name), "png", _encode_mask_png, comment=store._stamp(name))


def _zip_stamp(uri: str) -> str | None:
    import zipfile

    from ..io import generation as G

    with fs.open_read(uri) as f, zipfile.ZipFile(f) as z:
        return G.parse_stamp(z.comment)


def conf_matches_depth(store: ArtifactStore, name: str) -> bool:
    """False when the sidecar and ``depth/<n>.zip`` carry different generation stamps (a stale sidecar of an
    earlier run next to depth written since by something else); unstamped files are not judged."""
    a, b = _zip_stamp(depth_conf_path(store, name)), _zip_stamp(store.path("depth", name))
    return a is None or b is None or a == b


def encode_confidence(conf: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sidecar frame: confidence in [0,1] of the measured pixels (0 = filled) -> uint8 ``1 + 254 c`` / 0,
    resized (nearest) to ``size`` (w, h)."""
    import cv2

    c = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0)
    out = np.where(c > 0, 1.0 + np.rint(254.0 * c), 0.0).astype(np.uint8)
    if (out.shape[1], out.shape[0]) != tuple(size):
        out = cv2.resize(out, tuple(size), interpolation=cv2.INTER_NEAREST)
    return out


def iter_kept(store: ArtifactStore, name: str, frames: Iterable[int] | None = None):
    """Stream ``(index, HxW bool kept mask)`` from the confidence sidecar (ArtifactError when missing)."""
    from ..io.artifacts import FrameZipReader, _decode_mask_png

    uri = depth_conf_path(store, name)
    for i, m in FrameZipReader(uri, "png", _decode_mask_png).iter(frames):
        yield i, m > 0


def has_kept(store: ArtifactStore, name: str) -> bool:
    return fs.exists(depth_conf_path(store, name))


def kept_fractions(store: ArtifactStore, name: str, frames: Iterable[int] | None = None) -> np.ndarray:
    """Per frame, the share of pixels whose depth was measured (kept by the filters), not filled."""
    return np.array([float(m.mean()) for _, m in iter_kept(store, name, frames)], np.float64)


def temporal_consistency(store: ArtifactStore, name: str, gap: int = 5, max_pairs: int | None = None,
                         use_masks: bool = True) -> dict:
    """Temporal consistency of ``depth/<name>.zip`` under the stored poses (see :func:`~vipe_dagster.eval.metrics.depth_pair_consistency`).

    Pairs ``(t, t + gap)`` (all of them, or ``max_pairs`` evenly spaced); dynamic pixels (``mask/<n>.zip``
    id > 0, when present and ``use_masks``) and frames marked invalid in ``pose/<n>.npz`` are left out.
    Returns ``{"median": median over pairs, "p90": 90th percentile over pairs, "per_pair": [...],
    "pairs": [...], "gap": gap}``.
    """
    poses, _ = store.read_pose(name)
    poses = poses.astype(np.float64)
    pose_ok = store.read_pose_valid(name)
    if not store.exists("intrinsics", name):
        log.warning("temporal consistency of %s not measured: %s is missing", name, store.path("intrinsics", name))
        return {"median": float("nan"), "p90": float("nan"), "per_pair": [], "pairs": [], "gap": gap}
    intr, _, types = store.read_intrinsics(name)
    n = store.depth_count(name)
    if n != len(poses):
        raise ArtifactError(f"{store.path('depth', name)} has {n} frames but {store.path('pose', name)} has "
                            f"{len(poses)}")
    if n <= gap:
        return {"median": float("nan"), "p90": float("nan"), "per_pair": [], "pairs": [], "gap": gap}
    starts = np.arange(n - gap)
    if max_pairs is not None and len(starts) > max_pairs:
        starts = np.unique(np.linspace(0, n - gap - 1, max_pairs).round().astype(int))
    starts = [int(t) for t in starts if pose_ok[t] and pose_ok[t + gap]]
    need = sorted(set(starts) | {t + gap for t in starts})
    masks = use_masks and store.exists("mask", name) and store.mask_count(name) == n
    mask_it = store.iter_masks(name, need) if masks else None
    cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    per_pair, pairs = [], []
    for i, d in store.iter_depth(name, need):
        m = next(mask_it)[1] == 0 if mask_it is not None else None
        cache[i] = (d, m)
        if i - gap in cache and (i - gap) in starts:
            a, b = i - gap, i
            (da, ma), (db, mb) = cache[a], cache[b]
            h, w = da.shape
            med, cnt = depth_pair_consistency(da, db, intr[a].astype(np.float64), intr[b].astype(np.float64),
                                              poses[a], poses[b], ma, mb, camera_type=types[a])
            if cnt >= 0.01 * h * w / 4:
                per_pair.append(med)
                pairs.append(a)
        for j in [j for j in cache if j < i - gap]:
            del cache[j]
    arr = np.asarray(per_pair, np.float64)
    return {"median": float(np.median(arr)) if arr.size else float("nan"),
            "p90": float(np.percentile(arr, 90)) if arr.size else float("nan"),
            "per_pair": per_pair, "pairs": pairs, "gap": gap}


# ------------------------------------------------------------------------------------------ the depth check
MIN_MEASURED_MEAN = 0.25
"""Mean share of pixels measured (kept by the MVS filters, not filled) below which depth is mostly fill."""
MAX_UNMEASURED_FRAMES = 0.2
"""At most this share of frames may have almost nothing measured (< 5 % of the pixels)."""
MAX_TEMPORAL_INCONSISTENCY = 0.05
"""Median over frame pairs (t, t + 5) of the median relative depth disagreement after warping by the poses."""


def depth_quality(store: ArtifactStore, name: str, gap: int = 5, max_pairs: int = 60) -> dict:
    """What the ``depth_valid`` check judges beyond finiteness: the measured (un-filled) share per frame (from
    the confidence sidecar, when the depth came with one) and the temporal consistency under the poses.

    Returns ``{"problems": [...], "measured_mean", "measured_min", "unmeasured_frames", "temporal_consistency",
    "temporal_consistency_p90", "pairs"}``; an empty ``problems`` list passes. Depth without a confidence
    sidecar (imported, or from ViPE) is judged on temporal consistency alone (``measured_mean`` None).
    """
    problems: list[str] = []
    out: dict = {"measured_mean": None, "measured_min": None, "unmeasured_frames": None}
    if has_kept(store, name) and not conf_matches_depth(store, name):
        problems.append(f"{depth_conf_path(store, name)} belongs to another generation than "
                        f"{store.path('depth', name)} (a stale confidence sidecar): the measured share is unknown")
    elif has_kept(store, name):
        fr = kept_fractions(store, name)
        n = store.depth_count(name)
        if len(fr) != n:
            problems.append(f"{depth_conf_path(store, name)} has {len(fr)} frames but {store.path('depth', name)} "
                            f"has {n}")
        else:
            # frames without a measured pose carry no depth by design (depth/run.py): judged on the others
            pose_ok = store.read_pose_valid(name) if store.exists("pose", name) else np.ones(n, bool)
            idx = np.flatnonzero(pose_ok) if len(pose_ok) == n else np.arange(n)
            fr = fr[idx]
            if len(fr):
                low = int((fr < 0.05).sum())
                out.update(measured_mean=float(fr.mean()), measured_min=float(fr.min()), unmeasured_frames=low)
                if fr.mean() < MIN_MEASURED_MEAN:
                    problems.append(f"{store.path('depth', name)}: only {fr.mean():.1%} of the pixels were measured "
                                    f"on average (kept by the MVS filters; the rest is fill), expected >= "
                                    f"{MIN_MEASURED_MEAN:.0%}")
                if low > MAX_UNMEASURED_FRAMES * len(fr):
                    j = int(np.flatnonzero(fr < 0.05)[0])
                    problems.append(f"{store.path('depth', name)}: {low} of {len(fr)} frames have < 5% measured "
                                    f"depth (first frame {int(idx[j])} with {fr[j]:.1%}); expected at most "
                                    f"{MAX_UNMEASURED_FRAMES:.0%} of the frames")
    tc = temporal_consistency(store, name, gap=gap, max_pairs=max_pairs)
    out.update(temporal_consistency=tc["median"], temporal_consistency_p90=tc["p90"], pairs=len(tc["pairs"]))
    if tc["pairs"] and not tc["median"] <= MAX_TEMPORAL_INCONSISTENCY:
        problems.append(f"{store.path('depth', name)}: frames {gap} apart disagree by {tc['median']:.1%} (median "
                        f"relative depth difference after warping by the poses, over {len(tc['pairs'])} pairs), "
                        f"expected <= {MAX_TEMPORAL_INCONSISTENCY:.0%}")
    out["problems"] = problems
    return out
