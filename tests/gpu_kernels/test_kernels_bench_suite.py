"""The kernels benchmark suite produces well-formed rows (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from vipe_dagster.eval.suites import kernels


def test_suite_rows_are_well_formed():
    rows = kernels._ba_rows(4, 40, 1.0, None) + kernels._splat_rows(2000, 1)
    assert kernels.SUITE == "kernels"
    names = [r["name"] for r in rows]
    assert any(n.startswith("BA ours") for n in names)
    assert sum(n.startswith("splat ") for n in names) == 3
    assert sum(n.startswith("raster ") and "IoU" in n for n in names) == 3
    assert all(r["value"] >= 0.98 for r in rows if "IoU" in r["name"])
    for r in rows:
        assert {"name", "value", "unit"} <= set(r)
        assert isinstance(r["value"], float | int) and r["value"] > 0
