"""Dense depth on real footage against Kinect ground truth (7-Scenes), with our poses or the ground-truth poses.

The 7-Scenes colour and depth images come from two Kinect cameras that are **not registered**: the depth
image is the depth camera's (``fx = fy = 585``, principal point (320, 240), the calibration KinectFusion used
for the ground-truth poses, which therefore are poses of the *depth* camera), the colour camera has a wider
field of view and sits a few centimetres to the side. Comparing our depth (in colour pixels) with the Kinect
depth pixel by pixel misplaces every surface by up to ~35 px at the image border. So the Kinect depth is
registered into the colour camera first: back-projected with the depth intrinsics, moved by the
depth-to-colour translation and z-buffered into the colour camera (:func:`register_depth`).

The colour intrinsics and the translation (:data:`SEVEN_SCENES_REGISTRATION`) were fitted by
:func:`fit_registration`, independently of anything we estimate: the Kinect depth discontinuities of 50
frames (every 10th of the development split) are projected into the colour image and the parameters that put
them on the strongest colour gradients win (Nelder-Mead from three starts). Result: focal 525.6 px (the
published RGB estimate is 525; 523-527 across starts), principal point (321.7, 234.9) (+-3 px across
starts), translation (-2.8, 1.0, 0) cm (the Kinect's colour camera sits about 2.5 cm beside its depth
camera); a radial term k1 came out at -0.013 and improved the fit by 0.04 %, so the colour camera is
treated as a pinhole. The colour camera's ground-truth pose is the depth camera's moved by that
translation (:func:`rgb_c2w`). The same focal is what a run with ground-truth poses is given
(:func:`write_gt_pose_store`); COLMAP's 509 px self-calibration comes with k1 = -0.04 of a radial model
and is not a pinhole focal.

Reported (:func:`evaluate_depth`, :func:`depth_rows`): AbsRel and delta < 1.25 with one scale for the whole
sequence (median of the per-pixel log ratios) and with a scale per frame, the coefficient of variation of
the per-frame scales, the share of pixels kept by the MVS filters (the rest is filled) and the accuracy of
those pixels alone, and the temporal consistency of the depth under the run's own poses
(:func:`vipe_dagster.depth.quality.temporal_consistency`). Errors are computed on a 2x2-strided grid of the
evaluation pixels (an unbiased subsample; keeps memory at a few hundred MB for 500 frames).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import camera as cammod
from ..io import ArtifactStore
from .bench import make_row
from .realdata import SevenScenes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RgbdRegistration:
    """Depth camera -> colour camera: intrinsics of both (full resolution) and the translation between them
    (``X_rgb = X_depth + t``; the rotation between the two Kinect cameras is taken as identity)."""

    depth_k: tuple[float, float, float, float]
    rgb_k: tuple[float, float, float, float]
    t_rgb_from_depth: tuple[float, float, float]


SEVEN_SCENES_REGISTRATION = RgbdRegistration(depth_k=(585.0, 585.0, 320.0, 240.0),
                                             rgb_k=(525.6, 525.6, 321.7, 234.9),
                                             t_rgb_from_depth=(-0.0283, 0.0096, 0.0))


def rgb_c2w(depth_c2w: np.ndarray, reg: RgbdRegistration = SEVEN_SCENES_REGISTRATION) -> np.ndarray:
    """Camera-to-world poses of the colour camera from those of the depth camera: ``c2w_d @ [I | -t]``."""
    off = np.eye(4)
    off[:3, 3] = -np.asarray(reg.t_rgb_from_depth, np.float64)
    return np.asarray(depth_c2w, np.float64) @ off


def scale_k(k, sx: float, sy: float) -> np.ndarray:
    """``fx fy cx cy`` for an image resized by ``(sx, sy)`` (pixel-corner convention)."""
    return cammod.scale_intrinsics(np.asarray(k, np.float64)[:4], sx, sy)


def register_depth(depth_m: np.ndarray, reg: RgbdRegistration, k_dst: np.ndarray,
                   size: tuple[int, int]) -> np.ndarray:
    """Kinect depth (metres, 0 invalid) re-projected into the colour camera with intrinsics ``k_dst`` and image
    ``size`` (w, h): nearest surface per pixel (z-buffer), NaN where no depth pixel lands."""
    h, w = depth_m.shape
    vv, uu = np.mgrid[0:h, 0:w]
    ok = np.isfinite(depth_m) & (depth_m > 0)
    z = depth_m[ok].astype(np.float64)
    kd = reg.depth_k
    x = (uu[ok] - kd[2]) / kd[0] * z + reg.t_rgb_from_depth[0]
    y = (vv[ok] - kd[3]) / kd[1] * z + reg.t_rgb_from_depth[1]
    z = z + reg.t_rgb_from_depth[2]
    front = z > 1e-6
    x, y, z = x[front], y[front], z[front]
    wd, hd = size
    u = np.rint(k_dst[0] * x / z + k_dst[2]).astype(np.int64)
    v = np.rint(k_dst[1] * y / z + k_dst[3]).astype(np.int64)
    inside = (u >= 0) & (u < wd) & (v >= 0) & (v < hd)
    flat = np.full(hd * wd, np.inf)
    np.minimum.at(flat, v[inside] * wd + u[inside], z[inside])
    out = flat.reshape(hd, wd)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)


def fit_registration(seq: SevenScenes, frames: list[int] | None = None,
                     starts: tuple[tuple[float, ...], ...] = ((525, 320, 240, -0.02, 0.0), (540, 315, 240, -0.03, 0.0),
                                                              (510, 325, 240, 0.0, 0.0))) -> RgbdRegistration:
    """Fit the colour intrinsics and the depth-to-colour translation by edge alignment (see the module docstring).

    The near side of every Kinect depth discontinuity (> 10 % jump to a neighbour) is projected into the
    colour image; the objective is the mean of the smoothed colour gradient magnitude there (maximised by
    Nelder-Mead over ``f, cx, cy, tx, ty``; ``tz = 0``). The depth camera is taken as ``585, 585, 320, 240``.
    """
    import cv2
    from scipy.optimize import minimize

    frames = list(range(0, len(seq), 10)) if frames is None else frames
    depth_k = SEVEN_SCENES_REGISTRATION.depth_k
    data = []
    for i in frames:
        img = cv2.imread(str(seq.colors[i]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        g = np.hypot(cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1))
        g = cv2.GaussianBlur(g, (0, 0), 2.0)
        d = seq.depth_m(i)
        with np.errstate(divide="ignore", invalid="ignore"):
            ld = np.log(np.where(d > 0, d, np.nan))
        near = np.zeros(d.shape, bool)
        jx = np.nan_to_num(ld[:, 1:] - ld[:, :-1])
        jy = np.nan_to_num(ld[1:, :] - ld[:-1, :])
        near[:, :-1] |= jx > 0.1
        near[:, 1:] |= jx < -0.1
        near[:-1, :] |= jy > 0.1
        near[1:, :] |= jy < -0.1
        v, u = np.nonzero(near)
        z = d[v, u].astype(np.float64)
        data.append((g, (u - depth_k[2]) / depth_k[0] * z, (v - depth_k[3]) / depth_k[1] * z, z))
    hh, ww = data[0][0].shape

    def objective(p: np.ndarray) -> float:
        f, cx, cy, tx, ty = p
        vals = []
        for g, x, y, z in data:
            u = (f * (x + tx) / z + cx).astype(np.float32)
            v = (f * (y + ty) / z + cy).astype(np.float32)
            ok = (u >= 0) & (u < ww - 1) & (v >= 0) & (v < hh - 1)
            vals.append(cv2.remap(g, u[ok].reshape(-1, 1), v[ok].reshape(-1, 1), cv2.INTER_LINEAR).mean())
        return -float(np.mean(vals))

    best = None
    for x0 in starts:
        r = minimize(objective, np.asarray(x0, np.float64), method="Nelder-Mead",
                     options={"xatol": 0.05, "fatol": 1e-4, "maxiter": 600})
        log.info("registration fit from %s: %s (score %.3f)", x0, np.round(r.x, 4), -r.fun)
        if best is None or r.fun < best.fun:
            best = r
    f, cx, cy, tx, ty = (float(v) for v in best.x)
    return RgbdRegistration(depth_k=depth_k, rgb_k=(f, f, cx, cy), t_rgb_from_depth=(tx, ty, 0.0))


def source_size(seq: SevenScenes) -> tuple[int, int]:
    """(width, height) of the colour frames."""
    from PIL import Image

    with Image.open(seq.colors[0]) as im:
        return im.size


def write_gt_pose_store(seq: SevenScenes, root: str | Path, name: str = "gt_poses", start: int = 0,
                        end: int | None = None, long_side: int = 512,
                        reg: RgbdRegistration = SEVEN_SCENES_REGISTRATION) -> tuple[ArtifactStore, str]:
    """An artifact store holding frames ``start..end`` (inclusive) of ``seq`` at ``long_side`` px with the
    ground-truth colour-camera poses (metres) and the fitted colour intrinsics: the input of a depth run that
    isolates the depth stage. The frames are read through symlinks; nothing of the dataset is copied except
    the re-encoded rgb video inside ``root``."""
    from ..ingest import ingest_video

    root = Path(root)
    img_dir = seq.image_folder(root / "_frames", start, end)
    store = ArtifactStore(str(root))
    ing = ingest_video(str(img_dir), store, name=name, long_side=long_side)
    c2w = rgb_c2w(seq.gt_c2w(start, end), reg)
    if len(c2w) != ing.num_frames:
        raise ValueError(f"{seq.root}: {len(c2w)} poses for {ing.num_frames} ingested frames")
    src_w, src_h = source_size(seq)
    k = scale_k(reg.rgb_k, ing.width / src_w, ing.height / src_h)
    store.write_pose(name, c2w.astype(np.float32), inds=np.arange(len(c2w)))
    store.write_intrinsics(name, np.tile(k.astype(np.float32), (len(c2w), 1)), inds=np.arange(len(c2w)))
    store.update_manifest(name, "pose", {"pose": {
        "scale": "metric", "source": "7-Scenes ground truth (KinectFusion), moved to the colour camera",
        "intrinsics": {"fx": float(k[0]), "fy": float(k[1]), "cx": float(k[2]), "cy": float(k[3]),
                       "source": "given"}}})
    return store, name


def evaluate_depth(store: ArtifactStore, name: str, seq: SevenScenes, start: int = 0,
                   reg: RgbdRegistration = SEVEN_SCENES_REGISTRATION, stride: int = 2,
                   consistency_gap: int = 5, max_depth: float = 10.0) -> dict:
    """Depth of ``store``/``name`` (frame ``i`` = 7-Scenes frame ``start + i``) against the registered Kinect
    depth. Returns a dict of sequence-level numbers (see the module docstring)."""
    from ..depth.quality import has_kept, iter_kept, temporal_consistency

    intr, _, _ = store.read_intrinsics(name)
    n = store.depth_count(name)
    if start + n > len(seq):
        raise ValueError(f"{store.path('depth', name)} has {n} frames; {seq.root} has {len(seq)} from {start}")
    kept_it = iter_kept(store, name) if has_kept(store, name) else None
    src_w, src_h = source_size(seq)
    logs: list[np.ndarray] = []  # per frame log(gt / pred) on evaluated pixels
    kept_flags: list[np.ndarray] = []
    kept_share: list[float] = []
    for i, pred in store.iter_depth(name):
        h, w = pred.shape
        k_eval = scale_k(reg.rgb_k, w / src_w, h / src_h)
        gt = register_depth(seq.depth_m(start + i), reg, k_eval, (w, h))
        kept = next(kept_it)[1] if kept_it is not None else None
        if kept is not None:
            kept_share.append(float(kept.mean()))
        g, p = gt[::stride, ::stride], pred[::stride, ::stride]
        ok = np.isfinite(g) & (g > 0) & (g < max_depth) & np.isfinite(p) & (p > 0)
        logs.append(np.log(g[ok].astype(np.float64) / p[ok]).astype(np.float32))
        kept_flags.append(kept[::stride, ::stride][ok] if kept is not None else np.zeros(int(ok.sum()), bool))
    all_logs = np.concatenate(logs)
    log_s = float(np.median(all_logs))

    def errs(r: np.ndarray, ls: float) -> tuple[float, float]:
        ratio = np.exp(ls - r.astype(np.float64))  # scaled prediction / gt
        return float(np.mean(np.abs(ratio - 1.0))), float(np.mean(np.abs(ls - r) < np.log(1.25)))

    per_frame_one, per_frame_own, scales = [], [], []
    for r in logs:
        if r.size < 100:
            continue
        per_frame_one.append(errs(r, log_s))
        own = float(np.median(r))
        scales.append(np.exp(own))
        per_frame_own.append(errs(r, own))
    one = np.asarray(per_frame_one)
    own = np.asarray(per_frame_own)
    scales_arr = np.asarray(scales)
    out = {
        "frames": n,
        "abs_rel": float(one[:, 0].mean()), "delta1": float(one[:, 1].mean()),
        "abs_rel_per_frame_scale": float(own[:, 0].mean()), "delta1_per_frame_scale": float(own[:, 1].mean()),
        "scale": float(np.exp(log_s)),
        "scale_cov": float(scales_arr.std() / scales_arr.mean()),
        "gt_coverage": float(np.mean([r.size for r in logs]) / (len(range(0, h, stride)) * len(range(0, w, stride)))),
    }
    if kept_it is not None:
        flags = np.concatenate(kept_flags)
        out["kept_fraction"] = float(np.mean(kept_share))
        kr = all_logs[flags]
        if kr.size:
            out["kept_abs_rel"], out["kept_delta1"] = errs(kr, log_s)
            out["kept_abs_rel_own_scale"], _ = errs(kr, float(np.median(kr)))
        fr = all_logs[~flags]
        if fr.size:
            out["filled_abs_rel"], out["filled_delta1"] = errs(fr, log_s)
    tc = temporal_consistency(store, name, gap=consistency_gap)
    out["temporal_consistency"] = tc["median"]
    out["temporal_consistency_p90"] = tc["p90"]
    out["consistency_gap"] = consistency_gap
    return out


def depth_rows(store: ArtifactStore, name: str, seq: SevenScenes, label: str, start: int = 0,
               depth_seconds: float | None = None, suite: str = "real", gt_poses: bool = False,
               reg: RgbdRegistration = SEVEN_SCENES_REGISTRATION) -> list[dict]:
    """Benchmark rows (``vipe_dagster.eval.bench.make_row``) for the depth of a run on a 7-Scenes sequence.

    ``gt_poses`` selects the targets: AbsRel <= 0.06 with ground-truth poses (the depth stage alone),
    AbsRel <= 0.08 and delta1 >= 0.93 with our poses; per-frame scale CoV <= 3 % for both.
    """
    t0 = time.perf_counter()
    m = evaluate_depth(store, name, seq, start, reg)
    log.info("depth eval %s (%s): %s in %.1f s", name, label, m, time.perf_counter() - t0)
    n = m["frames"]
    rows = [
        make_row(suite, f"{label}: depth AbsRel, one scale per sequence", m["abs_rel"], "ratio",
                 "<= 0.06" if gt_poses else "<= 0.08",
                 f"{n} frames vs Kinect depth registered into the colour camera; delta1 {m['delta1']:.3f}; "
                 f"scale {m['scale']:.4g}"),
        make_row(suite, f"{label}: depth delta<1.25, one scale per sequence", m["delta1"], "ratio",
                 None if gt_poses else ">= 0.93"),
        make_row(suite, f"{label}: depth AbsRel, scale per frame", m["abs_rel_per_frame_scale"], "ratio",
                 note=f"delta1 {m['delta1_per_frame_scale']:.3f}"),
        make_row(suite, f"{label}: per-frame depth scale, coefficient of variation", 100 * m["scale_cov"], "%",
                 "<= 3"),
        make_row(suite, f"{label}: depth temporal consistency (frame t vs t+{m['consistency_gap']} warped)",
                 m["temporal_consistency"], "ratio", note=f"median over pairs of the median relative depth "
                 f"difference on static pixels, under the run's poses; p90 {m['temporal_consistency_p90']:.3f}"),
    ]
    if "kept_fraction" in m:
        rows.append(make_row(suite, f"{label}: depth measured share (kept by the MVS filters, not filled)",
                             m["kept_fraction"], "fraction",
                             note=f"AbsRel there {m.get('kept_abs_rel', float('nan')):.4f} (one scale), "
                                  f"{m.get('kept_abs_rel_own_scale', float('nan')):.4f} (own scale); filled "
                                  f"pixels AbsRel {m.get('filled_abs_rel', float('nan')):.4f}"))
    if depth_seconds:
        rows.append(make_row(suite, f"{label}: depth stage", depth_seconds, "s", ">= 8 frames/s at 512 px",
                             frames=n))
    return rows
