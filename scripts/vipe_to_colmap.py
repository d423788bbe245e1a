#!/usr/bin/env python3
"""ViPE's ``scripts/vipe_to_colmap.py`` on vipe-dagster; see vipe_dagster/entry/vipe_to_colmap.py."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vipe_dagster.entry.vipe_to_colmap import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
