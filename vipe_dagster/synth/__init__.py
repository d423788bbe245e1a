"""Ground-truth scene generator: rendered videos with exact poses, intrinsics, depth and instance masks."""

from .generate import SynthResult, generate
from .presets import benchmark_configs, preset, preset_names
from .scene import Intrinsics, Scene, SceneConfig
from .trajectory import TRAJECTORIES, look_at, path_length

__all__ = ["Intrinsics", "Scene", "SceneConfig", "SynthResult", "TRAJECTORIES", "benchmark_configs", "generate",
           "look_at", "path_length", "preset", "preset_names"]
