"""Registry, discovery, placement tags, quality functions and resources (no runs)."""

import re
import sys
import textwrap

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vipe_dagster.errors import ConfigError, InputError
from vipe_dagster.io import ArtifactStore
from vipe_dagster.quality import frame_metrics_table, intrinsics_plausibility, pose_validity
from vipe_dagster.registry import VideoRegistry, is_valid_key, sanitize_key


@pytest.mark.parametrize("name,key", [
    ("dog-example.mp4", "dog-example"),
    ("My Clip (2).MP4", "my-clip-2"),
    ("take_01,cam02.mov", "take_01-cam02"),
    ("s3://bucket/a/b/Ünïcode vidéo.mkv", "n-code-vid-o"),
    ("---.mp4", "video"),
    ("x" * 100 + ".mp4", "x" * 64),
])
def test_sanitize_key(name, key):
    assert sanitize_key(name) == key
    assert is_valid_key(sanitize_key(name))


def test_registry_register_collision_and_idempotence(tmp_path, video_maker):
    a = video_maker(tmp_path / "a" / "Clip.mp4", n=4)
    b = video_maker(tmp_path / "b" / "clip.mp4", n=4, seed=1)
    reg = VideoRegistry(ArtifactStore(tmp_path / "art"))
    ea, changed = reg.register(str(a), end_frame=2, long_side=64)
    assert changed and ea.key == "clip" and ea.data_version.startswith("sha256:")
    eb, _ = reg.register(str(b))
    assert eb.key.startswith("clip-") and eb.key != ea.key and is_valid_key(eb.key)
    again, changed = reg.register(str(a), end_frame=2, long_side=64)
    assert not changed and again.key == "clip"
    assert reg.get("clip").uri == str(a) and reg.get("clip").end_frame == 2
    assert reg.keys() == sorted([ea.key, eb.key])
    with pytest.raises(InputError, match="must match"):
        reg.register(str(a), key="Bad Key")
    with pytest.raises(Exception, match="not registered"):
        reg.get("missing")


def test_placement_tags_come_from_env(monkeypatch):
    from assets_defs._common import placement_tags

    for v in ("VIPE_K8S_GPU_CONFIG", "VIPE_K8S_GPU_LIMIT", "VIPE_K8S_GPU_NODE_SELECTOR", "VIPE_K8S_GPU_TOLERATIONS"):
        monkeypatch.delenv(v, raising=False)
    assert placement_tags("gpu") == {}
    monkeypatch.setenv("VIPE_K8S_GPU_LIMIT", "1")
    monkeypatch.setenv("VIPE_K8S_GPU_NODE_SELECTOR", "pool=a100, zone=x")
    monkeypatch.setenv("VIPE_K8S_GPU_TOLERATIONS", '[{"key": "nvidia.com/gpu", "operator": "Exists"}]')
    cfg = placement_tags("gpu")["dagster-k8s/config"]
    assert cfg["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert cfg["pod_spec_config"]["node_selector"] == {"pool": "a100", "zone": "x"}
    assert cfg["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    # without VIPE_K8S_GPU_TOLERATIONS the default nvidia.com/gpu toleration stays (it once became [])
    monkeypatch.delenv("VIPE_K8S_GPU_TOLERATIONS")
    cfg = placement_tags("gpu")["dagster-k8s/config"]
    assert cfg["pod_spec_config"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    monkeypatch.setenv("VIPE_K8S_GPU_CONFIG", '{"pod_spec_config": {"node_selector": {"n": "1"}}}')
    assert placement_tags("gpu") == {"dagster-k8s/config": {"pod_spec_config": {"node_selector": {"n": "1"}}}}
    monkeypatch.setenv("VIPE_K8S_GPU_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="VIPE_K8S_GPU_CONFIG"):
        placement_tags("gpu")


def test_definitions_discover_new_modules(tmp_path, monkeypatch):
    """A new asset family is one module in an assets package plus one in a resources package."""
    import dagster as dg

    from vipe_dagster import definitions

    (tmp_path / "extra_assets").mkdir()
    (tmp_path / "extra_assets" / "__init__.py").write_text("")
    (tmp_path / "extra_assets" / "extra.py").write_text(textwrap.dedent("""
        import dagster as dg
        class Db(dg.ConfigurableResource):
            path: str = "x.duckdb"
        @dg.asset
        def extra_table(extra_db: Db) -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata={"path": extra_db.path})
        @dg.asset_check(asset=extra_table)
        def extra_ok() -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=True)
        ASSETS = [extra_table]
        CHECKS = [extra_ok]
        SCHEDULES = [dg.ScheduleDefinition(name="refresh", cron_schedule="0 3 * * *",
                                           target=dg.AssetSelection.assets(extra_table))]
    """))
    (tmp_path / "extra_assets" / "_helper.py").write_text("raise RuntimeError('private modules are not imported')\n")
    (tmp_path / "extra_resources").mkdir()
    (tmp_path / "extra_resources" / "__init__.py").write_text("")
    (tmp_path / "extra_resources" / "extra.py").write_text(
        "from extra_assets.extra import Db\nRESOURCES = {'extra_db': Db(path='cat.duckdb')}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(definitions, "ASSET_PACKAGES", ("assets_defs", "extra_assets"))
    monkeypatch.setattr(definitions, "RESOURCE_PACKAGES", ("resources", "extra_resources"))
    defs = definitions.build_definitions()
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"raw_video", "processed_video", "extra_table"} <= keys
    assert defs.resolve_schedule_def("refresh") is not None
    assert {"artifacts", "compute", "model_hub", "incoming", "extra_db"} <= set(defs.resources)
    res = dg.materialize([defs.resolve_assets_def("extra_table")], selection=["extra_table"])
    assert res.success  # bound to the discovered resource default
    mat = res.asset_materializations_for_node("extra_table")[0]
    assert mat.metadata["path"].value == "cat.duckdb"
    # the same key from two modules is an error that names both
    (tmp_path / "extra_resources" / "dup.py").write_text("RESOURCES = {'artifacts': object()}\n")
    with pytest.raises(Exception, match="resources.artifacts and extra_resources.dup"):
        definitions.build_definitions()
    for m in [m for m in sys.modules if m.startswith(("extra_assets", "extra_resources"))]:
        del sys.modules[m]


def _trajectory(n=40):
    t = np.linspace(0, 1, n)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("y", (40 * t)[:, None], degrees=True).as_matrix()
    c2w[:, 0, 3], c2w[:, 2, 3] = t, 0.3 * t ** 2
    return c2w


def test_pose_validity_detects_each_failure():
    good = _trajectory()
    v = pose_validity(good)
    assert v.passed, v.description
    assert v.metadata["max_orthonormality_error"] < 1e-6
    bad = good.copy()
    bad[17, 0, 3] += 1.0
    v = pose_validity(bad)
    assert not v.passed and "jump" in v.description and "frame 17" in v.description
    bad = good.copy()
    bad[5, :3, :3] *= 1.1
    v = pose_validity(bad)
    assert not v.passed and "orthonormal" in v.description and "frame 5" in v.description
    bad = good.copy()
    bad[3, 1, 1] = np.nan
    assert "non-finite" in pose_validity(bad).description
    bad = good.copy()
    bad[20, :3, :3] = bad[20, :3, :3] @ Rotation.from_euler("x", 90, degrees=True).as_matrix()
    assert "rotation jump" in pose_validity(bad).description
    static = np.tile(np.eye(4), (10, 1, 1))
    assert pose_validity(static).passed
    static[6, 0, 3] = 0.5  # a static camera that teleports
    assert not pose_validity(static).passed


def test_intrinsics_plausibility():
    w, h = 256, 144
    fx = w / (2 * np.tan(np.radians(30)))  # 60 deg hFoV
    good = np.array([[fx, fx, 127.5, 71.5]] * 5)
    v = intrinsics_plausibility(good, w, h)
    assert v.passed and abs(v.metadata["hfov_deg"] - 60) < 1e-6
    assert "FoV" in intrinsics_plausibility(good * [20, 20, 1, 1], w, h).description
    assert "fx/fy" in intrinsics_plausibility(good * [1, 2, 1, 1], w, h).description
    assert "principal point" in intrinsics_plausibility(good + [0, 0, 500, 0], w, h).description
    assert "> 0" in intrinsics_plausibility(good * [-1, 1, 1, 1], w, h).description
    drift = good.copy()
    drift[:, 0] *= np.linspace(1, 1.2, 5)
    drift[:, 1] = drift[:, 0]
    assert "varies" in intrinsics_plausibility(drift, w, h).description


def test_intrinsics_plausibility_follows_the_camera_model():
    """MEI rows are judged through the unified model (a 150 deg lens is plausible there, not as a pinhole) and
    need xi > -1; PANORAMA rows must be ViPE's zeros."""
    w, h = 320, 240
    from vipe_dagster.camera import field_of_view

    mei = np.array([[175.39, 175.39, 159.5, 119.5, 0.8]] * 4)
    v = intrinsics_plausibility(mei, w, h, camera_type="MEI")
    assert v.passed, v.description
    assert abs(v.metadata["hfov_deg"] - field_of_view("MEI", mei[0], w, h).x_deg) < 1e-9
    assert abs(v.metadata["hfov_deg"] - 150.0) < 0.1 and v.metadata["xi"] == 0.8
    # the same focal read as a pinhole would report 85 deg
    assert abs(intrinsics_plausibility(mei[:, :4], w, h).metadata["hfov_deg"] - 84.8) < 0.1
    bad_xi = mei.copy()
    bad_xi[2, 4] = -1.5
    v = intrinsics_plausibility(bad_xi, w, h, camera_type="MEI")
    assert not v.passed and "frame 2" in v.description
    assert "principal point" in intrinsics_plausibility(mei + [0, 0, 400, 0, 0], w, h, camera_type="MEI").description
    pano = np.zeros((4, 4))
    v = intrinsics_plausibility(pano, 512, 256, camera_type="PANORAMA")
    assert v.passed and "PANORAMA" in v.description
    assert not intrinsics_plausibility(pano, 512, 256).passed  # zeros as a pinhole: no focal
    pano[3, 0] = 200.0
    v = intrinsics_plausibility(pano, 512, 256, camera_type="PANORAMA")
    assert not v.passed and "frame 3" in v.description


def test_frame_metrics_table_columns():
    c2w = _trajectory(12)
    df = frame_metrics_table(c2w, np.array([[100, 100, 50, 40]]), keyframes=[0, 6], source_frames=range(10, 22))
    assert df.height == 12 and df["is_keyframe"].sum() == 2
    assert df["source_frame"].to_list() == list(range(10, 22))
    np.testing.assert_allclose(df["step"][1:].to_numpy(), np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1))


def test_model_hub_offline_names_the_missing_weight(tmp_path):
    from resources.models import ModelHubResource

    hub = ModelHubResource(cache_dir=str(tmp_path / "cache"), offline=True)
    with pytest.raises(InputError, match="acme/depth-net/weights.safetensors.*offline"):
        hub.fetch("acme/depth-net", "weights.safetensors")


def test_compute_resource_pool_limit():
    from resources.compute import ComputeResource, cuda_device_count

    assert ComputeResource(gpu_pool_size=3).pool_limit() == 3
    assert ComputeResource().pool_limit() == max(1, cuda_device_count())
    assert ComputeResource(device="cpu").resolved_device() == "cpu"


def test_great_expectations_suite_over_frame_metrics():
    from vipe_dagster.quality import expectations_report

    w, h = 256, 144
    intr = np.array([[220.0, 220.0, 127.5, 71.5]])
    good = frame_metrics_table(_trajectory(30), intr, keyframes=[0, 10, 20])
    v = expectations_report(good, w, h, expected_rows=30)
    assert v.passed, v.description
    assert v.metadata["evaluated"] >= 10 and v.metadata["failed"] == 0
    bad_pose = _trajectory(30)
    bad_pose[12, 0, 3] += 3.0
    v = expectations_report(frame_metrics_table(bad_pose, intr, keyframes=[0, 10]), w, h, expected_rows=30)
    assert not v.passed and "step_over_median" in v.description
    v = expectations_report(good, w, h, expected_rows=31)
    assert not v.passed and "expect_table_row_count_to_equal" in v.description
    v = expectations_report(frame_metrics_table(_trajectory(30), intr * [1, 1, 20, 1], [0]), w, h, expected_rows=30)
    assert not v.passed and "(cx)" in v.description


def test_engine_assets_are_pooled_versioned_and_backfilled_per_video():
    import json
    import os
    import subprocess
    from pathlib import Path

    import dagster as dg

    from vipe_dagster.definitions import build_definitions

    defs = build_definitions()
    slam = defs.resolve_assets_def("pose_trajectory")
    assert slam.op.pool == "gpu"
    assert set(slam.keys) == {dg.AssetKey("camera_intrinsics"), dg.AssetKey("pose_trajectory")}
    assert all(re.search(r"\+pose\.[0-9a-f]{10}$", v) for v in slam.code_versions_by_key.values())
    ingest = defs.resolve_assets_def("processed_video")
    assert re.search(r"\+ingest\.[0-9a-f]{10}$", ingest.code_versions_by_key[dg.AssetKey("processed_video")])
    depth, masks = defs.resolve_assets_def("depth_maps"), defs.resolve_assets_def("dynamic_masks")
    export = defs.resolve_assets_def("colmap_export")
    for a, stage in ((depth, "depth"), (masks, "masks"), (export, "colmap")):
        assert re.search(rf"\+{stage}\.[0-9a-f]{{10}}$", next(iter(a.code_versions_by_key.values())))
    assert depth.op.pool == masks.op.pool == "gpu"
    for a in (slam, ingest, depth, masks, export):
        assert a.partitions_def.name == "videos"
        assert a.backfill_policy.max_partitions_per_run == 1
    render, best = defs.resolve_assets_def("ego_render"), defs.resolve_assets_def("best_ego_view")
    assert render.op.pool == "gpu" and render.partitions_def.name == "ego_views"
    assert best.partitions_def.name == "takes"
    assert render.backfill_policy.max_partitions_per_run == best.backfill_policy.max_partitions_per_run == 1
    assert defs.resolve_job_def("video_pipeline").asset_layer.selected_asset_keys >= {
        dg.AssetKey(k) for k in ("depth_maps", "dynamic_masks", "colmap_export")}
    if not os.environ.get("VIPE_K8S_GPU_CONFIG") and not os.environ.get("VIPE_K8S_GPU_LIMIT"):
        assert "dagster-k8s/config" not in slam.op.tags  # nothing hard-coded
    # placement from the deployment's environment reaches the op tags when the code location loads
    repo = Path(__file__).resolve().parents[2]
    code = ("import json; from vipe_dagster.definitions import defs; "
            "print(defs.resolve_assets_def('pose_trajectory').op.tags['dagster-k8s/config'])")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo), "VIPE_K8S_GPU_LIMIT": "1",
                              "VIPE_K8S_GPU_NODE_SELECTOR": "gpu=h100"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    tags = json.loads(out.stdout.strip().splitlines()[-1])
    assert tags["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert tags["pod_spec_config"]["node_selector"] == {"gpu": "h100"}


def test_previews_render_and_stay_small():
    import base64

    import cv2

    from vipe_dagster.errors import ArtifactError
    from vipe_dagster.previews import contact_sheet, depth_sheet, markdown_image, mask_sheet, trajectory_views

    valid = np.ones(50, bool)
    valid[20:25] = False
    png = trajectory_views(_trajectory(50), keyframes=[0, 25, 49], valid=valid, unit="m", title="t")
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert img.shape[1] == 2 * 360 + 8  # top and side views
    green = (img[:, :, 1] > 120) & (img[:, :, 0] < 60) & (img[:, :, 2] < 60)
    red = (img[:, :, 0] > 180) & (img[:, :, 1] < 60) & (img[:, :, 2] < 60)
    assert green[:, :360].any() and red[:, :360].any() and green[:, 368:].any()  # start and end in both
    black_rows = ((img < 30).all(axis=2)).sum(axis=1)
    assert black_rows[-60:].max() >= 10  # the scale bars under the views
    with pytest.raises(ArtifactError, match="no valid camera pose"):
        trajectory_views(_trajectory(5), valid=np.zeros(5, bool))
    static = np.repeat(np.eye(4)[None], 6, axis=0)  # a fixed camera: no extent to scale by
    assert trajectory_views(static, keyframes=[0]).startswith(b"\x89PNG")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    depth = np.linspace(1, 3, 90 * 160, dtype=np.float32).reshape(90, 160)
    dimg = cv2.imdecode(np.frombuffer(depth_sheet([(0, rgb, depth), (5, rgb, depth)], 1.0, 3.0, "m"),
                                      np.uint8), cv2.IMREAD_COLOR)
    bar = dimg[:, -70:]  # the colour bar: saturated turbo colours, red (near) above blue (far)
    assert (bar[:, :, 2].astype(int) - bar[:, :, 0] > 100).any() and (bar[:, :, 0].astype(int) - bar[:, :, 2] > 100).any()
    mask = np.zeros((90, 160), np.uint8)
    mask[20:50, 30:90] = 1
    assert mask_sheet([(3, rgb, mask)]).startswith(b"\x89PNG")
    frames = [(i, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)) for i in range(4)]
    sheet = contact_sheet(frames)
    md = markdown_image(sheet, "noise", max_bytes=48_000)
    assert md.startswith("![noise](data:image/jpeg;base64,")
    assert len(base64.b64decode(md.split(",", 1)[1][:-1])) < len(sheet)
    assert markdown_image(png).startswith("![preview](data:image/png;base64,")
    with pytest.raises(ArtifactError, match=r"\(N,4,4\)"):
        trajectory_views(np.zeros((3, 3, 4)))
    with pytest.raises(ArtifactError, match="at least one frame"):
        contact_sheet([])
