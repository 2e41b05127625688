"""The router interface (set weight, verify weight, reset) and the factory that picks one.

A router moves a share of traffic to the canary's Service. The engine creates and owns the stable
and canary Services (each selects exactly one pod-template-hash); the router only changes weights
on the user's route object. Adding a router = one module with a class implementing ``Router`` plus
one line in ``_ROUTERS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from strategies.model import Affinity, RequestMatch

from ..errors import RoutingError
from ..kube import Kube


@dataclass(frozen=True)
class RouterContext:
    kube: Kube
    namespace: str
    deployment: str
    route: str  # name of the user's route object (HTTPRoute, Ingress, VirtualService, ...)
    stable_service: str
    canary_service: str


class Router(Protocol):
    kind: str

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


class ReplicaRouter:
    """No router: traffic follows the ratio of Ready pods behind the user's Service."""

    kind = "replica"

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    def validate(self) -> None:
        return None

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        return None

    def verify_weight(self) -> int | None:
        return None

    def reset(self) -> None:
        return None

    def verify_extras(self) -> bool:
        return False


# kind -> "module:Class" under delivery.routing
_ROUTERS: dict[str, str] = {
    "gateway-api": "gateway:GatewayRouter",
    "nginx": "nginx:NginxRouter",
    "istio": "istio:IstioRouter",
    "smi": "smi:SmiRouter",
}


def router_for(kind: str, ctx: RouterContext) -> Router:
    if kind == "replica":
        return ReplicaRouter(ctx)
    target = _ROUTERS.get(kind)
    if target is None:
        raise RoutingError(f"unknown router kind {kind!r}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ImportError as exc:
        raise RoutingError(f"router {kind!r} is not available: {exc}") from exc
    router: Router = getattr(module, cls_name)(ctx)
    return router
