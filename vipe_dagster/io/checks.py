"""One validation module for the per-frame data every reader consumes: poses, intrinsics, depth, masks, rgb.

Readers (``to-colmap``, ``render-ego``, the viewer, the catalog, ``validate``, the Dagster checks, the
Ego-Exo4D file readers) call these functions instead of re-implementing the rules, so a file that one of them
refuses is refused (or flagged) by all of them, with the same message.

Rules:

- a pose is well formed when it is finite, its rotation is orthonormal with det +1 (``|R^T R - I| <=
  ORTHO_TOL`` and ``|det R - 1| <= 10 ORTHO_TOL``) and its last row is ``[0, 0, 0, 1]``;
- a frame is *usable* when its pose is well formed and it is not flagged invalid by the ``valid`` array of
  ``pose/<n>.npz`` (tracking lost: the row holds the last good pose, it is not a measurement);
- a frame that is **not** flagged invalid but whose pose is malformed is an error: the file claims a
  measurement that is garbage (NaN, inf, a shear, a reflection);
- intrinsics follow their camera model (:mod:`vipe_dagster.camera`): PINHOLE finite with ``fx, fy > 0``, MEI
  also ``xi > -1`` in a fifth column, PANORAMA all zeros;
- frame indices ``inds`` are non-negative and strictly increasing; counts of per-frame attributes agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import camera as cam
from ..errors import ArtifactError

ORTHO_TOL = 1e-3
BOTTOM_TOL = 1e-4


@dataclass
class PoseCheck:
    """Per-frame verdicts on an (N,4,4) camera-to-world array; see the module docstring."""

    where: str
    finite: np.ndarray
    orthonormal: np.ndarray
    bottom_row: np.ndarray
    flagged_valid: np.ndarray
    max_orthonormality_error: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def well_formed(self) -> np.ndarray:
        return self.finite & self.orthonormal & self.bottom_row

    @property
    def usable(self) -> np.ndarray:
        """Frames a consumer may use: well formed and not flagged invalid."""
        return self.well_formed & self.flagged_valid

    @property
    def malformed(self) -> np.ndarray:
        """Frames that claim a measurement (not flagged invalid) but hold a malformed pose."""
        return ~self.well_formed & self.flagged_valid

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_malformed(self) -> None:
        if self.problems:
            raise ArtifactError(self.problems[0])


def check_poses(c2w: np.ndarray, where: str, valid: np.ndarray | None = None,
                inds: np.ndarray | None = None, ortho_tol: float = ORTHO_TOL) -> PoseCheck:
    """Validate camera-to-world poses; ``where`` names the file in messages (``pose/x.npz``)."""
    m = np.asarray(c2w, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (4, 4):
        raise ArtifactError(f"{where}: poses have shape {m.shape}, expected (N,4,4) camera-to-world")
    n = len(m)
    flagged = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if flagged.shape != (n,):
        raise ArtifactError(f"{where}: 'valid' has shape {flagged.shape}, expected ({n},)")
    finite = np.isfinite(m).all(axis=(1, 2))
    safe = np.where(np.isfinite(m), m, 0.0)
    r = safe[:, :3, :3]
    err = np.abs(np.einsum("nji,njk->nik", r, r) - np.eye(3)).max(axis=(1, 2)) if n else np.zeros(0)
    det = np.linalg.det(r) if n else np.zeros(0)
    ortho = (err <= ortho_tol) & (np.abs(det - 1.0) <= 10 * ortho_tol) & finite
    bottom = (np.abs(safe[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) <= BOTTOM_TOL) & finite
    pc = PoseCheck(where, finite, ortho, bottom, flagged, float(err[finite].max()) if finite.any() else 0.0)
    frame_ids = np.arange(n) if inds is None else np.asarray(inds)
    if inds is not None:
        ind = np.asarray(inds)
        if ind.shape != (n,):
            pc.problems.append(f"{where}: 'inds' has shape {ind.shape}, expected ({n},) like 'data'")
            frame_ids = np.arange(n)
        elif n and (ind.min() < 0 or np.any(np.diff(ind) <= 0)):
            k = int(np.argmax(ind < 0)) if ind.min() < 0 else int(np.flatnonzero(np.diff(ind) <= 0)[0]) + 1
            pc.problems.append(f"{where}: frame indices 'inds' must be non-negative and strictly increasing "
                               f"(row {k} is {int(ind[k])})")
    for mask, what in (
        (~finite, "pose is not finite (NaN or inf)"),
        (finite & ~ortho, "rotation is not orthonormal with det +1"),
        (finite & ortho & ~bottom, "last row is not [0, 0, 0, 1]"),
    ):
        bad = np.flatnonzero(mask & flagged)
        if bad.size:
            k = int(bad[0])
            detail = ""
            if what.startswith("rotation"):
                detail = f" (|R^T R - I| = {err[k]:.2e}, det = {det[k]:.4f}, tolerance {ortho_tol:g})"
            extra = f"; {bad.size - 1} more frame(s) like it" if bad.size > 1 else ""
            pc.problems.append(f"{where} frame {int(frame_ids[k])}: {what}{detail}{extra}; "
                               f"expected a finite rigid camera-to-world transform")
    return pc


def check_rigid(m: np.ndarray, where: str, ortho_tol: float = ORTHO_TOL) -> np.ndarray:
    """One 3x4/4x4 rigid transform (e.g. from an Ego-Exo4D JSON or CSV) as 4x4 float64, or an error."""
    a = np.asarray(m, dtype=np.float64)
    if a.shape == (3, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != (4, 4):
        raise ArtifactError(f"{where}: has shape {a.shape}, expected 3x4 or 4x4")
    pc = check_poses(a[None], where, ortho_tol=ortho_tol)
    if pc.problems:
        raise ArtifactError(pc.problems[0].replace(f"{where} frame 0:", f"{where}:"))
    return a


@dataclass
class IntrinsicsCheck:
    where: str
    ok_frames: np.ndarray
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_bad(self) -> None:
        if self.problems:
            raise ArtifactError(self.problems[0])


def check_intrinsics(intr: np.ndarray, where: str, camera_types: Sequence[str] | None = None,
                     inds: np.ndarray | None = None) -> IntrinsicsCheck:
    """Per-frame intrinsics by the rules of each frame's camera model (:mod:`vipe_dagster.camera`):
    PINHOLE finite ``fx fy cx cy`` with positive focals, MEI also a fifth column ``xi > -1``, PANORAMA all
    zeros. ``camera_types`` (one per row, from ``<n>_camera.txt``) defaults to PINHOLE."""
    a = np.asarray(intr, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] < 4:
        raise ArtifactError(f"{where}: intrinsics have shape {a.shape}, expected (N,4+) fx fy cx cy")
    n = len(a)
    frame_ids = np.arange(n) if inds is None or np.shape(inds) != (n,) else np.asarray(inds)
    types = ["PINHOLE"] * n if camera_types is None else [str(t).upper() for t in camera_types]
    if len(types) != n:
        res = IntrinsicsCheck(where, np.zeros(n, bool))
        res.problems.append(f"{where}: {len(types)} camera types for {n} intrinsics rows; expected one "
                            f"'<idx>: MODEL' line per frame")
        return res
    unknown = sorted(set(types) - set(cam.CAMERA_TYPES))
    if unknown:
        raise ArtifactError(f"{where}: camera type(s) {unknown} not in {cam.CAMERA_TYPES}")
    tarr = np.array(types)
    bad = np.zeros(n, bool)
    for t in set(types):
        sel = tarr == t
        bad[sel] = cam.bad_rows(t, a[sel])
    res = IntrinsicsCheck(where, ~bad)
    rows = np.flatnonzero(bad)
    if rows.size:
        k = int(rows[0])
        extra = f"; {rows.size - 1} more frame(s) like it" if rows.size > 1 else ""
        res.problems.append(f"{where}: frame {int(frame_ids[k])} {cam.row_problem(types[k], a[k])}{extra}")
    return res


def check_counts(counts: Mapping[str, int | None], what: str) -> list[str]:
    """Problems when the per-frame attributes of one sequence disagree in length (``None`` = absent)."""
    present = {k: int(v) for k, v in counts.items() if v is not None}
    if len(set(present.values())) <= 1:
        return []
    listing = ", ".join(f"{k} has {v} frames" for k, v in present.items())
    return [f"{what}: frame counts disagree: {listing}; expected one frame of every attribute per frame"]


def raise_counts(counts: Mapping[str, int | None], what: str) -> None:
    problems = check_counts(counts, what)
    if problems:
        raise ArtifactError(problems[0])


def depth_frame_problem(depth: np.ndarray, shape: tuple[int, int] | None, where: str) -> str | None:
    """A depth map that is not HxW float, or whose size differs from ``shape`` (the rgb frame size)."""
    d = np.asarray(depth)
    if d.ndim != 2:
        return f"{where}: depth has shape {d.shape}, expected HxW"
    if shape is not None and tuple(d.shape) != tuple(shape):
        return (f"{where}: depth is {d.shape[1]}x{d.shape[0]}, expected {shape[1]}x{shape[0]} like the rgb "
                f"frames")
    return None


def mask_frame_problem(mask: np.ndarray, shape: tuple[int, int] | None, where: str) -> str | None:
    m = np.asarray(mask)
    if m.ndim != 2:
        return f"{where}: mask has shape {m.shape}, expected HxW instance ids"
    if shape is not None and tuple(m.shape) != tuple(shape):
        return (f"{where}: mask is {m.shape[1]}x{m.shape[0]}, expected {shape[1]}x{shape[0]} like the rgb "
                f"frames")
    return None
