"""COLMAP export benchmark: export time for N frames and P points (text, binary, dense), writer throughput.

A synthetic artifact sequence is generated in a temporary folder: a camera orbiting a cloud of points
in front of a wall, textured frames (H.264), the wall's exact depth, and a sparse map whose points are
observed in every frame they project into. Timings are wall-clock seconds of :func:`export_colmap`
(video decode + JPEG encode + model/PLY writing), best of ``repeats`` runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

SUITE = "colmap"
TITLE = "COLMAP export"


def _look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x = x / np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, center
    return m


def make_benchmark_sequence(root: str, name: str, n_frames: int, width: int, height: int, n_points: int,
                            seed: int = 0) -> dict[str, int]:
    """Write a synthetic sequence (rgb, pose, intrinsics, depth, sparse map); return its sizes."""
    from ...io import ArtifactStore, SparseMap

    rng = np.random.default_rng(seed)
    store = ArtifactStore(root)
    f = 0.8 * width
    cx, cy = (width - 1) / 2, (height - 1) / 2
    wall = 8.0
    t = np.linspace(0, 1, n_frames)
    centers = np.stack([np.sin(3 * t), 0.3 * np.cos(2 * t), 1.5 * t], 1)
    c2w = np.stack([_look_at(c, np.array([0.0, 0.0, wall])) for c in centers])
    pts = np.stack([rng.uniform(-3, 3, n_points), rng.uniform(-2, 2, n_points), rng.uniform(3, 7, n_points)], 1)
    uu, vv = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(uu - cx) / f, (vv - cy) / f, np.ones(uu.shape)], -1)
    obs_f, obs_p, obs_uv = [], [], []

    def frames():
        for i in range(n_frames):
            r, c = c2w[i, :3, :3], c2w[i, :3, 3]
            pc = (pts - c) @ r
            uv = np.stack([f * pc[:, 0] / pc[:, 2] + cx, f * pc[:, 1] / pc[:, 2] + cy], 1)
            vis = (pc[:, 2] > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
            ks = np.nonzero(vis)[0]
            obs_f.append(np.full(len(ks), i))
            obs_p.append(ks)
            obs_uv.append(uv[ks] + rng.normal(0, 0.5, (len(ks), 2)))
            dw = rays @ r.T
            hit = c + ((wall - c[2]) / dw[..., 2])[..., None] * dw
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (np.sin(hit[..., 0] * 9) * 100 + 128).astype(np.uint8)
            img[..., 1] = (np.cos(hit[..., 1] * 7) * 100 + 128).astype(np.uint8)
            img[..., 2] = ((hit[..., 0] + hit[..., 1]) * 40 % 255).astype(np.uint8)
            yield img

    def depths():
        for i in range(n_frames):
            r, c = c2w[i, :3, :3], c2w[i, :3, 3]
            yield ((wall - c[2]) / (rays @ r.T)[..., 2]).astype(np.float32)

    store.write_rgb(name, frames(), fps=30.0)
    store.write_pose(name, c2w.astype(np.float32))
    store.write_intrinsics(name, np.tile(np.array([f, f, cx, cy], np.float32), (n_frames, 1)))
    store.write_depth(name, depths())
    sm = SparseMap(points=pts.astype(np.float32), colors=rng.integers(0, 256, (n_points, 3), dtype=np.uint8),
                   obs_frame=np.concatenate(obs_f).astype(np.int32), obs_point=np.concatenate(obs_p).astype(np.int32),
                   obs_uv=np.concatenate(obs_uv).astype(np.float32))
    store.write_sparse_map(name, sm)
    return {"frames": n_frames, "points": n_points, "observations": len(sm.obs_frame)}


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _writer_throughput(n_points: int, track: int, repeats: int) -> list[dict]:
    from ...export.colmap_format import Camera, SparseModel, write_binary, write_text

    rng = np.random.default_rng(1)
    n_img = 100
    k = n_points * track
    obs_img = np.sort(rng.integers(0, n_img, k))
    model = SparseModel(cameras=[Camera(1, "PINHOLE", 640, 480, [500.0, 500.0, 320.0, 240.0])],
                        image_ids=np.arange(1, n_img + 1), qvec=np.tile([1.0, 0, 0, 0], (n_img, 1)),
                        tvec=np.zeros((n_img, 3)), image_camera_ids=np.ones(n_img, int),
                        image_names=[f"frame_{i:06d}.jpg" for i in range(n_img)], obs_image=obs_img,
                        obs_xy=rng.uniform(0, 640, (k, 2)), obs_point=rng.permutation(np.repeat(np.arange(n_points), track)),
                        point_ids=np.arange(1, n_points + 1), xyz=rng.normal(size=(n_points, 3)),
                        rgb=rng.integers(0, 256, (n_points, 3), dtype=np.uint8), error=rng.random(n_points))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-colmap-") as tmp:
        for label, writer in (("text", write_text), ("bin", write_binary)):
            sec, _ = _best(lambda w=writer, lb=label: w(model, Path(tmp) / lb), repeats)
            rows.append({"suite": SUITE, "name": f"model writer, {label}", "value": round(n_points / sec),
                         "unit": "points/s",
                         "note": f"{n_points} points, track length {track} ({k} observations), {n_img} images; "
                                 f"sparse/0 files only"})
    return rows


def run(quick: bool = False) -> list[dict]:
    """Measure export times; ``quick`` uses a small sequence (for smoke runs)."""
    from ...export.colmap import export_colmap
    from ...io import ArtifactStore

    if quick:
        n_frames, width, height, n_points, repeats, wpoints = 24, 320, 240, 500, 1, 20_000
    else:
        n_frames, width, height, n_points, repeats, wpoints = 120, 640, 480, 5000, 2, 200_000
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-colmap-") as tmp:
        sizes = make_benchmark_sequence(tmp, "bench", n_frames, width, height, n_points)
        store = ArtifactStore(tmp)
        desc = f"{n_frames} frames {width}x{height}, {n_points} sparse points, {sizes['observations']} observations"
        for fmt in ("text", "bin"):
            sec, res = _best(lambda f=fmt: export_colmap(store, "bench", str(Path(tmp) / f"out_{f}"), fmt=f,
                                                         update_manifest=False), repeats)
            rows.append({"suite": SUITE, "name": f"export {fmt}, sparse, {n_frames} frames {width}x{height}",
                         "value": round(sec, 3), "unit": "s", "frames": n_frames,
                         "note": f"{desc}; video decode + JPEG q95 4:4:4 + tracks + stats + sparse/0 + PLY"})
        sec, res = _best(lambda: export_colmap(store, "bench", str(Path(tmp) / "out_dense"), fmt="bin", dense=True,
                                               depth_step=4, update_manifest=False), repeats)
        dense = res.stats["dense"]
        rows.append({"suite": SUITE, "name": f"export bin, sparse + dense, {n_frames} frames {width}x{height}",
                     "value": round(sec, 3), "unit": "s", "frames": n_frames,
                     "note": f"depth_step 4, pixel_step 4: {dense['num_samples']} reliable samples -> "
                             f"{dense['num_points_ply']} voxels (PLY), {res.num_dense_points} seen in >= 2 images "
                             f"(points3D)"})
        err = res.stats["sparse"]["reprojection_error_px"]["mean"]
        rows.append({"suite": SUITE, "name": "mean reprojection error of exported sparse points", "value": round(err, 3),
                     "unit": "px", "target": "0.627 (Rayleigh mean of the 0.5 px noise)",
                     "note": "observations = exact projections + 0.5 px Gaussian noise"})
    rows += _writer_throughput(wpoints, 4, repeats)
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in run(quick="--quick" in sys.argv):
        sys.stdout.write(json.dumps(row) + "\n")
