"""Real evaluation data outside the repository: the 7-Scenes development split and the bundled sample video.

The 7-Scenes data is for non-commercial research use only: it is read where it lies (``../shared/data`` beside
the repository, or ``$VIPE_7SCENES``) and never copied into the repository; image folders made for a run are
symlinks in a temporary folder.

7-Scenes facts (see ``../shared/data/README.md``): 640x480 colour frames, 30 Hz; ``frame-NNNNNN.pose.txt`` is a
4x4 camera-to-world pose in metres (OpenCV axes, KinectFusion pseudo-ground-truth, good to 1-3 cm);
``frame-NNNNNN.depth.png`` is uint16 millimetres of the *depth* camera, 0 = invalid; colour and depth are two
unregistered sensors a few pixels apart. The shipped 585 px focal belongs to the depth camera; published RGB
focal estimates are 525-533 px.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

REPO = Path(__file__).resolve().parents[2]
SEVEN_SCENES_DEV = "7scenes_redkitchen_500_999"
DOG_EXAMPLE = REPO / "samples" / "dog-example.mp4"
SEVEN_SCENES_FOCALS = {"depth_camera_585": 585.0, "rgb_published_525": 525.0}


def shared_data_dir() -> Path:
    """``$VIPE_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("VIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class SevenScenes:
    """One 7-Scenes sequence folder (``frame-NNNNNN.{color.jpg,depth.png,pose.txt}``)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.colors = sorted(self.root.glob("frame-*.color.jpg"))
        if not self.colors:
            raise InputError(f"{self.root}: no frame-*.color.jpg files (expected a 7-Scenes sequence folder)")

    @property
    def name(self) -> str:
        return self.root.name

    def __len__(self) -> int:
        return len(self.colors)

    def _sibling(self, i: int, kind: str) -> Path:
        return self.colors[i].with_name(self.colors[i].name.replace(".color.jpg", f".{kind}"))

    def gt_c2w(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """(N,4,4) camera-to-world poses of frames ``start..end`` (inclusive, indices into the folder)."""
        end = len(self) - 1 if end is None else end
        out = []
        for i in range(start, end + 1):
            p = self._sibling(i, "pose.txt")
            T = np.loadtxt(p)
            if T.shape != (4, 4) or not np.isfinite(T).all():
                raise InputError(f"{p}: expected a finite 4x4 matrix, got shape {T.shape}")
            out.append(T)
        return np.stack(out)

    def depth_m(self, i: int) -> np.ndarray:
        """Kinect depth of frame ``i`` in metres (float32, 0 = invalid)."""
        import cv2

        p = self._sibling(i, "depth.png")
        d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if d is None or d.dtype != np.uint16:
            raise InputError(f"{p}: expected a uint16 PNG of millimetres")
        d = d.astype(np.float32) / 1000.0
        d[d >= 65.535] = 0.0  # 65535 marks invalid in some releases
        return d

    def image_folder(self, dst: str | os.PathLike, start: int = 0, end: int | None = None) -> Path:
        """A folder of symlinks ``000000.jpg, ...`` to the colour frames ``start..end`` (inclusive), readable
        as an image-folder video; nothing is copied."""
        end = len(self) - 1 if end is None else end
        dst = Path(dst)
        dst.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(range(start, end + 1)):
            link = dst / f"{k:06d}.jpg"
            if not link.exists():
                link.symlink_to(self.colors[i].resolve())
        return dst


def seven_scenes(name: str = SEVEN_SCENES_DEV) -> SevenScenes | None:
    """The named 7-Scenes folder under the shared data, or ``None`` when it is absent (suites skip then)."""
    root = Path(os.environ["VIPE_7SCENES"]) if os.environ.get("VIPE_7SCENES") else shared_data_dir() / name
    if not root.is_dir() or not any(root.glob("frame-*.color.jpg")):
        return None
    return SevenScenes(root)
