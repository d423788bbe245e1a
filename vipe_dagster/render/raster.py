"""Native CPU point rasteriser: the semantics of :func:`gpu_kernels.splat.splat` at interactive speed.

:func:`gpu_kernels.splat.splat` (torch, CPU and CUDA) is the exact reference. On a CPU its vectorised
passes over ~3 M disk fragments per 448 px frame cost a few hundred ms; this module draws the same disks
with a small C kernel (source in :mod:`.point_raster_c`) that

1. transforms and projects every point in one pass (pinhole, Kannala-Brandt and Fisheye624 with the
   formulas of :mod:`gpu_kernels.cameras` in float32; any other camera model is projected by
   :mod:`gpu_kernels.cameras` itself and only rasterised natively),
2. sorts the kept points by camera z (exact, stable radix sort on the float bits) and
3. draws their disks front to back, keeping per pixel the first ``k`` fragments, i.e. the ``k`` nearest in
   z, with the same coverage rule and alpha as the reference (``front_to_back``, ``normalized``); or runs a
   z-buffer (``nearest``).

Steps 2 and 3 run per 32 x 32 px tile (points are binned to the tiles their disks touch), so a tile's
state stays in the L1 cache, and tiles are shared out to ``threads`` threads; the output does not depend
on the thread count.

The kernel is compiled at first use with the system C compiler (``$CC`` or ``cc``) into a per-user cache
(``$VIPE_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/vipe_dagster/native`` or ``~/.cache/...``), keyed by the
source, the flags, the compiler and the CPU. ``VIPE_RASTER_NATIVE=0`` disables it. Where it cannot be built
or loaded, :func:`native_available` is False and callers fall back to the exact splat (with a warning).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .point_raster_c import SOURCE

log = logging.getLogger(__name__)

MODES = {"front_to_back": 0, "normalized": 1, "nearest": 2}
_MODELS = {"pinhole": 0, "kannala_brandt": 1, "fisheye624": 2}
_FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math"],
              ["-O3", "-fno-math-errno", "-fno-trapping-math"])

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


class NativeUnavailable(RuntimeError):
    """The native rasteriser cannot be built or loaded on this machine."""


def _cache_dir() -> Path:
    env = os.environ.get("VIPE_NATIVE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vipe_dagster" / "native"


def _cpu_id() -> str:
    """Model name and feature flags: a library built with -march=native is only reused on the same CPU."""
    ident = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    ident += line
                if line.startswith("flags"):
                    break
    except OSError:
        pass
    return ident


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or (shutil.which("gcc") if not os.environ.get("CC") else None)


def _build() -> ctypes.CDLL:
    if os.environ.get("VIPE_RASTER_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        raise NativeUnavailable("disabled by VIPE_RASTER_NATIVE=0")
    cc = _compiler()
    if cc is None:
        raise NativeUnavailable(f"no C compiler found ({os.environ.get('CC') or 'cc'} is not on PATH)")
    try:
        cc_version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"C compiler {cc} does not run: {exc}") from exc
    cache = _cache_dir()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256("\0".join([SOURCE, " ".join(flags), cc_version, _cpu_id()]).encode()).hexdigest()[:16]
        lib_path = cache / f"point_raster-{key}.so"
        if not lib_path.exists():
            try:
                cache.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=cache) as tmp:
                    src = Path(tmp) / "point_raster.c"
                    src.write_text(SOURCE)
                    out = Path(tmp) / "point_raster.so"
                    proc = subprocess.run([cc, *flags, "-fPIC", "-shared", "-pthread", "-o", str(out), str(src), "-lm"],
                                          capture_output=True, text=True, timeout=300)
                    if proc.returncode != 0:
                        errors.append(f"{cc} {' '.join(flags)}: {proc.stderr.strip()[-800:]}")
                        continue
                    os.replace(out, lib_path)  # atomic: concurrent builders leave one complete library
                log.info("built the native point rasteriser: %s", lib_path)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{cc} {' '.join(flags)}: {exc}")
                continue
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError as exc:
            errors.append(f"loading {lib_path}: {exc}")
            continue
        _declare(lib)
        return lib
    raise NativeUnavailable("; ".join(errors) or "build failed")


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.vr_new.restype = p
    lib.vr_new.argtypes = []
    lib.vr_delete.restype = None
    lib.vr_delete.argtypes = [p]
    lib.vr_project.restype = i64
    lib.vr_project.argtypes = [p, i64, p, p, p, i32, p, f32, f32, f32, i32, f32, i32, i32, i32]
    lib.vr_set_projected.restype = i64
    lib.vr_set_projected.argtypes = [p, i64, p, p, p, p, f32, i32, i32, i32]
    lib.vr_composite.restype = i32
    lib.vr_composite.argtypes = [p, i32, i32, f32, i32, i32, p, i32, p, p, p, p]
    lib.vr_kept.restype = i64
    lib.vr_kept.argtypes = [p]
    lib.vr_get_records.restype = i64
    lib.vr_get_records.argtypes = [p, p, i64]


def load_native() -> ctypes.CDLL:
    """The compiled kernel (built once per process; the failure is remembered too)."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise NativeUnavailable(_error)
        try:
            _lib = _build()
        except NativeUnavailable as exc:
            _error = str(exc)
            raise
        return _lib


def native_available() -> bool:
    try:
        load_native()
    except NativeUnavailable:
        return False
    return True


def native_error() -> str | None:
    """Why the native kernel is unavailable (None when it loads)."""
    try:
        load_native()
    except NativeUnavailable as exc:
        return str(exc)
    return None


def _reset_for_tests() -> None:
    global _lib, _error
    with _lock:
        _lib, _error = None, None


def default_threads() -> int:
    """Raster threads: the cores this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


@dataclass
class RasterOutput:
    image: np.ndarray  # (H, W, 3) uint8: trunc(clip(C, 0, 1) * 255)
    mask: np.ndarray  # (H, W) bool: at least one disk covers the pixel centre
    depth: np.ndarray | None  # (H, W) float32 z of the nearest covering point, 0 where empty
    image_float: np.ndarray | None  # (H, W, 3) float32 before quantisation (when asked for)


def _camera_parts(camera) -> tuple[object, int]:
    """(base CameraModel, raw height for the clockwise rotation or -1) of a camera or a RotatedCW wrapper."""
    base = getattr(camera, "base", None)
    if base is not None and hasattr(camera, "raw_height"):
        return base, int(camera.raw_height)
    return camera, -1


class PointRasterizer:
    """Re-usable native renderer (its buffers grow to the largest cloud / image and are kept).

    Not thread-safe: use one instance per thread. ``threads``: threads that project point ranges and draw
    tiles in parallel (default :func:`default_threads`); the output does not depend on it.
    """

    def __init__(self, threads: int | None = None):
        self._lib = load_native()
        self._ctx = self._lib.vr_new()
        if not self._ctx:
            raise MemoryError("vr_new failed")
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._geometry: tuple[int, int, float] | None = None  # size and radius of the last projection

    def close(self) -> None:
        if self._ctx:
            self._lib.vr_delete(self._ctx)
            self._ctx = None

    def __enter__(self) -> PointRasterizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # ------------------------------------------------------------------ steps
    def project(self, xyz: np.ndarray, rgb: np.ndarray, camera, height: int, width: int,
                w2c: np.ndarray | None = None, radius: float = 1.5, near_clip: float = 0.0) -> int:
        """Transform (``w2c`` 4x4 or 3x4; None = points already in the camera frame), project and bin the
        points ``xyz`` (N, 3) with colours ``rgb`` (N, 3) uint8; returns the number of points kept."""
        import torch

        xyz = np.ascontiguousarray(xyz, dtype=np.float32)
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"PointRasterizer: expected points of shape (N, 3), got {xyz.shape}")
        if rgb.shape != xyz.shape:
            raise ValueError(f"PointRasterizer: colours {rgb.shape} must be ({len(xyz)}, 3) uint8")
        if len(xyz) >= 2**31:
            raise ValueError(f"PointRasterizer: at most 2^31-1 points, got {len(xyz)}")
        if not 0 < radius <= 64:
            raise ValueError(f"PointRasterizer: radius must be in (0, 64] px, got {radius}")
        if not (0 < height <= 8192 and 0 < width <= 8192):
            raise ValueError(f"PointRasterizer: image size must be 1..8192 px, got {height}x{width}")
        T = np.eye(4) if w2c is None else np.asarray(w2c, np.float64)
        T34 = np.ascontiguousarray(T[:3, :4], dtype=np.float32)
        base, rot_h = _camera_parts(camera)
        model = _MODELS.get(getattr(base, "NAME", ""))
        params = getattr(base, "params", None)
        if model is not None and params is not None and params.ndim == 1:
            p = np.ascontiguousarray(params.detach().cpu().numpy(), dtype=np.float32)
            lim = getattr(base, "theta_limit", None)
            theta_limit = float(lim) if lim is not None else np.inf
            kept = self._lib.vr_project(self._ctx, len(xyz), _ptr(xyz), _ptr(rgb), _ptr(T34), model, _ptr(p),
                                        np.float32(theta_limit), np.float32(base.min_depth),
                                        np.float32(near_clip), rot_h, np.float32(radius), height, width,
                                        self.threads)
        else:  # any other camera: gpu_kernels.cameras projects, the kernel draws
            pc = xyz @ T34[:, :3].T + T34[:, 3]
            uv, valid = camera.project(torch.from_numpy(pc))
            valid = valid & torch.isfinite(uv).all(-1)
            if near_clip > 0:
                valid &= torch.from_numpy(np.linalg.norm(pc, axis=1) >= near_clip)
            uv = np.ascontiguousarray(uv.numpy(), dtype=np.float32)
            z = np.ascontiguousarray(pc[:, 2], dtype=np.float32)
            ok = np.ascontiguousarray(valid.numpy(), dtype=np.uint8)
            kept = self._lib.vr_set_projected(self._ctx, len(xyz), _ptr(uv), _ptr(z), _ptr(ok), _ptr(rgb),
                                              np.float32(radius), height, width, self.threads)
        if kept < 0:
            raise MemoryError(f"PointRasterizer: out of memory for {len(xyz)} points")
        self._geometry = (height, width, float(np.float32(radius)))
        return int(kept)

    def projected(self) -> np.ndarray:
        """``(M, 3)`` float32 ``(u, v, z)`` of the points kept by the last :meth:`project`, in point order
        (``u`` = column, ``v`` = row of the output image; for tests and diagnostics)."""
        m = int(self._lib.vr_kept(self._ctx)) if self._geometry is not None else 0
        out = np.empty((m, 3), np.float32)
        if m:
            self._lib.vr_get_records(self._ctx, _ptr(out), m)
        return out

    def composite(self, height: int, width: int, radius: float = 1.5, k: int = 20, mode: str = "front_to_back",
                  background: tuple[float, float, float] = (0.0, 0.0, 0.0), depth: bool = False,
                  float_image: bool = False) -> RasterOutput:
        """Draw the points of the last :meth:`project` (same size and radius)."""
        if mode not in MODES:
            raise ValueError(f"PointRasterizer: unknown mode {mode!r}; expected one of {tuple(MODES)}")
        if not 1 <= k <= 255:
            raise ValueError(f"PointRasterizer: k must be in 1..255, got {k}")
        if self._geometry != (height, width, float(np.float32(radius))):
            raise ValueError(f"PointRasterizer: composite({height}x{width}, radius {radius}) must follow a "
                             f"project() with the same size and radius (last: {self._geometry})")
        bg = np.ascontiguousarray(np.broadcast_to(np.asarray(background, np.float32).reshape(-1), (3,)))
        img = np.empty((height, width, 3), np.uint8)
        mask = np.empty((height, width), np.bool_)
        dep = np.empty((height, width), np.float32) if depth else None
        imf = np.empty((height, width, 3), np.float32) if float_image else None
        rc = self._lib.vr_composite(self._ctx, height, width, np.float32(radius), int(k), MODES[mode], _ptr(bg),
                                    self.threads, _ptr(img), _ptr(imf), _ptr(dep), _ptr(mask))
        if rc != 0:
            raise MemoryError(f"PointRasterizer: out of memory for a {height}x{width} image")
        return RasterOutput(img, mask, dep, imf)

    def render(self, xyz: np.ndarray, rgb: np.ndarray, camera, height: int, width: int,
               w2c: np.ndarray | None = None, radius: float = 1.5, k: int = 20, mode: str = "front_to_back",
               background: tuple[float, float, float] = (0.0, 0.0, 0.0), near_clip: float = 0.0,
               depth: bool = False, float_image: bool = False) -> RasterOutput:
        """:meth:`project` then :meth:`composite`: one frame of the points ``xyz`` seen by ``camera``."""
        self.project(xyz, rgb, camera, height, width, w2c=w2c, radius=radius, near_clip=near_clip)
        return self.composite(height, width, radius=radius, k=k, mode=mode, background=background,
                              depth=depth, float_image=float_image)
