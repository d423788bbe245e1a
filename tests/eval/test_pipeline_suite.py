"""The 1,000-frame memory benchmark's input: dog-example played forwards and backwards in turn."""

from __future__ import annotations

import numpy as np

from vipe_dagster.eval.suites.pipeline import DOG, make_pingpong_video
from vipe_dagster.io import open_video


def test_pingpong_video_plays_the_source_back_and_forth(tmp_path):
    out = str(tmp_path / "pp.mp4")
    assert make_pingpong_video(DOG, out, 130) == 130
    src = [f for _, f in open_video(str(DOG), long_side=160)]
    got = [f for _, f in open_video(out, long_side=160)]
    assert len(src) == 122 and len(got) == 130
    assert open_video(out).info.width == 1280 and open_video(out).info.height == 720
    # frame k of the output is source frame k up to 121, then 120, 119, ... (121 is not repeated)
    for k, want in [(0, 0), (60, 60), (121, 121), (122, 120), (129, 113)]:
        err = [np.abs(got[k].astype(np.int16) - s.astype(np.int16)).mean() for s in src]
        assert int(np.argmin(err)) == want, (k, int(np.argmin(err)))


def test_seven_scenes_rows_skip_cleanly_without_the_data(tmp_path, monkeypatch):
    from vipe_dagster.eval.suites.pipeline import seven_scenes_rows

    monkeypatch.delenv("VIPE_7SCENES", raising=False)
    monkeypatch.setenv("VIPE_SHARED_DATA", str(tmp_path / "nothing"))
    rows = seven_scenes_rows(str(tmp_path), quick=True)
    assert len(rows) == 1 and rows[0]["unit"] == "skipped" and "not found" in rows[0]["note"]


def test_stage_rows_report_cpu_seconds_per_frame_and_the_mask_stage():
    from vipe_dagster.eval.suites.pipeline import _stage_rows

    man = {"timings": {"pipeline_s": 20.0, "pose_s": 8.0, "masks_s": 4.0, "ingest_s": 1.0, "pipeline_cpu_s": 30.0,
                       "pose_cpu_s": 8.0, "depth_cpu_s": 12.0, "masks_cpu_s": 5.0},
           "pipeline": {"summary": {"depth": {"frames_per_s": 20.0}}}, "frames": {"width": 512, "height": 288},
           "peak_rss_mb": 900.0}
    rows = {r["name"].split(": ", 1)[1]: r for r in _stage_rows("x", man, 100)}
    assert rows["dense depth"]["value"] == 5.0 and rows["dense depth"]["note"].endswith("0.120 CPU-s per frame")
    assert rows["dynamic masks (+ depth refill)"]["value"] == 4.0
    assert "0.300 CPU-s per frame" in rows["whole pipeline (ingest + pose + depth + masks)"]["note"]
