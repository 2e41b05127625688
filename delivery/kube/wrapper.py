"""``KubeWrapper``: a ``Kube`` around another ``Kube`` that hands every call on unchanged.

A wrapper that changes some calls (``cache.CachedKube``: reads from the informers' stores, writes
through to them; ``engine.leader.Fenced``: no write while not leading) subclasses it and overrides
only those; every other call of the ``Kube`` protocol reaches the wrapped ``kube`` as it was made.

``KubeWrapper`` subclasses the protocol itself, so mypy checks each override against the
protocol's signature and that every wrapper is a ``Kube``; ``tests/test_kube_wrapper.py`` checks
that it forwards every method of the protocol, with the protocol's exact signature.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from delivery.kube.client import JSON, MERGE, Kube, Resource


class KubeWrapper(Kube):
    """Every call of the ``Kube`` protocol goes to ``kube`` with the same arguments."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        return self.kube.request(method, path, body, query, content_type, timeout)

    def get(self, res: Resource, namespace: str | None, name: str) -> JSON:
        return self.kube.get(res, namespace, name)

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> JSON:
        return self.kube.list(res, namespace, selector, field_selector, limit, continue_token)

    def items(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[JSON]:
        return self.kube.items(res, namespace, selector, field_selector)

    def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        return self.kube.create(res, namespace, body)

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = MERGE, sub: str = ""
    ) -> JSON:
        return self.kube.patch(res, namespace, name, patch, content_type, sub)

    def replace(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        return self.kube.replace(res, namespace, name, body)

    def delete(self, res: Resource, namespace: str | None, name: str, propagation: str = "Background") -> None:
        self.kube.delete(res, namespace, name, propagation)

    def watch(
        self, res: Resource, namespace: str | None, resource_version: str, timeout_seconds: int = 240
    ) -> Iterator[JSON]:
        return self.kube.watch(res, namespace, resource_version, timeout_seconds)
