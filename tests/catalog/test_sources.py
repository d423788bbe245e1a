from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from catalog_fakes import trajectory

from vipe_dagster.catalog.build import build_catalog, query_arrow
from vipe_dagster.catalog.download import download
from vipe_dagster.catalog.errors import OfflineError, SourceError
from vipe_dagster.catalog.sources import DATASETS, dataset_spec, open_source
from vipe_dagster.io import ArtifactStore


def test_registry():
    assert {s.prefix for s in DATASETS.values()} == {"dpsp", "wsdg", "w360"}
    assert dataset_spec("w360") is dataset_spec("nvidia/vipe-web360") is DATASETS["web360"]
    assert DATASETS["dynpose-100kpp"].expected_columns == (
        "sequence", "num_frames", "tar_name", "youtube_link", "youtube_timestamp")
    assert DATASETS["wild-sdg-1m"].license == "CC-BY-NC-4.0" and DATASETS["web360"].license == "CC-BY-4.0"


def test_local_source_reads_meta_and_payload(small_repos):
    src = open_source(str(small_repos["web360"].root))
    assert src.kind == "local" and src.spec is DATASETS["web360"]  # from the folder name
    meta = src.read_meta()
    assert meta.get_column("sequence").to_list() == ["100001", "100002"]  # int sequences become text
    assert meta.get_column("dataset").unique().to_list() == ["web360"]
    listing = src.list_payload()
    assert sorted(listing.get_column("attribute").to_list()) == ["depth", "intrinsics", "pose"]
    assert src.data_version() == "sha256:" + hashlib.sha256(
        (small_repos["web360"].root / "meta.parquet").read_bytes()).hexdigest()
    same = open_source(f"file://{small_repos['web360'].root}")
    assert same.root == src.root and same.read_meta().equals(meta)


def test_bad_sources(tmp_path, small_repos):
    with pytest.raises(SourceError, match="neither a known dataset"):
        open_source("no-such-dataset")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "absent"))
    broken = tmp_path / "broken"
    shutil.copytree(small_repos["dynpose-100kpp"].root, broken)
    import polars as pl

    pl.read_parquet(broken / "meta.parquet").drop("youtube_link").write_parquet(broken / "meta.parquet")
    with pytest.raises(SourceError, match=r"Dynpose-100K\+\+ meta lacks column\(s\) \['youtube_link'\]"):
        open_source(str(broken)).read_meta()
    (broken / "meta.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="meta.parquet: not a readable parquet"):
        open_source(str(broken)).read_meta()
    with pytest.raises(SourceError, match="hf:// sources only"):
        open_source(str(small_repos["web360"].root), revision="main")


def _fake_hf_cache(cache: Path, repo_dir: Path, repo_id: str, sha: str) -> None:
    base = cache / ("datasets--" + repo_id.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(sha)
    shutil.copytree(repo_dir, base / "snapshots" / sha)


def test_hf_offline_uses_pinned_cached_snapshot(tmp_path, small_repos, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    _fake_hf_cache(cache, small_repos["web360"].root, "nvidia/vipe-web360", sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    def no_network(*a, **k):
        raise AssertionError("the Hub was contacted although HF_HUB_OFFLINE=1")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", no_network)
    src = open_source("web360")
    assert src.kind == "hf-cache" and src.revision == sha and src.data_version() == sha
    assert src.uri == f"hf://datasets/nvidia/vipe-web360@{sha}"
    assert src.read_meta().height == 2
    rep = download(src, "w360", "pose", tmp_path / "out")
    assert rep.shards[0].status == "extracted" and rep.shards[0].complete
    np.testing.assert_allclose(ArtifactStore(str(tmp_path / "out")).read_pose("100001")[0], trajectory(70), atol=1e-6)
    assert open_source(f"hf://datasets/nvidia/vipe-web360@{sha}").revision == sha
    with pytest.raises(OfflineError, match="revision v2 of nvidia/vipe-web360 was never cached"):
        open_source("hf://datasets/nvidia/vipe-web360", revision="v2")
    with pytest.raises(OfflineError, match="snapshot"):
        open_source("web360", revision="f" * 40)


def test_hf_online_path_is_pinned_to_revision_sha(monkeypatch):
    """Offline we cannot reach the Hub; check the HfFileSystem path is pinned to the resolved sha."""
    from huggingface_hub import HfApi, HfFileSystem

    sha = "fedcba9876543210fedcba9876543210fedcba98"
    calls = []

    class Info:
        def __init__(self, s):
            self.sha = s

    def fake_info(self, repo_id, revision=None, **kw):
        calls.append((repo_id, revision))
        return Info(sha)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "dataset_info", fake_info)
    src = open_source("wild-sdg-1m", revision="main")
    assert calls == [("nvidia/vipe-wild-sdg-1m", "main")]
    assert isinstance(src.fs, HfFileSystem) and src.kind == "hf" and src.data_version() == sha
    assert src.meta_path() == f"datasets/nvidia/vipe-wild-sdg-1m@{sha}/meta.parquet"
    assert src.shard_path("wsdg-003e2c86", "pose") == f"datasets/nvidia/vipe-wild-sdg-1m@{sha}/payload/wsdg-003e2c86/pose.tar"
    with pytest.raises(SourceError, match=r"dataset\* repos"):
        open_source("hf://spaces/nvidia/vipe")


@pytest.mark.s3
def test_s3_mirror_same_code_path(s3_env, small_repos, wsdg_repo, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_env}, key="testing", secret="testing")
    fs.mkdir("vipe-mirror")
    fs.put(str(wsdg_repo.root), "vipe-mirror/wsdg", recursive=True)
    src = open_source("s3://vipe-mirror/wsdg")
    assert src.kind == "s3" and src.spec is DATASETS["wild-sdg-1m"]
    assert src.data_version().startswith("etag:")
    assert src.read_meta().height == 8
    rep = download(src, "wsdg-a2de74e8", "pose,depth", tmp_path / "out")
    by = {s.attribute: s for s in rep.shards}
    assert by["pose"].status == "extracted" and not by["pose"].complete and by["pose"].sequences_found == 2
    assert by["pose"].sha256 == hashlib.sha256(
        (wsdg_repo.root / "payload/wsdg-a2de74e8/pose.tar").read_bytes()).hexdigest()
    assert by["depth"].complete
    bad = download(src, "wsdg-0000bad1", "depth", tmp_path / "out")
    assert bad.shards[0].status == "rejected"
    # the extracted folder, mirrored to S3, is catalogued as an artifact root too
    fs.put(str(tmp_path / "out"), "vipe-mirror/extracted", recursive=True)
    res = build_catalog(["s3://vipe-mirror/wsdg"], ["s3://vipe-mirror/extracted"], tmp_path / "c.duckdb")
    assert res.counts["videos"] == 8 and res.counts["video_stats"] == 3
    stats = query_arrow(tmp_path / "c.duckdb", "SELECT sequence, pose_frames, depth_frames, path_length, root "
                                               "FROM video_stats ORDER BY sequence").to_pylist()
    assert [(r["pose_frames"], r["depth_frames"]) for r in stats] == [(28, 28), (29, 29), (None, 26)]
    assert stats[0]["path_length"] == pytest.approx(0.1 * 27, rel=1e-5)
    assert {r["root"] for r in stats} == {"s3://vipe-mirror/extracted"}
    row = query_arrow(tmp_path / "c.duckdb", "SELECT remote_path, local_status FROM shards WHERE tar_name = "
                                             "'wsdg-a2de74e8' AND attribute = 'pose'").to_pylist()[0]
    assert row == {"remote_path": "s3://vipe-mirror/wsdg/payload/wsdg-a2de74e8/pose.tar", "local_status": "incomplete"}


def test_spec_inferred_from_tar_prefix(tmp_path, small_repos):
    odd = tmp_path / "mirror-of-something"
    shutil.copytree(small_repos["web360"].root, odd)
    src = open_source(str(odd))
    assert src.spec is None
    src.read_meta()
    assert src.spec is DATASETS["web360"] and src.name == "web360"


def test_hf_filesystem_against_a_local_fake_hub(small_repos, tmp_path, monkeypatch):
    """The real hf:// path (HfApi + HfFileSystem) against a Hub-API server on 127.0.0.1."""
    from catalog_fakes import FakeHub

    sha = "1111111111111111111111111111111111111111"
    hub = FakeHub({"nvidia/vipe-web360": (small_repos["web360"].root, sha)})
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        src = open_source("web360")
        from huggingface_hub import HfFileSystem

        assert isinstance(src.fs, HfFileSystem) and src.revision == sha and src.kind == "hf"
        assert src.read_meta().get_column("sequence").to_list() == ["100001", "100002"]
        assert sorted(src.list_payload().get_column("attribute")) == ["depth", "intrinsics", "pose"]
        rep = download(src, "w360-a6680dd8", "pose,rgb", tmp_path / "out")
        by = {s.attribute: s for s in rep.shards}
        assert by["pose"].status == "extracted" and by["pose"].complete and by["rgb"].status == "missing"
        tar = small_repos["web360"].root / "payload/w360-a6680dd8/pose.tar"
        assert by["pose"].sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()
        # every file read went to the pinned commit, never to a moving branch name
        reads = [r for r in hub.requests if "/resolve/" in r]
        assert reads and all(f"/resolve/{sha}/" in r for r in reads)
        res = build_catalog([src], [str(tmp_path / "out")], tmp_path / "c.duckdb")
        assert res.data_versions == {"web360": sha}
        row = query_arrow(tmp_path / "c.duckdb", "SELECT data_version, source_uri FROM datasets "
                                                 "WHERE name = 'web360'").to_pylist()[0]
        assert row == {"data_version": sha, "source_uri": f"hf://datasets/nvidia/vipe-web360@{sha}"}
        with pytest.raises(SourceError, match="cannot resolve revision v9"):
            open_source("web360", revision="v9")
    finally:
        hub.close()
