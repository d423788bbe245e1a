"""Benchmark suites discovered by `vipe-dagster bench`: each module defines SUITE and run(quick)."""
