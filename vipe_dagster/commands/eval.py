"""Compare ViPE-format results (PRED_DIR) with ground truth (GT_DIR): ATE/RPE, focal and depth errors.

Both folders use the artifact layout (pose/, intrinsics/, depth/, ...); a synthetic scene's ground truth
is OUT/gt from `vipe-dagster synth`. Prints a table and optionally writes the metrics as JSON.
"""

from __future__ import annotations

NAME = "eval"
HELP = "evaluate poses, intrinsics and depth against ground truth"


def add_arguments(p) -> None:
    p.add_argument("pred_dir", help="artifact root with the predictions (folder or s3://)")
    p.add_argument("gt_dir", help="artifact root with the ground truth (folder or s3://)")
    p.add_argument("--sequence", action="append", default=None,
                   help="sequence name to evaluate (repeatable; default: every sequence in both)")
    p.add_argument("--json", default=None, help="write the metrics as JSON to this path")
    p.add_argument("--align", default="sim3", choices=("sim3", "se3", "none"),
                   help="trajectory alignment before ATE/RPE")
    p.add_argument("--rpe_delta", "--rpe-delta", dest="rpe_delta", type=int, default=1,
                   help="frame offset of the relative pose error")
    p.add_argument("--depth_align", "--depth-align", dest="depth_align", default="median",
                   choices=("median", "lstsq", "none", "pose"),
                   help="depth scale: per-frame median or least squares, none, or the trajectory's Sim3 scale")
    p.add_argument("--depth_stride", "--depth-stride", dest="depth_stride", type=int, default=1,
                   help="evaluate every k-th depth frame")
    p.add_argument("--static_only", "--static-only", dest="static_only", action="store_true",
                   help="evaluate depth only where the ground-truth instance mask is 0 (static background)")


def run(args) -> int:
    import json

    from ..eval.evaluate import evaluate, format_table
    from ..io import fs

    res = evaluate(args.pred_dir, args.gt_dir, sequences=args.sequence, align=args.align,
                   rpe_delta=args.rpe_delta, depth_align=args.depth_align, depth_stride=args.depth_stride,
                   static_only=args.static_only)
    print(format_table(res))
    if args.json:
        fs.write_text(args.json, json.dumps(_clean(res), indent=2, allow_nan=False))
        print(f"metrics written to {args.json}")
    return 0


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python numbers, NaN/inf to null."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
