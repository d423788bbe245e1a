"""Structural validation of a ViPE-format result (the checks of ViPE's own CI smoke validator).

Each check returns a ``Finding``; ``validate_sequence`` runs those that apply to the attributes
present (or all of them with ``require=...``) and reports every failure rather than the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import camera as cam
from ..errors import ArtifactError
from . import fs
from . import generation as G
from .artifacts import ArtifactStore
from .checks import check_counts, check_intrinsics


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str


ALL_ATTRIBUTES = ("rgb", "pose", "intrinsics", "depth", "mask", "info")


def validate_sequence(store: ArtifactStore, name: str, expected_frames: int | None = None,
                      require: tuple[str, ...] = ALL_ATTRIBUTES) -> list[Finding]:
    out: list[Finding] = []

    def add(check: str, ok: bool, detail: str) -> None:
        out.append(Finding(check, bool(ok), detail))

    kinds = {"rgb": ["rgb"], "pose": ["pose"], "intrinsics": ["intrinsics"], "depth": ["depth"],
             "mask": ["mask", "phrases"], "info": ["info"]}
    for attr in require:
        for kind in kinds[attr]:
            uri = store.path(kind, name)
            present = fs.exists(uri) and fs.size(uri) > 0
            add(f"{kind}_exists", present, uri if present else f"missing or empty: {uri}")
    if not all(f.ok for f in out):
        return out

    n = expected_frames
    frame_counts: dict[str, int] = {}
    if "rgb" in require:
        stream = store.open_rgb(name)
        count, shape_ok = 0, True
        for _, frame in stream:
            count += 1
            shape_ok &= frame.shape == (stream.info.height, stream.info.width, 3)
        n = count if n is None else n
        frame_counts["rgb"] = count
        add("rgb_frames", count == n, f"{count} frames, expected {n}")
        add("rgb_shape", shape_ok, f"frames are {stream.info.height}x{stream.info.width}x3")
    if "pose" in require:
        data, inds, pc = store.pose_check(name)
        frame_counts["pose"] = len(data)
        n = len(inds) if n is None else n
        add("pose_inds", np.array_equal(inds, np.arange(n)), f"inds {inds[:3]}... ({len(inds)}), expected 0..{n - 1}")
        add("pose_shape", data.shape == (n, 4, 4), f"shape {data.shape}, expected ({n}, 4, 4)")
        # the shared rules of io/checks.py; frames flagged invalid (tracking lost) are not measurements
        bad_finite = np.flatnonzero(~pc.finite & pc.flagged_valid)
        add("pose_finite", bad_finite.size == 0, "all finite" if bad_finite.size == 0
            else f"{bad_finite.size} frame(s) not finite, first frame {bad_finite[0]}")
        bad_rot = np.flatnonzero(pc.finite & ~pc.orthonormal & pc.flagged_valid)
        add("pose_orthonormal", bad_rot.size == 0,
            f"rotations orthonormal with det +1 (max |R^T R - I| {pc.max_orthonormality_error:.1e})"
            if bad_rot.size == 0
            else f"{bad_rot.size} rotation(s) not orthonormal with det +1, first frame {bad_rot[0]}")
        bad_bottom = np.flatnonzero(pc.finite & ~pc.bottom_row & pc.flagged_valid)
        add("pose_bottom_row", bad_bottom.size == 0, "last row [0,0,0,1]" if bad_bottom.size == 0
            else f"last row differs from [0,0,0,1] in {bad_bottom.size} frame(s), first frame "
                 f"{bad_bottom[0]}")
        n_flag = int((~pc.flagged_valid).sum())
        add("pose_usable", bool(pc.usable.any()),
            f"{int(pc.usable.sum())} of {len(data)} frames usable ({n_flag} flagged invalid: tracking lost)")
    if "intrinsics" in require:
        data, inds, types = store.read_intrinsics(name)
        frame_counts["intrinsics"] = len(data)
        n = len(inds) if n is None else n
        add("intrinsics_inds", np.array_equal(inds, np.arange(n)), f"{len(inds)} inds, expected 0..{n - 1}")
        models = sorted(set(types))
        need = max((len(cam.PARAM_NAMES[t]) for t in models if t in cam.PARAM_NAMES), default=4)
        cols_ok = data.ndim == 2 and data.shape[1] >= need
        add("intrinsics_columns", cols_ok, f"shape {data.shape} for {'/'.join(models) or 'PINHOLE'}"
            if cols_ok else f"{store.path('intrinsics', name)}: 'data' has shape {data.shape}, expected "
                            f"(N,{need}) for {'/'.join(models)} cameras "
                            f"({'; '.join(f'{t}: ' + ' '.join(cam.PARAM_NAMES[t]) for t in models)})")
        fin = np.isfinite(data).all(axis=tuple(range(1, data.ndim))) if data.ndim > 1 else np.isfinite(data)
        bad_fin = np.flatnonzero(~fin)
        add("intrinsics_finite", bad_fin.size == 0, "all finite" if bad_fin.size == 0 else
            f"{store.path('intrinsics', name)}: frame {int(inds[bad_fin[0]]) if len(inds) == len(fin) else bad_fin[0]}"
            f" has non-finite values ({bad_fin.size} frame(s))")
        ic = check_intrinsics(data, store.path("intrinsics", name), types, inds)
        add("intrinsics_focal_positive", ic.ok,
            "; ".join(f"{t}: {cam.EXPECTED[t]}" for t in models) if ic.ok else ic.problems[0])
    depth_shape = None
    if "depth" in require:
        count, shapes, finite, total, positive = 0, set(), 0, 0, False
        for _, d in store.iter_depth(name):
            count += 1
            shapes.add(d.shape)
            finite += int(np.isfinite(d).sum())
            total += d.size
            positive |= bool((d[np.isfinite(d)] > 0).any())
        n = count if n is None else n
        frame_counts["depth"] = count
        add("depth_frames", count == n, f"{count} frames, expected {n}")
        add("depth_shape_consistent", len(shapes) == 1, f"shapes {sorted(shapes)}")
        frac = finite / max(total, 1)
        add("depth_finite_fraction", frac >= 0.99, f"{frac:.4f} finite, expected >= 0.99")
        add("depth_positive", positive, "has positive values" if positive else "no value > 0")
        depth_shape = next(iter(shapes)) if len(shapes) == 1 else None
    if "mask" in require:
        count, shapes = 0, set()
        for _, m in store.iter_masks(name):
            count += 1
            shapes.add(m.shape)
        n = count if n is None else n
        frame_counts["mask"] = count
        add("mask_frames", count == n, f"{count} masks, expected {n}")
        if depth_shape is not None:
            add("mask_shape_matches_depth", shapes == {depth_shape}, f"mask shapes {sorted(shapes)}, depth {depth_shape}")
        phrases = store.read_phrases(name)
        add("mask_phrases", len(phrases) > 0, f"{len(phrases)} phrases")
    if "info" in require:
        try:
            info = store.read_info(name)
            # ViPE writes {"ba_residual": float}; its panorama pipeline writes {"finished": True} (spec §3)
            ok = "ba_residual" in info or info.get("finished") is True
            add("info_dict", ok, f"keys {sorted(info)}" if ok else
                f"{store.path('info', name)}: keys {sorted(info)}, expected 'ba_residual' (or 'finished': True "
                f"as the panorama pipeline writes)")
        except ArtifactError as exc:
            add("info_dict", False, str(exc))
    if {"rgb", "pose", "intrinsics"} <= set(require) and all(f.ok for f in out):
        _, _, types = store.read_intrinsics(name)
        if set(types) <= {"PINHOLE"}:
            from ..geometry_check import check_sequence

            v = check_sequence(store, name)
            add("pose_geometry", v.passed, v.description)
    try:
        rep = G.check_set(store, name, counts=False)
        add("generation", rep.ok,
            f"one generation ({rep.generation or 'unversioned'})" if rep.ok else rep.problems[0])
    except ArtifactError as exc:
        add("generation", False, str(exc))
    counts = {store.path(k, name): c for k, c in frame_counts.items()}
    problems = check_counts(counts, name)
    add("frame_counts_agree", not problems, problems[0] if problems else
        f"{len(counts)} per-frame attribute(s) with {next(iter(counts.values()), 0)} frames each")
    add("sequence_discoverable", name in store.sequences(), f"{name} in {store.root}")
    return out
