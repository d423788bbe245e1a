"""Exports: COLMAP (text and binary, sparse/0, real tracks) and PLY."""
