"""Typed run config generated from the engine models: ``slam_pose``'s nested pose sections and ``ego_render``'s
settings reach the engine, and Dagster's config validation rejects a wrongly typed or unknown nested value
before any step runs."""

import json

import dagster as dg
import pydantic
import pytest
from graph_runs import register

import assets_defs.pose as pose_assets
from resources.artifacts import ArtifactStoreResource
from resources.egoexo import EgoExoResource
from vipe_dagster.config import PoseConfig
from vipe_dagster.definitions import build_definitions
from vipe_dagster.errors import InputError


def _failures(res) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in res.all_events if e.is_step_failure)


def test_nested_pose_settings_in_run_config_reach_run_pose(tmp_path, instance, video_maker, monkeypatch):
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    entry = register(instance, artifacts, video_maker(tmp_path / "clip.mp4", n=8))
    seen: list[PoseConfig] = []

    def capture(store, name, config, progress=False):
        seen.append(config)
        raise InputError("configuration captured; SLAM not run in this test")

    monkeypatch.setattr(pose_assets, "run_pose", capture)
    defs = build_definitions({"artifacts": artifacts})
    job = defs.resolve_job_def("video_pipeline")
    run_config = {"ops": {"slam_pose": {"config": {
        "preset": "fixed_camera", "seed": 7,
        "ba": {"window": 12, "loss": "cauchy"}, "tracking": {"max_features": 1200},
        "intrinsics": {"fx": 150.0, "sweep_fov_deg": [40.0, 90.0]}, "map": {"reassociate": False}}}}}
    res = job.execute_in_process(instance=instance, partition_key=entry.key, run_config=run_config,
                                 raise_on_error=False)
    assert not res.success and "configuration captured" in _failures(res)
    (cfg,) = seen
    assert (cfg.ba.window, cfg.ba.loss, cfg.tracking.max_features, cfg.map.reassociate) == (12, "cauchy", 1200, False)
    assert (cfg.intrinsics.fx, cfg.intrinsics.sweep_fov_deg, cfg.seed) == (150.0, (40.0, 90.0), 7)
    assert cfg.assume_fixed_camera_pose  # the preset's part stays
    assert cfg.ba.device == "cpu"  # the compute resource's device, not a run-config field
    # settings not given are the engine's defaults, section by section
    d = PoseConfig()
    assert cfg.keyframe == d.keyframe and cfg.ba.window_iters == d.ba.window_iters
    assert cfg.tracking.min_tracks == d.tracking.min_tracks and cfg.intrinsics.fov_prior_deg == 60.0


@pytest.mark.parametrize("bad, where", [
    ({"ba": {"window": "twelve"}}, "ba:window"),
    ({"tracking": {"max_features": 1.5}}, "tracking:max_features"),
    ({"ba": {"windw": 12}}, "windw"),
    ({"ba": {"device": "cuda"}}, "device"),  # the compute resource's, not run config
    ({"overrides": {"ba.window": "12"}}, "overrides"),  # dotted strings are gone: typed sections instead
    ({"intrinsics": {"fx": "900"}}, "intrinsics:fx"),
])
def test_a_wrongly_typed_or_unknown_nested_pose_setting_is_rejected_by_dagster(tmp_path, bad, where):
    defs = build_definitions({"artifacts": ArtifactStoreResource(root=str(tmp_path / "a"))})
    job = defs.resolve_job_def("video_pipeline")
    dg.validate_run_config(job, {"ops": {"slam_pose": {"config": {"ba": {"window": 12}}}}})  # a good one
    with pytest.raises(dg.DagsterInvalidConfigError) as err:
        dg.validate_run_config(job, {"ops": {"slam_pose": {"config": bad}}})
    assert where in str(err.value), str(err.value)


def test_a_pose_section_value_the_engine_refuses_fails_with_the_setting_named():
    cfg = pose_assets.PoseRunConfig(intrinsics={"fy": 100.0})  # fy without fx
    with pytest.raises(InputError, match="invalid slam_pose run config: intrinsics: .*fy given without fx"):
        pose_assets.build_pose_config(cfg, "cpu")
    cfg = pose_assets.PoseRunConfig(intrinsics={"camera_model": "fisheeye"})  # Optional[Literal]: engine-checked
    with pytest.raises(InputError, match="intrinsics.camera_model"):
        pose_assets.build_pose_config(cfg, "cpu")


def test_ego_render_run_config_reaches_the_renderer(tmp_path, instance):
    from vipe_dagster.synth.egoexo_take import generate_take

    take = generate_take(str(tmp_path / "takes"), num_frames=4, resolution=64)
    art = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    defs = build_definitions({"artifacts": art, "egoexo": EgoExoResource(takes_root=take.root)})
    key = "synth_take_1__cam01"
    instance.add_dynamic_partitions("ego_views", [key])
    job = defs.resolve_job_def("ego_render_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match="fish_eye_rendering"):
        dg.validate_run_config(job, {"ops": {"ego_render": {"config": {"fish_eye_rendering": "yes"}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="background"):
        dg.validate_run_config(job, {"ops": {"ego_render": {"config": {"background": "black"}}}})
    cfg = {"ops": {"ego_render": {"config": {"resolution": 64, "subsample": 1, "fish_eye_rendering": False,
                                             "use_mean_bg": False, "point_size": 2.0, "points_per_pixel": 8,
                                             "background": [0.0, 0.0, 1.0], "min_coverage": 0.0}}}}
    res = job.execute_in_process(instance=instance, partition_key=key, run_config=cfg, raise_on_error=False)
    assert res.success, _failures(res)
    out = tmp_path / "artifacts" / "render" / "synth_take_1" / "cam01" / "test_output_pts2.0"  # no mean_bg/fisheye
    meta = json.loads((out / "render_meta.json").read_text())["config"]
    assert (meta["fish_eye_rendering"], meta["use_mean_bg"], meta["point_size"], meta["points_per_pixel"],
            meta["resolution"], list(meta["background"])) == (False, False, 2.0, 8, 64, [0.0, 0.0, 1.0])
    assert meta["output"] == "both" and meta["near_clip"] == 0.0  # asset-fixed / engine default


def test_camera_presets_reach_the_engine_with_their_sections():
    """wide_angle / panorama give the pose asset an MEI / panorama PipelineConfig, with the run config's MEI and
    panorama settings; a setting out of the engine's bounds is refused."""
    pipe = pose_assets.build_pipeline_config(pose_assets.PoseRunConfig(
        preset="wide_angle", mei=pose_assets.MeiRunConfig(xi_init=0.6)), "cpu")
    assert pipe.camera == "mei" and pipe.mei.xi_init == 0.6 and pipe.pose.ba.device == "cpu"
    pipe = pose_assets.build_pipeline_config(pose_assets.PoseRunConfig(
        preset="panorama", panorama=pose_assets.PanoramaRunConfig(view_px=256, track_view="left")), "cpu")
    assert pipe.camera == "panorama" and (pipe.panorama.view_px, pipe.panorama.track_view) == (256, "left")
    assert pose_assets.build_pipeline_config(pose_assets.PoseRunConfig(preset="pose_only"), "cpu").camera == "pinhole"
    with pytest.raises(pydantic.ValidationError, match="fov_deg"):  # the engine's bounds, in the run config
        pose_assets.PanoramaRunConfig(fov_deg=30.0)


def test_exo_inference_fill_method_in_run_config_reaches_the_engine(tmp_path, instance, monkeypatch):
    from vipe_dagster.egoexo import exo_infer
    from vipe_dagster.synth.egoexo_take import generate_rig_take

    take = generate_rig_take(str(tmp_path / "takes"), num_cameras=2, num_frames=4, exo_size=(96, 72), resolution=64)
    seen = []

    def capture(take, cam, out, cfg, views, cache):
        seen.append(cfg)
        raise InputError("configuration captured; rig depth not run in this test")

    monkeypatch.setattr(exo_infer, "infer_exo_camera", capture)
    monkeypatch.setattr(exo_infer, "rig_views", lambda take, cfg: {})
    defs = build_definitions({"artifacts": ArtifactStoreResource(root=str(tmp_path / "artifacts")),
                              "egoexo": EgoExoResource(takes_root=take.root)})
    key = f"{take.take}__{take.cams[0]}"
    instance.add_dynamic_partitions("ego_views", [key])
    job = defs.resolve_job_def("exo_view_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match="fill_method"):
        dg.validate_run_config(job, {"ops": {"exo_inference": {"config": {"fill_method": "nearest"}}}})
    res = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False,
                                 run_config={"ops": {"exo_inference": {"config": {"fill_method": "colour",
                                                                                  "long_side": 96}}}})
    assert not res.success and "configuration captured" in _failures(res)
    (cfg,) = seen
    assert (cfg.fill_method, cfg.fill_holes, cfg.rig.long_side) == ("colour", True, 96)
