"""Single-channel float16 OpenEXR (channel ``Z``) encode/decode, as ViPE stores depth.

Both directions work on in-memory streams: no temporary file is created, so a killed reader or writer
leaves nothing behind.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import ArtifactError


def encode_depth_exr(depth: np.ndarray) -> bytes:
    """Encode an HxW depth map as a HALF ``Z``-channel EXR (ZIP compressed); return the bytes."""
    import OpenEXR

    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ArtifactError(f"depth map must be HxW, got shape {depth.shape}")
    z = np.ascontiguousarray(depth.astype(np.float16))
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    buf = io.BytesIO()
    with OpenEXR.File(header, {"Z": OpenEXR.Channel(z)}) as f:
        f.write(buf)
    return buf.getvalue()


def decode_depth_exr(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode EXR bytes holding a ``Z`` channel to an HxW float32 array."""
    import OpenEXR

    try:
        with OpenEXR.File(io.BytesIO(data), separate_channels=True) as f:
            channels = f.channels()
            if "Z" not in channels:
                raise ArtifactError(f"{name}: EXR has channels {sorted(channels)}, expected a 'Z' channel")
            z = np.asarray(channels["Z"].pixels, dtype=np.float32)
    except ArtifactError:
        raise
    except Exception as exc:  # OpenEXR raises plain RuntimeError/IOError
        raise ArtifactError(f"{name}: not a readable OpenEXR file ({exc})") from exc
    if z.ndim != 2:
        raise ArtifactError(f"{name}: 'Z' channel has shape {z.shape}, expected HxW")
    return z
