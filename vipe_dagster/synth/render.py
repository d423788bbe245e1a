"""Offscreen rendering of a :class:`~vipe_dagster.synth.scene.Scene` with pyrender (EGL).

Two passes per frame:

- colour: unlit (``FLAT``) textured rendering with 4x MSAA, so intensities are exactly the texture's
  (brightness constancy for trackers) and edges are anti-aliased;
- geometry: pyrender's segmentation pass, which disables multisampling, so every pixel's depth and
  instance id are sampled exactly at the pixel centre. (With MSAA on, the depth buffer is resolved by
  taking one sub-sample that is *not* at the pixel centre, which would bias depth at slanted surfaces and
  edges by a fraction of a pixel.)

Conventions: pyrender cameras look down -z with y up; OpenCV camera-to-world ``c2w`` becomes the
pyrender camera pose ``c2w @ diag(1, -1, -1, 1)``. pyrender's ``IntrinsicsCamera(cx, cy)`` places the
principal point in window coordinates where pixel ``i`` spans ``[i, i+1)``, i.e. OpenCV ``cx + 0.5``.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError
from .scene import Scene

GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _import_pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not hasattr(np, "infty"):
        np.infty = np.inf  # pyrender 0.1.45 uses np.infty (removed in NumPy 2)
    try:
        import pyrender
    except Exception as exc:  # PyOpenGL raises ImportError/OSError when the GL platform library is missing
        raise _gl_error(exc) from exc
    return pyrender


def _gl_error(exc: Exception) -> ConfigError:
    return ConfigError(
        f"pyrender could not set up offscreen OpenGL with PYOPENGL_PLATFORM={os.environ.get('PYOPENGL_PLATFORM')!r} "
        f"({type(exc).__name__}: {exc}); on Debian/Ubuntu install libegl1 libegl-mesa0 libgl1-mesa-dri and set "
        f"PYOPENGL_PLATFORM=egl")


class SceneRenderer:
    """Renders frames of a scene: ``render(k) -> (rgb uint8 HxWx3, depth float32 HxW metres, mask uint8 HxW)``."""

    def __init__(self, scene: Scene, intrinsics=None, size: tuple[int, int] | None = None):
        """``intrinsics`` / ``size``: render through another pinhole camera than the scene's (the wide view a
        distorted lens is resampled from)."""
        pr = _import_pyrender()
        self._pr = pr
        self.scene = scene
        cfg = scene.config
        self.width, self.height = (int(cfg.width), int(cfg.height)) if size is None else (int(size[0]), int(size[1]))
        self._pscene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 1.0], ambient_light=[1.0, 1.0, 1.0])
        self._nodes = []
        tex_objs: dict[int, object] = {}

        def material(tex_id: int):
            if tex_id not in tex_objs:
                sampler = pr.Sampler(magFilter=pr.constants.GLTF.LINEAR,
                                     minFilter=pr.constants.GLTF.LINEAR_MIPMAP_LINEAR,
                                     wrapS=pr.constants.GLTF.REPEAT, wrapT=pr.constants.GLTF.REPEAT)
                tex_objs[tex_id] = pr.Texture(source=scene.textures[tex_id], source_channels="RGB", sampler=sampler)
            return pr.MetallicRoughnessMaterial(baseColorTexture=tex_objs[tex_id], doubleSided=True,
                                                metallicFactor=0.0, roughnessFactor=1.0)

        for obj in scene.objects:
            v, f, uv = scene.object_mesh(obj)
            pos, tc = v.astype(np.float32), uv.astype(np.float32)
            # box faces are two consecutive triangles each; a face texture list gives one primitive per face
            groups = ([(obj.face_textures[i], f[2 * i:2 * i + 2]) for i in range(len(f) // 2)]
                      if obj.face_textures else [(obj.texture, f)])
            prims = [pr.Primitive(positions=pos, indices=idx.astype(np.uint32), texcoord_0=tc,
                                  material=material(tex), mode=pr.constants.GLTF.TRIANGLES) for tex, idx in groups]
            node = self._pscene.add(pr.Mesh(prims), pose=obj.world_pose(0.0))
            self._nodes.append((obj, node))
        K = scene.intrinsics if intrinsics is None else intrinsics
        cam = pr.IntrinsicsCamera(fx=K.fx, fy=K.fy, cx=K.cx + 0.5, cy=K.cy + 0.5,
                                  znear=scene.znear, zfar=scene.zfar)
        self._cam_node = self._pscene.add(cam, pose=np.eye(4))
        self._seg_map = {node: int(obj.instance_id) for obj, node in self._nodes}
        self._renderer = None
        try:
            self._renderer = pr.OffscreenRenderer(self.width, self.height)
        except Exception as exc:  # EGL/OSMesa missing or broken: say what to install
            raise _gl_error(exc) from exc

    def set_frame(self, k: int, rotation: np.ndarray | None = None) -> None:
        """Pose the scene at frame ``k``; ``rotation`` (3x3, OpenCV axes) turns the render camera about the
        frame's camera centre: a point ``P`` of the render camera is ``rotation @ P`` in the frame's camera."""
        t = float(self.scene.times[k])
        for obj, node in self._nodes:
            if obj.motion is not None:
                self._pscene.set_pose(node, obj.world_pose(t))
        turn = np.eye(4)
        if rotation is not None:
            turn[:3, :3] = rotation
        self._pscene.set_pose(self._cam_node, self.scene.c2w[k] @ turn @ GL_FROM_CV)

    def render(self, k: int, rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pr = self._pr
        self.set_frame(k, rotation)
        rgb, _ = self._renderer.render(self._pscene, flags=pr.RenderFlags.FLAT)
        seg, depth = self._renderer.render(self._pscene, flags=pr.RenderFlags.SEG, seg_node_map=self._seg_map)
        return np.ascontiguousarray(rgb[..., :3]), np.ascontiguousarray(depth, np.float32), \
            np.ascontiguousarray(seg[..., 0])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
