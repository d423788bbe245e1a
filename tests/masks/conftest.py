"""Fixtures of the masks tests: small synthetic scenes (see tests/synth_scenes.py)."""

from synth_scenes import INPUT_KINDS, inputs_only, scene  # noqa: F401
