"""Sensors: new videos register partitions once; a restarted sensor (saved cursor) duplicates nothing."""

import os
import shutil
import time

import dagster as dg
import pytest

from assets_defs.sensors import incoming_videos_folder, incoming_videos_s3, load_cursor
from resources.artifacts import ArtifactStoreResource
from resources.sources import IncomingVideosResource
from vipe_dagster.registry import VideoRegistry


def _tick(sensor, instance, cursor, artifacts, incoming):
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"artifacts": artifacts, "incoming": incoming}) as ctx:
        res = sensor(ctx)
    if isinstance(res, dg.SkipReason):
        return [], [], [], cursor
    assert isinstance(res, dg.SensorResult)
    added = [k for req in res.dynamic_partitions_requests for k in req.partition_keys]
    # what the daemon does with the result
    if added:
        instance.add_dynamic_partitions("videos", added)
    return added, res.run_requests, res.asset_events, res.cursor


def test_folder_sensor_registers_once_and_survives_restart(tmp_path, instance, video_maker):
    inbox = tmp_path / "incoming"
    video_maker(inbox / "Clip A.mp4", n=6)
    video_maker(inbox / "sub" / "clip_b.mov", n=6, seed=1)
    (inbox / "notes.txt").write_text("not a video")
    artifacts = ArtifactStoreResource(root=str(tmp_path / "art"))
    incoming = IncomingVideosResource(folder=str(inbox), settle_seconds=0, long_side=128)

    added, runs, events, cursor = _tick(incoming_videos_folder, instance, None, artifacts, incoming)
    assert sorted(added) == ["clip-a", "clip_b"]
    assert sorted(r.partition_key for r in runs) == ["clip-a", "clip_b"]
    assert all(r.run_key.startswith(f"{r.partition_key}:sha256:") for r in runs)
    assert {e.partition for e in events} == {"clip-a", "clip_b"}
    assert all(e.tags["dagster/data_version"].startswith("sha256:") for e in events)
    reg = VideoRegistry(artifacts.store())
    assert reg.get("clip-a").uri == str(inbox / "Clip A.mp4") and reg.get("clip-a").long_side == 128

    # restart: a new context with the saved cursor sees nothing new
    added, runs, events, cursor2 = _tick(incoming_videos_folder, instance, cursor, artifacts, incoming)
    assert (added, runs, events) == ([], [], [])
    assert load_cursor(cursor2) == load_cursor(cursor)

    # one more file: exactly one new partition and run
    video_maker(inbox / "clip-c.mp4", n=6, seed=2)
    added, runs, _, cursor = _tick(incoming_videos_folder, instance, cursor2, artifacts, incoming)
    assert added == ["clip-c"] and [r.partition_key for r in runs] == ["clip-c"]

    # a changed file: a new run for the same partition (new data version), no new partition
    old_version = reg.get("clip-a").data_version
    video_maker(inbox / "Clip A.mp4", n=8, seed=5)
    st = os.stat(inbox / "Clip A.mp4")
    os.utime(inbox / "Clip A.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    added, runs, events, cursor = _tick(incoming_videos_folder, instance, cursor, artifacts, incoming)
    assert added == [] and [r.partition_key for r in runs] == ["clip-a"]
    new_version = reg.get("clip-a").data_version
    assert new_version != old_version and runs[0].run_key == f"clip-a:{new_version}"
    assert events[0].tags["dagster/data_version"] == reg.get("clip-a").data_version

    # a lost cursor does not register or run anything again either
    added, runs, _, _ = _tick(incoming_videos_folder, instance, None, artifacts, incoming)
    assert (added, runs) == ([], [])
    assert sorted(instance.get_dynamic_partitions("videos")) == ["clip-a", "clip-c", "clip_b"]


def test_folder_sensor_waits_for_files_being_copied(tmp_path, instance, video_maker):
    inbox = tmp_path / "incoming"
    video_maker(inbox / "fresh.mp4", n=4)
    artifacts = ArtifactStoreResource(root=str(tmp_path / "art"))
    slow = IncomingVideosResource(folder=str(inbox), settle_seconds=3600)
    added, runs, _, cursor = _tick(incoming_videos_folder, instance, None, artifacts, slow)
    assert (added, runs) == ([], [])
    assert load_cursor(cursor) == {}  # not marked as seen: picked up once it settles
    settled = IncomingVideosResource(folder=str(inbox), settle_seconds=0)
    added, _, _, _ = _tick(incoming_videos_folder, instance, cursor, artifacts, settled)
    assert added == ["fresh"]


def test_folder_sensor_limits_work_per_tick(tmp_path, instance, video_maker):
    inbox = tmp_path / "incoming"
    src = video_maker(tmp_path / "v.mp4", n=4)
    inbox.mkdir()
    for i in range(5):
        shutil.copyfile(src, inbox / f"v{i}.mp4")
    artifacts = ArtifactStoreResource(root=str(tmp_path / "art"))
    incoming = IncomingVideosResource(folder=str(inbox), settle_seconds=0, max_per_tick=2)
    seen, cursor = [], None
    for _ in range(4):
        added, runs, _, cursor = _tick(incoming_videos_folder, instance, cursor, artifacts, incoming)
        assert len(added) <= 2
        seen += added
    assert sorted(seen) == [f"v{i}" for i in range(5)]


@pytest.mark.s3
def test_s3_sensor_uses_etags(tmp_path, instance, s3_uri, video_maker):
    from vipe_dagster.io import fs

    clip = video_maker(tmp_path / "clip.mp4", n=6)
    fsys, _ = fs.get_fs(s3_uri)
    fsys.put_file(str(clip), f"{s3_uri[5:]}/incoming/day1/Clip 1.mp4")
    fsys.put_file(str(clip), f"{s3_uri[5:]}/incoming/readme.md")
    artifacts = ArtifactStoreResource(root=f"{s3_uri}/artifacts")
    incoming = IncomingVideosResource(folder=None, s3_prefix=f"{s3_uri}/incoming", settle_seconds=0)
    added, runs, events, cursor = _tick(incoming_videos_s3, instance, None, artifacts, incoming)
    assert added == ["clip-1"] and len(runs) == 1
    etag = fsys.info(f"{s3_uri[5:]}/incoming/day1/Clip 1.mp4")["ETag"].strip('"')
    assert events[0].tags["dagster/data_version"] == f"etag:{etag}"
    assert VideoRegistry(artifacts.store()).get("clip-1").uri == f"{s3_uri}/incoming/day1/Clip 1.mp4"
    time.sleep(0.01)
    added, runs, _, _ = _tick(incoming_videos_s3, instance, cursor, artifacts, incoming)
    assert (added, runs) == ([], [])
    # the folder sensor without a folder configured skips and says why
    with dg.build_sensor_context(instance=instance, resources={"artifacts": artifacts, "incoming": incoming}) as ctx:
        assert "incoming.folder" in incoming_videos_folder(ctx).skip_message
