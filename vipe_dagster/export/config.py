"""Settings of the COLMAP export, shared by ``vipe-dagster to-colmap`` and the ``colmap_export`` asset.

One default for both front ends: a **text** model (COLMAP's readable format, the layout ViPE's own
``vipe_to_colmap.py`` writes; ``bin`` is the compact one) with dense points from reliable depth **when the
sequence has depth maps** (``dense=None``). The asset runs after the depth and mask stages, so it always
exports sparse + dense points; the command line exports what the artifact root holds (sparse only after a
``pose_only`` run). ``--dense`` / ``dense: true`` require the depth maps, ``--no-dense`` / ``dense: false``
export the sparse map only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ColmapExportConfig(BaseModel):
    """What a COLMAP export writes (``vipe_dagster.export.colmap.export_colmap``)."""

    model_config = ConfigDict(extra="forbid")

    fmt: Literal["text", "bin"] = Field("text", description="COLMAP model format under sparse/0",
                                        json_schema_extra={"cli": {"flags": ["--format"], "dest": "fmt"}})
    dense: bool | None = Field(None, description="add dense points from reliable depth; None (omitted) = when "
                                                 "the sequence has depth maps; on = require them; off = sparse "
                                                 "points only")
    depth_step: int = Field(16, ge=1, description="every k-th exported frame contributes dense points")
    pixel_step: int = Field(4, ge=1, description="pixel stride of the dense sampling grid")
    voxel_size: float | None = Field(None, ge=0, description="voxel size for merging dense points in scene units; "
                                                             "None (omitted) = one grid step at the median depth; "
                                                             "0 disables merging")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality of the exported images")
    min_track_length: int = Field(2, ge=1, description="drop points observed in fewer exported images")
    rectify_mei: bool = Field(True, description="export MEI (unified, xi != 0) sequences resampled into the "
                                                "equivalent pinhole camera f/(1+xi); off = refuse them",
                              json_schema_extra={"cli": {"negative_flags": ["--no_rectify_mei"]}})

    def resolve_dense(self, has_depth: bool) -> bool:
        """The ``dense`` argument of ``export_colmap``: ``None`` means "when there are depth maps"."""
        return has_depth if self.dense is None else bool(self.dense)

    def export_kwargs(self, has_depth: bool) -> dict:
        """Keyword arguments of ``export_colmap`` for these settings."""
        kw = self.model_dump()
        kw["dense"] = self.resolve_dense(has_depth)
        return kw
