"""Compute device resource: CPU or CUDA, and the size of the ``gpu`` pool."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field


def cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


class ComputeResource(dg.ConfigurableResource):
    """Which device engine assets use and how many may run at once.

    Assets that need the accelerator run in the Dagster pool ``gpu``; its limit should equal the
    number of GPUs (``gpu_pool_size``, default: the number of visible CUDA devices, or 1 on a CPU-only
    box so CPU work is serialised the same way). ``vipe-dagster demo``/``ui`` apply it to the instance.
    """

    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto = cuda when a CUDA device is visible, else cpu")
    gpu_pool_size: int | None = Field(
        default=None, description="limit of the 'gpu' pool; default = number of CUDA devices, or 1 without one")
    torch_threads: int | None = Field(default=None, description="torch intra-op threads; default: torch's choice")

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if cuda_device_count() > 0 else "cpu"
        if self.device == "cuda" and cuda_device_count() == 0:
            raise dg.Failure(description="compute.device is 'cuda' but no CUDA device is visible to this run")
        return self.device

    def pool_limit(self) -> int:
        if self.gpu_pool_size is not None:
            return max(1, int(self.gpu_pool_size))
        return max(1, cuda_device_count())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(int(self.torch_threads))


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v else None


RESOURCES = {"compute": ComputeResource(device=os.environ.get("VIPE_DEVICE", "auto"),  # type: ignore[arg-type]
                                        gpu_pool_size=_env_int("VIPE_GPU_POOL_SIZE"))}
