"""Ego-Exo4D branch: take discovery (only renderable take x camera pairs), ``ego_render`` + ``best_ego_view`` on
a synthetic take with two exo cameras, and the takes sensor."""

import json
import re
import shutil
from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.egoexo import EgoExoResource
from vipe_dagster.definitions import build_definitions
from vipe_dagster.egoexo.takes import discover_takes, sanitize_take, select_views, split_view_key
from vipe_dagster.synth.egoexo_take import add_exo_camera, generate_take

RES = 96


@pytest.fixture
def take(tmp_path):
    t = generate_take(str(tmp_path / "takes"), num_frames=4, resolution=RES)
    add_exo_camera(t, "cam02", 60.0)
    return t


def test_discovery_registers_only_renderable_pairs(tmp_path, take):
    root = Path(take.root)
    # cam03: a ViPE result but no placement in gopro_calibs.csv or the camera_pose JSON
    shutil.copytree(take.vipe_dir, Path(take.vipe_dir).parent / "cam03")
    # cam04: placed, but its ViPE result lacks depth
    add_exo_camera(take, "cam04", 10.0)
    for p in (Path(take.vipe_dir).parent / "cam04" / "depth").iterdir():
        p.unlink()
    # a second take with a ViPE folder for cam01 that holds nothing, and a third without annotations
    (root / "vipe_results" / "Other Take #2" / "cam01").mkdir(parents=True)
    cp = json.loads(Path(take.camera_pose_json).read_text())
    cp["metadata"]["take_name"] = "Other Take #2"
    (Path(take.camera_pose_json).parent / "other.json").write_text(json.dumps(cp))
    shutil.copytree(take.vipe_dir, root / "vipe_results" / "no_annotations" / "cam01")
    # a take whose camera_pose JSON names it only after 100k+ characters of extrinsics (full parse fallback)
    late = {"aria01": cp["aria01"], "cam01": cp["cam01"], "pad": "x" * 100_000,
            "metadata": {"take_name": "late_meta", "take_uid": "u2"}}
    (Path(take.camera_pose_json).parent / "late.json").write_text(json.dumps(late))
    shutil.copytree(take.vipe_dir, root / "vipe_results" / "late_meta" / "cam01")

    found = discover_takes(str(root))
    assert found.view_keys == ["late_meta__cam01", "synth_take_1__cam01", "synth_take_1__cam02"]
    assert found.take_keys == ["late_meta", "synth_take_1"]
    assert found.get("late_meta__cam01").gopro_calibs is None  # placed by the JSON's cam01 entry
    only = discover_takes(str(root), take_keys={"synth_take_1"})
    assert only.view_keys == ["synth_take_1__cam01", "synth_take_1__cam02"]
    reasons = {(t, c): r for t, c, r in found.skipped}
    assert "neither" in reasons[("synth_take_1", "cam03")]
    assert "0 complete ViPE sequences" in reasons[("synth_take_1", "cam04")]
    assert "0 complete ViPE sequences" in reasons[("Other Take #2", "cam01")]
    assert "take_name" in reasons[("no_annotations", "*")]
    assert all(re.fullmatch(r"[a-z0-9_-]+", k) for k in found.view_keys)
    v = found.get("synth_take_1__cam02")
    assert v.cam == "cam02" and v.num_frames == 4 and v.gopro_calibs == take.gopro_calibs
    with pytest.raises(Exception, match="not renderable.*cam03"):
        found.get("synth_take_1__cam03")
    # keys: separator unambiguous, odd names sanitised
    assert sanitize_take("Other Take #2") == "other-take-2" and sanitize_take("a__b") == "a_b"
    assert split_view_key("a_b__cam02") == ("a_b", "cam02")
    keys = ["t1__cam01", "t1__cam02", "t2__cam02"]
    assert select_views(keys, cameras=["cam02"]) == ["t1__cam02", "t2__cam02"]
    assert select_views(keys, takes=["t1"]) == ["t1__cam01", "t1__cam02"]
    assert discover_takes(str(tmp_path / "nothing")).views == []


def _run(defs, instance, job, key, run_config=None):
    res = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key,
                                                       run_config=run_config or {}, raise_on_error=False)
    assert res.success, [e.event_specific_data.error.to_string() for e in res.all_events if e.is_step_failure]
    mats = [e.event_specific_data.materialization for e in res.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"]
    checks = [e.event_specific_data for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return mats[0].metadata, checks


def test_ego_render_and_best_view_on_a_two_camera_take(tmp_path, instance, take):
    from assets_defs.egoexo import egoexo_takes

    art = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    egoexo = EgoExoResource(takes_root=take.root)
    defs = build_definitions({"artifacts": art, "egoexo": egoexo})

    # the sensor registers the take and its two views and asks for their renders
    ctx = dg.build_sensor_context(instance=instance, resources={"egoexo": egoexo})
    tick = egoexo_takes(ctx)
    assert sorted(r.partition_key for r in tick.run_requests) == ["synth_take_1__cam01", "synth_take_1__cam02"]
    adds = {r.partitions_def_name: list(r.partition_keys) for r in tick.dynamic_partitions_requests}
    assert adds == {"takes": ["synth_take_1"], "ego_views": ["synth_take_1__cam01", "synth_take_1__cam02"]}
    for name, keys in adds.items():
        instance.add_dynamic_partitions(name, keys)

    cfg = {"ops": {"ego_render": {"config": {"resolution": RES, "subsample": 1, "min_coverage": 0.3}}}}
    md, cov = {}, {}
    for key in ("synth_take_1__cam01", "synth_take_1__cam02"):
        cam = split_view_key(key)[1]
        md[cam], checks = _run(defs, instance, "ego_render_job", key, cfg)
        cov[cam] = checks[0]
        out = Path(md[cam]["render_dir"].value)
        assert out == tmp_path / "artifacts" / "render" / "synth_take_1" / cam / "test_output_mean_bg_fisheye_pts1.5"
        assert md[cam]["num_frames"].value == 4 and md[cam]["preview"].value.startswith(f"![{key} ego render")
        assert cv2.imread(md[cam]["preview_uri"].value) is not None
        meta = json.loads((out / "render_meta.json").read_text())
        assert md[cam]["mean_coverage"].value == pytest.approx(float(np.mean(meta["coverage"])), abs=1e-4)

    # cam01 is the camera the ground truth was made for: its coverage matches the share of ego pixels the
    # exo camera really sees (projectaria_tools' unprojection, computed by the generator)
    gt = [cv2.imread(str(Path(take.gt_dir) / "ego_fisheye_visible" / f"frame_{i:06d}.png"), 0) > 0 for i in range(4)]
    visible = float(np.mean([g.mean() for g in gt]))
    assert md["cam01"]["mean_coverage"].value == pytest.approx(visible, rel=0.15)
    assert md["cam02"]["mean_coverage"].value < 0.75 * md["cam01"]["mean_coverage"].value
    assert cov["cam01"].passed and not cov["cam02"].passed
    assert cov["cam02"].severity == dg.AssetCheckSeverity.WARN and "< 30%" in cov["cam02"].description
    # the check is partitioned like ego_render: cam02's WARN marks only its own view, not the whole asset
    check_key = dg.AssetCheckKey(dg.AssetKey("ego_render"), "render_coverage")
    spec = defs.resolve_assets_def("ego_render").get_spec_for_check_key(check_key)
    assert spec.partitions_def is not None and spec.partitions_def.name == "ego_views"
    assert {c.partition for c in cov.values()} == {"synth_take_1__cam01", "synth_take_1__cam02"}
    infos = {i.partition_key: i.latest_execution_status.value
             for i in instance.event_log_storage.get_asset_check_partition_info([check_key])}
    assert infos == {"synth_take_1__cam01": "SUCCEEDED", "synth_take_1__cam02": "FAILED"}

    # next tick: both rendered -> the take's best view is requested
    tick = egoexo_takes(dg.build_sensor_context(instance=instance, resources={"egoexo": egoexo}))
    assert [(r.job_name, r.partition_key) for r in tick.run_requests] == [("best_ego_view_job", "synth_take_1")]
    best, _ = _run(defs, instance, "best_ego_view_job", "synth_take_1")
    assert best["best_camera"].value == "cam01"
    assert best["scores_json"].value == {c: md[c]["mean_coverage"].value for c in ("cam01", "cam02")}
    doc = json.loads((tmp_path / "artifacts" / "render" / "synth_take_1" / "best_view.json").read_text())
    assert doc["best_camera"] == "cam01" and set(doc["scores"]) == {"cam01", "cam02"}
    # and then nothing is left to do
    tick = egoexo_takes(dg.build_sensor_context(instance=instance, resources={"egoexo": egoexo}))
    assert isinstance(tick, dg.SensorResult) and not tick.run_requests


def test_ego_render_of_an_unregistered_view_says_what_is_renderable(tmp_path, instance, take):
    art = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    defs = build_definitions({"artifacts": art, "egoexo": EgoExoResource(takes_root=take.root)})
    instance.add_dynamic_partitions("ego_views", ["synth_take_1__cam09"])
    res = defs.resolve_job_def("ego_render_job").execute_in_process(
        instance=instance, partition_key="synth_take_1__cam09", raise_on_error=False)
    assert not res.success
    err = "\n".join(e.event_specific_data.error.to_string() for e in res.all_events if e.is_step_failure)
    assert "'synth_take_1__cam09' is not renderable" in err and "synth_take_1__cam01" in err


def _raw_videos(take, cams=("cam01", "cam02"), aria=True) -> Path:
    """Frame-aligned videos in the Ego-Exo4D layout (each a copy of cam01's ViPE rgb video)."""
    vdir = Path(take.root) / "takes" / take.take / "frame_aligned_videos" / "downscaled" / "448"
    vdir.mkdir(parents=True, exist_ok=True)
    src = next((Path(take.vipe_dir) / "rgb").glob("*.mp4"))
    for c in cams:
        shutil.copy(src, vdir / f"{c}.mp4")
    if aria:
        shutil.copy(src, vdir / "aria01_214-1.mp4")
    return vdir


def test_egox_result_names_map_to_their_camera_and_every_skip_is_reported(take):
    from vipe_dagster.egoexo.takes import result_camera

    assert result_camera("cam02_static_vda_fixedcam") == "cam02"
    assert result_camera("cam01_lyra_fixedcam") == "cam01"
    assert result_camera("gp03_moge_static_vda_fixedcam_slammap") == "gp03"
    assert result_camera("cam02") == "cam02"
    assert result_camera("exo") is None and result_camera("Cam02") is None and result_camera("cam2") is None
    tdir = Path(take.vipe_dir).parent
    shutil.move(str(tdir / "cam02"), str(tdir / "cam02_static_vda_fixedcam"))
    shutil.copytree(take.vipe_dir, tdir / "cam01_lyra_fixedcam")  # a second result of cam01: reported, unused
    shutil.copytree(take.vipe_dir, tdir / "exo")  # the reference's un-named result: names no camera
    found = discover_takes(take.root)
    assert found.view_keys == ["synth_take_1__cam01", "synth_take_1__cam02"]
    assert found.get("synth_take_1__cam02").result_folder == "cam02_static_vda_fixedcam"
    assert found.get("synth_take_1__cam01").result_folder == "cam01"
    reasons = {(t, c): r for t, c, r in found.skipped}
    assert "names no exo camera" in reasons[("synth_take_1", "exo")]
    assert "'cam01' is used instead" in reasons[("synth_take_1", "cam01_lyra_fixedcam")]


def test_raw_layout_discovery_reports_every_skipped_camera(take):
    from vipe_dagster.egoexo.takes import discover_raw_takes

    vdir = _raw_videos(take, cams=("cam01", "cam02", "cam05"))
    (vdir / "notes.txt").write_text("x")
    # gp02 is calibrated (a gopro_calibs.csv row) but has no video
    csv = Path(take.gopro_calibs)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, lines[1].replace("cam01", "gp02", 1)]) + "\n")
    # a take folder without videos, and one without a camera_pose JSON
    (Path(take.root) / "takes" / "empty_take").mkdir()
    (Path(take.root) / "takes" / "no_pose" / "frame_aligned_videos" / "downscaled" / "448").mkdir(parents=True)

    found = discover_raw_takes(take.root)
    assert found.take_keys == ["synth_take_1"]
    t = found.get("synth_take_1")
    assert (t.take, t.take_uid) == ("synth_take_1", take.take_uid)
    assert sorted(t.exo_videos) == ["cam01", "cam02"] and sorted(t.ego_videos) == ["aria01"]
    assert t.gopro_calibs == take.gopro_calibs and t.online_calibration == take.online_calibration
    assert t.camera_pose_json == take.camera_pose_json and t.split == "test"
    assert t.ego_label == "aria01" and t.ego_frames == (0, take.num_frames - 1)
    assert found.view_keys == ["synth_take_1__cam01", "synth_take_1__cam02"]
    reasons = {(t_, c): r for t_, c, r in found.skipped}
    assert "camera cam05 is not in" in reasons[("synth_take_1", "cam05")] and "cam01, cam02, gp02" in \
        reasons[("synth_take_1", "cam05")]
    assert "video" in reasons[("synth_take_1", "gp02")] and "is missing" in reasons[("synth_take_1", "gp02")]
    assert "no camera video" in reasons[("synth_take_1", "notes.txt")]
    assert "no video folder" in reasons[("empty_take", "*")]
    assert "take_name" in reasons[("no_pose", "*")]
    assert "cam05" in found.report() and found.report().startswith("| take |")
    assert discover_raw_takes(take.root, take_keys={"nope"}).takes == []
    with pytest.raises(Exception, match="take .nope..*known: synth_take_1"):
        found.get("nope")


def test_camera_id_check_blocks_a_camera_missing_from_the_calibration(tmp_path, instance, take):
    """cam03 has a ViPE result (EgoX name) and an entry in the camera_pose JSON, so it is renderable, but the
    take's gopro_calibs.csv has no row for it: the blocking camera-ID check fails for it and passes for cam01."""
    from vipe_dagster.egoexo.camera_check import check_camera_ids

    tdir = Path(take.vipe_dir).parent
    shutil.copytree(take.vipe_dir, tdir / "cam03_static_vda_fixedcam")
    cp = json.loads(Path(take.camera_pose_json).read_text())
    cp["cam03"] = cp["cam01"]
    Path(take.camera_pose_json).write_text(json.dumps(cp))
    art = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    egoexo = EgoExoResource(takes_root=take.root)
    defs = build_definitions({"artifacts": art, "egoexo": egoexo})
    found = egoexo.discover()
    assert "synth_take_1__cam03" in found.view_keys
    instance.add_dynamic_partitions("ego_views", found.view_keys)
    cfg = {"ops": {"ego_render": {"config": {"resolution": 48, "subsample": 2}}}}

    def run(key):
        res = defs.resolve_job_def("ego_render_job").execute_in_process(
            instance=instance, partition_key=key, run_config=cfg, raise_on_error=False)
        checks = {e.event_specific_data.check_name: e.event_specific_data for e in res.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"}
        return res, checks["camera_ids"]

    res, good = run("synth_take_1__cam01")
    assert res.success and good.passed, good.description
    assert good.metadata["calibration"].value == take.gopro_calibs
    assert good.metadata["take_uid"].value == take.take_uid
    res, bad = run("synth_take_1__cam03")
    assert not bad.passed and not res.success  # blocking: the run fails, best_ego_view would not follow
    assert bad.severity == dg.AssetCheckSeverity.ERROR
    assert f"camera cam03 is not in {take.gopro_calibs}" in bad.description
    assert "cam01, cam02" in bad.description
    # the render's check (exo_video has its own camera_ids check, before inference)
    check_def = next(c for c in defs.asset_checks
                     if dg.AssetCheckKey(dg.AssetKey("ego_render"), "camera_ids") in c.check_keys)
    (spec,) = check_def.check_specs
    assert spec.blocking and spec.partitions_def.name == "ego_views"
    infos = {i.partition_key: i.latest_execution_status.value for i in
             instance.event_log_storage.get_asset_check_partition_info([spec.key])}
    assert infos == {"synth_take_1__cam01": "SUCCEEDED", "synth_take_1__cam03": "FAILED"}

    # the take's best view shows what discovery skipped (the reference's un-named `exo` result folder)
    shutil.copytree(take.vipe_dir, tdir / "exo")
    instance.add_dynamic_partitions("takes", ["synth_take_1"])
    best, _ = _run(defs, instance, "best_ego_view_job", "synth_take_1")
    assert best["num_skipped"].value == 1
    assert "| synth_take_1 | exo | result folder 'exo' names no exo camera" in best["skipped"].value

    # the ego stream must cover the frame range; a camera absent from the take is named
    rep = check_camera_ids(take.root, take.take, "cam01", 0, take.num_frames + 1)
    assert not rep.passed and f"lacks take frames {take.num_frames}, {take.num_frames + 1}" in rep.describe()
    rep = check_camera_ids(take.root, take.take, "cam02", 0, take.num_frames - 1)
    assert rep.passed, rep.describe()
    _raw_videos(take, cams=("cam01",))
    rep = check_camera_ids(take.root, take.take, "cam01", 0, 1)
    assert rep.passed and rep.facts["camera_source"].endswith("downscaled/448/cam01.mp4")
    rep = check_camera_ids(take.root, take.take, "gp07", 0, 1)
    assert "camera gp07 is not in take 'synth_take_1'" in rep.describe()
    assert "camera gp07 is not in " + take.gopro_calibs in rep.describe()


def test_raw_layout_discovery_and_camera_check_on_s3(take, s3_bucket):
    """The same take uploaded to S3 (moto): discovery and the camera-ID check go through the fs layer."""
    from vipe_dagster.egoexo.camera_check import check_camera_ids
    from vipe_dagster.egoexo.takes import discover_raw_takes

    _raw_videos(take, cams=("cam01", "cam02", "cam07"))
    s3, bucket = s3_bucket
    s3.put(take.root + "/annotations", f"{bucket}/ego4d/annotations", recursive=True)
    s3.put(take.root + "/takes", f"{bucket}/ego4d/takes", recursive=True)
    root = f"s3://{bucket}/ego4d"
    found = discover_raw_takes(root)
    t = found.get("synth_take_1")
    assert sorted(t.exo_videos) == ["cam01", "cam02"] and t.take_uid == take.take_uid
    assert t.exo_videos["cam02"] == f"{root}/takes/synth_take_1/frame_aligned_videos/downscaled/448/cam02.mp4"
    assert [(c, "not in" in r) for t_, c, r in found.skipped] == [("cam07", True)]
    assert check_camera_ids(root, "synth_take_1", "cam02", 0, take.num_frames - 1).passed
    rep = check_camera_ids(root, "synth_take_1", "cam07", 0, 1)
    assert not rep.passed and "camera cam07 is not in s3://" in rep.describe()


def test_takes_sensor_logs_every_skipped_folder(instance, take, capfd):
    """The skip report reaches the UI: each entry is a warning in the sensor tick's log."""
    from assets_defs.egoexo import egoexo_takes

    shutil.copytree(take.vipe_dir, Path(take.vipe_dir).parent / "exo")
    egoexo = EgoExoResource(takes_root=take.root)
    tick = egoexo_takes(dg.build_sensor_context(instance=instance, resources={"egoexo": egoexo}))
    assert sorted(r.partition_key for r in tick.run_requests) == ["synth_take_1__cam01", "synth_take_1__cam02"]
    err = capfd.readouterr().err
    assert "WARNING - skipped synth_take_1/exo: result folder 'exo' names no exo camera" in err


def test_takes_command_lists_takes_and_skips_and_checks_a_view(take, capsys):
    from vipe_dagster.cli import main

    _raw_videos(take, cams=("cam01", "cam02", "cam09"))
    assert main(["takes", take.root]) == 0
    out = capsys.readouterr().out
    assert f"synth_take_1 (key synth_take_1, uid {take.take_uid}): exo cam01, cam02; ego aria01 frames [0, 3]" in out
    assert "skipped synth_take_1/cam09: camera cam09 is not in" in out
    assert main(["takes", take.root, "--check", "synth_take_1/cam02"]) == 0
    assert capsys.readouterr().out.startswith("PASS synth_take_1/cam02")
    assert main(["takes", take.root, "--check", "synth_take_1/cam09", "--frames", "0:9"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "cam09 is not in" in out and "lacks take frames 4, 5, 6, 7, 8, 9" in out
    assert main(["takes", take.root, "--check", "cam02"]) == 2
    assert "error: --check 'cam02': expected <take>/<cam>" in capsys.readouterr().err
    assert main(["takes", str(Path(take.root) / "annotations")]) == 2
    assert "no takes/<take>/ folder" in capsys.readouterr().err
