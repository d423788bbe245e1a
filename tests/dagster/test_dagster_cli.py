"""`vipe-dagster demo` from nothing, and the `ui` hand-off command line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vipe_dagster.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def test_ui_command_hands_off_to_dagster_dev():
    from vipe_dagster.commands import ui

    args = build_parser().parse_args(["ui", "--port", "3123"])
    assert args.port == 3123 and args.host == "127.0.0.1"
    cmd = ui.build_command(args.port, args.host, str(REPO / "workspace.yaml"))
    assert Path(cmd[0]).name == "dagster" and Path(cmd[0]).exists()
    assert cmd[1:] == ["dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", "3123",
                       "--log-level", "warning"]  # Dagster's services are third-party output: WARNING and up
    args = build_parser().parse_args(["ui", "--dagster-log-level", "info"])
    assert ui.build_command(args.port, args.host, "w.yaml", args.dagster_log_level)[-2:] == ["--log-level", "info"]


def test_ui_environment_silences_only_the_dagster_dev_supersession_warning():
    from vipe_dagster.commands import ui

    env = ui.quiet_env({"PYTHONWARNINGS": "error::ResourceWarning", "X": "1"})
    assert env["X"] == "1" and env["PYTHONWARNINGS"].startswith("error::ResourceWarning,")
    code = ("import warnings\n"
            "warnings.warn('Function `dev_command` is superseded and its usage is discouraged.', UserWarning)\n"
            "warnings.warn('something else', UserWarning)\n")
    out = subprocess.run([sys.executable, "-c", code], env=ui.quiet_env({k: v for k, v in os.environ.items()
                                                                        if k != "PYTHONWARNINGS"}),
                         capture_output=True, text=True, timeout=60)
    assert "dev_command" not in out.stderr and "something else" in out.stderr


def test_loading_the_definitions_prints_no_beta_or_preview_warning_of_the_apis_we_chose():
    code = ("import warnings\n"
            "import dagster as dg\n"
            "import vipe_dagster.definitions as d\n"
            "d.build_definitions()\n"
            "warnings.warn('Function `some_other_api` is currently in beta', dg.BetaWarning)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for chosen in ("`backfill_policy`", "`observable_source_asset`", "partitions_def on an AssetCheckSpec"):
        assert chosen not in out.stderr, out.stderr[-2000:]
    assert "some_other_api" in out.stderr  # only the APIs we chose are silenced, not every BetaWarning


def test_ensure_dagster_home_creates_instance_config(tmp_path, monkeypatch):
    from vipe_dagster.definitions import apply_pool_limits, ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", "")  # restored after the test; empty = unset for ensure_dagster_home
    monkeypatch.chdir(tmp_path)
    home = ensure_dagster_home()
    assert home == tmp_path / ".dagster_home" and (home / "dagster.yaml").exists()
    assert os.environ["DAGSTER_HOME"] == str(home)
    import dagster as dg

    inst = dg.DagsterInstance.get()
    try:
        assert type(inst.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = apply_pool_limits(inst)
        assert inst.event_log_storage.get_concurrency_info("gpu").slot_count == limits["gpu"] >= 1
    finally:
        inst.dispose()
    (home / "dagster.yaml").write_text("# mine\n")
    ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == "# mine\n", "an existing instance config is kept"


@pytest.mark.slow
def test_demo_from_nothing(tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from vipe_dagster.synth.generate import generate
    from vipe_dagster.synth.presets import preset

    # a handheld camera: enough parallax for depth, so the whole graph runs
    synth = generate(dataclasses.replace(preset("indoor_handheld", quick=True), num_frames=16), str(tmp_path / "s"))
    video = tmp_path / "My Demo.mp4"
    shutil.copyfile(synth.video_path, video)
    home, art = tmp_path / "home", tmp_path / "art"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DAGSTER_HOME", None)
    env.pop("PYTHONWARNINGS", None)  # the demo itself must not print Dagster's beta/preview warnings
    out = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "demo", str(video), "--end-frame", "11",
                          "--long-side", "192", "--dagster-home", str(home), "--artifacts", str(art)],
                         cwd=REPO, env=env, capture_output=True, text=True,
                         # the Ego-Exo4D branch runs from videos: 3 exo_view runs (rig inference) + the best view;
                         # one run worker each, which on a loaded 2-core machine took more than the earlier 300 s
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    # quiet output (issue 22): engine lines once (in the run log), no third-party INFO, no stray lines
    from console_output import log_lines, problems

    assert problems(out.stderr) == [], out.stderr[-4000:]
    step_lines = [t for src, _, t in log_lines(out.stderr) if src == "dagster"]
    assert any(t.startswith("vipe_dagster.pipeline: pose my-demo") for t in step_lines), out.stderr[-3000:]
    assert (home / "dagster.yaml").exists()
    assert "partition 'my-demo'" in out.stdout
    assert f"{art}/rgb/my-demo.mp4" in out.stdout and "my-demo_frames.png" in out.stdout
    assert "frame_range_within_video" in out.stdout and "passed" in out.stdout
    assert (art / "rgb" / "my-demo.mp4").exists() and (art / "vipe" / "my-demo_frames.png").exists()
    for name in ("[depth_maps]", "[dynamic_masks]", "[colmap_export]", "[exo_video]", "[exo_inference]", "[ego_render]",
                 "[best_ego_view]"):
        assert name in out.stdout, name
    assert "depth_maps:depth_valid                         passed" in out.stdout
    # nothing moves in this room: no dynamic mask, so the mask stage refills no depth (it once did, on stereo
    # depth errors at the box edges taken for motion; see docs/depth_and_masks.md, static explanation)
    assert "[dynamic_masks]" in out.stdout and "depth_refilled_fraction" not in out.stdout
    assert (art / "vipe" / "my-demo_depth.png").exists() and (art / "colmap" / "my-demo" / "sparse" / "0").is_dir()
    # the Ego-Exo4D branch from the generated take's videos: camera-ID check, rig depth, renders, best view,
    # and the comparison with the generator's ground truth
    views = ["synth_rig_1__cam01", "synth_rig_1__cam02", "synth_rig_1__cam03"]
    for v in views:
        assert f"exo_video:camera_ids                           passed: {v.replace('__', '/')}" in out.stdout
    assert out.stdout.count("depth_source           rig calibration") == 3
    assert "against the generator's ground truth" in out.stdout
    assert out.stdout.count("exo depth AbsRel") == 3
    assert (art / "render" / "synth_rig_1" / "best_view.json").exists()
    assert (art / "best_ego_view_rendering" / "synth_rig_1" / "metadata.json").exists()
    # the run is in the instance the UI would open
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inst = dg.DagsterInstance.get()
    try:
        assert inst.get_dynamic_partitions("videos") == ["my-demo"]
        assert inst.get_latest_materialization_event(dg.AssetKey("processed_video")) is not None
        assert inst.get_latest_materialization_event(dg.AssetKey("colmap_export")) is not None
        assert inst.get_dynamic_partitions("ego_views") == views
        monkeypatch.chdir(REPO)  # workspace.yaml's working_directory is relative, as for `vipe-dagster ui`
        _assert_ui_lists_the_demo_runs(inst)
    finally:
        inst.dispose()
    assert "where to look:" in out.stdout and "vipe-dagster catalog query --db" in out.stdout
    assert "[annotation_catalog]" in out.stdout and "annotation_catalog:catalog_schema" in out.stdout


DEMO_UI = """
query ($job: String!, $repo: String!) {
  pipelineOrError(params: {repositoryLocationName: "vipe_dagster", repositoryName: $repo, pipelineName: $job}) {
    ... on Pipeline { pipelineSnapshotId runs { runId status pipelineSnapshotId repositoryOrigin { repositoryLocationName } } }
  }
  frame: assetCheckExecutions(assetKey: {path: ["processed_video"]}, checkName: "frame_range_within_video",
                              limit: 10) { partition status }
  coverage: assetCheckExecutions(assetKey: {path: ["ego_render"]}, checkName: "render_coverage", limit: 10) {
    partition status
  }
}
"""


def _assert_ui_lists_the_demo_runs(inst):
    """What the UI shows after the demo (its GraphQL schema on the same instance and workspace): every job's
    Runs tab lists the demo's runs, each with the code location's origin (so the Overview timeline draws them),
    and the checks report per partition."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    from vipe_dagster.commands._launch import open_workspace

    expected = {"video_pipeline": 1, "exo_view_job": 3, "best_ego_view_job": 1, "catalog_refresh": 1}
    with open_workspace(inst, str(REPO / "workspace.yaml")) as ws:
        for job, n in expected.items():
            res = execute_dagster_graphql(ws.context, DEMO_UI, {"job": job, "repo": ws.repository.name})
            assert not res.errors, res.errors
            runs = res.data["pipelineOrError"]["runs"]
            assert len(runs) == n and {r["status"] for r in runs} == {"SUCCESS"}, (job, runs)
            assert {r["repositoryOrigin"]["repositoryLocationName"] for r in runs} == {"vipe_dagster"}
            if job != "catalog_refresh":  # (that run is a subset: the catalog build without the Hub metadata)
                # the same snapshot as the job the UI loads: Re-execute without a "different version" warning
                assert {r["pipelineSnapshotId"] for r in runs} == {res.data["pipelineOrError"]["pipelineSnapshotId"]}
        assert [(e["partition"], e["status"]) for e in res.data["frame"]] == [("my-demo", "SUCCEEDED")]
        assert sorted(e["partition"] for e in res.data["coverage"]) == ["synth_rig_1__cam01", "synth_rig_1__cam02",
                                                                        "synth_rig_1__cam03"]


def test_register_command(tmp_path, video_maker, monkeypatch):
    from vipe_dagster.cli import main

    a = video_maker(tmp_path / "Cam A.mp4", n=4)
    b = video_maker(tmp_path / "cam_b.mkv", n=4, seed=2)
    home, art = tmp_path / "home", tmp_path / "art"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))  # restored after the test; --dagster-home wins
    argv = ["register", str(a), str(b), "--dagster-home", str(home), "--artifacts", str(art), "--end-frame", "2"]
    assert main(argv) == 0
    assert main(argv) == 0  # idempotent
    import dagster as dg

    inst = dg.DagsterInstance.get()
    try:
        assert sorted(inst.get_dynamic_partitions("videos")) == ["cam-a", "cam_b"]
        rec = inst.get_latest_data_version_record(dg.AssetKey("raw_video"), is_source=True, partition_key="cam-a")
        assert rec.asset_observation.data_version.startswith("sha256:")
    finally:
        inst.dispose()
    from vipe_dagster.io import ArtifactStore
    from vipe_dagster.registry import VideoRegistry

    assert VideoRegistry(ArtifactStore(str(art))).get("cam_b").end_frame == 2
    assert main(["register", str(a), str(b), "--key", "x", "--dagster-home", str(home)]) == 2
