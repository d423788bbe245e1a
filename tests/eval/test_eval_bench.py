"""Benchmark harness: discovery, per-suite subprocess with its own peak memory, JSON and Markdown blocks."""

from __future__ import annotations

import json
import textwrap

import pytest

from vipe_dagster.cli import main
from vipe_dagster.errors import ConfigError
from vipe_dagster.eval.bench import discover_suites, run_bench, update_markdown

BIG = '''
SUITE = "big"
TITLE = "Big suite"

def run(quick=False):
    import numpy as np
    a = np.ones(300 * 2**20 // 8)  # 300 MB, touched
    return [{"name": "allocated", "value": a.nbytes / 1e6, "unit": "MB"},
            {"name": "work", "value": 2.0, "unit": "s", "frames": 50, "target": "< 5 s", "note": "quick" if quick else ""}]
'''
SMALL = '''
SUITE = "small"

def run(quick=False):
    return [{"name": "nothing", "value": 1, "unit": "count"}]
'''
BROKEN = '''
SUITE = "broken"

def run(quick=False):
    raise RuntimeError("suite exploded on purpose")
'''


@pytest.fixture()
def fake_suites(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_bench_suites"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "big.py").write_text(BIG)
    (pkg / "small.py").write_text(SMALL)
    (pkg / "broken.py").write_text(BROKEN)
    (pkg / "_helper.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "fake_bench_suites"


def test_discovers_the_real_synth_suite():
    suites = discover_suites()
    assert suites["synth"] == {"module": "vipe_dagster.eval.suites.synth", "title": "Synthetic scenes"}


def test_run_bench_measures_each_suite_in_its_own_process(fake_suites, tmp_path):
    import numpy as np

    out_json, md = tmp_path / "r.json", tmp_path / "bench.md"
    # a large parent (like this test runner) must not leak into the children's peak memory
    ballast = np.ones(400 * 2**20 // 8)
    rep = run_bench(suites=["big", "small", "broken"], quick=True, json_out=str(out_json), markdown=str(md),
                    package=fake_suites)
    by = {r["suite"]: r for r in rep["suites"]}
    assert by["big"]["ok"] and by["small"]["ok"] and not by["broken"]["ok"]
    assert "suite exploded on purpose" in by["broken"]["error"]
    # peak RSS is per child: the 300 MB suite shows it, the small one run after it does not
    assert by["big"]["peak_rss_mb"] > 300 and by["small"]["peak_rss_mb"] < 200
    assert by["small"]["wait4_maxrss_mb"] > 400  # what plain ru_maxrss would have reported
    del ballast
    work = by["big"]["rows"][1]
    assert work["suite"] == "big" and work["frames_per_s"] == pytest.approx(25.0) and work["note"] == "quick"
    m = rep["machine"]
    assert m["cpu_count"] >= 1 and m["ram_gb"] > 0 and "torch_version" in m and "gpu" in m
    saved = json.loads(out_json.read_text())
    assert [s["suite"] for s in saved["suites"]] == ["big", "small", "broken"]
    text = md.read_text()
    assert "## Big suite" in text and "<!-- bench:big:begin -->" in text and "| work | 2 | s | 25 | < 5 s |" in text
    assert "## small" in text and "**Suite failed:**" in text


def test_markdown_block_replaced_and_rest_kept(tmp_path):
    md = tmp_path / "b.md"
    md.write_text(textwrap.dedent("""\
        # Benchmarks

        ## Poses
        hand-written numbers stay

        ## Big suite
        <!-- bench:big:begin -->
        old numbers
        <!-- bench:big:end -->

        ## Small things
        intro text
        """))
    report = {"date": "D", "quick": False, "machine_description": "M", "suites": [
        {"suite": "big", "title": "Big suite", "ok": True, "wall_s": 1.0, "peak_rss_mb": 10.0,
         "rows": [{"suite": "big", "name": "x", "value": 1.5, "unit": "s"}]},
        {"suite": "small", "title": "Small things", "ok": True, "wall_s": 1.0, "peak_rss_mb": 10.0, "rows": []},
        {"suite": "new", "title": "New section", "ok": True, "wall_s": 1.0, "peak_rss_mb": 10.0, "rows": []},
    ]}
    text = update_markdown(str(md), report)
    assert "old numbers" not in text and "| x | 1.5 | s |" in text
    assert "hand-written numbers stay" in text and "intro text" in text
    assert text.index("## Small things") < text.index("<!-- bench:small:begin -->") < text.index("intro text")
    assert text.rstrip().endswith("<!-- bench:new:end -->") and "## New section" in text
    # idempotent: running again replaces blocks in place
    again = update_markdown(str(md), report)
    assert again == text and again.count("<!-- bench:big:begin -->") == 1


def test_bench_cli_list_and_unknown_suite(capsys):
    assert main(["bench", "--list"]) == 0
    assert "synth" in capsys.readouterr().out
    assert main(["bench", "--suite", "nope"]) == 2
    assert "unknown benchmark suite(s) nope" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        run_bench(suites=["nope"])


@pytest.mark.slow
def test_synth_suite_quick_rows_are_well_formed():
    from vipe_dagster.eval.suites import synth

    rows = synth.run(quick=True)
    assert all({"suite", "name", "value", "unit"} <= set(r) and r["suite"] == "synth" for r in rows)
    by = {r["name"].split(" (")[0].split(",")[0]: r for r in rows}
    assert by["generate indoor/forward"]["frames"] == 30
    # the rendered video is trackable to a fraction of a pixel against the ground truth
    klt = next(r for r in rows if r["name"].startswith("KLT error"))
    assert klt["unit"] == "px" and klt["value"] < 0.3
