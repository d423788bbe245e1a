"""Moving-object masks on real video against an independent reference (no ground truth exists).

The reference for ``dog-example.mp4`` is the dog mask the pose suite builds for pycolmap
(:func:`vipe_dagster.eval.references.motion_masks`): dense DIS flow to the frames 2 before and after, a RANSAC
homography fitted to the flow (the lawn is a plane), pixels off it by more than 3 px in at least half the
neighbours, the largest blob, dilated by 7 px. It uses neither our poses, our depth nor our masks. Our masks
are compared with it per frame (IoU pooled over the frames: sum of intersections / sum of unions).
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from ..io import ArtifactStore
from .bench import make_row

log = logging.getLogger(__name__)


def reference_dog_masks(store: ArtifactStore, name: str, frames: list[int] | None = None) -> dict[int, np.ndarray]:
    """The independent flow/homography dog mask of each frame (bool, rgb resolution) of ``rgb/<name>.mp4``."""
    import cv2

    from .references import motion_masks

    with tempfile.TemporaryDirectory(prefix="vipe-dogmask-") as tmp:
        img_dir, mask_dir = os.path.join(tmp, "images"), os.path.join(tmp, "masks")
        os.makedirs(img_dir)
        for i, frame in store.open_rgb(name):
            cv2.imwrite(os.path.join(img_dir, f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        motion_masks(img_dir, mask_dir)
        out = {}
        for fn in sorted(os.listdir(mask_dir)):
            i = int(fn.split(".")[0])
            if frames is None or i in frames:
                out[i] = cv2.imread(os.path.join(mask_dir, fn), cv2.IMREAD_GRAYSCALE) == 0  # 0 = dog
        return out


def mask_agreement(store: ArtifactStore, name: str, reference: dict[int, np.ndarray]) -> dict:
    """Pooled IoU / precision / recall of ``mask/<name>.zip`` (id > 0) against ``reference`` masks, the per-frame
    IoUs, and the frames where ours is empty while the reference is not."""
    inter = union = tp_fp = tp_fn = 0
    per_frame, empty = [], []
    for i, m in store.iter_masks(name, sorted(reference)):
        p, g = m > 0, reference[i]
        it, un = int((p & g).sum()), int((p | g).sum())
        inter, union = inter + it, union + un
        tp_fp, tp_fn = tp_fp + int(p.sum()), tp_fn + int(g.sum())
        per_frame.append(it / un if un else 1.0)
        if g.any() and not p.any():
            empty.append(i)
    return {"iou": inter / union if union else 1.0, "precision": inter / tp_fp if tp_fp else 1.0,
            "recall": inter / tp_fn if tp_fn else 1.0, "per_frame_iou": per_frame,
            "frames_below_0.5": int(np.sum(np.asarray(per_frame) < 0.5)), "empty_frames": empty,
            "frames": len(per_frame)}


def mask_rows(store: ArtifactStore, name: str, label: str = "dog-example", suite: str = "real") -> list[dict]:
    """Benchmark rows: IoU of our moving-object masks against the independent dog mask."""
    ref = reference_dog_masks(store, name)
    m = mask_agreement(store, name, ref)
    log.info("mask agreement %s: %s", name, {k: v for k, v in m.items() if k != "per_frame_iou"})
    return [make_row(suite, f"{label}: moving-object mask IoU vs independent flow/homography dog mask", m["iou"],
                     "IoU", ">= 0.6", f"{m['frames']} frames, pooled; precision {m['precision']:.3f}, recall "
                     f"{m['recall']:.3f}; {m['frames_below_0.5']} frames below IoU 0.5, {len(m['empty_frames'])} "
                     f"with an empty mask")]
