"""Video streams on real files: counts, inclusive ranges, skip, resize, image folders and bad inputs."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from vipe_dagster.cli import main
from vipe_dagster.errors import FrameRangeError, VideoError
from vipe_dagster.ingest import ingest_video
from vipe_dagster.io import ArtifactStore, open_video, probe, processing_size


def _encode(path, n=30, fmt=None, options=None, size=(64, 48)):
    c = av.open(str(path), "w", format=fmt, options=options or {})
    s = c.add_stream("libx264", rate=30)
    s.width, s.height = size
    s.pix_fmt = "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(n):
        img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def test_dog_example_has_122_frames_of_1280x720(sample_video):
    info = probe(sample_video)
    assert (info.num_frames, info.width, info.height) == (122, 1280, 720)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    frames = list(open_video(sample_video))
    assert len(frames) == 122
    assert [i for i, _ in frames] == list(range(122))
    assert all(f.shape == (720, 1280, 3) and f.dtype == np.uint8 for _, f in frames)


@pytest.mark.parametrize("start,end,skip,expected", [
    (0, 100, 1, 101), (0, 0, 1, 1), (10, 20, 1, 11), (0, 121, 1, 122), (0, 121, 2, 61), (5, 15, 5, 3), (None, None, 1, 122),
])
def test_inclusive_ranges(sample_video, start, end, skip, expected):
    s = open_video(sample_video, start, end, skip)
    assert len(s) == expected
    assert s.frame_indices[0] == (start or 0)
    assert s.fps == pytest.approx(29.97 / skip, abs=0.01)


def test_range_frames_are_the_right_frames(sample_video):
    full = {i: f for i, f in open_video(sample_video, 0, 12)}
    part = list(open_video(sample_video, 9, 12, long_side=None))
    assert [i for i, _ in part] == [9, 10, 11, 12]
    for i, f in part:
        np.testing.assert_array_equal(f, full[i])


def test_resize_to_processing_size_records_scale(sample_video):
    s = open_video(sample_video, 0, 3, long_side=512)
    assert (s.width, s.height) == (512, 288)
    assert s.width % 8 == 0 and s.height % 8 == 0
    assert s.scale == pytest.approx((0.4, 0.4))
    frames = [f for _, f in s]
    assert frames[0].shape == (288, 512, 3) and frames[0].dtype == np.uint8
    K = np.array([1000.0, 1000.0, 639.5, 359.5])
    Ks = s.scale_intrinsics(K)
    np.testing.assert_allclose(Ks, [400.0, 400.0, 255.5, 143.5])
    np.testing.assert_allclose(s.scale_intrinsics(Ks, to_processing=False), K)
    assert processing_size(1920, 1080, 512) == (512, 288)
    assert processing_size(640, 480, 512) == (512, 384)
    assert processing_size(480, 640, 300) == (224, 304)


def test_image_directory_stream(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {}
    for i in [3, 1, 2, 0, 10]:  # written out of order; sorted by name
        img = rng.integers(0, 255, (40, 64, 3), dtype=np.uint8)
        name = f"frame_{i:03d}.png"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        imgs[name] = img
    (tmp_path / "notes.txt").write_text("ignored")
    info = probe(tmp_path)
    assert (info.num_frames, info.width, info.height, info.kind) == (5, 64, 40, "images")
    frames = list(open_video(tmp_path, 1, 3))
    order = sorted(imgs)
    assert [i for i, _ in frames] == [1, 2, 3]
    for i, f in frames:
        np.testing.assert_array_equal(f, imgs[order[i]])


def test_image_directory_with_mismatched_sizes(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 64, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((20, 64, 3), np.uint8))
    with pytest.raises(VideoError, match=r"b\.png: image 1 is 64x20, expected 64x40 like the first image"):
        list(open_video(tmp_path))


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match=r"Video not found: .*nope\.mp4"):
        probe(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path):
    p = tmp_path / "fake.mp4"
    p.write_text("this is not a video")
    with pytest.raises(VideoError, match=r"fake\.mp4 is not a readable video file"):
        probe(p)


def test_zero_frames(tmp_path):
    p = tmp_path / "zero.mkv"
    c = av.open(str(p), "w")
    s = c.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    c.start_encoding()
    c.close()
    with pytest.raises(VideoError, match=r"zero\.mkv has zero frames"):
        probe(p)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(VideoError, match=r"empty_dir holds no images"):
        probe(empty)


def test_stream_breaking_midway_names_last_good_frame(tmp_path):
    full = _encode(tmp_path / "full.mp4", n=30, options={"movflags": "faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut\.mp4: stream breaks after frame \d+ \(last frame with data; "
                                         r"the header declares 30 frames"):
        probe(cut)


def test_decode_failure_midway_names_last_good_frame(tmp_path, monkeypatch):
    """Where the container gives no frame count, the decoder running dry names the last good frame."""
    from vipe_dagster.io import video as vmod

    full = _encode(tmp_path / "v.mkv", n=20, fmt="matroska")
    stream = open_video(full)
    real = vmod._iter_source

    def dies_after_7(info, stop):
        for i, f in real(info, stop):
            if i > 7:
                return
            yield i, f

    monkeypatch.setattr(vmod, "_iter_source", dies_after_7)
    with pytest.raises(VideoError, match=r"v: stream ended after frame 7 \(last good frame\) but frames up to 19"):
        list(stream)


@pytest.mark.parametrize("start,end,msg", [
    (0, 300, r"Frame range \[0, 300\] exceeds available frames \[0, 121\] in dog-example\.mp4"),
    (-1, 10, r"Frame range \[-1, 10\] has a negative frame index in dog-example\.mp4"),
    (50, 10, r"Frame range \[50, 10\] is inverted in dog-example\.mp4"),
    (122, 122, r"Frame range \[122, 122\] exceeds available frames \[0, 121\]"),
])
def test_bad_ranges(sample_video, start, end, msg):
    with pytest.raises(FrameRangeError, match=msg):
        open_video(sample_video, start, end)


def test_bad_frame_skip(sample_video):
    with pytest.raises(FrameRangeError, match=r"frame_skip must be >= 1, got 0 for dog-example"):
        open_video(sample_video, frame_skip=0)


def test_ingest_writes_rgb_and_manifest(sample_video, tmp_path):
    store = ArtifactStore(str(tmp_path / "out"))
    res = ingest_video(str(sample_video), store, start_frame=10, end_frame=25, long_side=256)
    assert (res.num_frames, res.width, res.height) == (16, 256, 144)
    frames = list(store.open_rgb("dog-example"))
    assert len(frames) == 16 and frames[0][1].shape == (144, 256, 3)
    m = store.read_manifest("dog-example")
    assert m["frames"]["source_indices"] == list(range(10, 26))
    assert m["input"]["hash"].startswith("sha256:") and len(m["input"]["hash"]) == 71
    assert m["config"]["end_frame"] == 25


@pytest.mark.parametrize("argv,msg", [
    (["--end_frame", "300"], "Frame range [0, 300] exceeds available frames [0, 121] in dog-example.mp4"),
    (["--start_frame", "9", "--end_frame", "3"], "Frame range [9, 3] is inverted"),
])
def test_cli_bad_input_writes_nothing(sample_video, tmp_path, capsys, argv, msg):
    out = tmp_path / "out"
    rc = main(["ingest", str(sample_video), "-o", str(out), *argv])
    assert rc == 2
    assert msg in capsys.readouterr().err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_cli_missing_video(tmp_path, capsys):
    rc = main(["probe", str(tmp_path / "missing.mov")])
    assert rc == 2 and "Video not found" in capsys.readouterr().err


def test_ingest_interrupted_leaves_no_partial_video(sample_video, tmp_path, monkeypatch):
    from vipe_dagster.io import video as vmod

    real = vmod.VideoWriter.add

    def add(self, frame):
        if self.count == 5:
            raise KeyboardInterrupt
        real(self, frame)

    monkeypatch.setattr(vmod.VideoWriter, "add", add)
    store = ArtifactStore(str(tmp_path / "out"))
    with pytest.raises(KeyboardInterrupt):
        ingest_video(str(sample_video), store, end_frame=20, long_side=128)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_s3_video_source_and_store(sample_video, s3_root):
    from vipe_dagster.io import fs

    src = s3_root.rsplit("/", 1)[0] + "/incoming/dog-example.mp4"
    fs.write_bytes(src, sample_video.read_bytes())
    assert probe(src).num_frames == 122
    store = ArtifactStore(s3_root)
    res = ingest_video(src, store, end_frame=7, long_side=128)
    assert res.num_frames == 8
    assert len(list(store.open_rgb("dog-example"))) == 8
    assert store.sequences() == ["dog-example"]
