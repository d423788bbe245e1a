"""Metrics and benchmarks."""
