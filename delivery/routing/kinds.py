"""The one registry of traffic routers: what each router kind is, told without a client.

A router kind (``deliver.dev/router: KIND/NAME``) is described by a small class here: its kind name,
whether it sets weights on a route object, what else it can do (``Capability``: match requests,
mirror them, pin sessions), its own checks of the annotations, and the class that does the work
(``client``, in its own module under ``delivery/routing/``). That class subclasses its description,
so the router that writes the route carries its kind, capabilities and checks too.

``KINDS`` is the only list of routers: ``delivery.spec`` asks it which kinds exist and what each
can do, ``delivery.routing.base.router_for`` builds a router from it. This module imports no client
(``delivery.kube.client``), so the annotation schema stays importable and checkable offline (``deliver
lint``). Adding a router: a description here with ``@register``, and its module (CONTRIBUTING.md).
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, TypeVar

from delivery.errors import SpecError
from strategies.spec import RequestMatch

NO_ROUTER = "replica"  # the kind without a route: RouterRef's default, which the planners know by name


class Capability(Enum):
    """What a weighted router can do besides setting the two weights."""

    MATCH = "match"  # requests matching deliver.dev/match reach the canary at any weight (a `match` step)
    MIRROR = "mirror"  # a copy of requests goes to the canary, its answers discarded (a `mirror` step)
    PIN = "pin"  # session affinity: a cookie sends a client back to the version it first got


class RouterKind:
    """One router kind, described: subclass it and ``@register`` the subclass."""

    kind: ClassVar[str]  # the KIND of deliver.dev/router
    client: ClassVar[str]  # "package.module:Class": the router (a subclass of this description)
    weighted: ClassVar[bool] = True  # it sets weights on a route object, named in KIND/NAME
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    @classmethod
    def can(cls, capability: Capability) -> bool:
        return capability in cls.capabilities

    @classmethod
    def check_match(cls, key: str, match: RequestMatch) -> None:
        """The router's own checks of ``deliver.dev/match`` (``key``): SpecError naming the key. Asked
        before whether the router can match at all, so a router may refuse a match in its own words."""

    @classmethod
    def kept_at_release(cls, route: str) -> str:
        """What deliver generated for this router and a release keeps at weight 0, as the Released
        Event says it ("": nothing; the route ``route`` itself is the user's and always stays)."""
        return ""


KINDS: dict[str, type[RouterKind]] = {}  # kind -> description, in the order registered
_Described = TypeVar("_Described", bound=type[RouterKind])


def register(described: _Described) -> _Described:
    """Add a router kind (a class decorator). Only ``replica`` sets no weights: the planners know the
    router without a route by that name (``RouterRef``'s default in strategies/spec.py)."""
    if described.weighted != (described.kind != NO_ROUTER):
        raise ValueError(f"router kind {described.kind!r}: only {NO_ROUTER!r} has no route whose weights it sets")
    if ":" not in described.client:
        raise ValueError(f"router kind {described.kind!r}: client must be 'package.module:Class'")
    KINDS[described.kind] = described
    return described


def get(kind: str) -> type[RouterKind] | None:
    """The description of ``kind`` (None: no such router)."""
    return KINDS.get(kind)


def names() -> tuple[str, ...]:
    """Every router kind, in the order registered."""
    return tuple(KINDS)


def able(capability: Capability) -> list[str]:
    """The kinds that can do ``capability``, sorted."""
    return sorted(kind for kind, described in KINDS.items() if described.can(capability))


def either(kinds: list[str]) -> str:
    """``a, b or c``."""
    return f"{', '.join(kinds[:-1])} or {kinds[-1]}" if len(kinds) > 1 else "".join(kinds)


# ---------------------------------------------------------------- the routers deliver ships


@register
class Replica(RouterKind):
    """No router: traffic follows the ratio of Ready pods behind the user's Service."""

    kind = NO_ROUTER
    client = "delivery.routing.replica:ReplicaRouter"
    weighted = False


@register
class GatewayApi(RouterKind):
    """Gateway API HTTPRoute: the weights of two backendRefs, and rules and filters of deliver's."""

    kind = "gateway-api"
    client = "delivery.routing.gateway:GatewayRouter"
    capabilities = frozenset({Capability.MATCH, Capability.MIRROR, Capability.PIN})


@register
class Nginx(RouterKind):
    """ingress-nginx: a canary Ingress generated beside the user's Ingress."""

    kind = "nginx"
    client = "delivery.routing.nginx:NginxRouter"
    capabilities = frozenset({Capability.MATCH})

    @staticmethod
    def canary_ingress(route: str) -> str:
        """The name of the canary Ingress deliver generates beside the user's Ingress ``route``."""
        return f"{route}-canary"[:253]

    @classmethod
    def check_match(cls, key: str, match: RequestMatch) -> None:
        if match.kind == "cookie" and match.value != "always":
            raise SpecError(key, "ingress-nginx routes by cookie only when its value is `always` (cookie:NAME=always)")

    @classmethod
    def kept_at_release(cls, route: str) -> str:
        return f"the canary Ingress {cls.canary_ingress(route)} it generated is kept at weight 0"


@register
class Istio(RouterKind):
    """Istio VirtualService: the weights of two route destinations, and routes of deliver's."""

    kind = "istio"
    client = "delivery.routing.istio:IstioRouter"
    capabilities = frozenset({Capability.MATCH, Capability.MIRROR, Capability.PIN})


@register
class Smi(RouterKind):
    """SMI TrafficSplit: the weights of two backends, nothing else."""

    kind = "smi"
    client = "delivery.routing.smi:SmiRouter"

    @classmethod
    def check_match(cls, key: str, match: RequestMatch) -> None:
        raise SpecError(
            key,
            "an SMI TrafficSplit only splits by weight and has no request matches; "
            f"use a {either(able(Capability.MATCH))} router",
        )
