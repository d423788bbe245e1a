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
listed in :attr:`Discovery.skipped` with the reason, never returned as renderable. The ``<cam>`` folder may
carry an EgoX result name (``cam02_static_vda_fixedcam``, ``cam01_lyra_fixedcam``): :func:`result_camera`
maps it to its camera; a folder naming no camera (``exo``) is reported, not dropped silently.

:func:`discover_raw_takes` reads the raw download instead (``takes/<take>/frame_aligned_videos/downscaled/
448/{camNN,gpNN,ariaNN*}.mp4`` plus the same calibration and annotation files) and reports every camera,
video or take it cannot use.

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
    result_folder: str = ""  # folder under vipe_results/<take>/ (cam02, cam02_static_vda_fixedcam, ...)

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


VIPE_RESULTS = "vipe_results"
BEST_VIEW_DIR = "best_ego_view_rendering"


def vipe_result_dir(root: str, take: str, cam: str) -> str:
    """The ViPE result folder of one exo camera of a take: ``<root>/vipe_results/<take>/<cam>``."""
    return fs.join(root, VIPE_RESULTS, take, cam)


def best_view_dir(root: str, take: str) -> str:
    """The reference's per-take best-view folder: ``<root>/best_ego_view_rendering/<take>``."""
    return fs.join(root, BEST_VIEW_DIR, take)


def rig_cache_dir(root: str, take: str, key: str) -> str:
    """Where the rig sweeps of a take are kept between the per-camera inferences: ``<root>/rig_cache/<take>/<key>``."""
    return fs.join(root, "rig_cache", take, key)


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


_CAM = re.compile(r"^((?:cam|gp)\d{2})(?:_([a-z0-9_]+))?$")
_ARIA_VIDEO = re.compile(r"^(aria\d{2})(?:[_-][A-Za-z0-9_-]+)?\.mp4$")
EXO_VIDEO = re.compile(r"^((?:cam|gp)\d{2})\.mp4$")
VIDEO_SUBDIR = "frame_aligned_videos/downscaled/448"


def result_camera(folder: str) -> str | None:
    """The exo camera a ViPE result folder belongs to: ``cam02`` itself, or an EgoX-style result name
    ``<cam>_<pipeline/suffix>`` such as ``cam02_static_vda_fixedcam``, ``cam01_lyra_fixedcam`` or
    ``cam02_static_vda_fixedcam_slammap``; None when the name names no camera (``exo``, ``notes``)."""
    m = _CAM.match(folder)
    return m.group(1) if m else None


def _gopro_calibs(traj: str) -> tuple[str | None, dict]:
    """``(path, calibrations)`` of a take's ``trajectory/gopro_calibs.csv``; ``(None, {})`` when it has none.
    A file that cannot be parsed raises InputError."""
    gopro = fs.join(traj, "gopro_calibs.csv")
    if not fs.exists(gopro):
        return None, {}
    return gopro, F.read_gopro_calibs(gopro)


def _isdir(uri: str) -> bool:
    f, path = fs.get_fs(uri)
    return bool(f.isdir(path))


_TAKE_NAME = re.compile(r'"take_name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_TAKE_UID = re.compile(r'"take_uid"\s*:\s*"((?:[^"\\]|\\.)*)"')
_PEEK = 65536


def _take_meta(path: str) -> tuple[str | None, str | None]:
    """``metadata.take_name`` and ``metadata.take_uid`` of a camera_pose JSON; camera_pose files hold every
    frame's extrinsics (MBs), so both are looked for in the first 64 KiB and the whole file is parsed only
    when they are not there."""
    with fs.open_read(path) as f:
        head = f.read(_PEEK).decode("utf-8", errors="replace")
    m, u = _TAKE_NAME.search(head), _TAKE_UID.search(head)
    if m and u:
        return json.loads(f'"{m.group(1)}"'), json.loads(f'"{u.group(1)}"')
    obj = F._load_json(path)
    meta = (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
    if not isinstance(meta, dict):
        raise InputError(f"{path}: 'metadata' must be an object with take_name and take_uid")
    return meta.get("take_name"), meta.get("take_uid")


def _take_name(path: str) -> str | None:
    return _take_meta(path)[0]


@dataclass(frozen=True)
class PoseFile:
    path: str
    take_uid: str  # metadata.take_uid, else the file name without .json (Ego-Exo4D names it <uid>.json)
    split: str


def pose_index(root: str, skipped: list[tuple[str, str, str]] | None = None) -> dict[str, PoseFile]:
    """take name -> its camera_pose JSON over every split of ``annotations/ego_pose/<split>/camera_pose/``;
    the first file (sorted by split, then name) wins. Files that cannot be used go to ``skipped`` as
    ``("*", <path>, reason)``."""
    skipped = [] if skipped is None else skipped
    base = fs.join(root, "annotations", "ego_pose")
    out: dict[str, PoseFile] = {}
    if not _isdir(base):
        return out
    for split in sorted(fs.listdir(base)):
        cp = fs.join(base, split, "camera_pose")
        if not _isdir(cp):
            continue
        for name in sorted(fs.listdir(cp)):
            path = fs.join(cp, name)
            if not name.endswith(".json"):
                skipped.append(("*", path, "not a .json file"))
                continue
            try:
                take, uid = _take_meta(path)
            except (InputError, AttributeError, ValueError) as exc:
                log.warning("skipping %s: %s", path, exc)
                skipped.append(("*", path, f"error: {exc}"))
                continue
            if not take:
                skipped.append(("*", path, "error: no metadata.take_name (expected {\"metadata\": {\"take_name\": "
                                           "..., \"take_uid\": ...}})"))
                continue
            if take in out:
                skipped.append((take, path, f"take {take!r} is already named by {out[take].path}; that file is used"))
                continue
            out[take] = PoseFile(path, uid or name[: -len(".json")], split)
    return out


def _pose_files(root: str) -> dict[str, str]:
    """take name -> camera_pose JSON (``metadata.take_name``), over every split; the first file wins."""
    return {t: p.path for t, p in pose_index(root).items()}


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
    results = fs.join(root, VIPE_RESULTS)
    if not _isdir(results):
        return out
    poses = {t: pf.path for t, pf in pose_index(root, out.skipped).items()}
    used: dict[str, str] = {}
    for take in sorted(fs.listdir(results)):
        tdir = fs.join(results, take)
        problem = sequence_name_problem(take)
        if problem:  # the name is joined onto takes/<take>/trajectory/: it must be one plain folder name
            out.skipped.append((take, "*", f"take folder name {take!r} is not usable: {problem}"))
            continue
        if not _isdir(tdir):
            out.skipped.append((take, "*", f"{tdir} is not a folder (expected vipe_results/<take>/<cam>/)"))
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
        try:
            gopro, calibs = _gopro_calibs(traj)
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
        chosen: dict[str, str] = {}
        # a plain camNN folder first, then EgoX-style names in sorted order: the first complete result wins
        for folder in sorted(fs.listdir(tdir), key=lambda f: (f != result_camera(f), f)):
            vdir = fs.join(tdir, folder)
            cam = result_camera(folder)
            if cam is None:
                out.skipped.append((take, folder, f"result folder {folder!r} names no exo camera (expected camNN, "
                                                  f"gpNN or an EgoX name such as camNN_lyra_fixedcam)"))
                continue
            if not _isdir(vdir):
                out.skipped.append((take, folder, f"{vdir} is not a folder"))
                continue
            if cam in chosen:
                out.skipped.append((take, folder, f"result {folder!r} of {cam}: {chosen[cam]!r} is used instead"))
                continue
            if cam not in calibs and cam not in cp.exo:
                out.skipped.append((take, folder, f"camera {cam} is in neither {gopro or 'gopro_calibs.csv'} nor "
                                                  f"{poses[take]}"))
                continue
            seq = _sequence(vdir)
            if isinstance(seq, str):
                out.skipped.append((take, folder, seq))
                continue
            name, n = seq
            if not _KEY_OK.match(view_key(tkey, cam)):
                out.skipped.append((take, folder, f"cannot form a partition key from {take!r}/{cam!r}"))
                continue
            chosen[cam] = folder
            out.views.append(TakeCamera(take, tkey, cam, vdir, name, poses[take], gopro if cam in calibs else None,
                                        online, n, folder))
    for t, c, r in out.skipped:
        log.info("take %s camera %s not renderable: %s", t, c, r)
    return out


def take_key_map(names: list[str]) -> dict[str, str]:
    """Partition key of every take name (sorted; a clash of sanitised names gets a short hash suffix)."""
    used: dict[str, str] = {}
    out: dict[str, str] = {}
    for take in sorted(names):
        tkey = sanitize_take(take)
        if used.get(tkey, take) != take:
            tkey = f"{tkey}-{hashlib.sha1(take.encode()).hexdigest()[:6]}"
        used[tkey] = take
        out[take] = tkey
    return out


# ------------------------------------------------------------------ the raw Ego-Exo4D layout
@dataclass(frozen=True)
class RawTake:
    """One take of the raw Ego-Exo4D download and the files of its cameras."""

    take: str
    take_key: str
    take_uid: str | None
    camera_pose_json: str | None
    split: str | None
    gopro_calibs: str | None
    online_calibration: str | None
    exo_videos: dict[str, str]  # camNN/gpNN -> frame-aligned video, only cameras that are placed
    ego_videos: dict[str, str]  # ariaNN -> frame-aligned video (e.g. aria01_214-1.mp4)
    ego_label: str | None  # first aria* entry of the camera_pose JSON
    ego_frames: tuple[int, int] | None  # first and last take frame of that trajectory

    def view_keys(self) -> list[str]:
        return [view_key(self.take_key, c) for c in sorted(self.exo_videos)]


@dataclass
class RawDiscovery:
    takes: list[RawTake] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (take or "*", camera/file/folder, why)

    @property
    def take_keys(self) -> list[str]:
        return sorted(t.take_key for t in self.takes)

    @property
    def view_keys(self) -> list[str]:
        return sorted(k for t in self.takes for k in t.view_keys())

    def get(self, take_key: str) -> RawTake:
        for t in self.takes:
            if t.take_key == take_key:
                return t
        raise InputError(f"take {take_key!r} is not under the Ego-Exo4D root (known: "
                         f"{', '.join(self.take_keys) or 'none'})"
                         + "".join(f"; {t}/{c}: {r}" for t, c, r in self.skipped if t != "*"))

    def report(self) -> str:
        """Markdown table of every skipped take, camera, video or file with the reason."""
        if not self.skipped:
            return "nothing skipped"
        rows = "\n".join(f"| {t} | {c} | {r.replace('|', '/')} |" for t, c, r in self.skipped)
        return "| take | camera / file | reason |\n|---|---|---|\n" + rows


def discover_raw_takes(root: str, take_keys: set[str] | None = None,
                       video_subdir: str = VIDEO_SUBDIR) -> RawDiscovery:
    """Every take of a raw Ego-Exo4D root (local folder or s3://)::

        <root>/takes/<take>/<video_subdir>/{camNN,gpNN}.mp4, ariaNN*.mp4   frame-aligned videos
        <root>/takes/<take>/trajectory/gopro_calibs.csv                  exo camera placement + KB4
        <root>/takes/<take>/trajectory/online_calibration.jsonl          Aria camera-rgb calibration
        <root>/annotations/ego_pose/<split>/camera_pose/<uid>.json        take_name <-> take_uid, ego poses

    An exo camera is kept when its video exists and it has a placement (a ``gopro_calibs.csv`` row, or
    the JSON's ``camNN`` entry when the take has no ``gopro_calibs.csv``). Everything else is reported in
    :attr:`RawDiscovery.skipped` with the reason: takes without a camera_pose JSON or video folder,
    calibrated cameras without a video, videos without calibration, files whose name is no camera."""
    out = RawDiscovery()
    tdir_root = fs.join(root, "takes")
    if not _isdir(tdir_root):
        out.skipped.append(("*", tdir_root, "error: no takes/ folder (expected takes/<take>/"
                                            f"{video_subdir}/<cam>.mp4)"))
        return out
    poses = pose_index(root, out.skipped)
    names = []
    for take in sorted(fs.listdir(tdir_root)):
        problem = sequence_name_problem(take)
        if problem:
            out.skipped.append((take, "*", f"take folder name {take!r} is not usable: {problem}"))
        elif not _isdir(fs.join(tdir_root, take)):
            out.skipped.append((take, "*", f"{fs.join(tdir_root, take)} is not a folder"))
        else:
            names.append(take)
    keys = take_key_map(names)
    for take in names:
        tkey = keys[take]
        if take_keys is not None and tkey not in take_keys:
            continue
        t = _raw_take(root, take, tkey, poses.get(take), video_subdir, out.skipped)
        if t is not None:
            out.takes.append(t)
    for t, c, r in out.skipped:
        log.info("Ego-Exo4D %s %s skipped: %s", t, c, r)
    return out


def _raw_take(root: str, take: str, tkey: str, pose: PoseFile | None, video_subdir: str,
              skipped: list[tuple[str, str, str]]) -> RawTake | None:
    tdir = fs.join(root, "takes", take)
    vdir = fs.join(tdir, *video_subdir.split("/"))
    if not _isdir(vdir):
        skipped.append((take, "*", f"no video folder {vdir} (expected {video_subdir}/<cam>.mp4)"))
        return None
    traj = fs.join(tdir, "trajectory")
    try:
        gopro, calibs = _gopro_calibs(traj)
    except InputError as exc:
        skipped.append((take, "*", f"error: {exc}"))
        return None
    online = fs.join(traj, "online_calibration.jsonl")
    online = online if fs.exists(online) else None
    cp = None
    if pose is None:
        skipped.append((take, "*", "no annotations/ego_pose/<split>/camera_pose/<uid>.json whose metadata.take_name "
                                   f"is {take!r}: no ego trajectory"))
        return None
    try:
        cp = F.read_camera_pose_json(pose.path)
    except InputError as exc:
        skipped.append((take, "*", f"error: {exc}"))
        return None
    exo: dict[str, str] = {}
    ego: dict[str, str] = {}
    for name in sorted(fs.listdir(vdir)):
        path = fs.join(vdir, name)
        m, a = EXO_VIDEO.match(name), _ARIA_VIDEO.match(name)
        if a:
            ego.setdefault(a.group(1), path)
            continue
        if not m:
            skipped.append((take, name, f"{path}: name is no camera video (expected camNN.mp4, gpNN.mp4 or "
                                        f"ariaNN*.mp4)"))
            continue
        cam = m.group(1)
        if gopro and cam not in calibs:
            skipped.append((take, cam, f"camera {cam} is not in {gopro} (cameras there: "
                                       f"{', '.join(sorted(calibs)) or 'none'})"))
            continue
        if not gopro and cam not in cp.exo:
            skipped.append((take, cam, f"camera {cam} has no placement: no gopro_calibs.csv in {traj} and no "
                                       f"{cam!r} entry in {pose.path}"))
            continue
        if not _KEY_OK.match(view_key(tkey, cam)):
            skipped.append((take, cam, f"cannot form a partition key from {take!r}/{cam!r}"))
            continue
        exo[cam] = path
    if not ego:
        skipped.append((take, "aria", f"no Aria video (ariaNN*.mp4) in {vdir}: the ego stream comes from "
                                      f"{pose.path} only"))
    for cam in sorted(set(calibs) - set(exo)):
        if not any(c == cam for t, c, _r in skipped if t == take):
            skipped.append((take, cam, f"camera {cam} is in {gopro} but its video {fs.join(vdir, cam + '.mp4')} "
                                       f"is missing"))
    frames = (int(cp.ego.frames[0]), int(cp.ego.frames[-1])) if len(cp.ego.frames) else None
    return RawTake(take, tkey, pose.take_uid or cp.take_uid, pose.path, pose.split, gopro, online, exo, ego,
                   cp.ego.label, frames)
