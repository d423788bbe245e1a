"""CUDA against CPU on small inputs (the checks of scripts/gpu_bench.sh); skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from vipe_dagster.eval import gpu_bench

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_bundle_adjustment_on_cuda_matches_cpu():
    c = gpu_bench.check_ba("cuda")
    assert c.status == "pass", c.detail


def test_plane_sweep_on_cuda_matches_cpu():
    c = gpu_bench.check_plane_sweep("cuda")
    assert c.status == "pass", c.detail


def test_splat_on_cuda_matches_cpu():
    c = gpu_bench.check_splat("cuda")
    assert c.status == "pass", c.detail


def test_ego_render_on_cuda_matches_cpu(tmp_path):
    c = gpu_bench.check_render("cuda", tmp_path)
    assert c.status == "pass", c.detail
