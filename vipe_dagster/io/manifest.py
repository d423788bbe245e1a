"""Provenance manifests (``vipe/<n>_manifest.json``): input identity, code, config, versions, timings."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import fs

MANIFEST_SCHEMA = 1
_TRACKED_PACKAGES = ("numpy", "torch", "opencv-python-headless", "av", "OpenEXR", "scipy", "dagster", "duckdb")


def content_hash(uri: str, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's bytes (streamed), or of every file in a folder in name order."""
    fsys, path = fs.get_fs(uri)
    h = hashlib.sha256()
    files = sorted(fsys.find(path)) if fsys.isdir(path) else [path]
    for p in files:
        if fsys.isdir(path):
            h.update(p[len(path):].encode())
        with fsys.open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return f"sha256:{h.hexdigest()}"


def package_versions() -> dict[str, str]:
    out = {}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def base_manifest(input_uri: str, input_hash: str, config: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__
    from ..provenance import git_sha

    return {
        "schema": MANIFEST_SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "input": {"uri": str(input_uri), "hash": input_hash},
        "code_version": __version__,
        "git_sha": git_sha(),
        "config": config,
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
    }


# Each top-level manifest section is written by one stage (its owner); a stage updates only its sections
# (ArtifactStore.update_manifest), so no stage can overwrite or drop what another recorded. ``timings`` is shared
# as a table whose keys carry the writing stage's prefix (``pose_s``, ``depth_s``, ...). ``scale`` is derived.
SECTION_OWNERS: dict[str, frozenset[str]] = {
    # the ingest stage creates the manifest (base_manifest + the frames it wrote) and owns those sections
    "ingest": frozenset({"request", "partition", "input", "camera"}),  # camera: a lens rectified at ingest
    "pose": frozenset({"pose"}),
    "metric_scale": frozenset({"scale_source"}),
    "depth": frozenset({"depth"}),
    "colmap": frozenset({"colmap_export"}),
    # the reference-compatible output size rewrites the rgb at the source size, so it restates ``frames``
    "output_resolution": frozenset({"output_resolution", "frames"}),
    "pipeline": frozenset({"pipeline", "preset", "slam_map", "rig_depth", "peak_rss_mb"}),
}
TIMING_PREFIX = {"ingest": "ingest", "pose": "pose", "metric_scale": "metric_scale", "depth": "depth",
                 "colmap": "colmap", "output_resolution": "output_resolution", "pipeline": "pipeline"}
# what only the orchestrator can measure: the mask stage's wall time (it has no manifest writer of its own) and
# every stage's whole-process CPU seconds
_PIPELINE_MEASURED = re.compile(r"^(masks_s|[a-z_]+_cpu_s)$")


def derive_sections(manifest: dict[str, Any]) -> dict[str, Any]:
    """Fill the derived top-level ``scale``: metric once the metric-scale stage ran, else what the pose stage
    produced (``relative`` when neither says)."""
    src = manifest.get("scale_source")
    pose = manifest.get("pose")
    if isinstance(src, dict) and src.get("scale"):
        manifest["scale"] = src["scale"]
    elif isinstance(pose, dict) and pose.get("scale"):
        manifest["scale"] = pose["scale"]
    return manifest


def check_section_owner(stage: str, sections: dict[str, Any], timings: dict[str, Any]) -> None:
    """Raise ``ValueError`` when ``stage`` writes a section or timing it does not own."""
    if stage not in SECTION_OWNERS:
        raise ValueError(f"unknown manifest stage {stage!r}; known: {', '.join(SECTION_OWNERS)}")
    foreign = sorted(set(sections) - SECTION_OWNERS[stage])
    if foreign:
        owners = {k: [s for s, keys in SECTION_OWNERS.items() if k in keys] for k in foreign}
        raise ValueError(f"manifest stage {stage!r} may not write section(s) {foreign} (owners: {owners})")
    prefix = TIMING_PREFIX[stage] + "_"
    bad = sorted(k for k in timings if not k.startswith(prefix)
                 and not (stage == "pipeline" and _PIPELINE_MEASURED.match(k)))
    if bad:
        raise ValueError(f"manifest stage {stage!r} may only write timings named {prefix}*, got {bad}")
