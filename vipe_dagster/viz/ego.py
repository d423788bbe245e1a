"""Discovery of ego-view renders (``render/<take>/<camera>/``) that belong to a sequence.

A render folder may hold:

- a rendered ego video: ``ego_Prior.mp4`` (EgoX's name), otherwise the first ``*.mp4`` in the folder,
  otherwise PNG frames (``frame_%06d.png`` as EgoX's pre-release writes them, or any ``*.png``, in name order);
- the ego trajectory, either ``ego_pose.npz`` (``data`` (M,4,4) OpenCV camera-to-world already in the
  ViPE world of the sequence; optional ``intrinsics`` (4,) fx fy cx cy and ``size`` (2,) w h) or an EgoX
  ``meta.json`` (``test_datasets[0]``: ``ego_extrinsics`` list of 3x4 world-to-camera, ``camera_extrinsics``
  the exo world-to-camera, ``ego_intrinsics`` 3x3). EgoX relates the worlds by P_world = T_exo_c2w P_vipe,
  so the ego pose in the ViPE world is ``exo_W2C @ inv(ego_W2C)``.

A folder belongs to sequence ``<n>`` when ``<n>`` equals the take, the camera or ``<take>_<camera>``,
starts with ``<camera>_`` (EgoX result names such as ``cam02_static_vda``), or when the store holds a
single sequence. Anything missing or unreadable is skipped with a log message: renders are optional.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..io import ArtifactStore, fs

log = logging.getLogger(__name__)


@dataclass
class EgoRender:
    take: str
    camera: str
    video_uri: str | None
    c2w: np.ndarray | None  # (M,4,4) in the ViPE world
    intrinsics: np.ndarray  # fx fy cx cy
    size: tuple[int, int]
    frame_uris: list[str] = field(default_factory=list)  # PNG frames when there is no video

    def read_frame(self, index: int) -> np.ndarray | None:
        """RGB of PNG frame ``index`` (None when out of range or unreadable)."""
        if not 0 <= index < len(self.frame_uris):
            return None
        img = cv2.imdecode(np.frombuffer(fs.read_bytes(self.frame_uris[index]), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("%s: not a readable image", self.frame_uris[index])
            return None
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _pad44(m) -> np.ndarray:
    a = np.asarray(m, np.float64)
    if a.shape == (3, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != (4, 4):
        raise ValueError(f"expected a 3x4 or 4x4 matrix, got {a.shape}")
    return a


def _from_meta(uri: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    meta = json.loads(fs.read_text(uri))
    sample = meta["test_datasets"][0] if "test_datasets" in meta else meta
    exo_w2c = _pad44(sample.get("camera_extrinsics", np.eye(4)))
    ego = np.stack([exo_w2c @ np.linalg.inv(_pad44(e)) for e in sample["ego_extrinsics"]])
    K = np.asarray(sample.get("ego_intrinsics", [[150, 0, 255.5], [0, 150, 255.5], [0, 0, 1]]), np.float64)
    intr = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], np.float32)
    size = (int(round(2 * K[0, 2] + 1)), int(round(2 * K[1, 2] + 1)))
    return ego.astype(np.float32), intr, size


def _from_npz(uri: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    with np.load(io.BytesIO(fs.read_bytes(uri)), allow_pickle=False) as z:
        data = np.asarray(z["data"], np.float32)
        if data.ndim != 3 or data.shape[1:] != (4, 4):
            raise ValueError(f"'data' has shape {data.shape}, expected (M,4,4)")
        intr = np.asarray(z["intrinsics"], np.float32)[:4] if "intrinsics" in z.files \
            else np.array([150, 150, 255.5, 255.5], np.float32)
        size = tuple(int(v) for v in z["size"][:2]) if "size" in z.files \
            else (int(round(2 * intr[2] + 1)), int(round(2 * intr[3] + 1)))
    return data, intr, size  # type: ignore[return-value]


def _belongs(name: str, take: str, camera: str, single: bool) -> bool:
    return single or name in (take, camera, f"{take}_{camera}") or name.startswith(f"{camera}_")


def find_ego_renders(store: ArtifactStore, name: str) -> list[EgoRender]:
    root = fs.join(store.root, "render")
    single = len(store.sequences()) <= 1
    out: list[EgoRender] = []
    for take in fs.listdir(root):
        for camera in fs.listdir(fs.join(root, take)):
            if not _belongs(name, take, camera, single):
                continue
            folder = fs.join(root, take, camera)
            entries = fs.listdir(folder)
            video = "ego_Prior.mp4" if "ego_Prior.mp4" in entries else next(
                (e for e in entries if e.endswith(".mp4") and not e.startswith(".")), None)
            c2w, intr, size = None, np.array([150, 150, 255.5, 255.5], np.float32), (512, 512)
            try:
                if "ego_pose.npz" in entries:
                    c2w, intr, size = _from_npz(fs.join(folder, "ego_pose.npz"))
                elif "meta.json" in entries:
                    c2w, intr, size = _from_meta(fs.join(folder, "meta.json"))
            except (ValueError, KeyError, IndexError, json.JSONDecodeError, OSError) as exc:
                log.warning("%s: ego trajectory not usable (%s); showing the render only", folder, exc)
                c2w = None
            pngs = [] if video else sorted(e for e in entries if e.lower().endswith(".png") and not e.startswith("."))
            if video is None and not pngs and c2w is None:
                continue
            out.append(EgoRender(take, camera, fs.join(folder, video) if video else None, c2w, intr, size,
                                 [fs.join(folder, e) for e in pngs]))
    return out
