"""Materialize the whole per-video graph on a temporary instance (local and s3:// artifacts), and
show that a failing blocking check stops everything downstream and says why."""

from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pytest
from graph_runs import register as _register
from graph_runs import run_video_pipeline

from resources.artifacts import ArtifactStoreResource
from vipe_dagster.definitions import build_definitions
from vipe_dagster.io import fs, probe
from vipe_dagster.io.validate import validate_sequence

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "dog-example.mp4"


def _run(instance, artifacts, key, run_config=None):
    defs, job, result, checks, _ = run_video_pipeline(instance, artifacts, key, run_config)
    return defs, job, result, checks


def _materialized(instance, run_id):
    out = {}
    for rec in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        m = rec.event_log_entry.dagster_event.event_specific_data.materialization
        out[m.asset_key.to_user_string()] = m
    return out


def _error_text(result) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure)


def _read_png(uri):
    img = cv2.imdecode(np.frombuffer(fs.read_bytes(uri), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.size > 0, f"{uri} is not a PNG"
    return img


def _check_graph(instance, artifacts, key, result, checks, job):
    store = artifacts.store()
    assert result.success, [str(e.event_specific_data) for e in result.all_events if e.is_step_failure]
    mats = _materialized(instance, result.run_id)
    expected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys} - {"raw_video"}
    assert expected <= set(mats), f"not materialized: {expected - set(mats)}"
    assert all(c.passed for c in checks.values() if c.severity == dg.AssetCheckSeverity.ERROR), checks
    assert checks["frame_range_within_video"].partition == key

    pv = mats["processed_video"].metadata
    assert pv["num_frames"].value == 16 and pv["ingested_range"].value == "[0, 15]"
    assert pv["processing_size"].value == "256x144"
    info = probe(store.path("rgb", key))
    assert (info.num_frames, info.width, info.height) == (16, 256, 144)
    assert pv["preview"].value.startswith(f"![{key} frames](data:image/")
    assert _read_png(pv["preview_uri"].value).shape[1] > 0
    assert pv["source_data_version"].value == artifacts.registry().get(key).data_version

    if "pose_trajectory" in mats:
        pt = mats["pose_trajectory"].metadata
        ci = mats["camera_intrinsics"].metadata
        assert pt["num_frames"].value == 16 and pt["frame_range"].value == "[0, 15]"
        assert pt["scale"].value in ("relative", "metric")
        assert ci["fx"].value > 0 and ci["image_size"].value == "256x144"
        assert _read_png(pt["preview_uri"].value).shape[0] > 0
        findings = validate_sequence(store, key, expected_frames=16, require=("rgb", "pose", "intrinsics", "info"))
        assert all(f.ok for f in findings), [f for f in findings if not f.ok]
        assert checks["pose_valid"].passed and checks["intrinsics_plausible"].passed
        assert "frame_metrics_expectations" in checks
    return mats


@pytest.mark.slow
def test_full_graph_local(tmp_path, instance):
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = _register(instance, artifacts, SAMPLE, start_frame=0, end_frame=15, long_side=256)
    _, job, result, checks = _run(instance, artifacts, entry.key)
    _check_graph(instance, artifacts, entry.key, result, checks, job)
    # the engine's progress logging shows up in the run's Dagster log
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("vipe_dagster.ingest: ingesting" in m for m in messages)
    # code versions are recorded, so a code change marks partitions stale
    rec = instance.get_latest_materialization_event(dg.AssetKey("processed_video"))
    from vipe_dagster.provenance import code_version

    assert rec.asset_materialization.tags["dagster/code_version"] == code_version("ingest")


@pytest.mark.slow
@pytest.mark.s3
def test_full_graph_s3(tmp_path, instance, s3_uri):
    artifacts = ArtifactStoreResource(root=f"{s3_uri}/artifacts")
    src = f"{s3_uri}/raw/dog-example.mp4"
    fsys, _ = fs.get_fs(s3_uri)
    fsys.put_file(str(SAMPLE), src[5:])
    entry = _register(instance, artifacts, src, start_frame=0, end_frame=15, long_side=256)
    assert entry.data_version.startswith("etag:")
    _, job, result, checks = _run(instance, artifacts, entry.key)
    mats = _check_graph(instance, artifacts, entry.key, result, checks, job)
    assert mats["processed_video"].metadata["rgb_uri"].value == f"{s3_uri}/artifacts/rgb/dog-example.mp4"
    assert fs.exists(f"{s3_uri}/artifacts/sources/dog-example.json")
    assert not any(n.startswith(".tmp-") for n in fs.listdir(f"{s3_uri}/artifacts/rgb"))


def test_blocking_frame_range_check_stops_downstream(tmp_path, instance):
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = _register(instance, artifacts, SAMPLE, start_frame=0, end_frame=15, long_side=128)
    n = probe(str(SAMPLE)).num_frames
    run_config = {"ops": {"processed_video": {"config": {"start_frame": 100, "end_frame": 300}}}}
    _, job, result, checks = _run(instance, artifacts, entry.key, run_config)
    assert not result.success
    chk = checks["frame_range_within_video"]
    assert not chk.passed and chk.blocking
    assert f"Frame range [100, 300] exceeds available frames [0, {n - 1}] in dog-example.mp4" in chk.description
    mats = _materialized(instance, result.run_id)
    downstream = {k.to_user_string() for k in job.asset_layer.selected_asset_keys} - {"raw_video", "processed_video"}
    assert set(mats) == {"processed_video"}, "only the checked asset may materialize"
    assert not downstream & set(mats)
    failure = [e for e in result.all_events if e.is_step_failure]
    assert failure and "frame_range_within_video" in failure[0].event_specific_data.error.message
    skipped = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}
    if downstream:
        assert skipped or not any(e.step_key == "slam_pose" and e.is_step_success for e in result.all_events)


def test_range_starting_after_the_video_fails_the_asset(tmp_path, instance):
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = _register(instance, artifacts, SAMPLE, start_frame=500, end_frame=600, long_side=128)
    _, _, result, _ = _run(instance, artifacts, entry.key)
    assert not result.success
    err = _error_text(result)
    assert "starts after the last frame" in err and "dog-example.mp4" in err
    assert not artifacts.store().exists("rgb", entry.key)


def test_unregistered_partition_says_how_to_register(tmp_path, instance):
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    instance.add_dynamic_partitions("videos", ["ghost"])
    _, _, result, _ = _run(instance, artifacts, "ghost")
    assert not result.success
    assert "'ghost' is not registered" in _error_text(result)


def test_raw_video_observation_reports_content_versions(tmp_path, instance, video_maker):
    """What the UI's "Observe sources" runs: one data version per registered partition."""
    from dagster._core.definitions.observe import observe  # the UI's code path; not exported in 1.13

    from assets_defs.video import raw_video

    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    a = video_maker(tmp_path / "a.mp4", n=4)
    b = video_maker(tmp_path / "b.mp4", n=4, seed=1)
    ea = _register(instance, artifacts, a)
    eb = _register(instance, artifacts, b)
    assert observe([raw_video], instance=instance, resources={"artifacts": artifacts}).success

    def version(key):
        rec = instance.get_latest_data_version_record(dg.AssetKey("raw_video"), is_source=True, partition_key=key)
        return rec.asset_observation.data_version

    assert version("a") == ea.data_version and version("b") == eb.data_version
    import hashlib

    assert ea.data_version == "sha256:" + hashlib.sha256(a.read_bytes()).hexdigest()
    video_maker(a, n=5, seed=9)  # the file changes in place
    assert observe([raw_video], instance=instance, resources={"artifacts": artifacts}).success
    assert version("a") == "sha256:" + hashlib.sha256(a.read_bytes()).hexdigest() != ea.data_version
    assert version("b") == eb.data_version


@pytest.mark.slow
def test_wrong_known_intrinsics_fail_the_blocking_intrinsics_check(tmp_path, instance):
    pytest.importorskip("vipe_dagster.pipeline")
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = _register(instance, artifacts, SAMPLE, start_frame=0, end_frame=15, long_side=256)
    # a user passes the focal of the 1280 px source video for the 256 px processed frames
    run_config = {"ops": {"slam_pose": {"config": {"intrinsics": {"fx": 2000.0, "fy": 2000.0}}}}}
    _, _, result, checks = _run(instance, artifacts, entry.key, run_config)
    assert not result.success
    chk = checks["intrinsics_plausible"]
    assert not chk.passed and chk.blocking
    assert "horizontal FoV 7.3..7.3 deg outside [15.0, 160.0]" in chk.description


def test_processed_video_versions_the_file_it_actually_read(tmp_path, instance, video_maker):
    import hashlib

    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    clip = video_maker(tmp_path / "clip.mp4", n=6)
    entry = _register(instance, artifacts, clip, long_side=0)
    video_maker(clip, n=7, seed=4)  # replaced after registration
    defs = build_definitions({"artifacts": artifacts})
    res = dg.materialize([defs.resolve_assets_def("processed_video")], instance=instance, partition_key=entry.key,
                         selection=["processed_video"])
    md = res.asset_materializations_for_node("processed_video")[0].metadata
    now = "sha256:" + hashlib.sha256(clip.read_bytes()).hexdigest()
    assert md["source_data_version"].value == now != entry.data_version
    assert md["num_frames"].value == 7
    assert artifacts.store().read_manifest(entry.key)["input"]["data_version"] == now
