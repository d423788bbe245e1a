"""The SLAM map artifact (``vipe/<n>_slam_map.pt``): geometry, tracks, format, generations, COLMAP export."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ref_helpers import REPO, run

from vipe_dagster.errors import ArtifactError
from vipe_dagster.export.slam_map import build_slam_map, deserialize, read_slam_map, serialize, write_slam_map
from vipe_dagster.io import ArtifactStore, SparseMap
from vipe_dagster.io.generation import GenerationError

W, H, F, Z = 96, 64, 80.0, 4.0


def _scene(root, n=9, keyframes=(0, 4, 8), wall_x=None):
    """A camera sliding along x in front of a textured fronto-parallel plane at z = Z (exact depth)."""
    store = ArtifactStore(str(root))
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (H, W + 40, 3), dtype=np.uint8)
    c2w = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    c2w[:, 0, 3] = np.arange(n) * 0.05
    frames = [np.ascontiguousarray(tex[:, i : i + W]) for i in range(n)]
    store.begin_generation("s")
    store.write_rgb("s", frames, fps=10)
    store.write_pose("s", c2w, keyframe_ids=np.array(keyframes))
    store.write_intrinsics("s", np.tile([F, F, (W - 1) / 2, (H - 1) / 2], (n, 1)))
    depth = np.full((H, W), Z, np.float32)
    if wall_x is not None:
        depth[:, wall_x:] = np.nan
    store.write_depth("s", [depth] * n)
    mask = np.zeros((H, W), np.uint8)
    mask[:16, :16] = 1  # a "dynamic" object: its pixels are not in the map
    store.write_masks("s", [mask] * n, {1: "person"})
    return store, c2w


def test_map_from_depth_is_on_the_surface_with_multiview_tracks(tmp_path):
    store, c2w = _scene(tmp_path)
    sm = build_slam_map(store, "s")
    assert sm.source == "depth" and list(sm.frame_inds) == [0, 4, 8]
    assert np.allclose(sm.xyz[:, 2], Z, atol=1e-4)
    assert sm.packinfo.shape == (3, 1, 2) and int(sm.packinfo[:, 0, 1].sum()) == len(sm)
    assert np.all(sm.packinfo[1:, 0, 0] == np.cumsum(sm.packinfo[:-1, 0, 1]))
    # every point's own keyframe observation reprojects exactly; its other observations agree in depth
    for f, p, uv in zip(sm.obs_frame, sm.obs_point, sm.obs_uv, strict=True):
        pc = sm.xyz[p] - c2w[f, :3, 3]
        assert (
            abs(F * pc[0] / pc[2] + (W - 1) / 2 - uv[0]) < 1e-3
            and abs(F * pc[1] / pc[2] + (H - 1) / 2 - uv[1]) < 1e-3
        )
    track = np.bincount(sm.obs_point, minlength=len(sm))
    assert track.min() >= 2  # min_views: each point agrees with 2 other keyframes (or all it has)
    # masked (dynamic) pixels are not in the map: no point of keyframe 0 projects into the 16x16 corner
    xyz0, _ = sm.keyframe_points(0)
    u = F * xyz0[:, 0] / xyz0[:, 2] + (W - 1) / 2
    v = F * xyz0[:, 1] / xyz0[:, 2] + (H - 1) / 2
    assert not np.any((u < 14) & (v < 14))
    assert sm.rgb.min() >= 0 and sm.rgb.max() <= 1


def test_points_seen_by_no_other_keyframe_are_dropped(tmp_path):
    # the right part of keyframe 8 has no depth in the others' view: consistency needs agreeing neighbours
    store, _ = _scene(tmp_path, wall_x=60)
    sm = build_slam_map(store, "s")
    full = build_slam_map(_scene(tmp_path / "b")[0], "s")
    assert 0 < len(sm) < len(full)


def test_file_format_and_generations(tmp_path):
    store, _ = _scene(tmp_path)
    uri, sm = write_slam_map(store, "s")
    assert uri.endswith("vipe/s_slam_map.pt")
    obj = torch.load(uri, weights_only=True)  # plain tensors and strings: safe to load
    assert obj["dense_disp_xyz"].shape == (len(sm), 3) and obj["dense_disp_rgb"].dtype == torch.float32
    assert obj["dense_disp_packinfo"].shape == (3, 1, 2) and obj["dense_disp_frame_inds"].tolist() == [
        0,
        4,
        8,
    ]
    assert obj["generation"] == store.generation_record("s")["id"]
    back = read_slam_map(store, "s")
    assert np.array_equal(back.xyz, sm.xyz) and np.array_equal(back.obs_uv, sm.obs_uv)
    store.check_set("s")
    # a map of another run is refused
    other = ArtifactStore(str(tmp_path / "other"))
    _scene(tmp_path / "other")
    write_slam_map(other, "s")
    (tmp_path / "vipe" / "s_slam_map.pt").write_bytes(
        (tmp_path / "other" / "vipe" / "s_slam_map.pt").read_bytes()
    )
    with pytest.raises(GenerationError, match="belongs to generation"):
        read_slam_map(store, "s")
    # a new run removes the old map with the rest of the old set
    store.begin_generation("s")
    store.write_rgb("s", [np.zeros((H, W, 3), np.uint8)] * 2, fps=10)
    assert not store.exists("slam_map", "s")
    with pytest.raises(ArtifactError, match="--save_slam_map"):
        read_slam_map(store, "s")


def test_reference_written_map_gets_own_keyframe_observations(tmp_path):
    store, c2w = _scene(tmp_path)
    sm = build_slam_map(store, "s")
    buf = io.BytesIO()
    torch.save(
        {
            "dense_disp_xyz": torch.from_numpy(sm.xyz),
            "dense_disp_rgb": torch.from_numpy(sm.rgb),
            "dense_disp_packinfo": torch.from_numpy(sm.packinfo),
            "dense_disp_frame_inds": torch.from_numpy(sm.frame_inds),
            "device": "cpu",
        },
        buf,
    )
    (tmp_path / "vipe" / "s_slam_map.pt").write_bytes(buf.getvalue())
    man = store.read_manifest("s")  # as if ViPE wrote it: no record entry
    man["generation"]["artifacts"].pop("slam_map", None)
    store._write_manifest_raw("s", man)
    back = read_slam_map(store, "s")
    assert back.source == "reference" and len(back.obs_frame) == len(sm)
    own = back.obs_frame == np.repeat(back.frame_inds, back.packinfo[:, 0, 1])
    assert own.all()
    with pytest.raises(ArtifactError, match="dense_disp_packinfo"):
        bad = {
            "dense_disp_xyz": torch.zeros(3, 3),
            "dense_disp_rgb": torch.zeros(3, 3),
            "dense_disp_packinfo": torch.tensor([[[0, 9]]]),
            "dense_disp_frame_inds": torch.tensor([0]),
        }
        b = io.BytesIO()
        torch.save(bad, b)
        deserialize(b.getvalue(), "bad.pt")
    assert serialize(sm)[:2] == b"PK"  # torch's zip container


def test_map_without_depth_comes_from_the_sparse_map(tmp_path):
    store = ArtifactStore(str(tmp_path))
    n = 5
    store.begin_generation("p")
    store.write_rgb("p", [np.zeros((H, W, 3), np.uint8)] * n, fps=10)
    store.write_pose("p", np.tile(np.eye(4), (n, 1, 1)), keyframe_ids=[0, 2])
    store.write_intrinsics("p", np.tile([F, F, 47.5, 31.5], (n, 1)))
    pts = np.array([[0, 0, 4], [1, 0, 4], [0, 1, 5]], np.float32)
    store.write_sparse_map(
        "p",
        SparseMap(
            pts,
            np.full((3, 3), 255, np.uint8),
            np.array([2, 0, 0, 2, 2], np.int32),
            np.array([0, 1, 2, 1, 2], np.int32),
            np.zeros((5, 2), np.float32),
            np.array([0, 2], np.int32),
        ),
    )
    sm = build_slam_map(store, "p")
    assert sm.source == "sparse" and list(sm.frame_inds) == [0, 2]
    assert sm.packinfo[:, 0, 1].tolist() == [2, 1]  # points 1, 2 first seen in keyframe 0; point 0 in 2
    assert np.allclose(sm.xyz[2], pts[0]) and len(sm.obs_frame) == 5 and np.allclose(sm.rgb, 1.0)


def test_colmap_export_of_the_slam_map(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    store, _ = _scene(tmp_path / "res")
    _, sm = write_slam_map(store, "s")
    out = tmp_path / "colmap"
    p = run(
        [
            "python",
            "-m",
            "vipe_dagster.cli",
            "to-colmap",
            tmp_path / "res",
            "-s",
            "s",
            "--use_slam_map",
            "-o",
            out,
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert rec.num_points3D() == len(sm) and rec.num_reg_images() == 9
    xyz = np.array([p3.xyz for p3 in rec.points3D.values()])
    assert np.allclose(xyz[:, 2], Z, atol=1e-3)
    assert min(p3.track.length() for p3 in rec.points3D.values()) >= 2
    # the reference's script writes <dir>_colmap/<seq>/ with a top-level model naming images/frame_*.jpg
    p = run(
        [
            "python",
            REPO / "scripts" / "vipe_to_colmap.py",
            tmp_path / "res",
            "--sequence",
            "s",
            "--use_slam_map",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    seq = tmp_path / "res_colmap" / "s"
    assert {x.name for x in seq.iterdir()} >= {
        "images",
        "cameras.txt",
        "images.txt",
        "points3D.txt",
        "sparse",
    }
    names = [
        ln.split()[-1]
        for ln in (seq / "images.txt").read_text().splitlines()
        if ln and not ln.startswith("#") and ln.split()[-1].endswith(".jpg")
    ]
    assert names[0] == "images/frame_000000.jpg" and (seq / names[0]).is_file()
    top = pycolmap.Reconstruction()
    top.read_text(str(seq))
    assert top.num_points3D() == len(sm)
    # without --save_slam_map there is no map: one clear error, nothing written
    store2, _ = _scene(tmp_path / "res2")
    p = run(["python", REPO / "scripts" / "vipe_to_colmap.py", tmp_path / "res2", "--use_slam_map"], tmp_path)
    assert p.rc == 2 and "SLAM map not found" in p.error_lines[0] and not (tmp_path / "res2_colmap").exists()
