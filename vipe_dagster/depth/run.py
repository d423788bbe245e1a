"""Dense depth for every frame of a sequence, streamed with a sliding window of frames.

``run_depth(store, name)`` reads ``rgb/<n>.mp4``, ``pose/<n>.npz`` and ``intrinsics/<n>.npz`` (plus
``vipe/<n>_sparse.npz`` when present, which bounds the sweep) and writes ``depth/<n>.zip``:

1. each frame is swept (:mod:`gpu_kernels.plane_sweep`) against up to ``num_sources`` neighbours within
   ``max_frame_gap`` frames that give enough parallax, at ``mvs_long_side`` resolution;
2. low-confidence pixels are dropped and a forward-backward geometric check keeps pixels that agree with
   at least ``min_consistent`` of the neighbours' own sweeps;
3. holes are filled edge-aware (or, with a learned model configured, by the network's inverse depth
   aligned to the surviving MVS depth) and the map is upsampled to the rgb resolution guided by the image.

Depth is in the units of the poses (metric only if the poses are). Memory is bounded by the window:
frame ``i`` needs the frames in ``[i - G, i + G]`` for its sweep and the sweeps of its sources for the
filter, so about ``4 G + 1`` low-resolution frames, ``2 G + 1`` full-resolution frames and ``2 G + 1``
raw depth maps are held (plus ``2 x workers`` sweeps queued ahead), never the whole video. Sweeps run on a
pool of ``workers`` threads; filtering, filling, upsampling and writing stay in frame order on the caller's
thread.

A camera that does not move has no parallax; such a sequence needs a learned depth prior
(``DepthConfig.learned``) with its weights in the Hugging Face cache, otherwise :class:`StaticCameraError`.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..errors import ArtifactError, InputError
from ..io import ArtifactStore
from . import mvs
from .config import DepthConfig
from .quality import conf_writer, depth_conf_path, encode_confidence
from .reliable import reliable_depth_mask

log = logging.getLogger(__name__)

HOW_TO_PROVIDE_MODEL = (
    "pass a learned depth model, e.g. DepthConfig(learned=LearnedDepthConfig(repo_id="
    "'depth-anything/Depth-Anything-V2-Small', filename='depth_anything_v2_vits.pth')), with the checkpoint "
    "already in the Hugging Face cache (download it once with `huggingface-cli download <repo_id> <filename>` "
    "on a machine with network and copy the cache, or point LearnedDepthConfig.cache_dir / HF_HUB_CACHE at it; "
    "set HF_HUB_OFFLINE=1 on machines without network), or provide depth/<name>.zip yourself"
)


class StaticCameraError(InputError):
    """Multi-view stereo impossible: the camera does not move (no parallax) and no learned prior is set."""


@dataclass
class DepthResult:
    name: str
    uri: str
    num_frames: int
    width: int
    height: int
    method: str  # "mvs", "mvs+learned" or "learned"
    depth_range: tuple[float, float] | None
    range_source: str  # "sparse_map", "config", "auto", "none"
    mvs_valid_fraction: float  # mean fraction of pixels kept by confidence + geometric filter
    seconds: float
    scale: str = "relative"  # the scale of the poses (manifest ``scale``): "metric" or "relative"
    per_frame_valid: list[float] = field(default_factory=list)
    reliable_fraction: float = float("nan")  # mean share of pixels passing ViPE's reliable-depth test

    @property
    def frames_per_s(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("inf")


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _read_inputs(store: ArtifactStore, name: str) -> tuple[np.ndarray, np.ndarray]:
    poses, pinds = store.read_pose(name)
    intr, iinds, types = store.read_intrinsics(name)
    bad_types = sorted({t for t in types if t != "PINHOLE"})
    if bad_types:
        raise ArtifactError(f"{store.path('camera', name)}: dense depth supports PINHOLE cameras only, "
                            f"found {', '.join(bad_types)}")
    if len(poses) != len(intr):
        raise ArtifactError(f"{store.path('pose', name)} has {len(poses)} frames but "
                            f"{store.path('intrinsics', name)} has {len(intr)}")
    finite = np.isfinite(poses).all(axis=(1, 2))
    if not finite.all():
        k = int(np.flatnonzero(~finite)[0])
        raise ArtifactError(f"{store.path('pose', name)}: frame {k} has a non-finite camera-to-world pose")
    fin_k = np.isfinite(intr[:, :4]).all(axis=1) & (intr[:, 0] > 0) & (intr[:, 1] > 0)
    if not fin_k.all():
        k = int(np.flatnonzero(~fin_k)[0])
        raise ArtifactError(f"{store.path('intrinsics', name)}: frame {k} has invalid intrinsics {intr[k, :4]} "
                            f"(expected finite fx, fy > 0)")
    return poses.astype(np.float64), intr[:, :4].astype(np.float64)


def _sparse_depths(store: ArtifactStore, name: str, poses: np.ndarray) -> np.ndarray | None:
    if not store.exists("sparse", name):
        return None
    sm = store.read_sparse_map(name)
    if len(sm.obs_frame) == 0:
        return None
    if sm.obs_frame.max() >= len(poses) or sm.obs_frame.min() < 0:
        raise ArtifactError(f"{store.path('sparse', name)}: observation frame {int(sm.obs_frame.max())} outside "
                            f"[0, {len(poses) - 1}]")
    rng = np.random.default_rng(0)
    sel = np.arange(len(sm.obs_frame))
    if sel.size > 200_000:
        sel = rng.choice(sel, 200_000, replace=False)
    w2c = np.linalg.inv(poses[sm.obs_frame[sel]])
    p = sm.points[sm.obs_point[sel]].astype(np.float64)
    z = np.einsum("nj,nj->n", w2c[:, 2, :3], p) + w2c[:, 2, 3]
    return z


def run_depth(store: ArtifactStore, name: str, config: DepthConfig | None = None,
              progress: bool = False) -> DepthResult:
    """Compute and write ``depth/<name>.zip`` (see the module docstring)."""
    cfg = config or DepthConfig()
    store.check_set(name, ("rgb", "pose", "intrinsics", "camera", "sparse"))  # inputs of one run only
    t0 = time.perf_counter()
    poses, intr = _read_inputs(store, name)
    stream = store.open_rgb(name)
    n = len(stream)
    if n != len(poses):
        raise ArtifactError(f"{store.path('rgb', name)} has {n} frames but {store.path('pose', name)} has "
                            f"{len(poses)}")
    pose_ok = store.read_pose_valid(name)
    if not pose_ok.any():
        raise ArtifactError(f"{store.path('pose', name)}: no frame of {name} has a measured pose (all flagged "
                            f"invalid), so there is no depth to compute")
    centres = poses[:, :3, 3]
    spread = float(np.linalg.norm(centres[pose_ok] - centres[pose_ok][0], axis=1).max()) if n > 1 else 0.0

    sparse = _sparse_depths(store, name, poses)
    depth_range, range_source, ref_depth = None, "none", None
    if sparse is not None:
        depth_range = mvs.depth_range_from_points(sparse, cfg.range_percentiles, cfg.range_margin)
        if depth_range is not None:
            range_source = "sparse_map"
            ref_depth = float(np.median(sparse[np.isfinite(sparse) & (sparse > 0)]))
    if depth_range is None and cfg.depth_range is not None:
        depth_range, range_source = tuple(cfg.depth_range), "config"
        ref_depth = mvs.geometric_mid(depth_range)

    static = n < 2 or spread <= 1e-9 or (ref_depth is not None and spread < cfg.static_baseline_ratio * ref_depth)
    if static:
        if cfg.learned is None:
            raise StaticCameraError(
                f"{store.path('pose', name)}: the camera does not move (camera centres within {spread:.3g} of "
                f"frame 0 over {n} frames), so multi-view stereo has no parallax and cannot give depth for "
                f"{name}. Dense depth for a static camera needs a learned depth prior or given depth: "
                + HOW_TO_PROVIDE_MODEL)
        from .learned import run_learned_only

        return run_learned_only(store, name, cfg, stream, progress=progress, t0=t0)

    learned = None
    if cfg.learned is not None:
        from .learned import load_depth_model

        learned = load_depth_model(cfg.learned)

    W, H = stream.width, stream.height
    w, h = mvs.mvs_size(W, H, cfg.mvs_long_side)
    sx, sy = w / W, h / H
    k_lo = np.stack([mvs.scale_intrinsics(k, sx, sy) for k in intr])
    gap = cfg.max_frame_gap

    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    raw: dict[int, Future] = {}  # swept frame -> Future[mvs.RawDepth]
    raw_sources: dict[int, list[int]] = {}
    filt: dict[int, mvs.FilteredDepth] = {}  # swept frame -> depth kept by the filters (+ the raw sweep)
    per_frame_valid: list[float] = []
    reliable: list[float] = []
    state = {"next_raw": 0, "next_filter": 0, "next_out": 0, "prev_out": None}
    swept_frames: list[int] = []  # planned once the depth range (and so the median depth) is known
    swept_set: set[int] = set()

    def swept(i: int) -> bool:
        return i in swept_set

    def fusion_set(t: int) -> list[int]:
        """Swept frames whose filtered depth is fused into frame ``t``: those within ``fuse_radius`` frames,
        and always the nearest swept frame on each side."""
        k = int(np.searchsorted(swept_frames, t))  # swept_frames[k] >= t, unless the last frames are invalid
        near = {swept_frames[k]} if k < len(swept_frames) else set()
        if k > 0 and (k == len(swept_frames) or swept_frames[k] != t):
            near.add(swept_frames[k - 1])
        r = cfg.fuse_radius
        near |= {j for j in swept_frames[max(0, k - r - 1):k + r + 1] if abs(j - t) <= r}
        return sorted(near)

    def ensure_plan() -> None:
        ensure_range()
        if not swept_frames:
            assert ref_depth is not None
            # frames without a measured pose (pose/<n>.npz valid False) are never swept, sources or fused
            ok_idx = np.flatnonzero(pose_ok)
            plan = mvs.plan_sweeps(centres[ok_idx], float(np.median(k_lo[:, 0])), ref_depth, cfg)
            swept_frames.extend(int(ok_idx[j]) for j in plan)
            swept_set.update(swept_frames)
            log.info("depth %s: %d of %d frames swept", name, len(swept_frames), n)

    def ensure_range() -> None:
        nonlocal depth_range, range_source, ref_depth
        if depth_range is not None:
            return
        depth_range, ref_depth = mvs.auto_depth_range(lo, centres, k_lo, poses, cfg)
        if depth_range is None:
            raise InputError(f"{store.path('rgb', name)}: frame 0 has too little texture or parallax to estimate "
                             f"a depth range for {name}; set DepthConfig.depth_range or provide a sparse map")
        range_source = "auto"
        log.info("depth %s: automatic depth range [%.3g, %.3g] (median %.3g)", name, *depth_range, ref_depth)

    def sweep(i: int, srcs: list[int], ref_img: np.ndarray, src_imgs: list[np.ndarray]) -> mvs.RawDepth:
        if not srcs:
            return mvs.RawDepth(np.full((h, w), np.nan, np.float32), np.zeros((h, w), np.float32), [])
        d, c = mvs.sweep_frame(ref_img, src_imgs, k_lo[i], [k_lo[j] for j in srcs], poses[i],
                               [poses[j] for j in srcs], depth_range, cfg)
        return mvs.RawDepth(d, c, srcs)

    def do_raw(i: int) -> None:
        """Queue the sweep of frame ``i`` on the worker pool (its images are captured now)."""
        assert depth_range is not None and ref_depth is not None
        avail = [j for j in lo if abs(j - i) <= gap and swept(j)]
        srcs = mvs.select_sources(i, centres, avail, float(k_lo[i][0]), ref_depth, cfg)
        raw_sources[i] = srcs
        raw[i] = pool.submit(sweep, i, srcs, lo[i], [lo[j] for j in srcs])

    def do_filter(i: int) -> None:
        """Confidence + forward-backward geometric filter of swept frame ``i``."""
        r = raw[i].result()
        keep = np.isfinite(r.depth) & (r.confidence >= cfg.min_confidence)
        plausible = np.isfinite(r.depth)
        others = [(raw[j].result().depth, k_lo[j], poses[j]) for j in r.sources if j in raw]
        if cfg.min_consistent > 0 and others:
            err = mvs.consistency_errors(r.depth, k_lo[i], poses[i], others, cfg.consistency_rel, cfg.consistency_px)
            m = min(cfg.min_consistent, len(others))
            kth = np.partition(err, m - 1, axis=0)[m - 1]  # m-th best agreement over the neighbours
            keep &= kth < 1.0
            plausible &= kth < cfg.plausible_factor
        filt[i] = mvs.FilteredDepth(np.where(keep, r.depth, np.nan).astype(np.float32),
                                    np.where(plausible, r.depth, np.nan).astype(np.float32))

    def do_output(t: int, writer) -> None:
        """Fuse the filtered depths of the swept frames around ``t`` into it, fill the holes, upsample, write.
        A frame without a measured pose gets no depth (NaN) and zero confidence."""
        if not pose_ok[t]:
            if mask_it is not None:
                next(mask_it)
            writer.add(np.full((H, W), np.nan, np.float32))
            conf_out.add(encode_confidence(np.zeros((h, w), np.float32), (W, H)))
            return
        views = [(filt[j], k_lo[j], poses[j], j == t) for j in fusion_set(t) if j in filt]
        fused = mvs.fuse_depths(views, k_lo[t], poses[t], (h, w), cfg.consistency_rel)
        dyn_hi = next(mask_it)[1] > 0 if mask_it is not None else None
        if dyn_hi is not None and dyn_hi.any():
            # moving objects (masks of an earlier run): their multi-view depth is not a static point
            dyn = cv2.resize(dyn_hi.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            fused.depth[dyn] = np.nan
            fused.raw[dyn] = np.nan
        keep = np.isfinite(fused.depth)
        per_frame_valid.append(float(keep.mean()))
        d = fused.depth
        if learned is not None:
            from .learned import align_inverse_depth

            pred = learned.predict(hi[t])
            pred_lo = cv2.resize(pred, (w, h), interpolation=cv2.INTER_AREA)
            fill = align_inverse_depth(pred_lo, d, keep, learned.output)
            if fill is not None:
                d = np.where(keep, d, fill).astype(np.float32)
        elif cfg.fill_from_sweep:
            # holes first take the (unverified) sweep depth, fused the same way, where it exists
            d = np.where(keep, d, fused.raw).astype(np.float32)
        if not np.isfinite(d).any():
            if state["prev_out"] is not None:
                log.warning("depth %s: frame %d has no reliable MVS depth; reusing frame %d", name, t,
                            state["prev_out"][0])
                d = state["prev_out"][1]
            else:
                d = np.full((h, w), ref_depth, np.float32)
                log.warning("depth %s: frame %d has no reliable MVS depth; using the median scene depth", name, t)
        filled = mvs.edge_aware_fill(d, lo[t], cfg.fill_sigma_color, cfg.fill_iterations)
        state["prev_out"] = (t, filled)
        up = mvs.joint_bilateral_upsample(filled, lo[t], hi[t].astype(np.float32) / 255.0, cfg.fill_sigma_color)
        reliable.append(float(reliable_depth_mask(up, dynamic=dyn_hi).mean()))
        writer.add(up)
        conf_out.add(encode_confidence(np.where(keep, np.maximum(fused.agreement, 1e-3), 0.0), (W, H)))

    frames = iter(stream)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=n, desc=f"depth {name}", unit="frame")
    # sweeps run on a pool of threads, each with few torch intra-op threads: frame-level parallelism keeps
    # the cores busy and, unlike many intra-op threads, degrades gracefully on a loaded machine
    mask_it = store.iter_masks(name) if (cfg.use_masks and store.exists("mask", name)
                                         and store.mask_count(name) == n) else None
    workers = cfg.workers or _available_cores()
    # with one worker the caller's thread waits for each sweep, so the stage stays on about one core
    ahead = 2 * workers if workers > 1 else 0
    prev_threads = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mvs")
    try:
        with store.depth_writer(name) as writer, conf_writer(store, name) as conf_out:
            for t, (_, frame) in enumerate(frames):
                if frame.shape[:2] != (H, W):
                    raise ArtifactError(f"{store.path('rgb', name)}: frame {t} is {frame.shape[1]}x"
                                        f"{frame.shape[0]}, expected {W}x{H}")
                hi[t] = frame
                lo[t] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
                last = t == n - 1
                # 1. sweeps, once every frame that can be a source is loaded
                if state["next_raw"] < n and (state["next_raw"] + gap <= t or last):
                    ensure_plan()
                while state["next_raw"] < n and (state["next_raw"] + gap <= t or last):
                    if swept(state["next_raw"]):
                        do_raw(state["next_raw"])
                    state["next_raw"] += 1
                # 2. filters, once the sources' sweeps are queued (and ``ahead`` more behind them, so the
                #    workers stay busy while this thread filters, fuses and writes)
                while state["next_filter"] < state["next_raw"]:
                    i = state["next_filter"]
                    if swept(i):
                        if not last and any(j + ahead >= state["next_raw"] for j in raw_sources[i] + [i]):
                            break
                        do_filter(i)
                    state["next_filter"] += 1
                # 3. outputs, once every swept frame fused into them is filtered
                while state["next_out"] < state["next_filter"] or (last and state["next_out"] < n):
                    o = state["next_out"]
                    if not (last and state["next_filter"] >= n) and max(fusion_set(o)) >= state["next_filter"]:
                        break
                    do_output(o, writer)
                    state["next_out"] += 1
                out_from = state["next_out"]
                need_from = min(fusion_set(out_from)) if out_from < n and swept_frames else out_from
                for j in [j for j in lo if j < state["next_raw"] - gap and j < out_from]:
                    del lo[j]
                for j in [j for j in hi if j < out_from]:
                    del hi[j]
                for j in [j for j in raw if j < state["next_filter"] - gap]:
                    del raw[j], raw_sources[j]
                for j in [j for j in filt if j < need_from]:
                    del filt[j]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(prev_threads)
    seconds = time.perf_counter() - t0
    man = store.read_manifest(name) if store.exists("manifest", name) else None
    scale = str(man.get("scale", "relative")) if man else "relative"
    res = DepthResult(name=name, uri=store.path("depth", name), num_frames=n, width=W, height=H,
                      method="mvs+learned" if learned is not None else "mvs", depth_range=depth_range,
                      range_source=range_source, mvs_valid_fraction=float(np.mean(per_frame_valid)),
                      seconds=seconds, scale=scale, per_frame_valid=per_frame_valid,
                      reliable_fraction=float(np.mean(reliable)))
    if man is not None:
        depth_section = {"method": res.method, "scale": scale, "measured_fraction": round(res.mvs_valid_fraction, 4),
                        "measured_fraction_min": round(float(np.min(per_frame_valid)), 4),
                        "reliable_fraction": round(res.reliable_fraction, 4),
                        "frames_swept": len(swept_frames), "confidence_uri": depth_conf_path(store, name),
                        "frames_without_pose": int((~pose_ok).sum()),
                        "depth_range": list(depth_range) if depth_range else None, "range_source": range_source}
        store.update_manifest(name, "depth", {"depth": depth_section}, timings={"depth_s": round(seconds, 3)})
    log.info("depth %s: %d frames in %.1f s (%.2f frames/s), MVS valid %.1f%%, reliable %.1f%%, range %s from %s",
             name, n, seconds, res.frames_per_s, 100 * res.mvs_valid_fraction, 100 * res.reliable_fraction,
             depth_range, range_source)
    return res
