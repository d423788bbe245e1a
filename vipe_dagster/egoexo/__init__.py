"""Ego-Exo4D / Aria / EgoX file formats."""
