"""Fixtures for the export tests: synthetic scenes with ground truth (see colmap_scene.py)."""

from __future__ import annotations

import pytest
from colmap_scene import Scene, make_scene


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="session")
def scene_nosparse(tmp_path_factory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene_nosparse"), name="released", with_sparse=False,
                      fx=240.0, fy=252.0, seed=1)


@pytest.fixture
def export_s3_bucket(s3_bucket):
    """A fresh moto bucket (see tests/conftest.py); yields ``(s3fs, bucket)``."""
    return s3_bucket
