"""Round trips of every ViPE artifact type, on a local folder and on a moto S3 endpoint."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from vipe_dagster.errors import ArtifactError
from vipe_dagster.io import ArtifactStore, SparseMap, fs
from vipe_dagster.io.validate import validate_sequence

N, H, W = 6, 24, 32


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    return ArtifactStore(request.getfixturevalue("s3_root"))


def _poses(n=N, seed=0):
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(rng.normal(size=(n, 3)) * 0.3).as_matrix()
    T[:, :3, 3] = rng.normal(size=(n, 3))
    return T.astype(np.float32)


def _depths(n=N, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.2, 30.0, size=(H, W)).astype(np.float32) for _ in range(n)]


def _frames(n=N):
    out = []
    for i in range(n):
        f = np.zeros((H, W, 3), np.uint8)
        f[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None]
        f[..., 1] = 20 * i
        f[4:12, 4 + i:12 + i, 2] = 255
        out.append(f)
    return out


def test_pose_roundtrip(store):
    T = _poses()
    store.write_pose("seq", T, keyframe_ids=[0, 3, 5])
    data, inds = store.read_pose("seq")
    np.testing.assert_array_equal(data, T)
    np.testing.assert_array_equal(inds, np.arange(N))


def test_pose_validity_roundtrip(store):
    c2w = np.tile(np.eye(4, dtype=np.float32), (4, 1, 1))
    store.write_pose("plain", c2w)
    assert store.read_pose_valid("plain").tolist() == [True] * 4  # ViPE's own results: all valid
    c2w[3, 0, 3] = np.nan
    store.write_pose("flagged", c2w, valid=[True, False, True, True])
    assert store.read_pose_valid("flagged").tolist() == [True, False, True, False]  # NaN is never valid
    with pytest.raises(ArtifactError, match="valid"):
        store.write_pose("short", c2w, valid=[True])


def test_intrinsics_roundtrip(store):
    K = np.tile(np.array([[300.0, 301.0, 16.0, 12.0]], np.float32), (N, 1))
    store.write_intrinsics("seq", K)
    data, inds, types = store.read_intrinsics("seq")
    np.testing.assert_array_equal(data, K)
    np.testing.assert_array_equal(inds, np.arange(N))
    assert types == ["PINHOLE"] * N
    assert fs.read_text(store.path("camera", "seq")).splitlines()[:2] == ["0: PINHOLE", "1: PINHOLE"]


def test_depth_roundtrip_float16_exact(store):
    depths = _depths()
    store.write_depth("seq", depths)
    assert store.depth_count("seq") == N
    got = dict(store.iter_depth("seq"))
    assert sorted(got) == list(range(N))
    for i, d in enumerate(depths):
        np.testing.assert_array_equal(got[i], d.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(store.read_depth("seq", 3), depths[3].astype(np.float16).astype(np.float32))
    names = zipfile.ZipFile(io.BytesIO(fs.read_bytes(store.path("depth", "seq")))).namelist()
    assert names == [f"{i:05d}.exr" for i in range(N)]


def test_mask_roundtrip(store):
    rng = np.random.default_rng(3)
    masks = [rng.integers(0, 4, size=(H, W), dtype=np.uint8) for _ in range(N)]
    store.write_masks("seq", masks, {1: "dog", 2: "person", 3: "ball"})
    assert store.mask_count("seq") == N
    for i, m in store.iter_masks("seq"):
        np.testing.assert_array_equal(m, masks[i])
    assert store.read_phrases("seq") == {0: "background", 1: "dog", 2: "person", 3: "ball"}


def test_rgb_roundtrip(store):
    frames = _frames()
    store.write_rgb("seq", frames, fps=30.0)
    stream = store.open_rgb("seq")
    got = [f for _, f in stream]
    assert len(got) == N and stream.info.fps == pytest.approx(30.0)
    for a, b in zip(got, frames, strict=True):
        assert a.shape == (H, W, 3)
        # H.264 at crf 18 is lossy but close
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6


def test_info_manifest_sparse_roundtrip(store):
    store.write_info("seq", {"ba_residual": 0.42})
    assert store.read_info("seq") == {"ba_residual": 0.42}
    store.write_manifest("seq", {"scale": "relative", "n": np.int64(3), "arr": np.arange(2)})
    back_manifest = store.read_manifest("seq")
    record = back_manifest.pop("generation")  # the store keeps its own generation record (io/generation.py)
    assert back_manifest == {"scale": "relative", "n": 3, "arr": [0, 1]}
    assert set(record["artifacts"]) == {"info"}
    sm = SparseMap(points=np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32),
                   colors=np.full((5, 3), 200, np.uint8), obs_frame=np.array([0, 0, 1, 2], np.int32),
                   obs_point=np.array([0, 1, 1, 4], np.int32), obs_uv=np.ones((4, 2), np.float32),
                   keyframes=np.array([0, 2], np.int32))
    store.write_sparse_map("seq", sm)
    back = store.read_sparse_map("seq")
    for field in ("points", "colors", "obs_frame", "obs_point", "obs_uv", "keyframes"):
        np.testing.assert_array_equal(getattr(back, field), getattr(sm, field))


def test_full_sequence_validates_and_is_discovered(store):
    store.write_rgb("seq", _frames(), fps=30.0)
    store.write_pose("seq", _poses())
    store.write_intrinsics("seq", np.tile([[300.0, 300.0, 16.0, 12.0]], (N, 1)))
    store.write_depth("seq", _depths())
    store.write_masks("seq", [np.zeros((H, W), np.uint8)] * N, {})
    store.write_info("seq", {"ba_residual": 0.1})
    findings = validate_sequence(store, "seq", expected_frames=N)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert store.sequences() == ["seq"]


def test_validator_reports_bad_pose(tmp_path):
    store = ArtifactStore(str(tmp_path))
    T = _poses()
    T[2, 0, 0] = np.nan
    store.write_pose("seq", T)
    findings = {f.check: f for f in validate_sequence(store, "seq", N, require=("pose",))}
    assert not findings["pose_finite"].ok and findings["pose_shape"].ok


def test_npz_loads_with_plain_numpy(tmp_path):
    store = ArtifactStore(str(tmp_path))
    T = _poses()
    store.write_pose("seq", T)
    K = np.tile(np.array([[300.0, 300.0, 16.0, 12.0]], np.float32), (N, 1))
    store.write_intrinsics("seq", K)
    z = np.load(tmp_path / "pose" / "seq.npz")
    np.testing.assert_array_equal(z["data"], T)
    np.testing.assert_array_equal(z["inds"], np.arange(N))
    z = np.load(tmp_path / "intrinsics" / "seq.npz")
    np.testing.assert_array_equal(z["data"], K)


def test_depth_zip_readable_by_legacy_openexr_api(tmp_path):
    """ViPE reads depth with OpenEXR.InputFile + Imath; our zip must decode that way."""
    import Imath
    import OpenEXR

    store = ArtifactStore(str(tmp_path))
    depths = _depths(3)
    store.write_depth("seq", depths)
    with zipfile.ZipFile(tmp_path / "depth" / "seq.zip") as z:
        for i, d in enumerate(depths):
            raw = z.read(f"{i:05d}.exr")
            p = tmp_path / f"x{i}.exr"
            p.write_bytes(raw)
            f = OpenEXR.InputFile(str(p))
            header = f.header()
            dw = header["dataWindow"]
            w, h = dw.max.x - dw.min.x + 1, dw.max.y - dw.min.y + 1
            assert (w, h) == (W, H)
            assert list(header["channels"]) == ["Z"]
            assert header["channels"]["Z"].type == Imath.PixelType(Imath.PixelType.HALF)
            z16 = np.frombuffer(f.channel("Z", Imath.PixelType(Imath.PixelType.HALF)), np.float16).reshape(h, w)
            np.testing.assert_array_equal(z16, d.astype(np.float16))


def test_reader_accepts_zip_written_by_legacy_api(tmp_path):
    """A depth zip written with the legacy OutputFile API (as ViPE writes it) reads back through our store."""
    import Imath
    import OpenEXR

    d = _depths(1)[0].astype(np.float16)
    p = tmp_path / "a.exr"
    header = OpenEXR.Header(W, H)
    header["channels"] = {"Z": Imath.Channel(Imath.PixelType(Imath.PixelType.HALF))}
    out = OpenEXR.OutputFile(str(p), header)
    out.writePixels({"Z": d.tobytes()})
    out.close()
    (tmp_path / "depth").mkdir()
    with zipfile.ZipFile(tmp_path / "depth" / "seq.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(p, "00000.exr")
    np.testing.assert_array_equal(ArtifactStore(str(tmp_path)).read_depth("seq", 0), d.astype(np.float32))


def test_depth_reader_streams_one_member_at_a_time(tmp_path, monkeypatch):
    """Iterating a depth zip decodes lazily: after reading frame 0 nothing else has been decoded."""
    from vipe_dagster.io import artifacts

    store = ArtifactStore(str(tmp_path))
    store.write_depth("seq", _depths(5))
    calls = []
    real = artifacts.decode_depth_exr
    monkeypatch.setattr(artifacts, "decode_depth_exr", lambda b, n="": calls.append(n) or real(b, n))
    it = store.iter_depth("seq")
    next(it)
    assert len(calls) == 1
    it.close()


def test_missing_and_malformed_artifacts(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError, match=r"missing artifact file .*pose/nope\.npz"):
        store.read_pose("nope")
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ArtifactError, match=r"bad\.npz: not a readable npz"):
        store.read_pose("bad")
    np.savez(tmp_path / "pose" / "shape.npz", data=np.zeros((3, 3, 3)), inds=np.arange(3))
    with pytest.raises(ArtifactError, match=r"shape\.npz: 'data' has shape \(3, 3, 3\), expected \(N,4,4\)"):
        store.read_pose("shape")
    store.write_depth("d", _depths(2))
    with pytest.raises(ArtifactError, match=r"frame 7 \(00007\.exr\) is missing"):
        store.read_depth("d", 7)


def test_depth_writer_rejects_shape_change_and_leaves_nothing(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError, match=r"frame 1 has shape \(10, 10\), expected \(24, 32\)"):
        store.write_depth("seq", [np.ones((H, W)), np.ones((10, 10))])
    assert not (tmp_path / "depth" / "seq.zip").exists()
    assert [p.name for p in (tmp_path / "depth").iterdir()] == []


def test_failed_rewrite_keeps_the_old_file(tmp_path):
    store = ArtifactStore(str(tmp_path))
    store.write_depth("seq", _depths(2))
    before = (tmp_path / "depth" / "seq.zip").read_bytes()

    def frames():
        yield np.ones((H, W), np.float32)
        raise RuntimeError("simulated crash mid-write")

    with pytest.raises(RuntimeError, match="simulated crash"):
        store.write_depth("seq", frames())
    assert (tmp_path / "depth" / "seq.zip").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == ["seq.zip"]


def test_failed_s3_write_leaves_no_object(s3_root):
    store = ArtifactStore(s3_root)

    def frames():
        yield np.ones((H, W), np.float32)
        raise RuntimeError("simulated crash mid-write")

    with pytest.raises(RuntimeError):
        store.write_depth("seq", frames())
    assert not fs.exists(store.path("depth", "seq"))
