from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from catalog_fakes import FX, STEP, TURN_DEG, H, W, depth_frame, make_repo, trajectory

from vipe_dagster.catalog.build import build_catalog, query, query_arrow, writer_lock
from vipe_dagster.catalog.download import download
from vipe_dagster.catalog.errors import CatalogError, CatalogLockedError, DataTestError, QueryError
from vipe_dagster.catalog.sources import open_source
from vipe_dagster.cli import main
from vipe_dagster.io import ArtifactStore
from vipe_dagster.io.manifest import base_manifest


def _make_own_outputs(root: Path) -> None:
    """Our own ViPE-format outputs: a moving and a static sequence, both with manifests."""
    store = ArtifactStore(str(root))
    n = 12
    store.write_pose("dog-example", trajectory(n))
    store.write_intrinsics("dog-example", np.tile([FX, FX, W / 2, H / 2], (n, 1)))
    store.write_depth("dog-example", (depth_frame() for _ in range(n)))
    m = base_manifest("/videos/dog-example.mp4", "sha256:" + "1" * 64, {"preset": "default"})
    m.update(scale_status="relative", timings={"slam_s": 1.5})
    store.write_manifest("dog-example", m)
    store.write_pose("tripod", np.tile(np.eye(4, dtype=np.float32), (5, 1, 1)))
    store.write_intrinsics("tripod", np.tile([FX, FX, W / 2, H / 2], (5, 1)))
    store.write_manifest("tripod", base_manifest("/videos/tripod.mp4", "sha256:" + "2" * 64, {}))


@pytest.fixture(scope="module")
def catalog(wsdg_repo, small_repos, tmp_path_factory):
    base = tmp_path_factory.mktemp("catalog")
    out = base / "downloads"
    download(str(wsdg_repo.root), "wsdg-a2de74e8", "pose,intrinsics,depth", out)
    download(str(wsdg_repo.root), "wsdg-00000001", "pose,depth", out)
    own = base / "vipe_results"
    _make_own_outputs(own)
    db = base / "cat" / "catalog.duckdb"
    res = build_catalog([f"file://{wsdg_repo.root}", str(small_repos["web360"].root),
                         str(small_repos["dynpose-100kpp"].root)], [str(out), str(own)], db)
    return {"db": db, "res": res, "out": out, "own": own, "base": base}


def q(db, sql):
    return pl.from_arrow(query_arrow(db, sql))


def test_catalog_contents(catalog, wsdg_repo):
    db, res = catalog["db"], catalog["res"]
    assert res.counts["videos"] == 8 + 2 + 1 + 2  # wsdg + web360 + dynpose + 2 local-only
    ds = q(db, "SELECT name, prefix, license, videos, data_version FROM datasets ORDER BY name")
    assert ds.get_column("name").to_list() == ["dynpose-100kpp", "local", "web360", "wild-sdg-1m"]
    assert ds.filter(pl.col("name") == "web360").row(0)[1:4] == ("w360", "CC-BY-4.0", 2)
    meta_sha = hashlib.sha256((wsdg_repo.root / "meta.parquet").read_bytes()).hexdigest()
    assert res.data_versions["wild-sdg-1m"] == f"sha256:{meta_sha}"
    v = q(db, "SELECT * FROM videos WHERE sequence = '123e4567-e89b-12d3-a456-426614174000'").row(0, named=True)
    assert v["dataset"] == "dynpose-100kpp" and v["youtube_timestamp"] == "00:00:01.000-00:00:04.000"
    assert v["rgb_source"] == v["youtube_link"]  # dynpose rgb is not hosted
    w = q(db, "SELECT * FROM videos WHERE sequence = '100001'").row(0, named=True)
    assert w["rgb_source"].endswith("/payload/w360-a6680dd8/rgb.tar") and w["num_frames"] == 70
    local = q(db, "SELECT sequence, num_frames, has_manifest FROM videos WHERE dataset = 'local' ORDER BY 1")
    assert local.rows() == [("dog-example", 12, True), ("tripod", 5, True)]


def test_shards_flag_truncated_and_checksums(catalog, wsdg_repo):
    sh = q(catalog["db"], "SELECT * FROM shards WHERE dataset = 'wild-sdg-1m' AND local_status <> 'absent' "
                          "ORDER BY tar_name, attribute")
    status = {(r["tar_name"], r["attribute"]): r for r in sh.iter_rows(named=True)}
    trunc = status[("wsdg-a2de74e8", "pose")]
    assert trunc["local_status"] == "incomplete" and trunc["local_sequences"] == 2 and trunc["videos"] == 3
    assert status[("wsdg-a2de74e8", "depth")]["local_status"] == "complete"
    tar = wsdg_repo.root / "payload/wsdg-a2de74e8/pose.tar"
    assert trunc["checksum"] == hashlib.sha256(tar.read_bytes()).hexdigest()
    assert trunc["remote_bytes"] == tar.stat().st_size and trunc["remote_exists"]
    warned = {t.name for t in catalog["res"].warnings}
    assert "incomplete_local_shards" in warned
    assert all(t.severity == "warn" for t in catalog["res"].warnings)


def test_video_stats_match_closed_form(catalog):
    s = q(catalog["db"], "SELECT * FROM video_stats WHERE sequence = '" + "a" * 31 + "2'").row(0, named=True)
    n = 29
    assert s["dataset"] == "wild-sdg-1m" and s["pose_frames"] == n and s["depth_frames"] == n
    assert (s["width"], s["height"], s["camera_type"]) == (W, H, "PINHOLE")
    assert s["fov_x_deg"] == pytest.approx(math.degrees(2 * math.atan(W / (2 * FX))), abs=1e-6)
    assert s["fov_y_deg"] == pytest.approx(math.degrees(2 * math.atan(H / (2 * FX))), abs=1e-6)
    assert s["path_length"] == pytest.approx(STEP * (n - 1), rel=1e-5)
    assert s["total_rotation_deg"] == pytest.approx(TURN_DEG * (n - 1), abs=0.05)
    assert not s["is_static"]
    d = depth_frame()
    valid = d[d > 0]
    assert s["invalid_depth_fraction"] == pytest.approx(1 / W)
    assert [s["depth_p05"], s["depth_p50"], s["depth_p95"]] == pytest.approx(np.percentile(valid, [5, 50, 95]))
    tri = q(catalog["db"], "SELECT is_static, path_length, depth_p50 FROM video_stats WHERE sequence='tripod'").row(0)
    assert tri == (True, 0.0, None)


def test_artifacts_and_lineage(catalog):
    a = q(catalog["db"], "SELECT * FROM artifacts WHERE sequence = '" + "a" * 31 + "1' ORDER BY attribute")
    assert a.get_column("attribute").to_list() == ["camera", "depth", "intrinsics", "pose"]
    assert a.get_column("validated").to_list() == [True] * 4
    assert a.get_column("checksum_recorded").all() and not a.get_column("frame_mismatch").any()
    assert set(a.get_column("tar_name")) == {"wsdg-a2de74e8"}
    lin = q(catalog["db"], "SELECT * FROM lineage ORDER BY sequence")
    dog = lin.row(0, named=True)
    assert dog["sequence"] == "dog-example" and dog["input_uri"] == "/videos/dog-example.mp4"
    assert dog["scale"] == "relative" and json.loads(dog["timings_json"]) == {"slam_s": 1.5}
    assert dog["attributes"] == ["camera", "depth", "intrinsics", "pose"] and dog["dataset"] == "local"


def test_indexes_exist(catalog):
    idx = q(catalog["db"], "SELECT table_name, expressions FROM duckdb_indexes()")
    got = {(t, e.replace(" ", "").replace('"', "")) for t, e in idx.rows()}
    assert ("videos", "[dataset,tar_name]") in got
    assert ("videos", "[num_frames]") in got
    assert ("video_stats", "[fov_x_deg]") in got
    assert ("shards", "[dataset,tar_name]") in got


def test_query_formats(catalog):
    db = catalog["db"]
    sql = "SELECT sequence, num_frames FROM videos WHERE dataset = 'web360' ORDER BY sequence"
    assert query(db, sql, "csv").splitlines() == ['"sequence","num_frames"', '"100001",70', '"100002",72']
    assert json.loads(query(db, sql, "json")) == [{"sequence": "100001", "num_frames": 70},
                                                  {"sequence": "100002", "num_frames": 72}]
    t = pq.read_table(io.BytesIO(query(db, sql, "parquet")))
    assert t.column("num_frames").to_pylist() == [70, 72]
    assert "100002" in query(db, sql, "table")
    with pytest.raises(QueryError, match="unknown format"):
        query(db, sql, "xml")


def test_query_connection_cannot_write(catalog, tmp_path):
    db = catalog["db"]
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for sql in ["CREATE TABLE evil AS SELECT 1", "DELETE FROM videos", "DROP TABLE videos",
                "UPDATE videos SET num_frames = 0", f"COPY videos TO '{tmp_path}/x.csv'",
                f"ATTACH '{tmp_path}/other.duckdb' AS o", "SET enable_external_access = true"]:
        with pytest.raises(QueryError):
            query(db, sql)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "other.duckdb").exists()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert q(db, "SELECT count(*) FROM videos").item() == 13
    with pytest.raises(CatalogError, match="no catalog at"):
        query(tmp_path / "missing.duckdb", "SELECT 1")


def _bad_repo(root: Path) -> Path:
    make_repo(root, "wsdg", {"wsdg-0000000b": [("c" * 32, 30)]}, attributes=("pose",))
    bad = pl.DataFrame({
        "sequence": ["c" * 32, "c" * 32, "d" * 32, "e" * 32],       # duplicate sequence
        "num_frames": [30, 30, 5, 40],                               # 5 is outside wsdg's 26-81
        "tar_name": ["wsdg-0000000b", "wsdg-0000000b", "wsdg-0000000b", "w360-0000000b"],  # foreign prefix
    })
    bad.write_parquet(root / "meta.parquet")
    return root


def test_sql_data_tests_fail_on_bad_data_and_keep_old_catalog(tmp_path, small_repos):
    db = tmp_path / "c.duckdb"
    good = build_catalog([str(small_repos["web360"].root)], [], db)
    bad = _bad_repo(tmp_path / "bad")
    with pytest.raises(DataTestError) as ei:
        build_catalog([open_source(str(bad), dataset="wild-sdg-1m")], [], db)
    failed = {name for name, _, _ in ei.value.failures}
    assert "unique_videos_sequence" in failed  # dbt names generic tests <test>_<model>_<column>
    assert "frame_count_in_dataset_range" in failed
    assert "shard_prefix_consistency" in failed
    assert "shard_single_dataset" not in failed  # the w360 tar is still in one dataset
    # the previous catalog is untouched and no temporary file is left behind
    assert q(db, "SELECT build_id FROM catalog_info").item() == good.build_id
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []


def test_writer_lock_excludes_second_builder(tmp_path, small_repos):
    db = tmp_path / "c.duckdb"
    with writer_lock(db):
        busy = r"busy: another run \(pid .* holds .*\(another catalog build\)"
        with pytest.raises(CatalogLockedError, match=busy):
            build_catalog([str(small_repos["web360"].root)], [], db, lock_timeout=0.3)
    assert not db.exists()
    build_catalog([str(small_repos["web360"].root)], [], db)  # the lock was released
    assert db.exists()


READER = textwrap.dedent("""
    import json, sys, time, duckdb
    db, stop, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    import os
    reads, errors, seen = 0, [], set()
    while not os.path.exists(stop) or reads < 20:
        try:
            con = duckdb.connect(db, read_only=True)
            try:
                info = con.execute("SELECT build_id, videos FROM catalog_info").fetchone()
                n = con.execute("SELECT count(*) FROM videos").fetchone()[0]
                shards = con.execute("SELECT count(*) FROM shards").fetchone()[0]
            finally:
                con.close()
            if n != info[1] or shards == 0:
                errors.append(f"inconsistent: catalog_info says {info[1]} videos, table has {n}")
            seen.add(n)
            reads += 1
            if reads == 1:
                open(ready, "w").close()
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"reads": reads, "errors": errors[:5], "seen": sorted(seen)}))
""")


def test_concurrent_readers_always_see_a_complete_catalog(tmp_path, small_repos):
    db = tmp_path / "c.duckdb"
    a = [str(small_repos["web360"].root)]
    b = [str(small_repos["web360"].root), str(small_repos["dynpose-100kpp"].root)]
    build_catalog(a, [], db)
    stop = tmp_path / "stop"
    script = tmp_path / "reader.py"
    script.write_text(READER)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(stop), str(ready)],
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        for i in range(6):
            build_catalog(b if i % 2 == 0 else a, [], db)
    finally:
        stop.touch()
        out, _ = proc.communicate(timeout=60)
    res = json.loads(out)
    assert res["errors"] == []
    assert res["reads"] >= 20
    assert set(res["seen"]) == {2, 3}  # the reader overlapped the rebuilds and saw both catalogs


def test_cli_catalog_build_and_query(tmp_path, small_repos, capsys):
    db = tmp_path / "cli.duckdb"
    assert main(["catalog", "build", "--source", str(small_repos["web360"].root), "--db", str(db)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["videos"] == 2 and summary["tests"]["failed"] == 0
    assert main(["catalog", "query", "SELECT sequence FROM videos ORDER BY 1", "--format", "json",
                 "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out) == [{"sequence": "100001"}, {"sequence": "100002"}]
    out = tmp_path / "r.parquet"
    assert main(["catalog", "query", "SELECT * FROM shards", "--format", "parquet", "-o", str(out),
                 "--db", str(db)]) == 0
    assert pq.read_table(out).num_rows == 4
    assert main(["catalog", "query", "DROP TABLE videos", "--db", str(db)]) == 2
    assert "query rejected" in capsys.readouterr().err
    assert main(["catalog", "tables", "--db", str(db)]) == 0
    assert "video_stats" in capsys.readouterr().out


def test_stats_cache_and_invalid_artifacts(tmp_path, monkeypatch):
    own = tmp_path / "own"
    store = ArtifactStore(str(own))
    c2w = trajectory(6)
    c2w[3, 0, 3] = np.nan  # a broken pose
    store.write_pose("broken", c2w)
    store.write_intrinsics("broken", np.tile([FX, FX, W / 2, H / 2], (6, 1)))
    (own / "depth").mkdir()
    (own / "depth" / "broken.zip").write_bytes(b"not a zip")
    db = tmp_path / "c.duckdb"
    res = build_catalog([], [str(own)], db)
    arts = dict(q(db, "SELECT attribute, validated FROM artifacts WHERE sequence = 'broken'").rows())
    # the manifest holds the generation record of the versioned writes (io/generation.py)
    assert arts == {"pose": False, "intrinsics": True, "camera": True, "depth": False, "manifest": None}
    assert "artifacts_validated" in {t.name for t in res.warnings}
    problems = q(db, "SELECT problems FROM video_stats").item()
    assert "not a zip" in problems and "pose:" in problems

    import vipe_dagster.catalog.stats as stats_mod

    calls = []
    real = stats_mod.sequence_stats
    monkeypatch.setattr(stats_mod, "sequence_stats", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    build_catalog([], [str(own)], db)
    assert calls == []  # unchanged files: statistics come from <db>.stats.parquet
    store.write_pose("broken", trajectory(6))
    build_catalog([], [str(own)], db)
    assert calls == ["broken"]
    assert q(db, "SELECT validated FROM artifacts WHERE sequence = 'broken' AND attribute = 'pose'").item() is True
