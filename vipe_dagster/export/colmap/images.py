"""One pass over the rgb video: the exported frames as JPEG, and the depth samples of the dense frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...depth.reliable import sample_reliable_points
from ...errors import ArtifactError
from ...io import ArtifactStore
from ..mei import MeiRectifier
from .cameras import PIXEL_SHIFT, ImageSet
from .dense import sample_mei


def _jpeg_params(quality: int) -> list[int]:
    # full-resolution chroma (4:4:4): 4:2:0 re-subsampling of the already 4:2:0 video smears colour edges
    return [int(cv2.IMWRITE_JPEG_QUALITY), int(quality),
            int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)]


def _depth_samples(depth: np.ndarray, rgb: np.ndarray, image: int, intr: np.ndarray, c2w: np.ndarray,
                   rect: MeiRectifier | None, pixel_step: int) -> dict[str, np.ndarray]:
    """Reliable depth pixels of one frame on the sampling grid: world points, colours, COLMAP pixels, depth."""
    if rect is None:
        xyz, u, v = sample_reliable_points(depth, intr[:4], c2w, step=pixel_step)
        xy = np.stack([u, v], 1).astype(np.float64)
    else:
        xyz, u, v, xy = sample_mei(depth, rect, c2w, pixel_step)
    return {"image": np.full(len(u), image, np.int64), "xyz": xyz, "rgb": rgb[v, u], "xy": xy + PIXEL_SHIFT,
            "z": depth[v, u]}


def write_images_and_sample(store: ArtifactStore, name: str, images: ImageSet, intr: np.ndarray, c2w: np.ndarray,
                            img_dir: Path, jpeg_quality: int, dense_rows: set[int], pixel_step: int,
                            progress: bool) -> list[dict[str, np.ndarray]]:
    """Stream the rgb video once: write each exported frame as JPEG; sample dense points on depth frames.

    ``intr``/``c2w``: the intrinsics rows and poses of the exported images; ``dense_rows``: indices of the
    images that contribute dense points.
    """
    frame_ids, names = images.frame_ids, images.names
    want = {int(f): i for i, f in enumerate(frame_ids)}
    dense_frames = [int(frame_ids[i]) for i in sorted(dense_rows)]
    depth_iter = store.iter_depth(name, dense_frames) if dense_frames else iter(())
    depth_uri = store.path("depth", name)
    parts: list[dict[str, np.ndarray]] = []
    stream = store.open_rgb(name, start_frame=int(frame_ids[0]), end_frame=int(frame_ids[-1]))
    it = iter(stream)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(stream), desc=f"colmap {name}", unit="frame")
    params = _jpeg_params(jpeg_quality)
    written = 0
    for fidx, rgb in it:
        i = want.get(int(fidx))
        if i is None:
            continue
        rect = images.image_rect[i]
        out_rgb = rgb if rect is None else rect.image(rgb)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out_rgb, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ArtifactError(f"{store.path('rgb', name)} frame {fidx}: JPEG encoding failed")
        (img_dir / names[i]).write_bytes(buf.tobytes())
        written += 1
        if i in dense_rows:
            d_idx, depth = next(depth_iter)
            if d_idx != fidx:
                raise ArtifactError(f"{depth_uri}: expected depth frame {fidx}, got {d_idx}")
            if depth.shape != rgb.shape[:2]:
                raise ArtifactError(f"{depth_uri} frame {fidx}: depth is {depth.shape[1]}x{depth.shape[0]}, "
                                    f"expected {rgb.shape[1]}x{rgb.shape[0]} like the rgb video")
            parts.append(_depth_samples(depth, rgb, i, intr[i], c2w[i], rect, pixel_step))
    if written != len(frame_ids):
        raise ArtifactError(f"{store.path('rgb', name)}: decoded {written} of {len(frame_ids)} selected frames")
    return parts
