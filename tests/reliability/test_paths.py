"""Names from data never address a path outside their folder (issue 21, item 1)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rel_helpers import SAMPLE, assert_clean_error, cli, snapshot

from vipe_dagster.egoexo.takes import discover_takes
from vipe_dagster.io import ArtifactStore
from vipe_dagster.io.names import UnsafeNameError, check_sequence_name, check_token, safe_local_join


def _pose_tar(seq: str) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, data=np.tile(np.eye(4, dtype=np.float32), (3, 1, 1)), inds=np.arange(3))
    data = buf.getvalue()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        info = tarfile.TarInfo(f"{seq}.npz")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _mirror(root: Path, rows: list[tuple[str, int, str]]) -> Path:
    mirror = root / "mirror"
    mirror.mkdir(parents=True)
    pl.DataFrame({"sequence": [r[0] for r in rows], "num_frames": [r[1] for r in rows],
                  "tar_name": [r[2] for r in rows]}).write_parquet(mirror / "meta.parquet")
    for seq, _, tar in rows:
        p = mirror / "payload" / tar / "pose.tar"  # for the evil row this lands outside the mirror
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_pose_tar(seq))
    return mirror


def test_traversal_row_in_meta_parquet_writes_nothing_and_names_the_row(tmp_path):
    """The audit's case: tar_name '../../victim' read a tar outside the mirror, staged it outside the output,
    overwrote and deleted the user's file there, and exited 0."""
    mirror = _mirror(tmp_path, [("good_seq", 3, "wsdg-0000aaaa"), ("evil_seq", 3, "../../victim")])
    victim = tmp_path / "victim-pose.tar"  # where <out>/.partial/../../victim-pose.tar resolves
    victim.write_bytes(b"the user's own file")
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    run = cli("download", "--source", mirror, "--attributes", "pose", "--output", out)
    line = assert_clean_error(run, "meta.parquet row 1", "'../../victim'", "not a valid shard name")
    assert "refusing to download anything" in line
    assert victim.read_bytes() == b"the user's own file"
    assert not out.exists()
    assert snapshot(tmp_path) == before


def test_traversal_in_sequence_name_row(tmp_path):
    mirror = _mirror(tmp_path, [("../escape", 3, "wsdg-0000aaaa")])
    before = snapshot(tmp_path)
    run = cli("download", "--source", mirror, "--attributes", "pose", "--output", tmp_path / "out")
    assert_clean_error(run, "row 0", "sequence '../escape'")
    assert snapshot(tmp_path) == before


def test_clean_mirror_still_downloads(tmp_path):
    mirror = _mirror(tmp_path, [("good_seq", 3, "wsdg-0000aaaa")])
    run = cli("download", "--source", mirror, "--attributes", "pose", "--output", tmp_path / "out")
    assert run.rc == 0, run.err
    assert (tmp_path / "out" / "pose" / "good_seq.npz").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["to-colmap", "{res}", "--sequence", "../../etc/passwd"], "is not a valid sequence name"),
    (["infer", str(SAMPLE), "-o", "{out}", "--name", "../evil", "--end_frame", "3"], "--name '../evil'"),
    (["ingest", str(SAMPLE), "-o", "{out}", "--name", ".hidden", "--end_frame", "3"], "starts with '.'"),
])
def test_sequence_names_from_the_command_line(tmp_path, args, fragment):
    res = tmp_path / "res"
    res.mkdir()
    before = snapshot(tmp_path)
    run = cli(*[a.format(res=res, out=tmp_path / "out") for a in args])
    assert_clean_error(run, fragment)
    assert snapshot(tmp_path) == before


def test_render_output_never_leaves_out_dir(tmp_path, egoexo_take):
    out = tmp_path / "renders"
    before = snapshot(tmp_path)
    run = cli("render-ego", "--input_dir", f"{egoexo_take.vipe_dir}/..", "--out_dir", out,
              "--meta_json_path", egoexo_take.meta_json)
    assert_clean_error(run)
    assert snapshot(tmp_path) == before


def test_name_helpers():
    for bad in ("..", ".", "", "a/b", "a\\b", "x\x00", ".tmp-x", " x"):
        with pytest.raises(UnsafeNameError):
            check_sequence_name(bad)
    assert check_sequence_name("My Clip (2)") == "My Clip (2)"  # real file stems stay usable
    assert check_sequence_name("-YouTubeId_1") == "-YouTubeId_1"
    for bad in ("../x", "a b", "-x", "a/..", "x..y"):
        with pytest.raises(UnsafeNameError):
            check_token(bad, "tar_name")
    assert check_token("wsdg-003e2c86", "tar_name") == "wsdg-003e2c86"


def test_safe_local_join_refuses_symlink_escape(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafeNameError, match="outside"):
        safe_local_join(tmp_path / "root", "link", where="test")
    with pytest.raises(UnsafeNameError, match="not a plain"):
        safe_local_join(tmp_path / "root", "..", where="test")
    assert safe_local_join(tmp_path / "root", "ok.txt") == tmp_path / "root" / "ok.txt"


def test_artifact_paths_and_listing_refuse_unsafe_names(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(UnsafeNameError):
        store.path("pose", "../x")
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "..npz").write_bytes(b"")  # would be sequence '.'
    (tmp_path / "pose" / "ok.npz").write_bytes(b"")
    assert store.sequences() == ["ok"]


def test_take_folders_with_unusable_names_are_skipped(tmp_path, egoexo_take):
    import shutil

    root = Path(egoexo_take.root)
    bad = root / "vipe_results" / ".sneaky"
    shutil.copytree(egoexo_take.vipe_dir, bad / "cam01")
    try:
        found = discover_takes(str(root))
        reasons = {t: r for t, c, r in found.skipped}
        assert ".sneaky" in reasons and "starts with '.'" in reasons[".sneaky"]
        assert all(v.take != ".sneaky" for v in found.views)
    finally:
        shutil.rmtree(bad)
