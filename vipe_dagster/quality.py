"""Quality checks of pose and intrinsics artifacts, and the per-frame metrics table they are judged on.

Pure numpy/polars (no dagster): the Dagster asset checks in ``assets_defs`` are thin wrappers, and the
same functions serve the CLI and notebooks. ``expectations_report`` runs a great-expectations suite
over the metrics table (great-expectations is imported lazily; it takes seconds to import).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from .camera import fov_from_focal
from .io.checks import check_poses


@dataclass
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any]


def _rot_angle_deg(r: np.ndarray) -> np.ndarray:
    """Rotation angle of each (N,3,3) matrix, in degrees."""
    tr = np.clip((np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(tr))


def pose_steps(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame translation step (world units) and rotation step (deg) from the previous frame; 0 for frame 0."""
    c2w = np.asarray(c2w, dtype=np.float64)
    n = len(c2w)
    step = np.zeros(n)
    rot = np.zeros(n)
    if n > 1:
        step[1:] = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
        rel = np.einsum("nji,njk->nik", c2w[:-1, :3, :3], c2w[1:, :3, :3])  # R_{i-1}^T R_i
        rot[1:] = _rot_angle_deg(rel)
    return step, rot


def pose_validity(c2w: np.ndarray, jump_factor: float = 8.0, max_rot_step_deg: float = 30.0,
                  ortho_tol: float = 1e-3, valid: np.ndarray | None = None) -> Verdict:
    """Finite values, orthonormal right-handed rotations, bottom row [0,0,0,1] (the shared rules of
    ``io/checks.py``; frames flagged invalid by ``valid`` are exempt), and no jumps.

    A jump is a frame whose translation step exceeds ``jump_factor`` x the median step (with a floor
    of 1e-3 x the trajectory extent, so a static camera that suddenly moves is caught) or whose
    rotation step exceeds ``max_rot_step_deg``.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    n = len(c2w)
    meta: dict[str, Any] = {"num_frames": n}
    problems = []
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or n == 0:
        return Verdict(False, f"poses have shape {c2w.shape}, expected (N,4,4) with N >= 1", meta)
    pc = check_poses(c2w, "poses", valid=valid, ortho_tol=ortho_tol)
    finite = pc.finite
    if not (finite | ~pc.flagged_valid).all():
        bad = np.flatnonzero(~finite & pc.flagged_valid)
        problems.append(f"{len(bad)} frame(s) with non-finite values (first: frame {bad[0]})")
    c2w = np.where(np.isfinite(c2w), c2w, 0.0)
    r = c2w[:, :3, :3]
    ortho_err = np.abs(np.einsum("nji,njk->nik", r, r) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(r)
    meta["max_orthonormality_error"] = pc.max_orthonormality_error
    meta["min_det"] = float(det.min())
    meta["flagged_invalid"] = int((~pc.flagged_valid).sum())
    bad_rot = np.flatnonzero(finite & ~pc.orthonormal & pc.flagged_valid)
    if len(bad_rot):
        problems.append(f"{len(bad_rot)} rotation(s) not orthonormal with det 1 (first: frame {bad_rot[0]}, "
                        f"|R^T R - I| = {ortho_err[bad_rot[0]]:.2e}, det = {det[bad_rot[0]]:.4f})")
    bottom_bad = np.flatnonzero(finite & pc.orthonormal & ~pc.bottom_row & pc.flagged_valid)
    if len(bottom_bad):
        problems.append(f"{len(bottom_bad)} pose(s) whose last row is not [0,0,0,1] (first: frame {bottom_bad[0]})")
    step, rot = pose_steps(c2w)
    centres = c2w[:, :3, 3]
    extent = float(np.ptp(centres, axis=0).max()) if n > 1 else 0.0
    median_step = float(np.median(step[1:])) if n > 1 else 0.0
    thr = jump_factor * max(median_step, 1e-3 * extent, 1e-9)
    jumps = np.flatnonzero(step > thr)
    rot_jumps = np.flatnonzero(rot > max_rot_step_deg)
    meta.update({"median_step": median_step, "max_step": float(step.max()), "jump_threshold": thr,
                 "max_rotation_step_deg": float(rot.max()), "path_length": float(step.sum()),
                 "extent": extent})
    if len(jumps):
        problems.append(f"{len(jumps)} translation jump(s): frame {jumps[0]} moves {step[jumps[0]]:.4g} "
                        f"(> {thr:.3g} = {jump_factor} x median step {median_step:.3g})")
    if len(rot_jumps):
        problems.append(f"{len(rot_jumps)} rotation jump(s): frame {rot_jumps[0]} turns {rot[rot_jumps[0]]:.1f} deg "
                        f"(> {max_rot_step_deg} deg)")
    if problems:
        return Verdict(False, "; ".join(problems), meta)
    return Verdict(True, f"{n} poses finite and orthonormal; largest step {step.max():.3g} "
                         f"(threshold {thr:.3g}), largest turn {rot.max():.2f} deg", meta)


def intrinsics_plausibility(intr: np.ndarray, width: int, height: int, fov_range_deg: tuple[float, float] = (15.0, 160.0),
                            max_aspect: float = 1.3, max_focal_spread: float = 0.05,
                            camera_type: str = "PINHOLE", mei_fov_max_deg: float = 220.0) -> Verdict:
    """Finite positive focals, fx/fy near 1, principal point inside the image, a sane field of view,
    and (for per-frame intrinsics) a focal that does not wander more than ``max_focal_spread``.

    ``camera_type`` (``_camera.txt``): MEI rows also need ``xi > -1`` and their field of view (through the
    unified model) may reach ``mei_fov_max_deg``; PANORAMA rows are all zeros, as ViPE writes them (the
    equirectangular mapping needs only the image size), and nothing else is judged."""
    from .camera import field_of_view, normalize_type, row_problem

    intr = np.asarray(intr, dtype=np.float64)
    if intr.ndim == 1:
        intr = intr[None]
    kind = normalize_type(camera_type)
    meta: dict[str, Any] = {"width": width, "height": height, "camera_type": kind}
    if intr.ndim != 2 or intr.shape[1] < 4 or len(intr) == 0:
        return Verdict(False, f"intrinsics have shape {intr.shape}, expected (N,4+) fx fy cx cy", meta)
    if kind in ("PANORAMA", "MEI"):
        bad = [(i, row_problem(kind, r)) for i, r in enumerate(intr)]
        bad = [(i, m) for i, m in bad if m]
        if bad:
            return Verdict(False, f"{kind} intrinsics of frame {bad[0][0]}: {bad[0][1]}"
                                  + (f" ({len(bad) - 1} more frame(s))" if len(bad) > 1 else ""), meta)
        if kind == "PANORAMA":
            return Verdict(True, f"PANORAMA: all-zero rows as ViPE writes them ({width}x{height} equirectangular)",
                           meta)
    if not np.isfinite(intr[:, :4]).all():
        return Verdict(False, f"non-finite intrinsics in {int((~np.isfinite(intr[:, :4])).any(1).sum())} frame(s)", meta)
    fx, fy, cx, cy = (intr[:, i] for i in range(4))
    problems = []
    if (fx <= 0).any() or (fy <= 0).any():
        return Verdict(False, f"focal lengths must be > 0, got fx in [{fx.min():.4g}, {fx.max():.4g}], "
                              f"fy in [{fy.min():.4g}, {fy.max():.4g}]", meta)
    if kind == "MEI":
        fov = np.array([field_of_view("MEI", r, width, height).x_deg or np.nan for r in intr])
        fov_range_deg = (fov_range_deg[0], mei_fov_max_deg)
        meta["xi"] = float(np.median(intr[:, 4]))
    else:
        fov = fov_from_focal(width, fx)
    aspect = fx / fy
    meta.update({"fx": float(np.median(fx)), "fy": float(np.median(fy)), "cx": float(np.median(cx)),
                 "cy": float(np.median(cy)), "hfov_deg": float(np.median(fov)),
                 "fx_spread": float((fx.max() - fx.min()) / np.median(fx))})
    if (fov < fov_range_deg[0]).any() or (fov > fov_range_deg[1]).any():
        problems.append(f"horizontal FoV {fov.min():.1f}..{fov.max():.1f} deg outside [{fov_range_deg[0]}, "
                        f"{fov_range_deg[1]}] (fx {fx.min():.1f}..{fx.max():.1f} px for width {width})")
    if (aspect > max_aspect).any() or (aspect < 1 / max_aspect).any():
        problems.append(f"fx/fy {aspect.min():.3f}..{aspect.max():.3f} outside [{1 / max_aspect:.2f}, {max_aspect}]")
    if (cx < 0).any() or (cx > width).any() or (cy < 0).any() or (cy > height).any():
        problems.append(f"principal point ({np.median(cx):.1f}, {np.median(cy):.1f}) outside the {width}x{height} image")
    if meta["fx_spread"] > max_focal_spread:
        problems.append(f"focal varies by {100 * meta['fx_spread']:.1f}% across frames (> {100 * max_focal_spread:.0f}%)")
    if problems:
        return Verdict(False, "; ".join(problems), meta)
    return Verdict(True, f"fx={meta['fx']:.1f} fy={meta['fy']:.1f} px, principal point ({meta['cx']:.1f}, "
                         f"{meta['cy']:.1f}), hFoV {meta['hfov_deg']:.1f} deg on {width}x{height}", meta)


def frame_metrics_table(c2w: np.ndarray, intr: np.ndarray, keyframes=(), source_frames=None) -> pl.DataFrame:
    """One row per frame: pose steps, camera centre, intrinsics, keyframe flag, source frame index."""
    c2w = np.asarray(c2w, dtype=np.float64)
    intr = np.asarray(intr, dtype=np.float64)
    n = len(c2w)
    if len(intr) == 1 and n > 1:
        intr = np.repeat(intr, n, axis=0)
    step, rot = pose_steps(c2w)
    med = float(np.median(step[1:])) if n > 1 else 0.0
    kf = np.zeros(n, bool)
    kf[[int(k) for k in keyframes if 0 <= int(k) < n]] = True
    src = np.asarray(source_frames if source_frames is not None else np.arange(n), dtype=np.int64)
    return pl.DataFrame({
        "frame": np.arange(n, dtype=np.int64),
        "source_frame": src[:n],
        "is_keyframe": kf,
        "tx": c2w[:, 0, 3], "ty": c2w[:, 1, 3], "tz": c2w[:, 2, 3],
        "step": step,
        "step_over_median": step / med if med > 0 else np.zeros(n),
        "rotation_step_deg": rot,
        "fx": intr[:, 0], "fy": intr[:, 1], "cx": intr[:, 2], "cy": intr[:, 3],
    })


def gx_context():
    """An ephemeral great-expectations context without analytics and without its tqdm progress bars (they
    would land in run logs and on the terminal)."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    except ImportError:
        pass
    return ctx


def expectations_report(df: pl.DataFrame, width: int, height: int, expected_rows: int,
                        jump_factor: float = 8.0, max_rot_step_deg: float = 30.0,
                        camera_type: str = "PINHOLE") -> Verdict:
    """Validate the per-frame metrics table with a great-expectations suite (ephemeral context). A PANORAMA
    sequence's intrinsics columns are ViPE's all-zero rows: their ranges are not expected."""
    import great_expectations as gx

    ctx = gx_context()
    batch_def = (ctx.data_sources.add_pandas("frame_metrics")
                 .add_dataframe_asset(name="frame_metrics")
                 .add_batch_definition_whole_dataframe("per_partition"))
    suite = ctx.suites.add(gx.ExpectationSuite(name="frame_metrics_suite"))
    e = gx.expectations
    for exp in (
        e.ExpectTableRowCountToEqual(value=expected_rows),
        e.ExpectColumnValuesToBeUnique(column="frame"),
        e.ExpectColumnValuesToBeIncreasing(column="source_frame", strictly=True),
        *[e.ExpectColumnValuesToNotBeNull(column=c) for c in ("tx", "ty", "tz", "fx", "fy", "cx", "cy")],
        *([] if str(camera_type).upper() == "PANORAMA" else [
            e.ExpectColumnValuesToBeBetween(column="fx", min_value=width * 0.1, max_value=width * 10),
            e.ExpectColumnValuesToBeBetween(column="cx", min_value=0, max_value=width),
            e.ExpectColumnValuesToBeBetween(column="cy", min_value=0, max_value=height)]),
        e.ExpectColumnValuesToBeBetween(column="rotation_step_deg", min_value=0, max_value=max_rot_step_deg),
        e.ExpectColumnValuesToBeBetween(column="step_over_median", min_value=0, max_value=jump_factor),
        e.ExpectColumnSumToBeBetween(column="is_keyframe", min_value=1 if expected_rows > 1 else 0),
    ):
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="frame_metrics_vd", data=batch_def, suite=suite))
    pdf = df.with_columns(pl.col("is_keyframe").cast(pl.Int64)).to_pandas()
    res = vd.run(batch_parameters={"dataframe": pdf})
    results = []
    for r in res.results:
        cfg = r.expectation_config
        results.append({"expectation": cfg.type, "column": cfg.kwargs.get("column", ""), "success": bool(r.success),
                        "observed": _observed(r.result)})
    failed = [r for r in results if not r["success"]]
    meta = {"evaluated": len(results), "failed": len(failed), "results": results}
    if failed:
        desc = "; ".join(f"{r['expectation']}({r['column']}) observed {r['observed']}" for r in failed)
        return Verdict(False, f"{len(failed)} of {len(results)} expectations failed: {desc}", meta)
    return Verdict(True, f"all {len(results)} expectations passed on {expected_rows} frames", meta)


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        v = result["observed_value"]
        return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} unexpected (e.g. {result.get('partial_unexpected_list', [])[:3]})"
    return ""
