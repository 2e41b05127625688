"""End-to-end harness and tests for deliver: a real local control plane, Prometheus and Envoy."""
