"""Depth: multi-view stereo, learned priors (plug-ins), scale alignment, reliability masks."""
