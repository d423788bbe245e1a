"""Visualisation benchmark: how fast a long result opens in the viewer, and its peak memory.

A 2,000-frame ViPE-format result at 64x48 (analytic planes + moving sphere: rgb, float16 EXR depth,
masks, poses, intrinsics) is generated in a temporary folder. The viewer is then started in a fresh
Python process (so peak RSS is the viewer's alone): the open time is the wall clock of constructing
:class:`~vipe_dagster.viz.viewer.ResultViewer` (server up, all 2,000 frustums and the trajectory sent,
frame 0's point cloud built), measured inside the process; the process time to ready includes Python
and library imports. Then the overview cloud is awaited, 30 random frames are shown (seek latency) and
120 consecutive frames are stepped (playback rate). Peak memory is the child's ``ru_maxrss``.
``_vis.mp4`` writing throughput is measured on the same result.

Run directly: ``python -m vipe_dagster.eval.suites.viz [--quick]``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time

SUITE = "viz"
TITLE = "Visualisation"
OPEN_TARGET_S = 10.0
MEMORY_TARGET_MB = 1536.0


def _measure_viewer(root: str) -> dict:
    """Runs in the child process."""
    import resource
    import socket

    t_proc = time.perf_counter()
    import numpy as np

    from vipe_dagster.viz.viewer import ResultViewer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    v = ResultViewer(root, host="127.0.0.1", port=port)
    t_open = time.perf_counter() - t0
    st = v.scene_state()
    t1 = time.perf_counter()
    v.wait_background(120)
    t_overview = time.perf_counter() - t1
    overview_frames = len(v.overview_frames_used)
    n = v.source.n
    rng = np.random.default_rng(0)
    lat = []
    for i in rng.integers(0, n, 30):
        t = time.perf_counter()
        v.set_frame(int(i))
        lat.append(time.perf_counter() - t)
    start = int(rng.integers(0, n - 121))
    t = time.perf_counter()
    for i in range(start, start + 120):
        v.set_frame(i)
    play_fps = 120 / (time.perf_counter() - t)
    decoded = v.source.video.frames_decoded
    st2 = v.scene_state()
    v.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "open_s": t_open, "process_ready_s": t0 - t_proc + t_open, "overview_s": t_overview,
        "seek_ms_mean": 1000 * float(np.mean(lat)), "seek_ms_max": 1000 * float(np.max(lat)),
        "play_fps": play_fps, "peak_mb": peak_mb, "frustums": st["frustums"],
        "points_frame0": st["points_static"] + st["points_dynamic"], "overview_points": st2["overview_points"],
        "frames_decoded": decoded, "n_frames": n, "overview_frames": overview_frames,
    }


def run(quick: bool = False) -> list[dict]:
    from ...io import ArtifactStore
    from ...viz.planes import make_scene, write_scene
    from ...viz.video import write_vis_video

    n_frames = 500 if quick else 2000
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vipe-viz-bench-") as root:
        store = ArtifactStore(root)
        t = time.perf_counter()
        write_scene(store, "long", make_scene(64, 48, n_frames))
        gen_s = time.perf_counter() - t
        rows.append({"suite": SUITE, "name": f"generate {n_frames}-frame 64x48 result", "value": round(gen_s, 2),
                     "unit": "s", "note": "analytic ray casting + H.264 + EXR/PNG zips"})
        t_child = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "vipe_dagster.eval.suites.viz", "--measure-viewer", root],
                              capture_output=True, text=True, timeout=600)
        child_wall = time.perf_counter() - t_child
        if proc.returncode != 0:
            raise RuntimeError(f"viewer measurement failed ({proc.returncode}): {proc.stderr[-2000:]}")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        note = f"{m['frustums']} frustums, {m['points_frame0']} points in frame 0"
        rows += [
            {"suite": SUITE, "name": f"viewer open, {n_frames} frames", "value": round(m["open_s"], 3), "unit": "s",
             "target": f"< {OPEN_TARGET_S:g} s", "note": note},
            {"suite": SUITE, "name": "viewer process start to ready (imports included)",
             "value": round(m["process_ready_s"], 3), "unit": "s", "target": f"< {OPEN_TARGET_S:g} s"},
            {"suite": SUITE, "name": "viewer peak memory (child process RSS)", "value": round(m["peak_mb"], 1),
             "unit": "MB", "target": f"< {MEMORY_TARGET_MB:g} MB",
             "note": f"after overview, 30 seeks and 120 steps; {m['frames_decoded']} frames decoded in total"},
            {"suite": SUITE, "name": "overview cloud ready (background)", "value": round(m["overview_s"], 3),
             "unit": "s", "note": f"{m['overview_points']} points from {m['overview_frames']} keyframes (24 samples requested)"},
            {"suite": SUITE, "name": "random frame seek", "value": round(m["seek_ms_mean"], 1), "unit": "ms",
             "note": f"mean of 30 (max {m['seek_ms_max']:.0f} ms): decode, unproject, send cloud + 5 images"},
            {"suite": SUITE, "name": "consecutive frame stepping", "value": round(m["play_fps"], 1),
             "unit": "frames/s", "note": "120 frames, each fully shown before the next"},
            {"suite": SUITE, "name": "measurement child wall time", "value": round(child_wall, 2), "unit": "s"},
        ]
        t = time.perf_counter()
        write_vis_video(store, "long")
        vis_s = time.perf_counter() - t
        rows.append({"suite": SUITE, "name": f"write _vis.mp4, {n_frames} frames", "value": round(n_frames / vis_s, 1),
                     "unit": "frames/s", "note": f"{vis_s:.2f} s; 4 panels of 192x144 (64x48 upscaled x3)"})
    return rows


def _main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--measure-viewer":
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(_measure_viewer(argv[1])), flush=True)
        return 0
    for row in run(quick="--quick" in argv):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
