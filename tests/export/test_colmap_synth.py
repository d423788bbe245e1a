"""Dense-only COLMAP export of a pyrender-generated scene (vipe_dagster.synth ground truth)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    pytest.importorskip("pyrender")
    from vipe_dagster.synth import SceneConfig, generate

    return generate(SceneConfig(trajectory="orbit", num_frames=16, width=192, height=144),
                    str(tmp_path_factory.mktemp("synth")))


def test_dense_export_of_rendered_scene_is_multiview_consistent(rendered, tmp_path):
    import pycolmap

    from vipe_dagster.export.colmap import export_colmap

    out = tmp_path / "colmap"
    res = export_colmap(rendered.gt, rendered.name, str(out), fmt="bin", depth_step=2, pixel_step=4)
    assert res.points_source == "dense_only" and res.num_dense_points > 500
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    c2w, _ = rendered.gt.read_pose(rendered.name)
    for img in rec.images.values():
        f = int(img.name[6:12])
        np.testing.assert_allclose(img.cam_from_world().matrix(), np.linalg.inv(c2w[f].astype(float))[:3], atol=1e-6)
    # points merged from depth maps of different frames land on the same pixels in every frame that saw
    # them: only the voxel quantisation (about one 4-px grid step) separates them
    dense = res.stats["dense"]
    assert dense["track_length"]["mean"] > 2.0
    assert dense["reprojection_error_px"]["median"] < 1.5
    # each point's camera depth agrees with the ground-truth z-buffer where it is observed
    depth = dict(rendered.gt.iter_depth(rendered.name))
    rel = []
    for pt in list(rec.points3D.values())[::5]:
        for e in pt.track.elements:
            img = rec.images[e.image_id]
            z = (img.cam_from_world() * pt.xyz)[2]
            x, y = img.points2D[e.point2D_idx].xy
            gt = depth[int(img.name[6:12])][int(y - 0.5), int(x - 0.5)]
            rel.append(abs(z - gt) / gt)
    assert np.median(rel) < 0.01
    # pycolmap's bundle adjustment on the exported dense tracks converges below one pixel
    opts = pycolmap.BundleAdjustmentOptions()
    opts.print_summary = False
    pycolmap.bundle_adjustment(rec, opts)
    rec.update_point_3d_errors()
    assert rec.compute_mean_reprojection_error() < 1.0
