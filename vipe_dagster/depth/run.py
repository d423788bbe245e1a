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


def _sparse_depths(store: ArtifactStore, name: str, poses: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Depth, frame and pixel (stored resolution) of the sparse-map observations (a sample of 200k at most)."""
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
    return z, sm.obs_frame[sel], sm.obs_uv[sel]


class DepthStage:
    """The depth stage of one sequence, with its sliding-window state as explicit attributes.

    ``__init__`` reads and validates the inputs (poses, intrinsics, sparse map) and fixes the depth range
    when the sparse map or the config gives one; :meth:`run` streams the video through three cursors that
    only move forward:

    - ``next_raw``: frames before it have had their sweep queued (:meth:`queue_sweep`) once every frame that
      can be a source is loaded;
    - ``next_filter``: frames before it have been filtered (:meth:`filter_frame`) once their sources' sweeps
      are queued (and ``ahead`` more behind them, so the workers stay busy);
    - ``next_out``: frames before it have been fused, filled, upsampled and written (:meth:`write_frame`)
      once every swept frame fused into them is filtered.

    :meth:`evict` drops what no later step needs, so the window holds what the module docstring says.
    """

    def __init__(self, store: ArtifactStore, name: str, config: DepthConfig | None = None, progress: bool = False):
        self.store, self.name, self.progress = store, name, progress
        self.cfg = cfg = config or DepthConfig()
        store.check_set(name, ("rgb", "pose", "intrinsics", "camera", "sparse"))  # inputs of one run only
        self.t0 = time.perf_counter()
        self.poses, self.intr = _read_inputs(store, name)
        self.stream = store.open_rgb(name)
        n = self.n = len(self.stream)
        if n != len(self.poses):
            raise ArtifactError(f"{store.path('rgb', name)} has {n} frames but {store.path('pose', name)} has "
                                f"{len(self.poses)}")
        self.pose_ok = store.read_pose_valid(name)
        if not self.pose_ok.any():
            raise ArtifactError(f"{store.path('pose', name)}: no frame of {name} has a measured pose (all flagged "
                                f"invalid), so there is no depth to compute")
        self.centres = self.poses[:, :3, 3]
        ok_centres = self.centres[self.pose_ok]
        self.spread = float(np.linalg.norm(ok_centres - ok_centres[0], axis=1).max()) if n > 1 else 0.0

        self.depth_range: tuple[float, float] | None = None
        self.range_source = "none"  # "sparse_map", "config", "auto" or "none"
        self.ref_depth: float | None = None  # median scene depth (over the image area)
        W, H = self.W, self.H = self.stream.width, self.stream.height
        obs = _sparse_depths(store, name, self.poses)
        if obs is not None:
            self.depth_range = mvs.depth_range_from_points(obs[0], cfg.range_percentiles, cfg.range_margin)
            if self.depth_range is not None:
                self.range_source = "sparse_map"
                self.ref_depth = mvs.area_median_depth(*obs, (W, H), cfg.scene_depth_cells)
        if self.depth_range is None and cfg.depth_range is not None:
            self.depth_range, self.range_source = tuple(cfg.depth_range), "config"
            self.ref_depth = mvs.geometric_mid(self.depth_range)

        self.w, self.h = mvs.mvs_size(W, H, cfg.mvs_long_side)
        sx, sy = self.w / W, self.h / H
        self.k_lo = np.stack([mvs.scale_intrinsics(k, sx, sy) for k in self.intr])
        self.gap = cfg.max_frame_gap

        # the window
        self.lo: dict[int, np.ndarray] = {}  # frame -> float32 rgb in [0, 1] at the MVS size
        self.hi: dict[int, np.ndarray] = {}  # frame -> uint8 rgb at the stored size
        self.raw: dict[int, Future] = {}  # swept frame -> Future[mvs.RawDepth]
        self.raw_sources: dict[int, list[int]] = {}
        self.filt: dict[int, mvs.FilteredDepth] = {}  # swept frame -> depth kept by the filters (+ the raw sweep)
        self.next_raw = self.next_filter = self.next_out = 0
        self.prev_out: tuple[int, np.ndarray] | None = None  # last written frame and its filled MVS-size depth
        self.swept_frames: list[int] = []  # planned once the depth range (and so the median depth) is known
        self.swept_set: set[int] = set()
        # per output frame
        self.per_frame_valid: list[float] = []
        self.reliable: list[float] = []
        # set by run()
        self.learned = None
        self.pool: ThreadPoolExecutor | None = None
        self.mask_it = None
        self.ahead = 0

    # -- planning ----------------------------------------------------------------------------------------
    @property
    def is_static(self) -> bool:
        """No usable parallax: a single frame, no camera motion, or motion tiny against the scene depth."""
        return (self.n < 2 or self.spread <= 1e-9
                or (self.ref_depth is not None and self.spread < self.cfg.static_baseline_ratio * self.ref_depth))

    def swept(self, i: int) -> bool:
        return i in self.swept_set

    def fusion_set(self, t: int) -> list[int]:
        """Swept frames whose filtered depth is fused into frame ``t``: those within ``fuse_radius`` frames,
        and always the nearest swept frame on each side."""
        sf = self.swept_frames
        k = int(np.searchsorted(sf, t))  # sf[k] >= t, unless the last frames are invalid
        near = {sf[k]} if k < len(sf) else set()
        if k > 0 and (k == len(sf) or sf[k] != t):
            near.add(sf[k - 1])
        r = self.cfg.fuse_radius
        near |= {j for j in sf[max(0, k - r - 1):k + r + 1] if abs(j - t) <= r}
        return sorted(near)

    def ensure_range(self) -> None:
        if self.depth_range is not None:
            return
        self.depth_range, self.ref_depth = mvs.auto_depth_range(self.lo, self.centres, self.k_lo, self.poses, self.cfg)
        if self.depth_range is None:
            raise InputError(f"{self.store.path('rgb', self.name)}: frame 0 has too little texture or parallax to "
                             f"estimate a depth range for {self.name}; set DepthConfig.depth_range or provide a "
                             f"sparse map")
        self.range_source = "auto"
        log.info("depth %s: automatic depth range [%.3g, %.3g] (median %.3g)", self.name, *self.depth_range,
                 self.ref_depth)

    def ensure_plan(self) -> None:
        self.ensure_range()
        if not self.swept_frames:
            assert self.ref_depth is not None
            # frames without a measured pose (pose/<n>.npz valid False) are never swept, sources or fused
            ok_idx = np.flatnonzero(self.pose_ok)
            plan = mvs.plan_sweeps(self.centres[ok_idx], float(np.median(self.k_lo[:, 0])), self.ref_depth, self.cfg)
            self.swept_frames.extend(int(ok_idx[j]) for j in plan)
            self.swept_set.update(self.swept_frames)
            log.info("depth %s: %d of %d frames swept", self.name, len(self.swept_frames), self.n)

    # -- the three steps ---------------------------------------------------------------------------------
    def sweep(self, i: int, srcs: list[int], ref_img: np.ndarray, src_imgs: list[np.ndarray]) -> mvs.RawDepth:
        """Plane sweep of frame ``i`` against ``srcs`` (runs on a worker thread)."""
        if not srcs:
            return mvs.RawDepth(np.full((self.h, self.w), np.nan, np.float32),
                                np.zeros((self.h, self.w), np.float32), [])
        d, c = mvs.sweep_frame(ref_img, src_imgs, self.k_lo[i], [self.k_lo[j] for j in srcs], self.poses[i],
                               [self.poses[j] for j in srcs], self.depth_range, self.cfg)
        return mvs.RawDepth(d, c, srcs)

    def queue_sweep(self, i: int) -> None:
        """Queue the sweep of frame ``i`` on the worker pool (its images are captured now)."""
        assert self.depth_range is not None and self.ref_depth is not None and self.pool is not None
        avail = [j for j in self.lo if abs(j - i) <= self.gap and self.swept(j)]
        srcs = mvs.select_sources(i, self.centres, avail, float(self.k_lo[i][0]), self.ref_depth, self.cfg)
        self.raw_sources[i] = srcs
        self.raw[i] = self.pool.submit(self.sweep, i, srcs, self.lo[i], [self.lo[j] for j in srcs])

    def filter_frame(self, i: int) -> None:
        """Confidence + forward-backward geometric filter of swept frame ``i``."""
        cfg = self.cfg
        r = self.raw[i].result()
        keep = np.isfinite(r.depth) & (r.confidence >= cfg.min_confidence)
        plausible = np.isfinite(r.depth)
        others = [(self.raw[j].result().depth, self.k_lo[j], self.poses[j]) for j in r.sources if j in self.raw]
        if cfg.min_consistent > 0 and others:
            err = mvs.consistency_errors(r.depth, self.k_lo[i], self.poses[i], others, cfg.consistency_rel,
                                         cfg.consistency_px)
            m = min(cfg.min_consistent, len(others))
            kth = np.partition(err, m - 1, axis=0)[m - 1]  # m-th best agreement over the neighbours
            keep &= kth < 1.0
            plausible &= kth < cfg.plausible_factor
        self.filt[i] = mvs.FilteredDepth(np.where(keep, r.depth, np.nan).astype(np.float32),
                                         np.where(plausible, r.depth, np.nan).astype(np.float32))

    def write_frame(self, t: int, writer, conf_out) -> None:
        """Fuse the filtered depths of the swept frames around ``t`` into it, fill the holes, upsample, write.
        A frame without a measured pose gets no depth (NaN) and zero confidence."""
        cfg, (h, w), (W, H) = self.cfg, (self.h, self.w), (self.W, self.H)
        if not self.pose_ok[t]:
            if self.mask_it is not None:
                next(self.mask_it)
            writer.add(np.full((H, W), np.nan, np.float32))
            conf_out.add(encode_confidence(np.zeros((h, w), np.float32), (W, H)))
            return
        views = [(self.filt[j], self.k_lo[j], self.poses[j], j == t) for j in self.fusion_set(t) if j in self.filt]
        fused = mvs.fuse_depths(views, self.k_lo[t], self.poses[t], (h, w), cfg.consistency_rel)
        dyn_hi = next(self.mask_it)[1] > 0 if self.mask_it is not None else None
        if dyn_hi is not None and dyn_hi.any():
            # moving objects (masks of an earlier run): their multi-view depth is not a static point
            dyn = cv2.resize(dyn_hi.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            fused.depth[dyn] = np.nan
            fused.raw[dyn] = np.nan
        keep = np.isfinite(fused.depth)
        self.per_frame_valid.append(float(keep.mean()))
        d = fused.depth
        if self.learned is not None:
            from .learned import align_inverse_depth

            pred = self.learned.predict(self.hi[t])
            pred_lo = cv2.resize(pred, (w, h), interpolation=cv2.INTER_AREA)
            fill = align_inverse_depth(pred_lo, d, keep, self.learned.output)
            if fill is not None:
                d = np.where(keep, d, fill).astype(np.float32)
        elif cfg.fill_from_sweep:
            # holes first take the (unverified) sweep depth, fused the same way, where it exists
            d = np.where(keep, d, fused.raw).astype(np.float32)
        if not np.isfinite(d).any():
            if self.prev_out is not None:
                log.warning("depth %s: frame %d has no reliable MVS depth; reusing frame %d", self.name, t,
                            self.prev_out[0])
                d = self.prev_out[1]
            else:
                d = np.full((h, w), self.ref_depth, np.float32)
                log.warning("depth %s: frame %d has no reliable MVS depth; using the median scene depth",
                            self.name, t)
        filled = mvs.edge_aware_fill(d, self.lo[t], cfg.fill_sigma_color, cfg.fill_iterations)
        self.prev_out = (t, filled)
        up = mvs.joint_bilateral_upsample(filled, self.lo[t], self.hi[t].astype(np.float32) / 255.0,
                                          cfg.fill_sigma_color)
        self.reliable.append(float(reliable_depth_mask(up, dynamic=dyn_hi).mean()))
        writer.add(up)
        conf_out.add(encode_confidence(np.where(keep, np.maximum(fused.agreement, 1e-3), 0.0), (W, H)))

    # -- driving -----------------------------------------------------------------------------------------
    def add_frame(self, t: int, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.H, self.W):
            raise ArtifactError(f"{self.store.path('rgb', self.name)}: frame {t} is {frame.shape[1]}x"
                                f"{frame.shape[0]}, expected {self.W}x{self.H}")
        self.hi[t] = frame
        self.lo[t] = cv2.resize(frame, (self.w, self.h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

    def advance(self, t: int, writer, conf_out) -> None:
        """Move the three cursors as far as frame ``t`` (the last one loaded) allows."""
        n, gap, last = self.n, self.gap, t == self.n - 1
        # 1. sweeps, once every frame that can be a source is loaded
        if self.next_raw < n and (self.next_raw + gap <= t or last):
            self.ensure_plan()
        while self.next_raw < n and (self.next_raw + gap <= t or last):
            if self.swept(self.next_raw):
                self.queue_sweep(self.next_raw)
            self.next_raw += 1
        # 2. filters, once the sources' sweeps are queued (and ``ahead`` more behind them, so the workers stay
        #    busy while this thread filters, fuses and writes)
        while self.next_filter < self.next_raw:
            i = self.next_filter
            if self.swept(i):
                if not last and any(j + self.ahead >= self.next_raw for j in self.raw_sources[i] + [i]):
                    break
                self.filter_frame(i)
            self.next_filter += 1
        # 3. outputs, once every swept frame fused into them is filtered
        while self.next_out < self.next_filter or (last and self.next_out < n):
            o = self.next_out
            if not (last and self.next_filter >= n) and max(self.fusion_set(o)) >= self.next_filter:
                break
            self.write_frame(o, writer, conf_out)
            self.next_out += 1

    def evict(self) -> None:
        """Drop the frames, sweeps and filtered depths that no later step needs."""
        out_from = self.next_out
        need_from = min(self.fusion_set(out_from)) if out_from < self.n and self.swept_frames else out_from
        for j in [j for j in self.lo if j < self.next_raw - self.gap and j < out_from]:
            del self.lo[j]
        for j in [j for j in self.hi if j < out_from]:
            del self.hi[j]
        for j in [j for j in self.raw if j < self.next_filter - self.gap]:
            del self.raw[j], self.raw_sources[j]
        for j in [j for j in self.filt if j < need_from]:
            del self.filt[j]

    def run(self) -> DepthResult:
        """Compute and write ``depth/<name>.zip`` (and the confidence sidecar), update the manifest."""
        cfg, store, name, n = self.cfg, self.store, self.name, self.n
        if self.is_static:
            if cfg.learned is None:
                raise StaticCameraError(
                    f"{store.path('pose', name)}: the camera does not move (camera centres within {self.spread:.3g} "
                    f"of frame 0 over {n} frames), so multi-view stereo has no parallax and cannot give depth for "
                    f"{name}. Dense depth for a static camera needs a learned depth prior or given depth: "
                    + HOW_TO_PROVIDE_MODEL)
            from .learned import run_learned_only

            return run_learned_only(store, name, cfg, self.stream, progress=self.progress, t0=self.t0)
        if cfg.learned is not None:
            from .learned import load_depth_model

            self.learned = load_depth_model(cfg.learned)

        frames = iter(self.stream)
        if self.progress:
            from tqdm import tqdm

            frames = tqdm(frames, total=n, desc=f"depth {name}", unit="frame")
        # sweeps run on a pool of threads, each with few torch intra-op threads: frame-level parallelism keeps
        # the cores busy and, unlike many intra-op threads, degrades gracefully on a loaded machine
        self.mask_it = store.iter_masks(name) if (cfg.use_masks and store.exists("mask", name)
                                                  and store.mask_count(name) == n) else None
        workers = cfg.workers or _available_cores()
        # with one worker the caller's thread waits for each sweep, so the stage stays on about one core
        self.ahead = 2 * workers if workers > 1 else 0
        prev_threads = torch.get_num_threads()
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mvs")
        try:
            with store.depth_writer(name) as writer, conf_writer(store, name) as conf_out:
                for t, (_, frame) in enumerate(frames):
                    self.add_frame(t, frame)
                    self.advance(t, writer, conf_out)
                    self.evict()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(prev_threads)
        return self._finish()

    def _finish(self) -> DepthResult:
        store, name = self.store, self.name
        seconds = time.perf_counter() - self.t0
        man = store.read_manifest(name) if store.exists("manifest", name) else None
        scale = str(man.get("scale", "relative")) if man else "relative"
        pfv = self.per_frame_valid
        res = DepthResult(name=name, uri=store.path("depth", name), num_frames=self.n, width=self.W, height=self.H,
                          method="mvs+learned" if self.learned is not None else "mvs", depth_range=self.depth_range,
                          range_source=self.range_source, mvs_valid_fraction=float(np.mean(pfv)),
                          seconds=seconds, scale=scale, per_frame_valid=pfv,
                          reliable_fraction=float(np.mean(self.reliable)))
        if man is not None:
            section = {"method": res.method, "scale": scale,
                       "measured_fraction": round(res.mvs_valid_fraction, 4),
                       "measured_fraction_min": round(float(np.min(pfv)), 4),
                       "reliable_fraction": round(res.reliable_fraction, 4),
                       "frames_swept": len(self.swept_frames), "confidence_uri": depth_conf_path(store, name),
                       "frames_without_pose": int((~self.pose_ok).sum()),
                       "depth_range": list(self.depth_range) if self.depth_range else None,
                       "range_source": self.range_source}
            store.update_manifest(name, "depth", {"depth": section}, timings={"depth_s": round(seconds, 3)})
        log.info("depth %s: %d frames in %.1f s (%.2f frames/s), MVS valid %.1f%%, reliable %.1f%%, range %s "
                 "from %s", name, self.n, seconds, res.frames_per_s, 100 * res.mvs_valid_fraction,
                 100 * res.reliable_fraction, self.depth_range, self.range_source)
        return res


def run_depth(store: ArtifactStore, name: str, config: DepthConfig | None = None,
              progress: bool = False) -> DepthResult:
    """Compute and write ``depth/<name>.zip`` (see the module docstring and :class:`DepthStage`)."""
    return DepthStage(store, name, config, progress).run()
