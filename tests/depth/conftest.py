"""Small synthetic scenes for the depth and mask tests (generated once per session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

INPUT_KINDS = ("rgb", "pose", "intrinsics", "camera")


@pytest.fixture(scope="session")
def scene(tmp_path_factory):
    """``scene(**config) -> SynthResult`` for small scenes, cached by config."""
    import numpy as np

    if not hasattr(np, "infty"):
        np.infty = np.inf  # pyrender uses the alias removed in numpy 2
    from vipe_dagster.synth import SceneConfig, generate

    cache = {}

    def make(**kw):
        kw = {"num_frames": 12, "fps": 10.0, "width": 192, "height": 144, **kw}
        key = tuple(sorted(kw.items()))
        if key not in cache:
            cfg = SceneConfig(**kw)
            cache[key] = generate(cfg, str(tmp_path_factory.mktemp(cfg.resolved_name())))
        return cache[key]

    return make


@pytest.fixture
def inputs_only(tmp_path):
    """``inputs_only(synth_result, kinds=INPUT_KINDS, folder=...) -> ArtifactStore`` holding copies of the GT inputs only."""
    from vipe_dagster.io import ArtifactStore, fs

    def make(res, kinds=INPUT_KINDS, folder="artifacts"):
        store = ArtifactStore(str(tmp_path / folder))
        for kind in kinds:
            fs.write_bytes(store.path(kind, res.name), fs.read_bytes(res.gt.path(kind, res.name)))
        return store

    return make
