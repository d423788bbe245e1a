"""Binary little-endian PLY point clouds with ``x y z`` (float32) and ``red green blue`` (uint8)."""

from __future__ import annotations

import os

import numpy as np

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def ply_bytes(xyz: np.ndarray, rgb: np.ndarray, comments: list[str] | None = None) -> bytes:
    """Encode points (N,3) and uint8 colours (N,3) as a binary little-endian PLY file."""
    xyz = np.asarray(xyz)
    rgb = np.asarray(rgb)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(f"PLY needs xyz (N,3) and rgb (N,3), got {xyz.shape} and {rgb.shape}")
    v = np.empty(len(xyz), _VERTEX)
    v["x"], v["y"], v["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    v["red"], v["green"], v["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in (comments or [])]
    lines += [f"element vertex {len(xyz)}", "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii") + v.tobytes()


def write_ply(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray, comments: list[str] | None = None) -> str:
    """Write a PLY file (plain local write; callers stage it inside an atomic folder or use fs helpers)."""
    with open(path, "wb") as f:
        f.write(ply_bytes(xyz, rgb, comments))
    return str(path)


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY written by :func:`write_ply` (binary little-endian, x y z red green blue)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if header[1] != "format binary_little_endian 1.0":
        raise ValueError(f"{path}: not a binary little-endian PLY ({header[1]!r})")
    n = next(int(h.split()[2]) for h in header if h.startswith("element vertex"))
    v = np.frombuffer(data, _VERTEX, count=n, offset=end)
    return np.stack([v["x"], v["y"], v["z"]], 1), np.stack([v["red"], v["green"], v["blue"]], 1)
