from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
