"""Write a synthetic scene as a video plus ViPE-format ground truth.

Layout under ``out_root``::

    <name>.mp4                 H.264 video of the rendered frames
    <name>_scene.json          config, intrinsics, objects (static poses / motion laws), trajectory length
    gt/rgb/<name>.mp4          the same video (ViPE layout)
    gt/pose/<name>.npz         (N,4,4) OpenCV camera-to-world
    gt/intrinsics/<name>.npz   (N,4) fx fy cx cy (+ <name>_camera.txt); MEI videos (``xi``): (N,5) fx fy cx cy xi
                               and ``MEI`` in <name>_camera.txt (ViPE's layout)
    gt/depth/<name>.zip        float16 EXR z-depth in metres, valid (> 0) at every pixel (MEI too: z-depth of the
                               pixel's ray, as ViPE stores MEI depth; only panoramas use ray distance)
                               Panoramas (``panorama``): equirectangular 360 x 180 deg frames (width = 2 x height),
                               all-zero (N,4) rows with PANORAMA in <name>_camera.txt, depth = ray distance
    gt/mask/<name>.zip (+ .txt) uint8 instance ids: 0 background, 1..n moving objects
    gt/vipe/<name>_manifest.json provenance (config, timings, scale status "metric")
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from ..io import ArtifactStore, VideoWriter, fs
from ..io.manifest import base_manifest
from .render import SceneRenderer
from .scene import Scene, SceneConfig

log = logging.getLogger(__name__)


@dataclass
class SynthResult:
    name: str
    video_path: str
    gt: ArtifactStore
    scene_json: str
    config: SceneConfig


def _radial_lens(scene: Scene) -> dict:
    """A k1-distorted camera with the scene's pinhole K: the pinhole view (same focal, centred) wide enough
    for every ray of the distorted image, and the ``cv2.remap`` maps from it to the distorted image."""
    from .. import camera as cam
    from .scene import Intrinsics

    cfg, K = scene.config, scene.intrinsics
    w, h = int(cfg.width), int(cfg.height)
    lens = cam.camera_from_params("opencv", np.array([K.fx, K.fy, K.cx, K.cy, float(cfg.k1)]))
    if not bool(cam.valid_pixel_mask(lens, w, h).all()):
        raise ConfigError(f"k1 {cfg.k1} folds the image of a {w}x{h} camera with hfov {cfg.hfov_deg} deg "
                          f"(the radial model is not one-to-one over the frame): choose a smaller |k1| or FoV")
    border = cam._border(w, h)
    rays = lens.unproject(border)
    half_w = float(np.abs(rays[:, 0].numpy()).max()) * K.fx + 2.0
    half_h = float(np.abs(rays[:, 1].numpy()).max()) * K.fy + 2.0
    ww, wh = 2 * int(np.ceil(half_w)), 2 * int(np.ceil(half_h))
    wide = Intrinsics(fx=K.fx, fy=K.fy, cx=(ww - 1) / 2.0, cy=(wh - 1) / 2.0)
    pin = cam.PinholeCamera(np.array([wide.fx, wide.fy, wide.cx, wide.cy]))
    return {"wide": wide, "wide_size": (ww, wh), "maps": cam.resample_maps(lens, w, h, pin)}


# cube faces as rotations face camera -> MEI camera (columns: the face's x, y, z axes in OpenCV camera axes)
_CUBE_FACES = {
    "front": np.eye(3),
    "right": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], np.float64),
    "left": np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], np.float64),
    "down": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64),
    "up": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64),
    "back": np.diag([-1.0, 1.0, -1.0]),
}


def mei_focal(width: int, hfov_deg: float, xi: float) -> float:
    """The MEI focal (px) whose horizontal field of view over ``width`` pixels is ``hfov_deg``: the ray at
    ``width / 2`` from the centre is at half the FoV (:func:`vipe_dagster.camera.field_of_view`'s rule)."""
    t = np.radians(hfov_deg) / 2.0
    return float(width / 2.0 / (np.sin(t) / (np.cos(t) + xi)))


def _cube_faces(d: np.ndarray, face_focal: float, ray_distance: bool) -> dict:
    """Cube faces (90 deg pinholes plus a 2 px margin, focal about ``face_focal``) that render the unit rays
    ``d`` (h, w, 3) of a camera: per face the ``cv2.remap`` maps, the pixels it owns (the face its ray crosses),
    and the depth factor of each pixel (face z-depth -> the camera's z-depth of the same point, or its ray
    distance when ``ray_distance``)."""
    from .scene import Intrinsics

    size = 2 * int(np.ceil(face_focal)) + 4
    ff = size / 2.0 - 2.0  # 45 deg lands 2 px inside the border: bilinear samples never leave the face
    c = (size - 1) / 2.0
    axes = np.stack([R[:, 2] for R in _CUBE_FACES.values()])
    owner = np.argmax(d @ axes.T, axis=-1)
    faces = []
    for i, (label, R) in enumerate(_CUBE_FACES.items()):
        mine = owner == i
        if not mine.any():
            continue
        df = d @ R  # rays in face axes (R^T d)
        z = np.where(mine, df[..., 2], 1.0)
        mx = np.where(mine, ff * df[..., 0] / z + c, -1e6).astype(np.float32)
        my = np.where(mine, ff * df[..., 1] / z + c, -1e6).astype(np.float32)
        zf = np.where(mine, (1.0 if ray_distance else d[..., 2]) / z, 0.0).astype(np.float32)
        faces.append({"face": label, "rotation": R, "maps": (mx, my), "mask": mine, "z_factor": zf})
    return {"face_intrinsics": Intrinsics(fx=ff, fy=ff, cx=c, cy=c), "face_size": (size, size), "faces": faces}


def _mei_lens(scene: Scene) -> dict:
    """An MEI camera ``[f, f, cx, cy, xi]`` with the scene's horizontal FoV, rendered as cube faces
    (:func:`_cube_faces`, face focal 0.75x the MEI's equivalent pinhole focal) and resampled per pixel from the
    face its ray crosses (z-depth of the MEI pixel's ray)."""
    from .. import camera as cam

    cfg = scene.config
    w, h, xi = int(cfg.width), int(cfg.height), float(cfg.xi)
    f = mei_focal(w, cfg.hfov_deg, xi)
    params = np.array([f, f, (w - 1) / 2.0, (h - 1) / 2.0, xi])
    lens = cam.camera_from_params("mei", params)
    rays, ok = lens.unproject_with_valid(cam.pixel_grid(w, h), unit_norm=True)
    if not bool(ok.all()):
        raise ConfigError(f"xi {xi} with hfov {cfg.hfov_deg} deg: some pixels of the {w}x{h} image see no ray of "
                          "the MEI model: choose a smaller FoV")
    d = rays.numpy().reshape(h, w, 3)
    return {"params": params, **_cube_faces(d, 0.75 * f / (1.0 + xi), ray_distance=False)}


def _panorama_lens(scene: Scene) -> dict:
    """An equirectangular (360 x 180 deg, ViPE ``PANORAMA``) camera of the scene's size, rendered as six cube
    faces (face focal 1.2x the panorama's ``width / 2 pi`` px per radian) and resampled per pixel through
    :class:`vipe_dagster.camera.EquirectangularCamera`; depth is ray distance (ViPE's panorama depth)."""
    from .. import camera as cam

    w, h = int(scene.config.width), int(scene.config.height)
    lens = cam.EquirectangularCamera(np.array([float(w), float(h)]))
    d = lens.unproject(cam.pixel_grid(w, h), unit_norm=True).numpy().reshape(h, w, 3)
    return {"params": np.zeros(4), **_cube_faces(d, 1.2 * w / (2 * np.pi), ray_distance=True)}


def _render_mei(renderer: SceneRenderer, lens: dict, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = lens["faces"][0]["mask"].shape
    rgb = np.zeros((h, w, 3), np.uint8)
    depth = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    for face in lens["faces"]:
        frgb, fdepth, fmask = renderer.render(k, face["rotation"])
        mx, my = face["maps"]
        m = face["mask"]
        rgb[m] = cv2.remap(frgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[m]
        # nearest face pixel's z-depth, along this pixel's ray: the MEI z-depth of that point
        depth[m] = (cv2.remap(fdepth, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
                    * face["z_factor"])[m]
        mask[m] = cv2.remap(fmask, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)[m]
    return rgb, depth, mask


def generate(config: SceneConfig, out_root: str, progress: bool = False) -> SynthResult:
    """Render ``config`` and write the video and its ground truth under ``out_root`` (local or s3://)."""
    t0 = time.perf_counter()
    scene = Scene(config)
    name = config.resolved_name()
    out_root = str(out_root)
    gt = ArtifactStore(fs.join(out_root, "gt"))
    video_path = fs.join(out_root, f"{name}.mp4")
    n = int(config.num_frames)
    K = scene.intrinsics
    t_build = time.perf_counter() - t0

    frames = range(n)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc=f"synth {name}", unit="frame")
    t_render = 0.0
    min_depth = np.inf
    max_depth = 0.0
    mask_pixels = np.zeros(int(config.moving_objects) + 1, np.int64)
    lens = _radial_lens(scene) if config.k1 else None
    mei = _mei_lens(scene) if config.xi else _panorama_lens(scene) if config.panorama else None
    view = (lens["wide"], lens["wide_size"]) if lens else (mei["face_intrinsics"], mei["face_size"]) if mei else ()
    with SceneRenderer(scene, *view) as renderer, \
            VideoWriter(video_path, fps=config.fps) as video, \
            gt.depth_writer(name) as depth_w, gt.mask_writer(name) as mask_w:
        for k in frames:
            tr = time.perf_counter()
            rgb, depth, mask = _render_mei(renderer, mei, k) if mei else renderer.render(k)
            if lens:  # the wide pinhole view resampled through the distorted lens (z-depth is the same point's)
                mx, my = lens["maps"]
                rgb = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                depth = cv2.remap(depth, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
                mask = cv2.remap(mask, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            t_render += time.perf_counter() - tr
            if not (depth > 0).all():
                # the room / enclosure is closed, so every ray hits something
                raise RuntimeError(f"synthetic frame {k} of {name}: {(depth <= 0).sum()} pixels without depth")
            min_depth, max_depth = min(min_depth, float(depth.min())), max(max_depth, float(depth.max()))
            mask_pixels += np.bincount(mask.ravel(), minlength=len(mask_pixels))[: len(mask_pixels)]
            video.add(rgb)
            depth_w.add(depth)
            mask_w.add(mask)
    # the ViPE rgb artifact is the same H.264 stream
    fs.write_bytes(gt.path("rgb", name), fs.read_bytes(video_path))
    gt.write_pose(name, scene.c2w.astype(np.float32))
    if config.panorama:
        gt.write_intrinsics(name, np.zeros((n, 4), np.float32), camera_type="PANORAMA")
    elif mei:
        gt.write_intrinsics(name, np.tile(mei["params"].astype(np.float32), (n, 1)), camera_type="MEI")
    else:
        gt.write_intrinsics(name, np.tile(np.array([K.fx, K.fy, K.cx, K.cy], np.float32), (n, 1)),
                            camera_type="PINHOLE")
    gt.write_phrases(name, {o.instance_id: f"moving box {o.instance_id}" for o in scene.objects if o.instance_id})

    desc = scene.describe()
    desc["depth_range_m"] = [min_depth, max_depth]
    desc["mask_pixel_fraction"] = (mask_pixels / max(mask_pixels.sum(), 1)).tolist()
    scene_json = fs.join(out_root, f"{name}_scene.json")
    fs.write_text(scene_json, json.dumps(desc, indent=2))

    elapsed = time.perf_counter() - t0
    cfg_dict = asdict(config) | {"name": name}
    for key in ("k1", "xi", "panorama"):
        if not getattr(config, key):
            cfg_dict.pop(key)  # pinhole videos keep the configuration hash they had before lenses existed
    cfg_hash = "sha256:" + hashlib.sha256(json.dumps(cfg_dict, sort_keys=True).encode()).hexdigest()
    manifest = base_manifest(f"synth://{name}", cfg_hash, cfg_dict)
    manifest.update({
        "source": "vipe_dagster.synth",
        "scale_status": "metric",
        "num_frames": n,
        "timings_s": {"build": t_build, "render": t_render, "total": elapsed},
        "trajectory_length_m": desc["trajectory_length_m"],
    })
    if lens:
        manifest["camera"] = {"model": "SIMPLE_RADIAL", "params": [K.fx, K.cx, K.cy, float(config.k1)],
                              "params_note": "COLMAP SIMPLE_RADIAL f cx cy k1 with OpenCV pixel centres (integer "
                                             "coordinates); gt/intrinsics holds its fx fy cx cy",
                              "rendering": "pinhole render of the rays the lens sees (same focal, "
                                           f"{lens['wide_size'][0]}x{lens['wide_size'][1]}), resampled through the "
                                           "lens with vipe_dagster.camera (bilinear rgb, nearest depth and masks)"}
    if config.panorama:
        manifest["camera"] = {"model": "PANORAMA", "params": [0.0, 0.0, 0.0, 0.0],
                              "params_note": "ViPE PANORAMA rows are all zeros: equirectangular, pixel (u, v) at "
                                             "longitude ((u + 0.5) / W - 0.5) 2 pi, colatitude (v + 0.5) / H pi",
                              "depth": "ray distance (ViPE's panorama depth)",
                              "rendering": f"6 cube faces ({mei['face_size'][0]} px, 90 deg + 2 px) resampled "
                                           "through vipe_dagster.camera.EquirectangularCamera (bilinear rgb, nearest "
                                           "depth and masks)"}
    elif mei:
        manifest["camera"] = {"model": "MEI", "params": [float(v) for v in mei["params"]],
                              "params_note": "ViPE MEI row fx fy cx cy xi (unified model, u = fx X / (Z + xi |P|) + "
                                             "cx) with OpenCV pixel centres; gt/intrinsics holds the same row",
                              "depth": "z-depth (ViPE's MEI depth)",
                              "rendering": f"{len(mei['faces'])} cube faces ({', '.join(f['face'] for f in mei['faces'])}"
                                           f", {mei['face_size'][0]} px, 90 deg + 2 px) resampled through the MEI "
                                           "model with vipe_dagster.camera (bilinear rgb, nearest depth and masks)"}
    gt.write_manifest(name, manifest)
    log.info("synth %s: %d frames %dx%d in %.1f s (render %.1f s), path %.2f m, depth [%.2f, %.2f] m",
             name, n, config.width, config.height, elapsed, t_render, desc["trajectory_length_m"],
             min_depth, max_depth)
    return SynthResult(name=name, video_path=video_path, gt=gt, scene_json=scene_json, config=config)
