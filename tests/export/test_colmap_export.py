"""COLMAP export checked with pycolmap as the independent reader and solver."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
from colmap_scene import WALL_Z, make_scene, wall_color

from vipe_dagster.export.colmap import export_colmap
from vipe_dagster.export.ply import read_ply


def _frame_of(image) -> int:
    return int(Path(image.name).stem.split("_")[1])


def _w2c(c2w: np.ndarray) -> np.ndarray:
    return np.linalg.inv(c2w.astype(np.float64))[:3]


@pytest.fixture(scope="module")
def exports(scene, tmp_path_factory):
    out = {}
    for fmt in ("text", "bin"):
        d = tmp_path_factory.mktemp(f"export_{fmt}") / "colmap"
        out[fmt] = (d, export_colmap(scene.store, scene.name, str(d), fmt=fmt, dense=False))  # sparse tracks
    return out


@pytest.mark.parametrize("fmt", ["text", "bin"])
def test_pycolmap_reads_export_and_poses_round_trip(scene, exports, fmt):
    d, res = exports[fmt]
    sparse0 = d / "sparse" / "0"
    ext = "txt" if fmt == "text" else "bin"
    assert sorted(p.name for p in sparse0.iterdir()) == sorted(f"{f}.{ext}" for f in ("cameras", "images", "points3D"))
    rec = pycolmap.Reconstruction(str(sparse0))
    n = len(scene.c2w)
    assert rec.num_reg_images() == n == res.num_images
    assert rec.num_cameras() == 1
    cam = rec.cameras[1]
    assert cam.model.name == "SIMPLE_PINHOLE"  # fx == fy
    assert (cam.width, cam.height) == (scene.width, scene.height)
    np.testing.assert_allclose(cam.params, [scene.intr[0], scene.intr[2] + 0.5, scene.intr[3] + 0.5], rtol=0, atol=1e-4)
    seen = set()
    for img in rec.images.values():
        f = _frame_of(img)
        seen.add(f)
        np.testing.assert_allclose(img.cam_from_world().matrix(), _w2c(scene.c2w[f]), rtol=0, atol=1e-6)
        assert (d / "images" / img.name).is_file()
    assert seen == set(range(n))
    # images on odd frames have no observations: empty POINTS2D, still parsed
    assert all(img.num_points2D() == 0 for img in rec.images.values() if _frame_of(img) % 2 == 1)
    assert all(img.num_points2D() > 0 for img in rec.images.values() if _frame_of(img) % 2 == 0)
    if fmt == "text":
        lines = (sparse0 / "images.txt").read_text().splitlines()
        assert "" in lines  # the empty POINTS2D line of an image without observations


@pytest.mark.parametrize("fmt", ["text", "bin"])
def test_points2d_and_tracks_agree_both_directions(scene, exports, fmt):
    d, res = exports[fmt]
    rec = pycolmap.Reconstruction(str(d / "sparse" / "0"))
    assert rec.num_points3D() == res.num_sparse_points > 100
    n_refs = 0
    for iid, img in rec.images.items():
        for idx, p2 in enumerate(img.points2D):
            if p2.has_point3D():
                n_refs += 1
                track = {(e.image_id, e.point2D_idx) for e in rec.points3D[p2.point3D_id].track.elements}
                assert (iid, idx) in track
    n_elems = 0
    for pid, pt in rec.points3D.items():
        assert pt.track.length() >= 2
        for e in pt.track.elements:
            n_elems += 1
            assert rec.images[e.image_id].points2D[e.point2D_idx].point3D_id == pid
    assert n_refs == n_elems == res.num_observations


def test_points_and_observations_match_the_sparse_map(scene, exports):
    d, _ = exports["bin"]
    rec = pycolmap.Reconstruction(str(d / "sparse" / "0"))
    sm = scene.sparse
    # every exported 3D point is a sparse-map point and each observation is one of the map's, +0.5 px
    map_pts = sm.points.astype(np.float64)
    for pt in rec.points3D.values():
        k = int(np.argmin(np.linalg.norm(map_pts - pt.xyz, axis=1)))
        np.testing.assert_allclose(pt.xyz, map_pts[k], atol=1e-6)
        np.testing.assert_array_equal(pt.color, sm.colors[k])
        for e in pt.track.elements:
            img = rec.images[e.image_id]
            xy = img.points2D[e.point2D_idx].xy
            sel = (sm.obs_point == k) & (sm.obs_frame == _frame_of(img))
            np.testing.assert_allclose(xy, sm.obs_uv[sel][0].astype(np.float64) + 0.5, atol=1e-5)


def test_text_and_binary_describe_the_same_model(exports):
    a = pycolmap.Reconstruction(str(exports["text"][0] / "sparse" / "0"))
    b = pycolmap.Reconstruction(str(exports["bin"][0] / "sparse" / "0"))
    assert a.num_points3D() == b.num_points3D()
    for iid, img in a.images.items():
        other = b.images[iid]
        assert img.name == other.name
        np.testing.assert_allclose(img.cam_from_world().matrix(), other.cam_from_world().matrix(), atol=1e-12)
        assert [p.point3D_id for p in img.points2D] == [p.point3D_id for p in other.points2D]
    for pid, pt in a.points3D.items():
        np.testing.assert_allclose(pt.xyz, b.points3D[pid].xyz, atol=1e-12)
        assert pt.error == pytest.approx(b.points3D[pid].error, abs=1e-12)


def test_bundle_adjustment_converges_below_one_pixel(scene, exports):
    rec = pycolmap.Reconstruction(str(exports["bin"][0] / "sparse" / "0"))
    rec.update_point_3d_errors()
    before = rec.compute_mean_reprojection_error()
    assert before > 1.5  # the sparse map is perturbed like a real SLAM map, so BA has work to do
    opts = pycolmap.BundleAdjustmentOptions()
    opts.print_summary = False
    pycolmap.bundle_adjustment(rec, opts)
    rec.update_point_3d_errors()
    after = rec.compute_mean_reprojection_error()
    assert after < 1.0
    assert after < 3 * scene.noise_px  # consistent with the simulated pixel noise


def test_reprojection_statistics_in_manifest_and_stats_file(scene, exports):
    d, res = exports["bin"]
    stats_file = json.loads((d / "export_stats.json").read_text())
    manifest = scene.store.read_manifest(scene.name)
    assert manifest["input"]["uri"] == "synthetic"  # existing manifest content kept
    entry = manifest["colmap_export"]
    assert entry["out_dir"] in {str(exports["text"][0]), str(d)}
    for key in ("reprojection_error_px", "point_error_px"):
        assert {"mean", "median", "p95", "max", "count"} <= set(entry["sparse"][key])
    assert {"mean", "median", "min", "max"} <= set(entry["sparse"]["track_length"])
    sp = stats_file["sparse"]
    # independent recomputation with pycolmap's camera model and poses
    rec = pycolmap.Reconstruction(str(d / "sparse" / "0"))
    errs, point_err, track_len = [], {}, []
    for pid, pt in rec.points3D.items():
        e_pt = []
        for e in pt.track.elements:
            img = rec.images[e.image_id]
            uv = img.camera.img_from_cam(img.cam_from_world() * pt.xyz)
            e_pt.append(np.linalg.norm(uv - img.points2D[e.point2D_idx].xy))
        errs += e_pt
        point_err[pid] = float(np.mean(e_pt))
        track_len.append(len(e_pt))
        assert pt.error == pytest.approx(point_err[pid], rel=1e-9, abs=1e-9)  # the ERROR field is real
    errs = np.array(errs)
    r = sp["reprojection_error_px"]
    assert r["count"] == len(errs)
    assert r["mean"] == pytest.approx(errs.mean(), rel=1e-9)
    assert r["median"] == pytest.approx(np.median(errs), rel=1e-9)
    assert r["p95"] == pytest.approx(np.percentile(errs, 95), rel=1e-9)
    assert sp["point_error_px"]["mean"] == pytest.approx(rec.compute_mean_reprojection_error(), rel=1e-9)
    assert sp["track_length"]["mean"] == pytest.approx(rec.compute_mean_track_length(), rel=1e-9)
    assert sp["track_length"]["max"] == max(track_len)
    # per-image diagnostics: the worst image's mean matches pycolmap's numbers for that image
    worst = sp["worst_images"][0]
    img = next(i for i in rec.images.values() if _frame_of(i) == worst["frame"])
    e_img = [np.linalg.norm(img.camera.img_from_cam(img.cam_from_world() * rec.points3D[p.point3D_id].xyz) - p.xy)
             for p in img.points2D if p.has_point3D()]
    assert worst["observations"] == len(e_img) and worst["mean_px"] == pytest.approx(np.mean(e_img), rel=1e-9)
    assert all(w["mean_px"] <= worst["mean_px"] for w in sp["worst_images"])
    assert sp["observations_outside_image"] == 0
    # the perturbed map has ~3 cm point error at 3-5 m and f=250: a few pixels, well above the 0.3 px noise
    assert 1.0 < r["mean"] < 8.0
    if entry["out_dir"] == str(d):
        assert entry == stats_file
    assert res.stats["sparse"] == sp


def test_images_are_the_video_frames(scene, exports):
    d, _ = exports["text"]
    names = sorted(p.name for p in (d / "images").iterdir())
    assert names == [f"frame_{i:06d}.jpg" for i in range(len(scene.c2w))]
    img = cv2.cvtColor(cv2.imread(str(d / "images" / "frame_000004.jpg")), cv2.COLOR_BGR2RGB)
    assert img.shape == (scene.height, scene.width, 3)
    _, frame = next(iter(scene.store.open_rgb(scene.name, start_frame=4, end_frame=4)))
    assert np.abs(img.astype(int) - frame.astype(int)).mean() < 3.0


def test_frame_subset_with_stride(scene, tmp_path):
    out = tmp_path / "sub"
    res = export_colmap(scene.store, scene.name, str(out), fmt="bin", frames=range(2, 17, 3), update_manifest=False)
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    frames = sorted(_frame_of(i) for i in rec.images.values())
    assert frames == [2, 5, 8, 11, 14] and res.num_images == 5
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"frame_{f:06d}.jpg" for f in frames]
    for img in rec.images.values():
        np.testing.assert_allclose(img.cam_from_world().matrix(), _w2c(scene.c2w[_frame_of(img)]), atol=1e-6)
    # only frames 2, 8, 14 carry observations; each kept point is seen in >= 2 of them
    for pt in rec.points3D.values():
        assert pt.track.length() >= 2
        assert {_frame_of(rec.images[e.image_id]) for e in pt.track.elements} <= {2, 8, 14}


def _check_dense_points(rec_points, tol_z=0.03):
    xyz = np.array([p.xyz for p in rec_points])
    rgb = np.array([p.color for p in rec_points])
    assert np.median(np.abs(xyz[:, 2] - WALL_Z)) < 0.01
    assert np.percentile(np.abs(xyz[:, 2] - WALL_Z), 95) < tol_z
    # colour from the frames matches the wall texture at the point (away from checker edges)
    cell_pos = np.mod(xyz[:, :2], 0.25) / 0.25
    inner = np.all((cell_pos > 0.25) & (cell_pos < 0.75), axis=1)
    truth = wall_color(xyz[inner, 0], xyz[inner, 1]).astype(int)
    assert inner.sum() > 50
    assert np.median(np.abs(rgb[inner].astype(int) - truth)) < 12


def test_dense_only_export_without_sparse_map(scene_nosparse, tmp_path, caplog):
    sc = scene_nosparse
    out = tmp_path / "dense_only"
    with caplog.at_level(logging.WARNING):
        res = export_colmap(sc.store, sc.name, str(out), fmt="text", depth_step=4, pixel_step=4)
    assert any("no sparse map" in r.getMessage() and "dense-only" in r.getMessage() for r in caplog.records)
    assert res.points_source == "dense_only" and res.num_sparse_points == 0 and res.num_dense_points > 200
    stats = json.loads((out / "export_stats.json").read_text())
    assert stats["dense_only"] is True and stats["sparse"] is None
    assert any("no sparse map" in n for n in stats["notes"])
    assert "dense-only export" in (out / "sparse" / "0" / "points3D.txt").read_text().split("\n", 6)[3]
    assert sc.store.read_manifest(sc.name)["colmap_export"]["points_source"] == "dense_only"
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert rec.cameras[1].model.name == "PINHOLE"  # fx != fy in this scene
    assert rec.num_points3D() == res.num_dense_points
    _check_dense_points(list(rec.points3D.values()))
    # dense tracks are the pixels the points came from, in >= 2 depth frames, and they reproject closely
    for pt in list(rec.points3D.values())[:300]:
        assert pt.track.length() >= 2
        for e in pt.track.elements:
            img = rec.images[e.image_id]
            assert _frame_of(img) % 4 == 0
            uv = img.camera.img_from_cam(img.cam_from_world() * pt.xyz)
            assert np.linalg.norm(uv - img.points2D[e.point2D_idx].xy) < 6.0
    # PLY: every dense point (also single-view ones), readable by pycolmap's PLY importer
    ply = pycolmap.Reconstruction()
    ply.import_PLY(str(out / "points.ply"))
    xyz, rgb = read_ply(out / "points.ply")
    assert ply.num_points3D() == len(xyz) == stats["num_points_ply"] >= rec.num_points3D()
    got = np.array(sorted(tuple(p.xyz) for p in ply.points3D.values()))
    np.testing.assert_allclose(got, np.array(sorted(map(tuple, xyz.astype(np.float64)))), atol=1e-6)
    assert np.median(np.abs(xyz[:, 2] - WALL_Z)) < 0.01


def test_sparse_plus_dense_and_no_merge(scene, tmp_path):
    out = tmp_path / "both"
    res = export_colmap(scene.store, scene.name, str(out), fmt="bin", dense=True, depth_step=5,
                        update_manifest=False)
    assert res.points_source == "sparse+dense"
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert rec.num_points3D() == res.num_sparse_points + res.num_dense_points
    dense = [p for pid, p in rec.points3D.items() if pid > res.num_sparse_points]
    _check_dense_points(dense)
    xyz, _ = read_ply(out / "points.ply")
    assert len(xyz) >= rec.num_points3D()
    # voxel_size=0: no merging, every reliable sampled pixel is one point (single-view, PLY only)
    out2 = tmp_path / "nomerge"
    res2 = export_colmap(scene.store, scene.name, str(out2), fmt="bin", dense=True, depth_step=5, voxel_size=0,
                         pixel_step=8, min_track_length=1, update_manifest=False)
    assert res2.stats["dense"]["num_samples"] == res2.num_dense_points
    # the 4 depth frames (0, 5, 10, 15) at stride 8 on 320x240 give at most 4*40*30 samples
    assert 0.8 * 4 * 40 * 30 < res2.num_dense_points <= 4 * 40 * 30
    assert res2.stats["dense"]["reprojection_error_px"]["max"] < 1e-3  # a pixel's own unprojection


def test_fx_fy_differ_gives_pinhole_and_changing_intrinsics_give_several_cameras(tmp_path):
    sc = make_scene(tmp_path / "zoom", n_frames=6, fx=200.0, fy=210.0, with_depth=False, n_points=60)
    intr, inds, _ = sc.store.read_intrinsics(sc.name)
    intr = intr.copy()
    intr[3:, 0] *= 1.1  # a zoom after frame 2
    sc.store.write_intrinsics(sc.name, intr, inds)
    res = export_colmap(sc.store, sc.name, str(tmp_path / "out"), update_manifest=False)
    rec = pycolmap.Reconstruction(str(tmp_path / "out" / "sparse" / "0"))
    assert res.num_cameras == rec.num_cameras() == 2
    for img in rec.images.values():
        f = _frame_of(img)
        assert img.camera.model.name == "PINHOLE"
        np.testing.assert_allclose(img.camera.params, intr[f].astype(np.float64) + [0, 0, 0.5, 0.5], atol=1e-4)


def test_mei_sequence_is_exported_rectified_to_its_pinhole(tmp_path):
    xi, f = 0.5, 250.0
    sc = make_scene(tmp_path / "mei", name="wide", n_frames=10, xi=xi, fx=f, fy=f, n_points=200, dots=False)
    out = tmp_path / "out"
    res = export_colmap(sc.store, sc.name, str(out), fmt="bin", dense=True, depth_step=3, update_manifest=False)
    assert any("MEI camera" in n and "rectified" in n for n in res.stats["notes"])
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    cam = rec.cameras[1]
    assert cam.model.name == "SIMPLE_PINHOLE"
    fp = f / (1 + xi)
    np.testing.assert_allclose(cam.params, [fp, sc.intr[2] + 0.5, sc.intr[3] + 0.5], atol=1e-4)
    # the rectified image is what a pinhole camera with f/(1+xi) sees: render the wall with it and
    # compare after a blur (the 7 px checker is mostly H.264/JPEG edge error at full resolution); a
    # 1 px misregistration in any direction must fit worse than the exact pinhole
    k = 6
    c2w = sc.c2w[k].astype(np.float64)
    uu, vv = np.meshgrid(np.arange(sc.width, dtype=float), np.arange(sc.height, dtype=float))
    got = cv2.cvtColor(cv2.imread(str(out / "images" / f"frame_{k:06d}.jpg")), cv2.COLOR_BGR2RGB)

    def blurred_error(du: float, dv: float) -> float:
        rays = np.stack([(uu + du - sc.intr[2]) / fp, (vv + dv - sc.intr[3]) / fp, np.ones_like(uu)], -1)
        rays = rays @ c2w[:3, :3].T
        hit = c2w[:3, 3] + ((WALL_Z - c2w[2, 3]) / rays[..., 2])[..., None] * rays
        truth = wall_color(hit[..., 0], hit[..., 1])
        blur = [cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0) for x in (got, truth)]
        return float(np.abs(blur[0] - blur[1]).mean())

    exact = blurred_error(0, 0)
    assert exact < 8.0
    assert all(exact < 0.85 * blurred_error(du, dv) for du, dv in ((1, 0), (-1, 0), (0, 1), (0, -1)))
    # mapped observations are consistent with the pinhole model: BA brings them to the noise level
    sp = res.stats["sparse"]
    assert sp["num_points"] > 100 and sp["reprojection_error_px"]["mean"] > 1.0
    opts = pycolmap.BundleAdjustmentOptions()
    opts.print_summary = False
    rec_sparse = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    for pid in [p for p in rec_sparse.point3D_ids() if p > res.num_sparse_points]:
        rec_sparse.delete_point3D(pid)
    pycolmap.bundle_adjustment(rec_sparse, opts)
    rec_sparse.update_point_3d_errors()
    assert rec_sparse.compute_mean_reprojection_error() < 1.0
    # dense points unprojected through the MEI model lie on the wall
    dense = [p for pid, p in rec.points3D.items() if pid > res.num_sparse_points]
    assert len(dense) > 100
    _check_dense_points(dense)
