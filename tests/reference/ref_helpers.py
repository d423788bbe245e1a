"""Helpers of the reference-command tests: the scripts as real processes, tiny inputs, a local HF cache."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "dog-example.mp4"
REVISION = "0123456789abcdef0123456789abcdef01234567"
METRIC = "depth-anything/Depth-Anything-V2-Metric-Hypersim-Small:depth_anything_v2_metric_hypersim_vits.pth"


@dataclass
class Proc:
    args: list[str]
    rc: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]


def env(**extra: str) -> dict[str, str]:
    e = {
        **os.environ,
        "PYOPENGL_PLATFORM": "egl",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    e.update(extra)
    return e


def run(cmd: list, cwd: Path, timeout: float = 900, **extra_env: str) -> Proc:
    """Run a command line as a user types it (a real process); ``python`` means this interpreter."""
    argv = [sys.executable if str(c) == "python" else str(c) for c in cmd]
    p = subprocess.run(argv, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    return Proc(argv, p.returncode, p.stdout, p.stderr)


def vipe_argv() -> list[str]:
    """The installed ``vipe`` console script when it belongs to this checkout, else its module."""
    exe = Path(sys.executable).parent / "vipe"
    if exe.exists():
        probe = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env())
        if probe.returncode == 0 and "vipe-dagster" in probe.stdout:
            return [str(exe)]
    return [sys.executable, "-m", "vipe_dagster.vipe_cli"]


def make_clip(path: Path, frames: int = 12, size: tuple[int, int] = (320, 180), start: int = 0) -> Path:
    """A short real-footage clip: frames of the bundled sample video, resized."""
    import cv2

    from vipe_dagster.io import open_video
    from vipe_dagster.io.video import VideoWriter

    stream = open_video(str(SAMPLE), start, start + frames - 1)
    with VideoWriter(str(path), fps=stream.fps) as w:
        for _, f in stream:
            w.add(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    return path


CHECKPOINT_SCRIPT = r"""
import sys, torch
from vipe_dagster.compat.presets import learned_config_for
from vipe_dagster.depth.learned import build_model
cfg = learned_config_for(sys.argv[1])
torch.manual_seed(0)
net = build_model(cfg)
with torch.no_grad():
    for p in net.parameters():
        p.mul_(0.5)
sd = {k: v.half().contiguous() for k, v in net.state_dict().items()}
sd["pretrained.mask_token"] = torch.zeros(1, net.pretrained.embed_dim).half()
torch.save(sd, sys.argv[2])
"""


def write_hf_checkpoint(cache: Path, spec: str) -> Path:
    """A random-weights checkpoint of ``spec``'s real architecture in the Hugging Face cache layout
    (``models--org--name/snapshots/<rev>/<file>`` + ``refs/main``), written by a separate process so the
    test process never imports torchvision/timm next to pyrender's EGL."""
    repo_id, filename = spec.split(":")
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / REVISION
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    target = snap / filename
    p = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_SCRIPT, spec, str(target)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return target
