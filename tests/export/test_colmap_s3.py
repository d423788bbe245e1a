"""COLMAP export from and to s3:// (moto server): same model, manifest updated, no temp objects."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest
from colmap_scene import make_scene

from vipe_dagster.export.colmap import export_colmap
from vipe_dagster.io import ArtifactStore


@pytest.mark.s3
def test_export_from_and_to_s3(tmp_path, export_s3_bucket):
    fsys, bucket = export_s3_bucket
    local = make_scene(tmp_path / "art", name="remote", n_frames=6, n_points=80)
    fsys.put(str(tmp_path / "art") + "/", f"{bucket}/art", recursive=True)
    store = ArtifactStore(f"s3://{bucket}/art")
    res = export_colmap(store, "remote", fmt="bin", dense=True, depth_step=2)  # default out: <root>/colmap/<n>
    out = f"s3://{bucket}/art/colmap/remote"
    assert res.out_dir == out
    keys = sorted(k.split("/colmap/remote/", 1)[1] for k in fsys.find(f"{bucket}/art/colmap/remote"))
    assert keys[:3] == ["export_stats.json", "images/frame_000000.jpg", "images/frame_000001.jpg"]
    assert {"sparse/0/cameras.bin", "sparse/0/images.bin", "sparse/0/points3D.bin", "points.ply"} <= set(keys)
    assert not any(".tmp-" in k for k in fsys.find(bucket))
    fsys.get(f"{bucket}/art/colmap/remote/sparse", str(tmp_path / "dl"), recursive=True)
    rec = pycolmap.Reconstruction(str(tmp_path / "dl" / "0"))
    assert rec.num_reg_images() == 6 and rec.num_points3D() == res.num_points
    for img in rec.images.values():
        f = int(img.name[6:12])
        np.testing.assert_allclose(img.cam_from_world().matrix(), np.linalg.inv(local.c2w[f].astype(float))[:3],
                                   atol=1e-6)
    assert store.read_manifest("remote")["colmap_export"]["out_dir"] == out
