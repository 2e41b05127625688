"""Metric providers: the interface the analysis needs from a metrics backend, and a factory.

A provider evaluates a backend-specific query string and returns labelled numbers.  Adding a
backend (e.g. Datadog) is one module: subclass :class:`MetricProvider` and call
:func:`register_provider` with a factory taking keyword options.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from delivery.analysis.prometheus import PrometheusClient, Sample, Series


class MetricProvider(ABC):
    """A metrics backend.  Implementations raise only MetricsUnavailable / QueryError / AnalysisError."""

    name: str = "abstract"

    @abstractmethod
    def instant(self, query: str, at: float) -> tuple[Sample, ...]:
        """Evaluate ``query`` at unix time ``at``: one sample per matching series (may be empty)."""

    @abstractmethod
    def range(self, query: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        """Evaluate ``query`` every ``step`` seconds over [start, end]."""

    def close(self) -> None:  # noqa: B027 - a no-op default on purpose: only providers holding connections override it
        """Release connections."""


class PrometheusProvider(MetricProvider):
    """Prometheus over its HTTP API; queries are PromQL."""

    name = "prometheus"

    def __init__(self, url: str, **options: Any) -> None:
        self.client = PrometheusClient(url, **options)

    def instant(self, query: str, at: float) -> tuple[Sample, ...]:
        return self.client.query(query, at)

    def range(self, query: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        return self.client.query_range(query, start, end, step)

    def close(self) -> None:
        self.client.close()


ProviderFactory = Callable[..., MetricProvider]
_REGISTRY: dict[str, ProviderFactory] = {"prometheus": PrometheusProvider}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Make ``make_provider(name, ...)`` build providers with ``factory(**options)``."""
    if not name or not name.replace("-", "").isalnum():
        raise ValueError(f"bad provider name {name!r}")
    _REGISTRY[name] = factory


def provider_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make_provider(name: str, **options: Any) -> MetricProvider:
    """Build the provider registered as ``name`` (e.g. ``make_provider("prometheus", url=...)``)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric provider {name!r}; known: {', '.join(provider_names())}") from None
    return factory(**options)
