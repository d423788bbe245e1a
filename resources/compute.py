"""Compute device resource: CPU or CUDA, and the size of the ``gpu`` pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import dagster as dg
from pydantic import Field

from vipe_dagster import devices


def cuda_device_count() -> int:
    return devices.cuda_device_count()


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

    @contextlib.contextmanager
    def step_device(self, key: str) -> Iterator[str]:
        """The device of one ``gpu``-pool step, held while the block runs: ``cpu``, or one ``cuda:<n>`` per
        step on a multi-GPU host (``VIPE_CUDA_DEVICE`` from the deployment, else claimed round-robin from the
        partition key; see ``vipe_dagster.devices``)."""
        dev = self.resolved_device()
        with devices.claim_device(key, want_cuda=dev == "cuda") as claim:
            yield claim.device

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


def resources() -> dict[str, ComputeResource]:
    """Default resource; ``VIPE_DEVICE`` / ``VIPE_GPU_POOL_SIZE`` are read when the definitions are built."""
    return {"compute": ComputeResource(device=os.environ.get("VIPE_DEVICE") or "auto",  # type: ignore[arg-type]
                                       gpu_pool_size=_env_int("VIPE_GPU_POOL_SIZE"))}
