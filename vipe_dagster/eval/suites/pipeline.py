"""Full ``infer`` pipeline (poses + depth + masks) on real video: speed per stage and peak memory.

Rows:
- dog-example.mp4, all 122 frames of 1280x720 processed at 512x288 with the default preset: frames/s of the
  whole pipeline and of each stage, and the process's peak resident memory.
- the 7-Scenes development split (``../shared/data/7scenes_redkitchen_500_999``, 500 real 640x480 Kinect
  colour frames, processed at 512x384; one ``skipped`` row without the data): the same rows. Its accuracy
  (ATE, depth AbsRel against the Kinect depth) belongs to the ``real`` and ``depth`` suites.
- a 1,000-frame 1280x720 H.264 video made from dog-example.mp4 played forwards and backwards in turn
  (0..121, 120..1, 0..121, ...: real camera motion, no repeated consecutive frames), through the same
  default pipeline: peak resident memory (target <= 2 GB) and speed.

Each stage row also gives the process CPU seconds per frame (every thread): on a shared machine the wall
time depends on the other load, the CPU time much less; 8 frames/s on 2 cores needs <= 0.25 CPU-s per frame.

Every run is a fresh ``vipe-dagster infer`` process, so its peak memory (``VmHWM``, recorded in the
manifest) is its own and includes imports, decoding, SLAM, depth, masks and writing the artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..bench import make_row

SUITE = "pipeline"
TITLE = "Full pipeline (infer, default preset)"
DOG = Path(__file__).resolve().parents[3] / "samples" / "dog-example.mp4"


def _row(name: str, value: float, unit: str, target: str | None = None, note: str | None = None,
         frames: int | None = None) -> dict:
    return make_row(SUITE, name, value, unit, target, note, frames)


def make_pingpong_video(src: str | os.PathLike, dst: str, num_frames: int) -> int:
    """Write ``num_frames`` frames of ``src`` played forwards and backwards in turn to ``dst`` (H.264, the
    source's size and rate). Returns the number of frames written."""
    from ...io import open_video
    from ...io.video import VideoWriter

    stream = open_video(str(src))
    frames = [f for _, f in stream]  # dog-example: 122 frames of 720p, about 340 MB
    if len(frames) < 2:
        raise ValueError(f"{src}: need at least 2 frames for a ping-pong video, got {len(frames)}")
    cycle = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    with VideoWriter(dst, stream.fps) as w:
        for k in range(num_frames):
            w.add(frames[cycle[k % len(cycle)]])
    return num_frames


def _infer(video: str, out: str, extra: list[str] | None = None, name: str | None = None) -> dict:
    """``vipe-dagster infer`` in a fresh process (``video`` empty: ``extra`` names the input); returns the
    manifest it wrote (sequence ``name``, default the video's stem)."""
    cmd = [sys.executable, "-m", "vipe_dagster.cli", "infer", *([video] if video else []), "-o", out, *(extra or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    name = name or Path(video).stem
    with open(os.path.join(out, "vipe", f"{name}_manifest.json")) as f:
        return json.load(f)


def _cpu_note(t: dict, stage: str, n: int) -> str | None:
    c = t.get(f"{stage}_cpu_s")
    return None if c is None else f"{c:.1f} CPU-s, {c / n:.3f} CPU-s per frame"


def _stage_rows(label: str, man: dict, n: int) -> list[dict]:
    t = man["timings"]
    summ = man["pipeline"]["summary"]
    fr = man["frames"]
    whole_note = f"{n} frames processed at {fr['width']}x{fr['height']}"
    if _cpu_note(t, "pipeline", n):
        whole_note += f"; {_cpu_note(t, 'pipeline', n)}"
    rows = [
        _row(f"{label}: whole pipeline (ingest + pose + depth + masks)", t["pipeline_s"], "s",
             ">= 8 frames/s at 512 px", note=whole_note, frames=n),
        _row(f"{label}: pose (calibration pass included)", t["pose_s"], "s", ">= 15 frames/s",
             note=_cpu_note(t, "pose", n), frames=n),
        _row(f"{label}: dense depth", n / summ["depth"]["frames_per_s"], "s", note=_cpu_note(t, "depth", n),
             frames=n),
        _row(f"{label}: peak resident memory", man["peak_rss_mb"], "MB", "<= 2048 (1,000 frames of 720p)",
             note="VmHWM of the infer process"),
    ]
    if "masks_s" in t:
        rows.append(_row(f"{label}: dynamic masks (+ depth refill)", t["masks_s"], "s",
                         note=_cpu_note(t, "masks", n), frames=n))
    if "ingest_s" in t:
        rows.append(_row(f"{label}: ingest (decode + resize + encode rgb)", t["ingest_s"], "s", frames=n))
    return rows


def seven_scenes_rows(tmp: str, quick: bool) -> list[dict]:
    """The default pipeline on the 7-Scenes development split (frames 0-149 with ``quick``)."""
    from ..realdata import seven_scenes

    seq = seven_scenes()
    if seq is None:
        return [_row("7-Scenes development split", float("nan"), "skipped",
                     note="../shared/data/7scenes_redkitchen_500_999 not found (set VIPE_SHARED_DATA)")]
    end = 149 if quick else len(seq) - 1
    img = str(seq.image_folder(os.path.join(tmp, "7s_images"), 0, end))
    man = _infer("", os.path.join(tmp, "7s"), ["--image-dir", img, "--name", "7scenes"], name="7scenes")
    return _stage_rows(f"7-Scenes {seq.name} frames 0-{end}", man, end + 1)


def run(quick: bool = False) -> list[dict]:
    tmp = tempfile.mkdtemp(prefix="vipe-bench-pipeline-")
    rows: list[dict] = []
    try:
        man = _infer(str(DOG), os.path.join(tmp, "dog"))
        rows += _stage_rows("dog-example 122 frames", man, 122)
        rows += seven_scenes_rows(tmp, quick)
        n_long = 200 if quick else 1000
        video = os.path.join(tmp, "dog_pingpong.mp4")
        make_pingpong_video(DOG, video, n_long)
        man = _infer(video, os.path.join(tmp, "long"))
        label = f"dog-example ping-pong {n_long} frames 1280x720"
        rows += _stage_rows(label, man, n_long)
        pose = man["pose"]
        rows.append(_row(f"{label}: frames tracked (not lost)", 100.0 * pose["tracking_ok_fraction"], "%",
                         note=f"{len(pose['keyframes'])} keyframes, {pose['segments']} segment(s)"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
