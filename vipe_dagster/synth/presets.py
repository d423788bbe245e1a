"""Standard synthetic sequences for accuracy benchmarks (shared by the pose, depth and mask suites).

Every preset is a :class:`SceneConfig`; ``quick`` shortens and shrinks them for smoke runs. The set covers
the motions a video pose engine meets: forward walking, orbiting an object, hand-held wandering, pure
rotation (no parallax: intrinsics and rotation only) and a fixed camera, indoors and outdoors, with and
without independently moving objects.
"""

from __future__ import annotations

from dataclasses import replace

from .scene import SceneConfig

_PRESETS: dict[str, SceneConfig] = {
    "indoor_forward": SceneConfig(trajectory="forward", scene="indoor", seed=0),
    "indoor_orbit": SceneConfig(trajectory="orbit", scene="indoor", seed=1),
    "indoor_handheld": SceneConfig(trajectory="handheld", scene="indoor", seed=2),
    "indoor_handheld_dynamic": SceneConfig(trajectory="handheld", scene="indoor", moving_objects=2, seed=3),
    "outdoor_forward": SceneConfig(trajectory="forward", scene="outdoor", seed=4),
    "outdoor_orbit_dynamic": SceneConfig(trajectory="orbit", scene="outdoor", moving_objects=2, seed=5),
    "indoor_rotation": SceneConfig(trajectory="rotation", scene="indoor", seed=6),
    "indoor_fixed_dynamic": SceneConfig(trajectory="fixed", scene="indoor", moving_objects=2, seed=7),
}


def preset_names() -> list[str]:
    return list(_PRESETS)


def preset(name: str, quick: bool = False) -> SceneConfig:
    """The named preset (sequence name = preset name); ``quick``: 30 frames at 256x192."""
    from ..errors import ConfigError

    if name not in _PRESETS:
        raise ConfigError(f"unknown synthetic preset {name!r}; available: {', '.join(_PRESETS)}")
    cfg = replace(_PRESETS[name], name=name)
    if quick:
        cfg = replace(cfg, num_frames=30, width=256, height=192)
    return cfg


def benchmark_configs(quick: bool = False, names: list[str] | None = None) -> list[SceneConfig]:
    """Configs of the standard benchmark set (all presets, or the named ones)."""
    return [preset(n, quick) for n in (names or preset_names())]
