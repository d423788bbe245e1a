"""What the viewer shows of a sequence: loaded from the artifacts, drawn as viser scene nodes.

Scene tree (names are stable, tests and users can rely on them): see :mod:`vipe_dagster.viz.viewer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from ...camera import fov_from_focal
from ...errors import ArtifactError, InputError
from ...io import ArtifactStore
from ...io.generation import check_set
from ..ego import EgoRender, find_ego_renders
from ..frames import FrameData, RandomAccessVideo, SequenceSource
from ..geometry import (
    MeanBackground,
    auto_step,
    frustum_segments,
    rotation_to_wxyz,
    unproject_frame,
    up_vector,
)
from ..video import sequence_depth_range

log = logging.getLogger(__package__)

THUMB_LONG_SIDE = 96
CURRENT_LONG_SIDE = 320
EGO_COLOR = (230, 30, 200)


@dataclass
class ViewerOptions:
    max_points_per_frame: int = 60_000
    cache_frames: int = 16
    nearby: int = 2  # thumbnails on each side of the current frame
    overview_frames: int = 24  # frames sampled for the overview cloud
    overview_max_points: int = 400_000
    mean_bg_frames: int = 48
    # the overview / mean background decode their sampled frames exactly (running the decoder forward
    # through the video, in the background) for short videos: at most this many frames and this many
    # frames x pixels (e.g. 650 frames at 640x480); longer videos use the keyframe before each sample
    exact_sampling_max_frames: int = 1000
    exact_sampling_pixels: int = 200_000_000
    play_fps: float = 15.0
    mean_bg_on_start: bool = False  # show the mean background from the start (EgoX ``--use_mean_bg``)


@dataclass
class LoadedSequence:
    """The sequence on screen: its frame source and the drawing scales derived from it."""

    src: SequenceSource
    step: int
    frustum_scale: float
    point_size: float
    nearby_stride: int
    egos: list[EgoRender] = field(default_factory=list)
    depth_range: tuple[float, float] = (0.0, 1.0)
    ego_videos: dict[str, RandomAccessVideo] = field(default_factory=dict)

    def close(self) -> None:
        for v in self.ego_videos.values():
            v.close()
        self.src.close()


# ------------------------------------------------------------------ loading
def viewable_sequences(store: ArtifactStore, sequence: str | None) -> list[str]:
    """Sequences with poses whose artifact files form one run (``sequence``: just that one, or an error)."""
    names = [n for n in store.sequences() if store.exists("pose", n)]
    if not names:
        raise ArtifactError(f"No ViPE artifacts found in {store.root} (expected pose/<name>.npz)")
    if sequence is not None:
        if sequence not in names:
            raise InputError(f"sequence {sequence!r} not found in {store.root}; "
                             f"available: {', '.join(names)}")
        names = [sequence]
    # a set that mixes two runs is refused (one sequence asked for) or left out of the list (all of them)
    consistent = []
    for n in names:
        rep = check_set(store, n)
        if rep.ok:
            consistent.append(n)
        elif sequence is not None:
            rep.raise_if_bad()
        else:
            log.warning("sequence %s left out of the viewer: %s", n, rep.problems[0])
    if not consistent:
        raise ArtifactError(f"no sequence in {store.root} forms one consistent artifact set "
                            f"(first problem: {check_set(store, names[0]).problems[0]})")
    return consistent


def load_sequence(store: ArtifactStore, src: SequenceSource, max_points_per_frame: int) -> LoadedSequence:
    """Grid step, frustum scale and point size from the poses and frame 0's depth; the ego renders."""
    step = auto_step(src.width, src.height, max_points_per_frame)
    centres = src.c2w[src.pose_valid, :3, 3]
    span = float(np.linalg.norm(np.percentile(centres, 95, axis=0) - np.percentile(centres, 5, axis=0)))
    med_depth = 1.0
    fr0 = src.frame(0)
    if fr0.depth is not None:
        valid = fr0.depth[np.isfinite(fr0.depth) & (fr0.depth > 0)]
        if valid.size:
            med_depth = float(np.median(valid))
    scale = 0.06 * max(span, med_depth)
    if span > 0:
        scale = min(scale, 0.5 * span / max(1.0, np.sqrt(src.n)) + 0.02 * span)
    fx = float(src.K(0)[0])
    point_size = max(1e-4, med_depth * step / max(fx, 1e-6))
    egos = find_ego_renders(store, src.name)
    lo = LoadedSequence(src, step, max(scale, 1e-4), point_size, nearby_stride=max(1, src.n // 50), egos=egos,
                        depth_range=sequence_depth_range(src))
    for e in egos:
        if e.video_uri:
            try:
                lo.ego_videos[f"{e.take}_{e.camera}"] = RandomAccessVideo(e.video_uri)
            except ArtifactError as exc:
                log.warning("ego render %s not readable: %s", e.video_uri, exc)
    return lo


# ------------------------------------------------------------------ drawing
def thumb(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def time_colors(n: int) -> np.ndarray:
    """Blue (first frame) to orange (last frame)."""
    t = np.linspace(0.0, 1.0, max(n, 1))[:, None]
    a, b = np.array([40, 110, 255]), np.array([255, 140, 20])
    return np.round(a * (1 - t) + b * t).astype(np.uint8)


def clear_sequence(sc) -> None:
    """Remove every ``/seq/`` node (children first)."""
    for node in sorted((n for n in sc._handle_from_node_name if n.startswith("/seq/")), key=len, reverse=True):
        h = sc._handle_from_node_name.get(node)
        if h is not None:
            h.remove()


def _add_trajectories(sc, lo: LoadedSequence) -> None:
    """All frustums (one line-segment object), the camera path and the ego trajectories."""
    src = lo.src
    Ks = src.draw_intrinsics()
    ok = src.pose_valid
    segs = frustum_segments(src.c2w[ok], Ks[ok], src.width, src.height, lo.frustum_scale)
    cols = np.repeat(time_colors(src.n)[ok], 8, axis=0)[:, None, :].repeat(2, axis=1)
    sc.add_line_segments("/seq/frustums", segs, cols, thickness=1.0, thickness_units="screen")
    centres = src.c2w[:, :3, 3]
    link = ok[:-1] & ok[1:]  # path segments between consecutive valid poses
    if link.any():
        path = np.stack([centres[:-1], centres[1:]], axis=1)[link]
        tc = time_colors(src.n)
        pc = np.stack([tc[:-1], tc[1:]], axis=1)[link]
        sc.add_line_segments("/seq/trajectory", path, pc, thickness=2.5, thickness_units="screen")
    for e in lo.egos:
        if e.c2w is None or len(e.c2w) < 2:
            continue
        key = f"{e.take}_{e.camera}"
        ec = e.c2w[:, :3, 3]
        fin = np.isfinite(ec).all(axis=1)
        elink = fin[:-1] & fin[1:]
        if not elink.any():
            continue
        sc.add_line_segments(f"/seq/ego/{key}/trajectory", np.stack([ec[:-1], ec[1:]], axis=1)[elink],
                             EGO_COLOR, thickness=2.5, thickness_units="screen")


def add_static_scene(server, lo: LoadedSequence) -> None:
    """Frustums, trajectories, the up direction and an initial view of the first frame's scene."""
    _add_trajectories(server.scene, lo)
    src = lo.src
    ok = src.pose_valid
    up = up_vector(src.c2w[ok])
    server.scene.set_up_direction(tuple(float(x) for x in up))
    # look at the first frame's scene from behind and above its camera
    c0 = src.c2w[int(np.argmax(ok))]
    fwd = c0[:3, 2]
    span = max(lo.frustum_scale / 0.06, 1e-3)
    target = c0[:3, 3] + fwd * span * 0.6
    cam = c0[:3, 3] - fwd * span * 0.45 + up * span * 0.35
    server.initial_camera.position = tuple(float(x) for x in cam)
    server.initial_camera.look_at = tuple(float(x) for x in target)
    server.initial_camera.up = tuple(float(x) for x in up)


def draw_current(sc, lo: LoadedSequence, i: int, fr: FrameData, fov: float, aspect: float) -> None:
    """Frame ``i``'s points (static / dynamic) and its frustum with the image; removed without a pose."""
    src = lo.src
    if not src.pose_valid[i]:
        for name in ("/seq/current", "/seq/points/static", "/seq/points/dynamic"):
            h = sc.get_handle_by_name(name)
            if h is not None:
                h.remove()
        log.warning("%s: frame %d has no valid pose; nothing to draw for it", src.name, i)
        return
    c2w = src.c2w[i]
    if fr.depth is not None:
        parts = unproject_frame(fr.depth, src.raw_K(i), c2w, fr.rgb, fr.mask, lo.step, src.model(i),
                                (src.width, src.height))
        for key in ("static", "dynamic"):
            xyz, col = parts[key]
            sc.add_point_cloud(f"/seq/points/{key}", xyz, col, point_size=lo.point_size,
                               point_shape="square", precision="float32", point_shading="flat")
    sc.add_camera_frustum("/seq/current", fov=float(fov), aspect=aspect, scale=lo.frustum_scale * 1.6,
                          color=(255, 40, 40), thickness=2.0, thickness_units="screen",
                          image=None if fr.rgb is None else thumb(fr.rgb, CURRENT_LONG_SIDE),
                          format="jpeg", jpeg_quality=85, wxyz=rotation_to_wxyz(c2w[:3, :3]),
                          position=c2w[:3, 3])


def nearby_indices(lo: LoadedSequence, i: int, nearby: int) -> dict[str, int]:
    """Thumbnail frames on a grid of ``nearby_stride`` around ``i`` (stable while playing, so cached)."""
    base = (i // lo.nearby_stride) * lo.nearby_stride
    out = {}
    for k in range(-nearby, nearby + 1):
        j = base + k * lo.nearby_stride
        if j == i or not 0 <= j < lo.src.n or not lo.src.pose_valid[j]:
            continue
        out[f"/seq/nearby/{k + nearby}"] = j
    return out


def draw_nearby(sc, lo: LoadedSequence, wanted: dict[str, int], shown: dict[str, int], fov: float,
                aspect: float) -> None:
    """Thumbnail frustums of ``wanted`` (node -> frame); ``shown`` remembers what each node holds."""
    src = lo.src
    for name in [n for n in sc._handle_from_node_name if n.startswith("/seq/nearby/")]:
        if name not in wanted:
            sc._handle_from_node_name[name].remove()
            shown.pop(name, None)
    for name, j in wanted.items():
        if shown.get(name) == j and sc.get_handle_by_name(name) is not None:
            continue  # same frame as before: do not resend its image
        shown[name] = j
        fr = src.frame(j)
        c2w = src.c2w[j]
        sc.add_camera_frustum(name, fov=float(fov), aspect=aspect, scale=lo.frustum_scale,
                              color=(120, 120, 120), thickness=1.0, thickness_units="screen",
                              image=None if fr.rgb is None else thumb(fr.rgb, THUMB_LONG_SIDE),
                              format="jpeg", jpeg_quality=75,
                              wxyz=rotation_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3])


def _ego_image(lo: LoadedSequence, e: EgoRender, i: int) -> np.ndarray | None:
    vid = lo.ego_videos.get(f"{e.take}_{e.camera}")
    if vid is not None and (not vid.num_frames or i < vid.num_frames):
        try:
            return vid.read(i)
        except ArtifactError as exc:
            log.warning("%s", exc)
            return None
    if e.frame_uris:
        return e.read_frame(i)
    return None


def draw_ego(sc, lo: LoadedSequence, i: int, show_image: Callable[[str, np.ndarray], None]) -> None:
    """Each ego render's frame ``i`` (handed to ``show_image(key, image)``) and its current frustum."""
    for e in lo.egos:
        key = f"{e.take}_{e.camera}"
        img = _ego_image(lo, e, i)
        if img is not None:
            show_image(key, img)
        if e.c2w is not None and i < len(e.c2w) and np.isfinite(e.c2w[i]).all():
            c2w = e.c2w[i]
            fx, fy, cx, cy = (float(v) for v in e.intrinsics)
            w, h = e.size
            sc.add_camera_frustum(f"/seq/ego/{key}/camera", fov=float(np.radians(fov_from_focal(h, fy))),
                                  aspect=w / h, scale=lo.frustum_scale * 1.6, color=EGO_COLOR,
                                  thickness=2.0, thickness_units="screen",
                                  image=None if img is None else thumb(img, THUMB_LONG_SIDE * 2),
                                  format="jpeg", wxyz=rotation_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3])


def add_cloud(sc, name: str, xyz: np.ndarray, col: np.ndarray, point_size: float, visible: bool) -> None:
    sc.add_point_cloud(name, xyz, col, point_size=point_size, point_shape="square", precision="float32",
                       point_shading="flat", visible=visible)


# ------------------------------------------------------------------ background clouds
def exact_sampling(src: SequenceSource, opts: ViewerOptions) -> bool:
    """Decode sampled frames exactly (forward through the video) when the whole video is cheap
    to decode; otherwise take the keyframe before each sample (one decode each)."""
    return (src.n <= opts.exact_sampling_max_frames
            and src.n * src.width * src.height <= opts.exact_sampling_pixels)


def sample_indices(n_frames: int, count: int) -> list[int]:
    return sorted(set(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int).tolist()))


def overview_cloud(lo: LoadedSequence, opts: ViewerOptions, cancelled: Callable[[], bool]
                   ) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """Static points of evenly spaced frames, the frames used; None when cancelled or there are none."""
    src = lo.src
    idx = sample_indices(src.n, opts.overview_frames)
    per_frame = max(1, opts.overview_max_points // max(1, len(idx)))
    step = max(lo.step, auto_step(src.width, src.height, per_frame))
    xyz_all, col_all = [], []
    exact = exact_sampling(src, opts)
    seen: set[int] = set()
    for j in idx:
        if cancelled():
            return None
        try:
            fr = src.frame_near(j, exact)
        except ArtifactError as exc:
            log.warning("overview: %s", exc)
            continue
        if fr.depth is None or fr.index in seen or not src.pose_valid[fr.index]:
            continue
        seen.add(fr.index)
        xyz, col = unproject_frame(fr.depth, src.raw_K(fr.index), src.c2w[fr.index], fr.rgb, fr.mask,
                                   step, src.model(fr.index), (src.width, src.height))["static"]
        xyz_all.append(xyz)
        col_all.append(col)
    if not xyz_all:
        return None
    return np.concatenate(xyz_all), np.concatenate(col_all), sorted(seen)


def mean_background_cloud(lo: LoadedSequence, opts: ViewerOptions, cancelled: Callable[[], bool]
                          ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The per-pixel mean background of sampled frames as points seen from the first valid camera, and
    the number of frames in it; None when cancelled."""
    src = lo.src
    acc = MeanBackground()
    exact = exact_sampling(src, opts)
    seen: set[int] = set()
    for j in sample_indices(src.n, opts.mean_bg_frames):
        if cancelled():
            return None
        fr = src.frame_near(j, exact)
        if fr.depth is not None and fr.index not in seen:
            seen.add(fr.index)
            acc.add(fr.depth, fr.rgb, fr.mask)
    first = int(np.argmax(src.pose_valid))
    xyz, col = acc.points(src.raw_K(first), src.c2w[first], lo.step, src.model(first), (src.width, src.height))
    return xyz, col, acc.frames


def scene_state(server, lo: LoadedSequence | None, shown: int | None) -> dict:
    """What the scene holds now, read back from viser's scene handles."""
    sc = server.scene

    def handle(name):
        return sc.get_handle_by_name(name)

    fr = handle("/seq/frustums")
    n_frustums = 0 if fr is None else int(np.asarray(fr.points).shape[0] // 8)
    pts = {}
    for key in ("static", "dynamic"):
        h = handle(f"/seq/points/{key}")
        pts[key] = 0 if h is None or not h.visible else int(np.asarray(h.points).shape[0])
    ov = handle("/seq/overview")
    mb = handle("/seq/mean_bg")
    thumbs = [n for n in sc._handle_from_node_name if n.startswith("/seq/nearby/")]
    cur = handle("/seq/current")
    egos = [n for n in sc._handle_from_node_name if n.startswith("/seq/ego/") and n.endswith("/trajectory")]
    return {
        "sequence": lo.src.name if lo else None,
        "n_frames": lo.src.n if lo else 0,
        "frame": shown,
        "frustums": n_frustums,
        "current_has_image": bool(cur is not None and cur.image is not None),
        "thumbnails": len(thumbs),
        "points_static": pts["static"],
        "points_dynamic": pts["dynamic"],
        "overview_points": 0 if ov is None else int(np.asarray(ov.points).shape[0]),
        "mean_bg_points": 0 if mb is None or not mb.visible else int(np.asarray(mb.points).shape[0]),
        "ego_trajectories": len(egos),
        "cached_frames": len(lo.src.cached_indices()) if lo else 0,
        "clients": len(server.get_clients()),
    }
