"""The one-generation rule of io/generation.py: stamps, records, checks, unversioned files; shared checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vipe_dagster.errors import ArtifactError, VideoError
from vipe_dagster.io import ArtifactStore
from vipe_dagster.io import generation as G
from vipe_dagster.io.checks import check_counts, check_intrinsics, check_poses, check_rigid

N, H, W = 5, 16, 24


def _write_set(store: ArtifactStore, name: str = "s", n: int = N) -> None:
    store.write_rgb(name, [np.full((H, W, 3), 20 * i, np.uint8) for i in range(n)], fps=10)
    store.write_pose(name, np.tile(np.eye(4), (n, 1, 1)), valid=np.ones(n, bool))
    store.write_intrinsics(name, np.tile([30.0, 30.0, W / 2, H / 2], (n, 1)))
    store.write_depth(name, [np.ones((H, W), np.float32)] * n)
    store.write_masks(name, [np.zeros((H, W), np.uint8)] * n, {1: "dog"})
    store.write_info(name, {"ba_residual": 0.1})


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "art"))
    return ArtifactStore(request.getfixturevalue("s3_root"))


def test_every_file_is_stamped_and_recorded(store):
    _write_set(store)
    rep = store.check_set("s")
    gen = rep.generation
    assert gen and set(rep.stamps) == {"rgb", "pose", "intrinsics", "depth", "mask", "info"}
    assert set(rep.stamps.values()) == {gen}
    assert rep.counts == {"rgb": N, "pose": N, "intrinsics": N, "depth": N, "mask": N}
    rec = store.generation_record("s")
    kinds = {"rgb", "pose", "intrinsics", "camera", "depth", "mask", "phrases", "info"}
    assert set(rec["artifacts"]) == kinds
    assert rec["frames"] == N and all(len(e["sha256"]) == 64 for e in rec["artifacts"].values())
    assert set(rec["artifacts"]["depth"]["inputs"]) == {"pose", "intrinsics"}
    assert set(rec["artifacts"]["mask"]["inputs"]) == {"pose", "intrinsics", "depth"}
    # ViPE's readers see exactly their layout: the stamp is an extra array / zip comment / mp4 tag
    assert store.read_info("s") == {"ba_residual": 0.1}
    data, inds = store.read_pose("s")
    assert data.shape == (N, 4, 4) and inds.tolist() == list(range(N))


def test_stage_manifest_writes_keep_the_record(store):
    _write_set(store)
    stale_copy = store.read_manifest("s")
    stale_copy.pop("generation")
    store.write_manifest("s", {**stale_copy, "note": "a stage's section"})  # e.g. run_pose's manifest write
    assert store.read_manifest("s")["generation"] == store.generation_record("s")
    assert store.check_set("s").ok


def test_new_generation_replaces_the_old_set(tmp_path):
    store = ArtifactStore(str(tmp_path))
    _write_set(store)
    old = store.generation_record("s")["id"]
    new = store.begin_generation("s")
    assert store.generation_record("s")["id"] == old  # nothing published before the first file is in place
    store.write_rgb("s", [np.zeros((H, W, 3), np.uint8)] * 3, fps=10)
    rec = store.generation_record("s")
    assert rec["id"] == new and set(rec["artifacts"]) == {"rgb"} and rec["frames"] == 3
    for kind in ("pose", "intrinsics", "camera", "depth", "mask", "phrases", "info"):
        assert not store.exists(kind, "s"), kind
    assert store.read_manifest("s")["superseded"]["generation"] == old
    assert store.check_set("s").ok


def test_mixed_generations_are_refused_with_both_ids(tmp_path):
    a, b = ArtifactStore(str(tmp_path / "a")), ArtifactStore(str(tmp_path / "b"))
    _write_set(a)
    _write_set(b)
    ga, gb = a.generation_record("s")["id"], b.generation_record("s")["id"]
    shutil.copy(b.path("pose", "s"), a.path("pose", "s"))
    with pytest.raises(G.GenerationError) as ei:
        a.check_set("s")
    msg = str(ei.value)
    assert f"pose/s.npz belongs to generation {gb}" in msg and f"expects generation {ga}" in msg
    # only the kinds a consumer reads are judged
    assert a.check_set("s", ("rgb",)).ok
    # without a record the stamps must still agree with each other
    (tmp_path / "a" / "vipe" / "s_manifest.json").unlink()
    rep = G.check_set(a, "s")
    assert not rep.ok and ga in rep.problems[0] and gb in rep.problems[0]


def test_small_files_are_checked_against_their_recorded_hash(tmp_path):
    store = ArtifactStore(str(tmp_path))
    _write_set(store)
    p = tmp_path / "intrinsics" / "s_camera.txt"
    p.write_text(p.read_text().replace("PINHOLE", "MEI"))
    rep = G.check_set(store, "s")
    assert not rep.ok and "s_camera.txt changed after generation" in rep.problems[0]


def test_counts_are_strict_for_versioned_sets_and_a_warning_for_released_data(tmp_path):
    store = ArtifactStore(str(tmp_path / "ours"))
    _write_set(store)
    store.write_depth("s", [np.ones((H, W), np.float32)] * (N - 1))
    with pytest.raises(ArtifactError, match=r"frame counts disagree: .*depth/s\.zip has 4 frames"):
        store.check_set("s", ("rgb", "pose", "depth"))
    legacy = ArtifactStore(str(tmp_path / "released"), versioned=False)
    _write_set(legacy)
    legacy.write_rgb("s", [np.zeros((H, W, 3), np.uint8)] * (N + 1), fps=10)  # the known dataset defect
    rep = legacy.check_set("s")
    assert rep.ok and not rep.versioned and "frame counts disagree" in rep.warnings[0]
    assert not (tmp_path / "released" / "vipe" / "s_manifest.json").exists()


def test_unversioned_inputs_with_one_versioned_output(tmp_path):
    """A released dataset (no stamps) extended by our depth stage stays readable."""
    legacy = ArtifactStore(str(tmp_path), versioned=False)
    _write_set(legacy)
    ours = ArtifactStore(str(tmp_path))
    ours.write_depth("s", [np.full((H, W), 2.0, np.float32)] * N)
    rep = ours.check_set("s")
    assert rep.ok and rep.stamps["depth"] == rep.generation and rep.stamps["pose"] is None


def test_malformed_record_is_an_error(tmp_path):
    store = ArtifactStore(str(tmp_path))
    _write_set(store)
    p = tmp_path / "vipe" / "s_manifest.json"
    m = json.loads(p.read_text())
    m["generation"] = "oops"
    p.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="'generation' must be an object"):
        store.check_set("s")


# ---------------------------------------------------------------------- shared checks
def test_check_poses_rules():
    c2w = np.tile(np.eye(4), (6, 1, 1))
    assert check_poses(c2w, "p").ok
    bad = c2w.copy()
    bad[1, 0, 0] = np.nan
    bad[2, :3, :3] *= 2
    bad[3, 3, 0] = 1.0
    bad[4, :3, 0] *= -1  # reflection
    pc = check_poses(bad, "p.npz")
    assert pc.finite.tolist() == [True, False, True, True, True, True]
    assert pc.orthonormal.tolist() == [True, False, False, True, False, True]
    assert pc.bottom_row.tolist()[3] is False
    assert pc.problems[0].startswith("p.npz frame 1: pose is not finite")
    assert "frame 2: rotation is not orthonormal" in pc.problems[1] and "1 more frame" in pc.problems[1]
    # frames flagged invalid are not judged, and never usable
    valid = np.array([True, False, False, False, False, True])
    pc = check_poses(bad, "p.npz", valid=valid)
    assert pc.ok and pc.usable.tolist() == [True, False, False, False, False, True]
    with pytest.raises(ArtifactError, match="strictly increasing"):
        check_poses(c2w, "p", inds=np.array([0, 1, 1, 2, 3, 4])).raise_if_malformed()
    with pytest.raises(ArtifactError, match=r"p: rotation is not orthonormal"):
        check_rigid(bad[2], "p")


def test_check_intrinsics_and_counts():
    intr = np.tile([10.0, 10.0, 5.0, 5.0], (3, 1))
    assert check_intrinsics(intr, "k").ok
    intr[2, 1] = -1
    ic = check_intrinsics(intr, "k.npz")
    assert not ic.ok and ic.problems[0].startswith("k.npz: frame 2 has intrinsics")
    assert not check_intrinsics(intr, "k", camera_types=["PINHOLE", "PINHOLE", "PANORAMA"]).ok  # not zeros
    intr[2] = 0.0
    assert check_intrinsics(intr, "k", camera_types=["PINHOLE", "PINHOLE", "PANORAMA"]).ok
    assert check_counts({"a": 3, "b": 3, "c": None}, "s") == []
    assert "frame counts disagree: a has 3 frames, b has 4 frames" in check_counts({"a": 3, "b": 4}, "s")[0]


def test_failed_ingest_keeps_the_previous_set(tmp_path):
    """A re-ingest that fails while writing the rgb (decode error, kill) leaves the old set untouched."""
    from vipe_dagster.ingest import ingest_video

    store = ArtifactStore(str(tmp_path))
    _write_set(store)
    old = store.generation_record("s")["id"]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(VideoError):
        ingest_video(str(bad), store, name="s")
    with pytest.raises(RuntimeError):
        store.begin_generation("s")
        with store.rgb_writer("s", fps=10) as w:
            w.add(np.zeros((H, W, 3), np.uint8))
            raise RuntimeError("decode failed mid-way")
    store.abort_generation("s")
    assert store.generation_record("s")["id"] == old and store.check_set("s").ok
    store.write_pose("s", np.tile(np.eye(4), (N, 1, 1)))  # later writes join the old set, nothing is purged
    assert store.generation_record("s")["id"] == old and store.exists("depth", "s")
