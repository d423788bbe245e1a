"""One manifest section per stage, written by that stage only (issue 22 part 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from vipe_dagster.io.artifacts import ArtifactStore
from vipe_dagster.io.manifest import SECTION_OWNERS
from vipe_dagster.provenance import code_version

ROOT = Path(__file__).resolve().parents[2]


def _store(tmp_path) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path / "out"))
    store.write_pose("s", np.tile(np.eye(4, dtype=np.float32), (3, 1, 1)), inds=np.arange(3))
    return store


def test_stages_keep_each_others_sections(tmp_path):
    store = _store(tmp_path)
    store.update_manifest("s", "pose", {"pose": {"scale": "relative", "keyframes": [0, 2]}},
                          timings={"pose_s": 1.5})
    store.update_manifest("s", "depth", {"depth": {"method": "mvs"}}, timings={"depth_s": 2.0})
    man = store.read_manifest("s")
    assert man["scale"] == "relative" and man["pose"]["keyframes"] == [0, 2]
    store.update_manifest("s", "metric_scale", {"scale_source": {"scale": "metric", "factor": 2.0}})
    man = store.read_manifest("s")
    assert man["scale"] == "metric"  # derived, never written by a stage
    assert man["pose"] == {"scale": "relative", "keyframes": [0, 2]} and man["depth"] == {"method": "mvs"}
    assert man["timings"] == {"pose_s": 1.5, "depth_s": 2.0}
    assert man["stages"]["depth"]["code_version"] == code_version("depth")
    assert man["stages"]["pose"]["sections"] == ["pose"]
    # the generation record survives section updates (readers check the set against it)
    store.check_set("s", ("pose",))


@pytest.mark.parametrize("stage, sections, timings, word", [
    ("depth", {"pose": {}}, {}, "may not write section"),
    ("depth", {"depth": {}}, {"pose_s": 1.0}, "may only write timings named depth_"),
    ("colmap", {"scale": "metric"}, {}, "may not write section"),
    ("nonsense", {}, {}, "unknown manifest stage"),
])
def test_a_stage_cannot_write_another_stages_section(tmp_path, stage, sections, timings, word):
    store = _store(tmp_path)
    store.update_manifest("s", "pose", {"pose": {"scale": "relative"}})
    before = store.read_manifest("s")
    with pytest.raises(ValueError, match=word):
        store.update_manifest("s", stage, sections, timings=timings)
    assert store.read_manifest("s") == before  # nothing written


# files allowed to write a whole manifest: the stage that creates it, the GT generator, the store itself, and the
# virtual views of wide_angle / panorama (each creates a new temporary sequence of remapped frames in its own store)
_WHOLE_MANIFEST_WRITERS = {"vipe_dagster/ingest.py", "vipe_dagster/synth/generate.py", "vipe_dagster/io/artifacts.py",
                           "vipe_dagster/virtual_views.py"}


def test_only_the_creating_stage_writes_a_whole_manifest():
    offenders = []
    for top in ("vipe_dagster", "assets_defs", "resources"):
        for f in sorted((ROOT / top).rglob("*.py")):
            rel = str(f.relative_to(ROOT))
            for node in ast.walk(ast.parse(f.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("write_manifest", "_write_manifest_raw")
                        and rel not in _WHOLE_MANIFEST_WRITERS):
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"write through ArtifactStore.update_manifest(name, stage, ...): {offenders}"


def test_every_section_has_one_owner_except_the_documented_restatement():
    owners: dict[str, list[str]] = {}
    for stage, keys in SECTION_OWNERS.items():
        for k in keys:
            owners.setdefault(k, []).append(stage)
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}
