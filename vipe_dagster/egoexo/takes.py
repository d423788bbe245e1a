"""Discover Ego-Exo4D takes whose exo cameras can be rendered as ego views.

Layout under a takes root (what Ego-Exo4D downloads plus ViPE results, as
:func:`vipe_dagster.synth.egoexo_take.generate_take` writes it)::

    <root>/vipe_results/<take>/<cam>/                     ViPE result of one exo camera (rgb, pose, intrinsics, depth)
    <root>/annotations/ego_pose/<split>/camera_pose/<uid>.json   ego trajectory; ``metadata.take_name`` names the take
    <root>/takes/<take>/trajectory/gopro_calibs.csv       exo camera-to-world per camera (optional if the JSON has it)
    <root>/takes/<take>/trajectory/online_calibration.jsonl      Aria camera-rgb calibration (optional)

A take x camera pair is *renderable* when the camera's ViPE result holds one sequence with rgb, pose,
intrinsics and depth, the take has a camera_pose JSON with an Aria trajectory, and the camera's
placement is known (a ``gopro_calibs.csv`` row, or the JSON's ``camXX`` entry). Pairs that are not are
listed in :attr:`Discovery.skipped` with the reason, never returned as renderable.

Partition keys match ``[a-z0-9_-]+``: the take name lower-cased with other characters replaced by
``-`` and runs of ``_`` collapsed (so ``__`` only ever separates take and camera in a view key
``<take>__<cam>``); a clash gets a short hash suffix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..io import ArtifactStore, fs
from ..io.names import sequence_name_problem
from . import formats as F

log = logging.getLogger(__name__)

SEP = "__"
_KEY_OK = re.compile(r"^[a-z0-9_-]+$")


@dataclass(frozen=True)
class TakeCamera:
    """One renderable exo camera of a take and every file ``render_ego`` needs."""

    take: str  # take name as on disk
    take_key: str  # partition key of the take
    cam: str  # camXX / gpXX
    vipe_dir: str
    sequence: str
    camera_pose_json: str
    gopro_calibs: str | None
    online_calibration: str | None
    num_frames: int

    @property
    def key(self) -> str:
        return view_key(self.take_key, self.cam)


@dataclass
class Discovery:
    views: list[TakeCamera] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (take, cam or "*", reason)

    @property
    def take_keys(self) -> list[str]:
        return sorted({v.take_key for v in self.views})

    @property
    def view_keys(self) -> list[str]:
        return sorted(v.key for v in self.views)

    def get(self, key: str) -> TakeCamera:
        for v in self.views:
            if v.key == key:
                return v
        raise InputError(f"ego view {key!r} is not renderable (known: {', '.join(self.view_keys) or 'none'})"
                         + "".join(f"; {t}/{c}: {r}" for t, c, r in self.skipped))

    def of_take(self, take_key: str) -> list[TakeCamera]:
        return sorted((v for v in self.views if v.take_key == take_key), key=lambda v: v.cam)


def sanitize_take(name: str) -> str:
    key = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    key = re.sub(r"_{2,}", "_", key)
    return key or "take"


def view_key(take_key: str, cam: str) -> str:
    return f"{take_key}{SEP}{cam}"


def split_view_key(key: str) -> tuple[str, str]:
    take, sep, cam = key.rpartition(SEP)
    if not sep or not take or not cam:
        raise InputError(f"ego view key {key!r} is not <take>{SEP}<camera>")
    return take, cam


def select_views(keys: list[str], takes: list[str] | None = None, cameras: list[str] | None = None) -> list[str]:
    """View keys of the given take keys and/or cameras (a backfill over "these takes" or "only cam02")."""
    out = []
    for k in keys:
        t, c = split_view_key(k)
        if (takes is None or t in takes) and (cameras is None or c in cameras):
            out.append(k)
    return out


def _isdir(uri: str) -> bool:
    f, path = fs.get_fs(uri)
    return bool(f.isdir(path))


_TAKE_NAME = re.compile(r'"take_name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_PEEK = 65536


def _take_name(path: str) -> str | None:
    """``metadata.take_name`` of a camera_pose JSON; camera_pose files hold every frame's extrinsics (MBs),
    so the name is looked for in the first 64 KiB and the whole file is parsed only when it is not there."""
    with fs.open_read(path) as f:
        head = f.read(_PEEK)
    m = _TAKE_NAME.search(head.decode("utf-8", errors="replace"))
    if m:
        return json.loads(f'"{m.group(1)}"')
    meta = F._load_json(path).get("metadata") or {}
    return meta.get("take_name")


def _pose_files(root: str) -> dict[str, str]:
    """take name -> camera_pose JSON (``metadata.take_name``), over every split; the first file wins."""
    base = fs.join(root, "annotations", "ego_pose")
    out: dict[str, str] = {}
    if not _isdir(base):
        return out
    for split in sorted(fs.listdir(base)):
        cp = fs.join(base, split, "camera_pose")
        if not _isdir(cp):
            continue
        for name in sorted(fs.listdir(cp)):
            if not name.endswith(".json"):
                continue
            path = fs.join(cp, name)
            try:
                take = _take_name(path)
            except (InputError, AttributeError, ValueError) as exc:
                log.warning("skipping %s: %s", path, exc)
                continue
            if take and take not in out:
                out[take] = path
    return out


def _sequence(vipe_dir: str) -> tuple[str, int] | str:
    store = ArtifactStore(vipe_dir)
    names = [n for n in store.sequences() if all(store.exists(k, n) for k in ("rgb", "pose", "intrinsics", "depth"))]
    if len(names) != 1:
        return f"{vipe_dir} holds {len(names)} complete ViPE sequences (rgb, pose, intrinsics, depth); expected one"
    poses, _ = store.read_pose(names[0])
    return names[0], len(poses)


def discover_takes(root: str, take_keys: set[str] | None = None) -> Discovery:
    """Every renderable take x exo camera under ``root`` (see the module docstring); ``take_keys``
    restricts the (expensive) per-camera checks to those takes."""
    out = Discovery()
    results = fs.join(root, "vipe_results")
    if not _isdir(results):
        return out
    poses = _pose_files(root)
    used: dict[str, str] = {}
    for take in sorted(fs.listdir(results)):
        tdir = fs.join(results, take)
        problem = sequence_name_problem(take)
        if problem:  # the name is joined onto takes/<take>/trajectory/: it must be one plain folder name
            out.skipped.append((take, "*", f"take folder name {take!r} is not usable: {problem}"))
            continue
        if not _isdir(tdir):
            continue
        if take not in poses:
            out.skipped.append((take, "*", "no annotations/ego_pose/*/camera_pose/*.json with this take_name"))
            continue
        try:
            cp = F.read_camera_pose_json(poses[take])
        except InputError as exc:
            out.skipped.append((take, "*", str(exc)))
            continue
        traj = fs.join(root, "takes", take, "trajectory")
        gopro = fs.join(traj, "gopro_calibs.csv")
        gopro = gopro if fs.exists(gopro) else None
        calibs: dict = {}
        if gopro:
            try:
                calibs = F.read_gopro_calibs(gopro)
            except InputError as exc:
                out.skipped.append((take, "*", str(exc)))
                continue
        online = fs.join(traj, "online_calibration.jsonl")
        online = online if fs.exists(online) else None
        tkey = sanitize_take(take)
        if used.get(tkey, take) != take:
            tkey = f"{tkey}-{hashlib.sha1(take.encode()).hexdigest()[:6]}"
        used[tkey] = take
        if take_keys is not None and tkey not in take_keys:
            continue
        for cam in sorted(fs.listdir(tdir)):
            vdir = fs.join(tdir, cam)
            if not re.fullmatch(r"(cam|gp)\d{2}", cam) or not _isdir(vdir):
                continue
            if cam not in calibs and cam not in cp.exo:
                out.skipped.append((take, cam, f"camera {cam} is in neither {gopro or 'gopro_calibs.csv'} nor "
                                               f"{poses[take]}"))
                continue
            seq = _sequence(vdir)
            if isinstance(seq, str):
                out.skipped.append((take, cam, seq))
                continue
            name, n = seq
            if not _KEY_OK.match(view_key(tkey, cam)):
                out.skipped.append((take, cam, f"cannot form a partition key from {take!r}/{cam!r}"))
                continue
            out.views.append(TakeCamera(take, tkey, cam, vdir, name, poses[take], gopro if cam in calibs else None,
                                        online, n))
    for t, c, r in out.skipped:
        log.info("take %s camera %s not renderable: %s", t, c, r)
    return out
