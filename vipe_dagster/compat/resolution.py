"""Artifacts at the source resolution (``--output_resolution source``), as ViPE writes them.

The pipeline runs at the processing size (``--long_side``). Afterwards :func:`to_source_resolution` rewrites
the per-frame artifacts of the sequence at the source video's size, in the same generation:

- ``rgb``: the same source frames decoded again at full size (through the same pinhole rectification when the
  pose stage rectified a lens distortion), so no detail is lost to an up-sampling;
- ``intrinsics``: scaled with the pixel-corner convention ``f' = s f``, ``c' = s (c + 0.5) - 0.5``;
- ``depth``: up-sampled bilinearly where the 3x3 neighbourhood is smooth and valid, nearest elsewhere (no
  flying pixels across depth edges; invalid pixels stay invalid);
- ``mask``: nearest-neighbour up-sampling of the instance ids;
- ``vipe/<n>_sparse.npz``: observations scaled like pixels (3-D points unchanged).

Poses do not depend on the image size. Files are rewritten in the order their generation record demands
(rgb, intrinsics, then depth and masks, which record the intrinsics they were computed with). The manifest
says ``output_resolution.complete: false`` while the files are rewritten, and every reader refuses such a set
(:func:`vipe_dagster.io.generation.check_set`), so a killed rewrite never pairs a full-size rgb with
processing-size intrinsics; the next run of the sequence starts a new generation.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from .. import camera as cammod
from ..errors import ConfigError
from ..io import ArtifactStore, VideoStream, open_video
from ..io.artifacts import SparseMap

log = logging.getLogger(__name__)

MODES = ("processing", "source")
EDGE_REL = 0.05  # relative depth range in a 3x3 window above which up-sampling takes the nearest value


def check_output_resolution(mode: str, stream: VideoStream) -> tuple[int, int]:
    """Validate ``--output_resolution`` against the opened source before any work; returns the source size."""
    if mode not in MODES:
        raise ConfigError(f"--output_resolution must be one of {', '.join(MODES)}, got {mode!r}")
    w, h = stream.info.width, stream.info.height
    if mode == "source" and (w % 2 or h % 2):
        raise ConfigError(
            f"--output_resolution source: {stream.info.uri} is {w}x{h}, but the H.264 rgb artifact "
            f"needs even sides; use --output_resolution processing"
        )
    return w, h


def scale_intrinsics(intr: np.ndarray, sx: float, sy: float, camera_types="PINHOLE") -> np.ndarray:
    """fx fy cx cy (+ extra columns unchanged) scaled by (sx, sy); PANORAMA zeros stay zeros
    (:func:`vipe_dagster.camera.scale_intrinsics`)."""
    return cammod.scale_intrinsics(intr, sx, sy, camera_types)


def upsample_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Depth map to (height, width): bilinear inside smooth valid regions, nearest at edges and holes."""
    d = np.asarray(depth, np.float32)
    near = cv2.resize(d, (width, height), interpolation=cv2.INTER_NEAREST)
    valid = np.isfinite(d) & (d > 0)
    big = np.float32(np.finfo(np.float32).max)
    hi = cv2.dilate(np.where(valid, d, 0).astype(np.float32), np.ones((3, 3), np.uint8))
    lo = cv2.erode(np.where(valid, d, big).astype(np.float32), np.ones((3, 3), np.uint8))
    all_valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        smooth = all_valid & ((hi - lo) <= EDGE_REL * np.where(valid, d, 1))
    lin = cv2.resize(
        np.where(valid, d, 0).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    use_lin = cv2.resize(smooth.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return np.where(use_lin, lin, near).astype(np.float32)


def to_source_resolution(
    store: ArtifactStore,
    name: str,
    source: str,
    start_frame: int | None = None,
    end_frame: int | None = None,
    frame_skip: int = 1,
    progress: bool = False,
) -> dict:
    """Rewrite the sequence's per-frame artifacts at the source size (see the module docstring).

    Returns what was done (also recorded in the manifest under ``output_resolution``).
    """
    from tqdm import tqdm

    src = open_video(source, start_frame, end_frame, frame_skip, long_side=0)
    proc = store.open_rgb(name)
    W, H, w, h = src.width, src.height, proc.width, proc.height
    info = {"mode": "source", "processing_size": [w, h], "output_size": [W, H], "resampled": False}
    if (W, H) == (w, h):
        _record(store, name, info)
        return info
    if len(src) != len(proc):
        raise ConfigError(
            f"{source}: {len(src)} frames selected but {store.path('rgb', name)} has {len(proc)}; "
            f"cannot write the artifacts at the source size"
        )
    sx, sy = W / w, H / h
    # readers refuse the set while this is false (io/generation.check_set): a killed rewrite is never paired
    _record(store, name, {**info, "complete": False})
    intr, inds, types = store.read_intrinsics(name)
    new_intr = scale_intrinsics(intr, sx, sy, types).astype(np.float32)
    manifest = store.read_manifest(name)
    dist = ((manifest.get("pose") or {}).get("intrinsics") or {}).get("distortion") or {}
    remap = None
    lens = manifest.get("camera") or {}
    if lens.get("rectified"):  # a given lens rectified at ingest: the same rectification at the source size
        src_intr = np.array(lens["lens"]["params_processing_px"], np.float64)
        src_intr[:4] = scale_intrinsics(src_intr[:4], sx, sy)  # distortion acts on normalised coordinates
        given = cammod.camera_from_params(lens["lens"]["model"], src_intr)
        remap = cammod.rectify_maps(given, new_intr[0, :4].astype(np.float64), W, H)
    elif dist.get("rectified"):
        from ..slam.geometry import distort_radial

        radial = np.array([float(dist.get("k1", 0.0)), float(dist.get("k2", 0.0))])
        gx, gy = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
        mp = distort_radial(np.stack([gx.ravel(), gy.ravel()], 1), new_intr[0].astype(np.float64), radial)
        remap = (mp[:, 0].reshape(H, W).astype(np.float32), mp[:, 1].reshape(H, W).astype(np.float32))
    with store.rgb_writer(name, proc.fps) as wr:
        for _, frame in tqdm(
            src, total=len(src), disable=not progress, desc=f"rgb {name} {W}x{H}", unit="frame"
        ):
            if remap is not None:
                frame = cv2.remap(frame, remap[0], remap[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            wr.add(frame)
    store.write_intrinsics(name, new_intr, inds=inds, camera_type=types[0] if types else "PINHOLE")
    done = ["rgb", "intrinsics"]
    if _is_zip_depth(store, name):  # depth given as .npy files is the user's and stays as given
        with store.depth_writer(name) as dw:
            for _, d in tqdm(
                store.iter_depth(name),
                total=store.depth_count(name),
                disable=not progress,
                desc=f"depth {name} {W}x{H}",
                unit="frame",
            ):
                dw.add(upsample_depth(d, W, H))
        done.append("depth")
    if store.exists("mask", name):
        phrases = store.read_phrases(name) if store.exists("phrases", name) else {}
        with store.mask_writer(name) as mw:
            for _, m in store.iter_masks(name):
                mw.add(cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST))
        store.write_phrases(name, phrases)
        done.append("mask")
    if store.exists("sparse", name):
        sm = store.read_sparse_map(name)
        uv = sm.obs_uv.astype(np.float64)
        uv[:, 0] = (uv[:, 0] + 0.5) * sx - 0.5
        uv[:, 1] = (uv[:, 1] + 0.5) * sy - 0.5
        store.write_sparse_map(
            name,
            SparseMap(sm.points, sm.colors, sm.obs_frame, sm.obs_point, uv.astype(np.float32), sm.keyframes),
        )
        done.append("sparse")
    info.update(
        resampled=True,
        complete=True,
        scale=[sx, sy],
        rewritten=done,
        rectified=bool(remap is not None),
        intrinsics_first_frame=[round(float(v), 4) for v in new_intr[0, :4]],
    )
    _record(store, name, info)
    log.info(
        "%s: artifacts written at the source size %dx%d (processed at %dx%d): %s",
        name,
        W,
        H,
        w,
        h,
        ", ".join(done),
    )
    return info


def _is_zip_depth(store: ArtifactStore, name: str) -> bool:
    from ..io import fs

    return fs.exists(store.path("depth", name))


def _record(store: ArtifactStore, name: str, info: dict) -> None:
    frames = store.read_manifest(name).get("frames")
    sections: dict = {"output_resolution": info}
    if isinstance(frames, dict):
        sections["frames"] = {**frames, "width": info["output_size"][0], "height": info["output_size"][1]}
    store.update_manifest(name, "output_resolution", sections)
