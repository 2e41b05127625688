"""Benchmarks: programs that print numbers and met/missed goals (not tests): python -m benchmarks.analysis
(the judges), benchmarks.failfast (bad requests served before rollback), benchmarks.forecast (time to verdict)."""
