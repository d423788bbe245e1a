"""Camera-model mapping and the file formats, checked with pycolmap and OpenCV."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pycolmap
import pytest

from vipe_dagster.export.colmap import colmap_camera, project, rotation_to_qvec
from vipe_dagster.export.colmap_format import SparseModel, write_binary, write_text


def _model(cam, n_img=3, seed=0):
    rng = np.random.default_rng(seed)
    rots = [cv2.Rodrigues(rng.normal(0, 0.2, 3))[0] for _ in range(n_img)]
    t = rng.normal(0, 0.3, (n_img, 3))
    xyz = rng.uniform([-1, -1, 3], [1, 1, 5], (4, 3))
    obs_img, obs_xy, obs_pt = [], [], []
    for i in range(n_img):
        pc = xyz @ rots[i].T + t[i]
        uv = project(cam, pc)
        for k in range(4):
            obs_img.append(i)
            obs_xy.append(uv[k])
            obs_pt.append(k if (i + k) % 3 else -1)  # some keypoints without 3D point
    return SparseModel(cameras=[cam], image_ids=np.arange(1, n_img + 1),
                       qvec=np.stack([rotation_to_qvec(r) for r in rots]), tvec=t,
                       image_camera_ids=np.ones(n_img, int), image_names=[f"im{i}.jpg" for i in range(n_img)],
                       obs_image=np.array(obs_img), obs_xy=np.array(obs_xy), obs_point=np.array(obs_pt),
                       point_ids=np.array([5, 6, 7, 9]), xyz=xyz,
                       rgb=rng.integers(0, 256, (4, 3), dtype=np.uint8), error=np.zeros(4)), rots, t


def test_kb4_maps_to_opencv_fisheye_and_projects_like_pycolmap_and_opencv(tmp_path):
    k = [0.05, -0.01, 0.003, -0.0005]
    cam = colmap_camera("KB4", [300.0, 305.0, 319.5, 239.5, *k], 640, 480)
    assert cam.model == "OPENCV_FISHEYE"
    model, rots, t = _model(cam)
    write_binary(model, tmp_path)
    rec = pycolmap.Reconstruction(str(tmp_path))
    pc_cam = rec.cameras[1]
    assert pc_cam.model.name == "OPENCV_FISHEYE"
    rng = np.random.default_rng(3)
    pts = rng.uniform([-2, -2, 0.5], [2, 2, 4], (50, 3))
    ours = project(cam, pts)
    theirs = np.array([pc_cam.img_from_cam(p) for p in pts])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    kmat = np.array([[300.0, 0, 319.5], [0, 305.0, 239.5], [0, 0, 1]])
    cv_uv, _ = cv2.fisheye.projectPoints(pts[None], np.zeros(3), np.zeros(3), kmat, np.array(k))
    np.testing.assert_allclose(ours, cv_uv[0] + 0.5, atol=1e-6)  # COLMAP pixel centres are +0.5


@pytest.mark.parametrize("writer", [write_text, write_binary])
def test_model_round_trip_with_keypoints_without_points(tmp_path, writer):
    cam = colmap_camera("PINHOLE", [400.0, 410.0, 200.0, 150.0], 401, 301)
    model, rots, t = _model(cam)
    writer(model, tmp_path)
    rec = pycolmap.Reconstruction(str(tmp_path))
    assert sorted(rec.points3D) == [5, 6, 7, 9]
    for i, iid in enumerate(model.image_ids):
        img = rec.images[int(iid)]
        m = img.cam_from_world().matrix()
        np.testing.assert_allclose(m[:, :3], rots[i], atol=1e-12)
        np.testing.assert_allclose(m[:, 3], t[i], atol=1e-12)
        assert img.num_points2D() == 4
        ids = [p.point3D_id if p.has_point3D() else None for p in img.points2D]
        assert ids == [model.point_ids[k] if (i + k) % 3 else None for k in range(4)]
    for j, pid in enumerate(model.point_ids):
        np.testing.assert_array_equal(rec.points3D[int(pid)].color, model.rgb[j])


def test_binary_layout_by_hand(tmp_path):
    cam = colmap_camera("PINHOLE", [400.0, 400.0, 200.0, 150.0], 401, 301, camera_id=7)
    data_cam = (write_binary(_model(cam)[0], tmp_path), (tmp_path / "cameras.bin").read_bytes())[1]
    n, cid, model_id, w, h = struct.unpack_from("<QIiQQ", data_cam)
    assert (n, cid, model_id, w, h) == (1, 7, 0, 401, 301)  # SIMPLE_PINHOLE is model 0
    assert struct.unpack_from("<3d", data_cam, 32) == (400.0, 200.5, 150.5)
    assert len(data_cam) == 32 + 3 * 8


def test_qvec_is_normalised_with_nonnegative_w():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = cv2.Rodrigues(rng.normal(0, 2.0, 3))[0]
        q = rotation_to_qvec(r)
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(pycolmap.Rotation3d(np.array([q[1], q[2], q[3], q[0]])).matrix(), r, atol=1e-12)
