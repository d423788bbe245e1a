"""The real-data loader: 7-Scenes folders read in place (never copied), clean skips when absent."""

from __future__ import annotations

import numpy as np
import pytest

from vipe_dagster.errors import InputError
from vipe_dagster.eval import realdata


def _fake_sequence(root, n=3):
    import cv2

    root.mkdir()
    for i in range(n):
        cv2.imwrite(str(root / f"frame-{i:06d}.color.jpg"), np.full((8, 8, 3), 10 * i, np.uint8))
        cv2.imwrite(str(root / f"frame-{i:06d}.depth.png"), np.full((8, 8), 1500 + i, np.uint16))
        T = np.eye(4)
        T[0, 3] = 0.1 * i
        np.savetxt(root / f"frame-{i:06d}.pose.txt", T)
    return root


def test_loader_reads_poses_depth_and_links_frames(tmp_path):
    seq = realdata.SevenScenes(_fake_sequence(tmp_path / "seq"))
    assert len(seq) == 3
    gt = seq.gt_c2w(1, 2)
    assert gt.shape == (2, 4, 4) and gt[1, 0, 3] == pytest.approx(0.2)
    assert seq.depth_m(2)[0, 0] == pytest.approx(1.502)
    folder = seq.image_folder(tmp_path / "imgs", 1, 2)
    links = sorted(folder.iterdir())
    assert [p.name for p in links] == ["000000.jpg", "000001.jpg"]
    assert all(p.is_symlink() for p in links)  # nothing copied


def test_loader_rejects_folders_without_frames_and_bad_poses(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frame-"):
        realdata.SevenScenes(tmp_path / "empty")
    seq = realdata.SevenScenes(_fake_sequence(tmp_path / "seq"))
    (tmp_path / "seq" / "frame-000001.pose.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="frame-000001.pose.txt"):
        seq.gt_c2w()


def test_absent_shared_data_gives_none(tmp_path, monkeypatch):
    monkeypatch.setenv("VIPE_SHARED_DATA", str(tmp_path))
    monkeypatch.delenv("VIPE_7SCENES", raising=False)
    assert realdata.seven_scenes() is None
