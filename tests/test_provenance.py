"""Stage code versions follow the source the stage runs; the manifest records the git commit."""

from __future__ import annotations

import re
import shutil

import pytest

from vipe_dagster import provenance


def test_code_version_changes_with_the_stage_source(tmp_path, monkeypatch):
    for rel in ("vipe_dagster/slam", "vipe_dagster/depth", "vipe_dagster/io", "vipe_dagster/config.py",
                "vipe_dagster/errors.py", "vipe_dagster/pipeline.py", "gpu_kernels/ba.py", "gpu_kernels/lie.py",
                "gpu_kernels/plane_sweep.py"):
        src, dst = provenance.ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    provenance.source_digest.cache_clear()
    pose0, depth0 = provenance.code_version("pose"), provenance.code_version("depth")
    assert re.fullmatch(r".+\+pose\.[0-9a-f]{10}", pose0)
    with open(tmp_path / "vipe_dagster/slam/system.py", "a") as f:
        f.write("\n# a change\n")
    provenance.source_digest.cache_clear()
    assert provenance.code_version("pose") != pose0  # the pose engine changed: its partitions go stale
    assert provenance.code_version("depth") == depth0  # the depth stage did not
    provenance.source_digest.cache_clear()
    with pytest.raises(KeyError, match="unknown stage"):
        provenance.source_digest("nope")


def test_manifest_records_the_git_commit():
    from vipe_dagster.io.manifest import base_manifest

    sha = base_manifest("x.mp4", "sha256:0", {})["git_sha"]
    if (provenance.ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", sha)
    else:
        assert sha is None
