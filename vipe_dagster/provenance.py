"""Code provenance: a version per pipeline stage derived from the source it runs, and the git commit.

Hand-bumped version strings go stale (the pose engine changed in 32 commits while its Dagster code version
stayed ``pose.1``). Here each stage's code version is the package version plus a digest of the source files
that stage executes, so any change to them marks the stage's Dagster partitions stale, and nothing to bump.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from . import __version__

ROOT = Path(__file__).resolve().parents[1]

# the source each stage runs (files or folders of .py files, relative to the repository root); shared
# infrastructure (io, config, the camera models) is part of every stage
_COMMON = ("vipe_dagster/io", "vipe_dagster/config.py", "vipe_dagster/errors.py", "vipe_dagster/camera")
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "ingest": ("vipe_dagster/ingest.py",),
    "pose": ("vipe_dagster/slam", "vipe_dagster/pipeline.py", "gpu_kernels/ba.py", "gpu_kernels/lie.py"),
    "depth": ("vipe_dagster/depth", "gpu_kernels/plane_sweep.py"),
    "masks": ("vipe_dagster/masks",),
    "colmap": ("vipe_dagster/export",),
    "ego_render": ("vipe_dagster/render", "vipe_dagster/egoexo", "gpu_kernels/splat.py", "gpu_kernels/cameras.py"),
    "best_ego_view": ("vipe_dagster/render", "vipe_dagster/egoexo"),
    "exo_video": ("vipe_dagster/registry.py", "vipe_dagster/egoexo/takes.py"),
    "exo_inference": ("vipe_dagster/egoexo", "vipe_dagster/depth/mvs.py", "vipe_dagster/depth/config.py",
                      "gpu_kernels/plane_sweep.py"),
}


def _files(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for rel in paths:
        p = ROOT / rel
        out += sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])
    return sorted(set(out))


@functools.cache
def source_digest(stage: str) -> str:
    """First 10 hex digits of sha256 over the stage's source files (relative path + bytes)."""
    if stage not in STAGE_SOURCES:
        raise KeyError(f"unknown stage {stage!r}; known: {', '.join(STAGE_SOURCES)}")
    h = hashlib.sha256()
    for f in _files(STAGE_SOURCES[stage] + _COMMON):
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def code_version(stage: str) -> str:
    """``<package version>+<stage>.<source digest>``: changes whenever the stage's code does."""
    return f"{__version__}+{stage}.{source_digest(stage)}"


@functools.cache
def git_sha() -> str | None:
    """The checked-out commit (with ``-dirty`` when tracked files differ), or None outside a git clone."""
    if not (ROOT / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")
