"""The reference's per-take best-view folder: ``best_ego_view_rendering/<take>/{ego_Prior, exo_GT, ego_GT}``.

``ego_Prior/`` holds the chosen camera's ego render frames, ``exo_GT/`` the same take frames of that exo
camera's video and ``ego_GT/`` those of the Aria video (when the take has one), all as
``frame_%06d.png`` named by the render frame index. ``metadata.json`` maps every render frame to its ViPE
frame and its source (take) frame, and records the scores of every rendered camera.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from ..errors import InputError
from ..io import fs
from ..io.video import open_video


def _png(img_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError("could not encode a PNG frame")
    return buf.tobytes()


def _frames_of(video: str, wanted: list[int]) -> dict[int, np.ndarray]:
    lo, hi = min(wanted), max(wanted)
    want = set(wanted)
    return {i: f for i, f in open_video(video, lo, hi) if i in want}


def write_best_view(out_dir: str, take: str, best_camera: str, render_dir: str, scores: dict[str, float],
                    exo_video: str | None, ego_video: str | None) -> dict:
    """Fill ``out_dir`` (``best_ego_view_rendering/<take>``) from the best camera's render folder and the take's
    videos. Returns the metadata written to ``metadata.json``."""
    meta_uri = fs.join(render_dir, "render_meta.json")
    if not fs.exists(meta_uri):
        raise InputError(f"{render_dir}: no render_meta.json (expected an ego_render output folder)")
    rmeta = json.loads(fs.read_text(meta_uri))
    frames, take_frames = list(rmeta.get("frames", [])), list(rmeta.get("take_frames") or rmeta.get("frames", []))
    if not frames or len(frames) != len(take_frames):
        raise InputError(f"{meta_uri}: frames {len(frames)} and take_frames {len(take_frames)} do not pair up")
    for i, f in enumerate(frames):
        src = fs.join(render_dir, f"frame_{f:06d}.png")
        if not fs.exists(src):
            raise InputError(f"{render_dir}: render frame {f} is missing ({src})")
        fs.write_bytes(fs.join(out_dir, "ego_Prior", f"frame_{i:06d}.png"), fs.read_bytes(src))
    written = {"ego_Prior": len(frames)}
    for name, video in (("exo_GT", exo_video), ("ego_GT", ego_video)):
        if not video:
            written[name] = 0
            continue
        got = _frames_of(video, take_frames)
        missing = [t for t in take_frames if t not in got]
        if missing:
            raise InputError(f"{video}: take frames {missing[:5]} are not in the video")
        for i, t in enumerate(take_frames):
            fs.write_bytes(fs.join(out_dir, name, f"frame_{i:06d}.png"), _png(got[t]))
        written[name] = len(take_frames)
    meta = {"take": take, "best_camera": best_camera, "scores": scores, "render_dir": render_dir,
            "exo_video": exo_video, "ego_video": ego_video, "num_frames": written,
            "frames": [{"render_frame": i, "vipe_frame": int(f), "source_frame": int(t)}
                       for i, (f, t) in enumerate(zip(frames, take_frames, strict=True))]}
    fs.write_text(fs.join(out_dir, "metadata.json"), json.dumps(meta, indent=2))
    return meta
