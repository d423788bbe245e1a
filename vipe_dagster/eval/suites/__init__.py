"""Benchmark suites: each module defines SUITE and run(quick=False) -> list[dict]."""
