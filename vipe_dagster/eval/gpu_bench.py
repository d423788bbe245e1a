"""Measure a CUDA machine in one command: ``scripts/gpu_bench.sh`` (which calls ``python -m
vipe_dagster.eval.gpu_bench``). Never part of CI; documented in ``docs/gpu_bench.md``.

1. **Environment**: Python, torch, CUDA device (name, capability, memory), CPU, load.
2. **CUDA against CPU** on small inputs, each with a pass/fail criterion:
   bundle adjustment (:func:`gpu_kernels.ba.bundle_adjust`, float64), plane sweep
   (:func:`gpu_kernels.plane_sweep.plane_sweep`), splatting (:func:`gpu_kernels.splat.splat`, three modes)
   and an ego render of the synthetic Ego-Exo4D take (exact splat on CUDA against the exact splat and the
   native rasteriser on the CPU).
3. **Frames/s**: ``infer`` (default preset) on ``samples/dog-example.mp4`` at 512 px, and ``render-ego``
   (Aria fisheye, 448 px, ~500k points) on the synthetic take, on CUDA and, for comparison, on the CPU.

Without CUDA it says ``no CUDA``, skips the comparisons and still runs the CPU side of every step, so the
script is known to work before a GPU is lent. ``--quick`` uses small inputs (the test suite runs it so).
Exit status: 0 when every check passed or was skipped, 1 when a CUDA result disagreed with the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "dog-example.mp4"


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skipped | error
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ environment
def environment() -> dict[str, Any]:
    import torch

    from ..procinfo import cpu_model

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
                           "cuda_available": bool(torch.cuda.is_available()), "cpu_count": os.cpu_count()}
    try:
        env["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    env["cpu_model"] = cpu_model()
    if env["cuda_available"]:
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        env.update({"cuda_device": p.name, "cuda_capability": f"{p.major}.{p.minor}",
                    "cuda_memory_gb": round(p.total_memory / 2**30, 1), "cuda_device_count": torch.cuda.device_count()})
    return env


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ checks
def check_ba(device: str) -> Check:
    """The same synthetic bundle adjustment (float64) on the CPU and on ``device``."""
    import torch

    from gpu_kernels.ba import BAOptions, bundle_adjust
    from gpu_kernels.synthetic import make_ba_problem

    syn = make_ba_problem(n_cams=8, n_points=150, seed=3)
    opts = BAOptions(loss="huber", loss_scale=1.0, max_iters=30, tol=1e-10)
    ref = bundle_adjust(syn.problem, opts)
    moved = dataclasses.replace(syn.problem, **{
        f.name: getattr(syn.problem, f.name).to(device)
        for f in dataclasses.fields(syn.problem) if isinstance(getattr(syn.problem, f.name), torch.Tensor)})
    got = bundle_adjust(moved, opts)
    c_ref, c_got = ref.cost_history[-1], got.cost_history[-1]
    rel = abs(c_got - c_ref) / max(abs(c_ref), 1e-12)
    dp = float((got.poses_w2c.cpu() - ref.poses_w2c).abs().max())
    dx = float((got.points.cpu() - ref.points).abs().max())
    ok = rel <= 1e-6 and dp <= 1e-6 and dx <= 1e-5 and got.poses_w2c.device.type == torch.device(device).type
    return Check("bundle adjustment (8 cameras, 150 points, float64)", "pass" if ok else "fail",
                 f"final cost {c_got:.6g} vs CPU {c_ref:.6g} (rel {rel:.1e}); max pose diff {dp:.1e}, "
                 f"max point diff {dx:.1e} m", {"cost_rel_diff": rel, "pose_max_diff": dp, "point_max_diff": dx})


def _sweep_views(depth: float = 3.0, size: tuple[int, int] = (128, 96)):
    """A textured fronto-parallel plane seen from three x-shifted cameras (plane-induced homographies)."""
    import cv2
    import torch

    w, h = size
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.2)
    tex = (tex - tex.min()) / np.ptp(tex)
    f = 100.0
    k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    srcs, poses = [], []
    for b in (-0.3, 0.3):
        t = np.eye(4)
        t[0, 3] = -b
        hm = k @ (t[:3, :3] + np.outer(t[:3, 3], [0, 0, 1]) / depth) @ np.linalg.inv(k)
        srcs.append(cv2.warpPerspective(tex, hm, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        poses.append(t)
    kv = torch.tensor([f, f, (w - 1) / 2, (h - 1) / 2], dtype=torch.float32)
    return (torch.from_numpy(tex), torch.from_numpy(np.stack(srcs)), kv, kv.repeat(2, 1),
            torch.tensor(np.stack(poses), dtype=torch.float32))


def check_plane_sweep(device: str) -> Check:
    import torch

    from gpu_kernels.plane_sweep import plane_sweep

    ref, srcs, k, ks, t = _sweep_views()
    a = plane_sweep(ref, srcs, k, ks, t, 1.0, 20.0, 32)
    b = plane_sweep(*(x.to(device) for x in (ref, srcs, k, ks, t)), 1.0, 20.0, 32)
    bd = b.depth.cpu()
    ok_px = torch.isfinite(a.depth) & torch.isfinite(bd)
    rel = ((a.depth[ok_px] - bd[ok_px]).abs() / a.depth[ok_px])
    med = float(rel.median()) if rel.numel() else math.inf
    same = float((rel < 1e-3).float().mean()) if rel.numel() else 0.0
    valid_agree = float((torch.isfinite(a.depth) == torch.isfinite(bd)).float().mean())
    ok = med < 1e-4 and same >= 0.99 and valid_agree >= 0.999 and b.depth.device.type == torch.device(device).type
    return Check("plane sweep (128x96, 2 sources, 32 planes)", "pass" if ok else "fail",
                 f"median relative depth difference {med:.1e}; {same:.2%} of pixels within 0.1 %; validity "
                 f"agrees on {valid_agree:.2%}", {"median_rel_depth_diff": med, "within_0.1pct": same})


def _random_cloud(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, generator=g) * 1.2
    phi = torch.rand(n, generator=g) * 2 * math.pi
    dirs = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1)
    pts = dirs * (0.3 + 4.7 * torch.rand(n, 1, generator=g))
    rgb = (torch.rand(n, 3, generator=g) * 256).clamp(max=255).to(torch.uint8)
    return pts, rgb


def check_splat(device: str) -> Check:
    import torch

    from gpu_kernels.cameras import Fisheye624Camera
    from gpu_kernels.splat import splat

    from .suites.kernels import ARIA_RGB

    pts, rgb = _random_cloud(20000)
    col = rgb.float() / 255
    cam = Fisheye624Camera(torch.tensor(ARIA_RGB)).scaled(128 / 2880)
    worst_iou, worst_close = 1.0, 1.0
    for mode in ("front_to_back", "normalized", "nearest"):
        ia, _, ma = splat(pts, col, cam, 128, 128, radius=1.5, k=8, mode=mode)
        ib, _, mb = splat(pts.to(device), col.to(device), cam.to(device), 128, 128, radius=1.5, k=8, mode=mode)
        ib, mb = ib.cpu(), mb.cpu()
        worst_iou = min(worst_iou, float((ma & mb).sum() / max(int((ma | mb).sum()), 1)))
        worst_close = min(worst_close, float(((ia - ib).abs().amax(-1) < 1e-4).float().mean()))
    ok = worst_iou >= 0.999 and worst_close >= 0.995
    return Check("splat (20k points, 128 px fisheye, 3 modes)", "pass" if ok else "fail",
                 f"worst coverage IoU {worst_iou:.6f}; worst share of pixels within 1e-4 {worst_close:.4f}",
                 {"worst_iou": worst_iou, "worst_close": worst_close})


def _psnr_iou(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    ious, se, n = [], 0.0, 0
    for a, b in zip(ref, got, strict=True):
        ma, mb = a.sum(-1) > 0, b.sum(-1) > 0
        ious.append((ma & mb).sum() / max((ma | mb).sum(), 1))
        e = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[ma | mb]
        se, n = se + e.sum(), n + e.size
    return float(min(ious)), (math.inf if se == 0 else 10 * math.log10(255.0**2 / (se / max(n, 1))))


def _take(root: Path, n: int, res: int, exo: tuple[int, int]):
    from ..synth.egoexo_take import generate_take

    return generate_take(str(root), num_frames=n, resolution=res, exo_size=exo, exo_focal=440.0 * exo[0] / 640)


def check_render(device: str, tmp: Path) -> Check:
    """Ego frames of the synthetic take: the exact splat on ``device`` against the exact splat and the native
    rasteriser on the CPU (coverage IoU and PSNR, targets 0.98 / 35 dB)."""
    from ..render import ego
    from ..render.pointcloud import build_background
    from ..render.raster import PointRasterizer, native_error

    take = _take(tmp / "check_take", 3, 160, (320, 240))
    base = dict(input_dir=take.vipe_dir, meta_json_path=take.meta_json, fish_eye_rendering=True, use_mean_bg=True,
                resolution=160, subsample=1, out_dir=str(tmp / "unused"))
    cpu_cfg = ego.EgoRenderConfig(**base)
    dev_cfg = ego.EgoRenderConfig(device=device, backend="splat", **base)
    reader, _, T_exo, views = ego.validate(cpu_cfg)
    cloud = build_background(reader, True, 1, None).transformed(T_exo)
    ref = [ego.render_view(cloud, v, cpu_cfg)[0] for v in views]
    got = [ego.render_view(cloud, v, dev_cfg)[0] for v in views]
    iou, psnr = _psnr_iou(ref, got)
    metrics = {"iou_vs_cpu_splat": iou, "psnr_vs_cpu_splat": psnr}
    detail = f"vs CPU splat: IoU {iou:.6f}, PSNR {psnr:.1f} dB"
    ok = iou >= 0.98 and psnr >= 35
    if native_error() is None:
        with PointRasterizer() as ras:
            fast = [ego.render_view(cloud, v, cpu_cfg, raster=ras)[0] for v in views]
        iou2, psnr2 = _psnr_iou(got, fast)
        metrics.update({"iou_vs_cpu_raster": iou2, "psnr_vs_cpu_raster": psnr2})
        detail += f"; vs CPU raster: IoU {iou2:.6f}, PSNR {psnr2:.1f} dB"
        ok = ok and iou2 >= 0.98 and psnr2 >= 35
    return Check("ego render (synthetic take, 3 frames, 160 px fisheye)", "pass" if ok else "fail", detail, metrics)


# ------------------------------------------------------------------------------------------ speed
def measure_infer(device: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """``infer`` with the default preset on dog-example (pose BA and depth sweep on ``device``)."""
    from ..config import preset
    from ..io import ArtifactStore
    from ..pipeline import infer

    # quick: every 2nd frame of the first 48 (the first 24 frames alone barely move the camera)
    long_side, end, skip = (256, 47, 2) if quick else (512, None, 1)
    cfg = preset("default")
    cfg.pose.long_side = long_side
    cfg.pose.ba.device = device
    cfg.depth_config.device = device
    out = tmp / f"infer_{device.replace(':', '_')}"
    t0 = time.perf_counter()
    res = infer(str(SAMPLE), str(out), cfg, end_frame=end, frame_skip=skip)
    _sync(device)
    wall = time.perf_counter() - t0
    n = res.pose.num_frames
    timings = ArtifactStore(str(out)).read_manifest(res.name).get("timings", {})
    return {"what": f"infer dog-example, {n} frames at {long_side} px (default preset)", "device": device,
            "frames": n, "seconds": round(wall, 3), "frames_per_s": round(n / wall, 3),
            "stages_s": {k: v for k, v in timings.items() if k.endswith("_s")}}


def measure_render(device: str, backend: str, take, res: int, tmp: Path, passes: int) -> list[dict[str, Any]]:
    """render-ego on the synthetic take: render only (median per frame) and end to end (PNG + mp4)."""
    from ..render import ego
    from ..render.pointcloud import build_background
    from ..render.raster import PointRasterizer

    base = dict(input_dir=take.vipe_dir, meta_json_path=take.meta_json, fish_eye_rendering=True, use_mean_bg=True,
                resolution=res, subsample=1, device=device, backend=backend)
    cfg = ego.EgoRenderConfig(out_dir=str(tmp / "unused"), **base)
    reader, _, T_exo, views = ego.validate(cfg)
    cloud = build_background(reader, True, 1, None).transformed(T_exo)
    used = ego.resolve_backend(cfg)
    ras = PointRasterizer() if used == "raster" else None
    try:
        ego.render_view(cloud, views[0], cfg, raster=ras)  # warm-up (CUDA context, kernels)
        times = []
        for _ in range(passes):
            for v in views:
                t = time.perf_counter()
                ego.render_view(cloud, v, cfg, raster=ras)
                _sync(device)
                times.append(time.perf_counter() - t)
    finally:
        if ras is not None:
            ras.close()
    med = float(np.median(times))
    label = f"render-ego fisheye {res}x{res}, {len(cloud)} points, backend {used} on {device}"
    rows = [{"what": f"{label}: render only", "device": device, "frames": len(times),
             "frames_per_s": round(1 / med, 2), "median_ms": round(med * 1000, 2)}]
    out = ego.render_ego(ego.EgoRenderConfig(out_dir=str(tmp / f"e2e_{backend}_{device.replace(':', '_')}"),
                                             output="both", cloud_cache=str(tmp / "clouds"), **base))
    rows.append({"what": f"{label}: end to end (PNG + mp4, cloud cached)" if out.seconds else label,
                 "device": device, "frames": len(out.frames), "seconds": round(out.seconds, 3),
                 "frames_per_s": round(len(out.frames) / out.seconds, 2)})
    return rows


# ------------------------------------------------------------------------------------------ driver
def _run_check(fn, *args) -> Check:
    try:
        return fn(*args)
    except Exception as exc:
        name = fn.__name__.replace("check_", "").replace("_", " ")
        return Check(name, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")


def run(device: str | None = None, quick: bool = False, skip_infer: bool = False,
        skip_render: bool = False, out=sys.stdout) -> dict[str, Any]:
    import torch

    def say(msg: str = "") -> None:
        print(msg, file=out, flush=True)

    env = environment()
    cuda = env["cuda_available"]
    dev = device or ("cuda" if cuda else None)
    say("== vipe-dagster GPU bench" + (" (quick)" if quick else ""))
    for k, v in env.items():
        say(f"   {k}: {v}")
    if not cuda:
        say("no CUDA: torch reports no CUDA device; the CUDA-vs-CPU checks are skipped and only the CPU side "
            "runs (the script works; run it again on a CUDA machine to measure it)")
    report: dict[str, Any] = {"environment": env, "quick": quick, "cuda": cuda, "checks": [], "speed": []}
    checks_fns = [check_ba, check_plane_sweep, check_splat]
    with tempfile.TemporaryDirectory(prefix="vipe-gpu-bench-") as tmpd:
        tmp = Path(tmpd)
        say("\n== CUDA against CPU (small inputs)")
        for fn in [*checks_fns, check_render]:
            if dev is None:
                # exercise the CPU side: the check against itself on the CPU must pass
                c = _run_check(fn, "cpu", tmp) if fn is check_render else _run_check(fn, "cpu")
                c = Check(c.name, "skipped" if c.status == "pass" else c.status,
                          "no CUDA (CPU side ran: " + c.detail + ")", c.metrics)
            else:
                c = _run_check(fn, dev, tmp) if fn is check_render else _run_check(fn, dev)
            report["checks"].append(dataclasses.asdict(c))
            say(f"   [{c.status:7s}] {c.name}: {c.detail}")
        devices = ["cpu"] + ([dev] if dev else [])
        if not skip_infer:
            say("\n== infer (frames/s)")
            for d in devices:
                try:
                    r = measure_infer(d, tmp, quick)
                    report["speed"].append(r)
                    say(f"   {r['what']} on {d}: {r['frames_per_s']} frames/s ({r['seconds']} s; stages "
                        f"{r['stages_s']})")
                except Exception as exc:
                    report["speed"].append({"what": "infer", "device": d, "error": f"{type(exc).__name__}: {exc}"})
                    say(f"   infer on {d}: not measured: {type(exc).__name__}: {exc}")
        if not skip_render:
            say("\n== render-ego (frames/s)")
            n, res, exo, passes = (4, 160, (320, 240), 1) if quick else (60, 448, (800, 632), 3)
            try:
                take = _take(tmp / "speed_take", n, res, exo)
                combos = [("cpu", "raster"), ("cpu", "splat")] + ([(dev, "splat")] if dev else [])
                for d, backend in combos:
                    try:
                        p = 1 if backend == "splat" and d == "cpu" else passes
                        for r in measure_render(d, backend, take, res, tmp, p):
                            report["speed"].append(r)
                            say(f"   {r['what']}: {r['frames_per_s']} frames/s")
                    except Exception as exc:
                        report["speed"].append({"what": f"render-ego {backend}", "device": d,
                                                "error": f"{type(exc).__name__}: {exc}"})
                        say(f"   render-ego {backend} on {d}: not measured: {type(exc).__name__}: {exc}")
            except Exception as exc:
                say(f"   render-ego: not measured: {type(exc).__name__}: {exc}")
                report["speed"].append({"what": "render-ego", "error": f"{type(exc).__name__}: {exc}"})
    failed = [c["name"] for c in report["checks"] if c["status"] in ("fail", "error")]
    report["ok"] = not failed
    say("\n== " + ("all checks passed" if cuda and not failed else
                   f"FAILED: {', '.join(failed)}" if failed else "no CUDA: nothing to compare; CPU side ran"))
    del torch
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small inputs (seconds, not minutes)")
    p.add_argument("--device", default=None, help="CUDA device to measure (default: cuda when available)")
    p.add_argument("--json", default=None, help="also write the report as JSON to this file")
    p.add_argument("--skip-infer", action="store_true", help="do not measure infer")
    p.add_argument("--skip-render", action="store_true", help="do not measure render-ego")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run(a.device, a.quick, a.skip_infer, a.skip_render)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
