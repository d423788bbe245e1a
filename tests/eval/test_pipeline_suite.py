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
