"""Ground-truth scene description: textured boxes in a closed room or an enclosed outdoor plain.

The scene is pure geometry (numpy): every object is a triangle mesh with UVs in its own frame and a
world pose per frame (static objects keep one pose, moving objects follow smooth Lissajous paths with
spin). ``world_triangles(k)`` exposes the exact geometry that is rendered at frame ``k`` so tests can
ray-cast it independently of the rasteriser.

World frame: metres, y axis up, floor/ground at y = 0. Camera poses are OpenCV camera-to-world.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ..camera import focal_for_fov
from ..errors import ConfigError
from .textures import procedural_texture
from .trajectory import TRAJECTORIES, make_trajectory, path_length

SCENES = ("indoor", "outdoor")

# room / enclosure extents: (xmin, xmax), (ymin, ymax), (zmin, zmax)
INDOOR_ROOM = ((-4.0, 4.0), (0.0, 3.0), (-7.0, 7.0))
# the enclosure's floor sits 1 m below the ground plane so the two never z-fight
OUTDOOR_ENCLOSURE = ((-150.0, 150.0), (-1.0, 80.0), (-150.0, 150.0))


@dataclass
class SceneConfig:
    """What to generate. ``name`` defaults to ``synth_<scene>_<trajectory>_s<seed>``."""

    trajectory: str = "forward"  # forward | orbit | handheld | rotation | fixed
    scene: str = "indoor"  # indoor (textured room with objects) | outdoor (ground, far boxes, backdrop)
    num_frames: int = 100
    fps: float = 30.0
    width: int = 512
    height: int = 384
    hfov_deg: float = 60.0
    moving_objects: int = 0  # independently moving textured objects (instance masks 1..n)
    seed: int = 0
    name: str | None = None
    k1: float = 0.0  # radial lens distortion (OpenCV / COLMAP SIMPLE_RADIAL k1) of the rendered video; 0 = pinhole
    xi: float = 0.0  # MEI (unified) xi of the rendered video (hfov_deg is then the MEI image's FoV); 0 = pinhole
    panorama: bool = False  # equirectangular 360 x 180 deg video (width = 2 x height; hfov_deg unused)

    def resolved_name(self) -> str:
        return self.name or f"synth_{self.scene}_{self.trajectory}_s{self.seed}"

    def validate(self) -> None:
        if self.trajectory not in TRAJECTORIES:
            raise ConfigError(f"trajectory {self.trajectory!r} is not one of {', '.join(TRAJECTORIES)}")
        if self.scene not in SCENES:
            raise ConfigError(f"scene {self.scene!r} is not one of {', '.join(SCENES)}")
        if int(self.num_frames) < 1:
            raise ConfigError(f"num_frames must be >= 1, got {self.num_frames}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ConfigError(f"fps must be a positive number, got {self.fps}")
        for key in ("width", "height"):
            v = int(getattr(self, key))
            if v < 16 or v > 8192 or v % 2:
                raise ConfigError(f"{key} must be an even number of pixels in [16, 8192] (H.264), got {v}")
        if not (5.0 <= self.hfov_deg <= 150.0):
            raise ConfigError(f"hfov_deg must be in [5, 150] degrees, got {self.hfov_deg}")
        if not (math.isfinite(self.k1) and -0.5 <= self.k1 <= 0.5):
            raise ConfigError(f"k1 must be in [-0.5, 0.5], got {self.k1}")
        if not (math.isfinite(self.xi) and 0.0 <= self.xi <= 1.0):
            raise ConfigError(f"xi must be in [0, 1] (0: pinhole), got {self.xi}")
        if self.xi and self.k1:
            raise ConfigError("give either k1 (radial lens) or xi (MEI lens), not both")
        if self.panorama and (self.xi or self.k1):
            raise ConfigError("a panorama (equirectangular) video has no lens distortion: leave out k1 and xi")
        if self.panorama and int(self.width) != 2 * int(self.height):
            raise ConfigError(f"a panorama (equirectangular, 360 x 180 deg) needs width = 2 x height, got "
                              f"{self.width}x{self.height}")
        if not (0 <= int(self.moving_objects) <= 255):
            raise ConfigError(f"moving_objects must be in [0, 255] (uint8 mask ids), got {self.moving_objects}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"name {self.name!r} may contain only letters, digits, '-', '_' and '.'")


@dataclass
class Intrinsics:
    """Pinhole intrinsics in OpenCV pixel convention (pixel centres at integer coordinates)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)


def intrinsics_for(width: int, height: int, hfov_deg: float) -> Intrinsics:
    fx = focal_for_fov(hfov_deg, width)
    return Intrinsics(fx=fx, fy=fx, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)


@dataclass
class Motion:
    """Smooth motion of a moving object: Lissajous offsets about ``anchor`` plus spin about y."""

    anchor: list[float]
    amplitude: list[float]
    freq_hz: list[float]
    phase: list[float]
    yaw0: float
    yaw_rate: float  # rad/s

    def pose(self, t: float) -> np.ndarray:
        a, amp = np.asarray(self.anchor), np.asarray(self.amplitude)
        off = amp * np.sin(2 * np.pi * np.asarray(self.freq_hz) * t + np.asarray(self.phase))
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("y", self.yaw0 + self.yaw_rate * t).as_matrix()
        T[:3, 3] = a + off
        return T


@dataclass
class SceneObject:
    name: str
    kind: str  # room | enclosure | box
    half_extents: list[float]
    texture: int  # index into Scene.textures
    tex_metres: float  # metres of surface covered by one texture tile
    pose: list[list[float]] = field(default_factory=lambda: np.eye(4).tolist())  # static world pose
    instance_id: int = 0  # 0 static, 1..n moving
    motion: Motion | None = None
    face_textures: list[int] | None = None  # one texture per box face (+x, -x, +y, -y, +z, -z) if given

    def world_pose(self, t: float) -> np.ndarray:
        return self.motion.pose(t) if self.motion is not None else np.asarray(self.pose, np.float64)


def box_mesh(half: np.ndarray, tex_metres: float, inward: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box centred at the origin: (24,3) vertices, (12,3) faces, (24,2) UVs tiled by ``tex_metres``.

    Faces wind counter-clockwise seen from outside (``inward=True``: from inside, for rooms), because
    pyrender's segmentation/depth pass always culls back faces.
    """
    hx, hy, hz = (float(v) for v in half)
    verts, uvs, faces = [], [], []
    # each face: origin corner, edge u, edge v (in metres); outward normal = u x v
    specs = [
        ((hx, -hy, hz), (0, 0, -2 * hz), (0, 2 * hy, 0)),   # +x
        ((-hx, -hy, -hz), (0, 0, 2 * hz), (0, 2 * hy, 0)),  # -x
        ((-hx, hy, hz), (2 * hx, 0, 0), (0, 0, -2 * hz)),   # +y
        ((-hx, -hy, -hz), (2 * hx, 0, 0), (0, 0, 2 * hz)),  # -y
        ((-hx, -hy, hz), (2 * hx, 0, 0), (0, 2 * hy, 0)),   # +z
        ((hx, -hy, -hz), (-2 * hx, 0, 0), (0, 2 * hy, 0)),  # -z
    ]
    for fi, (o, eu, ev) in enumerate(specs):
        o, eu, ev = np.array(o, float), np.array(eu, float), np.array(ev, float)
        lu, lv = np.linalg.norm(eu), np.linalg.norm(ev)
        base = len(verts)
        # offset tiles per face so that adjacent faces do not repeat the same patch
        du, dv = 0.37 * fi, 0.61 * fi
        for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
            verts.append(o + a * eu + b * ev)
            uvs.append((du + a * lu / tex_metres, dv + b * lv / tex_metres))
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    f = np.array(faces, np.int64)
    return np.array(verts), (f[:, ::-1].copy() if inward else f), np.array(uvs)


class Scene:
    """The generated world: objects, textures, intrinsics and camera trajectory."""

    def __init__(self, config: SceneConfig):
        config.validate()
        self.config = config
        cfg = config
        rng = np.random.default_rng(cfg.seed)
        self.intrinsics = intrinsics_for(cfg.width, cfg.height, cfg.hfov_deg)
        self.times = np.arange(cfg.num_frames) / cfg.fps
        self.c2w = make_trajectory(cfg.trajectory, cfg.scene, cfg.num_frames, cfg.fps, rng)
        self._w2c = np.linalg.inv(self.c2w)
        outdoor = cfg.scene == "outdoor"
        self.znear, self.zfar = (0.1, 600.0) if outdoor else (0.05, 60.0)

        n_tex = 14  # indoor: 0-5 the room's six faces; outdoor: 0 ground, 1 backdrop; the rest for objects
        tex_rng = np.random.default_rng([cfg.seed, 7])
        self.textures: list[np.ndarray] = []
        for i in range(n_tex):
            style = "mixed"
            if outdoor and i == 0:
                style = "ground"
            elif outdoor and i == 1:
                style = "sky"
            self.textures.append(procedural_texture(tex_rng, 512, style))

        self.objects: list[SceneObject] = []
        if outdoor:
            (x0, x1), (y0, y1), (z0, z1) = OUTDOOR_ENCLOSURE
            # closed enclosure: ground (floor face) and a far textured backdrop (walls and lid)
            self.objects.append(SceneObject("enclosure", "enclosure", [(x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2],
                                            texture=1, tex_metres=60.0,
                                            pose=_translation([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2])))
            ground_half = [(x1 - x0) / 2, 0.05, (z1 - z0) / 2]
            self.objects.append(SceneObject("ground", "box", ground_half, texture=0, tex_metres=5.0,
                                            pose=_translation([0.0, -0.05, 0.0])))
        else:
            (x0, x1), (y0, y1), (z0, z1) = INDOOR_ROOM
            self.objects.append(SceneObject("room", "room", [(x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2],
                                            texture=0, tex_metres=1.8, face_textures=[0, 1, 2, 3, 4, 5],
                                            pose=_translation([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2])))
        self._first_object_texture = 2 if outdoor else 6
        self._place_moving(rng, n_tex)
        self._place_static(rng, n_tex)

    # ------------------------------------------------------------------ placement
    def _cam_centres(self) -> np.ndarray:
        return self.c2w[:, :3, 3]

    def _visible_somewhere(self, p: np.ndarray) -> bool:
        w2c = self._w2c
        pc = w2c[:, :3, :3] @ p + w2c[:, :3, 3]
        z = pc[:, 2]
        ok = z > 0.2
        if not ok.any():
            return False
        K = self.intrinsics
        u = K.fx * pc[ok, 0] / z[ok] + K.cx
        v = K.fy * pc[ok, 1] / z[ok] + K.cy
        return bool(((u > 0) & (u < self.config.width) & (v > 0) & (v < self.config.height)).any())

    def _place_moving(self, rng: np.random.Generator, n_tex: int) -> None:
        cfg = self.config
        outdoor = cfg.scene == "outdoor"
        n = int(cfg.moving_objects)
        cams = self._cam_centres()
        ref = self.c2w[int(0.6 * (cfg.num_frames - 1))]
        fwd, right = ref[:3, 2], ref[:3, 0]
        for i in range(1, n + 1):
            for attempt in range(200):
                size = rng.uniform(1.0, 2.5) if outdoor else rng.uniform(0.3, 0.6)
                half = np.array([size / 2, size / 2 * rng.uniform(0.7, 1.3), size / 2])
                dist = rng.uniform(8.0, 14.0) if outdoor else rng.uniform(1.8, 3.0)
                dist *= 1.0 + 0.1 * attempt / 50
                anchor = ref[:3, 3] + fwd * dist + right * rng.uniform(-0.35, 0.35) * dist
                anchor[1] = (half[1] + 0.3) if outdoor else rng.uniform(0.8, 1.6)
                amp = np.array([rng.uniform(0.4, 0.9), rng.uniform(0.0, 0.15), rng.uniform(0.2, 0.5)])
                amp *= 4.0 if outdoor else 1.0
                if not outdoor:
                    (rx0, rx1), _, (rz0, rz1) = INDOOR_ROOM
                    anchor[0] = np.clip(anchor[0], rx0 + amp[0] + size, rx1 - amp[0] - size)
                    anchor[2] = np.clip(anchor[2], rz0 + amp[2] + size, rz1 - amp[2] - size)
                motion = Motion(anchor=anchor.tolist(), amplitude=amp.tolist(),
                                freq_hz=rng.uniform(0.12, 0.3, 3).tolist(),
                                phase=rng.uniform(0, 2 * np.pi, 3).tolist(),
                                yaw0=float(rng.uniform(0, 2 * np.pi)), yaw_rate=float(rng.uniform(0.3, 0.8)))
                centres = np.array([motion.pose(t)[:3, 3] for t in self.times])
                clearance = np.linalg.norm(centres - cams, axis=1).min() - np.linalg.norm(half)
                others_ok = all(
                    np.linalg.norm(centres - np.array([o.motion.pose(t)[:3, 3] for t in self.times]), axis=1).min()
                    > np.linalg.norm(half) + np.linalg.norm(o.half_extents)
                    for o in self.objects if o.motion is not None)
                if clearance > (2.0 if outdoor else 0.5) and others_ok:
                    break
            self.objects.append(SceneObject(f"moving_{i}", "box", half.tolist(), texture=int(rng.integers(self._first_object_texture, n_tex)),
                                            tex_metres=1.0 if not outdoor else 2.5, instance_id=i, motion=motion))

    def _place_static(self, rng: np.random.Generator, n_tex: int) -> None:
        cfg = self.config
        outdoor = cfg.scene == "outdoor"
        cams = self._cam_centres()
        moving = [o for o in self.objects if o.motion is not None]
        sweeps = [(np.array([o.motion.pose(t)[:3, 3] for t in self.times]), np.linalg.norm(o.half_extents))
                  for o in moving]
        target = 18 if outdoor else 10
        placed = 0
        for _attempt in range(600):
            if placed >= target:
                break
            if outdoor:
                r = rng.uniform(4.0, 70.0)
                a = rng.uniform(0, 2 * np.pi)
                c = np.array([r * np.sin(a), 0.0, r * np.cos(a)])
                half = np.array([rng.uniform(0.5, 4.0), rng.uniform(0.5, 7.0), rng.uniform(0.5, 4.0)])
                clear = 2.0
            else:
                (x0, x1), _, (z0, z1) = INDOOR_ROOM
                half = np.array([rng.uniform(0.15, 0.6), rng.uniform(0.15, 1.1), rng.uniform(0.15, 0.6)])
                c = np.array([rng.uniform(x0 + 0.3, x1 - 0.3), 0.0, rng.uniform(z0 + 0.3, z1 - 0.3)])
                clear = 0.45
            c[1] = half[1]
            if rng.random() < 0.2 and not outdoor:
                c[1] = rng.uniform(half[1] + 0.3, 3.0 - half[1])  # a shelf / hanging panel
            rad = np.linalg.norm(half)
            if np.linalg.norm(cams - c, axis=1).min() - rad < clear:
                continue
            if any(np.linalg.norm(sw - c, axis=1).min() < rad + r_m + 0.1 for sw, r_m in sweeps):
                continue
            if not self._visible_somewhere(c) and rng.random() < 0.8:
                continue
            pose = np.eye(4)
            pose[:3, :3] = Rotation.from_euler("y", rng.uniform(0, np.pi)).as_matrix()
            pose[:3, 3] = c
            placed += 1
            self.objects.append(SceneObject(f"box_{placed}", "box", half.tolist(), texture=int(rng.integers(self._first_object_texture, n_tex)),
                                            tex_metres=1.2 if not outdoor else 4.0, pose=pose.tolist()))

    # ------------------------------------------------------------------ geometry
    def object_mesh(self, obj: SceneObject) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return box_mesh(np.asarray(obj.half_extents), obj.tex_metres, inward=obj.kind in ("room", "enclosure"))

    def world_triangles(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """World-space triangles at frame ``k``: (T,3,3) vertices and (T,) instance ids (0 = static)."""
        tris, ids = [], []
        for obj in self.objects:
            v, f, _ = self.object_mesh(obj)
            T = obj.world_pose(float(self.times[k]))
            vw = v @ T[:3, :3].T + T[:3, 3]
            tris.append(vw[f])
            ids.append(np.full(len(f), obj.instance_id, np.int32))
        return np.concatenate(tris), np.concatenate(ids)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: config, intrinsics, objects, trajectory length."""
        objs = []
        for o in self.objects:
            d = {"name": o.name, "kind": o.kind, "half_extents_m": o.half_extents, "texture": o.texture,
                 "face_textures": o.face_textures,
                 "tex_metres": o.tex_metres, "instance_id": o.instance_id}
            if o.motion is not None:
                d["motion"] = asdict(o.motion)
            else:
                d["pose"] = np.asarray(o.pose).tolist()
            objs.append(d)
        cams = self._cam_centres()
        return {
            "config": asdict(self.config) | {"name": self.config.resolved_name()},
            "intrinsics": asdict(self.intrinsics),
            "world": {"up": [0, 1, 0], "units": "metres", "camera_convention": "OpenCV camera-to-world"},
            "objects": objs,
            "num_objects": len(objs),
            "num_frames": int(self.config.num_frames),
            "duration_s": float(self.config.num_frames / self.config.fps),
            "trajectory_length_m": path_length(self.c2w),
            "camera_bbox_m": [cams.min(axis=0).tolist(), cams.max(axis=0).tolist()],
            "znear": self.znear, "zfar": self.zfar,
        }


def _translation(t) -> list[list[float]]:
    T = np.eye(4)
    T[:3, 3] = t
    return T.tolist()
