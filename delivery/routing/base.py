"""The router interface (set weight, verify weight, reset) and the factory that builds one.

A router moves a share of traffic to the canary's Service. The engine creates and owns the stable
and canary Services (each selects exactly one pod-template-hash); the router only changes weights
on the user's route object. Each router is one module with a class implementing ``Router``, a
subclass of its description in ``kinds`` (the one registry: kind, capabilities, checks, and which
class is the router), so ``router_for`` needs no table of its own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar, Protocol

from delivery.errors import RoutingError
from delivery.kube.client import Kube, Resource
from delivery.routing import kinds
from strategies.spec import Affinity, RequestMatch


@dataclass(frozen=True)
class RouterContext:
    kube: Kube
    namespace: str
    deployment: str
    route: str  # name of the user's route object (HTTPRoute, Ingress, VirtualService, ...)
    stable_service: str
    canary_service: str


class Router(Protocol):
    # from the router's description (kinds.RouterKind)
    kind: ClassVar[str]
    weighted: ClassVar[bool]
    # the API resources of the objects it reads and writes, beyond the Deployment and Services of every
    # delivery (the chart's routers.* values grant these)
    resources: ClassVar[tuple[Resource, ...]]

    def __init__(self, ctx: RouterContext) -> None: ...

    def validate(self) -> None:
        """Raise RoutingError when the route, its CRD or the expected backends are missing."""

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        """Send ``weight`` percent of traffic to the canary Service, and with ``match`` every request
        matching it (even at weight 0); with ``mirror``, a copy of that percent of requests (the
        clients get the stable version's answers); with ``pin``, session affinity (a cookie naming the
        version a client first got sends it there again). Without, none of these of deliver's is
        left. One patch."""

    def verify_weight(self) -> int | None:
        """The canary weight the route declares now (None: this router cannot tell)."""

    def reset(self) -> None:
        """All traffic back to stable (weight 0, deliver's request matches removed), in one patch."""

    def verify_extras(self) -> bool:
        """Does the route carry deliver's request matches (``deliver.dev/match``) or mirror now?"""


def router_class(kind: str) -> type[Router]:
    """The router class of ``kind``, as its description in ``kinds`` names it (imported on first use)."""
    described = kinds.get(kind)
    if described is None:
        raise RoutingError(f"unknown router kind {kind!r}")
    module_name, _, cls_name = described.client.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RoutingError(f"router {kind!r} is not available: {exc}") from exc
    found: type[Router] = getattr(module, cls_name)
    return found


def router_for(kind: str, ctx: RouterContext) -> Router:
    return router_class(kind)(ctx)
