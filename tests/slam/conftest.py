"""Shared fixtures: synthetic scenes (cached per session) and evo-based trajectory metrics."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if not hasattr(np, "infty"):
    np.infty = np.inf  # pyrender touches np.infty (numpy 2)


@pytest.fixture(scope="session")
def synth_scene(tmp_path_factory):
    """``synth_scene(trajectory, hfov_deg=..., ...)`` -> SynthResult, rendered once per session."""
    from vipe_dagster.synth import SceneConfig, generate

    root = tmp_path_factory.mktemp("synth")
    cache: dict = {}

    def make(trajectory: str, scene: str = "indoor", num_frames: int = 60, width: int = 384, height: int = 288,
             hfov_deg: float = 60.0, moving_objects: int = 0, seed: int = 1):
        key = (trajectory, scene, num_frames, width, height, hfov_deg, moving_objects, seed)
        if key not in cache:
            name = f"{trajectory}_{scene}_{int(hfov_deg)}_{moving_objects}_{seed}"
            cfg = SceneConfig(trajectory=trajectory, scene=scene, num_frames=num_frames, width=width,
                              height=height, hfov_deg=hfov_deg, moving_objects=moving_objects, seed=seed, name=name)
            cache[key] = generate(cfg, str(root / name))
        return cache[key]

    return make


def store_from_synth(res, root: Path, with_mask: bool = False):
    """A fresh artifact store holding only the synthetic rgb (as after ingest), optionally its masks."""
    from vipe_dagster.io import ArtifactStore

    (root / "rgb").mkdir(parents=True, exist_ok=True)
    shutil.copy(res.gt.path("rgb", res.name), root / "rgb" / f"{res.name}.mp4")
    if with_mask:
        (root / "mask").mkdir(parents=True, exist_ok=True)
        shutil.copy(res.gt.path("mask", res.name), root / "mask" / f"{res.name}.zip")
    return ArtifactStore(str(root))


def ate_sim3(pred_c2w: np.ndarray, gt_c2w: np.ndarray) -> tuple[float, float]:
    """(RMSE, RMSE as % of GT path length) of camera centres after evo's Umeyama Sim3 alignment."""
    from evo.core.geometry import umeyama_alignment

    x, y = pred_c2w[:, :3, 3].T.astype(np.float64), gt_c2w[:, :3, 3].T.astype(np.float64)
    r, t, c = umeyama_alignment(x, y, with_scale=True)
    aligned = c * (r @ x) + t[:, None]
    rmse = float(np.sqrt(np.mean(np.sum((aligned - y) ** 2, axis=0))))
    length = float(np.linalg.norm(np.diff(y, axis=1), axis=0).sum())
    return rmse, 100.0 * rmse / length


def rotation_rmse_deg(pred_c2w: np.ndarray, gt_c2w: np.ndarray) -> float:
    """RMSE (deg) of camera orientations after the best global rotation alignment (scipy)."""
    from scipy.spatial.transform import Rotation

    Rp = Rotation.from_matrix(pred_c2w[:, :3, :3].astype(np.float64))
    Rg = Rotation.from_matrix(gt_c2w[:, :3, :3].astype(np.float64))
    # world alignment A with Rg_i ~ A * Rp_i: the mean rotation of Rg_i * Rp_i^-1
    A = (Rg * Rp.inv()).mean()
    err = ((A * Rp).inv() * Rg).magnitude()
    return float(np.degrees(np.sqrt(np.mean(err**2))))
