"""Settings of the ego-view render (the one declaration of each; no torch here, so the Dagster definitions can
import it cheaply).

:class:`EgoRenderConfig` generates the ``render-ego`` command line (``vipe_dagster.options``; the flag names
and defaults are the EgoX reference renderer's: ``--fish_eye_rendering`` / ``--use_mean_bg`` off unless
given) and the run config of the Dagster asset ``ego_render`` (``assets_defs/egoexo.py``). Where a front end
starts from other values, they are a named preset here, never a second default written elsewhere:

- :data:`EGO_PRIOR_PRESET`: the ego prior of the EgoX pipeline (fisheye Aria camera, per-pixel mean
  background: what the reference's ``render_vipe.sh`` and best-view scripts pass); the defaults of
  ``ego_render``'s run config.
- :data:`REFERENCE_SCRIPT_PRESET`: the defaults of the reference renderer's own script
  (``ego_view_rendering/render_vipe_pointcloud.py``), whose ``--point_size`` is 1.0 where ``render-ego``'s
  is 1.5.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["auto", "raster", "splat", "pyrender"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class EgoRenderConfig(BaseModel):
    """How the exo point cloud is rendered into the ego (Aria) camera (``vipe_dagster.render.ego``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    input_dir: str = Field(description="ViPE result folder of the exo video")
    out_dir: str = Field(description="output root")
    meta_json_path: str | None = Field(None, description="EgoX meta.json (mode a)")
    ego_camera_pose_path: str | None = Field(
        None, description="Ego-Exo4D annotations/ego_pose/<split>/camera_pose/<take_uid>.json (mode b)")
    exo_camera_pose_path: str | None = Field(
        None, description="takes/<take>/trajectory/gopro_calibs.csv (mode b; default: exo pose from the "
                          "camera_pose JSON)")
    online_calibration_path: str | None = Field(
        None, description="Aria MPS online_calibration.jsonl (default: bundled real Aria RGB calibration)")
    point_size: float = Field(1.5, gt=0, description="splat radius in output px")
    start_frame: int = Field(0, description="first ViPE frame (inclusive)")
    end_frame: int | None = Field(None, description="last ViPE frame (inclusive; -1 or omitted: the last)")
    source_start_frame: int | None = Field(
        None, description="take frame of ViPE frame start_frame (mode b; default: start_frame)")
    source_end_frame: int | None = Field(
        None, description="take frame of ViPE frame end_frame (mode b; checked: the take range must be as long "
                          "as the ViPE range; default: derived)")
    fish_eye_rendering: bool = Field(False, description="Aria Fisheye624 model (else pinhole)")
    use_mean_bg: bool = Field(False, description="background from the per-pixel mean depth of the clip (else "
                                                 "every frame's static points)")
    only_bg: bool = Field(False, description="skip per-frame dynamic points")
    near_clip: float = Field(0.0, ge=0, description="drop points closer than this (m) to the ego camera centre")
    resolution: int = Field(448, ge=16, description="output width = height in px")
    fps: float = Field(30.0, gt=0, description="output video fps (also maps take frames to time)")
    output: Literal["mp4", "png", "both"] = Field("both", description="what is written: ego_Prior.mp4, "
                                                                      "frame_%06d.png, or both")
    subsample: int = Field(2, ge=1, description="pixel stride when lifting the exo depth to points")
    points_per_pixel: int = Field(20, ge=1, description="nearest splats blended per pixel")
    voxel_size: float | None = Field(None, gt=0, description="voxel de-duplication of the background (m)")
    artifact_name: str | None = Field(None, description="sequence inside input_dir (default: the only one "
                                                        "with poses)")
    normalize: bool = Field(False, description="normalised splat weights (no dark edges; else the reference's "
                                               "front-to-back sum)")
    background: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="RGB (0-1) of uncovered pixels",
                                                   json_schema_extra={"cli": {"metavar": ["R", "G", "B"]}})
    device: str = Field("cpu", description="torch device of the splat backend (cpu, cuda, ...)")
    backend: Backend = Field(
        "auto", description="auto: raster on CPU, splat on CUDA; raster: native CPU rasteriser (the splat's "
                            "disks, fast); splat: exact gpu_kernels disks (any camera, CPU or CUDA); pyrender: "
                            "OpenGL points (pinhole only)")
    threads: int | None = Field(None, ge=1, description="raster threads (default: the cores this process may "
                                                        "use, at most 4)")
    cloud_cache: str | None = Field("auto", description="background cloud cache: auto (memory + the default "
                                                        "folder), memory, off, or a folder")


EGO_PRIOR_PRESET: dict[str, Any] = {"fish_eye_rendering": True, "use_mean_bg": True}
"""The EgoX ego prior: the Aria fisheye camera and the per-pixel mean background, as the reference's
``render_vipe.sh`` and best-view scripts render it. The Dagster asset ``ego_render`` starts from these
(its run config's defaults); ``render-ego`` keeps the reference's flags (both off unless given)."""

REFERENCE_SCRIPT_PRESET: dict[str, Any] = {"point_size": 1.0}
"""The reference renderer script's own defaults where they differ from ``render-ego``'s (its ``--point_size``
is 1.0; ``render-ego`` renders 1.5 px splats by default)."""

PRESETS: dict[str, dict[str, Any]] = {"ego_prior": EGO_PRIOR_PRESET, "reference_script": REFERENCE_SCRIPT_PRESET}


def _check_presets() -> None:
    for name, values in PRESETS.items():
        unknown = set(values) - set(EgoRenderConfig.model_fields)
        if unknown:
            raise TypeError(f"render preset {name}: {sorted(unknown)} are not EgoRenderConfig settings")
        EgoRenderConfig(input_dir="x", out_dir="y", **values)  # valid values


_check_presets()
