"""Metric analysis: providers (Prometheus), check declarations and the statistical judges."""
