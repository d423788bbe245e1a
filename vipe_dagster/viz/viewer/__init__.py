"""Browser 3D viewer for ViPE-format results (``vipe-dagster visualize``), built on viser.

Designed for long videos: at start-up only the poses and intrinsics are read (small arrays); all
camera frustums are sent as **one** line-segment object (8 segments per camera, so 10,000 cameras
are one ~2 MB buffer instead of 10,000 scene nodes), and per-frame data -- the rgb image, depth,
mask and the point cloud made from them -- is loaded on demand for the current frame through
random-access readers and a small LRU cache. A background thread fills an overview cloud from a
few evenly spaced frames; the mean background (EgoX ``--use_mean_bg``) is computed the same way
when it is switched on. Memory therefore stays bounded whatever the number of frames.

Scene tree (names are stable, tests and users can rely on them):

- ``/seq/frustums``   all cameras (line segments, 8 per camera)
- ``/seq/trajectory`` camera path
- ``/seq/current``    frustum of the current frame with its image
- ``/seq/nearby/<k>`` frustums with thumbnails of frames near the current one
- ``/seq/points/static``, ``/seq/points/dynamic``  current frame's reliable-depth points (mask == 0 / != 0)
- ``/seq/overview``   static points of sampled frames; ``/seq/mean_bg`` mean background
- ``/seq/ego/<take>_<camera>/...``  ego trajectory and current ego frustum when a render exists

Modules: :mod:`.server` (:class:`ResultViewer`: the viser server, its frame and playback threads,
sequence switching), :mod:`.scene` (loading a sequence from the artifacts and drawing its scene
nodes, the background clouds) and :mod:`.panels` (the side panel: controls, layer toggles, previews).
"""

from .panels import PREVIEW_WIDTH, Panels
from .scene import CURRENT_LONG_SIDE, THUMB_LONG_SIDE, LoadedSequence, ViewerOptions
from .server import ResultViewer

__all__ = ["CURRENT_LONG_SIDE", "PREVIEW_WIDTH", "THUMB_LONG_SIDE", "LoadedSequence", "Panels", "ResultViewer",
           "ViewerOptions"]
