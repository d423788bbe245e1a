"""Artifact store (ViPE layout, local or s3://), video streams and atomic writes."""

from .artifacts import ArtifactStore, SparseMap
from .video import VideoInfo, VideoStream, VideoWriter, open_video, probe, processing_size, resolve_range

__all__ = [
    "ArtifactStore", "SparseMap", "VideoInfo", "VideoStream", "VideoWriter",
    "open_video", "probe", "processing_size", "resolve_range",
]
