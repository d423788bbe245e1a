"""Ego render benchmark: speed and exactness of ``render-ego`` on the synthetic Ego-Exo4D take.

Input: :func:`vipe_dagster.synth.egoexo_take.generate_take` (exact exo result, projectaria-cast ground truth)
with an 800 x 632 exo camera, so that the mean background at subsample 1 holds about 500,000 points, and 60
ego frames rendered with the Aria fisheye at 448 x 448 px, radius 1.5 px, k = 20 (``quick``: 8 frames at
224 px from a 400 x 316 exo camera).

Rows:

* render only: ``render_view`` per frame (world -> camera, projection, compositing, uint8 image), for the
  native rasteriser (default threads and one thread) and the exact splat; frames/s from the median wall
  time over all frames of 3 passes, the best frame and the CPU time per frame in the notes;
* the rasteriser against the exact splat on the same frames: coverage IoU and PSNR (pooled over the pixels
  either covers), for front-to-back and normalised compositing;
* OpenGL points through pyrender (EGL; llvmpipe on this machine) on the same cloud, pinhole, for reference;
* end to end: ``render_ego`` (validation, background cloud, dynamic points, rendering, PNG and/or mp4 written
  by the writer thread, render_meta.json, atomic folder swap) with the cloud from the cache, and once
  cold (the cloud built from the artifacts);
* coverage of the ground-truth pixels the exo camera sees and PSNR against the ground truth.

Every timing row notes the 1-minute load average right after it was measured.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SUITE = "ego_render"
TITLE = "Ego rendering (EgoX ego prior)"


def _load() -> str:
    try:
        return f"load {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load n/a"


def _time_frames(fn, views, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU seconds of ``fn(view)`` for every view, ``passes`` times (after one warm-up frame)."""
    fn(views[0])
    wall, cpu = [], []
    for _ in range(passes):
        for v in views:
            t, c = time.perf_counter(), time.process_time()
            fn(v)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return np.array(wall), np.array(cpu)


def _speed_row(label: str, wall: np.ndarray, cpu: np.ndarray, target: str | None) -> dict:
    med = float(np.median(wall))
    return {"name": label, "value": 1.0 / med, "unit": "frames/s", "target": target,
            "note": f"median {med * 1000:.1f} ms over {len(wall)} frames, best {wall.min() * 1000:.1f} ms, "
                    f"CPU {np.median(cpu) * 1000:.1f} ms/frame (all threads); {_load()}"}


def _iou_psnr(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float, float, float]:
    """(mean IoU, min IoU, pooled PSNR, min per-frame PSNR) of ``got`` against ``ref`` (uint8 RGB frames)."""
    ious, psnrs, se, cnt = [], [], 0.0, 0
    for a, b in zip(ref, got, strict=True):
        ma, mb = a.sum(-1) > 0, b.sum(-1) > 0
        union = ma | mb
        ious.append((ma & mb).sum() / max(union.sum(), 1))
        e = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[union]
        se, cnt = se + e.sum(), cnt + e.size
        psnrs.append(math.inf if e.mean() == 0 else 10 * math.log10(255.0**2 / e.mean()))
    pooled = math.inf if se == 0 else 10 * math.log10(255.0**2 / (se / max(cnt, 1)))
    return float(np.mean(ious)), float(np.min(ious)), pooled, float(np.min(psnrs))


def run(quick: bool = False) -> list[dict]:
    import torch

    from ...render import ego
    from ...render.pointcloud import build_background
    from ...render.pyrender_backend import PyrenderPointRenderer
    from ...render.raster import PointRasterizer, default_threads, native_error
    from ...synth.egoexo_take import generate_take

    torch.set_num_threads(1)
    n, res, exo, n_cmp = (8, 224, (400, 316), 4) if quick else (60, 448, (800, 632), 12)
    passes = 2 if quick else 3
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        take = generate_take(str(Path(tmp) / "take"), num_frames=n, resolution=res, exo_size=exo,
                             exo_focal=440.0 * exo[0] / 640)
        rows.append({"name": f"synthetic take generation ({n} frames, {res} px GT, exo {exo[0]}x{exo[1]})",
                     "value": time.perf_counter() - t0, "unit": "s", "note": "fixture cost, not a product number"})
        base = dict(input_dir=take.vipe_dir, meta_json_path=take.meta_json, fish_eye_rendering=True,
                    use_mean_bg=True, resolution=res, point_size=1.5, subsample=1)
        cfg = ego.EgoRenderConfig(out_dir=str(Path(tmp) / "unused"), **base)
        reader, frames, T_exo, views = ego.validate(cfg)
        cloud = build_background(reader, True, 1, None).transformed(T_exo)
        npts = len(cloud)
        label = f"fisheye {res}x{res}, {npts} points"
        err = native_error()
        if err is not None:
            rows.append({"name": "native rasteriser", "value": 0.0, "unit": "available",
                         "note": f"unavailable: {err}"})

        # ---- render only
        if err is None:
            for threads in (None, 1):
                with PointRasterizer(threads) as ras:
                    wall, cpu = _time_frames(lambda v, r=ras: ego.render_view(cloud, v, cfg, raster=r), views,
                                             passes)
                nt = default_threads() if threads is None else threads
                rows.append(_speed_row(f"render only, raster ({nt} thread{'s' if nt > 1 else ''}), {label}",
                                       wall, cpu, ">= 60"))
        splat_views = views[:: max(1, len(views) // 4)][:4]
        wall, cpu = _time_frames(lambda v: ego.render_view(cloud, v, cfg), splat_views, 1)
        rows.append(_speed_row(f"render only, exact splat (torch, 1 thread), {label}", wall, cpu, None))

        # ---- exactness against the splat on the same frames
        idx = sorted({int(round(x)) for x in np.linspace(0, len(views) - 1, n_cmp)})
        if err is None:
            for normalize in (False, True):
                c = ego.EgoRenderConfig(out_dir=str(Path(tmp) / "unused"), normalize=normalize, **base)
                ref = [ego.render_view(cloud, views[i], c)[0] for i in idx]
                with PointRasterizer() as ras:
                    got = [ego.render_view(cloud, views[i], c, raster=ras)[0] for i in idx]
                miou, min_iou, pooled, min_psnr = _iou_psnr(ref, got)
                mode = "normalized" if normalize else "front_to_back"
                rows.append({"name": f"raster vs exact splat, coverage IoU ({mode})", "value": miou,
                             "unit": "IoU", "target": ">= 0.98",
                             "note": f"{len(idx)} frames, worst frame {min_iou:.6f}"})
                rows.append({"name": f"raster vs exact splat, PSNR ({mode})", "value": pooled, "unit": "dB",
                             "target": ">= 35",
                             "note": f"pooled over the pixels either covers, {len(idx)} frames; worst frame "
                                     f"{min_psnr:.1f} dB"})

        # ---- OpenGL (pyrender, EGL) for reference: pinhole, nearest point, no blending
        try:
            pin = ego.EgoRenderConfig(out_dir=str(Path(tmp) / "unused"), **{**base, "fish_eye_rendering": False})
            _, _, _, pviews = ego.validate(pin)
            with PyrenderPointRenderer(res, res) as gl:
                wall, cpu = _time_frames(lambda v: ego.render_view(cloud, v, pin, gl=gl), pviews[:4], 1)
                renderer = _gl_renderer()
            rows.append(_speed_row(f"render only, OpenGL points via pyrender (EGL {renderer}), pinhole "
                                   f"{res}x{res}, {npts} points", wall, cpu, None))
        except Exception as exc:  # no EGL here: say so
            rows.append({"name": "render only, OpenGL points via pyrender (EGL)", "value": 0.0,
                         "unit": "frames/s", "note": f"not measured: {type(exc).__name__}: {exc}"})

        # ---- end to end
        cache = str(Path(tmp) / "clouds")
        e2e = dict(base, cloud_cache=cache)
        runs = [("cold: background cloud built from the artifacts, PNG + mp4", "both"),
                ("cloud from the cache, PNG + mp4", "both"),
                ("cloud from the cache, PNG only", "png")]
        for i, (what, output) in enumerate(runs):
            c0 = time.process_time()
            out = ego.render_ego(ego.EgoRenderConfig(out_dir=str(Path(tmp) / f"out{i}"), output=output, **e2e))
            cpu = time.process_time() - c0
            rows.append({"name": f"render-ego end to end, {label}, {what}", "value": len(out.frames) / out.seconds,
                         "unit": "frames/s", "target": ">= 30" if output == "png" else None,
                         "note": f"{len(out.frames)} frames in {out.seconds:.2f} s, CPU {cpu / len(out.frames) * 1000:.1f}"
                                 f" ms/frame (all threads), backend "
                                 f"{ego.resolve_backend(ego.EgoRenderConfig(out_dir='', **base))}; {_load()}"})

        # ---- against the ground truth (normalised weights: no dark disk edges)
        out = ego.render_ego(ego.EgoRenderConfig(out_dir=str(Path(tmp) / "gt"), output="png", normalize=True, **e2e))
        cov, psnr = [], []
        for i in out.frames:
            ours = cv2.imread(str(Path(out.out_path) / f"frame_{i:06d}.png")).astype(float)
            gt = cv2.imread(str(Path(take.gt_dir) / "ego_fisheye" / f"frame_{i:06d}.png")).astype(float)
            vis = cv2.imread(str(Path(take.gt_dir) / "ego_fisheye_visible" / f"frame_{i:06d}.png"), 0) > 0
            covered = ours.sum(axis=2) > 0
            cov.append((covered & vis).sum() / max(vis.sum(), 1))
            m = covered & vis
            psnr.append(10 * np.log10(255.0**2 / ((ours - gt) ** 2)[m].mean()))
        rows += [
            {"name": "coverage of GT pixels seen by the exo camera", "value": float(np.mean(cov)), "unit": "fraction",
             "note": f"normalised compositing, {len(out.frames)} frames"},
            {"name": "PSNR on covered GT pixels", "value": float(np.mean(psnr)), "unit": "dB"},
        ]
    return rows


def _gl_renderer() -> str:
    try:
        from OpenGL import GL

        return GL.glGetString(GL.GL_RENDERER).decode().split(" (")[0]
    except Exception:
        return "unknown renderer"
