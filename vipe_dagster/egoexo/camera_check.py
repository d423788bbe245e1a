"""Camera-ID check of one take x exo camera against the Ego-Exo4D files (no dagster import).

A view ``<take>/<cam>`` is consistent when

- the camera is in the take's calibration: a ``cam_uid`` row of ``takes/<take>/trajectory/gopro_calibs.csv``
  (or, for a take without that file, a ``camNN`` entry of the camera_pose JSON);
- the camera exists in the take: its video ``takes/<take>/<video_subdir>/<cam>.mp4`` or a ViPE result folder
  ``vipe_results/<take>/<cam>[_suffix]`` (EgoX names such as ``cam02_static_vda_fixedcam`` count);
- the take has a camera_pose JSON (``metadata.take_name``) with an Aria trajectory, and that trajectory holds
  every take frame of the requested range.

Every failed condition becomes one line of :attr:`CameraIdReport.problems` naming the file and what was
expected; the camera's presence in the camera_pose JSON is reported as a fact (the synthetic and some real
takes place extra cameras only through ``gopro_calibs.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..io import fs
from . import formats as F
from .takes import VIDEO_SUBDIR, PoseFile, _isdir, pose_index, result_camera


@dataclass
class CameraIdReport:
    take: str
    cam: str
    problems: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.passed:
            return (f"{self.take}/{self.cam}: in the calibration ({self.facts.get('calibration')}), in the take "
                    f"({self.facts.get('camera_source')}), ego trajectory {self.facts.get('ego_label')} covers "
                    f"take frames {self.facts.get('required_frames')}")
        return f"{self.take}/{self.cam}: " + "; ".join(self.problems)


def _frames_text(frames: np.ndarray) -> str:
    if len(frames) == 0:
        return "none"
    if len(frames) <= 6:
        return ", ".join(str(int(f)) for f in frames)
    return f"{int(frames[0])}, {int(frames[1])}, ... {int(frames[-1])} ({len(frames)} frames)"


def check_camera_ids(root: str, take: str, cam: str, first_frame: int, last_frame: int,
                     video_subdir: str = VIDEO_SUBDIR, pose: PoseFile | None = None) -> CameraIdReport:
    """Check the view ``take``/``cam`` for take frames ``[first_frame, last_frame]`` (module docstring).
    ``pose``: the take's camera_pose JSON when the caller knows it (else every JSON's metadata is read)."""
    rep = CameraIdReport(take, cam)
    rep.facts["required_frames"] = f"[{first_frame}, {last_frame}]"
    traj = fs.join(root, "takes", take, "trajectory")
    gopro = fs.join(traj, "gopro_calibs.csv")
    if pose is None:
        pose = pose_index(root).get(take)
    cp = None
    if pose is None:
        rep.problems.append(f"error: no annotations/ego_pose/<split>/camera_pose/<uid>.json under {root} has "
                            f"metadata.take_name {take!r} (expected the take's camera_pose JSON)")
    else:
        rep.facts["camera_pose_json"] = pose.path
        try:
            cp = F.read_camera_pose_json(pose.path)
        except InputError as exc:
            rep.problems.append(f"error: {exc}")
        rep.facts["take_uid"] = pose.take_uid or (cp.take_uid if cp else None) or \
            pose.path.rsplit("/", 1)[-1].removesuffix(".json")
        if cp is not None and cp.take_name not in (None, take):
            rep.problems.append(f"error: {pose.path}: metadata.take_name is {cp.take_name!r}, expected {take!r}")
    # --- calibration
    if fs.exists(gopro):
        try:
            calibs = F.read_gopro_calibs(gopro)
        except InputError as exc:
            rep.problems.append(f"error: {exc}")
        else:
            rep.facts["calibration_cameras"] = sorted(calibs)
            if cam in calibs:
                rep.facts["calibration"] = gopro
            else:
                rep.problems.append(f"error: camera {cam} is not in {gopro} (expected a cam_uid row {cam!r}; "
                                    f"the file has {', '.join(sorted(calibs)) or 'no rows'})")
    elif cp is not None and cam in cp.exo:
        rep.facts["calibration"] = f"{pose.path} ({cam})"
    else:
        rep.problems.append(f"error: camera {cam} has no calibration: {gopro} is missing and "
                            f"{pose.path if pose else 'the camera_pose JSON'} has no {cam!r} entry")
    if cp is not None:
        rep.facts["in_camera_pose_json"] = cam in cp.exo
    # --- the camera in the take
    video = fs.join(root, "takes", take, *video_subdir.split("/"), f"{cam}.mp4")
    results = fs.join(root, "vipe_results", take)
    folders = sorted(f for f in fs.listdir(results) if result_camera(f) == cam) if _isdir(results) else []
    if fs.exists(video):
        rep.facts["camera_source"] = video
    elif folders:
        rep.facts["camera_source"] = fs.join(results, folders[0])
    else:
        rep.problems.append(f"error: camera {cam} is not in take {take!r}: neither {video} nor a ViPE result "
                            f"{results}/{cam}[_<suffix>] exists")
    # --- ego stream over the frame range
    if cp is not None:
        frames = np.asarray(cp.ego.frames, dtype=np.int64)
        rep.facts["ego_label"] = cp.ego.label
        rep.facts["ego_frames"] = f"[{int(frames[0])}, {int(frames[-1])}] ({len(frames)} frames)"
        want = np.arange(first_frame, last_frame + 1, dtype=np.int64)
        missing = np.setdiff1d(want, frames)
        if len(missing):
            rep.problems.append(f"error: {pose.path}: {cp.ego.label}.camera_extrinsics lacks take frames "
                                f"{_frames_text(missing)} of the range [{first_frame}, {last_frame}] "
                                f"(it holds {rep.facts['ego_frames']})")
    return rep
