"""Evaluation: trajectory/depth/focal metrics against ground truth, and the benchmark harness."""

from .metrics import ate, depth_metrics, focal_error, mask_metrics, rpe, umeyama

__all__ = ["ate", "depth_metrics", "focal_error", "mask_metrics", "rpe", "umeyama"]
