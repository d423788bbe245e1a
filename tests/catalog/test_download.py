from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from catalog_fakes import WSDG_SEQS, trajectory

from vipe_dagster.catalog.download import STATE_FILE, download, member_target, parse_attributes, select_shards
from vipe_dagster.catalog.errors import SourceError, UnsafeArchiveError
from vipe_dagster.catalog.sources import open_source
from vipe_dagster.cli import main
from vipe_dagster.io import ArtifactStore


def _tree(p: Path) -> set[str]:
    return {str(x.relative_to(p)) for x in p.rglob("*")}


def test_prefix_selection_matches_vipe(wsdg_repo):
    meta = open_source(str(wsdg_repo.root)).read_meta()
    assert select_shards(meta, "wsdg").height == meta.height
    one = select_shards(meta, "wsdg-a2de74e8")
    assert set(one["tar_name"].to_list()) == {"wsdg-a2de74e8"} and one.height == 3
    assert set(select_shards(meta, "wsdg-0000").get_column("tar_name").unique()) == {
        "wsdg-00000001", "wsdg-0000bad1", "wsdg-0000bad2"}
    with pytest.raises(SourceError):
        parse_attributes("pose,normals")


def test_download_extracts_flags_truncated_and_resumes(wsdg_repo, tmp_path):
    out = tmp_path / "out"
    rep = download(f"file://{wsdg_repo.root}", "wsdg-a2de74e8", "pose,intrinsics,depth", out)
    by = {(s.tar_name, s.attribute): s for s in rep.shards}
    assert rep.ok
    pose = by[("wsdg-a2de74e8", "pose")]
    assert pose.status == "extracted" and not pose.complete
    assert pose.sequences_found == 2 and pose.sequences_expected == 3
    assert pose.missing_sequences == ["a" * 31 + "3"]
    assert by[("wsdg-a2de74e8", "intrinsics")].complete and by[("wsdg-a2de74e8", "intrinsics")].files == 6
    assert [f"{s.tar_name}/{s.attribute}.tar" for s in rep.incomplete] == ["wsdg-a2de74e8/pose.tar"]
    # extracted files are the real artifacts
    store = ArtifactStore(str(out))
    data, inds = store.read_pose("a" * 31 + "1")
    np.testing.assert_allclose(data, trajectory(28), atol=1e-6)
    assert store.depth_count("a" * 31 + "2") == 29
    # state file records tar and file digests
    state = json.loads((out / STATE_FILE).read_text())
    entry = state["shards"]["wsdg-a2de74e8/pose"]
    import hashlib

    tar_bytes = (wsdg_repo.root / "payload/wsdg-a2de74e8/pose.tar").read_bytes()
    assert entry["tar_sha256"] == hashlib.sha256(tar_bytes).hexdigest()
    assert entry["complete"] is False and entry["expected_sequences"] == 3
    assert not (out / ".partial").exists()

    # resume: everything verifies, nothing downloaded again
    rep2 = download(str(wsdg_repo.root), "wsdg-a2de74e8", ["pose", "intrinsics", "depth"], out)
    assert {s.status for s in rep2.shards} == {"skipped"}
    assert [s.attribute for s in rep2.incomplete] == ["pose"]

    # corrupt one extracted file: the shard is verified, found bad and fetched again
    victim = out / "depth" / ("a" * 31 + "1.zip")
    victim.write_bytes(b"garbage")
    rep3 = download(str(wsdg_repo.root), "wsdg-a2de74e8", "depth", out)
    assert rep3.shards[0].status == "extracted"
    assert store.depth_count("a" * 31 + "1") == 28


def test_malicious_members_rejected_nothing_outside(wsdg_repo, tmp_path):
    out = tmp_path / "deep" / "out"
    before = _tree(tmp_path)
    rep = download(str(wsdg_repo.root), "wsdg-0000bad", "depth,pose", out)
    by = {(s.tar_name, s.attribute): s for s in rep.shards}
    assert not rep.ok
    assert by[("wsdg-0000bad1", "depth")].status == "rejected"
    assert "'..'" in by[("wsdg-0000bad1", "depth")].problems[0]
    assert by[("wsdg-0000bad2", "pose")].status == "rejected"
    assert "symlink" in by[("wsdg-0000bad2", "pose")].problems[0]
    # the good tars of the same shards extracted; the rejected shards wrote nothing at all
    assert by[("wsdg-0000bad1", "pose")].status == "extracted"
    assert not (out / "depth" / ("b" * 31 + "1.zip")).exists()
    assert not (out / "pose" / ("b" * 31 + "2.npz")).exists()
    after = _tree(tmp_path)
    new = after - before
    assert all(p.startswith("deep") for p in new)
    assert not any("escaped" in p or "link" in p for p in new)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    state = json.loads((out / STATE_FILE).read_text())
    assert "wsdg-0000bad1/depth" not in state["shards"]


@pytest.mark.parametrize("kind", ["absolute", "hardlink", "device", "dotdot", "symlink"])
def test_member_target_rejects(kind, tmp_path):
    from catalog_fakes import add_evil_member

    p = tmp_path / "t.tar"
    with tarfile.open(p, "w") as tf:
        add_evil_member(tf, kind)
    with tarfile.open(p) as tf:
        (m,) = tf.getmembers()
        with pytest.raises(UnsafeArchiveError, match="t.tar: member"):
            member_target(m, "pose", "t.tar")


def test_member_target_accepts_plain_and_prefixed():
    ti = tarfile.TarInfo("pose/abc.npz")
    assert member_target(ti, "pose", "x") == "abc.npz"
    assert member_target(tarfile.TarInfo("./abc.npz"), "pose", "x") == "abc.npz"


def test_missing_remote_and_unknown_prefix(small_repos, tmp_path):
    rep = download(str(small_repos["dynpose-100kpp"].root), "dpsp", "rgb,pose", tmp_path / "o")
    by = {s.attribute: s for s in rep.shards}
    assert by["rgb"].status == "missing" and "not hosted" in by["rgb"].problems[0]
    assert by["pose"].status == "extracted" and by["pose"].complete
    with pytest.raises(SourceError, match="no shard .* matches prefix 'wsdg'"):
        download(str(small_repos["dynpose-100kpp"].root), "wsdg", "pose", tmp_path / "o")


def test_cli_download(wsdg_repo, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["download", "--source", str(wsdg_repo.root), "--prefix", "wsdg-00000001",
               "--attributes", "pose,depth", "--output", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {"extracted": 2}
    assert sorted(p.name for p in (out / "pose").iterdir()) == sorted(f"{s}.npz" for s, _ in WSDG_SEQS["wsdg-00000001"])
    rc = main(["download", "--source", str(wsdg_repo.root), "--prefix", "wsdg-0000bad1",
               "--attributes", "depth", "--output", str(out)])
    assert rc == 1


def test_symlinked_attribute_folder_is_refused(wsdg_repo, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "pose").symlink_to(elsewhere)
    rep = download(str(wsdg_repo.root), "wsdg-00000001", "pose", out)
    assert rep.shards[0].status == "rejected" and "symlinked folder" in rep.shards[0].problems[0]
    assert list(elsewhere.iterdir()) == []


def test_interrupted_transfer_resumes_from_partial_bytes(wsdg_repo, tmp_path, monkeypatch):
    import hashlib

    src = open_source(str(wsdg_repo.root))
    tar = wsdg_repo.root / "payload/wsdg-a2de74e8/depth.tar"
    total = tar.stat().st_size
    real_open = src.open
    seeks = []

    class Flaky:
        """Delivers ``limit`` bytes, then fails like a dropped connection."""

        def __init__(self, f, limit):
            self.f, self.limit, self.sent = f, limit, 0

        def seek(self, pos):
            seeks.append(pos)
            return self.f.seek(pos)

        def read(self, n=-1):
            if self.limit is not None and self.sent >= self.limit:
                raise ConnectionResetError("connection reset by peer")
            want = n if self.limit is None else min(n, self.limit - self.sent)
            data = self.f.read(want)
            self.sent += len(data)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    limit = {"n": 4096}
    monkeypatch.setattr(src, "open", lambda path, block_size=None: (
        Flaky(real_open(path), limit["n"]) if path.endswith(".tar") else real_open(path)))
    out = tmp_path / "out"
    rep = download(src, "wsdg-a2de74e8", "depth", out)
    assert rep.shards[0].status == "failed" and "connection reset" in rep.shards[0].problems[0]
    part = out / ".partial" / "wsdg-a2de74e8-depth.tar"
    assert part.stat().st_size == 4096 and not (out / "depth").exists()
    limit["n"] = None
    rep = download(src, "wsdg-a2de74e8", "depth", out)
    assert rep.shards[0].status == "extracted" and rep.shards[0].complete
    assert seeks == [4096]  # only the missing bytes were fetched
    assert rep.shards[0].sha256 == hashlib.sha256(tar.read_bytes()).hexdigest() and rep.shards[0].bytes == total
    assert not (out / ".partial").exists()


def test_second_downloader_on_same_output_is_refused(wsdg_repo, tmp_path):
    import fcntl
    import os

    from vipe_dagster.catalog.errors import DownloadError

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".vipe_download.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another download is writing to"):
            download(str(wsdg_repo.root), "wsdg-00000001", "pose", out)
    finally:
        os.close(fd)
    assert download(str(wsdg_repo.root), "wsdg-00000001", "pose", out).ok
