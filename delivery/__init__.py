"""deliver: progressive delivery for plain Kubernetes Deployments (the engine: all I/O lives here)."""

__version__ = "0.1.0"
