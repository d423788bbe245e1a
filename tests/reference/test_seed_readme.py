"""Every command of the reference READMEs (issue 19's list), as written, as real processes, on tiny inputs.

The working directory plays the user's: ``vipe_results/``, ``vipe_results_colmap/``, ``ego_view_rendering/``
are created where the reference creates them. Nothing reaches the internet: the dataset comes from a local
mirror (``--source``) and the learned checkpoint of the ``lyra``/``dav3`` runs from a local Hugging Face cache
(random weights in the real Depth-Anything-V2 layout, ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys

import numpy as np
import pytest
from ref_helpers import METRIC, REPO, make_clip, run, vipe_argv

from vipe_dagster.io import ArtifactStore, probe

sys.path.insert(0, str(REPO / "tests" / "catalog"))
from catalog_fakes import WSDG_SEQS, make_repo  # noqa: E402

pytestmark = pytest.mark.slow

VIPE_FILES = (
    "rgb/{n}.mp4",
    "pose/{n}.npz",
    "intrinsics/{n}.npz",
    "intrinsics/{n}_camera.txt",
    "depth/{n}.zip",
    "mask/{n}.zip",
    "mask/{n}.txt",
    "vipe/{n}_info.pkl",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vipe_infer_visualize_run_py_and_colmap(clip, tmp_path):
    work = tmp_path
    shutil.copy(clip, work / "clip.mp4")
    make_clip(work / "walk.mp4", frames=10, start=60)

    # vipe infer VIDEO [--output DIR] [--visualize] [--pipeline P]
    p = run(
        [
            *vipe_argv(),
            "infer",
            "clip.mp4",
            "--output",
            "vipe_results",
            "--visualize",
            "--pipeline",
            "default",
        ],
        work,
    )
    assert p.rc == 0, p.err[-3000:]
    res = work / "vipe_results"
    for f in (*VIPE_FILES, "vipe/{n}_vis.mp4"):
        assert (res / f.format(n="clip")).is_file(), f
    store = ArtifactStore(str(res))
    rgb = store.open_rgb("clip")
    assert (rgb.width, rgb.height, len(rgb)) == (320, 180, 12)  # the source size, as ViPE writes it
    assert store.read_depth("clip", 0).shape == (180, 320)
    store.check_set("clip")

    # vipe visualize DIR
    port = _free_port()
    p = run(
        [*vipe_argv(), "visualize", "vipe_results", "--port", str(port), "--exit_after", "3"],
        work,
        timeout=300,
    )
    assert p.rc == 0, p.err[-3000:]
    assert f"http://127.0.0.1:{port}" in p.out

    # python run.py pipeline=default streams=raw_mp4_stream streams.base_path=PATH
    #     [pipeline.post.depth_align_model=null] [pipeline.output.save_slam_map=true]
    p = run(
        [
            "python",
            REPO / "run.py",
            "pipeline=default",
            "streams=raw_mp4_stream",
            "streams.base_path=walk.mp4",
            "pipeline.post.depth_align_model=null",
            "pipeline.output.save_slam_map=true",
        ],
        work,
    )
    assert p.rc == 0, p.err[-3000:]
    assert any(ln.split()[:3] == ["walk", "10", "ok"] for ln in p.out.splitlines()), p.out
    assert (res / "vipe" / "walk_slam_map.pt").is_file() and (res / "pose" / "walk.npz").is_file()
    assert not (res / "depth" / "walk.zip").exists() and (res / "mask" / "walk.zip").is_file()
    assert (res / "vipe" / "walk_vis.mp4").is_file()

    # python scripts/vipe_to_colmap.py vipe_results/ --sequence NAME [--use_slam_map]
    p = run(
        [
            "python",
            REPO / "scripts" / "vipe_to_colmap.py",
            "vipe_results/",
            "--sequence",
            "walk",
            "--use_slam_map",
        ],
        work,
    )
    assert p.rc == 0, p.err[-3000:]
    p = run(["python", REPO / "scripts" / "vipe_to_colmap.py", "vipe_results/", "--sequence", "clip"], work)
    assert p.rc == 0, p.err[-3000:]
    for seq, frames in (("walk", 10), ("clip", 12)):
        out = work / "vipe_results_colmap" / seq
        for f in ("cameras.txt", "images.txt", "points3D.txt", "sparse/0/cameras.txt"):
            assert (out / f).is_file(), (seq, f)
        assert len(list((out / "images").glob("frame_*.jpg"))) == frames
        points = [
            ln for ln in (out / "points3D.txt").read_text().splitlines() if ln and not ln.startswith("#")
        ]
        assert len(points) > 50, seq
    stats = json.loads((work / "vipe_results_colmap" / "walk" / "export_stats.json").read_text())
    assert stats["sparse"]["source"].endswith("walk_slam_map.pt")


def test_download_dataset_script(tmp_path):
    mirror = make_repo(
        tmp_path / "mirror" / "vipe-wild-sdg-1m",
        "wsdg",
        {"wsdg-00000001": WSDG_SEQS["wsdg-00000001"]},
        attributes=("rgb", "depth", "pose", "intrinsics"),
        rgb=True,
    )
    # python scripts/download_dataset.py --prefix PREFIX --output_base DIR --rgb --depth
    p = run(
        [
            "python",
            REPO / "scripts" / "download_dataset.py",
            "--prefix",
            "wsdg-00000001",
            "--output_base",
            "datasets",
            "--rgb",
            "--depth",
            "--source",
            mirror.root,
        ],
        tmp_path,
    )
    assert p.rc == 0, p.out + p.err[-2000:]
    for attr, files in (("rgb", 3), ("depth", 3), ("pose", 3), ("intrinsics", 6)):
        assert len(list((tmp_path / "datasets" / attr).iterdir())) == files, attr
    store = ArtifactStore(str(tmp_path / "datasets"))
    assert len(store.sequences()) == 3 and store.depth_count("0" * 31 + "1") == 26


def test_egox_scripts_and_renderer(take, hf_cache, clip, tmp_path):
    work = tmp_path
    env = {"HF_HUB_CACHE": str(hf_cache), "DATA_DIR": take.root}

    # ./scripts/infer_vipe.sh  (lyra on a fixed camera: the learned checkpoint comes from the cache)
    p = run([REPO / "scripts" / "infer_vipe.sh"], work, **env)
    assert p.rc == 0, p.out[-2000:] + p.err[-3000:]
    result = work / "vipe_results" / take.take / "cam01_lyra_fixedcam"
    for f in VIPE_FILES:
        assert (result / f.format(n="cam01")).is_file(), f
    store = ArtifactStore(str(result))
    man = store.read_manifest("cam01")
    assert man["preset"]["name"] == "lyra" and man["preset"]["learned_checkpoint"] == METRIC
    assert man["preset"]["checkpoint_source"] == "cache" and man["pose"]["fixed_camera"] is True
    assert np.allclose(store.read_pose("cam01")[0], np.eye(4))
    assert store.open_rgb("cam01").width == 160 and len(store.read_pose("cam01")[0]) == take.num_frames

    # ./scripts/render_vipe.sh  (CPU: one worker per core)
    p = run([REPO / "scripts" / "render_vipe.sh"], work, **env)
    assert p.rc == 0, p.out[-2000:] + p.err[-3000:]
    assert "device cpu" in p.out and "CUDA_VISIBLE_DEVICES=none" in p.out
    assert f"on {len(os.sched_getaffinity(0))} worker(s)" in p.out  # one worker per CPU core
    out = (
        work / "ego_view_rendering" / take.take / "cam01" / "test_output_lyra_fixedcam_mean_bg_fisheye_pts5.0"
    )
    assert sorted(x.name for x in out.glob("frame_*.png")) == [
        f"frame_{i:06d}.png" for i in range(take.num_frames)
    ]
    assert probe(str(out / "ego_Prior.mp4")).num_frames == take.num_frames

    # GPUs: one worker per visible GPU, round-robin (device forced to cpu: this machine has no GPU)
    shutil.copytree(result, result.parent / "cam02_lyra_fixedcam")
    from vipe_dagster.synth.egoexo_take import add_exo_camera

    add_exo_camera(take, "cam02", 15.0)  # gopro_calibs.csv row for cam02 (and a copy of cam01's exact result)
    p = run(
        [REPO / "scripts" / "render_vipe.sh"],
        work,
        OUT_DIR="gpu_renders",
        AVAILABLE_GPUS="2,5",
        RENDER_DEVICE="cpu",
        **env,
    )
    assert p.rc == 0, p.out[-2000:] + p.err[-3000:]
    launches = [ln for ln in p.out.splitlines() if ln.startswith("launch")]
    assert len(launches) == 2 and "on 2 worker(s)" in p.out
    seen = {}
    for cam in ("cam01", "cam02"):
        meta = json.loads(
            next((work / "gpu_renders" / take.take / cam).rglob("render_meta.json")).read_text()
        )
        seen[cam] = meta["cuda_visible_devices"]
    assert sorted(seen.values()) == ["2", "5"]

    # python ego_view_rendering/render_vipe_pointcloud.py --input_dir ... [all its flags]
    meta = json.loads(open(take.meta_json).read())
    meta["test_datasets"][0]["exo_path"] = f"./takes/{take.take}/cam01_lyra_fixedcam/exo.mp4"
    (work / "meta.json").write_text(json.dumps(meta))
    renderer = REPO / "ego_view_rendering" / "render_vipe_pointcloud.py"
    p = run(
        [
            "python",
            renderer,
            "--input_dir",
            result,
            "--out_dir",
            "ego_view_rendering",
            "--meta_json_path",
            "meta.json",
            "--point_size",
            "5.0",
            "--start_frame",
            "0",
            "--end_frame",
            str(take.num_frames - 1),
            "--batch_size",
            "8",
            "--only_bg",
            "--use_mean_bg",
            "--fish_eye_rendering",
            "--online_calibration_path",
            take.online_calibration,
        ],
        work,
    )
    assert p.rc == 0, p.err[-3000:]
    p = run(
        [
            "python",
            renderer,
            "--input_dir",
            take.vipe_dir,
            "--out_dir",
            "ego_view_rendering",
            "--ego_camera_pose_path",
            take.camera_pose_json,
            "--exo_camera_pose_path",
            take.gopro_calibs,
            "--online_calibration_path",
            take.online_calibration,
            "--point_size",
            "1.5",
            "--start_frame",
            "0",
            "--end_frame",
            "2",
            "--source_start_frame",
            "1",
            "--source_end_frame",
            "3",
            "--fish_eye_rendering",
        ],
        work,
    )
    assert p.rc == 0, p.err[-3000:]
    native = work / "ego_view_rendering" / take.take / "cam01" / "test_output_fisheye_pts1.5"
    assert sorted(x.name for x in native.glob("frame_*.png")) == [
        "frame_000000.png",
        "frame_000001.png",
        "frame_000002.png",
    ]

    # dav3 with a given checkpoint (the cache holds it; the network is never asked)
    p = run(
        [
            *vipe_argv(),
            "infer",
            clip,
            "-o",
            "dav3_results",
            "--pipeline",
            "dav3",
            "--depth_model",
            METRIC,
            "--end_frame",
            "3",
            "--long_side",
            "128",
        ],
        work,
        **env,
    )
    assert p.rc == 0, p.err[-3000:]
    man = ArtifactStore(str(work / "dav3_results")).read_manifest("clip")
    assert man["preset"]["learned_checkpoint"] == METRIC and man["preset"]["checkpoint_source"] == "given"
    assert man["pipeline"]["summary"]["depth"]["method"] in ("mvs+learned", "learned")  # the network ran
