"""Read and check the artifacts of a COLMAP export and pick the exported frames."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ArtifactError, FrameRangeError, UnsupportedCameraError
from ...io import ArtifactStore, SparseMap, fs
from ...io.checks import check_intrinsics, check_poses
from ...io.video import probe
from .cameras import panorama_refusal

log = logging.getLogger(__package__)


@dataclass
class Inputs:
    """The checked artifacts of one sequence: poses, intrinsics, video size and the sparse map."""

    c2w: np.ndarray
    intr: np.ndarray
    inds: np.ndarray
    types: list[str]
    width: int
    height: int
    rgb_frames: int
    sparse: SparseMap | None
    usable: np.ndarray  # (N,) bool: pose well formed and not flagged invalid (tracking lost)


def load_inputs(store: ArtifactStore, name: str) -> Inputs:
    """Read poses, intrinsics, the video header and the sparse map; every problem is named (file, frame)."""
    pose_uri, intr_uri, rgb_uri = store.path("pose", name), store.path("intrinsics", name), store.path("rgb", name)
    for kind, uri in (("pose", pose_uri), ("intrinsics", intr_uri), ("rgb video", rgb_uri)):
        if not fs.exists(uri):
            raise ArtifactError(f"COLMAP export of {name!r}: missing {kind} file {uri}")
    c2w, pinds = store.read_pose(name)
    intr, iinds, types = store.read_intrinsics(name)
    if len(c2w) != len(intr):
        raise ArtifactError(f"{intr_uri} has {len(intr)} frames but {pose_uri} has {len(c2w)}; "
                            f"expected one intrinsics row per pose")
    if len(c2w) == 0:
        raise ArtifactError(f"{pose_uri} holds no poses")
    pinds, iinds = np.asarray(pinds, np.int64), np.asarray(iinds, np.int64)
    if not np.array_equal(pinds, iinds):
        k = int(np.nonzero(pinds != iinds)[0][0])
        raise ArtifactError(f"{intr_uri}: row {k} is frame {iinds[k]} but {pose_uri} row {k} is frame {pinds[k]}; "
                            f"expected the same frame indices")
    pcheck = check_poses(c2w, pose_uri, valid=store.read_pose_flags(name), inds=pinds)
    pcheck.raise_if_malformed()
    check_intrinsics(intr, intr_uri, types, iinds).raise_if_bad()
    pano = [k for k, t in enumerate(types) if str(t).upper() == "PANORAMA"]
    if pano:
        raise UnsupportedCameraError(panorama_refusal(f"{intr_uri} frame {int(iinds[pano[0]])}"))
    # every file well formed; now: do they belong to one run (see io/generation.py)?
    store.check_set(name, ("rgb", "pose", "intrinsics", "camera", "sparse", "depth", "info"))
    info = probe(rgb_uri)
    if info.num_frames != len(c2w):
        log.warning("%s has %d frames but %s has %d poses; exporting the frames that have both",
                    rgb_uri, info.num_frames, pose_uri, len(c2w))
    sparse = None
    if store.exists("sparse", name):
        sparse_uri = store.path("sparse", name)
        sparse = store.read_sparse_map(name)
        known = np.isin(sparse.obs_frame, pinds)
        if not np.all(known):
            k = int(np.nonzero(~known)[0][0])
            raise ArtifactError(
                f"{sparse_uri}: observation {k} references frame {int(sparse.obs_frame[k])}, outside the pose "
                f"range [{int(pinds[0])}, {int(pinds[-1])}] of {pose_uri}")
        if not np.all(np.isfinite(sparse.points)):
            k = int(np.nonzero(~np.all(np.isfinite(sparse.points), axis=1))[0][0])
            raise ArtifactError(f"{sparse_uri}: point {k} is not finite")
        if len(sparse.obs_uv) and not np.all(np.isfinite(sparse.obs_uv)):
            k = int(np.nonzero(~np.all(np.isfinite(sparse.obs_uv), axis=1))[0][0])
            raise ArtifactError(f"{sparse_uri}: observation {k} (frame {int(sparse.obs_frame[k])}) has a "
                                f"non-finite pixel position")
    return Inputs(c2w, intr, pinds, types, info.width, info.height, info.num_frames, sparse, pcheck.usable)


def select_rows(inds: np.ndarray, frames: Sequence[int] | range | slice | None, pose_uri: str) -> np.ndarray:
    """Row positions (into the pose arrays) of the requested frames, in increasing frame order."""
    if frames is None:
        return np.arange(len(inds))
    if isinstance(frames, slice):
        rows = np.arange(len(inds))[frames]
        if rows.size == 0:
            raise FrameRangeError(f"frame slice {frames} selects no rows of {pose_uri} ({len(inds)} poses)")
        return np.sort(rows)
    wanted = np.asarray(list(frames), dtype=np.int64)
    if wanted.size == 0:
        raise FrameRangeError(f"no frames selected for export from {pose_uri}")
    pos = np.searchsorted(inds, wanted)
    bad = (pos >= len(inds)) | (inds[np.minimum(pos, len(inds) - 1)] != wanted)
    if np.any(bad):
        f = int(wanted[np.nonzero(bad)[0][0]])
        raise FrameRangeError(f"frame {f} is not in {pose_uri} (available frames [{int(inds[0])}, {int(inds[-1])}])")
    return np.unique(pos)




def use_sparse_map(inp: Inputs, sparse_map: SparseMap, source: str | None, pose_uri: str) -> None:
    """Export ``sparse_map`` (e.g. the SLAM map) instead of the artifact's sparse map, after checking it."""
    sparse_map.validate(source or "sparse_map")
    known = np.isin(sparse_map.obs_frame, inp.inds)
    if not np.all(known):
        k = int(np.nonzero(~known)[0][0])
        raise ArtifactError(f"{source or 'sparse map'}: observation {k} references frame "
                            f"{int(sparse_map.obs_frame[k])}, outside the pose range of {pose_uri}")
    if not (np.all(np.isfinite(sparse_map.points)) and np.all(np.isfinite(sparse_map.obs_uv))):
        raise ArtifactError(f"{source or 'sparse map'}: non-finite points or observations")
    inp.sparse = sparse_map


def select_frames(inp: Inputs, frames: Sequence[int] | range | slice | None, pose_uri: str, rgb_uri: str,
                  warnings: list[str], notes: list[str]) -> np.ndarray:
    """Pose rows to export: the requested frames minus those flagged invalid (a warning and a note say so)."""
    rows = select_rows(inp.inds, frames, pose_uri)
    skipped = rows[~inp.usable[rows]]
    if skipped.size:
        if skipped.size == rows.size:
            raise ArtifactError(f"{pose_uri}: every selected frame ({rows.size}) is flagged invalid "
                                f"(tracking lost); nothing to export")
        msg = (f"{skipped.size} frame(s) flagged invalid in {pose_uri} (tracking lost: no measured pose) "
               f"were left out, first frame {int(inp.inds[skipped[0]])}")
        log.warning(msg)
        warnings.append(msg)
        notes.append(msg)
        rows = rows[inp.usable[rows]]
    last = int(inp.inds[rows][-1])
    if last >= inp.rgb_frames:
        raise FrameRangeError(f"frame {last} is selected for export but {rgb_uri} has "
                              f"only frames [0, {inp.rgb_frames - 1}]")
    return rows
