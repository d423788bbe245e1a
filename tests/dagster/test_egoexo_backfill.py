"""A Dagster asset backfill over two generated Ego-Exo4D takes x four exo cameras, from the raw layout (videos,
``gopro_calibs.csv``, camera_pose JSONs) to ``best_ego_view``, as the backfill daemon runs it: a real SQLite
instance, the code location loaded from the module the workspace names (a code server process), the daemon's
backfill iteration submitting the runs (executed in this process by the synchronous run launcher).

Then a camera is dropped from one take's ``gopro_calibs.csv`` and that view is backfilled again: the blocking
camera-ID check on its video fails and nothing downstream runs."""

import logging
import time
from pathlib import Path

import dagster as dg
import pytest

from vipe_dagster.synth.egoexo_take import generate_rig_take

REPO = Path(__file__).resolve().parents[2]
TAKES = ("synth_rig_1", "synth_rig_2")
FRAMES = 8
RES = 64
CHAIN = ("exo_video", "exo_inference", "ego_render")


def _run_backfill(instance, ctx, backfill_id: str, assets: list[str], partitions: list[str] | None,
                  run_config: dict, max_iterations: int = 60):
    """Add an asset backfill and run the daemon's backfill iteration until it is no longer in progress."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._daemon.backfill import execute_backfill_iteration

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=ctx.create_request_context().asset_graph,
        partition_names=partitions, asset_selection=[dg.AssetKey(a) for a in assets],
        backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance,
        all_partitions=partitions is None, title=None, description=None, run_config=run_config)
    instance.add_backfill(backfill)
    log = logging.getLogger("test_egoexo_backfill")
    for _ in range(max_iterations):
        errors = [e for e in execute_backfill_iteration(ctx, log) if e is not None]
        assert not errors, [e.to_string() for e in errors]
        status = instance.get_backfill(backfill_id).status
        if status != BulkActionStatus.REQUESTED:
            return status
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    raise AssertionError(f"backfill {backfill_id} still running after {max_iterations} iterations; runs: "
                         f"{[(r.job_name, r.tags.get('dagster/partition'), r.status.value) for r in runs]}; "
                         f"{instance.get_backfill(backfill_id).asset_backfill_data}")


def _check_evals(instance, runs) -> list[tuple[str, str, bool, str | None, str]]:
    """(asset, check, passed, partition, description) of every check evaluation of ``runs``."""
    out = []
    for r in runs:
        # a backfill run of one partition is tagged with a one-key range rather than dagster/partition
        lo, hi = r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end")
        run_partition = r.tags.get("dagster/partition") or (lo if lo == hi else None)
        for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            ev = e.dagster_event.event_specific_data
            out.append((ev.asset_key.to_user_string(), ev.check_name, ev.passed, ev.partition or run_partition,
                        ev.description or ""))
    return out


def _mats(instance, asset: str, key: str):
    return instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset),
                                                                 asset_partitions=[key]), limit=10).records


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_backfill_two_takes_from_videos_to_best_view(tmp_path, monkeypatch):
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget

    from assets_defs.egoexo import egoexo_takes
    from resources.egoexo import EgoExoResource
    from vipe_dagster.egoexo.takes import discover_raw_takes

    root = tmp_path / "egoexo"
    takes = {t: generate_rig_take(str(root), num_cameras=4, num_frames=FRAMES, exo_size=(160, 120), exo_focal=110.0,
                                  resolution=RES, take=t, uid=f"00000000-synth-rig-000{i + 1}")
             for i, t in enumerate(TAKES)}
    art = tmp_path / "artifacts"
    # what the code location (code server and run workers) reads when it builds its resources and executor
    monkeypatch.setenv("VIPE_EGOEXO_ROOT", str(root))
    monkeypatch.setenv("VIPE_ARTIFACT_ROOT", str(art))
    monkeypatch.setenv("VIPE_EXECUTOR", "in_process")
    monkeypatch.setenv("VIPE_DEVICE", "cpu")
    raw = discover_raw_takes(str(root))
    views = [f"{t}__{c}" for t in TAKES for c in ("cam01", "cam02", "cam03", "cam04")]
    assert raw.view_keys == views and raw.skipped == []

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), synchronous_run_launcher=True,
                              synchronous_run_coordinator=True) as instance:
        # the takes sensor registers both takes and their eight views from the raw layout
        tick = egoexo_takes(dg.build_sensor_context(instance=instance,
                                                    resources={"egoexo": EgoExoResource(takes_root=str(root))}))
        adds = {r.partitions_def_name: list(r.partition_keys) for r in tick.dynamic_partitions_requests}
        assert adds == {"takes": list(TAKES), "ego_views": views}
        for name, keys in adds.items():
            instance.add_dynamic_partitions(name, keys)

        target = ModuleTarget(module_name="vipe_dagster.definitions", attribute="defs", working_directory=str(REPO),
                              location_name="vipe_dagster")
        with create_test_daemon_workspace_context(target, instance) as ctx:
            graph = ctx.create_request_context().asset_graph
            # lineage in the asset graph: video -> inference -> render -> best view
            assert graph.get(dg.AssetKey("exo_inference")).parent_keys == {dg.AssetKey("exo_video")}
            assert dg.AssetKey("exo_inference") in graph.get(dg.AssetKey("ego_render")).parent_keys
            assert graph.get(dg.AssetKey("best_ego_view")).parent_keys == {dg.AssetKey("ego_render")}

            run_config = {"ops": {"ego_render": {"config": {"resolution": RES, "subsample": 1, "min_coverage": 0.05}},
                                  "exo_inference": {"config": {"long_side": 160}}}}
            status = _run_backfill(instance, ctx, "egoexo_all", [*CHAIN, "best_ego_view"], None, run_config)
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": "egoexo_all"}))
            failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            assert status == BulkActionStatus.COMPLETED_SUCCESS, [(r.run_id, r.status, r.tags) for r in failed]
            assert runs and not failed

            # every partition materialized, each step after the one it reads (materialization order = lineage)
            for key in views:
                recs = {a: _mats(instance, a, key) for a in CHAIN}
                assert all(len(r) == 1 for r in recs.values()), (key, {a: len(r) for a, r in recs.items()})
                ids = [recs[a][0].storage_id for a in CHAIN]
                assert ids == sorted(ids), (key, ids)
                ren = recs["ego_render"][0]
                assert ren.run_id in {r.run_id for r in runs}  # materialized by the backfill's runs
                inf = recs["exo_inference"][0].asset_materialization.metadata
                assert inf["scale"].value == "metric" and inf["depth_source"].value == "rig calibration"
                vid = recs["exo_video"][0].asset_materialization.metadata
                assert vid["num_frames"].value == FRAMES and vid["path"].value == takes[key.split("__")[0]].videos[
                    key.split("__")[1]]
            evals = _check_evals(instance, runs)
            passed = {(a, p) for a, c, ok, p, _ in evals if ok and c == "camera_ids"}
            assert passed == {(a, k) for a in ("exo_video", "ego_render") for k in views}, evals

            for t in TAKES:
                best = _mats(instance, "best_ego_view", t)
                assert len(best) == 1
                newest_render = max(_mats(instance, "ego_render", f"{t}__{c}")[0].storage_id for c in takes[t].cams)
                assert best[0].storage_id > newest_render
                md = best[0].asset_materialization.metadata
                assert md["num_cameras"].value == 4 and md["best_camera"].value in takes[t].cams
                bv = art / "best_ego_view_rendering" / t
                assert Path(md["best_view_dir"].value) == bv
                meta = (bv / "metadata.json").read_text()
                assert f'"best_camera": "{md["best_camera"].value}"' in meta
                for sub in ("ego_Prior", "exo_GT", "ego_GT"):
                    assert len(list((bv / sub).glob("frame_*.png"))) == FRAMES, (t, sub)

            # cam04 leaves take 2's calibration: the blocking camera-ID check on its video fails, nothing downstream
            csv = Path(takes["synth_rig_2"].gopro_calibs)
            csv.write_text("".join(ln for ln in csv.read_text().splitlines(keepends=True)
                                   if not ln.startswith("cam04,")))
            bad = "synth_rig_2__cam04"
            status = _run_backfill(instance, ctx, "egoexo_cam04", list(CHAIN), [bad],
                                   {"ops": {"ego_render": {"config": {"resolution": RES}}}})
            assert status == BulkActionStatus.COMPLETED_FAILED
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": "egoexo_cam04"}))
            assert runs and all(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
            evals = _check_evals(instance, runs)
            assert [e[:4] for e in evals] == [("exo_video", "camera_ids", False, bad)], evals
            desc = evals[0][4]
            assert f"camera cam04 is not in {csv}" in desc, desc
            steps = {e.step_key for r in runs for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_START)}
            assert not any(s.startswith(("exo_inference", "ego_render")) for s in steps), steps
            # the earlier materializations stay the only ones
            assert len(_mats(instance, "exo_inference", bad)) == 1 and len(_mats(instance, "ego_render", bad)) == 1
