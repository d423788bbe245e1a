"""Typed exceptions. Messages name the file, the frame and what was expected."""

from __future__ import annotations


class VipeError(Exception):
    """Base class for every error this package raises on purpose."""


class InputError(VipeError):
    """Bad user input: a missing file, a file of the wrong kind, bad arguments."""


class VideoError(InputError):
    """A video (or image directory) that cannot be read as expected."""


class FrameRangeError(InputError):
    """A requested frame range that is negative, inverted or outside the video."""


class ArtifactError(VipeError):
    """A ViPE-format artifact that is missing, malformed or inconsistent."""


class UnsupportedCameraError(ArtifactError):
    """Valid data whose camera model (MEI, PANORAMA) a reader or an output format cannot represent."""


class ConfigError(InputError):
    """An invalid configuration value."""


class TransientError(VipeError):
    """A failure that may succeed when retried: remote storage unreachable, a timeout, a busy lock.

    Orchestrators retry these (with backoff) and never retry the other ``VipeError``s, which are input errors.
    """
