"""One validation for poses and intrinsics, used by every reader (issue 21, item 3).

The audit: render-ego rendered black frames (rc 0) from NaN/inf poses, translations or focals and from
non-orthonormal rotations, while to-colmap refused the same files; validate passed a non-orthonormal
rotation; the catalog compared no counts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from rel_helpers import assert_clean_error, cli, snapshot

from vipe_dagster.io import ArtifactStore

BAD_POSES = {
    "nan_rotation": lambda c: c.__setitem__((2, 0, 0), np.nan),
    "inf_translation": lambda c: c.__setitem__((2, 1, 3), np.inf),
    "sheared_rotation": lambda c: c.__setitem__((2, slice(0, 3), slice(0, 3)), c[2, :3, :3] * 1.3),
    "reflection": lambda c: c.__setitem__((2, slice(0, 3), 0), -c[2, :3, 0]),
}
EXPECT = {"nan_rotation": "pose is not finite", "inf_translation": "pose is not finite",
          "sheared_rotation": "rotation is not orthonormal", "reflection": "rotation is not orthonormal"}


def _unversioned_copy(src: str, dst: Path) -> tuple[ArtifactStore, str]:
    """The take's exo result rewritten the way ViPE writes files (no generation stamps), so that an edited
    pose file is judged by the pose rules alone."""
    shutil.copytree(src, dst)
    for p in dst.rglob("*_manifest.json"):
        p.unlink()
    store = ArtifactStore(str(dst), versioned=False)
    name = store.sequences()[0]
    store.write_pose(name, *store.read_pose(name))
    intr, inds, _ = store.read_intrinsics(name)
    store.write_intrinsics(name, intr, inds)
    store.write_depth(name, [d for _, d in ArtifactStore(str(dst)).iter_depth(name)])
    store.write_rgb(name, [f for _, f in ArtifactStore(str(dst)).open_rgb(name)], fps=30)
    return store, name


@pytest.fixture
def exo(egoexo_take, tmp_path):
    return _unversioned_copy(egoexo_take.vipe_dir, tmp_path / "t" / "cam01")


@pytest.mark.parametrize("case", sorted(BAD_POSES))
def test_render_ego_and_to_colmap_refuse_the_same_bad_pose(exo, egoexo_take, tmp_path, case):
    store, name = exo
    c2w, inds = store.read_pose(name)
    c2w = c2w.astype(np.float64)
    BAD_POSES[case](c2w)
    store.write_pose(name, c2w, inds)
    out = tmp_path / "renders"
    before = snapshot(tmp_path)
    run = cli("render-ego", "--input_dir", store.root, "--out_dir", out, "--meta_json_path",
              egoexo_take.meta_json, "--resolution", "64", "--fish_eye_rendering")
    line = assert_clean_error(run, f"pose/{name}.npz frame 2", EXPECT[case])
    assert snapshot(tmp_path) == before
    run = cli("to-colmap", store.root, "--sequence", name, "-o", tmp_path / "colmap", "--no_manifest")
    assert assert_clean_error(run, f"pose/{name}.npz frame 2", EXPECT[case]) == line  # one rule, one message
    assert snapshot(tmp_path) == before
    # validate fails it too, and so does the catalog
    run = cli("validate", store.root, "--require", "pose")
    assert run.rc == 1 and "Traceback" not in run.err
    assert any(ln.startswith("FAIL") and "frame 2" in ln for ln in run.out.splitlines()), run.out
    db = tmp_path / "c.duckdb"
    assert cli("catalog", "build", "--artifacts", store.root, "--db", db).rc == 0
    with duckdb.connect(str(db), read_only=True) as con:
        ok, problems = con.execute("SELECT pose_valid, problems FROM video_stats").fetchone()
    assert ok is False and "frame 2" in problems


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -100.0])
def test_bad_focal_refused_by_render_ego_and_to_colmap(exo, egoexo_take, tmp_path, bad):
    store, name = exo
    intr, inds, _ = store.read_intrinsics(name)
    intr[1, 0] = bad
    store.write_intrinsics(name, intr, inds)
    run = cli("render-ego", "--input_dir", store.root, "--out_dir", tmp_path / "o", "--meta_json_path",
              egoexo_take.meta_json, "--resolution", "64")
    assert_clean_error(run, f"intrinsics/{name}.npz: frame 1 has intrinsics", "fx, fy > 0")
    run = cli("to-colmap", store.root, "--sequence", name, "-o", tmp_path / "c", "--no_manifest")
    assert_clean_error(run, f"intrinsics/{name}.npz: frame 1 has intrinsics")
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_validate_fails_a_non_orthonormal_rotation(exo):
    store, name = exo
    c2w, inds = store.read_pose(name)
    c2w[1, :3, :3] *= 1.01  # the audit's case: passed validate before
    store.write_pose(name, c2w, inds)
    run = cli("validate", store.root, "--require", "pose")
    assert run.rc == 1
    assert any(ln.startswith(f"FAIL {name} pose_orthonormal") and "first frame 1" in ln
               for ln in run.out.splitlines())


def test_frames_flagged_invalid_are_left_out_not_rendered_as_garbage(exo, egoexo_take, tmp_path):
    """Tracking-lost frames (valid=False) hold the last good pose: readers skip them consistently."""
    store, name = exo
    c2w, inds = store.read_pose(name)
    valid = np.ones(len(c2w), bool)
    valid[1] = False
    c2w[1] = np.nan  # a flagged frame's values are not read
    store.write_pose(name, c2w, inds, valid=valid)
    run = cli("render-ego", "--input_dir", store.root, "--out_dir", tmp_path / "o", "--meta_json_path",
              egoexo_take.meta_json, "--resolution", "64")
    assert run.rc == 0, run.err[-2000:]
    meta = json.loads(next(Path(tmp_path / "o").rglob("render_meta.json")).read_text())
    assert meta["exo_frames_flagged_invalid"] == [1]
    run = cli("to-colmap", store.root, "--sequence", name, "-o", tmp_path / "c", "--no_manifest")
    assert run.rc == 0, run.err[-2000:]
    stats = json.loads((tmp_path / "c" / "export_stats.json").read_text())
    assert stats["num_images"] == len(c2w) - 1 and "flagged invalid" in " ".join(stats["notes"])
    run = cli("validate", store.root, "--require", "pose")
    assert run.rc == 0, run.out


def test_catalog_counts_every_attribute(exo, tmp_path):
    store, name = exo
    store.write_masks(name, [np.zeros((8, 8), np.uint8)] * 3, {})  # 3 masks for a 4-frame sequence
    db = tmp_path / "c.duckdb"
    assert cli("catalog", "build", "--artifacts", store.root, "--db", db).rc == 0
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT rgb_frames, pose_frames, intrinsics_frames, depth_frames, mask_frames, "
                          "frame_counts_agree, problems FROM video_stats").fetchone()
        tests = con.execute("SELECT count(*) FROM artifacts "
                            "WHERE attribute = 'mask' AND frame_count = 3").fetchone()
    assert row[:6] == (4, 4, 4, 4, 3, False) and "frame counts disagree" in row[6]
    assert tests == (1,)
