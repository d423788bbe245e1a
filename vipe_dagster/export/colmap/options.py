"""What a COLMAP export writes: the one options model (declared once) from which ``vipe-dagster to-colmap``'s
flags and the ``colmap_export`` asset's run config are generated, and which the script passes too.

One default for every front end: a **text** model with dense points from reliable depth **when the sequence has
depth maps** (``dense=None``). The asset runs after the depth and mask stages, so it always exports sparse + dense
points; the command line exports what the artifact root holds (sparse only after a ``pose_only`` run).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ...errors import ConfigError

FORMATS = ("text", "bin")


class ColmapExportOptions(BaseModel):
    """Options of :func:`~vipe_dagster.export.colmap.export_colmap` (see the package doc).

    Bad values raise :class:`~vipe_dagster.errors.ConfigError` naming the option and what was expected.
    """

    model_config = ConfigDict(extra="forbid")

    fmt: Literal["text", "bin"] = Field(
        "text", description="COLMAP model format under sparse/0 (text: readable, the layout ViPE's own "
                            "vipe_to_colmap.py writes; bin: compact)",
        json_schema_extra={"cli": {"flags": ["--format"], "dest": "fmt"}})
    dense: bool | None = Field(None, description="add dense points from reliable depth; None (omitted) = when "
                                                 "the sequence has depth maps; on = require them; off = sparse "
                                                 "points only (dense-only when there is no sparse map)")
    depth_step: int = Field(16, description="every k-th exported frame contributes dense points (>= 1)")
    pixel_step: int = Field(4, description="pixel stride of the dense sampling grid (>= 1)")
    voxel_size: float | None = Field(None, description="merge size of dense points in scene units; None "
                                                       "(omitted) = the footprint of one grid step at the median "
                                                       "depth; 0 = no merging")
    jpeg_quality: int = Field(95, description="JPEG quality of images/*.jpg, 1..100")
    min_track_length: int = Field(2, description="points observed in fewer exported images are left out of "
                                                 "points3D (>= 1)")
    rectify_mei: bool = Field(True, description="export MEI (xi != 0) sequences resampled into the equivalent "
                                                "pinhole camera f/(1+xi); off = refuse them",
                              json_schema_extra={"cli": {"negative_flags": ["--no_rectify_mei"]}})
    reference_layout: bool = Field(False, description="also write the text model at the top of the output with "
                                                      "image names images/frame_%06d.jpg (ViPE's "
                                                      "vipe_to_colmap.py layout), beside sparse/0")

    @model_validator(mode="after")
    def _check(self) -> ColmapExportOptions:
        # ConfigError is no ValueError: pydantic lets it through unwrapped, with this message
        if self.fmt not in FORMATS:
            raise ConfigError(f"COLMAP format must be one of {FORMATS}, got {self.fmt!r}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ConfigError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.depth_step < 1 or self.pixel_step < 1:
            raise ConfigError(f"depth_step and pixel_step must be >= 1, got {self.depth_step} and {self.pixel_step}")
        if self.voxel_size is not None and not (math.isfinite(self.voxel_size) and self.voxel_size >= 0):
            raise ConfigError(f"voxel_size must be >= 0 (0 disables merging), got {self.voxel_size}")
        if self.min_track_length < 1:
            raise ConfigError(f"min_track_length must be >= 1, got {self.min_track_length}")
        return self

    @classmethod
    def resolve(cls, options: ColmapExportOptions | None, overrides: dict[str, Any]) -> ColmapExportOptions:
        """``options`` (default: the defaults) with the keyword ``overrides`` applied, validated."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"export_colmap() got unexpected keyword argument(s) {', '.join(unknown)}; "
                            f"options are {', '.join(cls.model_fields)}")
        if options is not None and not isinstance(options, cls):
            raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
        if options is not None and not overrides:
            return options
        values = {**(options.model_dump() if options is not None else {}), **overrides}
        try:
            return cls(**values)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "options"
            raise ConfigError(f"COLMAP export option {field}: {first['msg']}, got {first.get('input')!r}") from None
