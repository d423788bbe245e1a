"""A result whose images keep a self-calibrated radial distortion exports the matching COLMAP model
(SIMPLE_RADIAL), with observations distorted to match; pycolmap reads it and reprojects its own points."""

from __future__ import annotations

import numpy as np
import pycolmap
from colmap_scene import make_scene

from vipe_dagster.export.colmap import export_colmap


def _reproj(rec) -> np.ndarray:
    errs = []
    for img in rec.images.values():
        cam = rec.cameras[img.camera_id]
        for p2 in img.points2D:
            if p2.has_point3D():
                xc = img.cam_from_world() * rec.points3D[p2.point3D_id].xyz
                errs.append(np.linalg.norm(cam.img_from_cam(xc[None])[0] - p2.xy))
    return np.array(errs)


def test_kept_radial_distortion_exports_simple_radial(tmp_path):
    scene = make_scene(tmp_path / "s", n_frames=8, point_noise=0.0, pixel_noise=0.05)
    k1 = -0.1
    man = scene.store.read_manifest(scene.name)
    man["pose"] = {"intrinsics": {"k1": k1, "k2": 0.0, "distortion": {"model": "RADIAL", "k1": k1, "k2": 0.0,
                                                                        "rectified": False}}}
    scene.store.write_manifest(scene.name, man)
    res = export_colmap(scene.store, scene.name, str(tmp_path / "colmap"), fmt="bin", dense=False)
    rec = pycolmap.Reconstruction(str(tmp_path / "colmap" / "sparse" / "0"))
    (cam,) = rec.cameras.values()
    assert cam.model.name == "SIMPLE_RADIAL"
    np.testing.assert_allclose(cam.params, [scene.intr[0], scene.intr[2] + 0.5, scene.intr[3] + 0.5, k1], atol=1e-4)
    err = _reproj(rec)
    assert len(err) > 100 and np.median(err) < 0.2, np.median(err)  # pycolmap's SIMPLE_RADIAL agrees
    assert any("SIMPLE_RADIAL" in n for n in res.stats["notes"])
    # the observations really moved: against the ideal-pinhole map observations they differ by pixels
    plain = make_scene(tmp_path / "p", n_frames=8, point_noise=0.0, pixel_noise=0.05)
    export_colmap(plain.store, plain.name, str(tmp_path / "colmap_p"), fmt="bin", dense=False)
    rec_p = pycolmap.Reconstruction(str(tmp_path / "colmap_p" / "sparse" / "0"))
    a = np.array([p.xy for i in sorted(rec.images.values(), key=lambda i: i.name) for p in i.points2D])
    b = np.array([p.xy for i in sorted(rec_p.images.values(), key=lambda i: i.name) for p in i.points2D])
    assert a.shape == b.shape and np.abs(a - b).max() > 2.0
