"""The SLAM map artifact in ViPE's sense: ``vipe/<n>_slam_map.pt``, keyframe points with colours.

ViPE back-projects its keyframe depth (1/8 resolution) into the world and keeps the points that several
keyframes agree on. Here the map is built from the artifacts of a run:

- with depth maps: on every keyframe (``keyframe_ids`` of ``pose/<n>.npz``; every 8th valid frame when the
  file has none) a grid of about ``samples_long_side`` pixels along the long side (ViPE's 1/8 grid at its
  processing size) is unprojected with that frame's pose and intrinsics, where the depth is reliable
  (:mod:`vipe_dagster.depth.reliable`) and the pixel is static (instance 0); a point is kept when its depth
  agrees within ``rel_tol`` with the depth maps of ``min_views`` other keyframes among its ``window``
  neighbours on each side (all of them when there are fewer), and those agreeing pixels become its track;
- without depth (``pose_only``): the SLAM sparse map (``vipe/<n>_sparse.npz``) grouped by the keyframe that
  first observed each point, with its measured feature tracks.

File format (``torch.save`` of a dict of tensors, readable with ``weights_only=True``), the keys ViPE's
``SLAMMap`` stores plus ours:

- ``dense_disp_xyz`` (M,3) float32 world points, ``dense_disp_rgb`` (M,3) float32 colours in [0,1];
- ``dense_disp_packinfo`` (K,1,2) int64 ``[start, count]`` of each keyframe's points (one view);
- ``dense_disp_frame_inds`` (K,) int64 keyframe frame indices; ``device`` ``"cpu"``;
- ours: ``obs_frame``/``obs_point``/``obs_uv`` (the tracks, pixels of the stored rgb), ``source``
  (``depth`` | ``sparse``) and ``generation`` (the run that wrote it, see io/generation.py).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError
from ..io import ArtifactStore, fs
from ..io.artifacts import SparseMap
from ..io.generation import GenerationError, sha256_bytes

log = logging.getLogger(__name__)


@dataclass
class SlamMap:
    xyz: np.ndarray  # (M,3) float32
    rgb: np.ndarray  # (M,3) float32 in [0, 1]
    packinfo: np.ndarray  # (K,1,2) int64 [start, count]
    frame_inds: np.ndarray  # (K,) int64
    obs_frame: np.ndarray  # (O,) int64
    obs_point: np.ndarray  # (O,) int64
    obs_uv: np.ndarray  # (O,2) float32
    source: str  # "depth" | "sparse" | "reference" (a map written by ViPE itself)
    generation: str | None = None

    def __len__(self) -> int:
        return len(self.xyz)

    def keyframe_points(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        start, count = (int(v) for v in self.packinfo[k, 0])
        return self.xyz[start : start + count], self.rgb[start : start + count]

    def as_sparse_map(self) -> SparseMap:
        """Points and tracks as a :class:`SparseMap` (what the COLMAP export consumes)."""
        colors = np.clip(np.round(self.rgb * 255), 0, 255).astype(np.uint8)
        return SparseMap(
            self.xyz.astype(np.float32),
            colors,
            self.obs_frame.astype(np.int32),
            self.obs_point.astype(np.int32),
            self.obs_uv.astype(np.float32),
            self.frame_inds.astype(np.int32),
        )


def _keyframes(store: ArtifactStore, name: str, valid: np.ndarray) -> list[int]:
    z = np.load(io.BytesIO(fs.read_bytes(store.path("pose", name))), allow_pickle=False)
    n = len(valid)
    ids = [int(k) for k in np.asarray(z["keyframe_ids"]).ravel()] if "keyframe_ids" in z.files else []
    ids = sorted({k for k in ids if 0 <= k < n and valid[k]})
    if not ids:
        ids = [k for k in range(0, n, 8) if valid[k]]
    return ids


def build_slam_map(
    store: ArtifactStore,
    name: str,
    samples_long_side: int = 64,
    rel_tol: float = 0.05,
    window: int = 3,
    min_views: int = 2,
) -> SlamMap:
    """Build the map of sequence ``name`` (see the module docstring)."""
    if store.exists("depth", name):
        return _from_depth(store, name, samples_long_side, rel_tol, window, min_views)
    if store.exists("sparse", name):
        return _from_sparse(store, name)
    raise ArtifactError(
        f"cannot build the SLAM map of {name!r}: neither depth ({store.path('depth', name)}) "
        f"nor a sparse map ({store.path('sparse', name)}) exists"
    )


def _from_sparse(store: ArtifactStore, name: str) -> SlamMap:
    sm = store.read_sparse_map(name)
    n_pts = len(sm.points)
    first = np.full(n_pts, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, sm.obs_point.astype(np.int64), sm.obs_frame.astype(np.int64))
    seen = first < np.iinfo(np.int64).max
    order = np.nonzero(seen)[0]
    order = order[np.argsort(first[order], kind="stable")]
    remap = np.full(n_pts, -1, np.int64)
    remap[order] = np.arange(len(order))
    kfs, counts = np.unique(first[order], return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    keep_obs = remap[sm.obs_point.astype(np.int64)] >= 0
    return SlamMap(
        xyz=sm.points[order].astype(np.float32),
        rgb=(sm.colors[order].astype(np.float32) / 255.0),
        packinfo=np.stack([starts, counts], 1)[:, None, :].astype(np.int64),
        frame_inds=kfs.astype(np.int64),
        obs_frame=sm.obs_frame[keep_obs].astype(np.int64),
        obs_point=remap[sm.obs_point.astype(np.int64)[keep_obs]],
        obs_uv=sm.obs_uv[keep_obs].astype(np.float32),
        source="sparse",
    )


def _from_depth(
    store: ArtifactStore, name: str, samples_long_side: int, rel_tol: float, window: int, min_views: int
) -> SlamMap:
    from ..depth.reliable import reliable_depth_mask

    c2w, _ = store.read_pose(name)
    intr, _, types = store.read_intrinsics(name)
    if any(t != "PINHOLE" for t in types):
        raise ArtifactError(
            f"{store.path('intrinsics', name)}: the SLAM map is built for pinhole cameras only, "
            f"found {sorted(set(types))}"
        )
    valid = store.read_pose_valid(name)
    kfs = _keyframes(store, name, valid)
    if not kfs:
        raise ArtifactError(f"{store.path('pose', name)}: no valid keyframe to build the SLAM map from")
    stream = store.open_rgb(name)
    W, H = stream.width, stream.height
    step = max(1, int(round(max(W, H) / samples_long_side)))
    off = max(0, step // 2 - 1)
    gu, gv = np.meshgrid(np.arange(off, W, step), np.arange(off, H, step))
    ds = max(1, step // 2)  # depth maps of the keyframes are kept at 1/ds for the consistency look-ups
    want = set(kfs)
    rgb_grid: dict[int, np.ndarray] = {}
    for i, frame in stream:
        if i in want:
            rgb_grid[i] = frame[gv, gu].astype(np.float32) / 255.0
        if i >= kfs[-1]:
            break
    mask_grid: dict[int, np.ndarray] = {}
    if store.exists("mask", name):
        for i, m in store.iter_masks(name, kfs):
            mask_grid[i] = m[gv, gu] == 0
    depth_grid: dict[int, np.ndarray] = {}
    small: dict[int, np.ndarray] = {}
    for i, d in store.iter_depth(name, kfs):
        if d.shape != (H, W):
            raise ArtifactError(
                f"{store.path('depth', name)} frame {i}: depth is {d.shape[1]}x{d.shape[0]}, rgb is {W}x{H}"
            )
        ok = reliable_depth_mask(d)[gv, gu] & mask_grid.get(i, True)
        depth_grid[i] = np.where(ok, d[gv, gu], np.nan).astype(np.float32)
        small[i] = d[::ds, ::ds].astype(np.float32)
    xyz_parts, rgb_parts, packs, frames = [], [], [], []
    obs_f, obs_p, obs_uv = [], [], []
    total = 0
    for ki, k in enumerate(kfs):
        d = depth_grid[k]
        sel = np.isfinite(d) & (d > 0)
        if not sel.any():
            continue
        fx, fy, cx, cy = (float(v) for v in intr[k, :4])
        z = d[sel].astype(np.float64)
        u, v = gu[sel].astype(np.float64), gv[sel].astype(np.float64)
        pc = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], 1)
        pw = pc @ c2w[k, :3, :3].T.astype(np.float64) + c2w[k, :3, 3].astype(np.float64)
        neigh = [kfs[j] for j in range(max(0, ki - window), min(len(kfs), ki + window + 1)) if j != ki]
        agree = np.zeros(len(pw), np.int64)
        tracks: list[tuple[int, np.ndarray, np.ndarray]] = []
        for j in neigh:
            R, t = c2w[j, :3, :3].astype(np.float64), c2w[j, :3, 3].astype(np.float64)
            pj = (pw - t) @ R
            fxj, fyj, cxj, cyj = (float(x) for x in intr[j, :4])
            with np.errstate(divide="ignore", invalid="ignore"):
                uj = fxj * pj[:, 0] / pj[:, 2] + cxj
                vj = fyj * pj[:, 1] / pj[:, 2] + cyj
            inside = (pj[:, 2] > 0) & (uj >= 0) & (uj <= W - 1) & (vj >= 0) & (vj <= H - 1)
            dj = np.full(len(pw), np.nan)
            sj = small[j]
            ii = np.clip(np.round(vj[inside] / ds).astype(np.int64), 0, sj.shape[0] - 1)
            jj = np.clip(np.round(uj[inside] / ds).astype(np.int64), 0, sj.shape[1] - 1)
            dj[inside] = sj[ii, jj]
            with np.errstate(invalid="ignore"):
                ok = inside & np.isfinite(dj) & (np.abs(dj - pj[:, 2]) <= rel_tol * pj[:, 2])
            agree += ok
            tracks.append((j, ok, np.stack([uj, vj], 1)))
        need = min(min_views, len(neigh))
        keep = agree >= need
        if not keep.any():
            continue
        idx = np.full(len(pw), -1, np.int64)
        idx[keep] = total + np.arange(int(keep.sum()))
        xyz_parts.append(pw[keep].astype(np.float32))
        rgb_parts.append(rgb_grid[k][sel][keep])
        packs.append((total, int(keep.sum())))
        frames.append(k)
        obs_f.append(np.full(int(keep.sum()), k, np.int64))
        obs_p.append(idx[keep])
        obs_uv.append(np.stack([u, v], 1)[keep].astype(np.float32))
        for j, ok, uvj in tracks:
            m = ok & keep
            obs_f.append(np.full(int(m.sum()), j, np.int64))
            obs_p.append(idx[m])
            obs_uv.append(uvj[m].astype(np.float32))
        total += int(keep.sum())
    if not frames:
        raise ArtifactError(
            f"{store.path('depth', name)}: no keyframe has reliable, multi-view consistent depth; "
            f"the SLAM map would be empty"
        )
    of, op, ouv = np.concatenate(obs_f), np.concatenate(obs_p), np.concatenate(obs_uv)
    order = np.lexsort((op, of))
    return SlamMap(
        xyz=np.concatenate(xyz_parts),
        rgb=np.concatenate(rgb_parts).astype(np.float32),
        packinfo=np.array(packs, np.int64)[:, None, :],
        frame_inds=np.array(frames, np.int64),
        obs_frame=of[order],
        obs_point=op[order],
        obs_uv=ouv[order],
        source="depth",
    )


def serialize(sm: SlamMap) -> bytes:
    import torch

    obj = {
        "dense_disp_xyz": torch.from_numpy(np.ascontiguousarray(sm.xyz, np.float32)),
        "dense_disp_rgb": torch.from_numpy(np.ascontiguousarray(sm.rgb, np.float32)),
        "dense_disp_packinfo": torch.from_numpy(np.ascontiguousarray(sm.packinfo, np.int64)),
        "dense_disp_frame_inds": torch.from_numpy(np.ascontiguousarray(sm.frame_inds, np.int64)),
        "device": "cpu",
        "obs_frame": torch.from_numpy(np.ascontiguousarray(sm.obs_frame, np.int64)),
        "obs_point": torch.from_numpy(np.ascontiguousarray(sm.obs_point, np.int64)),
        "obs_uv": torch.from_numpy(np.ascontiguousarray(sm.obs_uv, np.float32)),
        "source": sm.source,
        "generation": sm.generation or "",
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deserialize(data: bytes, where: str) -> SlamMap:
    import torch

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"{where}: not a readable SLAM map ({type(exc).__name__}: {exc})") from None
    need = ("dense_disp_xyz", "dense_disp_rgb", "dense_disp_packinfo", "dense_disp_frame_inds")
    if not isinstance(obj, dict) or any(k not in obj for k in need):
        raise ArtifactError(f"{where}: expected a dict with {', '.join(need)}")

    def arr(key, dtype):
        v = obj.get(key)
        return None if v is None else np.asarray(v.cpu().numpy() if hasattr(v, "cpu") else v, dtype)

    xyz, rgb = arr("dense_disp_xyz", np.float32), arr("dense_disp_rgb", np.float32)
    pack, frames = arr("dense_disp_packinfo", np.int64), arr("dense_disp_frame_inds", np.int64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ArtifactError(
            f"{where}: dense_disp_xyz {xyz.shape} / dense_disp_rgb {rgb.shape}, expected (M,3)"
        )
    if pack.ndim == 2:
        pack = pack[:, None, :]
    if pack.ndim != 3 or pack.shape[2] != 2 or len(pack) != len(frames):
        raise ArtifactError(
            f"{where}: dense_disp_packinfo {pack.shape} does not match {len(frames)} keyframes"
        )
    if len(pack) and int((pack[..., 0] + pack[..., 1]).max()) > len(xyz):
        raise ArtifactError(f"{where}: dense_disp_packinfo points past the {len(xyz)} points")
    has_obs = all(k in obj for k in ("obs_frame", "obs_point", "obs_uv"))
    of = arr("obs_frame", np.int64) if has_obs else np.zeros(0, np.int64)
    op = arr("obs_point", np.int64) if has_obs else np.zeros(0, np.int64)
    ouv = arr("obs_uv", np.float32) if has_obs else np.zeros((0, 2), np.float32)
    if has_obs and (
        op.shape != of.shape
        or ouv.shape != (len(of), 2)
        or (len(op) and (op.min() < 0 or op.max() >= len(xyz)))
    ):
        raise ArtifactError(f"{where}: observation arrays are inconsistent with {len(xyz)} points")
    source = str(obj.get("source") or ("reference" if not has_obs else "depth"))
    return SlamMap(xyz, rgb, pack, frames, of, op, ouv, source, str(obj.get("generation") or "") or None)


def write_slam_map(store: ArtifactStore, name: str, **kw) -> tuple[str, SlamMap]:
    """Build and write ``vipe/<name>_slam_map.pt`` (stamped with the sequence's generation)."""
    t0 = time.perf_counter()
    sm = build_slam_map(store, name, **kw)
    sm.generation = store.generation_for_write(name) if store.versioned else None
    uri = store.write_slam_map(name, serialize(sm))
    log.info(
        "%s: SLAM map with %d points on %d keyframes (from %s) in %.1f s -> %s",
        name,
        len(sm),
        len(sm.frame_inds),
        sm.source,
        time.perf_counter() - t0,
        uri,
    )
    return uri, sm


def read_slam_map(store: ArtifactStore, name: str) -> SlamMap:
    """Read ``vipe/<name>_slam_map.pt``; refuse a map of another run than the set's (io/generation.py).

    Maps written by ViPE itself have no tracks: each point then gets one observation, its projection into
    the keyframe it belongs to."""
    uri = store.path("slam_map", name)
    if not fs.exists(uri):
        raise ArtifactError(
            f"SLAM map not found: {uri} (write it with `vipe infer --save_slam_map`, "
            f"`run.py pipeline.output.save_slam_map=true` or `vipe-dagster infer --save_slam_map`)"
        )
    data = fs.read_bytes(uri)
    sm = deserialize(data, uri)
    rec = store.generation_record(name)
    if rec is not None:
        entry = rec["artifacts"].get("slam_map")
        if sm.generation and sm.generation != rec["id"]:
            raise GenerationError(
                f"{uri} belongs to generation {sm.generation}, but {store.path('manifest', name)} "
                f"expects generation {rec['id']}: the map is from another run; write it again "
                f"with --save_slam_map"
            )
        if isinstance(entry, dict) and entry.get("sha256") and entry["sha256"] != sha256_bytes(data):
            raise GenerationError(
                f"{uri} changed after generation {rec['id']} wrote it; write it again with --save_slam_map"
            )
    if not len(sm.obs_frame) and len(sm.xyz):
        sm.obs_frame, sm.obs_point, sm.obs_uv = _own_keyframe_observations(store, name, sm)
    return sm


def _own_keyframe_observations(store: ArtifactStore, name: str, sm: SlamMap):
    c2w, _ = store.read_pose(name)
    intr, _, _ = store.read_intrinsics(name)
    of, op, ouv = [], [], []
    for k, f in enumerate(sm.frame_inds):
        start, count = (int(v) for v in sm.packinfo[k, 0])
        if count == 0 or not 0 <= f < len(c2w):
            continue
        p = (sm.xyz[start : start + count].astype(np.float64) - c2w[f, :3, 3]) @ c2w[f, :3, :3]
        fx, fy, cx, cy = (float(v) for v in intr[f, :4])
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([fx * p[:, 0] / p[:, 2] + cx, fy * p[:, 1] / p[:, 2] + cy], 1)
        ok = (p[:, 2] > 0) & np.isfinite(uv).all(1)
        of.append(np.full(int(ok.sum()), f, np.int64))
        op.append(np.arange(start, start + count)[ok])
        ouv.append(uv[ok].astype(np.float32))
    if not of:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    return np.concatenate(of), np.concatenate(op), np.concatenate(ouv)
