"""Catalog benchmark: build the DuckDB catalog over a generated 1M-video metadata set, then time queries.

The generated source has the Wild-SDG layout: ``meta.parquet`` with 1,000,000 rows (32-hex sequences, 26-81
frames, 1,000 shards of 1,000 videos named ``wsdg-<8 hex>``) and ``payload/<tar>/<attribute>.tar`` entries
(empty files, so the payload listing is part of the build). Timed:

- ``build_1m_videos``: ``build_catalog`` end to end (read meta, list payload, SQL models, indexes, data tests,
  atomic rename), DuckDB limited to 2 threads; target <= 30 s;
- ``point_lookup``: median of 50 ``SELECT * FROM videos WHERE sequence = ?`` on an open read-only connection
  (target <= 50 ms), and ``point_lookup_cold`` including opening the connection;
- ``grouped_aggregate``: median of 5 runs of a per-shard aggregate over all videos (target <= 500 ms).
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

SUITE = "catalog"
log = logging.getLogger(__name__)


def generate_metadata(root: Path, videos: int = 1_000_000, per_shard: int = 1000, seed: int = 0) -> Path:
    """Write a Wild-SDG-like repository with ``videos`` rows to ``root`` (returns ``root``)."""
    rng = np.random.default_rng(seed)
    hexes = rng.bytes(16 * videos).hex()
    seqs = [hexes[i * 32:(i + 1) * 32] for i in range(videos)]
    n_shards = -(-videos // per_shard)
    shard_ids = rng.bytes(4 * n_shards).hex()
    shards = [f"wsdg-{shard_ids[i * 8:(i + 1) * 8]}" for i in range(n_shards)]
    meta = pl.DataFrame({
        "sequence": seqs,
        "num_frames": rng.integers(26, 82, size=videos, dtype=np.int64),
        "tar_name": [shards[i // per_shard] for i in range(videos)],
    })
    root.mkdir(parents=True, exist_ok=True)
    meta.write_parquet(root / "meta.parquet")
    for tar in shards:
        d = root / "payload" / tar
        d.mkdir(parents=True, exist_ok=True)
        for attr in ("rgb", "depth", "intrinsics", "pose"):
            (d / f"{attr}.tar").touch()
    return root


def run(quick: bool = False, videos: int | None = None) -> list[dict]:
    import duckdb

    from ...catalog.build import build_catalog, connect_readonly

    videos = videos or (100_000 if quick else 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="vipe-bench-catalog-"))
    rows: list[dict] = []
    try:
        t0 = time.perf_counter()
        repo = generate_metadata(work / "vipe-wild-sdg-1m", videos)
        gen_s = time.perf_counter() - t0
        db = work / "catalog.duckdb"
        res = build_catalog([str(repo)], [], db, threads=2, stats_cache=False)
        note = f"{videos:,} videos, {videos // 1000:,} shards x 4 attributes; generation took {gen_s:.1f} s (untimed)"
        rows.append({"suite": SUITE, "name": f"build_{videos}_videos", "value": round(res.seconds, 3),
                     "unit": "s", "target": 30.0 if videos >= 1_000_000 else None, "note": note})
        for step, sec in res.timings.items():
            if step.startswith("model_") and sec < 0.5:
                continue
            rows.append({"suite": SUITE, "name": f"build_step_{step}", "value": round(sec, 3), "unit": "s"})
        sample = pl.read_parquet(repo / "meta.parquet", columns=["sequence"]).sample(min(50, videos), seed=1)
        sample = sample.get_column("sequence").to_list()
        con = connect_readonly(db, threads=2)
        try:
            times = []
            for s in sample:
                t0 = time.perf_counter()
                got = con.execute("SELECT * FROM videos WHERE sequence = ?", [s]).fetchall()
                times.append(time.perf_counter() - t0)
                if len(got) != 1:
                    raise RuntimeError(f"point lookup of {s} returned {len(got)} rows")
            rows.append({"suite": SUITE, "name": "point_lookup", "value": round(1000 * statistics.median(times), 2),
                         "unit": "ms", "target": 50.0, "note": f"median of {len(times)}, max "
                                                             f"{1000 * max(times):.1f} ms, open connection"})
            agg_sql = ("SELECT dataset, tar_name, count(*) AS videos, sum(num_frames) AS frames, "
                       "min(num_frames) AS min_frames, max(num_frames) AS max_frames "
                       "FROM videos GROUP BY dataset, tar_name ORDER BY frames DESC")
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                out = con.execute(agg_sql).fetchall()
                times.append(time.perf_counter() - t0)
            rows.append({"suite": SUITE, "name": "grouped_aggregate", "value": round(1000 * statistics.median(times), 2),
                         "unit": "ms", "target": 500.0, "note": f"{len(out)} groups over {videos:,} videos, median of 5"})
        finally:
            con.close()
        times = []
        for s in sample[:10]:
            t0 = time.perf_counter()
            c = connect_readonly(db, threads=2)
            c.execute("SELECT * FROM videos WHERE sequence = ?", [s]).fetchall()
            c.close()
            times.append(time.perf_counter() - t0)
        rows.append({"suite": SUITE, "name": "point_lookup_cold", "value": round(1000 * statistics.median(times), 2),
                     "unit": "ms", "note": "open read-only connection + lookup + close, median of 10"})
        rows.append({"suite": SUITE, "name": "catalog_file_size", "value": round(db.stat().st_size / 2**20, 1),
                     "unit": "MiB", "note": f"duckdb {duckdb.__version__}"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [{k: v for k, v in r.items() if v is not None} for r in rows]
