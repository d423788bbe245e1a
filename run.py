#!/usr/bin/env python3
"""ViPE's ``run.py`` (Hydra-style ``key=value`` overrides) on vipe-dagster.

See vipe_dagster/entry/run_py.py.
"""

import sys

from vipe_dagster.entry.run_py import main

if __name__ == "__main__":
    sys.exit(main())
