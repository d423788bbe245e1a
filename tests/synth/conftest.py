"""Small synthetic scenes shared by the synth tests (generated once per session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture(scope="session")
def synth_scene(tmp_path_factory):
    """``synth_scene(**config) -> SynthResult`` for 256x192 scenes, cached by config."""
    from vipe_dagster.synth import SceneConfig, generate

    cache = {}

    def make(**kw):
        kw = {"num_frames": 24, "width": 256, "height": 192, **kw}
        key = tuple(sorted(kw.items()))
        if key not in cache:
            cfg = SceneConfig(**kw)
            cache[key] = generate(cfg, str(tmp_path_factory.mktemp(cfg.resolved_name())))
        return cache[key]

    return make
