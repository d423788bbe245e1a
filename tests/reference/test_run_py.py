"""``run.py`` with the reference's Hydra-style overrides: mapping, validation, batches, bit-for-bit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from ref_helpers import REPO, make_clip, run, vipe_argv

from vipe_dagster.compat.overrides import apply_overrides, parse_value
from vipe_dagster.errors import ConfigError

RUN_PY = REPO / "run.py"


def test_values_parse_like_hydra():
    assert parse_value("null") is None and parse_value("~") is None
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("12") == 12 and parse_value("-1") == -1 and parse_value("0.25") == 0.25
    assert parse_value("[a.mp4, 'b c.mp4',3]") == ["a.mp4", "b c.mp4", 3]
    assert parse_value("vipe_results/") == "vipe_results/" and parse_value("'007'") == "007"


def test_documented_reference_overrides():
    plan = apply_overrides(
        [
            "streams=raw_mp4_stream",
            "streams.base_path=x.mp4",
            "pipeline=default",
            "pipeline.post.depth_align_model=null",
            "pipeline.output.save_slam_map=true",
            "pipeline.output.path=out/",
            "streams.frame_start=2",
            "streams.frame_end=30",
            "pipeline.init.instance=null",
            "pipeline.output.save_artifacts=true",
        ]
    )
    cfg = plan.config
    assert cfg.preset == "default" and cfg.depth is False and cfg.masks is False and cfg.visualize is True
    assert plan.save_slam_map and plan.output == "out/" and plan.base_paths == ["x.mp4"]
    assert (plan.frame_start, plan.frame_end, plan.output_resolution) == (2, 30, "source")
    plan = apply_overrides(
        ["streams.base_path=[a.mp4,b.mp4]", "pipeline=pose_only", "pipeline.output.save_viz=false"]
    )
    assert plan.base_paths == ["a.mp4", "b.mp4"] and plan.config.preset == "pose_only"
    assert not plan.config.visualize
    # the preset is chosen first, wherever it appears (Hydra config groups)
    plan = apply_overrides(["pipeline.post.depth_align_model=null", "streams.base_path=x", "pipeline=lyra"])
    assert plan.config.preset == "lyra" and plan.config.depth is False


def test_any_dotted_path_into_the_engine_config():
    plan = apply_overrides(
        [
            "streams.base_path=x",
            "pose.long_side=0",
            "pipeline.pose.ba.window=7",
            "depth_config.num_planes=32",
            "pose.intrinsics.fov_prior_deg=70",
            "depth_config.learned.repo_id=org/model",
            "mask_config.long_side=160",
        ]
    )
    cfg = plan.config
    assert cfg.pose.long_side == 0 and cfg.pose.ba.window == 7 and cfg.depth_config.num_planes == 32
    assert cfg.pose.intrinsics.fov_prior_deg == 70 and cfg.depth_config.learned.repo_id == "org/model"
    assert cfg.mask_config.long_side == 160


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["streams.base_path=x", "pose.long_side=10"], "override pose.long_side=10: pose.long_side"),
        (["streams.base_path=x", "pose.ba.windw=3"], "did you mean pose.ba.window"),
        (["streams.base_path=x", "pipeline.output.save_artifacts=false"], "always writes the artifacts"),
        (
            ["streams.base_path=x", "streams=webcam"],
            "streams must be one of raw_mp4_stream, frame_dir_stream",
        ),
        (["streams.base_path=x", "streams.frame_end=3", "streams.frame_start=5"], "must be greater than"),
        (["streams.base_path=x", "pipeline.init.camera_type=fisheye"], "camera types pinhole, mei and panorama"),
        (["pipeline=default"], "no input: give streams.base_path"),
        (["streams.base_path"], "expected key=value"),
        (["streams.base_path=x", "streams.frame_skip=0"], "expected an integer >= 1"),
    ],
)
def test_bad_overrides(args, fragment):
    with pytest.raises(ConfigError, match=None) as exc:
        apply_overrides(args)
    assert fragment in str(exc.value), str(exc.value)


def test_camera_type_panorama_selects_the_equirectangular_camera():
    plan = apply_overrides(["streams.base_path=x", "pipeline.init.camera_type=panorama"])
    assert plan.config.camera == "panorama"
    assert apply_overrides(["streams.base_path=x", "pipeline=panorama"]).config.camera == "panorama"


def test_camera_type_mei_selects_the_wide_angle_camera():
    plan = apply_overrides(["streams.base_path=x", "pipeline.init.camera_type=mei"])
    assert plan.config.camera == "mei"
    assert apply_overrides(["streams.base_path=x", "pipeline=wide_angle"]).config.camera == "mei"


def test_run_py_bad_input_is_one_error_line_and_writes_nothing(clip, tmp_path):
    out = tmp_path / "out"
    for args, fragment in (
        (["streams.base_path=" + str(tmp_path / "nope.mp4")], "does not exist"),
        (["streams.base_path=" + str(clip), "pose.long_side=7"], "pose.long_side"),
        (["streams.base_path=" + str(clip), "streams.frame_start=500"], "past the last frame 11"),
        (["streams.base_path=" + str(clip), "pipeline=dav3"], "Depth-Anything-V2-Small"),
        (["streams=frame_dir_stream", "streams.base_path=" + str(clip)], "expects a folder of images"),
    ):
        p = run(
            ["python", RUN_PY, *args, f"pipeline.output.path={out}"],
            tmp_path,
            HF_HUB_CACHE=str(tmp_path / "empty-cache"),
        )
        assert p.rc == 2 and "Traceback" not in p.err, p.err[-2000:]
        assert len(p.error_lines) == 1 and fragment in p.error_lines[0], p.error_lines
        assert not out.exists()


@pytest.mark.slow
def test_pose_only_through_run_py_equals_vipe_infer_bit_for_bit(clip, tmp_path):
    from vipe_dagster.io import ArtifactStore

    a, b = tmp_path / "run_py", tmp_path / "vipe"
    p = run(
        [
            "python",
            RUN_PY,
            "pipeline=pose_only",
            "streams=raw_mp4_stream",
            f"streams.base_path={clip}",
            f"pipeline.output.path={a}",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    assert "clip" in p.out and " ok " in p.out  # the summary table
    p = run([*vipe_argv(), "infer", clip, "--output", b, "--pipeline", "pose_only"], tmp_path)
    assert p.rc == 0, p.err[-3000:]
    sa, sb = ArtifactStore(str(a)), ArtifactStore(str(b))
    pa, ia = sa.read_pose("clip")
    pb, ib = sb.read_pose("clip")
    assert pa.dtype == pb.dtype and np.array_equal(pa, pb) and np.array_equal(ia, ib)
    assert np.array_equal(sa.read_intrinsics("clip")[0], sb.read_intrinsics("clip")[0])
    assert not sa.exists("depth", "clip") and sa.exists("vis", "clip")  # save_viz defaults to true in run.py
    assert sa.read_manifest("clip")["preset"]["name"] == "pose_only"
    # the mp4 stream's frame_end is exclusive and clamped to the video
    c = tmp_path / "ends"
    p = run(
        [
            "python",
            RUN_PY,
            "pipeline=pose_only",
            f"streams.base_path={clip}",
            "streams.frame_start=2",
            "streams.frame_end=1000",
            "pipeline.output.save_viz=false",
            f"pipeline.output.path={c}",
            "pose.long_side=128",
        ],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    man = ArtifactStore(str(c)).read_manifest("clip")
    assert man["frames"]["source_indices"] == list(range(2, 12))


@pytest.mark.slow
def test_folder_list_and_summary_table(clip, tmp_path):
    from vipe_dagster.io import ArtifactStore

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clip, videos / "a.mp4")
    make_clip(videos / "b.mp4", frames=8, start=40)
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    common = [
        "pipeline=pose_only",
        "pose.long_side=128",
        "pipeline.output.save_viz=false",
        f"pipeline.output.path={out}",
    ]
    p = run(["python", RUN_PY, f"streams.base_path={videos}", *common], tmp_path)
    assert p.rc == 0, p.err[-3000:]
    lines = [ln.split() for ln in p.out.splitlines()]
    table = {ln[0]: ln for ln in lines if ln and ln[0] in ("a", "b")}
    assert table["a"][1:3] == ["12", "ok"] and table["b"][1:3] == ["8", "ok"]
    store = ArtifactStore(str(out))
    assert store.sequences() == ["a", "b"] and len(store.read_pose("b")[0]) == 8
    # skip_exists skips what is there; a list file names inputs relative to itself
    (tmp_path / "list.txt").write_text("videos/b.mp4\n# comment\n")
    p = run(
        [
            "python",
            RUN_PY,
            f"streams.base_path={tmp_path / 'list.txt'}",
            "pipeline.output.skip_exists=true",
            *common,
        ],
        tmp_path,
    )
    assert p.rc == 0 and any(
        ln[:3] == ["b", "8", "skipped"] for ln in (x.split() for x in p.out.splitlines())
    ), p.out
    # a folder of image folders through frame_dir_stream
    frames = tmp_path / "frames" / "seq1"
    frames.mkdir(parents=True)
    import cv2

    from vipe_dagster.io import open_video

    for i, f in open_video(str(clip), 0, 7):
        cv2.imwrite(
            str(frames / f"{i:04d}.bmp" if i % 2 else frames / f"{i:04d}.tif"),
            cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
        )
    p = run(
        ["python", RUN_PY, "streams=frame_dir_stream", f"streams.base_path={tmp_path / 'frames'}", *common],
        tmp_path,
    )
    assert p.rc == 0, p.err[-3000:]
    assert len(store.read_pose("seq1")[0]) == 8
