"""Bad inputs to the COLMAP export: clear typed errors, and no output folder left behind."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from colmap_scene import make_scene

from vipe_dagster.errors import ArtifactError, ConfigError, FrameRangeError
from vipe_dagster.export.colmap import ColmapExportOptions, UnsupportedCameraError, export_colmap
from vipe_dagster.io import ArtifactStore
from vipe_dagster.io.exr import encode_depth_exr


def _assert_no_output(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():
        assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.fixture
def small(tmp_path):
    """Unversioned files (as ViPE writes them), edited in place by the tests below; the generation rule for
    versioned sets has its own tests (tests/io/test_generation.py, tests/reliability/)."""
    return make_scene(tmp_path / "art", name="seq", n_frames=6, n_points=60, with_depth=True, versioned=False)


@pytest.mark.parametrize("kind, label", [("pose", "pose"), ("intrinsics", "intrinsics"), ("rgb", "rgb video")])
def test_missing_input_is_named(small, tmp_path, kind, label):
    Path(small.store.path(kind, small.name)).unlink()
    out = tmp_path / "out" / "colmap"
    with pytest.raises(ArtifactError) as ei:
        export_colmap(small.store, small.name, str(out))
    msg = str(ei.value)
    assert f"missing {label} file" in msg and small.store.path(kind, small.name) in msg
    _assert_no_output(out)
    assert not out.parent.exists()


def test_pose_intrinsics_count_mismatch(small, tmp_path):
    intr, _, _ = small.store.read_intrinsics(small.name)
    small.store.write_intrinsics(small.name, intr[:4])
    out = tmp_path / "o"
    with pytest.raises(ArtifactError, match=r"has 4 frames but .*pose.* has 6"):
        export_colmap(small.store, small.name, str(out))
    _assert_no_output(out)


def test_sparse_observation_outside_pose_range(small, tmp_path):
    sm = small.store.read_sparse_map(small.name)
    sm.obs_frame[7] = 9
    small.store.write_sparse_map(small.name, sm)
    out = tmp_path / "o"
    with pytest.raises(ArtifactError) as ei:
        export_colmap(small.store, small.name, str(out))
    msg = str(ei.value)
    assert small.store.path("sparse", small.name) in msg
    assert "observation 7 references frame 9" in msg and "[0, 5]" in msg
    _assert_no_output(out)


def test_non_orthonormal_pose_names_frame(small, tmp_path):
    c2w, inds = small.store.read_pose(small.name)
    c2w[3, :3, :3] *= 1.5
    small.store.write_pose(small.name, c2w, inds)
    with pytest.raises(ArtifactError, match=r"seq\.npz frame 3: rotation is not orthonormal"):
        export_colmap(small.store, small.name, str(tmp_path / "o"))
    _assert_no_output(tmp_path / "o")


def test_mei_refused_without_rectification_and_xi_zero_is_pinhole(small, tmp_path):
    intr, inds, _ = small.store.read_intrinsics(small.name)
    mei = np.concatenate([intr, np.full((len(intr), 1), 0.7, np.float32)], 1)
    small.store.write_intrinsics(small.name, mei, inds, camera_type="MEI")
    with pytest.raises(UnsupportedCameraError, match=r"MEI .*xi=0\.7 has no COLMAP equivalent"):
        export_colmap(small.store, small.name, str(tmp_path / "o"), rectify_mei=False)
    _assert_no_output(tmp_path / "o")
    mei[:, 4] = 0.0
    small.store.write_intrinsics(small.name, mei, inds, camera_type="MEI")
    res = export_colmap(small.store, small.name, str(tmp_path / "o2"), update_manifest=False)
    assert res.stats["cameras"][0]["model"] == "SIMPLE_PINHOLE"


def test_panorama_is_refused(small, tmp_path):
    """A valid panorama (zeros, as ViPE writes them) is refused because COLMAP has no equirectangular model,
    not as bad data; non-zero PANORAMA intrinsics are bad data, named with file and frame."""
    intr, inds, _ = small.store.read_intrinsics(small.name)
    small.store.write_intrinsics(small.name, np.zeros_like(intr), inds, camera_type="PANORAMA")
    with pytest.raises(UnsupportedCameraError) as ei:
        export_colmap(small.store, small.name, str(tmp_path / "o"))
    msg = str(ei.value)
    assert "PANORAMA" in msg and "no equirectangular camera model" in msg and "valid ViPE data" in msg
    assert f"{small.store.path('intrinsics', small.name)} frame 0" in msg
    _assert_no_output(tmp_path / "o")
    small.store.write_intrinsics(small.name, intr, inds, camera_type="PANORAMA")
    with pytest.raises(ArtifactError) as ei:
        export_colmap(small.store, small.name, str(tmp_path / "o"))
    assert not isinstance(ei.value, UnsupportedCameraError)
    assert re.search(r"intrinsics/seq\.npz: frame 0 has intrinsics \[.*\] \(PANORAMA\); expected all zeros",
                     str(ei.value)), str(ei.value)


def test_mei_bad_xi_and_missing_column_name_the_frame(small, tmp_path):
    intr, inds, _ = small.store.read_intrinsics(small.name)
    small.store.write_intrinsics(small.name, intr, inds, camera_type="MEI")  # 4 columns: no xi
    with pytest.raises(ArtifactError, match=r"seq\.npz: frame 0 has intrinsics .*MEI, 4 columns where MEI needs 5"):
        export_colmap(small.store, small.name, str(tmp_path / "o"))
    mei = np.concatenate([intr, np.full((len(intr), 1), 0.3, np.float32)], 1)
    mei[2, 4] = -1.5
    small.store.write_intrinsics(small.name, mei, inds, camera_type="MEI")
    with pytest.raises(ArtifactError, match=r"seq\.npz: frame 2 has intrinsics .*xi > -1"):
        export_colmap(small.store, small.name, str(tmp_path / "o"))
    _assert_no_output(tmp_path / "o")


def test_frame_outside_poses(small, tmp_path):
    with pytest.raises(FrameRangeError, match=r"frame 8 is not in .*pose.*available frames \[0, 5\]"):
        export_colmap(small.store, small.name, str(tmp_path / "o"), frames=[0, 8])
    _assert_no_output(tmp_path / "o")


def test_bad_options(small, tmp_path):
    with pytest.raises(ConfigError):
        export_colmap(small.store, small.name, str(tmp_path / "o"), fmt="ply")
    with pytest.raises(ConfigError):
        export_colmap(small.store, small.name, str(tmp_path / "o"), jpeg_quality=0)
    with pytest.raises(ConfigError):
        export_colmap(small.store, small.name, str(tmp_path / "o"), voxel_size=-1.0)
    with pytest.raises(ConfigError, match=r"option depth_step: .*valid integer.*'two'"):
        export_colmap(small.store, small.name, str(tmp_path / "o"), depth_step="two")
    with pytest.raises(ConfigError, match=r"min_track_length must be >= 1"):
        ColmapExportOptions(min_track_length=0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) depht_step"):
        export_colmap(small.store, small.name, str(tmp_path / "o"), depht_step=2)
    _assert_no_output(tmp_path / "o")


def test_options_model_and_keywords_export_the_same(small, tmp_path):
    """The options model (what the CLI and the Dagster asset pass) and keyword overrides are one thing."""
    a = export_colmap(small.store, small.name, str(tmp_path / "a"),
                      ColmapExportOptions(fmt="bin", dense=True, depth_step=2, min_track_length=3),
                      update_manifest=False)
    b = export_colmap(small.store, small.name, str(tmp_path / "b"), ColmapExportOptions(fmt="bin"), dense=True,
                      depth_step=2, min_track_length=3, update_manifest=False)
    assert a.fmt == b.fmt == "bin" and a.points_source == b.points_source == "sparse+dense"
    assert a.stats["dense"]["depth_step"] == b.stats["dense"]["depth_step"] == 2
    assert a.stats["sparse"]["min_track_length"] == b.stats["sparse"]["min_track_length"] == 3
    for f in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (tmp_path / "a" / "sparse" / "0" / f).read_bytes() == (tmp_path / "b" / "sparse" / "0" / f).read_bytes()


def test_dense_without_depth(tmp_path):
    sc = make_scene(tmp_path / "art", name="nodepth", n_frames=4, n_points=40, with_depth=False)
    with pytest.raises(ArtifactError, match=r"needs depth maps, but .*depth/nodepth\.zip is missing"):
        export_colmap(sc.store, sc.name, str(tmp_path / "o"), dense=True)
    _assert_no_output(tmp_path / "o")


def test_failure_while_writing_leaves_nothing(small, tmp_path):
    """A depth frame of the wrong size is only found mid-export: the staged folder must vanish."""
    depth_uri = small.store.path("depth", small.name)
    buf = io.BytesIO()
    with zipfile.ZipFile(depth_uri) as z, zipfile.ZipFile(buf, "w") as w:
        for n in z.namelist():
            data = encode_depth_exr(np.ones((10, 12), np.float32)) if n == "00004.exr" else z.read(n)
            w.writestr(n, data)
    Path(depth_uri).write_bytes(buf.getvalue())
    out = tmp_path / "fresh" / "colmap" / "seq"
    with pytest.raises(ArtifactError, match=r"depth/seq\.zip frame 4: depth is 12x10, expected 320x240"):
        export_colmap(small.store, small.name, str(out), dense=True, depth_step=2)
    _assert_no_output(out)
    # an existing export is kept intact when a re-export fails
    ok = tmp_path / "keep"
    export_colmap(small.store, small.name, str(ok), update_manifest=False)
    before = sorted(p.relative_to(ok) for p in ok.rglob("*"))
    with pytest.raises(ArtifactError):
        export_colmap(small.store, small.name, str(ok), dense=True, depth_step=2)
    assert sorted(p.relative_to(ok) for p in ok.rglob("*")) == before


def test_poses_only_without_sparse_map_or_depth(tmp_path, caplog):
    sc = make_scene(tmp_path / "art", name="bare", n_frames=4, with_sparse=False, with_depth=False)
    res = export_colmap(ArtifactStore(sc.root), sc.name, str(tmp_path / "o"), fmt="bin")
    assert res.points_source == "none" and res.num_points == 0 and res.num_images == 4
    assert any("without 3D points" in w for w in res.warnings)
    import pycolmap

    rec = pycolmap.Reconstruction(str(tmp_path / "o" / "sparse" / "0"))
    assert rec.num_reg_images() == 4 and rec.num_points3D() == 0


def test_video_shorter_than_poses(small, tmp_path, caplog):
    """Released datasets have pose/video counts off by one: export what both cover, refuse the rest."""
    frames = [f for _, f in small.store.open_rgb(small.name)]
    small.store.write_rgb(small.name, frames[:5], fps=10.0)
    with pytest.raises(FrameRangeError, match=r"frame 5 is selected for export but .*rgb/seq\.mp4 has only "
                                              r"frames \[0, 4\]"):
        export_colmap(small.store, small.name, str(tmp_path / "o"))
    _assert_no_output(tmp_path / "o")
    res = export_colmap(small.store, small.name, str(tmp_path / "o"), frames=slice(0, 5), update_manifest=False)
    assert res.num_images == 5
    assert any("has 5 frames but" in r.getMessage() for r in caplog.records)
