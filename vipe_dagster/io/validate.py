"""Structural validation of a ViPE-format result (the checks of ViPE's own CI smoke validator).

Each check returns a ``Finding``; ``validate_sequence`` runs those that apply to the attributes
present (or all of them with ``require=...``) and reports every failure rather than the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError
from . import fs
from .artifacts import ArtifactStore


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
    if "rgb" in require:
        stream = store.open_rgb(name)
        count, shape_ok = 0, True
        for _, frame in stream:
            count += 1
            shape_ok &= frame.shape == (stream.info.height, stream.info.width, 3)
        n = count if n is None else n
        add("rgb_frames", count == n, f"{count} frames, expected {n}")
        add("rgb_shape", shape_ok, f"frames are {stream.info.height}x{stream.info.width}x3")
    if "pose" in require:
        data, inds = store.read_pose(name)
        n = len(inds) if n is None else n
        add("pose_inds", np.array_equal(inds, np.arange(n)), f"inds {inds[:3]}... ({len(inds)}), expected 0..{n - 1}")
        add("pose_shape", data.shape == (n, 4, 4), f"shape {data.shape}, expected ({n}, 4, 4)")
        add("pose_finite", bool(np.isfinite(data).all()), "all finite" if np.isfinite(data).all() else "non-finite values")
        bottom_ok = bool(np.allclose(data[:, 3], [0, 0, 0, 1], atol=1e-4))
        add("pose_bottom_row", bottom_ok, "last row [0,0,0,1]" if bottom_ok else "last row differs from [0,0,0,1]")
    if "intrinsics" in require:
        data, inds, _ = store.read_intrinsics(name)
        n = len(inds) if n is None else n
        add("intrinsics_inds", np.array_equal(inds, np.arange(n)), f"{len(inds)} inds, expected 0..{n - 1}")
        add("intrinsics_columns", data.ndim == 2 and data.shape[1] >= 4, f"shape {data.shape}")
        fin = bool(np.isfinite(data).all())
        add("intrinsics_finite", fin, "all finite" if fin else "non-finite values")
        pos = bool((data[:, :2] > 0).all())
        add("intrinsics_focal_positive", pos, "fx, fy > 0" if pos else "fx or fy <= 0")
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
        add("mask_frames", count == n, f"{count} masks, expected {n}")
        if depth_shape is not None:
            add("mask_shape_matches_depth", shapes == {depth_shape}, f"mask shapes {sorted(shapes)}, depth {depth_shape}")
        phrases = store.read_phrases(name)
        add("mask_phrases", len(phrases) > 0, f"{len(phrases)} phrases")
    if "info" in require:
        try:
            info = store.read_info(name)
            add("info_dict", "ba_residual" in info, f"keys {sorted(info)}")
        except ArtifactError as exc:
            add("info_dict", False, str(exc))
    add("sequence_discoverable", name in store.sequences(), f"{name} in {store.root}")
    return out
