"""``_vis.mp4`` and preview pictures: frame count, panel alignment with the artifacts (decoded with
OpenCV, compared with the analytic scene), bad inputs leave nothing behind."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from vipe_dagster.errors import ArtifactError
from vipe_dagster.io import ArtifactStore
from vipe_dagster.viz.frames import SequenceSource
from vipe_dagster.viz.planes import make_scene, render_frame, write_scene
from vipe_dagster.viz.video import preview_images, sequence_depth_range, vis_layout, write_vis_video


def _decode_all(uri: str) -> list[np.ndarray]:
    cap = cv2.VideoCapture(uri)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def _crop(frame: np.ndarray, layout, panel: str) -> np.ndarray:
    x0, y0, x1, y1 = layout.box(panel)
    p = frame[y0:y1, x0:x1].astype(np.float64)
    f = layout.upscale
    h, w = p.shape[0] // f, p.shape[1] // f
    return p[: h * f, : w * f].reshape(h, f, w, f, 3).mean(axis=(1, 3))  # back to artifact resolution


@pytest.fixture(scope="module")
def vis(plane_result):
    store, scene = plane_result
    uri = write_vis_video(store, "planes")
    src = SequenceSource(store, "planes")
    drange = sequence_depth_range(src)
    src.close()
    return store, scene, uri, _decode_all(uri), drange


def test_one_frame_per_input_frame(vis):
    store, scene, uri, frames, _ = vis
    assert uri == store.path("vis", "planes")
    assert len(frames) == scene.n_frames
    layout = vis_layout(scene.width, scene.height)
    assert frames[0].shape == (layout.size[1], layout.size[0], 3)


def test_rgb_panel_is_frame_k(vis):
    _, scene, _, frames, _ = vis
    layout = vis_layout(scene.width, scene.height)
    for k in (0, 13, scene.n_frames - 3):
        panel = _crop(frames[k], layout, "rgb")
        err = {j: np.abs(panel - render_frame(scene, j)[0]).mean() for j in (k, k + 2)}
        assert err[k] < 12, err
        assert err[k] < err[k + 2]


def test_depth_panel_decodes_to_depth_k(vis):
    _, scene, _, frames, (lo, hi) = vis
    layout = vis_layout(scene.width, scene.height)
    ramp = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    lut = ramp.astype(np.float64)  # (256,3) RGB, index 255 = nearest
    for k in (0, scene.n_frames // 2, scene.n_frames - 1):
        panel = _crop(frames[k], layout, "depth")
        idx = np.argmin(((panel[:, :, None, :] - lut[None, None]) ** 2).sum(-1), axis=-1)
        decoded = lo + (1.0 - idx / 255.0) * (hi - lo)
        true = render_frame(scene, k)[1]
        # interior of smooth regions, inside the colour-map range
        edges = cv2.dilate((cv2.Laplacian(true, cv2.CV_32F, ksize=3) ** 2 > 1e-2).astype(np.uint8),
                           np.ones((5, 5), np.uint8)) > 0
        ok = (true > lo) & (true < hi) & ~edges
        assert ok.mean() > 0.1
        far = (true >= hi + 0.05) & ~edges  # beyond the range: saturates at the far colour
        if far.any():
            assert np.median(decoded[far]) > hi - 0.05 * (hi - lo)
        err = np.abs(decoded - true)[ok] / (hi - lo)
        assert np.median(err) < 0.03 and np.percentile(err, 90) < 0.08, (np.median(err), np.percentile(err, 90))


def test_mask_panel_tints_the_moving_object(vis):
    _, scene, _, frames, _ = vis
    layout = vis_layout(scene.width, scene.height)
    k = int(np.argmax([render_frame(scene, i)[2].sum() for i in range(scene.n_frames)]))
    rgb, _, mask = render_frame(scene, k)
    panel = _crop(frames[k], layout, "mask")
    inner = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    outer = cv2.dilate(mask, np.ones((7, 7), np.uint8)) == 0
    diff = np.abs(panel - rgb).mean(axis=-1)
    assert inner.sum() > 20
    assert diff[inner].mean() > 3 * diff[outer].mean() + 10


def test_trajectory_marker_follows_the_camera(vis):
    _, scene, _, frames, _ = vis
    layout = vis_layout(scene.width, scene.height)
    x0, y0, x1, y1 = layout.box("trajectory")
    ks = list(range(0, scene.n_frames, 3))
    cx, cy = [], []
    for k in ks:
        p = frames[k][y0:y1, x0:x1].astype(int)
        red = (p[..., 0] > 170) & (p[..., 1] < 80) & (p[..., 2] < 80)
        assert red.sum() > 5, k
        ys, xs = np.nonzero(red)
        cx.append(xs.mean())
        cy.append(ys.mean())
    pos = scene.c2w[ks, :3, 3]
    # world x is 'right', world z is 'forward' (drawn upwards) for this scene's cameras
    assert np.corrcoef(cx, pos[:, 0])[0, 1] > 0.97
    assert np.corrcoef(cy, pos[:, 2])[0, 1] < -0.97


def test_preview_images(plane_result):
    store, scene = plane_result
    prev = preview_images(store, "planes")
    assert set(prev) == {"trajectory", "depth", "contact_sheet"}
    imgs = {k: np.asarray(Image.open(io.BytesIO(v))) for k, v in prev.items()}
    assert imgs["trajectory"].shape == (512, 512, 3)
    assert imgs["depth"].shape[0] >= 256 and imgs["depth"].shape[0] % scene.height == 0
    assert imgs["contact_sheet"].shape[1] == 4 * 240
    # the contact sheet's first tile is frame 0
    tile = cv2.resize(render_frame(scene, 0)[0], (240, 180), interpolation=cv2.INTER_AREA)
    assert np.abs(imgs["contact_sheet"][40:180, :240].astype(float) - tile[40:180]).mean() < 15


def test_pose_only_result_previews(tmp_path):
    store = ArtifactStore(str(tmp_path))
    store.write_pose("p", make_scene(32, 24, 5).c2w)
    assert set(preview_images(store, "p")) == {"trajectory"}
    with pytest.raises(ArtifactError, match=r"rgb/p\.mp4"):
        write_vis_video(store, "p")
    # nothing but the manifest (the generation record of write_pose) is left in vipe/
    assert sorted(p.name for p in (tmp_path / "vipe").iterdir()) == ["p_manifest.json"]


def test_short_rgb_fails_without_partial_output(tmp_path):
    store = ArtifactStore(str(tmp_path))
    scene = make_scene(32, 24, 6)
    write_scene(store, "s", scene)
    store.write_rgb("s", [render_frame(scene, i)[0] for i in range(4)], fps=30)  # 4 of 6 frames
    short = r"frame counts disagree: .*rgb/s\.mp4 has 4 frames, .*pose/s\.npz has 6 frames"
    with pytest.raises(ArtifactError, match=short):
        write_vis_video(store, "s")
    assert not any(p.name.endswith(".mp4") for p in (tmp_path / "vipe").iterdir())
    unversioned = ArtifactStore(str(tmp_path / "u"), versioned=False)  # ViPE's files: found while decoding
    write_scene(unversioned, "s", scene)
    unversioned.write_rgb("s", [render_frame(scene, i)[0] for i in range(4)], fps=30)
    with pytest.raises(ArtifactError, match="frame 4"):
        write_vis_video(unversioned, "s")
    assert not any(p.name.endswith(".mp4") for p in (tmp_path / "vipe").iterdir())


def test_cli_write_video(tmp_path):
    import subprocess
    import sys

    store = ArtifactStore(str(tmp_path))
    write_scene(store, "c", make_scene(32, 24, 5))
    out = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "visualize", str(tmp_path), "--write-video"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == store.path("vis", "c")
    assert len(_decode_all(store.path("vis", "c"))) == 5
    bad = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", "visualize", str(tmp_path), "--write-video",
                          "--sequence", "zz"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "available: c" in bad.stderr
