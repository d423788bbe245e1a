"""The reference's preset names: each runs weight-free, or fails before any work naming its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from ref_helpers import REVISION, run, vipe_argv

from vipe_dagster.compat.presets import (
    METRIC_INDOOR_SMALL,
    PRESET_INFO,
    RELATIVE_SMALL,
    MissingWeightsError,
    learned_config_for,
    preset_table,
    resolve_weights,
)
from vipe_dagster.config import PRESETS, preset
from vipe_dagster.errors import ConfigError


def _fake_cached(cache, spec: str):
    """A file at the checkpoint's place in the HF cache layout (what the cache look-up checks)."""
    repo_id, filename = spec.split(":")
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    (repo / "snapshots" / REVISION / filename).write_bytes(b"not read by the look-up")


def test_every_reference_preset_name_is_known_and_documented():
    assert set(PRESETS) == {"default", "pose_only", "fixed_camera", "no_vda", "static_vda", "lyra", "dav3",
                            "wide_angle", "panorama"}
    assert set(PRESET_INFO) == set(PRESETS)
    for name in PRESETS:
        cfg = preset(name)
        assert cfg.preset == name
        info = PRESET_INFO[name]
        assert info.reference and info.here and info.role
    assert preset("static_vda").masks is False and preset("static_vda").depth is True
    assert preset("no_vda").depth and preset("lyra").depth and preset("dav3").depth
    assert preset("pose_only").depth is False
    rows = {r["preset"]: r for r in preset_table()}
    assert rows["dav3"]["weights"] == "required" and "one yaw view only" in rows["panorama"]["here"]
    assert preset("wide_angle").camera == "mei" and preset("wide_angle").depth
    assert "MEI" in rows["wide_angle"]["here"]


def test_panorama_preset_runs_the_equirectangular_camera():
    cfg = preset("panorama")
    assert cfg.camera == "panorama" and cfg.depth and not cfg.masks
    assert cfg.panorama.fov_deg == 100.0


def test_weight_free_presets_ignore_a_cached_checkpoint(tmp_path):
    _fake_cached(tmp_path, METRIC_INDOOR_SMALL.spec)
    for name in ("default", "no_vda", "static_vda", "lyra", "pose_only", "fixed_camera"):
        cfg = preset(name)
        res = resolve_weights(cfg, hf_cache=str(tmp_path))
        assert res.checkpoint is None and cfg.depth_config.learned is None, name


def test_dav3_needs_its_checkpoint(tmp_path):
    with pytest.raises(MissingWeightsError) as exc:
        resolve_weights(preset("dav3"), hf_cache=str(tmp_path))
    msg = str(exc.value)
    assert RELATIVE_SMALL.spec in msg and "Depth-Anything-3" in msg and "--depth_model" in msg
    assert str(tmp_path) in msg
    _fake_cached(tmp_path, RELATIVE_SMALL.spec)
    cfg = preset("dav3")
    res = resolve_weights(cfg, hf_cache=str(tmp_path))
    assert res.checkpoint_source == "cache" and res.checkpoint == RELATIVE_SMALL.spec
    assert res.checkpoint_path.endswith(RELATIVE_SMALL.filename)
    assert cfg.depth_config.learned.repo_id == RELATIVE_SMALL.repo_id
    assert cfg.depth_config.learned.output == "relative_disparity"


def test_fixed_camera_depth_presets_need_the_metric_checkpoint(tmp_path):
    for name in ("lyra", "default", "no_vda", "static_vda"):
        cfg = preset(name)
        cfg.pose.assume_fixed_camera_pose = True
        with pytest.raises(MissingWeightsError, match="fixed camera has no parallax") as exc:
            resolve_weights(cfg, hf_cache=str(tmp_path))
        assert METRIC_INDOOR_SMALL.spec in str(exc.value)
    _fake_cached(tmp_path, METRIC_INDOOR_SMALL.spec)
    cfg = preset("lyra")
    cfg.pose.assume_fixed_camera_pose = True
    res = resolve_weights(cfg, hf_cache=str(tmp_path))
    learned = cfg.depth_config.learned
    assert res.role.startswith("MoGe-2") and learned.output == "metric_depth" and learned.max_depth == 20.0
    assert learned.backbone == "vit_small_patch14_dinov2" and learned.features == 64
    # fixed_camera (ours) has no depth stage: nothing needed
    assert resolve_weights(preset("fixed_camera"), hf_cache=str(tmp_path / "empty")).checkpoint is None


def test_given_checkpoint_is_looked_up_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = "depth-anything/Depth-Anything-V2-Metric-VKITTI-Base:depth_anything_v2_metric_vkitti_vitb.pth"
    from vipe_dagster.depth.learned import ModelWeightsError

    with pytest.raises(ModelWeightsError, match="not available"):
        resolve_weights(preset("default"), depth_model=spec, hf_cache=str(tmp_path))
    _fake_cached(tmp_path, spec)
    cfg = preset("pose_only")
    res = resolve_weights(cfg, depth_model=spec, hf_cache=str(tmp_path))
    assert res.checkpoint_source == "given" and cfg.depth is True
    learned = cfg.depth_config.learned
    assert (learned.backbone, learned.features, learned.out_channels) == (
        "vit_base_patch14_dinov2",
        128,
        [96, 192, 384, 768],
    )
    assert learned.output == "metric_depth" and learned.max_depth == 80.0


def test_checkpoint_names_select_the_architecture():
    large = learned_config_for("depth-anything/Depth-Anything-V2-Large:depth_anything_v2_vitl.pth")
    assert large.backbone == "vit_large_patch14_dinov2" and large.layer_indices == [4, 11, 17, 23]
    assert large.output == "relative_disparity"
    fp16 = learned_config_for("Kijai/DepthAnythingV2-safetensors:depth_anything_v2_vits_fp16.safetensors")
    assert fp16.backbone == "vit_small_patch14_dinov2"
    with pytest.raises(ConfigError, match="REPO_ID:FILENAME"):
        learned_config_for("just-a-repo")


@pytest.mark.parametrize("front", ["vipe", "vipe-dagster"])
def test_missing_checkpoint_fails_before_any_work(clip, tmp_path, front):
    out = tmp_path / "out"
    argv = vipe_argv() if front == "vipe" else ["python", "-m", "vipe_dagster.cli"]
    p = run(
        [*argv, "infer", clip, "-o", out, "--pipeline", "lyra", "--assume_fixed_camera_pose"],
        tmp_path,
        HF_HUB_CACHE=str(tmp_path / "empty-cache"),
    )
    assert p.rc == 2 and "Traceback" not in p.err, p.err[-2000:]
    assert len(p.error_lines) == 1 and METRIC_INDOOR_SMALL.spec in p.error_lines[0]
    assert "huggingface-cli download" in p.error_lines[0]
    assert not out.exists()
    p = run(
        [*argv, "infer", clip, "-o", out, "--pipeline", "dav3"],
        tmp_path,
        HF_HUB_CACHE=str(tmp_path / "empty-cache"),
    )
    assert p.rc == 2 and RELATIVE_SMALL.spec in p.error_lines[0] and not out.exists()
    p = run([*argv, "infer", clip, "-o", out, "--pipeline", "panorama"], tmp_path)  # the clip is not 2:1
    assert p.rc == 2 and "needs an equirectangular video" in p.error_lines[0] and not out.exists()
    assert "expected 2:1" in p.error_lines[0]
    p = run([*argv, "infer", clip, "-o", out, "--pipeline", "nope"], tmp_path)
    assert p.rc == 2 and "unknown pipeline preset 'nope'" in p.error_lines[0] and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "no_vda", "static_vda", "lyra"])
def test_weight_free_presets_run(clip, tmp_path, name):
    from vipe_dagster.io import ArtifactStore

    out = tmp_path / "out"
    p = run(
        [
            *vipe_argv(),
            "infer",
            clip,
            "-o",
            out,
            "--pipeline",
            name,
            "--long_side",
            "160",
            "--end_frame",
            "7",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    store = ArtifactStore(str(out))
    assert store.exists("depth", "clip") and store.depth_count("clip") == 8
    assert store.exists("mask", "clip") == (name != "static_vda")
    man = store.read_manifest("clip")
    assert man["preset"]["name"] == name and man["preset"]["learned_checkpoint"] is None
    assert man["pipeline"]["preset"] == name
    d = store.read_depth("clip", 3)
    assert d.shape == (180, 320) and np.isfinite(d).mean() > 0.9
