from __future__ import annotations

import polars as pl

from vipe_dagster.eval.suites import catalog as suite


def test_generated_metadata_layout(tmp_path):
    repo = suite.generate_metadata(tmp_path / "repo", videos=2500, per_shard=1000)
    meta = pl.read_parquet(repo / "meta.parquet")
    assert meta.height == 2500 and meta.get_column("sequence").n_unique() == 2500
    assert meta.get_column("num_frames").is_between(26, 81).all()
    shards = meta.get_column("tar_name").unique().to_list()
    assert len(shards) == 3 and all(len(s) == 13 and s.startswith("wsdg-") for s in shards)
    assert sorted(p.name for p in (repo / "payload" / shards[0]).iterdir()) == [
        "depth.tar", "intrinsics.tar", "pose.tar", "rgb.tar"]


def test_suite_rows_have_harness_shape():
    rows = suite.run(videos=3000)
    names = {r["name"] for r in rows}
    assert {"build_3000_videos", "point_lookup", "grouped_aggregate", "point_lookup_cold"} <= names
    for r in rows:
        assert r["suite"] == "catalog" and isinstance(r["value"], float | int) and r["unit"]
