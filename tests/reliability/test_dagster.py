"""Dagster side of issue 21: retries for transient failures only (item 9), a missing source video reported
for its own partition only (item 5), and the asset checks refusing a mixed artifact set (item 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rel_helpers import REPO, SAMPLE, cli

from vipe_dagster.errors import ArtifactError, TransientError
from vipe_dagster.io import fs

dg = pytest.importorskip("dagster")
warnings.filterwarnings("ignore", module="dagster")


@pytest.fixture
def instance(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deployments" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inst = dg.DagsterInstance.get()
    yield inst
    inst.dispose()


def _register(instance, root: Path, video: Path) -> str:
    from vipe_dagster.io import ArtifactStore
    from vipe_dagster.registry import VideoRegistry

    entry, _ = VideoRegistry(ArtifactStore(str(root))).register(str(video), long_side=0)
    instance.add_dynamic_partitions("videos", [entry.key])
    return entry.key


def test_a_deleted_video_breaks_only_its_own_partition(tmp_path, instance):
    from dagster._core.definitions.observe import observe  # the UI's "Observe sources" path

    from assets_defs.video import raw_video
    from resources.artifacts import ArtifactStoreResource

    root = tmp_path / "artifacts"
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    shutil.copy(SAMPLE, a)
    shutil.copy(SAMPLE, b)
    ka, kb = _register(instance, root, a), _register(instance, root, b)
    artifacts = ArtifactStoreResource(root=str(root))
    a.unlink()  # one source video is deleted
    res = observe([raw_video], instance=instance, resources={"artifacts": artifacts})
    assert res.success

    def version(key):
        rec = instance.get_latest_data_version_record(dg.AssetKey("raw_video"), is_source=True,
                                                      partition_key=key)
        return rec.asset_observation.data_version

    assert version(ka).startswith("missing:")
    assert version(kb).startswith("sha256:")  # the other partition keeps its content version


def _flaky_job(errors: list[Exception], policy: dg.RetryPolicy):
    from assets_defs._common import classify_failures

    attempts = []

    @dg.asset(retry_policy=policy)
    def flaky(context):
        attempts.append(context.retry_number)
        with classify_failures(context):
            if len(attempts) <= len(errors):
                raise errors[len(attempts) - 1]

    return flaky, attempts


@pytest.mark.parametrize("error, retried", [
    (TransientError("s3://bucket: cannot reach the S3 endpoint"), True),
    (ConnectionResetError("connection reset by peer"), True),
    (TimeoutError("read timed out"), True),
    (ArtifactError("pose/x.npz frame 3: rotation is not orthonormal"), False),
    (ValueError("a bug"), False),
])
def test_retry_policy_retries_transient_failures_only(instance, error, retried):
    flaky, attempts = _flaky_job([error], dg.RetryPolicy(max_retries=2, delay=0))
    result = dg.materialize([flaky], instance=instance, raise_on_error=False)
    if retried:
        assert result.success and attempts == [0, 1]
    else:
        assert not result.success and attempts == [0]
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert str(error) in failure.event_specific_data.error.to_string()


def test_engine_assets_carry_the_retry_policy():
    from assets_defs._common import RETRY
    from vipe_dagster.definitions import build_definitions

    defs = build_definitions()
    engine = {"processed_video", "slam_pose", "depth_maps", "dynamic_masks", "colmap_export", "ego_render",
              "annotation_catalog"}
    seen = set()
    for job_name in ("video_pipeline", "ego_render_job"):
        job = defs.resolve_job_def(job_name)
        for node in job.graph.node_dict.values():
            op = node.definition
            name = op.name
            if name in engine:
                seen.add(name)
                assert op.retry_policy == RETRY, name
    assert {"processed_video", "slam_pose", "depth_maps", "dynamic_masks", "colmap_export"} <= seen
    assert RETRY.max_retries >= 2 and RETRY.backoff == dg.Backoff.EXPONENTIAL


def test_transient_classification():
    import botocore.exceptions as be

    assert fs.is_transient(be.EndpointConnectionError(endpoint_url="http://x"))
    assert fs.is_transient(be.ClientError({"Error": {"Code": "SlowDown", "Message": "reduce"}}, "PutObject"))
    denied = be.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    assert not fs.is_transient(denied)
    assert not fs.is_transient(be.NoCredentialsError())
    assert not fs.is_transient(ArtifactError("bad file"))
    try:  # an input error raised from a network failure is retried
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as exc:
            raise ArtifactError("cannot read s3://b/x") from exc
    except ArtifactError as wrapped:
        assert fs.is_transient(wrapped)


def test_a_busy_sequence_is_retried_then_runs(tmp_path, instance):
    """A partition whose sequence lock another process holds (e.g. a CLI infer) is retried, not failed."""
    from assets_defs._common import engine_step
    from vipe_dagster.io import ArtifactStore

    root = tmp_path / "artifacts"
    store = ArtifactStore(str(root))
    attempts = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=20, delay=0.5))
    def step(context):
        attempts.append(context.retry_number)
        with engine_step(context, store, "clip", "test step"):
            pass

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom vipe_dagster.io.locks import sequence_lock\n"
        f"with sequence_lock({str(root)!r}, 'clip', 'cli infer'):\n"
        "    print('held', flush=True)\n    time.sleep(3)\n")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = dg.materialize([step], instance=instance, raise_on_error=False)
    finally:
        holder.kill()
        holder.wait()
    assert result.success and len(attempts) >= 2 and attempts[0] == 0
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried and "busy: another run" in retried[0].event_specific_data.error.to_string()


def test_pose_check_refuses_a_mixed_set(tmp_path, instance):
    from assets_defs.pose import pose_valid_result
    from vipe_dagster.io import ArtifactStore

    res = tmp_path / "res"
    assert cli("infer", SAMPLE, "-o", res, "--end_frame", "11", "--long_side", "128", "--pipeline",
               "pose_only", "--name", "clip").rc == 0
    other = tmp_path / "other"
    assert cli("ingest", SAMPLE, "-o", other, "--start_frame", "60", "--end_frame", "71", "--long_side",
               "128", "--name", "clip").rc == 0
    shutil.copy2(other / "rgb" / "clip.mp4", res / "rgb" / "clip.mp4")
    ev = pose_valid_result(ArtifactStore(str(res)), "clip")
    assert not ev.passed and "belongs to generation" in ev.description
