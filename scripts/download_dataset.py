#!/usr/bin/env python3
"""ViPE's ``scripts/download_dataset.py`` on vipe-dagster; see vipe_dagster/entry/download_dataset.py."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vipe_dagster.entry.download_dataset import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
