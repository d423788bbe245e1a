"""Pose engine: accuracy on synthetic ground truth, agreement with pycolmap on a real video, speed, memory.

Rows:
- dog-example (real video, no ground truth), every 2nd frame of 0-121 at 512 px: our run vs independent
  pycolmap 4.2.1 reconstructions of the same frames (SIFT outside an independent optical-flow dog mask,
  sequential matching, one shared SIMPLE_RADIAL camera; then both the incremental mapper and the global mapper,
  GLOMAP, on the same matches): rotation and translation agreement after Sim3 alignment, focal lengths, wall
  time ratio; our frames/s and peak RSS. Checks that need no ground truth, for every reconstruction: camera
  turn over the clip, flatness of the reconstructed lawn, relative rotations against lawn homographies; and
  pycolmap's incremental tracks reprojected with our poses.
- generated scenes (forward, orbit, hand-held, outdoor forward, with moving objects, pure rotation): ATE
  RMSE in % of the path after Sim3 alignment, focal error, rotation RMSE.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..bench import make_row

SUITE = "pose"
TITLE = "Pose engine"
DOG = Path(__file__).resolve().parents[3] / "samples" / "dog-example.mp4"

COLMAP_THREADS: int | None = None  # pycolmap threads; None: all cores

log = logging.getLogger(__name__)


def _row(name: str, value: float, unit: str, target: str | None = None, note: str | None = None,
         frames: int | None = None) -> dict:
    return make_row(SUITE, name, value, unit, target, note, frames)


def _rotation_rmse_deg(pred_c2w: np.ndarray, ref_c2w: np.ndarray) -> float:
    """Orientation RMSE (deg) after the best global rotation (chordal mean of R_ref R_pred^T)."""
    from scipy.spatial.transform import Rotation

    Rp = Rotation.from_matrix(pred_c2w[:, :3, :3])
    Rr = Rotation.from_matrix(ref_c2w[:, :3, :3])
    A = (Rr * Rp.inv()).mean()
    err = ((A * Rp).inv() * Rr).magnitude()
    return float(np.degrees(np.sqrt(np.mean(err**2))))


def frames_and_motion_masks(store, name: str, img_dir: str, mask_dir: str) -> tuple[list, list, float]:
    """The processed frames of ``name`` as PNG images in ``img_dir`` (for pycolmap) and their independent
    moving-object masks (:func:`_motion_masks`) in ``mask_dir``; returns (frames, masks, mean masked share)."""
    import cv2

    os.makedirs(img_dir)
    frames = []
    for i, frame in store.open_rgb(name):
        frames.append(frame)
        cv2.imwrite(os.path.join(img_dir, f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    masked = _motion_masks(img_dir, mask_dir)
    masks = [cv2.imread(os.path.join(mask_dir, f"{i:05d}.png.png"), cv2.IMREAD_GRAYSCALE)
             for i in range(len(frames))]
    return frames, masks, masked


def _motion_masks(image_dir: str, mask_dir: str) -> float:
    """Independent dog mask for pycolmap, from the video alone (no SLAM output): DIS optical flow to the frames
    2 before and after, a RANSAC homography fitted to the flow (the lawn plane), pixels off it by > 3 px in at
    least half the neighbours, the largest blob, dilated. Writes ``<image name>.png`` (0 = ignore, pycolmap's
    convention); returns the mean masked fraction of the image."""
    import cv2

    names = sorted(os.listdir(image_dir))
    gray = [cv2.imread(os.path.join(image_dir, n), cv2.IMREAD_GRAYSCALE) for n in names]
    h, w = gray[0].shape
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    pix = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    grid = pix[4::8, 4::8].reshape(-1, 2)
    os.makedirs(mask_dir, exist_ok=True)
    fractions = []
    for i, name in enumerate(names):
        nbrs = [j for j in (i - 2, i + 2) if 0 <= j < len(names)]
        votes = np.zeros((h, w), np.int32)
        for j in nbrs:
            flow = dis.calc(gray[i], gray[j], None)
            H, _ = cv2.findHomography(grid, grid + flow[4::8, 4::8].reshape(-1, 2), cv2.RANSAC, 1.5)
            lawn = cv2.perspectiveTransform(pix.reshape(1, -1, 2), H).reshape(h, w, 2)
            votes += np.linalg.norm(pix + flow - lawn, axis=-1) > 3.0
        off = cv2.morphologyEx((2 * votes >= len(nbrs)).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        k, lab, stats, _ = cv2.connectedComponentsWithStats(off)
        dog = np.zeros_like(off)
        if k > 1:
            dog[lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))] = 1
        dog = cv2.dilate(dog, np.ones((15, 15), np.uint8))
        fractions.append(float(dog.mean()))
        cv2.imwrite(os.path.join(mask_dir, name + ".png"), np.where(dog > 0, 0, 255).astype(np.uint8))
    return float(np.mean(fractions))


def _colmap_model(rec) -> dict:
    """Poses ``{image name: c2w}``, camera, 3D points, the points each image observes and the tracks."""
    poses, seen = {}, {}
    for img in rec.images.values():
        cfw = img.cam_from_world
        cfw = cfw() if callable(cfw) else cfw
        T = np.eye(4)
        T[:3] = cfw.matrix()
        poses[img.name] = np.linalg.inv(T)
        seen[img.name] = np.array([rec.points3D[p.point3D_id].xyz for p in img.points2D if p.has_point3D()])
    tracks = [[(rec.images[e.image_id].name, rec.images[e.image_id].points2D[e.point2D_idx].xy)
               for e in p.track.elements] for p in rec.points3D.values()]
    cam = next(iter(rec.cameras.values()))
    return {"poses": poses, "focal": float(cam.params[0]), "k1": float(cam.params[3]), "model": cam.model.name,
            "params": [float(v) for v in cam.params], "seen": seen,
            "points": np.array([p.xyz for p in rec.points3D.values()]), "tracks": tracks,
            "reproj_px": float(rec.compute_mean_reprojection_error())}


def run_colmap(image_dir: str, work: str, mask_dir: str | None = None, threads: int | None = None) -> dict:
    """pycolmap SfM on a folder of frames: SIFT (masked by ``mask_dir`` if given), sequential matching, then
    both the incremental mapper and the global mapper (GLOMAP) on the same matches.

    Returns ``{"incremental": model, "global": model, "model_sizes": [...], "features_s": s}``, where a
    model is ``_colmap_model`` of the largest reconstruction plus ``seconds`` (features + matching + that
    mapper); a mapper that reconstructs nothing gives ``None``.
    """
    import pycolmap

    n = threads or os.cpu_count() or 2
    t0 = time.perf_counter()
    db = os.path.join(work, "database.db")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    if mask_dir:
        reader.mask_path = mask_dir
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = n
    pycolmap.extract_features(db, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = n
    pycolmap.match_sequential(db, matching_options=matching, device=pycolmap.Device.cpu)
    features_s = time.perf_counter() - t0
    shutil.copy(db, os.path.join(work, "database_global.db"))
    out = {"features_s": features_s}

    t0 = time.perf_counter()
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = n
    opts.mapper.num_threads = n
    os.makedirs(os.path.join(work, "incremental"))
    recs = pycolmap.incremental_mapping(db, image_dir, os.path.join(work, "incremental"), options=opts)
    seconds = features_s + time.perf_counter() - t0
    out["model_sizes"] = sorted((r.num_reg_images() for r in recs.values()), reverse=True)
    out["incremental"] = None
    if recs:
        out["incremental"] = _colmap_model(max(recs.values(), key=lambda r: r.num_reg_images()))
        out["incremental"]["seconds"] = seconds

    t0 = time.perf_counter()
    gopts = pycolmap.GlobalPipelineOptions()
    gopts.num_threads = n
    gopts.mapper.num_threads = n
    os.makedirs(os.path.join(work, "global"))
    recs = pycolmap.global_mapping(os.path.join(work, "database_global.db"), image_dir,
                                   os.path.join(work, "global"), options=gopts)
    seconds = features_s + time.perf_counter() - t0
    out["global"] = None
    if recs:
        out["global"] = _colmap_model(max(recs.values(), key=lambda r: r.num_reg_images()))
        out["global"]["seconds"] = seconds
    return out


def _turn_deg(c2w: np.ndarray) -> float:
    """Angle between the first and the last camera orientation."""
    d = c2w[-1][:3, :3].T @ c2w[0][:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))


def _plane(points: np.ndarray, toward: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane ``n.x + d = 0`` after trimming points beyond 3 median residuals; n faces ``toward``."""
    keep = np.ones(len(points), bool)
    for _ in range(3):
        m = points[keep].mean(0)
        n = np.linalg.svd(points[keep] - m)[2][2]
        r = np.abs((points - m) @ n)
        keep = r <= 3 * np.median(r)
    d = -float(n @ m)
    return (n, d) if n @ toward + d > 0 else (-n, -d)


def _lawn_flatness(c2w: np.ndarray, points: np.ndarray, seen: list[np.ndarray]) -> tuple[float, float]:
    """The lawn is one plane: ``(median |distance| of all 3D points to one fitted plane in % of the mean camera
    height above it, largest angle between the plane of the points frame i observes and that of the first
    frame)``. A bent reconstruction of the lawn shows up in both."""
    centres = c2w[:, :3, 3]
    near = np.linalg.norm(points - centres.mean(0), axis=1)
    points = points[near < 5 * np.median(near)]
    n, d = _plane(points, centres.mean(0))
    residual = 100.0 * float(np.median(np.abs(points @ n + d)) / np.mean(centres @ n + d))
    normals = [_plane(p, T[:3, 3])[0] for T, p in zip(c2w, seen, strict=True) if len(p) >= 20]
    drift = max(np.degrees(np.arccos(np.clip(m @ normals[0], -1, 1))) for m in normals)
    return residual, float(drift)


def _homography_rotations(frames: list[np.ndarray], masks: list[np.ndarray], K: np.ndarray,
                          gaps: tuple[int, ...] = (2, 4, 6)) -> tuple[dict, float]:
    """A plane-aware reference: relative rotations ``{(a, b): R_b<-a}`` from lawn homographies between frames
    ``gaps`` apart (SIFT outside the dog mask, RANSAC at 2 px, >= 40 inliers), decomposed with ``K``. Of the
    decompositions that keep the lawn in front of both cameras, the one whose plane normal (in frame a) agrees
    with frame a's other pairs is taken: the true normal is common to them, the spurious one is not.
    Also returns the median homography inlier ratio."""
    import cv2

    sift = cv2.SIFT_create(4000)
    feats = [sift.detectAndCompute(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), m) for f, m in zip(frames, masks, strict=True)]
    matcher = cv2.BFMatcher()
    Ki = np.linalg.inv(K)
    cands, ratios = {}, []
    for a in range(len(frames)):
        for g in gaps:
            if a + g >= len(frames) or feats[a][1] is None or feats[a + g][1] is None:
                continue
            (k1, d1), (k2, d2) = feats[a], feats[a + g]
            good = [m for m, n in matcher.knnMatch(d1, d2, k=2) if m.distance < 0.75 * n.distance]
            if len(good) < 40:
                continue
            p1 = np.float32([k1[m.queryIdx].pt for m in good])
            p2 = np.float32([k2[m.trainIdx].pt for m in good])
            H, inl = cv2.findHomography(p1, p2, cv2.RANSAC, 2.0, maxIters=5000, confidence=0.9999)
            if H is None or inl.sum() < 40:
                continue
            inl = inl.ravel() > 0
            ratios.append(float(inl.mean()))
            r1 = np.c_[p1[inl], np.ones(inl.sum())] @ Ki.T
            r2 = np.c_[p2[inl], np.ones(inl.sum())] @ Ki.T
            _, Rs, _, ns = cv2.decomposeHomographyMat(H, K)
            ok = [(R, n.ravel()) for R, n in zip(Rs, ns, strict=True)
                  if np.mean(r1 @ n.ravel() > 0) > 0.9 and np.mean(r2 @ (R @ n.ravel()) > 0) > 0.9]
            if ok:
                cands[(a, a + g)] = ok
    def disagreement(n, own, pairs):  # summed angle from normal n to the closest candidate of each other pair
        return sum(min(np.arccos(np.clip(n @ m, -1, 1)) for _, m in cands[p]) for p in pairs if p != own)

    rel = {}
    for a in range(len(frames)):
        mine = [(a, a + g) for g in gaps if (a, a + g) in cands]
        if len(mine) < 2:
            continue
        normal = min(((n, p) for p in mine for _, n in cands[p]), key=lambda c: disagreement(*c, mine))[0]
        for p in mine:
            rel[p] = max(cands[p], key=lambda c: c[1] @ normal)[0]
    return rel, float(np.median(ratios)) if ratios else float("nan")


def _rotation_diffs(rel: dict, c2w: dict[int, np.ndarray]) -> np.ndarray:
    """Angles (deg) between reference relative rotations ``R_b<-a`` and those of a trajectory ``{frame: c2w}``."""
    out = []
    for (a, b), R in rel.items():
        if a in c2w and b in c2w:
            d = R @ (c2w[b][:3, :3].T @ c2w[a][:3, :3]).T
            out.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))
    return np.asarray(out)


def _chained_turn_deg(rel: dict, gap: int) -> tuple[float, int]:
    """Turn angle from frame 0 over the chain of reference rotations ``gap`` apart, and the last frame reached."""
    R, a = np.eye(3), 0
    while (a, a + gap) in rel:
        R, a = rel[(a, a + gap)] @ R, a + gap
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))), a


def _tracks_reproj_px(tracks: list, c2w: dict[str, np.ndarray], focal: float, cx: float, cy: float) -> float:
    """Mean reprojection error of pycolmap's own feature tracks under other poses and a pinhole focal: every
    track is re-triangulated (DLT) from those poses, no adjustment. pycolmap's pixel origin is the corner of
    the first pixel, so (cx, cy) in pixel-centre convention move by half a pixel."""
    K = np.array([[focal, 0, cx + 0.5], [0, focal, cy + 0.5], [0, 0, 1.0]])
    P = {k: K @ np.linalg.inv(T)[:3] for k, T in c2w.items()}
    errs = []
    for track in tracks:
        obs = [(P[name], xy) for name, xy in track if name in P]
        if len(obs) < 2:
            continue
        A = np.concatenate([[x[0] * Pm[2] - Pm[0], x[1] * Pm[2] - Pm[1]] for Pm, x in obs])
        X = np.linalg.svd(A)[2][-1]
        for Pm, x in obs:
            q = Pm @ X
            errs.append(np.hypot(q[0] / q[2] - x[0], q[1] / q[2] - x[1]))
    return float(np.mean(errs))


def dog_vs_colmap(tmp: str, quick: bool) -> list[dict]:
    """Ours vs pycolmap on the dog clip, plus checks that do not need ground truth.

    The clip looks down at a flat lawn while the camera backs away and a dog follows it (nearly fixed in the
    image). pycolmap gets an independent dog mask (``_motion_masks``, from optical flow only). Its incremental
    mapper bends the lawn here (the camera "turns" ~116 deg with it) and its own tracks reproject better
    under our poses, while its global mapper on the same matches keeps the lawn flat: so both are reported,
    with the lawn's flatness, the turn angle and a plane-homography reference for every reconstruction.
    """

    from ...config import preset
    from ...eval.metrics import ate
    from ...io import ArtifactStore
    from ...pipeline import infer

    end = 61 if quick else 121
    cfg = preset("pose_only")
    out = os.path.join(tmp, "ours")
    res = infer(str(DOG), out, cfg, start_frame=0, end_frame=end, frame_skip=2).pose
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    store = ArtifactStore(out)
    ours, _ = store.read_pose(res.name)
    ours = ours.astype(np.float64)
    man = store.read_manifest(res.name)
    n = res.num_frames
    rows = [
        _row("dog-example pose frames/s at 512x288 (calibration pass included)", res.frames_per_second,
             "frames/s", ">= 15", f"{n} frames (0-{end} step 2), {len(res.keyframes)} keyframes, "
             f"{res.seconds:.1f} s", frames=n),
        _row("dog-example pose peak RSS", peak_mb, "MB", "<= 2048 (1000 frames of 720p)",
             "process peak after ingest + pose (before pycolmap runs)"),
        _row("dog-example mean reprojection error (ours)", res.mean_reproj_px, "px"),
    ]
    # the same frames, as images, for pycolmap, and an independent dog mask
    img_dir, mask_dir = os.path.join(tmp, "images"), os.path.join(tmp, "masks")
    frames, masks, masked = frames_and_motion_masks(store, res.name, img_dir, mask_dir)
    rows.append(_row("dog-example image masked for pycolmap (dog, from optical flow off the lawn homography)",
                     100.0 * masked, "%", note="independent of our SLAM; mean over frames"))
    cm_dir = os.path.join(tmp, "colmap")
    os.makedirs(cm_dir)
    cm = run_colmap(img_dir, cm_dir, mask_dir, COLMAP_THREADS)
    threads = COLMAP_THREADS or os.cpu_count()
    sizes = ", ".join(map(str, cm["model_sizes"])) or "none"

    # plane-aware reference: lawn homographies decomposed with our focal (the rotations barely depend on it)
    K = np.array([[res.intrinsics[0], 0, res.intrinsics[2]], [0, res.intrinsics[1], res.intrinsics[3]], [0, 0, 1]])
    rel, inlier_ratio = _homography_rotations(frames, masks, K)
    turn_h, last = _chained_turn_deg(rel, 4)
    rows.append(_row("dog-example camera turn over the clip, lawn homographies (chained, 4 frames apart)", turn_h,
                     "deg", note=f"frames 0-{last}; {len(rel)} frame pairs 2-6 apart, median homography inlier "
                     f"ratio {inlier_ratio:.3f} at 2 px (the lawn is a plane)"))

    sm = store.read_sparse_map(res.name)
    kf = np.unique(sm.obs_frame)
    flat = _lawn_flatness(ours[kf], sm.points.astype(np.float64),
                          [sm.points[sm.obs_point[sm.obs_frame == f]].astype(np.float64) for f in kf])
    rows += _reconstruction_rows("ours", ours, dict(enumerate(ours)), flat, rel)
    rows.append(_row("dog-example focal ours", float(res.intrinsics[0]), "px",
                     note=f"hfov {man['pose']['intrinsics']['hfov_deg']:.1f} deg"))

    for kind, label in (("incremental", "pycolmap incremental"), ("global", "pycolmap global (GLOMAP)")):
        m = cm[kind]
        note = f"of {n}" + (f"; models {sizes}, largest used" if kind == "incremental" else "")
        rows.append(_row(f"dog-example frames registered by {label}", len(m["poses"]) if m else 0, "count", note=note))
        if m is None:
            continue
        common = sorted(int(k.split(".")[0]) for k in m["poses"])
        ref = np.stack([m["poses"][f"{i:05d}.png"] for i in common])
        pred = ours[common]
        a = ate(pred, ref, align="sim3")
        names = sorted(m["poses"])
        flat = _lawn_flatness(np.stack([m["poses"][k] for k in names]), m["points"], [m["seen"][k] for k in names])
        rows += [
            _row(f"dog-example translation agreement with {label} (ATE, Sim3)", a["rmse_pct_of_path"], "% of path",
                 note=f"{label} trajectory as reference; rmse {a['rmse']:.4f} over path {a['path_length']:.3f}"),
            _row(f"dog-example rotation agreement with {label}", _rotation_rmse_deg(pred, ref), "deg RMSE"),
        ]
        rows += _reconstruction_rows(label, ref, dict(zip(common, ref, strict=True)), flat, rel)
        rows += [
            _row(f"dog-example focal {label}", m["focal"], "px",
                 note=f"SIMPLE_RADIAL k1 {m['k1']:.4f}, refined in its BA"),
            _row(f"dog-example focal difference ours vs {label}", 100.0 * (res.intrinsics[0] / m["focal"] - 1), "%"),
            _row(f"dog-example mean reprojection error ({label})", m["reproj_px"], "px"),
            _row(f"dog-example {label} wall time", m["seconds"], "s",
                 note=f"SIFT + sequential matching {cm['features_s']:.1f} s + {kind} mapping, "
                 f"pycolmap threads: {threads}"),
            _row(f"dog-example time ratio {label} / ours", m["seconds"] / res.seconds, "x", ">= 10"),
        ]
        if kind == "incremental":
            rows.append(_row("dog-example pycolmap incremental tracks reprojected with our poses and focal",
                             _tracks_reproj_px(m["tracks"], {f"{i:05d}.png": ours[i] for i in range(n)},
                                               *res.intrinsics[[0, 2, 3]]), "px",
                             note=f"mean; tracks re-triangulated, no adjustment; its own solution: "
                             f"{m['reproj_px']:.3f} px"))
    rows += _opencv_pairwise(frames, ours, res.intrinsics)
    return rows


def _reconstruction_rows(label: str, c2w: np.ndarray, by_frame: dict[int, np.ndarray], flat: tuple[float, float],
                         rel: dict) -> list[dict]:
    """Checks of one dog-example reconstruction that need no ground truth."""
    diffs = _rotation_diffs(rel, by_frame)
    rows = [
        _row(f"dog-example camera turn over the clip, {label}", _turn_deg(c2w), "deg"),
        _row(f"dog-example lawn plane-fit residual, {label}", flat[0], "% of height",
             note="median |distance| of the 3D points to one plane / mean camera height above it"),
        _row(f"dog-example lawn normal drift over the clip, {label}", flat[1], "deg",
             note="plane of the points each frame sees vs the first frame's; a flat lawn gives ~0"),
    ]
    if len(diffs):
        rows.append(_row(f"dog-example relative rotation vs lawn homographies, {label}, median", float(np.median(diffs)),
                         "deg", note=f"{len(diffs)} pairs 2-6 frames apart; 90th percentile "
                         f"{np.percentile(diffs, 90):.2f} deg"))
    return rows


def _opencv_pairwise(frames: list[np.ndarray], c2w: np.ndarray, intr: np.ndarray, gap: int = 3) -> list[dict]:
    """A second independent reference: OpenCV 5-point relative rotations of frame pairs ``gap`` apart
    (SIFT, ratio test, RANSAC essential matrix with our focal) against ours, on every pair with >= 30 matches."""
    import cv2

    K = np.array([[intr[0], 0, intr[2]], [0, intr[1], intr[3]], [0, 0, 1.0]])
    sift = cv2.SIFT_create(4000)
    feats = [sift.detectAndCompute(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), None) for f in frames]
    matcher = cv2.BFMatcher()
    diffs = []
    for a in range(0, len(frames) - gap):
        (k1, d1), (k2, d2) = feats[a], feats[a + gap]
        if d1 is None or d2 is None:
            continue
        good = [m for m, n in matcher.knnMatch(d1, d2, k=2) if m.distance < 0.75 * n.distance]
        if len(good) < 30:
            continue
        p1 = np.float32([k1[m.queryIdx].pt for m in good])
        p2 = np.float32([k2[m.trainIdx].pt for m in good])
        E, inl = cv2.findEssentialMat(p1, p2, K, cv2.RANSAC, 0.999, 1.0)
        if E is None or E.shape != (3, 3):
            continue
        _, R, _, _ = cv2.recoverPose(E, p1, p2, K, mask=inl)
        ours_rel = c2w[a + gap][:3, :3].T @ c2w[a][:3, :3]
        d = R @ ours_rel.T
        diffs.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))
    diffs = np.asarray(diffs)
    if not len(diffs):
        return [_row("dog-example pairs usable by OpenCV 5-point", 0, "count")]
    return [
        _row(f"dog-example relative rotation vs OpenCV 5-point (pairs {gap} frames apart), median",
             float(np.median(diffs)), "deg", note=f"{len(diffs)} pairs with >= 30 SIFT matches"),
        _row("dog-example relative rotation vs OpenCV 5-point, 90th percentile", float(np.percentile(diffs, 90)), "deg",
             note="single 5-point pairs sometimes pick a wrong decomposition, so the mean is not robust"),
        _row("dog-example pairs agreeing with OpenCV 5-point within 2 deg", 100.0 * float(np.mean(diffs < 2.0)), "%"),
    ]


def synthetic(tmp: str, quick: bool) -> list[dict]:
    from ...config import PoseConfig
    from ...eval.metrics import ate
    from ...io import ArtifactStore
    from ...pipeline import run_pose
    from ...synth import SceneConfig, generate

    cases = [("forward", "indoor", 50.0, 0), ("orbit", "indoor", 70.0, 0), ("handheld", "indoor", 55.0, 0),
             ("forward", "outdoor", 65.0, 0), ("forward", "indoor", 50.0, 2), ("handheld", "indoor", 55.0, 2),
             ("rotation", "indoor", 60.0, 0)]
    if quick:
        cases = cases[:1]
    rows = []
    for traj, scene, hfov, moving in cases:
        name = f"{traj}_{scene}_{moving}"
        cfg = SceneConfig(trajectory=traj, scene=scene, num_frames=80, width=512, height=384, hfov_deg=hfov,
                          moving_objects=moving, seed=1, name=name)
        res = generate(cfg, os.path.join(tmp, "synth", name))
        root = Path(tmp) / "runs" / name
        (root / "rgb").mkdir(parents=True)
        shutil.copy(res.gt.path("rgb", name), root / "rgb" / f"{name}.mp4")
        store = ArtifactStore(str(root))
        out = run_pose(store, name, PoseConfig())
        pred, _ = store.read_pose(name)
        gt, _ = res.gt.read_pose(name)
        gI, _, _ = res.gt.read_intrinsics(name)
        ferr = 100.0 * abs(out.intrinsics[0] / float(gI[0, 0]) - 1)
        label = f"{scene}/{traj}" + (f", {moving} moving objects" if moving else "")
        note = f"80 frames 512x384, hfov {hfov:.0f} deg, {len(out.keyframes)} keyframes, {out.frames_per_second:.1f} frames/s"
        if traj == "rotation":
            rows.append(_row(f"rotation RMSE {label}", _rotation_rmse_deg(pred.astype(np.float64), gt), "deg",
                             "<= 0.5", note + f", rotation_only={out.rotation_only}"))
        else:
            a = ate(pred.astype(np.float64), gt.astype(np.float64), align="sim3")
            rows.append(_row(f"ATE {label}", a["rmse_pct_of_path"], "% of path", "<= 0.5", note))
        rows.append(_row(f"focal error {label}", ferr, "%", "<= 2"))
    return rows


def run(quick: bool = False) -> list[dict]:
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not hasattr(np, "infty"):
        np.infty = np.inf
    tmp = tempfile.mkdtemp(prefix="vipe-bench-pose-")
    try:
        rows = dog_vs_colmap(tmp, quick)
        rows += synthetic(tmp, quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
