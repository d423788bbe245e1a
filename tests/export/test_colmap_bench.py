"""The colmap benchmark suite runs and reports well-formed rows (no timing assertions)."""

from __future__ import annotations

import math

from vipe_dagster.eval.suites import colmap as suite


def test_quick_suite_rows():
    rows = suite.run(quick=True)
    names = {r["name"] for r in rows}
    assert {"export text, sparse, 24 frames 320x240", "export bin, sparse, 24 frames 320x240",
            "export bin, sparse + dense, 24 frames 320x240"} <= names
    for r in rows:
        assert r["suite"] == "colmap" and set(r) >= {"name", "value", "unit"}
        assert isinstance(r["value"], (int, float)) and r["value"] > 0
    # observations carry 0.5 px isotropic Gaussian noise around exact projections: the mean
    # reprojection error is Rayleigh-distributed with mean 0.5 * sqrt(pi / 2)
    err = next(r for r in rows if r["name"] == "mean reprojection error of exported sparse points")["value"]
    assert abs(err - 0.5 * math.sqrt(math.pi / 2)) < 0.03
