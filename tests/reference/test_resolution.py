"""``--long_side 0`` (the source size) and ``--output_resolution source``: artifact sizes and intrinsics."""

from __future__ import annotations

import numpy as np
import pytest
from ref_helpers import SAMPLE, run, vipe_argv

from vipe_dagster.compat.resolution import scale_intrinsics, upsample_depth
from vipe_dagster.io import ArtifactStore


def test_scale_intrinsics_pixel_corner_convention():
    k = np.array([[100.0, 110.0, 63.5, 35.5]])
    out = scale_intrinsics(k, 5.0, 5.0)
    # the centre of a 128x72 image maps to the centre of the 640x360 one
    assert np.allclose(out, [[500.0, 550.0, 319.5, 179.5]])


def test_depth_upsampling_keeps_edges_and_holes():
    d = np.full((8, 8), 2.0, np.float32)
    d[:, 4:] = 6.0  # a depth edge
    d[0, 0] = np.nan  # a hole
    up = upsample_depth(d, 32, 32)
    assert up.shape == (32, 32)
    vals = up[np.isfinite(up)]
    assert set(np.unique(np.round(vals, 4))) <= {2.0, 6.0}  # no flying pixels between 2 and 6
    assert np.isnan(up[0, 0]) and np.isfinite(up[20, 20])


@pytest.mark.slow
def test_long_side_zero_writes_source_size_artifacts(tmp_path):
    out = tmp_path / "out"
    p = run([*vipe_argv(), "infer", SAMPLE, "-o", out, "--end_frame", "7", "--long_side", "0"], tmp_path)
    assert p.rc == 0 and "Traceback" not in p.err, p.err[-3000:]
    store = ArtifactStore(str(out))
    name = "dog-example"
    rgb = store.open_rgb(name)
    assert (rgb.width, rgb.height, len(rgb)) == (1280, 720, 8)
    assert store.read_depth(name, 0).shape == (720, 1280) and store.depth_count(name) == 8
    assert store.read_mask(name, 0).shape == (720, 1280) and store.mask_count(name) == 8
    intr = store.read_intrinsics(name)[0]
    assert intr.shape == (8, 4) and np.allclose(intr[:, 2:], [639.5, 359.5])  # principal point of 1280x720
    man = store.read_manifest(name)
    assert man["pose"]["intrinsics"]["fx"] == pytest.approx(float(intr[0, 0]))  # estimated at this size
    assert man["frames"]["width"] == 1280 and man["output_resolution"]["output_size"] == [1280, 720]
    store.check_set(name)
    # the same through vipe-dagster, and an invalid size is one error line
    p = run(
        [
            "python",
            "-m",
            "vipe_dagster.cli",
            "infer",
            SAMPLE,
            "-o",
            tmp_path / "o2",
            "--end_frame",
            "3",
            "--long_side",
            "0",
            "--pipeline",
            "pose_only",
        ],
        tmp_path,
    )
    assert p.rc == 0 and "Traceback" not in p.err, p.err[-3000:]
    assert ArtifactStore(str(tmp_path / "o2")).open_rgb(name).width == 1280


@pytest.mark.slow
def test_output_resolution_source_scales_intrinsics(tmp_path):
    proc, src = tmp_path / "proc", tmp_path / "src"
    common = [SAMPLE, "--end_frame", "7", "--long_side", "256"]
    p = run(["python", "-m", "vipe_dagster.cli", "infer", *common, "-o", proc], tmp_path)
    assert p.rc == 0, p.err[-3000:]
    p = run(
        [
            "python",
            "-m",
            "vipe_dagster.cli",
            "infer",
            *common,
            "-o",
            src,
            "--output_resolution",
            "source",
            "--save_slam_map",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    a, b = ArtifactStore(str(proc)), ArtifactStore(str(src))
    name = "dog-example"
    assert a.open_rgb(name).width == 256 and b.open_rgb(name).width == 1280
    assert b.read_depth(name, 5).shape == (720, 1280) and b.read_mask(name, 5).shape == (720, 1280)
    # same poses; intrinsics of the processing run scaled by 5 with the pixel-corner rule
    assert np.array_equal(a.read_pose(name)[0], b.read_pose(name)[0])
    ka, kb = a.read_intrinsics(name)[0], b.read_intrinsics(name)[0]
    assert np.allclose(kb, scale_intrinsics(ka, 5.0, 5.0), rtol=1e-6)
    # depth agrees with the processing run where both are smooth (sampled at pixel centres)
    da, db = a.read_depth(name, 4), b.read_depth(name, 4)
    ys, xs = np.mgrid[20:124:8, 20:236:8]
    assert np.nanmedian(np.abs(db[ys * 5 + 2, xs * 5 + 2] / da[ys, xs] - 1)) < 0.01
    # sparse observations moved with the pixels: the SLAM points reproject onto them in the big images
    sm = b.read_sparse_map(name)
    c2w = b.read_pose(name)[0]
    k = sm.obs_frame == sm.obs_frame[0]
    pc = (sm.points[sm.obs_point[k]] - c2w[sm.obs_frame[0], :3, 3]) @ c2w[sm.obs_frame[0], :3, :3]
    fx, fy, cx, cy = kb[sm.obs_frame[0]]
    uv = np.stack([fx * pc[:, 0] / pc[:, 2] + cx, fy * pc[:, 1] / pc[:, 2] + cy], 1)
    assert np.median(np.linalg.norm(uv - sm.obs_uv[k], axis=1)) < 5 * 1.0
    b.check_set(name)
    man = b.read_manifest(name)
    assert man["output_resolution"]["processing_size"] == [256, 144] and man["slam_map"]["points"] > 100
    assert "output_resolution_source" in man["pipeline"]["stages"]


def _processed(clip, root):
    """A processing-size (160x88: multiples of 8) set of ``clip`` with hand-made pose, intrinsics, depth
    and masks."""
    from vipe_dagster.ingest import ingest_video

    store = ArtifactStore(str(root))
    ing = ingest_video(str(clip), store, end_frame=5, long_side=160)
    n = ing.num_frames
    store.write_pose(ing.name, np.tile(np.eye(4), (n, 1, 1)))
    assert (ing.width, ing.height) == (160, 88)
    store.write_intrinsics(ing.name, np.tile([100.0, 100.0, 79.5, 43.5], (n, 1)))
    store.write_depth(ing.name, [np.full((88, 160), 3.0, np.float32)] * n)
    store.write_masks(ing.name, [np.zeros((88, 160), np.uint8)] * n, {})
    return store, ing.name


def test_interrupted_source_resolution_rewrite_is_refused(clip, tmp_path, monkeypatch):
    from vipe_dagster.compat.resolution import to_source_resolution
    from vipe_dagster.io.generation import GenerationError

    store, name = _processed(clip, tmp_path / "a")
    store.check_set(name)

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_intrinsics", killed)
    with pytest.raises(KeyboardInterrupt):
        to_source_resolution(store, name, str(clip), end_frame=5)
    assert store.open_rgb(name).width == 320 and store.read_intrinsics(name)[0][0, 0] == 100.0  # mixed sizes
    with pytest.raises(GenerationError, match="did not finish"):
        ArtifactStore(str(tmp_path / "a")).check_set(name)
    monkeypatch.undo()
    store, name = _processed(clip, tmp_path / "b")
    info = to_source_resolution(store, name, str(clip), end_frame=5)
    assert info["complete"] and info["rewritten"] == ["rgb", "intrinsics", "depth", "mask"]
    store.check_set(name)
    assert np.allclose(store.read_intrinsics(name)[0][0], [200.0, 100.0 * 180 / 88, 159.5, 89.5])
    assert store.read_depth(name, 2).shape == (180, 320) and np.allclose(store.read_depth(name, 2), 3.0)
