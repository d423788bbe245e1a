"""vipe-dagster: video -> intrinsics, poses, dense depth, COLMAP and ego-view renders."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vipe-dagster")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
