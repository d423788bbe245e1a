#!/usr/bin/env python3
"""The EgoX renderer's ``render_vipe_pointcloud.py`` on vipe-dagster.

See vipe_dagster/entry/render_vipe_pointcloud.py.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vipe_dagster.entry.render_vipe_pointcloud import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
