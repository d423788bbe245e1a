"""Ground-truth scene generator: rendered videos with exact poses, intrinsics, depth and instance masks."""

from .generate import SynthResult, generate
from .scene import Intrinsics, Scene, SceneConfig
from .trajectory import TRAJECTORIES, look_at, path_length

__all__ = ["Intrinsics", "Scene", "SceneConfig", "SynthResult", "TRAJECTORIES", "generate", "look_at",
           "path_length"]
