"""Benchmarks: programs that print numbers and met/missed goals (not tests)."""
