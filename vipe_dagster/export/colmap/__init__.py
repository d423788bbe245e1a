"""Export a ViPE-format artifact sequence as a standard COLMAP reconstruction.

Output folder (written atomically: it appears complete or not at all)::

    <out>/images/frame_%06d.jpg           decoded from rgb/<n>.mp4, one per exported frame
    <out>/sparse/0/cameras.{txt|bin}
    <out>/sparse/0/images.{txt|bin}       world-to-camera poses, POINTS2D from the sparse map (+ dense)
    <out>/sparse/0/points3D.{txt|bin}     sparse-map points with their real tracks (+ dense points)
    <out>/points.ply                      sparse + all dense points, binary little-endian x y z red green blue
    <out>/export_stats.json               counts, notes and reprojection-error statistics

On ``s3://`` the objects are uploaded after the export succeeded, ``export_stats.json`` last, so its
presence marks a complete export there.

Conventions. Our artifacts use OpenCV camera-to-world poses and pixel centres at integer coordinates;
COLMAP wants world-to-camera poses and puts the centre of the top-left pixel at (0.5, 0.5), so
principal points and observations are shifted by +0.5 px (reprojection errors are unchanged).
Camera models: SIMPLE_PINHOLE when fx == fy, else PINHOLE; KB4 fisheye (fx fy cx cy k1..k4) maps
to OPENCV_FISHEYE; MEI with xi == 0 is a pinhole and is exported as one. MEI with xi != 0 has no
COLMAP equivalent: by default the frames are resampled into the equivalent pinhole camera
(f / (1 + xi), same principal point) and observations and dense points are mapped through the exact
MEI unprojection (a note in the stats says so); with ``rectify_mei=False`` it is refused with
:class:`UnsupportedCameraError`, as PANORAMA always is (COLMAP has no equirectangular model; the
message says the data is valid). Intrinsics are checked by the rules of :mod:`vipe_dagster.camera`.

Points. Sparse-map points keep the tracks the SLAM map observed (restricted to the exported frames,
observations behind the camera dropped, tracks shorter than ``min_track_length`` dropped). Dense points
(``dense=True``, or automatically when there is no sparse map) come from reliable depth
(:mod:`vipe_dagster.depth.reliable`) on every ``depth_step``-th exported frame and every
``pixel_step``-th pixel, are merged in voxels of ``voxel_size`` (position and colour averaged), and
keep as their track the pixels they were unprojected from (one per image), so their error field is
the measured multi-view consistency of the depth maps, not a placeholder. ``points3D`` holds the dense
points seen in at least ``min_track_length`` exported images (COLMAP's bundle adjuster rejects
single-observation points); ``points.ply`` holds every dense point.

Modules: :mod:`.options` (what is written, :class:`ColmapExportOptions`), :mod:`.inputs` (read and
check the artifacts, pick the frames), :mod:`.cameras` (COLMAP cameras and poses), :mod:`.tracks`
(sparse points and their tracks), :mod:`.images` (JPEG frames and depth samples, one video pass),
:mod:`.dense` (dense points), :mod:`.write` (model, PLY, statistics, atomic output) and
:mod:`.exporter` (:func:`export_colmap`, which runs them in that order).
"""

from ...errors import UnsupportedCameraError
from .cameras import PIXEL_SHIFT, colmap_camera, project, rotation_to_qvec, world_to_camera
from .dense import voxel_merge
from .exporter import MANIFEST_KEY, ExportResult, export_colmap
from .options import FORMATS, ColmapExportOptions
from .write import STATS_FILE

__all__ = ["FORMATS", "MANIFEST_KEY", "PIXEL_SHIFT", "STATS_FILE", "ColmapExportOptions", "ExportResult",
           "UnsupportedCameraError", "colmap_camera", "export_colmap", "project", "rotation_to_qvec",
           "voxel_merge", "world_to_camera"]
