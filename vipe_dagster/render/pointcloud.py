"""Point clouds from ViPE-format artifacts (the EgoX ego-prior semantics, with its bugs fixed).

- **Mean background**: per pixel, the mean over frames of depth and colour where the pixel is static
  (instance id 0, or everything without masks) and reliable; unprojected once with the first frame's pose
  and intrinsics, then filtered by reliability of the mean depth. Running sums keep memory at O(H*W).
- **All-frames background**: every frame's reliable static points, concatenated, optionally de-duplicated on
  a voxel grid (the reference concatenates without de-duplication).
- **Dynamic points**: for one frame, reliable pixels whose instance id is non-zero and whose phrase is not
  ``sky`` (the reference counts sky as dynamic). Produced while streaming the artifacts once, so the cost is
  linear in the number of frames (the reference re-reads everything for every frame).

Pixels are sampled on the integer grid ``u, v in {0, step, 2 step, ...}`` (no half-pixel offset), rays are
those of the frame's camera model (:func:`vipe_dagster.camera.pixel_rays`: ``((u - cx) / fx, (v - cy) / fy,
1)`` for PINHOLE z-depth, the unified unprojection for MEI, unit equirectangular rays for PANORAMA ray
distance), colours are ``uint8``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import camera as cammod
from ..depth.reliable import reliable_depth_mask, sample_reliable_points
from ..errors import ArtifactError
from ..io import ArtifactStore
from ..io.checks import check_intrinsics

log = logging.getLogger(__name__)

STATIC_PHRASES = ("background", "sky")


@dataclass
class PointCloud:
    xyz: np.ndarray  # (N,3) float32 world coordinates
    rgb: np.ndarray  # (N,3) uint8

    def __len__(self) -> int:
        return len(self.xyz)

    @staticmethod
    def empty() -> PointCloud:
        return PointCloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))

    def transformed(self, T: np.ndarray) -> PointCloud:
        """``T[:3, :3] p + T[:3, 3]`` for every point, in float64, stored as float32 (one column at a time:
        numpy's matmul of an (N, 3) by a 3 x 3 matrix is an order of magnitude slower)."""
        T = np.asarray(T, np.float64)
        src = self.xyz.astype(np.float64)
        xyz = np.empty((len(src), 3), np.float32)
        for i in range(3):
            xyz[:, i] = src[:, 0] * T[i, 0] + src[:, 1] * T[i, 1] + src[:, 2] * T[i, 2] + T[i, 3]
        return PointCloud(xyz, self.rgb)

    def __add__(self, other: PointCloud) -> PointCloud:
        return PointCloud(np.concatenate([self.xyz, other.xyz]), np.concatenate([self.rgb, other.rgb]))


def reliable_points(depth: np.ndarray, rgb: np.ndarray, intr: np.ndarray, c2w: np.ndarray, step: int,
                    mask: np.ndarray | None = None, camera_type: str = "PINHOLE") -> PointCloud:
    """Coloured world points of the reliable pixels (AND ``mask``) on the ``step`` grid (see depth/reliable.py)."""
    xyz, u, v = sample_reliable_points(depth, intr, c2w, step=step, mask=mask, camera_type=camera_type)
    return PointCloud(xyz, rgb[v, u].astype(np.uint8))


def voxel_downsample(pc: PointCloud, voxel: float) -> PointCloud:
    """One point per occupied voxel: the mean position and mean colour of the points inside it."""
    if voxel is None or voxel <= 0 or len(pc) == 0:
        return pc
    keys = np.floor(pc.xyz / voxel).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    xyz = np.zeros((len(counts), 3))
    rgb = np.zeros((len(counts), 3))
    np.add.at(xyz, inv, pc.xyz)
    np.add.at(rgb, inv, pc.rgb.astype(np.float64))
    xyz /= counts[:, None]
    rgb /= counts[:, None]
    return PointCloud(xyz.astype(np.float32), np.clip(np.round(rgb), 0, 255).astype(np.uint8))


@dataclass
class FrameData:
    index: int
    rgb: np.ndarray  # HxWx3 uint8
    depth: np.ndarray  # HxW float32
    mask: np.ndarray | None  # HxW uint8 instance ids
    c2w: np.ndarray  # 4x4
    intr: np.ndarray  # fx fy cx cy [xi]
    camera_type: str = "PINHOLE"


class ArtifactReader:
    """Streams rgb, depth, mask, pose and intrinsics of one sequence in lock-step."""

    def __init__(self, store: ArtifactStore, name: str):
        self.store, self.name = store, name
        for kind in ("pose", "intrinsics", "depth", "rgb"):
            if not store.exists(kind, name):
                what = {"pose": "Pose", "intrinsics": "Intrinsics", "depth": "Depth", "rgb": "RGB video"}[kind]
                raise ArtifactError(f"{what} file not found: {store.path(kind, name)}")
        self.c2w, pose_inds, pcheck = store.pose_check(name)
        if len(pose_inds) == 0:
            raise ArtifactError(f"No pose data found in inference results {store.path('pose', name)}")
        pcheck.raise_if_malformed()  # NaN/inf, shears, reflections: the same rule as to-colmap (io/checks.py)
        intr, iinds, types = store.read_intrinsics(name)
        if len(intr) != len(self.c2w):
            raise ArtifactError(f"{store.path('intrinsics', name)} has {len(intr)} frames but "
                                f"{store.path('pose', name)} has {len(self.c2w)}")
        check_intrinsics(intr, store.path("intrinsics", name), types, iinds).raise_if_bad()
        self.camera_types = [cammod.normalize_type(t) for t in types]  # PINHOLE, MEI and PANORAMA unproject
        store.check_set(name, ("rgb", "pose", "intrinsics", "camera", "depth", "mask", "phrases"))
        self.usable = pcheck.usable  # frames flagged invalid (tracking lost) contribute no points
        if not self.usable.any():
            raise ArtifactError(f"{store.path('pose', name)}: every frame is flagged invalid "
                                f"(tracking lost); no point cloud can be built")
        self.intr = intr
        self.num_frames = len(self.c2w)
        self.has_mask = store.exists("mask", name)
        if self.has_mask:
            phrases = store.read_phrases(name) if store.exists("phrases", name) else {}
            self.static_ids = {i for i, p in phrases.items() if p.strip().lower() in STATIC_PHRASES} | {0}

    @property
    def inference_range(self) -> tuple[int, int]:
        return 0, self.num_frames - 1

    def frames(self, first: int = 0, last: int | None = None) -> Iterator[FrameData]:
        last = self.num_frames - 1 if last is None else last
        wanted = range(first, last + 1)
        rgb_it = iter(self.store.open_rgb(self.name))
        depth_it = self.store.iter_depth(self.name, wanted)
        mask_it = self.store.iter_masks(self.name, wanted) if self.has_mask else None
        i = -1
        for i, (_, depth) in zip(wanted, depth_it, strict=False):
            rgb = None
            for j, frame in rgb_it:
                if j == i:
                    rgb = frame
                    break
            if rgb is None:
                raise ArtifactError(f"{self.store.path('rgb', self.name)}: frame {i} is missing")
            mask = next(mask_it)[1] if mask_it is not None else None
            if rgb.shape[:2] != depth.shape or (mask is not None and mask.shape != depth.shape):
                raise ArtifactError(
                    f"{self.name} frame {i}: rgb {rgb.shape[:2]}, depth {depth.shape}"
                    f"{'' if mask is None else f', mask {mask.shape}'} must all have the same HxW")
            yield FrameData(i, rgb, depth, mask, self.c2w[i], self.intr[i], self.camera_types[i])
        if i != last:
            raise ArtifactError(f"{self.store.path('depth', self.name)}: frames end at {i}, expected up to {last}")

    def static_mask(self, f: FrameData) -> np.ndarray:
        if f.mask is None:
            return np.ones(f.depth.shape, bool)
        return np.isin(f.mask, list(self.static_ids))


def mean_background(reader: ArtifactReader, first: int, last: int, step: int = 2) -> PointCloud:
    """Per-pixel mean of static, reliable depth and colour over frames ``first..last``, unprojected once."""
    sum_d = sum_c = cnt = None
    ref: FrameData | None = None
    for f in reader.frames(first, last):
        if not reader.usable[f.index]:
            continue
        valid = reader.static_mask(f) & reliable_depth_mask(f.depth)
        if sum_d is None:
            sum_d = np.zeros(f.depth.shape, np.float64)
            sum_c = np.zeros(f.rgb.shape, np.float64)
            cnt = np.zeros(f.depth.shape, np.int64)
            ref = f
        sum_d[valid] += f.depth[valid]
        sum_c[valid] += f.rgb[valid]
        cnt += valid
    if ref is None or sum_d is None or sum_c is None or cnt is None:
        return PointCloud.empty()  # no usable frame in the range
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_d = np.where(cnt > 0, sum_d / cnt, 0.0)
        mean_c = np.where(cnt[..., None] > 0, sum_c / np.maximum(cnt, 1)[..., None], 0.0)
    rgb = np.clip(np.trunc(mean_c), 0, 255).astype(np.uint8)
    return reliable_points(mean_d.astype(np.float32), rgb, ref.intr, ref.c2w, step, camera_type=ref.camera_type)


def all_frames_background(reader: ArtifactReader, first: int, last: int, step: int = 2,
                          voxel: float | None = None) -> PointCloud:
    parts = []
    for f in reader.frames(first, last):
        if not reader.usable[f.index]:
            continue
        parts.append(reliable_points(f.depth, f.rgb, f.intr, f.c2w, step, mask=reader.static_mask(f),
                                     camera_type=f.camera_type))
        if voxel:
            # de-duplicate as we go so memory follows the scene size, not the frame count
            merged = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])
            parts = [voxel_downsample(merged, voxel)]
    if not parts:
        return PointCloud.empty()
    return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])


def dynamic_points(reader: ArtifactReader, f: FrameData, step: int = 2) -> PointCloud:
    if f.mask is None or not reader.usable[f.index]:
        return PointCloud.empty()
    return reliable_points(f.depth, f.rgb, f.intr, f.c2w, step, mask=~reader.static_mask(f),
                           camera_type=f.camera_type)


def iter_dynamic_points(reader: ArtifactReader, first: int, last: int, step: int = 2) -> Iterator[PointCloud]:
    """:func:`dynamic_points` of every frame ``first..last``, in order, decoding only what is needed.

    The mask of each frame is read first; depth and colour are decoded only for frames that hold dynamic
    (non-static) pixels, so a result without masks, or whose masks are all static, costs nothing per frame.
    """
    if not reader.has_mask:
        for _ in range(first, last + 1):
            yield PointCloud.empty()
        return
    store, name = reader.store, reader.name
    static = np.array(sorted(reader.static_ids))
    is_static = np.zeros(256, bool)
    is_static[static[(static >= 0) & (static < 256)]] = True
    only_zero = reader.static_ids == {0}
    rgb_it = None
    rgb_at = -1
    rgb_frame = None
    for i, mask in store.iter_masks(name, range(first, last + 1)):
        if not reader.usable[i] or (only_zero and not mask.any()):
            yield PointCloud.empty()
            continue
        dyn = ~is_static[mask] if mask.dtype == np.uint8 else ~np.isin(mask, static)
        if not dyn.any():
            yield PointCloud.empty()
            continue
        depth = store.read_depth(name, i)
        if rgb_it is None:
            rgb_it = iter(store.open_rgb(name))
        while rgb_at < i:
            try:
                rgb_at, rgb_frame = next(rgb_it)
            except StopIteration:
                raise ArtifactError(f"{store.path('rgb', name)}: frame {i} is missing") from None
        if rgb_frame is None or rgb_frame.shape[:2] != depth.shape or mask.shape != depth.shape:
            raise ArtifactError(f"{name} frame {i}: rgb {None if rgb_frame is None else rgb_frame.shape[:2]}, "
                                f"depth {depth.shape}, mask {mask.shape} must all have the same HxW")
        yield reliable_points(depth, rgb_frame, reader.intr[i], reader.c2w[i], step, mask=dyn,
                              camera_type=reader.camera_types[i])


def build_background(reader: ArtifactReader, use_mean_bg: bool, step: int, voxel_size: float | None) -> PointCloud:
    """The background cloud of the whole inference clip, in the exo result's world (before the exo pose)."""
    a, b = reader.inference_range
    if use_mean_bg:
        bg = mean_background(reader, a, b, step)
    else:
        bg = all_frames_background(reader, a, b, step, voxel_size)
    return voxel_downsample(bg, voxel_size) if voxel_size else bg
