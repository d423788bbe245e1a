"""Benchmark suites: each module defines ``SUITE``, optionally ``TITLE``, and ``run(quick=False) -> list[dict]``."""
