"""gpu_kernels benchmark: bundle adjustment against scipy ``least_squares`` and splatting throughput.

* BA: synthetic problems from :func:`gpu_kernels.synthetic.make_ba_problem` (cameras on an arc, 0.5 px
  noise, 10 % outliers within +-50 px, Huber loss with scale 1 px, camera 0 fixed). Our LM
  (:func:`gpu_kernels.ba.bundle_adjust`, float64) and scipy ``least_squares`` with its best solver for this
  problem (``method='trf'``, ``tr_solver='lsmr'`` on the sparse analytic Jacobian, the same cost; see
  :func:`gpu_kernels.synthetic.scipy_bundle_adjust`) start from the same perturbed state, each after an
  untimed warm-up on a tiny problem (imports, first-call allocations). scipy's dense ``tr_solver='exact'``
  is not a fair baseline: it factorises the dense Jacobian and is orders of magnitude slower on these sizes.
  Reported: wall time of each (same run), their ratio and the ratio of the final costs.
* Splat: random coloured points 0.3-5 m in front of an Aria RGB fisheye (projectaria ``FISHEYE624``
  calibration scaled from 2880 to 448 px), rendered into 448x448 with radius 1.5 px and k = 20 (EgoX
  settings), per compositing mode; frames/s = 1 / (best wall time of a few renders), projection included.
  The same for the native rasteriser (:mod:`vipe_dagster.render.raster`, one thread and the default
  threads; frames/s from the median of 20 renders), with its coverage IoU and PSNR against the splat.
"""

from __future__ import annotations

import math
import time

import torch

SUITE = "kernels"
TITLE = "gpu_kernels"

ARIA_RGB = [1220.592, 1464.618, 1442.370, 0.41438, -0.48598, 0.13849, 1.14600, -1.66763, 0.63010,
            7.903e-4, -3.461e-4, -1.078e-3, 7.70e-5, 5.214e-4, -1.066e-4]


def _best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


SCIPY_BA = "scipy trf+lsmr (sparse)"
"""Row label of the scipy baseline: ``least_squares(method='trf', tr_solver='lsmr')``, sparse Jacobian."""


def _ba_rows(n_cams: int, n_points: int, visibility: float, with_scipy: bool) -> list[dict]:
    from gpu_kernels.ba import BAOptions, bundle_adjust
    from gpu_kernels.synthetic import make_ba_problem, scipy_bundle_adjust

    warm = make_ba_problem(n_cams=3, n_points=20, visibility=1.0, seed=1).problem
    bundle_adjust(warm, BAOptions(loss="huber", loss_scale=1.0, max_iters=3))
    if with_scipy:
        scipy_bundle_adjust(warm, loss="huber", loss_scale=1.0, tr_solver="lsmr", max_nfev=3)
    syn = make_ba_problem(n_cams=n_cams, n_points=n_points, visibility=visibility, seed=11)
    n_obs = int(syn.problem.obs_cam.numel())
    label = f"{n_cams} cameras, {n_points} points, {n_obs} observations"
    opts = BAOptions(loss="huber", loss_scale=1.0, max_iters=50, tol=1e-8)
    t0 = time.perf_counter()
    res = bundle_adjust(syn.problem, opts)
    t_ours = time.perf_counter() - t0
    rows = [{"name": f"BA ours ({label})", "value": round(t_ours, 3), "unit": "s",
             "note": f"{res.iterations} LM iterations, converged={res.converged}, final cost "
                     f"{res.cost_history[-1]:.6g} (initial {res.cost_history[0]:.6g}), "
                     f"{res.info['n_pairs']} Schur pairs"}]
    if with_scipy:
        t0 = time.perf_counter()
        ref_cost, _ = scipy_bundle_adjust(syn.problem, loss="huber", loss_scale=1.0, tr_solver="lsmr",
                                          max_nfev=200, ftol=1e-8)
        t_ref = time.perf_counter() - t0
        rows.append({"name": f"BA {SCIPY_BA} ({label})", "value": round(t_ref, 3), "unit": "s",
                     "note": f"least_squares method=trf, tr_solver=lsmr, sparse analytic Jacobian (CSR), "
                             f"final cost {ref_cost:.6g}"})
        rows.append({"name": f"BA speed-up vs {SCIPY_BA} ({label})", "value": round(t_ref / t_ours, 2),
                     "unit": "x", "note": "both timed in this run"})
        rows.append({"name": f"BA final cost ours / {SCIPY_BA} ({label})",
                     "value": round(res.cost_history[-1] / ref_cost, 6), "unit": "ratio", "target": "<= 1.01"})
    return rows


def _splat_rows(n_points: int, repeats: int) -> list[dict]:

    from gpu_kernels.cameras import Fisheye624Camera
    from gpu_kernels.splat import splat

    g = torch.Generator().manual_seed(0)
    cam = Fisheye624Camera(torch.tensor(ARIA_RGB)).scaled(448 / 2880)
    theta = torch.rand(n_points, generator=g) * 1.2
    phi = torch.rand(n_points, generator=g) * 2 * math.pi
    dirs = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1)
    pts = dirs * (0.3 + 4.7 * torch.rand(n_points, 1, generator=g))
    rgb8 = (torch.rand(n_points, 3, generator=g) * 256).clamp(max=255).to(torch.uint8)
    col = rgb8.float() / 255.0
    rows = []
    t_proj = _best_time(lambda: cam.project(pts), repeats)
    rows.append({"name": f"Fisheye624 projection, {n_points} points", "value": round(n_points / t_proj / 1e6, 2),
                 "unit": "Mpoints/s"})
    refs = {}
    for mode in ("front_to_back", "normalized", "nearest"):
        refs[mode] = splat(pts, col, cam, 448, 448, radius=1.5, k=20, mode=mode)  # warm-up and reference
        t = _best_time(lambda m=mode: splat(pts, col, cam, 448, 448, radius=1.5, k=20, mode=m), repeats)
        rows.append({"name": f"splat {mode}, {n_points} points -> 448x448 fisheye", "value": round(1.0 / t, 2),
                     "unit": "frames/s", "target": ">= 60",
                     "note": f"{t * 1000:.0f} ms/frame, radius 1.5 px, k 20, projection included"})
    rows += _raster_rows(pts.numpy(), rgb8.numpy(), cam, refs, n_points)
    return rows


def _raster_rows(xyz, rgb, cam, refs: dict, n_points: int) -> list[dict]:
    import os

    import numpy as np

    from vipe_dagster.render.raster import PointRasterizer, default_threads, native_error

    err = native_error()
    if err is not None:
        return [{"name": "native rasteriser", "value": 0.0, "unit": "available", "note": f"unavailable: {err}"}]
    rows = []
    for mode in ("front_to_back", "normalized", "nearest"):
        ref_img, _, ref_mask = refs[mode]
        ref_mask = ref_mask.numpy()
        ref8 = (ref_img.clamp(0, 1) * 255).to(torch.uint8).numpy()
        for threads in (1, default_threads()):
            with PointRasterizer(threads) as ras:
                out = ras.render(xyz, rgb, cam, 448, 448, radius=1.5, k=20, mode=mode)
                wall, cpu = [], []
                for _ in range(20):
                    t, c = time.perf_counter(), time.process_time()
                    ras.render(xyz, rgb, cam, 448, 448, radius=1.5, k=20, mode=mode)
                    wall.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
            med = float(np.median(wall))
            load = os.getloadavg()[0]
            rows.append({"name": f"raster {mode} ({threads} thread{'s' if threads > 1 else ''}), {n_points} points "
                                 f"-> 448x448 fisheye", "value": round(1.0 / med, 2), "unit": "frames/s",
                         "target": ">= 60",
                         "note": f"median {med * 1000:.1f} ms of 20, best {min(wall) * 1000:.1f} ms, CPU "
                                 f"{np.median(cpu) * 1000:.1f} ms/frame; load {load:.2f}"})
        union = ref_mask | out.mask
        iou = (ref_mask & out.mask).sum() / max(union.sum(), 1)
        mse = ((ref8.astype(np.float64) - out.image.astype(np.float64)) ** 2)[union].mean()
        psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
        rows.append({"name": f"raster {mode} vs splat: coverage IoU / PSNR", "value": round(float(iou), 6),
                     "unit": "IoU", "target": ">= 0.98 / >= 35 dB",
                     "note": f"PSNR {psnr:.1f} dB on the pixels either covers"})
    return rows


def run(quick: bool = False) -> list[dict]:
    rows: list[dict] = []
    if quick:
        rows += _ba_rows(8, 150, 1.0, True)
        rows += _splat_rows(100_000, 2)
    else:
        rows += _ba_rows(10, 200, 1.0, True)
        rows += _ba_rows(60, 5000, 0.15, True)
        rows += _ba_rows(200, 20000, 0.04, False)
        rows += _splat_rows(500_000, 3)
    for r in rows:
        r["suite"] = SUITE
    return rows
