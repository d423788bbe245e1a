"""ViPE's pipeline presets by name: what the reference runs, what runs here weight-free, and which learned
checkpoint (given with ``--depth_model``, or found in the Hugging Face cache) takes the reference model's
role.

The stage switches of each preset live in :func:`vipe_dagster.config.preset`; this module adds the weights:
:func:`resolve_weights` decides, **before any work**, whether a learned depth model is used and where its
checkpoint is, and fails with the checkpoint's name and how to provide it when a preset cannot run without
one (``dav3`` always; any depth preset on a fixed camera, which has no parallax for multi-view stereo).
A checkpoint that only *could* help (the weight-free presets) is used only when given explicitly, so the
contents of a cache never change a result silently.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from ..config import PipelineConfig
from ..depth.config import LearnedDepthConfig
from ..errors import ConfigError

log = logging.getLogger(__name__)


class MissingWeightsError(ConfigError):
    """A preset needs a learned checkpoint that is neither given nor in the Hugging Face cache."""


@dataclass(frozen=True)
class Checkpoint:
    """A Depth-Anything-V2-layout checkpoint on the Hugging Face Hub."""

    repo_id: str
    filename: str

    @property
    def spec(self) -> str:
        return f"{self.repo_id}:{self.filename}"


METRIC_INDOOR_SMALL = Checkpoint(
    "depth-anything/Depth-Anything-V2-Metric-Hypersim-Small", "depth_anything_v2_metric_hypersim_vits.pth"
)
RELATIVE_SMALL = Checkpoint("depth-anything/Depth-Anything-V2-Small", "depth_anything_v2_vits.pth")


@dataclass(frozen=True)
class PresetInfo:
    name: str
    reference: str  # what the reference runs under this name
    here: str  # what this engine runs weight-free
    checkpoint: Checkpoint | None  # the learned checkpoint that takes the reference model's role
    role: str  # the reference model(s) the checkpoint stands in for
    needs_weights: bool = False  # the preset cannot run at all without the checkpoint


PRESET_INFO: dict[str, PresetInfo] = {
    p.name: p
    for p in (
        PresetInfo(
            "default",
            "GeoCalib intrinsics, GroundingDINO+SAM dynamic masks, dense DROID-style BA with UniDepth-L "
            "keyframe depth for metric scale, then per-frame depth: the metric model or prompt depth from "
            "the SLAM map, aligned Video-Depth-Anything-S",
            "weight-free KLT visual SLAM with focal self-calibration, plane-sweep multi-view stereo at the "
            "scale of the poses (relative unless a metric cue is given), motion-residual dynamic masks",
            METRIC_INDOOR_SMALL,
            "UniDepth-L (metric keyframe depth)",
        ),
        PresetInfo(
            "pose_only",
            "poses and intrinsics only (no depth post-processing)",
            "weight-free visual SLAM: poses and intrinsics only",
            None,
            "-",
        ),
        PresetInfo(
            "fixed_camera",
            "(not a reference preset; the EgoX fork's --assume_fixed_camera_pose)",
            "identity poses, focal from the prior or --intrinsics, background-model masks; depth only with "
            "a learned model",
            METRIC_INDOOR_SMALL,
            "MoGe-2 / UniDepth (depth of a static camera)",
        ),
        PresetInfo(
            "no_vda",
            "default without the temporal Video-Depth-Anything model (less GPU memory)",
            "the same stages as default: this engine's depth has no temporal video-depth model to switch "
            "off (every frame is swept against its neighbours)",
            METRIC_INDOOR_SMALL,
            "UniDepth-L (metric keyframe depth)",
        ),
        PresetInfo(
            "static_vda",
            "default without instance masks (init.instance: null), VDA-L alignment",
            "default without the dynamic-mask stage",
            METRIC_INDOOR_SMALL,
            "UniDepth-L + Video-Depth-Anything-L",
        ),
        PresetInfo(
            "lyra",
            "the Lyra paper's settings, used by the EgoX scripts with a fixed camera: MoGe-2 keyframe "
            "depth, adaptive MoGe + VDA alignment",
            "the same stages as default; with a fixed camera (--assume_fixed_camera_pose) the depth comes "
            "from the learned model, so the checkpoint is needed",
            METRIC_INDOOR_SMALL,
            "MoGe-2 (metric keyframe depth)",
        ),
        PresetInfo(
            "wide_angle",
            "MEI camera model (xi refined slowly in BA), GeoCalib 'distorted' initialisation, UniDepth-L "
            "depth on a pinhole rectification warped back; no depth post-processing",
            "MEI camera: frames rectified to a pinhole view for KLT SLAM, BA and plane-sweep depth, depth "
            "warped back to the MEI image; the given MEI camera (--intrinsics fx,fy,cx,cy,xi) or focal and xi "
            "self-calibrated (radial terms estimated on the rectification of a starting MEI, refitted as MEI); "
            "dynamic masks on the pinhole view, warped back",
            None,
            "-",
        ),
        PresetInfo(
            "panorama",
            "equirectangular frames split into 4 yaw + 1 bottom pinhole views (512 px, 100 deg), rigid-rig SLAM "
            "with cross-view edges, intrinsics not optimised; no depth by default (optional panorama depth models)",
            "equirectangular frames split into virtual pinhole views (100 deg, fixed intrinsics): KLT SLAM and BA "
            "on one yaw view only (not a rigid rig; the front view unless it lacks texture), plane-sweep depth on 4 yaw + bottom + top views stitched "
            "back as ray distance; PANORAMA (all-zero) intrinsics rows; no dynamic masks",
            None,
            "-",
        ),
        PresetInfo(
            "dav3",
            "Depth-Anything-3 keyframe depth and DA3 multi-view depth conditioned on the SLAM poses "
            "(windows of 10 frames, overlap 3)",
            "default plus the learned monocular model aligned per frame to the multi-view stereo depth; "
            "the preset is defined by its learned model, so the checkpoint is needed",
            RELATIVE_SMALL,
            "Depth-Anything-3 (multi-view depth)",
            needs_weights=True,
        ),
    )
}
UNAVAILABLE: dict[str, str] = {}


# ------------------------------------------------------------------------------ checkpoint settings
_ARCH = {  # Depth-Anything-V2 encoder sizes: timm backbone, DPT features, projection widths, tapped blocks
    "vits": ("vit_small_patch14_dinov2", 64, [48, 96, 192, 384], [2, 5, 8, 11]),
    "vitb": ("vit_base_patch14_dinov2", 128, [96, 192, 384, 768], [2, 5, 8, 11]),
    "vitl": ("vit_large_patch14_dinov2", 256, [256, 512, 1024, 1024], [4, 11, 17, 23]),
}
_METRIC_MAX_DEPTH = {"hypersim": 20.0, "vkitti": 80.0}  # indoor / outdoor metric models (metres)


def learned_config_for(
    spec: str, cache_dir: str | None = None, device: str | None = None, metric: bool = False,
    max_depth: float | None = None,
) -> LearnedDepthConfig:
    """``LearnedDepthConfig`` for ``REPO_ID:FILENAME``; the encoder size (``_vits``/``_vitb``/``_vitl``) and
    the metric variants (``metric_hypersim``: 20 m, ``metric_vkitti``: 80 m) are read from the names as the
    Depth-Anything-V2 releases spell them; other names get the Small relative layout."""
    repo, sep, filename = (spec or "").partition(":")
    if not sep or not repo.strip() or not filename.strip():
        raise ConfigError(f"--depth_model must be REPO_ID:FILENAME, got {spec!r}")
    kw: dict = {
        "repo_id": repo.strip(),
        "filename": filename.strip(),
        "cache_dir": cache_dir,
        "device": device or "cpu",
    }
    low = f"{repo}/{filename}".lower()
    m = re.search(r"vit([sbl])\b|_vit([sbl])[._]", low)
    size = f"vit{(m.group(1) or m.group(2))}" if m else None
    if size in _ARCH:
        backbone, features, outs, layers = _ARCH[size]
        kw.update(backbone=backbone, features=features, out_channels=outs, layer_indices=layers)
    if "metric" in low:
        kw["output"] = "metric_depth"
        for key, depth in _METRIC_MAX_DEPTH.items():
            if key in low:
                kw["max_depth"] = depth
    if metric:  # --depth_model_metric: a metric checkpoint whose name does not say so
        kw["output"] = "metric_depth"
    if max_depth is not None:
        kw["max_depth"] = max_depth
    return LearnedDepthConfig(**kw)


def cached_checkpoint(cfg: LearnedDepthConfig) -> str | None:
    """Local path of the checkpoint when it is in the Hugging Face cache (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            cfg.repo_id, cfg.filename, cache_dir=cfg.cache_dir, revision=cfg.revision
        )
    except Exception as exc:  # an invalid repo id
        raise ConfigError(f"--depth_model {cfg.repo_id}:{cfg.filename}: {exc}") from None
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _cache_location(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def how_to_provide(ck: Checkpoint, cache_dir: str | None) -> str:
    return (
        f"give it with --depth_model {ck.spec} (with network access it is downloaded into the Hugging Face "
        f"cache; any --depth-model REPO_ID:FILENAME in the Depth-Anything-V2 layout works), or copy a cache "
        f"that holds it (`huggingface-cli download {ck.repo_id} {ck.filename}` on a machine with network) to "
        f"{_cache_location(cache_dir)} or point --hf_cache / HF_HUB_CACHE at it"
    )


@dataclass
class ResolvedWeights:
    """What :func:`resolve_weights` decided, recorded in the manifest under ``preset``."""

    preset: str
    reference: str
    here: str
    checkpoint: str | None = None  # REPO_ID:FILENAME of the learned model used, None = weight-free
    checkpoint_source: str | None = None  # "given" | "cache"
    checkpoint_path: str | None = None
    role: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.preset,
            "reference_runs": self.reference,
            "runs_here": self.here,
            "learned_checkpoint": self.checkpoint,
            "checkpoint_source": self.checkpoint_source,
            "checkpoint_path": self.checkpoint_path,
            "stands_in_for": self.role,
            "notes": self.notes,
        }


def resolve_weights(
    cfg: PipelineConfig,
    depth_model: str | None = None,
    hf_cache: str | None = None,
    device: str | None = None,
    metric: bool = False,
    max_depth: float | None = None,
) -> ResolvedWeights:
    """Decide the learned depth model of ``cfg`` (in place) before any work; see the module docstring.

    ``depth_model``: ``REPO_ID:FILENAME`` given by the user (found in the cache, or downloaded when the
    network is available; ``HF_HUB_OFFLINE=1`` searches the cache only). Raises :class:`MissingWeightsError`
    naming the checkpoint when a preset needs one that cannot be found.
    """
    from ..depth.learned import fetch_weights

    info = PRESET_INFO[cfg.preset]
    res = ResolvedWeights(cfg.preset, info.reference, info.here)
    if depth_model:
        learned = learned_config_for(depth_model, hf_cache, device, metric=metric, max_depth=max_depth)
        path = cached_checkpoint(learned) or fetch_weights(learned)  # ModelWeightsError: how to provide it
        cfg.depth_config.learned = learned
        cfg.depth = True
        res.checkpoint, res.checkpoint_source, res.checkpoint_path = (
            f"{learned.repo_id}:{learned.filename}",
            "given",
            path,
        )
        res.role = info.role if info.checkpoint is not None else "learned depth prior"
        return res
    if cfg.depth_config.learned is not None and cfg.depth:  # set through a config override (run.py)
        learned = cfg.depth_config.learned
        path = cached_checkpoint(learned) or fetch_weights(learned)
        res.checkpoint, res.checkpoint_source, res.checkpoint_path = (
            f"{learned.repo_id}:{learned.filename}",
            "given",
            path,
        )
        res.role = info.role
        return res
    fixed = cfg.pose.assume_fixed_camera_pose
    if not cfg.depth or not (info.needs_weights or fixed):
        return res
    ck = info.checkpoint or METRIC_INDOOR_SMALL
    learned = learned_config_for(ck.spec, hf_cache, device)
    path = cached_checkpoint(learned)
    why = (
        f"pipeline preset {cfg.preset!r} runs a learned depth model"
        if info.needs_weights
        else f"pipeline preset {cfg.preset!r} computes depth, and a fixed camera has no parallax for "
        f"multi-view stereo (--assume_fixed_camera_pose), so the depth must come from a learned model"
    )
    if path is None:
        raise MissingWeightsError(
            f"{why} ({ck.spec}, in the role of the reference's {info.role}), but it is not in the Hugging "
            f"Face cache at {_cache_location(hf_cache)}: {how_to_provide(ck, hf_cache)}"
            + ("" if info.needs_weights else "; or run without depth (--pipeline pose_only or fixed_camera)")
        )
    cfg.depth_config.learned = learned
    res.checkpoint, res.checkpoint_source, res.checkpoint_path, res.role = ck.spec, "cache", path, info.role
    log.info(
        "preset %s: learned depth %s from the Hugging Face cache (%s) in the role of %s",
        cfg.preset,
        ck.spec,
        path,
        info.role,
    )
    return res


def preset_table() -> list[dict[str, str]]:
    """One row per preset (for docs and ``--help``)."""
    rows = [
        {
            "preset": p.name,
            "reference": p.reference,
            "here": p.here,
            "checkpoint": p.checkpoint.spec if p.checkpoint else "-",
            "role": p.role,
            "weights": "required" if p.needs_weights else ("with a fixed camera" if p.checkpoint else "-"),
        }
        for p in PRESET_INFO.values()
    ]
    rows += [
        {
            "preset": k,
            "reference": v,
            "here": "not available yet",
            "checkpoint": "-",
            "role": "-",
            "weights": "-",
        }
        for k, v in UNAVAILABLE.items()
    ]
    return rows
