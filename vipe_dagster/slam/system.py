"""Streaming keyframe visual SLAM with focal self-calibration (weight-free, CPU).

Frames arrive one at a time (``process``). Only keyframe observations, the sparse map and one compact
pose record per frame are kept, so memory grows with keyframes, not frames.

Per segment (a stretch of video tracked against one map):

1. *init*: the first frame is the reference; later frames are tested with a 5-point essential matrix
   (RANSAC) against it. The pair is accepted when the rotation-compensated parallax is large enough and a
   homography does not explain the tracks equally well (homography-vs-essential model selection).
   Frames that never reach that are a *rotation-only* chunk: their rotations come from homographies.
2. *tracking*: each frame is localised by PnP-RANSAC + LM against the map; keyframes are inserted on
   parallax (median track displacement), track loss or a maximum gap; new points are triangulated with
   parallax/cheirality/reprojection checks; a windowed bundle adjustment refines the last keyframes.
   Non-keyframes between two keyframes are re-localised against the refined map and stored relative to
   both keyframes.
3. *finish*: global BA (with focal refinement unless intrinsics are given), blending of non-keyframe
   poses, scale normalised to median scene depth 1.

Losing track ends a segment (the frame is flagged ``lost``) and a new segment starts from the next frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..config import PoseConfig
from . import geometry as geo
from .bundle import bundle_adjust
from .tracker import KLTTracker

log = logging.getLogger(__name__)

STATUS_NAMES = {0: "keyframe", 1: "tracked", 2: "rotation_only", 3: "lost", 4: "fixed"}
KEYFRAME, TRACKED, ROTATION, LOST, FIXED = 0, 1, 2, 3, 4


@dataclass
class Keyframe:
    frame: int
    T: np.ndarray  # (4,4) world-to-camera (segment world)
    ids: np.ndarray  # (N,) track ids, sorted
    uv: np.ndarray  # (N,2)
    bad: np.ndarray  # (N,) observation rejected as an outlier

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Index of each id in ``self.ids`` or -1."""
        pos = np.searchsorted(self.ids, ids)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        ok = (len(self.ids) > 0) & (self.ids[pos] == ids) if len(self.ids) else np.zeros(len(ids), bool)
        return np.where(ok, pos, -1)

    def index_of(self, track_id: int) -> int:
        """Index of one id in ``self.ids`` or -1 (the scalar :meth:`lookup`: a merge calls it for every
        keyframe, where the array handling would cost several times the search)."""
        r = int(self.ids.searchsorted(track_id))
        return r if r < len(self.ids) and self.ids[r] == track_id else -1


@dataclass
class FrameRecord:
    frame: int
    status: int
    segment: int
    kf_a: int = -1  # keyframe list index (in the segment) before / at the frame
    kf_b: int = -1  # keyframe after
    rel_a: np.ndarray | None = None  # T_frame @ inv(T_kf_a) (w2c, segment world)
    rel_b: np.ndarray | None = None
    R: np.ndarray | None = None  # rotation-only: rotation from the chunk start to this frame


@dataclass
class Segment:
    index: int
    kind: str = "init"  # init | map | rotation
    keyframes: list[Keyframe] = field(default_factory=list)
    points: dict[int, np.ndarray] = field(default_factory=dict)
    colors: dict[int, np.ndarray] = field(default_factory=dict)
    # init state
    ref: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # frame, ids, uv, H_start_to_ref
    init_pending: list = field(default_factory=list)  # (frame, ids, uv, H_start_to_frame)
    planar_hyp: dict | None = None  # planar scene: the two candidate reconstructions being tested
    # tracking state
    pending: list = field(default_factory=list)  # (frame, T, ids, uv) since the last keyframe
    last_T: np.ndarray | None = None
    velocity: np.ndarray = field(default_factory=lambda: np.eye(4))
    frames: list[FrameRecord] = field(default_factory=list)
    rot_H: list = field(default_factory=list)  # rotation-only chunk: homography start -> frame
    dynamic: set = field(default_factory=set)  # track ids rejected as moving (epipolar / BA outliers)
    alias: dict = field(default_factory=dict)  # KLT track id -> map point id it was re-associated with
    pdesc: dict = field(default_factory=dict)  # map point id -> SIFT descriptor (uint8, latest keyframe view)
    _alias_arrays: tuple | None = None

    def apply_alias(self, ids: np.ndarray) -> np.ndarray:
        """Track ids with re-associated tracks renamed to their map point ids."""
        if not self.alias:
            return ids
        if self._alias_arrays is None or len(self._alias_arrays[0]) != len(self.alias):
            src = np.fromiter(self.alias.keys(), np.int64, len(self.alias))

            def resolve(i: int) -> int:  # a point renamed again: follow the chain to the surviving id
                for _ in range(64):
                    if i not in self.alias:
                        break
                    i = self.alias[i]
                return i

            dst = np.fromiter((resolve(i) for i in src.tolist()), np.int64, len(src))
            o = np.argsort(src)
            self._alias_arrays = (src[o], dst[o])
        src, dst = self._alias_arrays
        pos = np.clip(np.searchsorted(src, ids), 0, len(src) - 1)
        hit = src[pos] == ids
        return np.where(hit, dst[pos], ids)


@dataclass
class SlamOutput:
    c2w: np.ndarray  # (N,4,4)
    status: np.ndarray  # (N,) int8, see STATUS_NAMES
    segment: np.ndarray  # (N,) int32 map segment of each placed frame (-1: lost); segments share no world
    keyframes: np.ndarray  # frame indices
    intrinsics: np.ndarray  # (4,)
    radial: np.ndarray  # (2,) k1, k2 of the RADIAL model (zeros: pinhole); obs_uv are ideal-pinhole pixels
    points: np.ndarray
    colors: np.ndarray
    obs_frame: np.ndarray
    obs_point: np.ndarray
    obs_uv: np.ndarray
    mean_reproj_px: float
    rotation_only: bool
    segments: int
    focal_estimated: bool
    stats: dict


class SlamSystem:
    def __init__(self, cfg: PoseConfig, width: int, height: int, focal_init: float | None = None,
                 radial_init: tuple[float, float] | None = None):
        """``focal_init``: a focal (px) from a calibration pass; it starts the map and is still refined in the
        final global BA (when the focal is estimated), but no focal sweep runs. ``radial_init``: the radial
        distortion (k1, k2) from the same pass.

        Lens distortion: tracks are undistorted on arrival with the current estimate, so the whole tracker,
        PnP, triangulation and map live in an ideal pinhole camera with the same K; bundle adjustment sees
        the measured (distorted) pixels and the RADIAL model, and refines k1 (k2) with the focal when the
        intrinsics are self-calibrated. When the estimate changes, stored pixels are re-mapped."""
        self.cfg = cfg
        self.w, self.h = width, height
        ic = cfg.intrinsics
        cx = ic.cx if ic.cx is not None else (width - 1) / 2.0
        cy = ic.cy if ic.cy is not None else (height - 1) / 2.0
        if ic.fx is not None:
            fx = ic.fx
            fy = ic.fy if ic.fy is not None else ic.fx
            self.estimate_focal = False
        else:
            fx = fy = geo.fov_to_focal(ic.fov_prior_deg, width)
            self.estimate_focal = ic.estimate_focal
        if focal_init is not None and self.estimate_focal:
            fx = fy = float(focal_init)
        self.intr = np.array([fx, fy, cx, cy], np.float64)
        self.dist = np.array([ic.k1 or 0.0, ic.k2 or 0.0], np.float64)
        # radial terms refined with the focal (self-calibration only; given intrinsics keep given distortion)
        self.radial_terms = ic.radial_terms if self.estimate_focal and ic.k1 is None else 0
        if radial_init is not None and self.radial_terms:
            self.dist[:] = radial_init
        self.focal_calibrated = not self.estimate_focal or focal_init is not None
        self.tracker = KLTTracker(cfg.tracking, width, height)
        self.segments: list[Segment] = []
        self.seg: Segment | None = None
        self.n = 0
        self.rng = np.random.default_rng(cfg.seed)
        cv2.setRNGSeed(cfg.seed)
        self.stats = {"ba_windowed": 0, "ba_global": 0, "lost_frames": 0, "inconsistent_tracks": 0}
        self._last_rgb = np.zeros((height, width, 3), np.uint8)
        self.untracked: set[int] = set()
        self.reloc: dict | None = None  # after a loss: the map to relocalise in, and since when
        self._force_planar = False  # finish(): decide a pending planar initialisation
        self._radial_checked = False  # the in-run radial distortion estimate has been made
        self.desc_cache: dict | None = None  # keyframe descriptors shared between passes (see _descriptors)
        self.desc_cache_store = True  # add new entries (the main pass only reads the calibration rounds')

    # ------------------------------------------------------------------ helpers
    @property
    def K(self) -> np.ndarray:
        return geo.K_matrix(self.intr)

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.dist != 0))

    def _undistort(self, uv: np.ndarray, intr: np.ndarray | None = None, dist: np.ndarray | None = None) -> np.ndarray:
        """Measured pixels -> pixels of the ideal pinhole camera with the same K."""
        intr = self.intr if intr is None else intr
        dist = self.dist if dist is None else dist
        if len(uv) == 0 or not np.any(dist != 0):
            return np.asarray(uv, np.float64)
        return geo.undistort_radial(uv, intr, dist)

    def _distort(self, uv: np.ndarray, intr: np.ndarray | None = None, dist: np.ndarray | None = None) -> np.ndarray:
        """Ideal pinhole pixels -> measured pixels (the RADIAL model, closed form)."""
        intr = self.intr if intr is None else intr
        dist = self.dist if dist is None else dist
        if len(uv) == 0 or not np.any(dist != 0):
            return np.asarray(uv, np.float64)
        return geo.distort_radial(uv, intr, dist)

    def _remap_pixels(self, old_intr: np.ndarray, old_dist: np.ndarray) -> None:
        """After the intrinsics changed: re-derive every stored ideal-pinhole pixel from its measurement."""
        if not (np.any(old_dist != 0) or self.distorted):
            return  # pinhole before and after: the pixels are the measurements

        def remap(uv: np.ndarray) -> np.ndarray:
            return self._undistort(self._distort(uv, old_intr, old_dist))

        for seg in self.segments:
            for kf in seg.keyframes:
                kf.uv = remap(kf.uv)
            seg.pending = [(f, T, ids, remap(uv)) for f, T, ids, uv in seg.pending]
            seg.init_pending = [(f, ids, remap(uv), H) for f, ids, uv, H in seg.init_pending]
            if seg.ref is not None:
                f, ids, uv, H = seg.ref
                seg.ref = (f, ids, remap(uv), H)

    def _new_segment(self) -> Segment:
        s = Segment(index=len(self.segments))
        self.segments.append(s)
        self.seg = s
        return s

    def _outlier_px(self) -> float:
        # before the focal is calibrated the geometry is distorted: be lenient
        return self.cfg.ba.outlier_px * (1.0 if self.focal_calibrated else 3.0)

    def _min_tracks(self) -> int:
        return self.cfg.tracking.min_tracks

    # ------------------------------------------------------------------ main entry
    def process(self, frame: int, rgb: np.ndarray, mask: np.ndarray | None = None,
                tracks: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        """Consume one frame (HxWx3 uint8 RGB; ``mask`` True on dynamic pixels). Returns its status.

        ``tracks``: the frame's ``(ids, uv)`` from a :class:`~.tracker.TrackCache` shared with an earlier
        pass over the same frames (the system's own tracker is then not used)."""
        self.n += 1
        if self.cfg.assume_fixed_camera_pose:
            seg = self.seg or self._new_segment()
            seg.kind = "fixed"
            seg.frames.append(FrameRecord(frame, FIXED, seg.index))
            return FIXED
        self._last_rgb = rgb
        if tracks is None:
            ids, uv = self.tracker.step(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), mask)
        else:
            ids, uv = tracks
        seg = self.seg or self._new_segment()
        ids = seg.apply_alias(np.asarray(ids, np.int64))
        order = np.argsort(ids)
        ids, uv = ids[order], self._undistort(uv[order].astype(np.float64))
        if len(ids) < self._min_tracks():
            self.untracked.add(frame)  # too few tracks: whatever pose it gets, it is flagged lost
        if seg.kind == "init":
            if self.reloc is not None:
                st = self._try_relocalise(seg, frame, ids, uv, rgb)
                if st is not None:
                    return st
                if frame - self.reloc["since"] < self.cfg.map.reloc_wait_frames:
                    seg.init_pending.append((frame, ids, uv, np.eye(3)))
                    if seg.ref is None or len(np.intersect1d(seg.ref[1], ids)) < self._min_tracks():
                        seg.ref = (frame, ids, uv, np.eye(3))
                    return ROTATION  # the old map may come back: do not start a new one yet
            return self._init_step(seg, frame, ids, uv, rgb)
        return self._track_step(seg, frame, ids, uv, rgb)

    # ------------------------------------------------------------------ initialisation
    def _init_step(self, seg: Segment, frame: int, ids, uv, rgb) -> int:
        if seg.ref is None:
            seg.ref = (frame, ids, uv, np.eye(3))
            seg.init_pending.append((frame, ids, uv, np.eye(3)))
            return ROTATION
        rf, rids, ruv, H_sr = seg.ref
        common, ia, ib = np.intersect1d(rids, ids, return_indices=True)
        H_rc = None
        if len(common) >= 8:
            H_rc, _ = cv2.findHomography(ruv[ia], uv[ib], cv2.RANSAC, 1.5)
        if H_rc is None:
            H_rc = np.eye(3)
        H_sc = H_rc @ H_sr
        seg.init_pending.append((frame, ids, uv, H_sc))
        if len(common) >= self._min_tracks() and self._try_initialise(seg, frame, ids, uv, ia, ib, rgb):
            return KEYFRAME
        if len(common) < max(self._min_tracks(), 0.5 * len(rids)):
            seg.ref = (frame, ids, uv, H_sc)  # re-anchor the reference (tracks mostly gone)
            seg.planar_hyp = None
        if len(seg.init_pending) > self.cfg.keyframe.init_max_frames:
            seg.init_pending.pop()  # the current frame starts the next segment
            self._close_rotation_chunk(seg)
            ns = self._new_segment()
            ns.ref = (frame, ids, uv, np.eye(3))
            ns.init_pending.append((frame, ids, uv, np.eye(3)))
        return ROTATION

    def _try_initialise(self, seg: Segment, frame, ids, uv, ia, ib, rgb) -> bool:
        rf, rids, ruv, _ = seg.ref
        p0, p1 = ruv[ia], uv[ib]
        flow = np.median(np.linalg.norm(p1 - p0, axis=1))
        if flow < 0.5 * self.cfg.keyframe.flow_frac * self.w:
            return False
        K = self.K
        E, inl = cv2.findEssentialMat(p0, p1, K, cv2.RANSAC, 0.999, 1.0)
        if E is None or E.shape != (3, 3):
            return False
        inl = inl.ravel().astype(bool)
        if inl.sum() < self._min_tracks():
            return False
        H, H_inl = cv2.findHomography(p0, p1, cv2.RANSAC, 1.5)
        h_frac = float(H_inl.sum()) / max(len(p0), 1) if H_inl is not None else 0.0
        e_frac = float(inl.sum()) / len(p0)
        _, R, t, pmask = cv2.recoverPose(E, p0[inl], p1[inl], K)
        par = geo.rotation_compensated_parallax(p0[inl], p1[inl], R, K)
        med_par = float(np.median(par))
        # a homography explains the tracks as well as E does, and it is a rotation homography (not a plane)
        rot_res = geo.rotation_from_homography(H, K)[1] if H is not None else float("inf")
        rotation_like = h_frac >= 0.8 and h_frac >= 0.95 * e_frac and rot_res < 0.01
        log.debug("init test frame %d: parallax %.2f deg, H/E inliers %.2f/%.2f, H rotation residual %.4f",
                  frame, med_par, h_frac, e_frac, rot_res)
        kc = self.cfg.keyframe
        if med_par < kc.init_min_parallax_deg or med_par > kc.init_max_parallax_deg or rotation_like:
            return False
        T0 = np.eye(4)
        min_par = 0.5 * kc.init_min_parallax_deg
        cands = [geo.pose(R, t.ravel())]
        planar = H is not None and h_frac >= 0.8 * e_frac
        if planar:
            # a plane has two motions that explain two views: take the homography's decompositions too and
            # let the frames in between (third views) choose
            cands += self._homography_motions(H, p0[inl], p1[inl], K)
        valid = []
        for T1c in self._distinct_motions(cands):
            par_c = geo.rotation_compensated_parallax(p0[inl], p1[inl], T1c[:3, :3], K)
            if not kc.init_min_parallax_deg <= float(np.median(par_c)) <= kc.init_max_parallax_deg:
                continue  # this motion explains the tracks by rotation (no depth from it), or is implausible
            Xc = geo.triangulate(T0, T1c, p0, p1, K)
            gc = self._check_points(Xc, [(T0, p0), (T1c, p1)], K, min_par=min_par) & inl
            if gc.sum() >= max(self._min_tracks(), 0.3 * len(p0)):
                valid.append((T1c, Xc, gc))
        if not valid:
            return False
        choice = 0
        if len(valid) > 1:
            choice = self._planar_choice(seg, frame, ids, uv, rids[ia], valid)
            if choice is None:
                return False  # two motions still explain every frame: wait for frames that tell them apart
        seg.planar_hyp = None
        T1, X, good = valid[choice]
        z = X[good, 2]
        s = 1.0 / float(np.median(z))
        T1[:3, 3] *= s
        X = X * s
        log.info("initialised segment %d on frames %d-%d: %d points, parallax %.2f deg, H/E inliers %.2f/%.2f",
                 seg.index, rf, frame, int(good.sum()), med_par, h_frac, e_frac)
        kf0 = Keyframe(rf, T0, rids.copy(), ruv.copy(), np.zeros(len(rids), bool))
        kf1 = Keyframe(frame, T1, ids.copy(), uv.copy(), np.zeros(len(ids), bool))
        seg.kind = "map"
        seg.keyframes = [kf0, kf1]
        cols = self._colors(rgb, p1[good])
        for tid, x, c in zip(rids[ia][good], X[good], cols, strict=True):
            seg.points[int(tid)] = x
            seg.colors[int(tid)] = c
        self._ba(seg, window=True, iters=self.cfg.ba.window_iters)
        if self.cfg.map.reassociate or self.cfg.map.relocalise:
            self._store_descriptors(seg, kf1, self._descriptors(rgb, self._distort(kf1.uv)))
        # pending frames between the two keyframes: localise against the new map
        pend = [p for p in seg.init_pending if p[0] not in (rf, frame)]
        seg.init_pending = []
        seg.frames.append(FrameRecord(rf, KEYFRAME, seg.index, 0, 0, np.eye(4), None))
        for f, fids, fuv, _ in pend:
            T = self._localise(seg, fids, fuv, None)
            if f < rf:  # before a re-anchored reference: only the first keyframe brackets it
                if T is None:
                    seg.frames.append(FrameRecord(f, LOST, seg.index))
                else:
                    seg.frames.append(FrameRecord(f, TRACKED, seg.index, 0, 0, T @ geo.invert(kf0.T), None))
                continue
            if T is None:
                T = geo.invert(geo.slerp_pose_c2w(geo.invert(kf0.T), geo.invert(kf1.T),
                                                  (f - rf) / max(frame - rf, 1)))
            seg.frames.append(FrameRecord(f, TRACKED, seg.index, 0, 1, T @ geo.invert(kf0.T),
                                          T @ geo.invert(kf1.T)))
        seg.frames.append(FrameRecord(frame, KEYFRAME, seg.index, 1, 1, np.eye(4), None))
        seg.last_T = kf1.T.copy()
        seg.velocity = np.eye(4)
        seg.ref = None
        return True

    @staticmethod
    def _homography_motions(H: np.ndarray, p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> list[np.ndarray]:
        """The motions (w2c of view 1, view 0 at the origin) of the homography's decompositions that keep
        the reference points in front of both cameras; translation of unit length."""
        try:
            n, Rs, ts, normals = cv2.decomposeHomographyMat(H, K)
        except cv2.error:
            return []
        out, front = [], []
        for i in range(n):
            tn = float(np.linalg.norm(ts[i]))
            if tn < 1e-9:
                continue
            T1 = geo.pose(Rs[i], ts[i].ravel() / tn)
            X = geo.triangulate(np.eye(4), T1, p0, p1, K)
            z1 = X @ T1[:3, :3].T + T1[:3, 3]
            front.append(float(np.mean((X[:, 2] > 0) & (z1[:, 2] > 0))))
            out.append(T1)
        # the plane in front of both cameras: two decompositions keep (nearly) all points in front
        return [T for T, f in zip(out, front, strict=True) if f >= 0.9]
        return out

    @staticmethod
    def _distinct_motions(cands: list[np.ndarray]) -> list[np.ndarray]:
        """Drop motions within 1 deg of rotation and 5 deg of translation direction of an earlier one."""
        out: list[np.ndarray] = []
        for T in cands:
            t = T[:3, 3] / max(np.linalg.norm(T[:3, 3]), 1e-12)
            same = False
            for U in out:
                u = U[:3, 3] / max(np.linalg.norm(U[:3, 3]), 1e-12)
                if geo.rotation_angle_deg(T[:3, :3] @ U[:3, :3].T) < 1.0 and \
                        math.degrees(math.acos(max(-1.0, min(1.0, float(t @ u))))) < 5.0:
                    same = True
                    break
            if not same:
                out.append(T)
        return out

    def _planar_choice(self, seg: Segment, frame: int, ids, uv, pair_ids: np.ndarray, valid: list) -> int | None:
        """Resolve the two-fold ambiguity of a planar scene with later frames.

        The first time a pair has two valid motions, both reconstructions are kept as hypotheses. Each later
        frame is localised against each hypothesis's points (PnP); the frames *beyond* the pair's baseline
        tell the true plane from its mirror solution (frames in between do not: they lie on the same
        baseline). Once one hypothesis's accumulated reprojection error is below ``init_ambiguity_ratio``
        times the other's (after at least ``min_frames`` frames), the candidate of the current pair whose
        motion is closest to that hypothesis's pose of this frame is returned; ``None`` while undecided.
        """
        kc = self.cfg.keyframe
        hyp = seg.planar_hyp
        if hyp is None:
            seg.planar_hyp = {"frame": frame, "frames": 0, "cost": np.zeros(len(valid)),
                              "hyps": [(pair_ids[g].copy(), X[g].copy(), T.copy()) for T, X, g in valid]}
            log.debug("init frame %d: planar scene, %d candidate motions kept", frame, len(valid))
            return None
        poses = []
        for h, (hids, hX, hT) in enumerate(hyp["hyps"]):
            cost, T = self._pnp_cost(hids, hX, ids, uv, hT)
            hyp["cost"][h] += cost
            poses.append(T)
            if T is not None:
                hyp["hyps"][h] = (hids, hX, T)
        hyp["frames"] += 1
        order = np.argsort(hyp["cost"])
        best, second = hyp["cost"][order[0]], hyp["cost"][order[1]]
        log.debug("init frame %d: planar hypotheses, accumulated reprojection cost %s", frame,
                  ", ".join(f"{c:.3f}" for c in hyp["cost"]))
        decided = hyp["frames"] >= kc.init_planar_min_frames and best <= kc.init_ambiguity_ratio * second
        if not decided and len(seg.init_pending) < kc.init_max_frames // 2 and not self._force_planar:
            return None
        Tw = poses[order[0]] if poses[order[0]] is not None else hyp["hyps"][order[0]][2]
        tw = Tw[:3, 3] / max(np.linalg.norm(Tw[:3, 3]), 1e-12)

        def distance(T: np.ndarray) -> float:
            t = T[:3, 3] / max(np.linalg.norm(T[:3, 3]), 1e-12)
            return geo.rotation_angle_deg(T[:3, :3] @ Tw[:3, :3].T) + \
                math.degrees(math.acos(max(-1.0, min(1.0, float(t @ tw)))))

        return int(np.argmin([distance(T) for T, _, _ in valid]))

    def _pnp_cost(self, hids: np.ndarray, hX: np.ndarray, ids, uv, T_guess) -> tuple[float, np.ndarray | None]:
        """Mean truncated squared reprojection error (px^2) of a frame localised against the points."""
        trunc = 4.0
        common, ia, ib = np.intersect1d(hids, ids, return_indices=True)
        if len(common) < 12:
            return trunc**2, None
        obj, img = hX[ia], uv[ib]
        K = self.K
        rvec0, _ = cv2.Rodrigues(T_guess[:3, :3])
        tvec0 = T_guess[:3, 3].reshape(3, 1).copy()
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, rvec0, tvec0, True, 100, 2.0, 0.99,
                                                 flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or inl is None or len(inl) < 6:
            return trunc**2, None
        inl = inl.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
        proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
        e = np.linalg.norm(proj.reshape(-1, 2) - img, axis=1)
        R, _ = cv2.Rodrigues(rvec)
        return float(np.mean(np.minimum(e, trunc) ** 2)), geo.pose(R, tvec.ravel())

    def _close_rotation_chunk(self, seg: Segment) -> None:
        """Turn the frames of an un-initialised segment into a rotation-only chunk."""
        seg.kind = "rotation"
        Hs = [h for _, _, _, h in seg.init_pending]
        if self.estimate_focal and not self.focal_calibrated and len(Hs) > 1:
            f_lo = geo.fov_to_focal(self.cfg.intrinsics.sweep_fov_deg[1], self.w)
            f_hi = geo.fov_to_focal(self.cfg.intrinsics.sweep_fov_deg[0], self.w)
            # only homographies with a noticeable rotation constrain the focal
            informative = [H for H in Hs if np.linalg.norm(H / np.cbrt(np.linalg.det(H)) - np.eye(3)) > 0.02]
            f = geo.focal_from_homographies(informative, self.intr[2], self.intr[3], f_lo, f_hi) \
                if len(informative) >= 2 else None
            if f is not None:
                self.intr[0] = self.intr[1] = f
                self.focal_calibrated = True
                log.info("rotation-only chunk: focal %.1f px from %d homographies", f, len(informative))
        seg.rot_H = Hs  # rotations are derived at finish with the final focal
        seg.frames = [FrameRecord(f, ROTATION, seg.index) for f, _, _, _ in seg.init_pending]
        seg.init_pending = []
        seg.ref = None

    # ------------------------------------------------------------------ tracking
    def _localise(self, seg: Segment, ids, uv, T_guess) -> np.ndarray | None:
        pids = [i for i in ids.tolist() if i in seg.points]
        if len(pids) < 6:
            return None
        sel = np.isin(ids, np.asarray(pids))
        obj = np.stack([seg.points[i] for i in ids[sel].tolist()])
        img = uv[sel]
        K = self.K
        if T_guess is not None:
            rvec0, _ = cv2.Rodrigues(T_guess[:3, :3])
            tvec0 = T_guess[:3, 3].reshape(3, 1).copy()
            ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, rvec0.copy(), tvec0, True, 100, 2.0, 0.999,
                                                     flags=cv2.SOLVEPNP_ITERATIVE)
        else:
            ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, iterationsCount=200, reprojectionError=2.0,
                                                     confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None or len(inl) < max(self._min_tracks() // 2, 12):
            return None
        inl = inl.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
        R, _ = cv2.Rodrigues(rvec)
        return geo.pose(R, tvec.ravel())

    def _track_step(self, seg: Segment, frame: int, ids, uv, rgb) -> int:
        guess = seg.velocity @ seg.last_T
        T = self._localise(seg, ids, uv, guess)
        if T is None:
            return self._lost(seg, frame, ids, uv)
        seg.velocity = T @ geo.invert(seg.last_T)
        seg.last_T = T
        last = seg.keyframes[-1]
        idx = last.lookup(ids)
        alive = idx >= 0
        n_last_mapped = sum(1 for i in last.ids.tolist() if i in seg.points)
        n_alive_mapped = sum(1 for i in ids[alive].tolist() if i in seg.points)
        flow = float(np.median(np.linalg.norm(uv[alive] - last.uv[idx[alive]], axis=1))) if alive.any() else 1e9
        kcfg = self.cfg.keyframe
        is_kf = (flow > kcfg.flow_frac * self.w
                 or n_alive_mapped < (1 - kcfg.track_loss_frac) * max(n_last_mapped, 1)
                 or frame - last.frame >= kcfg.max_gap)
        if not is_kf:
            seg.pending.append((frame, T, ids, uv))
            return TRACKED
        self._insert_keyframe(seg, frame, T, ids, uv, rgb)
        return KEYFRAME

    def _lost(self, seg: Segment, frame: int, ids, uv) -> int:
        log.warning("tracking lost at frame %d (segment %d); starting a new segment", frame, seg.index)
        self.stats["lost_frames"] += 1
        self._flush_pending(seg)
        lost_rec = FrameRecord(frame, LOST, seg.index)
        seg.frames.append(lost_rec)
        target = seg if seg.kind == "map" and seg.points else (self.reloc or {}).get("seg")
        ns = self._new_segment()
        ns.ref = None
        if target is not None and self.cfg.map.relocalise:
            self.reloc = {"seg": target, "since": frame}
        return LOST

    def _try_relocalise(self, seg: Segment, frame: int, ids, uv, rgb) -> int | None:
        """After a loss, find the frame in the old map (descriptor matches of its corners to the map points of
        the last keyframes, PnP-RANSAC). On success the old map continues: the frame becomes a keyframe in
        the old world, its tracks are renamed to the matched points, and the frames since the loss stay
        lost. Returns the frame status, or None while the frame cannot be placed."""
        mc = self.cfg.map
        target: Segment = self.reloc["seg"]
        if frame - self.reloc["since"] > mc.reloc_max_frames:
            self.reloc = None
            return None
        if len(ids) < self._min_tracks():
            return None
        pool = np.unique(np.concatenate([k.ids[~k.bad] for k in target.keyframes[-mc.reloc_keyframes:]]))
        pids = np.array([i for i in pool.tolist() if i in target.points and i in target.pdesc], np.int64)
        if len(pids) < self._min_tracks():
            return None
        desc = self._descriptors(rgb, self._distort(uv))
        has = desc.any(axis=1)
        if has.sum() < self._min_tracks():
            return None
        pdesc = np.stack([target.pdesc[i] for i in pids.tolist()]).astype(np.float32)
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        rows = np.flatnonzero(has)
        knn = matcher.knnMatch(desc[rows].astype(np.float32), pdesc, k=2)
        pairs = [(rows[m.queryIdx], m.trainIdx) for m, n2 in (x for x in knn if len(x) == 2)
                 if m.distance < mc.max_desc_dist and m.distance < 0.8 * n2.distance]
        log.debug("relocalisation frame %d: %d descriptor matches to %d map points", frame, len(pairs), len(pids))
        if len(pairs) < self._min_tracks():
            return None
        r, c = np.array(pairs).T
        obj = np.stack([target.points[int(i)] for i in pids[c].tolist()])
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, uv[r], self.K, None, iterationsCount=300,
                                                 reprojectionError=3.0, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
        log.debug("relocalisation frame %d: PnP %s, %d inliers", frame, ok, 0 if inl is None else len(inl))
        if not ok or inl is None or len(inl) < max(self._min_tracks() // 2, 20) or len(inl) < 0.3 * len(pairs):
            return None
        inl = inl.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], uv[r][inl], self.K, None, rvec, tvec)
        R, _ = cv2.Rodrigues(rvec)
        T = geo.pose(R, tvec.ravel())
        log.info("relocalised frame %d in segment %d (%d of %d matches agree), %d frames after the loss",
                 frame, target.index, len(inl), len(pairs), frame - self.reloc["since"])
        self.stats["relocalised"] = self.stats.get("relocalised", 0) + 1
        # the abandoned new segment: its frames stay lost, recorded in the old map
        for f, _, _, _ in seg.init_pending:
            target.frames.append(FrameRecord(f, LOST, target.index))
        self.segments.remove(seg)
        self.seg = target
        self.reloc = None
        # the matched tracks are those points from now on
        for t, p in zip(ids[r][inl].tolist(), pids[c][inl].tolist(), strict=True):
            if t != p and t not in target.points:
                target.alias[t] = p
        ids = target.apply_alias(ids)
        o = np.argsort(ids, kind="stable")
        ids, uv = ids[o], uv[o]
        keep = np.concatenate([[True], np.diff(ids) != 0])  # one observation per point
        ids, uv = ids[keep], uv[keep]
        target.pending = []
        target.last_T = T
        target.velocity = np.eye(4)
        self._insert_keyframe(target, frame, T, ids, uv, rgb)
        return KEYFRAME

    def _flush_pending(self, seg: Segment) -> None:
        """Frames tracked after the last keyframe (end of segment): store them relative to that keyframe."""
        if seg.kind != "map":
            return
        a = len(seg.keyframes) - 1
        Ta = seg.keyframes[a].T
        for f, T, _, _ in seg.pending:
            seg.frames.append(FrameRecord(f, TRACKED, seg.index, a, a, T @ geo.invert(Ta), T @ geo.invert(Ta)))
        seg.pending = []

    def _reject_dynamic(self, seg: Segment, prev: Keyframe, kf: Keyframe) -> None:
        """Blacklist tracks whose motion between two keyframes violates the epipolar geometry of the
        estimated camera motion (independently moving objects), and drop their map points."""
        common, ia, ib = np.intersect1d(prev.ids, kf.ids, return_indices=True)
        if len(common) == 0:
            return
        T = kf.T @ geo.invert(prev.T)
        t = T[:3, 3]
        if np.linalg.norm(t) < 1e-9:
            return
        tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
        E = tx @ T[:3, :3]
        K = self.K
        x1 = np.c_[geo.normalise_uv(prev.uv[ia], K), np.ones(len(ia))]
        x2 = np.c_[geo.normalise_uv(kf.uv[ib], K), np.ones(len(ib))]
        Ex1 = x1 @ E.T
        Etx2 = x2 @ E
        num = np.sum(x2 * Ex1, axis=1) ** 2
        den = Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2 + 1e-18
        err_px = np.sqrt(num / den) * K[0, 0]
        bad = common[err_px > self._outlier_px()]
        for i in bad.tolist():
            seg.dynamic.add(i)
            seg.points.pop(i, None)
            seg.colors.pop(i, None)

    def _insert_keyframe(self, seg: Segment, frame: int, T, ids, uv, rgb) -> None:
        kf = Keyframe(frame, T, ids.copy(), uv.copy(), np.zeros(len(ids), bool))
        self._reject_dynamic(seg, seg.keyframes[-1], kf)
        desc = None
        if self.cfg.map.reassociate or self.cfg.map.relocalise:
            desc = self._descriptors(rgb, self._distort(kf.uv))
        if self.cfg.map.reassociate:
            desc = desc[self._reassociate(seg, kf, desc)]
        seg.keyframes.append(kf)
        self._triangulate_new(seg, kf, rgb)
        self._ba(seg, window=True, iters=self.cfg.ba.window_iters)
        if desc is not None:
            self._store_descriptors(seg, kf, desc)
        if self.estimate_focal and not self.focal_calibrated and len(seg.keyframes) >= 6:
            self._calibrate_focal(seg)
        n_rad = self.cfg.intrinsics.radial_keyframes
        if self.radial_terms and self.focal_calibrated and not self._radial_checked and len(seg.keyframes) >= n_rad:
            # distortion is observable once the map spans enough views: estimate it now, so the rest of the
            # map is built undistorted (observations near the border are not lost as outliers meanwhile)
            self._radial_checked = True
            self._ba(seg, window=False, iters=self.cfg.ba.global_iters, optimize_focal=True,
                     optimize_radial=self.radial_terms)
            self._drop_insignificant_radial(seg)
        # re-localise the frames since the previous keyframe against the refined map
        b = len(seg.keyframes) - 1
        a = b - 1
        Ta, Tb = seg.keyframes[a].T, seg.keyframes[b].T
        for f, Tf, fids, fuv in seg.pending:
            T2 = self._localise(seg, fids, fuv, Tf)
            Tf = T2 if T2 is not None else Tf
            seg.frames.append(FrameRecord(f, TRACKED, seg.index, a, b, Tf @ geo.invert(Ta), Tf @ geo.invert(Tb)))
        seg.pending = []
        seg.frames.append(FrameRecord(frame, KEYFRAME, seg.index, b, b, np.eye(4), None))
        seg.last_T = kf.T.copy()

    # ------------------------------------------------------------------ long-term association
    def _descriptors(self, rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """Upright SIFT descriptors (uint8, (N,128)) at the given pixels of the frame.

        With a ``desc_cache`` (a dict shared by the passes of one run, see :class:`~.tracker.TrackCache`) the
        result is looked up by the frame's and the pixels' bytes first: the calibration rounds and the main
        pass describe the same keyframes at the same track positions, and SIFT is deterministic."""
        cache = self.desc_cache
        if cache is None:
            return self._compute_descriptors(rgb, uv)
        import hashlib

        uv64 = np.ascontiguousarray(uv, np.float64)
        key = (hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest(), rgb.shape,
               uv64.tobytes())
        hit = cache.get(key)
        if hit is None:
            hit = self._compute_descriptors(rgb, uv)
            if self.desc_cache_store:
                cache[key] = hit
        return hit.copy()

    def _compute_descriptors(self, rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_sift"):
            self._sift = cv2.SIFT_create()
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        sc = self.cfg.map.desc_scale
        if sc != 1.0:  # SIFT builds a whole scale space: a smaller image is ~3.5x faster at half size
            gray = cv2.resize(gray, None, fx=sc, fy=sc, interpolation=cv2.INTER_AREA)
            uv = uv * sc
        size = self.cfg.map.desc_size_px * sc
        kps = [cv2.KeyPoint(float(x), float(y), size, 0.0) for x, y in uv]
        kps2, d = self._sift.compute(gray, kps)
        out = np.zeros((len(uv), 128), np.uint8)
        if d is None or len(kps2) == 0:
            return out
        if len(kps2) == len(uv):
            return np.clip(np.round(d), 0, 255).astype(np.uint8)
        # OpenCV dropped some keypoints: put the rest back by position
        pos = {(round(k.pt[0], 3), round(k.pt[1], 3)): j for j, k in enumerate(kps2)}
        for i, (x, y) in enumerate(uv):
            j = pos.get((round(float(x), 3), round(float(y), 3)))
            if j is not None:
                out[i] = np.clip(np.round(d[j]), 0, 255).astype(np.uint8)
        return out

    def _nearby_keyframes(self, seg: Segment, kf: Keyframe) -> list[Keyframe]:
        """Keyframes whose points may be visible in ``kf``: the recent ones plus older ones that looked at the
        same part of the scene from nearby (loop candidates), a bounded number of each."""
        mc = self.cfg.map
        recent = seg.keyframes[-mc.recent_keyframes:]
        older = seg.keyframes[:-mc.recent_keyframes]
        if not older:
            return recent
        C = geo.invert(kf.T)
        centres = np.stack([geo.invert(o.T)[:3, 3] for o in older])
        axes = np.stack([o.T[2, :3] for o in older])  # optical axes in the world (rows of R_w2c)
        dist = np.linalg.norm(centres - C[:3, 3], axis=1)
        cosang = axes @ C[:3, 2]
        # the map is normalised to median depth ~1 only at the end; use the recent keyframes' spread as scale
        rc = np.stack([geo.invert(r.T)[:3, 3] for r in recent])
        scale = max(float(np.linalg.norm(rc - rc.mean(axis=0), axis=1).max()), 1e-9)
        near = np.flatnonzero((dist < 2.0 * scale) & (cosang > math.cos(math.radians(35.0))))
        near = near[np.argsort(dist[near])][: mc.loop_keyframes]
        return [older[i] for i in sorted(near.tolist())] + recent

    def _reassociate(self, seg: Segment, kf: Keyframe, desc: np.ndarray) -> np.ndarray:
        """Fuse the keyframe's tracks with older map points that project near them (descriptor distance,
        ratio test, one-to-one, depth agreement for tracks that are points already): the track is renamed to
        the older point in every keyframe and for the frames to come, so a part of the scene seen again
        keeps its points and the map stays consistent over long stretches. Returns the permutation applied
        to the keyframe's rows (they stay sorted by id)."""
        from scipy.spatial import cKDTree

        mc = self.cfg.map
        order = np.arange(len(kf.ids))
        if not len(kf.ids) or not seg.points:
            return order
        pool = np.unique(np.concatenate([k.ids[~k.bad] for k in self._nearby_keyframes(seg, kf)]))
        cand = pool[~np.isin(pool, kf.ids)]
        cand = np.array([i for i in cand.tolist() if i in seg.points and i in seg.pdesc], np.int64)
        eligible = desc.any(axis=1)
        if seg.dynamic:
            eligible &= ~np.isin(kf.ids, np.fromiter(seg.dynamic, np.int64, len(seg.dynamic)))
        if not eligible.any() or not len(cand):
            return order
        K = self.K
        X = np.stack([seg.points[i] for i in cand.tolist()])
        proj, z = geo.project(X, kf.T, K)
        m = 4.0
        vis = (z > 1e-3) & (proj[:, 0] >= m) & (proj[:, 0] <= self.w - 1 - m) & (proj[:, 1] >= m) \
            & (proj[:, 1] <= self.h - 1 - m)
        if not vis.any():
            return order
        cand, proj, z = cand[vis], proj[vis], z[vis]
        cdesc = np.stack([seg.pdesc[i] for i in cand.tolist()]).astype(np.float32)
        rows = np.flatnonzero(eligible)
        near = cKDTree(proj).query_ball_point(kf.uv[rows], r=mc.radius_frac * self.w)
        best: dict[int, tuple[float, int]] = {}  # candidate index -> (distance, row)
        taken: set[int] = set()
        for row, nb in zip(rows.tolist(), near, strict=True):
            if not nb:
                continue
            d = np.linalg.norm(cdesc[nb] - desc[row].astype(np.float32), axis=1)
            j = int(np.argmin(d))
            d1 = float(d[j])
            d2 = float(np.partition(d, 1)[1]) if len(d) > 1 else float("inf")
            if d1 > mc.max_desc_dist or d1 > mc.ratio * d2:
                continue
            c = nb[j]
            t = int(kf.ids[row])
            if t in seg.points:  # the track is a point already: the two must agree in depth too
                zt = float((seg.points[t] @ kf.T[:3, :3].T + kf.T[:3, 3])[2])
                if not (0.8 < zt / z[c] < 1.25):
                    continue
            if c not in best or d1 < best[c][0]:
                best[c] = (d1, row)
        merged = 0
        ids = kf.ids.copy()
        for c, (_, row) in sorted(best.items(), key=lambda kv: kv[1][0]):
            t, p = int(kf.ids[row]), int(cand[c])
            if row in taken or not self._rename_track(seg, t, p):
                continue
            taken.add(row)
            ids[row] = p
            merged += 1
        if not merged:
            return order
        order = np.argsort(ids, kind="stable")
        kf.ids, kf.uv, kf.bad = ids[order], kf.uv[order], kf.bad[order]
        self.stats["reassociated"] = self.stats.get("reassociated", 0) + merged
        return order

    def _rename_track(self, seg: Segment, t: int, p: int) -> bool:
        """Rename track ``t`` to map point ``p`` in the keyframes that observe it, the pending frames and the
        frames to come; ``t``'s own point is dropped. False (nothing changed) when a keyframe observes both."""
        hits = []
        for k in range(len(seg.keyframes) - 1, -1, -1):
            kk = seg.keyframes[k]
            n = len(kk.ids)
            if not n or kk.ids[-1] < t:
                break  # keyframes before the track was born (ids grow with birth time; ids are sorted)
            rt = kk.index_of(t)
            if rt >= 0:
                if kk.index_of(p) >= 0:
                    return False
                hits.append((kk, rt))
        for kk, r in hits:
            kk.ids = kk.ids.copy()
            kk.ids[r] = p
            o = np.argsort(kk.ids, kind="stable")
            kk.ids, kk.uv, kk.bad = kk.ids[o], kk.uv[o], kk.bad[o]
        for pend in seg.pending:
            pend[2][pend[2] == t] = p
        seg.alias[t] = p
        seg.points.pop(t, None)
        seg.colors.pop(t, None)
        seg.pdesc.pop(t, None)
        return True

    def _store_descriptors(self, seg: Segment, kf: Keyframe, desc: np.ndarray) -> None:
        """Keep the newest view's descriptor for every map point the keyframe observes."""
        has = desc.any(axis=1) & ~kf.bad
        for i, d in zip(kf.ids[has].tolist(), desc[has], strict=True):
            if i in seg.points:
                seg.pdesc[i] = d

    def _colors(self, rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
        uv = self._distort(uv)
        x = np.clip(np.round(uv[:, 0]).astype(int), 0, self.w - 1)
        y = np.clip(np.round(uv[:, 1]).astype(int), 0, self.h - 1)
        return rgb[y, x].astype(np.uint8)

    def _check_points(self, X, views, K, min_par: float) -> np.ndarray:
        ok = np.isfinite(X).all(axis=1)
        for T, uvv in views:
            proj, z = geo.project(X, T, K)
            ok &= z > 1e-3
            ok &= np.linalg.norm(proj - uvv, axis=1) < 2.0
        C0 = geo.invert(views[0][0])[:3, 3]
        C1 = geo.invert(views[-1][0])[:3, 3]
        ok &= geo.parallax_deg(X, C0, C1) >= min_par
        return ok

    def _triangulate_new(self, seg: Segment, kf: Keyframe, rgb) -> None:
        K = self.K
        new = np.array([i not in seg.points and i not in seg.dynamic for i in kf.ids.tolist()], bool)
        cand = kf.ids[new]
        if len(cand) == 0:
            return
        assigned = np.zeros(len(cand), bool)
        window = seg.keyframes[-self.cfg.ba.window - 1:-1]
        min_par = 1.0
        for old in window:  # oldest first: longest baseline
            todo = ~assigned
            if not todo.any():
                break
            idx_old = old.lookup(cand[todo])
            has = idx_old >= 0
            if not has.any():
                continue
            tids = cand[todo][has]
            uv_old = old.uv[idx_old[has]]
            uv_new = kf.uv[kf.lookup(tids)]
            X = geo.triangulate(old.T, kf.T, uv_old, uv_new, K)
            good = self._check_points(X, [(old.T, uv_old), (kf.T, uv_new)], K, min_par)
            if not good.any():
                continue
            cols = self._colors(rgb, uv_new[good])
            for tid, x, c in zip(tids[good].tolist(), X[good], cols, strict=True):
                seg.points[tid] = x
                seg.colors[tid] = c
            sub = np.flatnonzero(todo)[np.flatnonzero(has)[good]]
            assigned[sub] = True

    # ------------------------------------------------------------------ bundle adjustment
    @staticmethod
    def _point_ids(seg: Segment) -> np.ndarray:
        """Sorted ids of the segment's map points (for vectorised membership tests)."""
        return np.sort(np.fromiter(seg.points.keys(), np.int64, len(seg.points)))

    def _gather(self, seg: Segment, kf_idx: list[int], pids: np.ndarray):
        obs_cam, obs_pid, obs_uv, obs_ref = [], [], [], []
        for ci, k in enumerate(kf_idx):
            kf = seg.keyframes[k]
            sel = np.isin(kf.ids, pids, assume_unique=True) & ~kf.bad
            rows = np.flatnonzero(sel)
            obs_cam.append(np.full(len(rows), ci))
            obs_pid.append(kf.ids[rows])
            obs_uv.append(kf.uv[rows])
            obs_ref.append(np.stack([np.full(len(rows), k), rows], axis=1))
        obs_cam = np.concatenate(obs_cam)
        obs_pid = np.concatenate(obs_pid)
        obs_uv = np.concatenate(obs_uv)
        obs_ref = np.concatenate(obs_ref)
        return obs_cam, obs_pid, obs_uv, obs_ref

    def _ba(self, seg: Segment, window: bool, iters: int, optimize_focal: bool = False,
            focal_override: float | None = None, commit: bool = True, optimize_radial: int = 0,
            radial_override: np.ndarray | None = None):
        nk = len(seg.keyframes)
        pids = self._point_ids(seg)
        if window:
            free = list(range(max(0, nk - self.cfg.ba.window), nk))
            wpts = np.unique(np.concatenate(
                [kf.ids[~kf.bad & np.isin(kf.ids, pids, assume_unique=True)]
                 for kf in (seg.keyframes[k] for k in free)]))
            fixed_cands = [k for k in range(max(0, free[0] - 2 * self.cfg.ba.window), free[0])
                           if np.isin(seg.keyframes[k].ids, wpts, assume_unique=True).any()]
            kf_idx = fixed_cands + free
            fixed = np.array([k in fixed_cands or k == 0 for k in kf_idx], bool)
        else:
            kf_idx = list(range(nk))
            fixed = np.array([k == 0 for k in kf_idx], bool)
            wpts = None
        obs_cam, obs_pid, obs_uv, obs_ref = self._gather(seg, kf_idx, pids)
        if wpts is not None:
            keep = np.isin(obs_pid, wpts)
            obs_cam, obs_pid, obs_uv, obs_ref = obs_cam[keep], obs_pid[keep], obs_uv[keep], obs_ref[keep]
        if len(obs_pid) == 0:
            return float("nan")
        upid, obs_pt = np.unique(obs_pid, return_inverse=True)
        # points need two observations to be constrained
        cnt = np.bincount(obs_pt, minlength=len(upid))
        keep = cnt[obs_pt] >= self.cfg.ba.min_obs
        obs_cam, obs_pid, obs_uv, obs_ref = obs_cam[keep], obs_pid[keep], obs_uv[keep], obs_ref[keep]
        upid, obs_pt = np.unique(obs_pid, return_inverse=True)
        if len(upid) < 6:
            return float("nan")
        pts = np.stack([seg.points[int(i)] for i in upid])
        poses = np.stack([seg.keyframes[k].T for k in kf_idx])
        intr = self.intr.copy()
        if focal_override is not None:
            intr[0] = intr[1] = focal_override
        if self.distorted or optimize_radial or radial_override is not None:
            # BA sees the measurements and the radial model, so the focal and k1 (k2) are estimated jointly
            obs_uv = self._distort(obs_uv)
            intr = np.concatenate([intr, self.dist if radial_override is None else radial_override])
        out = bundle_adjust(poses, pts, obs_cam, obs_pt, obs_uv, intr, fixed, self.cfg.ba, iters,
                            optimize_focal=optimize_focal, optimize_distortion=optimize_radial,
                            tol=self.cfg.ba.window_tol if window else self.cfg.ba.global_tol,
                            double=not window or self.cfg.ba.window_float64)
        out.obs_pid = obs_pid
        if not commit:
            return out
        self.stats["ba_global" if not window else "ba_windowed"] += 1
        for ci, k in enumerate(kf_idx):
            if not fixed[ci]:
                seg.keyframes[k].T = out.poses_w2c[ci]
        for j, pid in enumerate(upid.tolist()):
            seg.points[pid] = out.points[j]
        if optimize_focal or focal_override is not None or optimize_radial:
            old_intr, old_dist = self.intr.copy(), self.dist.copy()
            self.intr[:2] = out.intrinsics[:2]
            if optimize_radial:
                self.dist[:] = out.intrinsics[4:6]
            self._remap_pixels(old_intr, old_dist)
        # reject outliers: observations with large reprojection error, points behind cameras
        bad_obs = ~(out.reproj_px < self._outlier_px())
        outliers = np.flatnonzero(bad_obs)
        # a point that is well observed elsewhere loses only the bad observation (a wrong fusion, a blurred
        # frame); a track whose observations leave the rigid scene's geometry is not trusted again
        good_cnt = np.bincount(obs_pt[~bad_obs], minlength=len(upid))
        bad_cnt = np.bincount(obs_pt[bad_obs], minlength=len(upid))
        keep_point = (good_cnt >= 3) & (bad_cnt * 3 <= good_cnt)
        for (k, row), pid, j in zip(obs_ref[outliers].tolist(), obs_pid[outliers].tolist(),
                                    obs_pt[outliers].tolist(), strict=True):
            seg.keyframes[k].bad[row] = True
            if keep_point[j]:
                continue
            seg.dynamic.add(pid)
            seg.points.pop(pid, None)
            seg.colors.pop(pid, None)
        self._prune(seg)
        return out.cost

    def _prune(self, seg: Segment) -> None:
        """Drop points behind a keyframe that observes them, and points seen by fewer than two keyframes
        (unless the latest keyframe sees them: they get more observations soon)."""
        pids = self._point_ids(seg)
        if not len(pids):
            return
        alive = np.ones(len(pids), bool)
        counts = np.zeros(len(pids), np.int64)
        K = self.K
        P = np.stack([seg.points[i] for i in pids.tolist()])  # once: this runs after every BA, for every keyframe
        for kf in seg.keyframes:
            ids = kf.ids[~kf.bad]
            pos = np.clip(np.searchsorted(pids, ids), 0, len(pids) - 1)
            has = (pids[pos] == ids) & alive[pos]
            if not has.any():
                continue
            idx = pos[has]
            _, z = geo.project(P[idx], kf.T, K)
            alive[idx[z <= 1e-3]] = False
            counts[idx[z > 1e-3]] += 1
        drop = ~alive | ((counts < 2) & ~np.isin(pids, seg.keyframes[-1].ids))
        for i in pids[drop].tolist():
            seg.points.pop(i, None)
            seg.colors.pop(i, None)

    def calibration_ready(self, min_keyframes: int) -> bool:
        seg = self.seg
        return seg is not None and seg.kind == "map" and len(seg.keyframes) >= min_keyframes

    def calibrate_now(self) -> float | None:
        """Estimate the focal on the current map (focal sweep unless a focal was given at construction,
        then BA with focal refinement); at the end of a video this finishes the run instead."""
        seg = self.seg
        if seg is not None and seg.kind == "map" and len(seg.keyframes) >= 3:
            self._calibrate_focal(seg, sweep=not self.focal_calibrated)
            return float(self.intr[0])
        self.focal_calibrated = False
        self.finish()
        return float(self.intr[0]) if self.focal_calibrated else None

    def _calibrate_focal(self, seg: Segment, sweep: bool = True) -> None:
        """Focal sweep (BA cost over a FoV grid), then BA with focal refinement, all keyframes."""
        ic = self.cfg.intrinsics
        if ic.focal_sweep and sweep:
            lo, hi = ic.sweep_fov_deg
            grid = np.linspace(lo, hi, 6)
            costs = []
            for fov in grid:
                f = geo.fov_to_focal(fov, self.w)
                try:
                    costs.append(self._ba(seg, window=False, iters=6, focal_override=f, commit=False).cost)
                except Exception as exc:  # a diverging candidate just loses the sweep
                    log.debug("focal sweep candidate %.1f deg failed: %s", fov, exc)
                    costs.append(float("inf"))
            best = float(grid[int(np.nanargmin(costs))])
            f0 = geo.fov_to_focal(best, self.w)
            log.info("focal sweep: best FoV %.1f deg (f=%.1f px)", best, f0)
            self._ba(seg, window=False, iters=10, focal_override=f0)
        # the radial terms are refined only with the whole map (finish): on the first keyframes they trade off
        # against the focal and their estimate is unstable
        self._ba(seg, window=False, iters=self.cfg.ba.global_iters, optimize_focal=True)
        self.focal_calibrated = True
        log.info("focal calibrated: %.1f px (FoV %.1f deg), radial k1 %.4f k2 %.4f", self.intr[0],
                 geo.fov_from_focal(self.w, self.intr[0]), self.dist[0], self.dist[1])

    # ------------------------------------------------------------------ finish
    def finish(self) -> SlamOutput:
        for seg in list(self.segments):
            if seg.kind == "init" and seg.planar_hyp is not None and seg.ref is not None and seg.init_pending:
                # the video ended while two planar motions were still being told apart: take the better one
                # (a translating camera is not a rotation-only chunk)
                f, ids, uv, _ = seg.init_pending[-1]
                _, ia, ib = np.intersect1d(seg.ref[1], ids, return_indices=True)
                self._force_planar = True
                try:
                    self._try_initialise(seg, f, ids, uv, ia, ib, self._last_rgb)
                finally:
                    self._force_planar = False
        segs = list(self.segments)
        for seg in segs:
            if seg.kind == "init":
                if seg.init_pending:
                    self._close_rotation_chunk(seg)
            elif seg.kind == "map":
                if seg.pending:
                    f, T, ids, uv = seg.pending.pop()
                    self._insert_keyframe(seg, f, T, ids, uv, self._last_rgb)
        for seg in segs:
            if seg.kind == "map":
                if self.estimate_focal and not self.focal_calibrated:
                    self._calibrate_focal(seg)
                refine = self.estimate_focal and len(seg.keyframes) >= 3
                for _ in range(2):
                    self._ba(seg, window=False, iters=self.cfg.ba.global_iters, optimize_focal=refine,
                             optimize_radial=self.radial_terms if refine else 0)
                if self._reject_inconsistent_tracks(seg):
                    self._ba(seg, window=False, iters=self.cfg.ba.global_iters, optimize_focal=refine,
                             optimize_radial=self.radial_terms if refine else 0)
                if refine:
                    self._drop_insignificant_radial(seg)
                self._normalise_scale(seg)
        return self._assemble()

    def _reject_inconsistent_tracks(self, seg: Segment) -> bool:
        """Drop the map points whose observations, taken together, do not fit one static 3D point
        (``BAConfig.track_consistency_p``). Returns whether any was dropped.

        The per-coordinate noise variance comes from the median squared error of the inlier observations
        (for 2D Gaussian noise ``|r|^2 / var`` is chi-square with 2 degrees of freedom, median ``2 ln 2``); a
        point's summed ``|r|^2 / var`` over its n observations is tested against chi-square with ``2n - 3``
        degrees of freedom (its three coordinates are fitted). KLT errors are heavy-tailed: on a generated
        forward-moving scene one-step LK errors from the exact positions have a median of 0.1 px but an RMS of
        0.6 px, and the tracks whose one-step error ever exceeds 1 px move the self-calibrated focal by 3 %."""
        p_lim = self.cfg.ba.track_consistency_p
        if p_lim <= 0:
            return False
        from scipy.special import chdtrc  # chi-square survival function (scipy.stats costs 0.5 s to import)

        out = self._ba(seg, window=False, iters=1, optimize_focal=False, commit=False)
        if isinstance(out, float):
            return False
        r = out.reproj_px
        ok = r < self._outlier_px()
        if ok.sum() < 50:
            return False
        var = float(np.median(r[ok] ** 2)) / (2.0 * np.log(2.0))  # per-coordinate noise variance, robustly
        upid, inv = np.unique(out.obs_pid[ok], return_inverse=True)
        ss = np.bincount(inv, weights=r[ok] ** 2) / var
        n = np.bincount(inv)
        dof = np.maximum(2 * n - 3, 1)
        bad = upid[chdtrc(dof, ss) < p_lim]
        log.info("track consistency: %d of %d map points fail (noise %.3f px per coordinate)", len(bad), len(upid),
                 np.sqrt(var))
        self.stats["inconsistent_tracks"] += len(bad)
        for pid in bad.tolist():
            seg.points.pop(pid, None)
            seg.colors.pop(pid, None)
        return len(bad) > 0

    def _drop_insignificant_radial(self, seg: Segment) -> None:
        """Back to pinhole (and refit the focal) when the radial terms do not pass the significance test."""
        if not (self.radial_terms and self.distorted) or self.cfg.intrinsics.camera_model == "radial":
            return  # camera_model radial: the radial terms are estimated whatever the test says
        if self._distortion_significant(seg):
            return
        old_intr, old_dist = self.intr.copy(), self.dist.copy()
        self.dist[:] = 0.0
        self._remap_pixels(old_intr, old_dist)
        self._ba(seg, window=False, iters=self.cfg.ba.global_iters, optimize_focal=True)

    def _distortion_significant(self, seg: Segment) -> bool:
        """Model selection for the self-calibrated radial terms: refit the map without them (focal free) and
        keep them only if the squared reprojection error drops by more than ``radial_min_chi2`` times the
        per-coordinate noise variance (a likelihood-ratio test; one or two parameters against thousands of
        observations), so a lens without distortion stays pinhole."""
        with_d = self._ba(seg, window=False, iters=3, optimize_focal=True, commit=False)
        without = self._ba(seg, window=False, iters=10, optimize_focal=True, commit=False,
                           radial_override=np.zeros(2))
        lim = self.cfg.ba.outlier_px
        e1, e0 = with_d.reproj_px, without.reproj_px
        inl = (e1 < lim) & (e0 < lim)
        if inl.sum() < 20:
            return True
        s1, s0 = float(np.sum(e1[inl] ** 2)), float(np.sum(e0[inl] ** 2))
        var = s1 / max(2 * int(inl.sum()) - 1, 1)
        stat = (s0 - s1) / max(var, 1e-12)
        keep = stat > self.cfg.intrinsics.radial_min_chi2
        log.info("radial distortion k1 %.4f k2 %.4f: squared error %.1f with, %.1f without (test %.1f): %s",
                 self.dist[0], self.dist[1], s1, s0, stat, "kept" if keep else "dropped (pinhole)")
        self.stats["radial_test"] = round(stat, 2)
        return keep

    def _normalise_scale(self, seg: Segment) -> None:
        depths = []
        K = self.K
        for kf in seg.keyframes:
            pid = [i for i in kf.ids[~kf.bad].tolist() if i in seg.points]
            if pid:
                _, z = geo.project(np.stack([seg.points[i] for i in pid]), kf.T, K)
                depths.append(z)
        if not depths:
            return
        med = float(np.median(np.concatenate(depths)))
        if not np.isfinite(med) or med <= 0:
            return
        s = 1.0 / med
        for kf in seg.keyframes:
            kf.T = kf.T.copy()
            kf.T[:3, 3] *= s
        for i in seg.points:
            seg.points[i] = seg.points[i] * s
        for rec in seg.frames:
            for attr in ("rel_a", "rel_b"):
                r = getattr(rec, attr)
                if r is not None:
                    r = r.copy()
                    r[:3, 3] *= s
                    setattr(rec, attr, r)

    def _segment_poses(self, seg: Segment) -> dict[int, tuple[np.ndarray, int]]:
        """c2w in the segment's own world for each of its frames, and the status."""
        out: dict[int, tuple[np.ndarray, int]] = {}
        if seg.kind == "fixed":
            for rec in seg.frames:
                out[rec.frame] = (np.eye(4), rec.status)
            return out
        if seg.kind == "rotation":
            K = self.K
            for rec, H in zip(seg.frames, seg.rot_H, strict=True):
                R, _ = geo.rotation_from_homography(H, K)
                out[rec.frame] = (geo.invert(geo.pose(R, np.zeros(3))), ROTATION)
            return out
        for rec in seg.frames:
            if rec.status == LOST or rec.kf_a < 0:
                continue
            Ta = seg.keyframes[rec.kf_a].T
            A = geo.invert(rec.rel_a @ Ta)
            if rec.rel_b is None or rec.kf_b == rec.kf_a:
                out[rec.frame] = (A, rec.status)
                continue
            Tb = seg.keyframes[rec.kf_b].T
            B = geo.invert(rec.rel_b @ Tb)
            fa, fb = seg.keyframes[rec.kf_a].frame, seg.keyframes[rec.kf_b].frame
            w = (rec.frame - fa) / max(fb - fa, 1)
            out[rec.frame] = (geo.slerp_pose_c2w(A, B, w), rec.status)
        return out

    def _assemble(self) -> SlamOutput:
        n_total = sum(len(s.frames) for s in self.segments)
        frames_all = sorted(rec.frame for s in self.segments for rec in s.frames)
        base = frames_all[0] if frames_all else 0
        N = (frames_all[-1] - base + 1) if frames_all else 0
        c2w = np.tile(np.eye(4), (N, 1, 1))
        status = np.full(N, LOST, np.int8)
        segment = np.full(N, -1, np.int32)
        have = np.zeros(N, bool)
        G = np.eye(4)  # segment world -> output world
        last_good = np.eye(4)
        pts_all, col_all, of, op, ouv, kfs = [], [], [], [], [], []
        reproj = []
        npts = 0
        K = self.K
        for seg in self.segments:
            poses = self._segment_poses(seg)
            if poses:
                first = min(poses)
                G = last_good @ geo.invert(poses[first][0])
            for rec in sorted(seg.frames, key=lambda r: r.frame):
                i = rec.frame - base
                if rec.frame in poses and rec.frame not in self.untracked:
                    c2w[i] = G @ poses[rec.frame][0]
                    status[i] = poses[rec.frame][1]
                    segment[i] = seg.index
                    last_good = c2w[i]
                else:
                    c2w[i] = last_good  # held pose, flagged lost in status
                    status[i] = LOST
                have[i] = True
            if seg.kind == "map":
                pids = sorted(seg.points)
                pmap = {p: npts + j for j, p in enumerate(pids)}
                if pids:
                    X = np.stack([seg.points[p] for p in pids])
                    pts_all.append(X @ G[:3, :3].T + G[:3, 3])
                    col_all.append(np.stack([seg.colors.get(p, np.zeros(3, np.uint8)) for p in pids]))
                npts += len(pids)
                for kf in seg.keyframes:
                    kfs.append(kf.frame)
                    rows = [r for r, (i, b) in enumerate(zip(kf.ids.tolist(), kf.bad.tolist(), strict=True))
                            if not b and i in seg.points]
                    if not rows:
                        continue
                    rows = np.asarray(rows)
                    of.append(np.full(len(rows), kf.frame - base))
                    op.append(np.array([pmap[i] for i in kf.ids[rows].tolist()]))
                    ouv.append(kf.uv[rows])
                    X = np.stack([seg.points[i] for i in kf.ids[rows].tolist()])
                    proj, _ = geo.project(X, kf.T, K)
                    reproj.append(np.linalg.norm(proj - kf.uv[rows], axis=1))
        def cat(xs, shape, dt):
            return (np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt))
        r = np.concatenate(reproj) if reproj else np.zeros(0)
        kinds = {s.kind for s in self.segments}
        return SlamOutput(
            c2w=c2w.astype(np.float64), status=status, segment=segment, keyframes=np.asarray(sorted(kfs), np.int64),
            intrinsics=self.intr.copy(), radial=self.dist.copy(), points=cat(pts_all, (0, 3), np.float32),
            colors=cat(col_all, (0, 3), np.uint8), obs_frame=cat(of, (0,), np.int32),
            obs_point=cat(op, (0,), np.int32), obs_uv=cat(ouv, (0, 2), np.float32),
            mean_reproj_px=float(r.mean()) if len(r) else float("nan"),
            rotation_only=bool(kinds) and kinds <= {"rotation"},
            segments=len(self.segments), focal_estimated=self.estimate_focal and self.focal_calibrated,
            stats={**self.stats, "frames": n_total, "points": npts,
                   "median_reproj_px": float(np.median(r)) if len(r) else float("nan")},
        )
