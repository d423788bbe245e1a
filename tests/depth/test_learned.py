"""Learned depth plug-in: Depth-Anything-V2 key layout, offline loading from a local HF cache, alignment."""

from __future__ import annotations

import numpy as np
import pytest
import timm  # noqa: F401  (import before the synth fixture loads pyrender's EGL: torchvision after EGL segfaults)
import torch

from vipe_dagster.depth.config import DepthConfig, LearnedDepthConfig
from vipe_dagster.depth.learned import (
    ModelWeightsError,
    align_inverse_depth,
    build_model,
    fit_scale_shift,
    load_depth_model,
)
from vipe_dagster.depth.run import run_depth

REPO_ID = "test-org/tiny-depth-anything"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def tiny_config(cache_dir: str, **kw) -> LearnedDepthConfig:
    return LearnedDepthConfig(repo_id=REPO_ID, filename="model.safetensors", cache_dir=cache_dir, embed_dim=32,
                              depth=4, num_heads=2, layer_indices=[0, 1, 2, 3], features=16,
                              out_channels=[8, 16, 32, 32], input_size=56, **kw)


def _write_hf_cache(cache_dir, net) -> None:
    """A checkpoint in the Hugging Face cache layout: models--org--name/snapshots/<rev>/ + refs/main."""
    from safetensors.torch import save_file

    repo = cache_dir / ("models--" + REPO_ID.replace("/", "--"))
    snap = repo / "snapshots" / REVISION
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    sd["pretrained.mask_token"] = torch.zeros(1, 32)  # present in the published checkpoints, unused
    save_file(sd, str(snap / "model.safetensors"))


def _random_net(cfg: LearnedDepthConfig):
    torch.manual_seed(0)
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        net.depth_head.scratch.output_conv2[2].bias.fill_(1.0)  # keep the final ReLU away from all-zero
    return net.eval()


def test_state_dict_follows_depth_anything_v2_layout(tmp_path):
    net = build_model(tiny_config(str(tmp_path)))
    keys = set(net.state_dict())
    assert {k.split(".")[0] for k in keys} == {"pretrained", "depth_head"}
    for k in ("pretrained.pos_embed", "pretrained.cls_token", "pretrained.patch_embed.proj.weight",
              "pretrained.blocks.0.attn.qkv.weight", "pretrained.blocks.0.ls1.gamma", "pretrained.norm.weight",
              "depth_head.projects.3.weight", "depth_head.resize_layers.0.weight", "depth_head.resize_layers.3.weight",
              "depth_head.scratch.layer4_rn.weight", "depth_head.scratch.refinenet1.resConfUnit1.conv1.weight",
              "depth_head.scratch.refinenet4.out_conv.bias", "depth_head.scratch.output_conv1.weight",
              "depth_head.scratch.output_conv2.0.weight", "depth_head.scratch.output_conv2.2.bias"):
        assert k in keys, k
    assert not any(k.startswith("depth_head.resize_layers.2") for k in keys)  # identity
    assert "depth_head.scratch.layer1_rn.bias" not in keys


def test_offline_checkpoint_from_hf_cache_matches_in_memory_model(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cfg = tiny_config(str(cache))
    net = _random_net(cfg)
    _write_hf_cache(cache, net)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_depth_model(cfg)  # the path users take: hf_hub_download(local_files_only) -> safetensors
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    from vipe_dagster.depth.learned import DepthModel

    ref = DepthModel(net, cfg).predict(rgb)
    out = model.predict(rgb)
    assert out.shape == (48, 64)
    assert np.ptp(ref) > 0 and (ref > 0).all()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_missing_weights_offline_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelWeightsError) as ei:
        load_depth_model(tiny_config(str(tmp_path / "empty-cache")))
    msg = str(ei.value)
    assert REPO_ID in msg and "HF_HUB_OFFLINE" in msg and "cache" in msg


def test_wrong_layout_checkpoint_is_rejected(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    net = _random_net(tiny_config(str(cache)))
    _write_hf_cache(cache, net)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelWeightsError, match="does not match"):
        load_depth_model(tiny_config(str(cache)).model_copy(update={"features": 24}))


def test_static_camera_uses_learned_model_or_fails(scene, inputs_only, tmp_path, monkeypatch):
    res = scene(trajectory="fixed", scene="indoor", seed=2, moving_objects=1)
    store = inputs_only(res)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(str(tmp_path / "hf-cache"))
    with pytest.raises(ModelWeightsError, match="not available"):
        run_depth(store, res.name, DepthConfig(learned=cfg))
    assert not store.exists("depth", res.name)
    _write_hf_cache(tmp_path / "hf-cache", _random_net(cfg))
    out = run_depth(store, res.name, DepthConfig(learned=cfg))
    assert out.method == "learned" and out.scale == "relative"
    assert store.depth_count(res.name) == res.config.num_frames
    d0 = store.read_depth(res.name, 0)
    assert d0.shape == (res.config.height, res.config.width)
    assert np.isfinite(d0).all() and (d0 > 0).all()
    assert abs(np.median(d0) - 1.0) < 0.05  # relative scale: frame 0 median depth 1


def test_robust_scale_shift_alignment():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 10.0, (60, 80)).astype(np.float32)
    pred = (3.0 / depth - 0.05).astype(np.float32)  # inverse depth up to an affine map (a = 1/3, b = 1/60)
    mask = np.ones_like(depth, bool)
    ref = depth.copy()
    out_idx = rng.random(depth.shape) < 0.15
    ref[out_idx] *= rng.uniform(0.2, 5.0, out_idx.sum()).astype(np.float32)  # 15 % gross outliers
    a, b = fit_scale_shift(pred[mask], 1.0 / ref[mask])
    assert a == pytest.approx(1 / 3, rel=0.02) and b == pytest.approx(1 / 60, rel=0.1, abs=2e-3)
    aligned = align_inverse_depth(pred, ref, mask, "relative_disparity")
    assert np.median(np.abs(aligned - depth) / depth) < 0.01
    metric = align_inverse_depth(depth / 2.0, ref, mask, "metric_depth")
    assert np.median(np.abs(metric - depth) / depth) < 0.01
    assert align_inverse_depth(pred, ref, np.zeros_like(mask), "relative_disparity") is None
    # a prediction unrelated to the geometry is refused rather than used as a fill
    noise = rng.uniform(0.1, 1.0, depth.shape).astype(np.float32)
    assert align_inverse_depth(noise, depth, mask, "relative_disparity") is None


def test_moving_camera_with_learned_prior_fills_holes(scene, inputs_only, tmp_path, monkeypatch):
    """With a model configured on a moving camera, MVS stays the source of depth and the network's aligned
    inverse depth fills the filtered-out pixels."""
    from vipe_dagster.eval.metrics import depth_metrics

    res = scene(trajectory="orbit", scene="indoor", seed=1)
    store = inputs_only(res)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(str(tmp_path / "hf-cache"))
    _write_hf_cache(tmp_path / "hf-cache", _random_net(cfg))
    out = run_depth(store, res.name, DepthConfig(mvs_long_side=192, num_planes=48, max_frame_gap=5, learned=cfg))
    assert out.method == "mvs+learned"
    assert store.depth_count(res.name) == res.config.num_frames
    rows = [depth_metrics(p, g, align="median")
            for (_, p), (_, g) in zip(store.iter_depth(res.name), res.gt.iter_depth(res.name), strict=True)]
    assert np.mean([r["valid_fraction"] for r in rows]) >= 0.99
    # an untrained network disagrees with the MVS geometry: its fill is refused, MVS accuracy is kept
    assert np.mean([r["abs_rel"] for r in rows]) <= 0.05
