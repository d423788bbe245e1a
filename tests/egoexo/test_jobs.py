"""The job lists of scripts/infer_vipe.sh and scripts/render_vipe.sh report what they leave out."""

import shutil
from pathlib import Path

from vipe_dagster.entry.egoexo_jobs import infer_jobs, render_jobs
from vipe_dagster.synth.egoexo_take import generate_take


def test_job_lists_report_every_left_out_video_and_result(tmp_path, capsys):
    take = generate_take(str(tmp_path / "d"), num_frames=2, resolution=32)
    vdir = Path(take.root) / "takes" / take.take / "frame_aligned_videos" / "downscaled" / "448"
    vdir.mkdir(parents=True)
    src = next((Path(take.vipe_dir) / "rgb").glob("*.mp4"))
    for name in ("cam01.mp4", "aria01_214-1.mp4", "cam01_preview.mp4"):
        shutil.copy(src, vdir / name)
    lines = infer_jobs(take.root, "frame_aligned_videos/downscaled/448", None, None)
    assert [ln.split("\t")[:2] for ln in lines] == [[take.take, "cam01"]]
    err = capsys.readouterr().err
    assert f"skip {take.take}/aria01_214-1.mp4: the Aria ego stream" in err
    assert f"skip {take.take}/cam01_preview.mp4: no exo camera" in err

    res = Path(take.root) / "vipe_results" / take.take
    shutil.copytree(take.vipe_dir, res / "cam02_static_vda_fixedcam")
    shutil.copytree(take.vipe_dir, res / "exo")
    lines = render_jobs(take.root, str(Path(take.root) / "vipe_results"), None, None)
    assert [ln.split("\t")[:2] for ln in lines] == [[take.take, "cam01"], [take.take, "cam02"]]
    assert f"skip {take.take}/exo: the result folder names no exo camera" in capsys.readouterr().err
