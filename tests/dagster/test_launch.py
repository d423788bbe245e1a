"""Runs launched through the instance with the workspace's code location (the demo's launch path,
``vipe_dagster.commands._launch``) are the runs the UI lists: under their job (the job page's Runs tab), on the
Overview timeline (runs with a repository origin), and their checks per partition. Checked with the UI's own
GraphQL schema, in-process, on a small two-partition job so it stays fast."""

import textwrap

import pytest

pytest.importorskip("dagster_graphql")

TINY_DEFS = textwrap.dedent('''
    import dagster as dg

    PARTS = dg.StaticPartitionsDefinition(["a", "b"])


    @dg.asset(partitions_def=PARTS)
    def tiny(context: dg.AssetExecutionContext):
        return dg.MaterializeResult(metadata={"part": context.partition_key})


    @dg.asset_check(asset=tiny, partitions_def=PARTS, description="the partition's own value")
    def tiny_ok(context: dg.AssetCheckExecutionContext):
        return dg.AssetCheckResult(passed=True, description="fine")


    @dg.asset(partitions_def=PARTS)
    def broken(context):
        raise RuntimeError("the engine says no")


    defs = dg.Definitions(
        assets=[tiny, broken], asset_checks=[tiny_ok],
        jobs=[dg.define_asset_job("tiny_job", selection=[tiny], partitions_def=PARTS),
              dg.define_asset_job("broken_job", selection=[broken], partitions_def=PARTS)])
''')

JOB_RUNS = """
query ($loc: String!, $repo: String!, $job: String!) {
  pipelineOrError(params: {repositoryLocationName: $loc, repositoryName: $repo, pipelineName: $job}) {
    ... on Pipeline { pipelineSnapshotId runs { runId status pipelineSnapshotId tags { key value } } }
  }
  runsOrError(filter: {pipelineName: $job}) {
    ... on Runs { results { runId repositoryOrigin { repositoryLocationName repositoryName } } }
  }
  assetCheckExecutions(assetKey: {path: ["tiny"]}, checkName: "tiny_ok", limit: 10) {
    partition status runId
  }
}
"""

REEXECUTE = """
mutation ($id: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $id, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId status parentRunId rootRunId pipelineSnapshotId } }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture
def tiny_workspace(tmp_path, dagster_home):
    (tmp_path / "tiny_defs.py").write_text(TINY_DEFS)
    ws = tmp_path / "workspace.yaml"
    ws.write_text("load_from:\n  - python_file:\n      relative_path: tiny_defs.py\n      location_name: tiny\n")
    return ws


def test_launched_runs_are_listed_under_their_job_with_checks_per_partition(tiny_workspace, capfd):
    import dagster as dg
    from dagster_graphql.test.utils import execute_dagster_graphql

    from vipe_dagster.commands._launch import open_workspace, run_events, wait

    instance = dg.DagsterInstance.get()
    try:
        with open_workspace(instance, str(tiny_workspace), location="tiny") as ws:
            ids = [ws.launch("tiny_job", partition_key=p) for p in ("a", "b")]
            failed = ws.launch("broken_job", partition_key="a")
            runs = wait(instance, [*ids, failed], timeout_s=240)
            assert all(runs[r].status == dg.DagsterRunStatus.SUCCESS for r in ids), [runs[r].status for r in ids]
            assert runs[failed].status == dg.DagsterRunStatus.FAILURE
            failure = [e for e in run_events(instance, failed) if e.is_step_failure]
            assert "the engine says no" in str(failure[0].event_specific_data.error.to_string())
            for rid in ids:
                run = runs[rid]
                origin = run.remote_job_origin
                assert origin is not None and origin.location_name == "tiny" and origin.job_name == "tiny_job"
                assert run.tags["dagster/partition"] in ("a", "b")
            # the local instance prints Dagster's own lines at INFO and up (python_logs in dagster.yaml): the
            # step workers' DEBUG "Executing step ... in subprocess" stay in the event log, off the terminal
            kinds = {e.event_type_value for e in run_events(instance, ids[0])}
            assert {"STEP_WORKER_STARTED", "STEP_START", "STEP_SUCCESS", "ASSET_CHECK_EVALUATION"} <= kinds
            err = capfd.readouterr().err
            assert " - dagster - ERROR - " in err and " - dagster - DEBUG - " not in err, err[-3000:]

            repo = ws.repository.name
            res = execute_dagster_graphql(ws.context, JOB_RUNS, {"loc": "tiny", "repo": repo, "job": "tiny_job"})
            assert not res.errors, res.errors
            job_runs = res.data["pipelineOrError"]["runs"]  # what the job page's Runs tab lists
            assert {r["runId"] for r in job_runs} == set(ids)
            assert {r["status"] for r in job_runs} == {"SUCCESS"}
            assert {t["value"] for r in job_runs for t in r["tags"] if t["key"] == "dagster/partition"} == {"a", "b"}
            # the Overview timeline groups runs by their repository origin; a run without one is not drawn
            origins = {r["runId"]: r["repositoryOrigin"] for r in res.data["runsOrError"]["results"]}
            assert set(origins) == set(ids)
            assert all(o == {"repositoryLocationName": "tiny", "repositoryName": repo} for o in origins.values())
            # the job loaded now has the snapshot the runs were made from: no "may be a different version" warning
            current = res.data["pipelineOrError"]["pipelineSnapshotId"]
            assert {r["pipelineSnapshotId"] for r in job_runs} == {current}
            again = execute_dagster_graphql(ws.context, REEXECUTE, {"id": ids[0]})
            assert not again.errors, again.errors
            launched = again.data["launchPipelineReexecution"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            rerun = launched["run"]  # queued: the local instance's QueuedRunCoordinator waits for the daemon
            assert rerun["parentRunId"] == ids[0] and rerun["rootRunId"] == ids[0]
            assert rerun["pipelineSnapshotId"] == current and rerun["status"] == "QUEUED"
            execs = res.data["assetCheckExecutions"]
            assert sorted(e["partition"] for e in execs) == ["a", "b"]
            assert {e["status"] for e in execs} == {"SUCCEEDED"}
    finally:
        instance.dispose()


def test_a_workspace_without_the_location_is_a_clear_error(tiny_workspace):
    import dagster as dg

    from vipe_dagster.commands._launch import open_workspace
    from vipe_dagster.errors import ConfigError

    instance = dg.DagsterInstance.get()
    try:
        with pytest.raises(ConfigError, match="no code location named 'elsewhere'"):
            with open_workspace(instance, str(tiny_workspace), location="elsewhere"):
                pass
    finally:
        instance.dispose()


def test_every_check_is_partitioned_like_its_asset():
    """A check on a partitioned asset reports per partition (one camera's WARN does not mark every partition)."""
    from vipe_dagster.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    assert graph.asset_check_keys
    wrong = {k.to_user_string(): (graph.get(k).partitions_def, graph.get(k.asset_key).partitions_def)
             for k in graph.asset_check_keys if graph.get(k).partitions_def != graph.get(k.asset_key).partitions_def}
    assert wrong == {}
    partitioned = {k.to_user_string() for k in graph.asset_check_keys if graph.get(k).partitions_def is not None}
    assert {"ego_render:render_coverage", "processed_video:frame_range_within_video",
            "depth_maps:depth_valid"} <= partitioned
