"""The whole per-video graph (ingest -> SLAM -> depth + masks -> COLMAP) on a generated handheld video with
ground truth, local and on s3://; a fixed camera without a learned depth prior fails with the engine's error."""

import dataclasses

import dagster as dg
import numpy as np
import pytest
from graph_runs import register as _register
from graph_runs import run_video_pipeline

from resources.artifacts import ArtifactStoreResource
from vipe_dagster.io import ArtifactStore, fs


@pytest.fixture(scope="module")
def handheld(tmp_path_factory):
    from vipe_dagster.synth.generate import generate
    from vipe_dagster.synth.presets import preset

    return generate(preset("indoor_handheld", quick=True), str(tmp_path_factory.mktemp("synth")))


def _run(instance, artifacts, key, run_config=None):
    _, _, result, checks, mats = run_video_pipeline(instance, artifacts, key, run_config)
    return result, checks, mats


def _check_full_graph(artifacts, key, handheld, result, checks, mats):
    assert result.success, [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert {"processed_video", "camera_intrinsics", "pose_trajectory", "depth_maps", "dynamic_masks",
            "colmap_export"} <= set(mats)
    assert checks["depth_valid"].passed and checks["depth_valid"].blocking
    store = artifacts.store()
    n = handheld.config.num_frames

    dm = mats["depth_maps"].metadata
    assert dm["num_frames"].value == n and dm["valid_fraction"].value >= 0.95
    assert dm["depth_p5"].value < dm["depth_p50"].value < dm["depth_p95"].value
    assert dm["frames_per_second"].value > 0
    assert dm["preview"].value.startswith(f"![{key} depth")
    assert fs.exists(dm["preview_uri"].value)
    # accuracy against the generator's ground truth, after the one scale the relative poses leave free
    gt = handheld.gt
    errs = []
    for i in (0, n // 2, n - 1):
        d, g = store.read_depth(key, i), gt.read_depth(handheld.name, i)
        ok = np.isfinite(d) & (d > 0) & np.isfinite(g) & (g > 0)
        s = np.median(g[ok] / d[ok])
        errs.append(np.median(np.abs(s * d[ok] - g[ok]) / g[ok]))
    assert max(errs) < 0.1, errs

    mm = mats["dynamic_masks"].metadata
    assert mm["num_frames"].value == n and mm["method"].value == "motion_residual+depth"
    assert mm["foreground_fraction"].value < 0.05  # the scene is static
    assert store.mask_count(key) == n

    ce = mats["colmap_export"].metadata
    assert ce["format"].value == "text" and ce["num_images"].value == n
    assert ce["points_source"].value == "sparse+dense"
    assert 0 < ce["reproj_error_median_px"].value < 1.0
    return ce["colmap_dir"].value


def test_full_graph_on_generated_video_local(tmp_path, instance, handheld):
    import pycolmap

    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = _register(instance, artifacts, handheld.video_path, long_side=0)
    result, checks, mats = _run(instance, artifacts, entry.key)
    colmap_dir = _check_full_graph(artifacts, entry.key, handheld, result, checks, mats)
    # an independent reader agrees with the metadata
    rec = pycolmap.Reconstruction(f"{colmap_dir}/sparse/0")
    ce = mats["colmap_export"].metadata
    assert rec.num_images() == handheld.config.num_frames
    assert rec.num_points3D() == ce["num_points"].value
    assert rec.compute_mean_reprojection_error() < 2.0
    # code versions make a code change show partitions stale
    ev = instance.get_latest_materialization_event(dg.AssetKey("depth_maps"))
    from vipe_dagster.provenance import code_version

    assert ev.asset_materialization.tags["dagster/code_version"] == code_version("depth")


@pytest.mark.slow
@pytest.mark.s3
def test_full_graph_on_generated_video_s3(tmp_path, instance, handheld, s3_uri):
    artifacts = ArtifactStoreResource(root=f"{s3_uri}/artifacts")
    src = f"{s3_uri}/raw/{handheld.name}.mp4"
    fsys, _ = fs.get_fs(s3_uri)
    fsys.put_file(handheld.video_path, src[5:])
    entry = _register(instance, artifacts, src, long_side=0)
    result, checks, mats = _run(instance, artifacts, entry.key)
    colmap_dir = _check_full_graph(artifacts, entry.key, handheld, result, checks, mats)
    assert colmap_dir == f"{s3_uri}/artifacts/colmap/{entry.key}"
    assert fs.exists(f"{colmap_dir}/export_stats.json") and fs.exists(f"{colmap_dir}/sparse/0/points3D.txt")
    assert fs.exists(f"{s3_uri}/artifacts/depth/{entry.key}.zip")


def test_fixed_camera_without_learned_depth_fails_with_the_engine_error(tmp_path, instance):
    from vipe_dagster.synth.generate import generate
    from vipe_dagster.synth.presets import preset

    cfg = dataclasses.replace(preset("indoor_fixed_dynamic", quick=True), num_frames=12)
    synth = generate(cfg, str(tmp_path / "synth"))
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = _register(instance, artifacts, synth.video_path, long_side=0)
    result, checks, mats = _run(instance, artifacts, entry.key,
                                {"ops": {"slam_pose": {"config": {"preset": "fixed_camera"}}}})
    assert not result.success
    assert "pose_trajectory" in mats and "depth_maps" not in mats
    assert "colmap_export" not in mats and "dynamic_masks" not in mats
    err = "\n".join(e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure)
    assert "StaticCameraError" in err and "the camera does not move" in err and "learned depth" in err
    assert not ArtifactStore(artifacts.root).exists("depth", entry.key), "no fake depth is written"


def _depth_valid_only(instance, root):
    from assets_defs.depth import depth_valid

    ctx = dg.build_op_context(partition_key="clip", instance=instance)
    return depth_valid(ctx, artifacts=ArtifactStoreResource(root=root))


def test_depth_valid_fails_on_a_wrong_frame_count_or_invalid_depth(tmp_path, instance):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    store.write_pose("clip", np.tile(np.eye(4), (5, 1, 1)))
    store.write_depth("clip", [np.ones((8, 8), np.float32)] * 4)
    instance.add_dynamic_partitions("videos", ["clip"])
    ev = _depth_valid_only(instance, store.root)
    assert not ev.passed
    assert "has 4 frames but" in ev.description and "has 5" in ev.description
    bad = np.ones((8, 8), np.float32)
    bad[:4] = np.nan
    bad[4:6] = -1.0
    store.write_depth("clip", [np.ones((8, 8), np.float32)] * 4 + [bad])
    ev = _depth_valid_only(instance, store.root)
    assert not ev.passed and "first frame 4 with 25.0%" in ev.description
    store.write_depth("clip", [np.ones((8, 8), np.float32)] * 5)
    assert _depth_valid_only(instance, store.root).passed


def test_depth_valid_fails_on_all_fill_depth_and_on_flicker(tmp_path, instance):
    """Finite, positive depth everywhere is not enough: a map that is all fill (nothing measured, per the
    confidence sidecar) or whose frames disagree after warping by the poses fails the blocking check."""
    from vipe_dagster.depth.quality import conf_writer

    store = ArtifactStore(str(tmp_path / "artifacts"))
    n, h, w = 12, 24, 32
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, 0, 3] = np.arange(n) * 0.05  # sideways motion in front of a wall at 2 m
    store.write_pose("clip", c2w)
    store.write_intrinsics("clip", np.tile([30.0, 30.0, 15.5, 11.5], (n, 1)))
    store.write_depth("clip", [np.full((h, w), 2.0, np.float32)] * n)

    def sidecar(value):
        with conf_writer(store, "clip") as cw:
            for _ in range(n):
                cw.add(np.full((h, w), value, np.uint8))

    instance.add_dynamic_partitions("videos", ["clip"])
    sidecar(200)
    ev = _depth_valid_only(instance, store.root)
    assert ev.passed, ev.description
    assert ev.metadata["measured_fraction_mean"].value == 1.0
    sidecar(0)
    ev = _depth_valid_only(instance, store.root)
    assert not ev.passed and "measured" in ev.description
    sidecar(200)
    store.write_depth("clip", [np.full((h, w), 2.0 * (1.3 if i % 2 else 1.0), np.float32) for i in range(n)])
    ev = _depth_valid_only(instance, store.root)
    assert not ev.passed and "disagree" in ev.description
