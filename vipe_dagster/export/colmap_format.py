"""COLMAP sparse model files (``cameras``, ``images``, ``points3D``) in text and binary form.

Written from COLMAP's published format description:

- text: ``cameras.txt`` lines ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]``; ``images.txt`` two lines per
  image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then ``POINTS2D[] as (X, Y, POINT3D_ID)``
  (``-1`` for a keypoint without a 3D point; an image without keypoints has an empty second line);
  ``points3D.txt`` lines ``POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID, POINT2D_IDX)``.
- binary, little-endian: ``cameras.bin`` = uint64 count, then per camera uint32 id, int32 model id,
  uint64 width, uint64 height, float64 params; ``images.bin`` = uint64 count, then per image uint32 id,
  float64 qw qx qy qz tx ty tz, uint32 camera id, NUL-terminated name, uint64 number of points2D, then
  per point2D float64 x, float64 y, uint64 point3D id (2**64-1 for none); ``points3D.bin`` = uint64
  count, then per point uint64 id, float64 xyz, uint8 rgb, float64 error, uint64 track length, then per
  track element uint32 image id, uint32 point2D index.

Poses are world-to-camera (``x_cam = R(q) x_world + t``), quaternions Hamilton ``(w, x, y, z)``. Image
coordinates follow COLMAP: the centre of the top-left pixel is (0.5, 0.5).

The model is held as flat arrays: observations are sorted by image, and a point's track is derived
from the observations that reference it, so POINTS2D and tracks agree by construction.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# model name -> (model id, number of params), from COLMAP's camera model list
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3),
    "PINHOLE": (1, 4),
    "SIMPLE_RADIAL": (2, 4),
    "RADIAL": (3, 5),
    "OPENCV": (4, 8),
    "OPENCV_FISHEYE": (5, 8),
    "FULL_OPENCV": (6, 12),
    "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4),
    "RADIAL_FISHEYE": (9, 5),
    "THIN_PRISM_FISHEYE": (10, 12),
}
INVALID_POINT3D_ID = np.uint64(2**64 - 1)


@dataclass
class Camera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64

    def __post_init__(self) -> None:
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown COLMAP camera model {self.model!r}")
        self.params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        n = CAMERA_MODELS[self.model][1]
        if self.params.shape != (n,):
            raise ValueError(f"COLMAP {self.model} takes {n} params, got {self.params.shape[0]}")


@dataclass
class SparseModel:
    """A COLMAP reconstruction as flat arrays.

    Images ``0..I-1`` carry ``image_ids``; observations are sorted by ``obs_image`` (index into the
    image arrays) and numbered per image in that order (their POINT2D_IDX). ``obs_point`` is an index
    into the point arrays or -1. Point ids are ``point_ids``.
    """

    cameras: list[Camera]
    image_ids: np.ndarray  # (I,) int
    qvec: np.ndarray  # (I,4) w x y z
    tvec: np.ndarray  # (I,3)
    image_camera_ids: np.ndarray  # (I,) int
    image_names: list[str]
    obs_image: np.ndarray  # (K,) int, index into images, non-decreasing
    obs_xy: np.ndarray  # (K,2) float64, COLMAP pixel coordinates
    obs_point: np.ndarray  # (K,) int, index into points or -1
    point_ids: np.ndarray  # (P,) int
    xyz: np.ndarray  # (P,3) float64
    rgb: np.ndarray  # (P,3) uint8
    error: np.ndarray  # (P,) float64
    header_notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.obs_image = np.asarray(self.obs_image, dtype=np.int64)
        if len(self.obs_image) and np.any(np.diff(self.obs_image) < 0):
            raise ValueError("observations must be sorted by image")
        self.obs_point = np.asarray(self.obs_point, dtype=np.int64)
        self.obs_xy = np.asarray(self.obs_xy, dtype=np.float64).reshape(-1, 2)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_points(self) -> int:
        return len(self.point_ids)

    def image_offsets(self) -> np.ndarray:
        """(I+1,) start of each image's observations in the observation arrays."""
        return np.searchsorted(self.obs_image, np.arange(self.num_images + 1), side="left")

    def point2d_idx(self) -> np.ndarray:
        """(K,) POINT2D_IDX of every observation (its rank within its image)."""
        off = self.image_offsets()
        return np.arange(len(self.obs_image)) - off[self.obs_image]

    def tracks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offsets (P+1,), image_ids (T,), point2d_idx (T,))`` sorted by point, then image, then index."""
        has = np.nonzero(self.obs_point >= 0)[0]
        order = has[np.lexsort((has, self.obs_point[has]))]  # by point, then observation order
        counts = np.bincount(self.obs_point[order], minlength=self.num_points) if len(order) else \
            np.zeros(self.num_points, np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return offsets, self.image_ids[self.obs_image[order]], self.point2d_idx()[order]


# ------------------------------------------------------------------ text
def _fmt(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def write_text(model: SparseModel, folder: str | os.PathLike) -> list[str]:
    """Write ``cameras.txt``, ``images.txt``, ``points3D.txt`` into ``folder``; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notes = "".join(f"# {n}\n" for n in model.header_notes)

    cam_path = folder / "cameras.txt"
    with open(cam_path, "w", encoding="utf-8") as f:
        f.write("# Camera list with one line of data per camera:\n"
                "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                f"# Number of cameras: {len(model.cameras)}\n")
        for c in model.cameras:
            f.write(f"{c.camera_id} {c.model} {c.width} {c.height} {_fmt(c.params)}\n")

    off = model.image_offsets()
    pid = np.where(model.obs_point >= 0, model.point_ids[np.maximum(model.obs_point, 0)], -1) \
        if model.num_points else np.full(len(model.obs_point), -1, np.int64)
    img_path = folder / "images.txt"
    mean_obs = len(model.obs_image) / max(model.num_images, 1)
    with open(img_path, "w", encoding="utf-8") as f:
        f.write("# Image list with two lines of data per image:\n"
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                f"# Number of images: {model.num_images}, mean observations per image: {mean_obs:.3f}\n")
        f.write(notes)
        for i in range(model.num_images):
            f.write(f"{int(model.image_ids[i])} {_fmt(model.qvec[i])} {_fmt(model.tvec[i])} "
                    f"{int(model.image_camera_ids[i])} {model.image_names[i]}\n")
            s, e = off[i], off[i + 1]
            xy, ids = model.obs_xy[s:e].tolist(), pid[s:e].tolist()
            f.write(" ".join(f"{x!r} {y!r} {p}" for (x, y), p in zip(xy, ids, strict=True)))
            f.write("\n")

    toff, timg, tidx = model.tracks()
    pts_path = folder / "points3D.txt"
    lengths = np.diff(toff)
    mean_track = float(lengths.mean()) if len(lengths) else 0.0
    with open(pts_path, "w", encoding="utf-8") as f:
        f.write("# 3D point list with one line of data per point:\n"
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                f"# Number of points: {model.num_points}, mean track length: {mean_track:.3f}\n")
        f.write(notes)
        xyz, rgb, err = model.xyz.tolist(), model.rgb.tolist(), model.error.tolist()
        timg_l, tidx_l = timg.tolist(), tidx.tolist()
        for p in range(model.num_points):
            s, e = int(toff[p]), int(toff[p + 1])
            track = " ".join(f"{a} {b}" for a, b in zip(timg_l[s:e], tidx_l[s:e], strict=True))
            x, y, z = xyz[p]
            r, g, b = rgb[p]
            f.write(f"{int(model.point_ids[p])} {x!r} {y!r} {z!r} {r} {g} {b} {err[p]!r} {track}\n")
    return [str(cam_path), str(img_path), str(pts_path)]


# ------------------------------------------------------------------ binary
_POINT_HEADER = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"),
                          ("track_len", "<u8")])
_TRACK_ELEM = np.dtype([("image_id", "<u4"), ("point2d_idx", "<u4")])
_POINT2D = np.dtype([("xy", "<f8", (2,)), ("point3d_id", "<u8")])


def write_binary(model: SparseModel, folder: str | os.PathLike) -> list[str]:
    """Write ``cameras.bin``, ``images.bin``, ``points3D.bin`` into ``folder``; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    cam_path = folder / "cameras.bin"
    with open(cam_path, "wb") as f:
        f.write(struct.pack("<Q", len(model.cameras)))
        for c in model.cameras:
            f.write(struct.pack("<IiQQ", c.camera_id, CAMERA_MODELS[c.model][0], c.width, c.height))
            f.write(c.params.astype("<f8").tobytes())

    off = model.image_offsets()
    pid = np.full(len(model.obs_point), INVALID_POINT3D_ID, np.uint64)
    has = model.obs_point >= 0
    pid[has] = model.point_ids[model.obs_point[has]].astype(np.uint64)
    img_path = folder / "images.bin"
    with open(img_path, "wb") as f:
        f.write(struct.pack("<Q", model.num_images))
        for i in range(model.num_images):
            f.write(struct.pack("<I", int(model.image_ids[i])))
            f.write(np.concatenate([model.qvec[i], model.tvec[i]]).astype("<f8").tobytes())
            f.write(struct.pack("<I", int(model.image_camera_ids[i])))
            f.write(model.image_names[i].encode("utf-8") + b"\x00")
            s, e = off[i], off[i + 1]
            rec = np.empty(e - s, _POINT2D)
            rec["xy"] = model.obs_xy[s:e]
            rec["point3d_id"] = pid[s:e]
            f.write(struct.pack("<Q", e - s))
            f.write(rec.tobytes())

    toff, timg, tidx = model.tracks()
    lengths = np.diff(toff).astype(np.int64)
    p = model.num_points
    head = np.empty(p, _POINT_HEADER)
    head["id"] = model.point_ids
    head["xyz"] = model.xyz
    head["rgb"] = model.rgb
    head["error"] = model.error
    head["track_len"] = lengths
    elems = np.empty(len(timg), _TRACK_ELEM)
    elems["image_id"] = timg
    elems["point2d_idx"] = tidx
    hs, es = _POINT_HEADER.itemsize, _TRACK_ELEM.itemsize
    # interleave fixed headers and variable-length tracks into one buffer without a Python loop
    starts = np.arange(p, dtype=np.int64) * hs + toff[:-1] * es
    buf = np.empty(p * hs + len(timg) * es, np.uint8)
    if p:
        buf[(starts[:, None] + np.arange(hs)).ravel()] = head.view(np.uint8)
    if len(timg):
        elem_start = np.repeat(starts + hs, lengths) + (np.arange(len(timg)) - np.repeat(toff[:-1], lengths)) * es
        buf[(elem_start[:, None] + np.arange(es)).ravel()] = elems.view(np.uint8)
    pts_path = folder / "points3D.bin"
    with open(pts_path, "wb") as f:
        f.write(struct.pack("<Q", p))
        f.write(buf.tobytes())
    return [str(cam_path), str(img_path), str(pts_path)]


def write_model(model: SparseModel, folder: str | os.PathLike, fmt: str) -> list[str]:
    if fmt == "text":
        return write_text(model, folder)
    if fmt == "bin":
        return write_binary(model, folder)
    raise ValueError(f"COLMAP format must be 'text' or 'bin', got {fmt!r}")
