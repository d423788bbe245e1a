"""Ego-view ("ego prior") rendering: the scene reconstructed from a static exo camera, seen by the Aria camera.

Inputs are a ViPE-format result folder of the exo video plus either an EgoX ``meta.json`` or the Ego-Exo4D
native files (camera_pose JSON, ``gopro_calibs.csv``, ``online_calibration.jsonl``). Everything that can be
validated (camera id, files, frame ranges, ego frames) is validated before the point cloud is built.

Output layout (compatible with the reference's pre-release version)::

    <out_dir>/<parent>/<cam_id>/test_output_<rest>[_mean_bg][_fisheye]_pts<point_size>/
        frame_%06d.png      (frame number = start_frame + i)
        ego_Prior.mp4
        render_meta.json    (inputs, flags, per-frame coverage)

where ``<parent>/<cam_id>_<rest>`` are the last two components of ``input_dir``.

Settings: :class:`~.config.EgoRenderConfig` (pydantic; it also generates the ``render-ego`` flags and the
``ego_render`` asset's run config). Backends (``EgoRenderConfig.backend``): ``raster`` is the native CPU
rasteriser (:mod:`.raster`, the exact splat's semantics at interactive speed), ``splat`` the exact torch
reference (:func:`gpu_kernels.splat.splat`, CPU or CUDA), ``pyrender`` OpenGL points (pinhole only, nearest
point per pixel). ``auto`` (the default) picks ``raster`` on a CPU device and ``splat`` on CUDA; where the
native kernel cannot be built it falls back to ``splat`` with a warning. The background cloud is cached per
exo result and settings (:mod:`.cloud_cache`), and PNG / mp4 encoding runs on a writer thread while the next
frame renders.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from gpu_kernels.splat import splat

from ..egoexo.formats import find_camera_id
from ..errors import ArtifactError, FrameRangeError, InputError
from ..io import ArtifactStore, fs
from ..io.names import check_sequence_name
from ..io.video import VideoWriter
from .cloud_cache import cache_for, cache_key
from .config import EgoRenderConfig
from .ego_camera import EgoView, views_from_egoexo, views_from_meta
from .pointcloud import ArtifactReader, PointCloud, build_background, iter_dynamic_points
from .pyrender_backend import PyrenderPointRenderer
from .raster import PointRasterizer, native_error

log = logging.getLogger(__name__)


@dataclass
class EgoRenderResult:
    out_path: str
    frames: list[int]
    coverage: list[float]
    num_background_points: int
    seconds: float
    files: list[str] = field(default_factory=list)

    @property
    def mean_coverage(self) -> float:
        return float(np.mean(self.coverage)) if self.coverage else 0.0


def output_folder(cfg: EgoRenderConfig) -> str:
    raw = str(cfg.input_dir).rstrip("/")
    if not fs.is_remote(raw):
        raw = os.path.normpath(os.path.expanduser(raw))
    parts = [p for p in raw.split("/") if p]
    parent = parts[-2] if len(parts) >= 2 else "unknown"
    cam, _, rest = parts[-1].partition("_")
    for part in (parent, parts[-1]):  # both become folders under out_dir: plain names only, never '..'
        check_sequence_name(part, f"--input_dir {cfg.input_dir}: folder name")
    name = f"test_output_{rest}" if rest else "test_output"
    if cfg.use_mean_bg:
        name += "_mean_bg"
    if cfg.fish_eye_rendering:
        name += "_fisheye"
    name += f"_pts{float(cfg.point_size)}"
    return fs.join(cfg.out_dir, parent, cam, name)


def _artifact_name(cfg: EgoRenderConfig) -> str:
    store = ArtifactStore(cfg.input_dir)
    names = store.sequences()
    if cfg.artifact_name:
        if cfg.artifact_name not in names:
            raise ArtifactError(f"artifact {cfg.artifact_name!r} not found in {cfg.input_dir} (found {names})")
        return cfg.artifact_name
    with_pose = [n for n in names if store.exists("pose", n)]
    if not with_pose:
        if names:
            raise ArtifactError(f"No VIPE artifacts found in {cfg.input_dir}: {store.path('pose', names[0])} "
                                f"not found (sequences present without poses: {', '.join(names)})")
        raise ArtifactError(f"No VIPE artifacts found in {cfg.input_dir} (expected "
                            f"{fs.join(cfg.input_dir, 'pose')}/<name>.npz with rgb/, intrinsics/ and depth/ "
                            f"beside it)")
    if len(with_pose) > 1:
        raise ArtifactError(f"{cfg.input_dir} holds several sequences {with_pose}; choose one with --artifact_name")
    return with_pose[0]


def validate(cfg: EgoRenderConfig) -> tuple[ArtifactReader, list[int], np.ndarray, list[EgoView]]:
    """All cheap checks, in order, before any heavy work. Returns the reader, ViPE frames and cameras."""
    # value ranges (output, backend, point_size > 0, resolution >= 16, ...) are EgoRenderConfig's own checks
    if cfg.backend == "pyrender" and cfg.fish_eye_rendering:
        raise InputError("the pyrender backend renders pinhole cameras only; use --backend splat for fisheye")
    native = cfg.ego_camera_pose_path is not None
    if native == (cfg.meta_json_path is not None):
        raise InputError("give either --meta_json_path (EgoX) or --ego_camera_pose_path (Ego-Exo4D), not both/neither")
    cam_id = find_camera_id(cfg.input_dir) if native else None
    reader = ArtifactReader(ArtifactStore(cfg.input_dir), _artifact_name(cfg))
    a, b = reader.inference_range
    start = cfg.start_frame
    end = b if cfg.end_frame is None or cfg.end_frame == -1 else cfg.end_frame  # -1 = last, as in infer
    if start < 0:
        raise FrameRangeError(f"start_frame must be non-negative, got {start}")
    if end < -1:
        raise FrameRangeError(f"end_frame must be >= 0 (or -1 for the last frame), got {end}")
    if start > b:
        raise FrameRangeError(f"start_frame {start} is after the last inference frame {b} of {cfg.input_dir} "
                              f"(available [{a}, {b}])")
    if end < start:
        raise FrameRangeError(f"end_frame ({end}) must be >= start_frame ({start})")
    if start < a or end > b:
        raise FrameRangeError(f"Frame range [{start}, {end}] exceeds available inference results [{a}, {b}] "
                              f"in {cfg.input_dir}")
    frames = list(range(start, end + 1))
    if not native and (cfg.source_start_frame is not None or cfg.source_end_frame is not None):
        raise InputError("--source_start_frame/--source_end_frame index the Ego-Exo4D take's frames: they "
                         "need --ego_camera_pose_path (with --meta_json_path, ego_extrinsics[i] is ViPE "
                         "frame i)")
    if native:
        src0 = start if cfg.source_start_frame is None else cfg.source_start_frame
        if src0 < 0:
            raise FrameRangeError(f"source_start_frame must be non-negative, got {src0}")
        if cfg.source_end_frame is not None and cfg.source_end_frame - src0 != end - start:
            raise FrameRangeError(
                f"take frames [{src0}, {cfg.source_end_frame}] (--source_start_frame/--source_end_frame) "
                f"hold {cfg.source_end_frame - src0 + 1} frames but ViPE frames [{start}, {end}] hold "
                f"{end - start + 1}; one ego pose is rendered per ViPE frame, so the ranges must have the "
                f"same length")
        T_exo, views = views_from_egoexo(cfg.ego_camera_pose_path, cam_id, frames, src0, cfg.resolution,
                                         cfg.fish_eye_rendering, cfg.exo_camera_pose_path,
                                         cfg.online_calibration_path, cfg.fps)
    else:
        T_exo, views = views_from_meta(cfg.meta_json_path, Path(cfg.input_dir.rstrip("/")).name, frames,
                                       cfg.resolution, cfg.fish_eye_rendering, cfg.online_calibration_path)
    return reader, frames, T_exo, views


def resolve_backend(cfg: EgoRenderConfig) -> str:
    """The backend that will draw: ``raster``, ``splat`` or ``pyrender`` (see the module docstring)."""
    if cfg.backend in ("splat", "pyrender"):
        return cfg.backend
    on_cpu = torch.device(cfg.device).type == "cpu"
    if cfg.backend == "auto" and not on_cpu:
        return "splat"
    if not on_cpu:
        log.warning("the raster backend runs on the CPU; device %s is not used", cfg.device)
    err = native_error()
    if err is not None:
        log.warning("native point rasteriser unavailable (%s); falling back to the exact splat "
                    "(gpu_kernels.splat, about 100x slower on a CPU)", err)
        return "splat"
    return "raster"


def render_view(cloud: PointCloud, view: EgoView, cfg: EgoRenderConfig, gl: PyrenderPointRenderer | None = None,
                raster: PointRasterizer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (HxWx3 uint8 image, HxW bool coverage). With ``gl`` the OpenGL backend draws it, with
    ``raster`` the native rasteriser, else the exact splat."""
    mode = "normalized" if cfg.normalize else "front_to_back"
    if raster is not None:
        out = raster.render(cloud.xyz, cloud.rgb, view.camera, cfg.resolution, cfg.resolution, w2c=view.w2c,
                            radius=cfg.point_size, k=cfg.points_per_pixel, mode=mode, background=cfg.background,
                            near_clip=cfg.near_clip)
        return out.image, out.mask
    if gl is not None:
        xyz, rgb = cloud.xyz, cloud.rgb
        if cfg.near_clip > 0:
            centre = np.linalg.inv(view.w2c)[:3, 3]
            keep = np.linalg.norm(xyz - centre, axis=1) >= cfg.near_clip
            xyz, rgb = xyz[keep], rgb[keep]
        img, depth = gl.render(xyz, rgb, view.w2c, view.camera.base.params.numpy(), point_size=cfg.point_size)
        return img, depth > 0
    dev = torch.device(cfg.device)
    T = torch.as_tensor(view.w2c, dtype=torch.float32, device=dev)
    xyz = torch.as_tensor(cloud.xyz, dtype=torch.float32, device=dev)
    pc = xyz @ T[:3, :3].T + T[:3, 3]
    if cfg.near_clip > 0:
        keep = torch.linalg.vector_norm(pc, dim=-1) >= cfg.near_clip
        pc = pc[keep]
        rgb = torch.as_tensor(cloud.rgb, device=dev)[keep]
    else:
        rgb = torch.as_tensor(cloud.rgb, device=dev)
    colors = rgb.to(torch.float32) / 255.0
    image, _, mask = splat(pc, colors, view.camera, cfg.resolution, cfg.resolution, radius=cfg.point_size,
                           k=cfg.points_per_pixel, background=cfg.background, mode=mode)
    img = (torch.clamp(image, 0, 1) * 255).to(torch.uint8).cpu().numpy()
    return img, mask.cpu().numpy().astype(bool)


class _CloudWithDynamic:
    """The background cloud with a frame's dynamic points appended, without copying the background per frame
    (the returned cloud is valid until the next call)."""

    def __init__(self, bg: PointCloud):
        self.bg = bg
        self._xyz: np.ndarray | None = None
        self._rgb: np.ndarray | None = None

    def with_dynamic(self, dyn: PointCloud) -> PointCloud:
        if len(dyn) == 0:
            return self.bg
        nb, n = len(self.bg), len(self.bg) + len(dyn)
        if self._xyz is None or len(self._xyz) < n:
            cap = n + n // 4
            self._xyz = np.empty((cap, 3), np.float32)
            self._rgb = np.empty((cap, 3), np.uint8)
            self._xyz[:nb] = self.bg.xyz
            self._rgb[:nb] = self.bg.rgb
        assert self._rgb is not None
        self._xyz[nb:n] = dyn.xyz
        self._rgb[nb:n] = dyn.rgb
        return PointCloud(self._xyz[:n], self._rgb[:n])


class _FrameSink:
    """Writes rendered frames on a background thread (PNG files and/or the mp4, in frame order) so that
    encoding overlaps the rendering of the next frames. Errors surface at the next ``put`` or at ``close``."""

    def __init__(self, folder: str, png: bool, video: VideoWriter | None, depth: int = 8):
        self.folder, self.png, self.video = folder, png, video
        self.files: list[str] = []
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="render-ego-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure
            i, img = item
            try:
                if self.png:
                    name = f"frame_{i:06d}.png"
                    if not cv2.imwrite(str(Path(self.folder) / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                        raise ArtifactError(f"could not write {Path(self.folder) / name}")
                    self.files.append(name)
                if self.video is not None:
                    self.video.add(img)
            except BaseException as exc:  # handed to the render thread
                self._error = exc

    def put(self, i: int, img: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._q.put((i, img))

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> _FrameSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._thread.is_alive():  # the render failed: stop writing, keep its exception
            self._error = self._error or exc
            self._q.put(None)
            self._thread.join()


def _prefetch(items: Iterator[PointCloud], depth: int = 4) -> Iterator[PointCloud]:
    """Run ``items`` on a background thread, ``depth`` items ahead (decoding overlaps rendering)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    t = threading.Thread(target=work, name="render-ego-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def background_cloud(reader: ArtifactReader, cfg: EgoRenderConfig) -> PointCloud:
    """The background cloud of the exo result (cached, see :mod:`.cloud_cache`), before the exo pose."""
    cache = cache_for(cfg.cloud_cache)
    key = cache_key(reader, cfg.use_mean_bg, cfg.subsample, cfg.voxel_size) if cache is not None else None
    if cache is not None and key is not None:
        hit = cache.get(key)
        if hit is not None:
            log.info("background cloud of %s from the cache (%d points)", cfg.input_dir, len(hit))
            return hit
    log.info("building %s background cloud from %s", "mean" if cfg.use_mean_bg else "all-frames", cfg.input_dir)
    bg = build_background(reader, cfg.use_mean_bg, cfg.subsample, cfg.voxel_size)
    bg = PointCloud(np.ascontiguousarray(bg.xyz, np.float32), np.ascontiguousarray(bg.rgb, np.uint8))
    if cache is not None and key is not None and len(bg):
        cache.put(key, bg)
    return bg


def _write_ego_pose(path: Path, T_exo: np.ndarray, views: list[EgoView], cfg: EgoRenderConfig) -> None:
    """The upright ego camera per frame in the ViPE world of the input (for viewers): ``data`` (M,4,4) c2w.

    P_world = T_exo P_vipe, so an ego camera-to-world in the ViPE world is inv(T_exo) inv(ego_w2c); the upright
    camera is the raw sensor rolled by -90 degrees about its optical axis (the output image is rotated clockwise).
    """
    roll = np.array([[0.0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # Rz(-90)
    c2w = np.stack([np.linalg.inv(T_exo) @ np.linalg.inv(v.w2c) @ roll for v in views])
    f = float(views[0].camera.base.params[0]) if views else float(cfg.resolution)
    c = (cfg.resolution - 1) / 2
    np.savez(path, data=c2w.astype(np.float32), intrinsics=np.array([f, f, c, c], np.float32),
             size=np.array([cfg.resolution, cfg.resolution]))


def render_ego(cfg: EgoRenderConfig, progress: bool = False) -> EgoRenderResult:
    from tqdm import tqdm

    t0 = time.perf_counter()
    reader, frames, T_exo, views = validate(cfg)
    backend = resolve_backend(cfg)
    out = output_folder(cfg)
    # Both backgrounds use the whole inference clip; only the rendered range is restricted.
    bg = background_cloud(reader, cfg)
    if len(bg) == 0:
        raise ArtifactError(f"No points in background point cloud built from {cfg.input_dir} "
                            f"(no reliable static depth)")
    bg_world = bg.transformed(T_exo)
    coverage: list[float] = []
    if not fs.is_remote(out):  # stage folders of killed renders (their pid is gone) beside the output
        fs.sweep_stale_temps(Path(fs.get_fs(out)[1]).parent)
    fs.sweep_system_temps()
    with fs.atomic_dir(out) as stage, ExitStack() as stack:
        writer = (stack.enter_context(VideoWriter(str(Path(stage) / "ego_Prior.mp4"), fps=cfg.fps))
                  if cfg.output != "png" else None)
        sink = stack.enter_context(_FrameSink(stage, cfg.output in ("png", "both"), writer))
        gl = stack.enter_context(PyrenderPointRenderer(cfg.resolution, cfg.resolution)) \
            if backend == "pyrender" else None
        raster = stack.enter_context(PointRasterizer(cfg.threads)) if backend == "raster" else None
        dyn_iter = (_prefetch(iter_dynamic_points(reader, frames[0], frames[-1], cfg.subsample))
                    if not cfg.only_bg else iter([PointCloud.empty()] * len(frames)))
        scene = _CloudWithDynamic(bg_world)
        for i, view, dyn in tqdm(zip(frames, views, dyn_iter, strict=True), total=len(frames),
                                 disable=not progress, desc="render-ego", unit="frame"):
            cloud = scene.with_dynamic(dyn.transformed(T_exo)) if len(dyn) else bg_world
            img, mask = render_view(cloud, view, cfg, gl, raster)
            coverage.append(float(mask.mean()))
            sink.put(i, img)
        sink.close()
        stack.close()  # finish the video (and release the GL context) before the folder is swapped in
        files = list(sink.files)
        if writer:
            files.append("ego_Prior.mp4")
        res = EgoRenderResult(out, frames, coverage, len(bg), time.perf_counter() - t0, files)
        meta = {"config": cfg.model_dump(), "backend": backend, "frames": frames,
                "take_frames": [v.take_frame for v in views], "coverage": coverage,
                "mean_coverage": res.mean_coverage, "num_background_points": len(bg),
                "exo_frames_flagged_invalid": [int(i) for i in frames if not reader.usable[i]],
                "generation": (reader.store.generation_record(reader.name) or {}).get("id"),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "seconds": round(res.seconds, 3)}
        (Path(stage) / "render_meta.json").write_text(json.dumps(meta, indent=2))
        _write_ego_pose(Path(stage) / "ego_pose.npz", T_exo, views, cfg)
    return res
