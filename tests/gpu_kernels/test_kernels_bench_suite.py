"""The kernels benchmark suite produces well-formed rows (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from vipe_dagster.eval.suites import kernels


def test_suite_rows_are_well_formed():
    rows = kernels._ba_rows(4, 40, 1.0, False) + kernels._splat_rows(2000, 1)
    assert kernels.SUITE == "kernels"
    names = [r["name"] for r in rows]
    assert any(n.startswith("BA ours") for n in names)
    assert sum(n.startswith("splat ") for n in names) == 3
    assert sum(n.startswith("raster ") and "IoU" in n for n in names) == 3
    assert all(r["value"] >= 0.98 for r in rows if "IoU" in r["name"])
    for r in rows:
        assert {"name", "value", "unit"} <= set(r)
        assert isinstance(r["value"], float | int) and r["value"] > 0


def test_scipy_baseline_is_trf_lsmr_on_the_sparse_jacobian(monkeypatch):
    """The BA rows compare against scipy's best solver for bundle adjustment (TRF + LSMR on a sparse
    Jacobian), not the dense ``exact`` one, and both times come from the same run."""
    import scipy.optimize

    calls = []
    real = scipy.optimize.least_squares

    def spy(fun, x0, jac=None, **kw):
        j = jac(x0) if callable(jac) else None
        calls.append({"method": kw.get("method"), "tr_solver": kw.get("tr_solver"),
                      "sparse": j is not None and scipy.sparse.issparse(j)})
        return real(fun, x0, jac=jac, **kw)

    monkeypatch.setattr(scipy.optimize, "least_squares", spy)
    rows = {r["name"]: r for r in kernels._ba_rows(4, 40, 1.0, True)}
    assert calls and all(c == {"method": "trf", "tr_solver": "lsmr", "sparse": True} for c in calls)
    label = "4 cameras, 40 points"
    scipy_row = next(r for n, r in rows.items() if n.startswith(f"BA {kernels.SCIPY_BA} ({label}"))
    ours = next(r for n, r in rows.items() if n.startswith(f"BA ours ({label}"))
    speed = next(r for n, r in rows.items() if n.startswith(f"BA speed-up vs {kernels.SCIPY_BA}"))
    assert "exact" not in scipy_row["note"] and "lsmr" in scipy_row["note"]
    assert speed["unit"] == "x" and speed["value"] > 0 and ours["unit"] == scipy_row["unit"] == "s"
    cost = next(r for n, r in rows.items() if n.startswith("BA final cost ours"))
    assert cost["value"] <= 1.01
