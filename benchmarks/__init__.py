"""Benchmarks: python -m benchmarks.analysis (the judges), python -m benchmarks.forecast (time to verdict)."""
