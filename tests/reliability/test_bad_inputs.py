"""A clear ``error:`` line, rc 2, for every bad input of the audit (issue 21, items 4 and 8).

Each case runs the real command and asserts: exit code 2, exactly one ``error:`` line naming the file (and
line or frame) and what was expected, no traceback, and nothing written or changed in the test's folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from rel_helpers import SAMPLE, assert_clean_error, cli, snapshot, system_temps


# ---------------------------------------------------------------------- Ego-Exo4D files
def _render(take, tmp_path: Path, **files: str):
    args = ["render-ego", "--input_dir", take.vipe_dir, "--out_dir", tmp_path / "out", "--resolution", "64"]
    for flag, path in files.items():
        args += [f"--{flag}", path]
    if "ego_camera_pose_path" not in files and "meta_json_path" not in files:
        args += ["--ego_camera_pose_path", take.camera_pose_json]
    return cli(*args)


def _camera_pose(take) -> dict:
    return json.loads(Path(take.camera_pose_json).read_text())


CAMERA_POSE_CASES = {
    "ragged_matrix": (lambda d: d["cam01"].__setitem__("camera_extrinsics",
                                                       [[1, 0, 0, 0], [0, 1, 0], [0, 0, 1, 0]]),
                      "cam01.camera_extrinsics must be a list of numbers"),
    "string_matrix": (lambda d: d["cam01"].__setitem__("camera_intrinsics", [["a", "b", "c"]] * 3),
                      "cam01.camera_intrinsics must be a list of numbers"),
    "non_dict_entry": (lambda d: d.__setitem__("cam01", [1, 2, 3]), "entry 'cam01' must be an object"),
    "non_dict_aria": (lambda d: d.__setitem__("aria01", "oops"), "entry 'aria01' must be an object"),
    "nan_ego_pose": (lambda d: d["aria01"]["camera_extrinsics"].__setitem__(
        "1", [[float("nan"), 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
                     "aria01 frame 1 holds non-finite values"),
    "sheared_ego_pose": (lambda d: d["aria01"]["camera_extrinsics"].__setitem__(
        "1", [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]), "aria01 frame 1: rotation is not orthonormal"),
    "zero_focal": (lambda d: d["cam01"].__setitem__("camera_intrinsics", [[0, 0, 50], [0, 0, 50], [0, 0, 1]]),
                   "cam01.camera_intrinsics has focal lengths fx=0"),
    "bad_frame_key": (lambda d: d["aria01"]["camera_extrinsics"].__setitem__("x", [[1, 0, 0, 0]] * 3),
                      "non-integer frame key"),
}


@pytest.mark.parametrize("case", sorted(CAMERA_POSE_CASES))
def test_malformed_camera_pose_json(egoexo_take, tmp_path, case):
    edit, fragment = CAMERA_POSE_CASES[case]
    data = _camera_pose(egoexo_take)
    data.setdefault("cam01", {"camera_intrinsics": np.eye(3).tolist(),
                              "camera_extrinsics": np.eye(4)[:3].tolist()})
    edit(data)
    bad = tmp_path / "camera_pose.json"
    bad.write_text(json.dumps(data))
    before = snapshot(tmp_path)
    assert_clean_error(_render(egoexo_take, tmp_path, ego_camera_pose_path=str(bad)), str(bad), fragment)
    assert snapshot(tmp_path) == before


def test_camera_pose_json_not_utf8(egoexo_take, tmp_path):
    bad = tmp_path / "camera_pose.json"
    bad.write_bytes(b'{"aria01": "\xff\xfe"}')
    assert_clean_error(_render(egoexo_take, tmp_path, ego_camera_pose_path=str(bad)), str(bad), "not UTF-8")


def _gopro_lines(take) -> list[str]:
    return Path(take.gopro_calibs).read_text().splitlines()


@pytest.mark.parametrize("case", ["short_row", "binary", "nan_translation", "text_width", "missing_column"])
def test_malformed_gopro_calibs(egoexo_take, tmp_path, case):
    lines = _gopro_lines(egoexo_take)
    bad = tmp_path / "gopro_calibs.csv"
    if case == "short_row":
        bad.write_text(lines[0] + "\n" + ",".join(lines[1].split(",")[:5]) + "\n")
        fragment = "line 2: has 5 fields"
    elif case == "binary":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
        fragment = "not UTF-8"
    elif case == "nan_translation":
        header = lines[0].split(",")
        row = lines[1].split(",")
        row[header.index("tx_world_cam")] = "nan"
        bad.write_text(lines[0] + "\n" + ",".join(row) + "\n")
        fragment = "line 2: translation"
    elif case == "text_width":
        header = lines[0].split(",")
        row = lines[1].split(",")
        row[header.index("image_width")] = "wide"
        bad.write_text(lines[0] + "\n" + ",".join(row) + "\n")
        fragment = "line 2: bad or missing intrinsics/size column"
    else:
        bad.write_text("cam_uid,foo\ncam01,1\n")
        fragment = "line 1: missing column(s)"
    assert_clean_error(_render(egoexo_take, tmp_path, exo_camera_pose_path=str(bad)), str(bad), fragment)
    assert not (tmp_path / "out").exists()


def _calib_line(take) -> dict:
    return json.loads(Path(take.online_calibration).read_text().splitlines()[0])


@pytest.mark.parametrize("case, fragment", [
    ("array_line", "line 1: expected a JSON object"),
    ("string_params", "line 1: camera-rgb Projection.Params must be a list of numbers"),
    ("text_timestamp", "line 1: tracking_timestamp_us must be an integer"),
    ("nan_focal", "line 1: camera-rgb Projection.Params holds non-finite values"),
    ("negative_focal", "line 1: camera-rgb focal length"),
    ("bad_json", "line 1: invalid JSON"),
])
def test_malformed_online_calibration(egoexo_take, tmp_path, case, fragment):
    obj = _calib_line(egoexo_take)
    cams = [c for c in obj["CameraCalibrations"] if c["Label"] == "camera-rgb"]
    text = None
    if case == "array_line":
        text = json.dumps([obj])
    elif case == "string_params":
        cams[0]["Projection"]["Params"] = ["f"] * 15
    elif case == "text_timestamp":
        obj["tracking_timestamp_us"] = "soon"
    elif case == "nan_focal":
        cams[0]["Projection"]["Params"][0] = float("nan")
    elif case == "negative_focal":
        cams[0]["Projection"]["Params"][0] = -3.0
    else:
        text = "{not json"
    bad = tmp_path / "online_calibration.jsonl"
    bad.write_text((text if text is not None else json.dumps(obj)) + "\n")
    run = _render(egoexo_take, tmp_path, online_calibration_path=str(bad))
    assert_clean_error(run, str(bad), fragment)
    assert not (tmp_path / "out").exists()


def test_malformed_egox_meta(egoexo_take, tmp_path):
    meta = json.loads(Path(egoexo_take.meta_json).read_text())
    meta["test_datasets"][0]["ego_extrinsics"][1] = [[1, 0, 0], [0, 1]]
    bad = tmp_path / "meta.json"
    bad.write_text(json.dumps(meta))
    run = cli("render-ego", "--input_dir", egoexo_take.vipe_dir, "--out_dir", tmp_path / "out",
              "--meta_json_path", bad, "--resolution", "64")
    assert_clean_error(run, str(bad), "test_datasets[0].ego_extrinsics[1] must be a list of numbers")


# ---------------------------------------------------------------------- command-line options and outputs
def test_output_pointing_at_a_file(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    before = snapshot(tmp_path)
    assert_clean_error(cli("infer", SAMPLE, "-o", target, "--end_frame", "3"),
                       f"{target} is a file, expected a folder")
    assert_clean_error(cli("ingest", SAMPLE, "-o", target, "--end_frame", "3"), "is a file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args, fragment", [
    (["--long_side", "4"], "--long_side 4: Value error, must be 0 (the source size) or >= 64 px"),
    (["--pipeline", "panorama"], "dog-example.mp4: --pipeline panorama needs an equirectangular video"),
    (["--pipeline", "panorama"], "expected 2:1"),
    (["--pipeline", "wide_angle", "--intrinsics", "300,300,160,120,-1.5"], "MEI xi must be > -1"),
    (["--pipeline", "wide_angle", "--camera-model", "radial"], "--pipeline wide_angle runs an MEI camera"),
    (["--pipeline", "dav3"], "depth-anything/Depth-Anything-V2-Small:depth_anything_v2_vits.pth"),
    (["--start_frame", "500"], "Frame range [500, last] exceeds available frames [0, 121] in "
                               "dog-example.mp4: start_frame 500 is past the last frame 121"),
    (["--start_frame", "9", "--end_frame", "3"], "Frame range [9, 3] is inverted"),
    (["--frame_skip", "0"], "frame_skip must be >= 1"),
    (["--intrinsics", "1,2,3"], "expected 4 numbers"),
])
def test_bad_infer_options_write_nothing(tmp_path, args, fragment):
    before = snapshot(tmp_path)
    assert_clean_error(cli("infer", SAMPLE, "-o", tmp_path / "out", *args), fragment)
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_end_frame_minus_one_means_last_everywhere(egoexo_take, tmp_path):
    run = cli("render-ego", "--input_dir", egoexo_take.vipe_dir, "--out_dir", tmp_path / "out",
              "--meta_json_path", egoexo_take.meta_json, "--resolution", "64", "--end_frame", "-1",
              "--output", "png")
    assert run.rc == 0, run.err[-2000:]
    pngs = sorted(p.name for p in (tmp_path / "out").rglob("frame_*.png"))
    assert pngs == [f"frame_{i:06d}.png" for i in range(egoexo_take.num_frames)]
    run = cli("render-ego", "--input_dir", egoexo_take.vipe_dir, "--out_dir", tmp_path / "o2",
              "--meta_json_path", egoexo_take.meta_json, "--start_frame", "7")
    assert_clean_error(run, "start_frame 7 is after the last inference frame 3")


def test_missing_pose_file_names_the_path(egoexo_take, tmp_path):
    cam = tmp_path / "t" / "cam01"
    shutil.copytree(egoexo_take.vipe_dir, cam)
    for p in (cam / "pose").iterdir():
        p.unlink()
    run = cli("render-ego", "--input_dir", cam, "--out_dir", tmp_path / "out", "--meta_json_path",
              egoexo_take.meta_json)
    assert_clean_error(run, "No VIPE artifacts found in", str(cam / "pose"), "not found")


def test_catalog_query_csv_with_list_columns(tmp_path, dog_result):
    db = tmp_path / "c.duckdb"
    assert cli("catalog", "build", "--artifacts", dog_result, "--db", db).rc == 0
    run = cli("catalog", "query", "--db", db, "--format", "csv",
              "SELECT sequence, [1, 2, 3] AS ints, {'a': 1} AS rec FROM video_stats")
    assert run.rc == 0, run.err
    assert run.out.splitlines()[1] == '"dog-example","[1, 2, 3]","{""a"": 1}"'


def test_catalog_query_statement_timeout_and_memory_limit(tmp_path, dog_result):
    db = tmp_path / "c.duckdb"
    assert cli("catalog", "build", "--artifacts", dog_result, "--db", db).rc == 0
    run = cli("catalog", "query", "--db", db, "--timeout", "1",
              "SELECT count(*) FROM range(100000000000) a")
    assert_clean_error(run, "query cancelled after 1 s (statement timeout")
    run = cli("catalog", "query", "--db", db, "--memory-limit", "64MB",
              "SELECT list(range) FROM range(200000000)")
    assert_clean_error(run, "more than the memory limit 64MB")
    run = cli("catalog", "query", "--db", db, "--memory-limit", "lots", "SELECT 1")
    assert_clean_error(run, "invalid memory limit 'lots'")


# ---------------------------------------------------------------------- S3: checked before any work
def _s3_commands(bucket_uri: str, tmp_path: Path) -> list[list[str]]:
    return [
        ["infer", SAMPLE, "-o", f"{bucket_uri}/out", "--end_frame", "3"],
        ["infer", f"{bucket_uri}/in/video.mp4", "-o", tmp_path / "local_out", "--end_frame", "3"],
        ["validate", f"{bucket_uri}/out"],
        ["probe", f"{bucket_uri}/in/video.mp4"],
        ["catalog", "build", "--artifacts", f"{bucket_uri}/out", "--db", tmp_path / "c.duckdb"],
    ]


def _assert_all_fail_fast(cmds, tmp_path, *fragments):
    before, temps = snapshot(tmp_path), system_temps()
    for args in cmds:
        run = cli(*args, timeout=120)
        assert_clean_error(run, *fragments)
        assert "INFO vipe_dagster.ingest" not in run.err  # reported before any ingest work
    assert snapshot(tmp_path) == before and system_temps() == temps


def test_s3_without_credentials(no_aws_env, tmp_path, moto_endpoint):
    no_aws_env.setenv("VIPE_S3_ENDPOINT_URL", moto_endpoint)
    _assert_all_fail_fast(_s3_commands("s3://some-bucket", tmp_path), tmp_path, "s3://some-bucket",
                          "no usable S3 credentials", "AWS_ACCESS_KEY_ID")


def test_s3_with_refused_credentials(no_aws_env, tmp_path, moto_auth_endpoint):
    no_aws_env.setenv("VIPE_S3_ENDPOINT_URL", moto_auth_endpoint)
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    _assert_all_fail_fast(_s3_commands("s3://some-bucket", tmp_path), tmp_path, "S3 refused the credentials")


def test_s3_missing_bucket(s3_env, tmp_path):
    cmds = _s3_commands("s3://no-such-bucket-here", tmp_path)
    before = snapshot(tmp_path)
    for args in cmds:
        run = cli(*args)
        line = assert_clean_error(run, "s3://no-such-bucket-here")
        assert "bucket does not exist" in line or "not found" in line, line
    assert snapshot(tmp_path) == before


def test_s3_unreachable_endpoint(no_aws_env, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    no_aws_env.setenv("VIPE_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", "k")
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "s")
    no_aws_env.setenv("AWS_MAX_ATTEMPTS", "1")
    _assert_all_fail_fast(_s3_commands("s3://some-bucket", tmp_path), tmp_path,
                          "cannot reach the S3 endpoint", f"127.0.0.1:{port}")


def test_s3_write_permission_checked_before_work(s3_bucket, tmp_path):
    fs, bucket = s3_bucket
    run = cli("infer", SAMPLE, "-o", f"s3://{bucket}/out", "--end_frame", "3", "--long_side", "64",
              "--pipeline", "pose_only")
    assert run.rc == 0, run.err[-2000:]
    assert not [p for p in fs.find(bucket) if ".tmp-" in p], "the write probe is removed"


def test_catalog_artifacts_on_a_bad_bucket_fail_before_the_scan(s3_env, tmp_path, dog_result):
    run = cli("catalog", "build", "--artifacts", dog_result, "--artifacts", "s3://missing-bucket-x/a",
              "--db", tmp_path / "c.duckdb")
    assert_clean_error(run, "--artifacts", "s3://missing-bucket-x/a")
    assert not (tmp_path / "c.duckdb").exists()


def test_catalog_db_in_a_file_folder(tmp_path, dog_result):
    (tmp_path / "afile").write_text("x")
    run = cli("catalog", "build", "--artifacts", dog_result, "--db", tmp_path / "afile" / "c.duckdb")
    assert_clean_error(run, "is a file, expected a folder")


def test_validate_options(dog_result):
    assert_clean_error(cli("validate", dog_result, "--require", "pose,depths"),
                       "unknown attribute(s) ['depths']")
    assert_clean_error(cli("validate", "/no/such/root"), "artifact root not found: /no/such/root")


def test_download_to_s3_is_refused(tmp_path):
    run = cli("download", "--source", tmp_path, "--output", "s3://bucket/x")
    assert_clean_error(run, "extracted into a local folder")


def test_unreadable_output_folder(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert_clean_error(cli("infer", SAMPLE, "-o", ro / "out", "--end_frame", "3"), "is not writable")
    finally:
        ro.chmod(0o700)


def test_catalog_rows_of_a_consistent_result(tmp_path, dog_result):
    db = tmp_path / "c.duckdb"
    assert cli("catalog", "build", "--artifacts", dog_result, "--db", db).rc == 0
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT rgb_frames, pose_frames, intrinsics_frames, depth_frames, mask_frames, "
                          "frame_counts_agree, generation_ok, pose_usable_frames FROM video_stats").fetchone()
    assert row == (16, 16, 16, 16, 16, True, True, row[7]) and 0 < row[7] <= 16
