"""KLT feature tracks: Shi-Tomasi corners, pyramidal Lucas-Kanade, forward-backward check, replenishment."""

from __future__ import annotations

import cv2
import numpy as np

from ..config import TrackingConfig


class KLTTracker:
    """Tracks corners frame to frame. Each live track has a unique, increasing integer id.

    ``step(gray, mask)`` returns ``(ids, uv)`` of the tracks alive in the new frame (new corners included).
    ``mask`` (optional, HxW bool) marks pixels where tracks are not allowed (dynamic objects).
    """

    def __init__(self, cfg: TrackingConfig, width: int, height: int):
        self.cfg = cfg
        self.w, self.h = width, height
        self.prev: np.ndarray | None = None
        self.ids = np.zeros(0, np.int64)
        self.uv = np.zeros((0, 2), np.float32)
        self.next_id = 0
        self._lk = dict(winSize=(cfg.win_size, cfg.win_size), maxLevel=cfg.pyr_levels,
                        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))

    def reset(self) -> None:
        self.prev = None
        self.ids = np.zeros(0, np.int64)
        self.uv = np.zeros((0, 2), np.float32)

    def _inside(self, uv: np.ndarray) -> np.ndarray:
        b = self.cfg.border_px
        return (uv[:, 0] >= b) & (uv[:, 0] <= self.w - 1 - b) & (uv[:, 1] >= b) & (uv[:, 1] <= self.h - 1 - b)

    def _masked(self, uv: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        if mask is None or len(uv) == 0:
            return np.zeros(len(uv), bool)
        x = np.clip(np.round(uv[:, 0]).astype(int), 0, self.w - 1)
        y = np.clip(np.round(uv[:, 1]).astype(int), 0, self.h - 1)
        return mask[y, x]

    def step(self, gray: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.prev is not None and len(self.uv):
            p0 = self.uv.reshape(-1, 1, 2)
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(self.prev, gray, p0, None, **self._lk)
            p0b, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self.prev, p1, None, **self._lk)
            p1 = p1.reshape(-1, 2)
            fb = np.linalg.norm(p0b.reshape(-1, 2) - self.uv, axis=1)
            ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.cfg.fb_max_px) & self._inside(p1)
            ok &= ~self._masked(p1, mask)
            self.ids, self.uv = self.ids[ok], p1[ok].astype(np.float32)
        self._replenish(gray, mask)
        self.prev = gray
        return self.ids.copy(), self.uv.copy()

    def _replenish(self, gray: np.ndarray, mask: np.ndarray | None) -> None:
        need = self.cfg.max_features - len(self.uv)
        if need < self.cfg.max_features * 0.2:
            return
        allowed = np.full(gray.shape, 255, np.uint8)
        b = self.cfg.border_px
        if b:
            allowed[:b], allowed[-b:], allowed[:, :b], allowed[:, -b:] = 0, 0, 0, 0
        if mask is not None:
            allowed[mask] = 0
        r = int(round(self.cfg.min_distance_px))
        for x, y in self.uv:
            cv2.circle(allowed, (int(x), int(y)), r, 0, -1)
        pts = cv2.goodFeaturesToTrack(gray, maxCorners=need, qualityLevel=self.cfg.quality_level,
                                      minDistance=self.cfg.min_distance_px, mask=allowed, blockSize=7)
        if pts is None:
            return
        pts = pts.reshape(-1, 2).astype(np.float32)
        pts = cv2.cornerSubPix(gray, pts.reshape(-1, 1, 2), (3, 3), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)).reshape(-1, 2)
        new_ids = np.arange(self.next_id, self.next_id + len(pts), dtype=np.int64)
        self.next_id += len(pts)
        self.ids = np.concatenate([self.ids, new_ids])
        self.uv = np.concatenate([self.uv, pts]).astype(np.float32)


class TrackCache:
    """KLT tracks of the first frames of a video, kept so that several passes over the same frames (the
    focal calibration rounds, then the main pass) track them once.

    Tracking does not depend on the camera model, so every pass sees exactly the tracks a fresh tracker
    would give. Each pass calls ``get(i, rgb, mask)`` with consecutive frame indices from 0; frames beyond
    what is cached are tracked by the shared live tracker and cached. At most ``max_frames`` frames are kept
    (about 13 kB each at 800 tracks): past that the cache stops being ``usable`` for later passes, which
    then track with a tracker of their own, while the pass that reached the limit goes on with the live
    tracker. ``release(i)`` drops the entries before frame ``i`` once no later pass needs them.
    """

    def __init__(self, cfg: TrackingConfig, width: int, height: int, max_frames: int = 3000):
        self.tracker = KLTTracker(cfg, width, height)
        self.max_frames = max_frames
        self.usable = True
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._next = 0  # the next frame the live tracker expects
        self._released = 0  # entries before this frame are gone
        # keyframe SIFT descriptors of the calibration rounds, looked up again by the later passes
        self.descriptors: dict = {}

    def get(self, i: int, rgb: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            ids, uv = self._cache[i]
            return ids.copy(), uv.copy()
        if i != self._next:
            raise ValueError(f"track cache: frame {i} requested, but the tracker is at frame {self._next} "
                             f"(frames must be fed in order from 0, and the cache must be usable)")
        ids, uv = self.tracker.step(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), mask)
        self._next += 1
        if len(self._cache) < self.max_frames:
            self._cache[i] = (ids, uv)
            return ids.copy(), uv.copy()
        self.usable = False
        return ids, uv

    def release(self, before: int) -> None:
        for k in range(self._released, before):
            self._cache.pop(k, None)
        self._released = max(self._released, before)

    def __len__(self) -> int:
        return len(self._cache)
