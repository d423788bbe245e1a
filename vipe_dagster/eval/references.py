"""Independent references for the pose and real-footage suites: they never read our SLAM output.

- :func:`run_colmap`: pycolmap SfM (SIFT, sequential matching) with both the incremental and the global
  mapper (GLOMAP) on the same matches; :func:`frames_and_motion_masks` writes the frames and a moving-object
  mask made from optical flow alone (:func:`motion_masks`) for it.
- :func:`homography_rotations`: relative rotations from homographies of a ground plane, decomposed with a
  given camera matrix; :func:`chained_turn_deg` chains them into a turn angle.
- :func:`opencv_relative_rotations`: OpenCV 5-point relative rotations of frame pairs.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np


def frames_and_motion_masks(store, name: str, img_dir: str, mask_dir: str) -> tuple[list, list, float]:
    """The processed frames of ``name`` as PNG images in ``img_dir`` (for pycolmap) and their independent
    moving-object masks (:func:`motion_masks`) in ``mask_dir``; returns (frames, masks, mean masked share)."""
    import cv2

    os.makedirs(img_dir)
    frames = []
    for i, frame in store.open_rgb(name):
        frames.append(frame)
        cv2.imwrite(os.path.join(img_dir, f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    masked = motion_masks(img_dir, mask_dir)
    masks = [cv2.imread(os.path.join(mask_dir, f"{i:05d}.png.png"), cv2.IMREAD_GRAYSCALE)
             for i in range(len(frames))]
    return frames, masks, masked


def motion_masks(image_dir: str, mask_dir: str) -> float:
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


def colmap_model(rec) -> dict:
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
    model is ``colmap_model`` of the largest reconstruction plus ``seconds`` (features + matching + that
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
        out["incremental"] = colmap_model(max(recs.values(), key=lambda r: r.num_reg_images()))
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
        out["global"] = colmap_model(max(recs.values(), key=lambda r: r.num_reg_images()))
        out["global"]["seconds"] = seconds
    return out


def homography_rotations(frames: list[np.ndarray], masks: list[np.ndarray], K: np.ndarray,
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


def chained_turn_deg(rel: dict, gap: int) -> tuple[float, int]:
    """Turn angle from frame 0 over the chain of reference rotations ``gap`` apart, and the last frame reached."""
    R, a = np.eye(3), 0
    while (a, a + gap) in rel:
        R, a = rel[(a, a + gap)] @ R, a + gap
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))), a


def opencv_relative_rotations(frames: list[np.ndarray], K: np.ndarray, gap: int = 3) -> dict:
    """OpenCV 5-point relative rotations ``{(a, a + gap): R_b<-a}`` of frame pairs ``gap`` apart (SIFT, ratio
    test, RANSAC essential matrix with ``K``), for every pair with >= 30 matches."""
    import cv2

    sift = cv2.SIFT_create(4000)
    feats = [sift.detectAndCompute(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), None) for f in frames]
    matcher = cv2.BFMatcher()
    rel = {}
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
        rel[(a, a + gap)] = R
    return rel
