"""``vipe-dagster to-colmap`` end to end through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycolmap
from colmap_scene import make_scene

from vipe_dagster.cli import main


def test_cli_default_output_range_and_binary(tmp_path, capsys):
    sc = make_scene(tmp_path / "art", name="clip", n_frames=8, n_points=80)
    rc = main(["to-colmap", sc.root, "--sequence", "clip", "--format", "bin", "--start-frame", "2",
               "--end_frame", "6", "--dense", "--depth_step", "2", "--voxel-size", "0.05"])
    assert rc == 0
    out = Path(sc.root) / "colmap" / "clip"
    summary = json.loads(capsys.readouterr().out)
    assert summary["out_dir"] == str(out) and summary["num_images"] == 5
    assert summary["points_source"] == "sparse+dense"
    assert sorted(p.name for p in (out / "sparse" / "0").iterdir()) == ["cameras.bin", "images.bin", "points3D.bin"]
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert sorted(i.name for i in rec.images.values()) == [f"frame_{f:06d}.jpg" for f in range(2, 7)]
    for img in rec.images.values():
        f = int(img.name[6:12])
        np.testing.assert_allclose(img.cam_from_world().matrix(), np.linalg.inv(sc.c2w[f].astype(float))[:3],
                                   atol=1e-6)
    stats = json.loads((out / "export_stats.json").read_text())
    assert stats["dense"]["voxel_size"] == 0.05 and stats["dense"]["frames_used"] == [2, 4, 6]
    assert sc.store.read_manifest("clip")["colmap_export"]["format"] == "bin"


def test_cli_single_sequence_is_picked_and_errors_exit_2(tmp_path, capsys):
    sc = make_scene(tmp_path / "art", name="only", n_frames=4, n_points=40, with_depth=False)
    assert main(["to-colmap", sc.root, "-o", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "sparse" / "0" / "images.txt").is_file()
    capsys.readouterr()
    assert main(["to-colmap", sc.root, "--sequence", "nope", "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "missing pose file" in err and "nope.npz" in err
    assert not (tmp_path / "o2").exists()
    assert main(["to-colmap", sc.root, "--end_frame", "9", "-o", str(tmp_path / "o3")]) == 2
    assert "exceeds available frames [0, 3]" in capsys.readouterr().err
