"""What the command lines print (issue 22, part 5): help texts without empty defaults, our log lines at INFO,
third-party ones only from WARNING, each line once, no Dagster beta/preview warnings."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from console_output import log_lines, problems

from vipe_dagster.cli import build_parser, iter_parsers
from vipe_dagster.logsetup import OUR_LOGGERS, configure_logging

REPO = Path(__file__).resolve().parents[2]
EMPTY_DEFAULTS = ("(default: None)", "(default: True)", "(default: False)", "(default: )", "(default: [])")


def _all_parsers():
    from vipe_dagster import vipe_cli
    from vipe_dagster.entry import download_dataset, render_vipe_pointcloud, run_py, vipe_to_colmap

    for prog, parser in (("vipe-dagster", build_parser()), ("vipe", vipe_cli.build_parser()),
                         ("download_dataset", download_dataset.build_parser()),
                         ("render_vipe_pointcloud", render_vipe_pointcloud.build_parser()),
                         ("run.py", run_py.build_parser()), ("vipe_to_colmap", vipe_to_colmap.build_parser())):
        for words, p in iter_parsers(parser):
            yield " ".join((prog, *words)), p


def _flat(text: str) -> str:
    return " ".join(text.split())  # argparse wraps at the terminal width: "(default:\n None)"


def test_every_help_text_renders_without_empty_defaults():
    seen = set()
    for name, parser in _all_parsers():
        text = _flat(parser.format_help())
        seen.add(name)
        for bad in EMPTY_DEFAULTS:
            assert bad not in text, f"`{name} --help` shows {bad}"
    # every subcommand of vipe-dagster was looked at, nested ones (catalog build/query/tables) included
    from vipe_dagster.cli import _command_modules

    assert {f"vipe-dagster {m.NAME}" for m in _command_modules()} <= seen
    assert {"vipe-dagster catalog build", "vipe-dagster catalog query", "vipe infer", "vipe visualize"} <= seen


def test_meaningful_defaults_are_still_shown_and_flags_read_right():
    parsers = dict(_all_parsers())
    infer = _flat(parsers["vipe-dagster infer"].format_help())
    assert "(default: 512)" in infer and "(default: vipe_results)" in infer and "(default: processing)" in infer
    # a help text that states its default in words does not get a second one
    assert "(inclusive; default: last frame)" in infer and "default: last frame) (default" not in infer
    demo = _flat(parsers["vipe-dagster demo"].format_help())
    assert "--no-egoexo, --no_egoexo skip the Ego-Exo4D branch --key" in demo
    assert "(default: 384)" in demo


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    state = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in OUR_LOGGERS})
    yield
    root.handlers[:] = state[0]
    root.setLevel(state[1])
    for n, lvl in state[2].items():
        logging.getLogger(n).setLevel(lvl)


def test_console_levels_and_forwarded_records_print_once(restore_logging):
    from assets_defs._common import engine_logs_to_dagster

    out = io.StringIO()
    configure_logging("INFO", stream=out)
    configure_logging("INFO", stream=out)  # a second call replaces the handler: still one line per record
    gx = logging.getLogger("great_expectations.data_context.types.base")
    gx.setLevel(logging.INFO)  # as great_expectations does on import
    gx.info("Created temporary directory")
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")
    gx.warning("a real problem")
    eng = logging.getLogger("vipe_dagster.pipeline")
    eng.info("pose clip: 12 frames")
    eng.debug("not at INFO")

    class RunLog:
        def __init__(self):
            self.lines = []

        def info(self, msg):
            self.lines.append(("INFO", msg))

        def warning(self, msg):
            self.lines.append(("WARNING", msg))

    class Context:
        log = RunLog()

    with engine_logs_to_dagster(Context()):
        eng.info("inside a step")
        logging.getLogger("vipe_dagster.depth.run").warning("a step warning")
    assert out.getvalue().splitlines() == [
        "WARNING great_expectations.data_context.types.base: a real problem",
        "INFO vipe_dagster.pipeline: pose clip: 12 frames",
    ]
    # the step's records went to the run log, once each
    assert Context.log.lines == [("INFO", "vipe_dagster.pipeline: inside a step"),
                                 ("WARNING", "vipe_dagster.depth.run: a step warning")]
    eng.info("after the step")
    assert out.getvalue().splitlines()[-1] == "INFO vipe_dagster.pipeline: after the step"


def test_console_debug_level_is_ours_only(restore_logging):
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)
    logging.getLogger("vipe_dagster.slam").debug("ours")
    logging.getLogger("botocore.hooks").debug("theirs")
    logging.getLogger("numexpr.utils").info("theirs too")
    assert out.getvalue().splitlines() == ["DEBUG vipe_dagster.slam: ours"]


def test_problem_finder_flags_what_make_demo_used_to_print():
    # lines as `make demo` printed them before issue 22 (trimmed)
    before = "\n".join([
        "/x/dagster/_core/decorator_utils.py:232: BetaWarning: Parameter `backfill_policy` of function `asset` is ...",
        "2026-12-05 21:48:49 +0000 - dagster - INFO - video_pipeline - 2d3d7b89 - slam_pose - "
        "vipe_dagster.slam.system: focal sweep: best FoV 62.0 deg (f=319.5 px)",
        "INFO vipe_dagster.slam.system: focal sweep: best FoV 62.0 deg (f=319.5 px)",
        "INFO great_expectations._docs_decorators: Skipping registering function get_context",
        "INFO great_expectations.datasource.fluent.config: Loading 'datasources' ->",
        "[]",
    ])
    found = problems(before)
    assert any(p.startswith("in the run log and printed again: vipe_dagster.slam.system") for p in found)
    assert sum(p.startswith("third-party INFO") for p in found) == 2
    assert any("BetaWarning" in p for p in found) and "stray '[]' line" in found


def test_infer_prints_engine_lines_once_and_no_third_party_info(tmp_path):
    """A real run of the CLI: pose only, 12 frames of the sample at 192 px (a few seconds)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONWARNINGS", None)
    p = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "infer", str(REPO / "samples" / "dog-example.mp4"),
                        "-o", str(tmp_path / "out"), "-p", "pose_only", "--end_frame", "11", "--long_side", "192"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = log_lines(p.stderr)
    texts = [t for _, _, t in lines]
    assert any(t.startswith("vipe_dagster.pipeline: pose dog-example: 12 frames") for t in texts), p.stderr[-2000:]
    assert any(t.startswith("vipe_dagster.slam.system: ") for t in texts)
    assert problems(p.stderr) == [], p.stderr[-3000:]
    assert "(default:" not in p.stdout and p.stdout.lstrip().startswith("{")


def test_a_log_line_goes_above_an_active_progress_bar(restore_logging):
    from tqdm import tqdm

    out = io.StringIO()
    configure_logging("INFO", stream=out)
    with tqdm(total=3, file=out, desc="depth clip", mininterval=0) as bar:
        bar.update(1)
        logging.getLogger("vipe_dagster.depth.run").info("frame 1 swept")
        bar.update(1)
    # each printed line, as a terminal shows it after the carriage returns of the bar
    shown = [ln.split("\r")[-1] for ln in out.getvalue().split("\n")]
    assert "INFO vipe_dagster.depth.run: frame 1 swept" in shown
