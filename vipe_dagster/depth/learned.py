"""Learned monocular depth plug-in: DINOv2 ViT (timm) + DPT head in the Depth-Anything-V2 layout.

The module tree matches the published Depth-Anything-V2 checkpoints key for key, so their state dicts
load directly: ``pretrained.*`` is the DINOv2 backbone (timm's ``vit_*_patch14_dinov2`` uses the same
parameter names; the unused ``pretrained.mask_token`` is dropped) and ``depth_head.*`` the DPT head::

    depth_head.projects.{0..3}                 1x1 convs embed_dim -> out_channels[i]
    depth_head.resize_layers.{0,1,3}           4x / 2x transposed convs, (2: identity), stride-2 conv
    depth_head.scratch.layer{1..4}_rn          3x3 convs out_channels[i] -> features (no bias)
    depth_head.scratch.refinenet{1..4}         fusion blocks: resConfUnit1/2 (conv1, conv2), out_conv
    depth_head.scratch.output_conv1            3x3 conv features -> features/2
    depth_head.scratch.output_conv2.{0,2}      3x3 conv -> 32, ReLU, 1x1 conv -> 1, ReLU (Sigmoid: metric)

Relative models predict affine-invariant inverse depth, metric models ``sigmoid * max_depth`` metres.
Weights come from the Hugging Face Hub cache via ``hf_hub_download`` (``HF_HUB_OFFLINE=1`` makes it
look only in the cache). :func:`align_inverse_depth` fits the prediction to a reference depth (the SLAM
sparse map or MVS depth) robustly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import DepthConfig, LearnedDepthConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelWeightsError(InputError):
    """Model weights that cannot be found, downloaded or loaded."""


# ------------------------------------------------------------------------------------------ network
class ResidualConvUnit(nn.Module):
    def __init__(self, features: int, use_bn: bool) -> None:
        super().__init__()
        self.use_bn = use_bn
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=not use_bn)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=not use_bn)
        if use_bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)
        self.activation = nn.ReLU(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.activation(x))
        if self.use_bn:
            out = self.bn1(out)
        out = self.conv2(self.activation(out))
        if self.use_bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock(nn.Module):
    def __init__(self, features: int, use_bn: bool) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features, use_bn)
        self.resConfUnit2 = ResidualConvUnit(features, use_bn)
        self.out_conv = nn.Conv2d(features, features, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        out = x
        if skip is not None:
            out = out + self.resConfUnit1(skip)
        out = self.resConfUnit2(out)
        if size is None:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(out)


class DPTHead(nn.Module):
    def __init__(self, in_channels: int, features: int, out_channels: Sequence[int], use_bn: bool,
                 metric: bool) -> None:
        super().__init__()
        oc = list(out_channels)
        if len(oc) != 4:
            raise ValueError(f"DPT head needs 4 out_channels, got {oc}")
        self.projects = nn.ModuleList([nn.Conv2d(in_channels, c, 1, 1, 0) for c in oc])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4, padding=0),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2, padding=0),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])
        scratch = nn.Module()
        for i, c in enumerate(oc, 1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, 1, 1, bias=False))
        for i in range(1, 5):
            setattr(scratch, f"refinenet{i}", FeatureFusionBlock(features, use_bn))
        head2 = 32
        scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, head2, 3, 1, 1), nn.ReLU(True), nn.Conv2d(head2, 1, 1, 1, 0),
            nn.Sigmoid() if metric else nn.ReLU(True), nn.Identity())
        self.scratch = scratch

    def forward(self, feats: Sequence[torch.Tensor], patch_h: int, patch_w: int) -> torch.Tensor:
        outs = [self.resize_layers[i](self.projects[i](x)) for i, x in enumerate(feats)]
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(o) for i, o in enumerate(outs, 1))
        p4 = s.refinenet4(l4, size=l3.shape[2:])
        p3 = s.refinenet3(p4, l3, size=l2.shape[2:])
        p2 = s.refinenet2(p3, l2, size=l1.shape[2:])
        p1 = s.refinenet1(p2, l1)
        out = s.output_conv1(p1)
        out = F.interpolate(out, (patch_h * 14, patch_w * 14), mode="bilinear", align_corners=True)
        return s.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """``pretrained`` (timm DINOv2 ViT) + ``depth_head`` (DPT). ``forward`` takes normalised (B,3,H,W)."""

    def __init__(self, config: LearnedDepthConfig) -> None:
        super().__init__()
        import timm

        kwargs: dict[str, Any] = {"pretrained": False, "dynamic_img_size": True, "num_classes": 0}
        for key in ("embed_dim", "depth", "num_heads"):
            if getattr(config, key) is not None:
                kwargs[key] = getattr(config, key)
        self.pretrained = timm.create_model(config.backbone, **kwargs)
        self.layer_indices = list(config.layer_indices)
        if len(self.layer_indices) != 4:
            raise ValueError(f"layer_indices must name 4 blocks, got {self.layer_indices}")
        self.metric = config.output == "metric_depth"
        self.max_depth = float(config.max_depth)
        self.depth_head = DPTHead(self.pretrained.embed_dim, config.features, config.out_channels, config.use_bn,
                                  self.metric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = x.shape[-2] // 14, x.shape[-1] // 14
        feats = self.pretrained.forward_intermediates(x, indices=self.layer_indices, norm=True,
                                                      output_fmt="NCHW", intermediates_only=True)
        out = self.depth_head(feats, ph, pw)
        out = out * self.max_depth if self.metric else F.relu(out)
        return out[:, 0]


# ------------------------------------------------------------------------------------------ weights
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def fetch_weights(config: LearnedDepthConfig) -> str:
    """Local path of the checkpoint, through ``hf_hub_download`` (cache only when offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    offline = _offline()
    where = f"{config.repo_id}/{config.filename}" + (f"@{config.revision}" if config.revision else "")
    cache = config.cache_dir or os.environ.get("HF_HUB_CACHE") or "the default Hugging Face cache"
    try:
        return hf_hub_download(config.repo_id, config.filename, revision=config.revision,
                               cache_dir=config.cache_dir, local_files_only=offline)
    except HFValidationError as exc:
        raise ModelWeightsError(f"invalid model repository id {config.repo_id!r}: {exc}") from exc
    except Exception as exc:  # EntryNotFound, LocalEntryNotFound, connection errors, gated repos ...
        mode = "HF_HUB_OFFLINE is set, so only the local cache was searched" if offline else \
            "the download failed"
        raise ModelWeightsError(
            f"depth model weights {where} are not available ({mode}; cache: {cache}): {type(exc).__name__}: "
            f"{exc}. Put the checkpoint into the Hugging Face cache (e.g. `huggingface-cli download "
            f"{config.repo_id} {config.filename}` on a machine with network, then copy the cache) or set "
            f"LearnedDepthConfig.cache_dir to a cache that has it") from exc


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelWeightsError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ModelWeightsError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


class DepthModel:
    """A loaded network plus its pre/post-processing. ``predict(rgb uint8 HxWx3) -> HxW float32``."""

    def __init__(self, net: DepthAnythingV2, config: LearnedDepthConfig) -> None:
        self.net = net.eval().to(config.device)
        self.config = config
        self.output = config.output
        self.device = torch.device(config.device)

    @torch.no_grad()
    def predict(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"depth model input must be HxWx3, got shape {rgb.shape}")
        h, w = rgb.shape[:2]
        s = self.config.input_size / min(h, w)
        nh = max(14, int(round(h * s / 14)) * 14)
        nw = max(14, int(round(w * s / 14)) * 14)
        img = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        img = (img - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].to(self.device)
        out = self.net(x)[None]
        out = F.interpolate(out, (h, w), mode="bilinear", align_corners=True)[0, 0]
        return out.float().cpu().numpy()


def build_model(config: LearnedDepthConfig, state_dict: dict[str, torch.Tensor] | None = None,
                source: str = "<memory>") -> DepthAnythingV2:
    net = DepthAnythingV2(config)
    if state_dict is not None:
        sd = {k: v for k, v in state_dict.items() if k != "pretrained.mask_token"}
        try:
            missing, unexpected = net.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ModelWeightsError(
                f"{source}: checkpoint does not match the Depth-Anything-V2 layout for {config.backbone} "
                f"(features={config.features}, out_channels={config.out_channels}): "
                f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from exc
        if missing or unexpected:
            raise ModelWeightsError(
                f"{source}: checkpoint does not match the Depth-Anything-V2 layout for {config.backbone} "
                f"(features={config.features}, out_channels={config.out_channels}): missing "
                f"{list(missing)[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                f"{list(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}")
    return net


def load_depth_model(config: LearnedDepthConfig) -> DepthModel:
    """Fetch (or find in the cache) the checkpoint and build the network from it."""
    t0 = time.perf_counter()
    path = fetch_weights(config)
    net = build_model(config, load_state_dict_file(path), source=path)
    log.info("loaded depth model %s/%s from %s in %.1f s", config.repo_id, config.filename, path,
             time.perf_counter() - t0)
    return DepthModel(net, config)


# ------------------------------------------------------------------------------------------ alignment
def fit_scale_shift(x: np.ndarray, y: np.ndarray, quantiles: tuple[float, float] = (0.1, 0.9),
                    iterations: int = 5) -> tuple[float, float] | None:
    """Robust ``y ~ a x + b``: drop ``y`` outside the quantiles, then Huber-weighted least squares."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 50:
        return None
    lo, hi = np.quantile(y, quantiles)
    keep = (y >= lo) & (y <= hi)
    x, y = x[keep], y[keep]
    if x.size < 20 or np.ptp(x) <= 0:
        return None
    wgt = np.ones_like(x)
    a = b = 0.0
    for _ in range(iterations):
        sw = np.sqrt(wgt)
        A = np.stack([x * sw, sw], 1)
        (a, b), *_ = np.linalg.lstsq(A, y * sw, rcond=None)
        r = y - (a * x + b)
        scale = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-12
        k = 1.345 * scale
        wgt = np.where(np.abs(r) <= k, 1.0, k / np.maximum(np.abs(r), 1e-12))
    return float(a), float(b)


def align_inverse_depth(pred: np.ndarray, ref_depth: np.ndarray, mask: np.ndarray, output: str,
                        max_median_rel: float = 0.1) -> np.ndarray | None:
    """Prediction aligned to ``ref_depth`` on ``mask`` -> depth map, or None when it cannot be trusted.

    ``relative_disparity``: scale and shift of the predicted inverse depth against ``1/ref_depth``.
    ``metric_depth``: a single robust scale (median ratio), which only corrects the pose scale.
    None with too little support, or when the aligned prediction disagrees with the reference by more than
    ``max_median_rel`` (median relative error on the mask): a prior that does not fit the geometry is not
    used to fill it.
    """
    m = mask & np.isfinite(ref_depth) & (ref_depth > 0) & np.isfinite(pred)
    if m.sum() < 50:
        return None
    if output == "metric_depth":
        ok = m & (pred > 0)
        if ok.sum() < 50:
            return None
        s = float(np.median(ref_depth[ok] / pred[ok]))
        out = (pred * s).astype(np.float32)
    else:
        ab = fit_scale_shift(pred[m], 1.0 / ref_depth[m])
        if ab is None or ab[0] <= 0:
            return None
        inv = ab[0] * pred + ab[1]
        floor = 1.0 / (np.nanmax(ref_depth[m]) * 10.0)
        out = (1.0 / np.maximum(inv, floor)).astype(np.float32)
    rel = float(np.median(np.abs(out[m] - ref_depth[m]) / ref_depth[m]))
    if not rel <= max_median_rel:
        log.info("learned depth rejected: median relative disagreement %.3f with the reference", rel)
        return None
    return out


def run_learned_only(store, name: str, cfg: DepthConfig, stream, progress: bool = False, t0: float | None = None):
    """Depth of a static camera from the learned model alone (no parallax to align to).

    Metric models give metres; relative models are scaled so that frame 0 has median depth 1 (one scale
    for the whole video, so depth stays temporally consistent) and the result is marked relative.
    """
    from .run import DepthResult

    t0 = time.perf_counter() if t0 is None else t0
    assert cfg.learned is not None
    model = load_depth_model(cfg.learned)
    scale = None
    frames = iter(stream)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=len(stream), desc=f"depth {name}", unit="frame")
    n = 0
    with store.depth_writer(name) as writer:
        for _, frame in frames:
            pred = model.predict(frame)
            if model.output == "metric_depth":
                depth = pred
            else:
                if scale is None:
                    med = float(np.median(pred[pred > 0])) if (pred > 0).any() else 0.0
                    scale = med if med > 0 else 1.0
                depth = scale / np.maximum(pred, scale * 1e-3)
            writer.add(depth.astype(np.float32))
            n += 1
    seconds = time.perf_counter() - t0
    return DepthResult(name=name, uri=store.path("depth", name), num_frames=n, width=stream.width,
                       height=stream.height, method="learned", depth_range=None, range_source="none",
                       mvs_valid_fraction=0.0, seconds=seconds,
                       scale="metric" if model.output == "metric_depth" else "relative")
