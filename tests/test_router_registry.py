"""Routers describe themselves: one registry (``delivery/routing/kinds.py``) says which router kinds
exist, what each can do and how each checks its annotations; the annotation schema, the factory and
the engine ask it. The proof: a toy router defined here, registered and nothing else, is accepted
by ``delivery.spec`` with its capabilities honoured and drives a whole delivery on the fake API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from delivery import spec as specmod
from delivery.errors import NotFound, RoutingError, SpecError
from delivery.kube.client import CONFIGMAPS
from delivery.routing import kinds
from delivery.routing.base import RouterContext, router_class, router_for
from delivery.routing.kinds import Capability, RouterKind
from delivery.routing.patches import clamp
from strategies.spec import Affinity, RequestMatch, RouterRef
from tests.crashpoints import Explorer
from tests.fakekube import FakeKube
from tests.fixture import NS, Fixture

from .test_match_routing import deployment

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ a toy router, defined only here


class Toy(RouterKind):
    """A router that matches requests (headers only, its own rule) but neither mirrors nor pins."""

    kind = "toy"
    client = f"{__name__}:ToyRouter"
    capabilities = frozenset({Capability.MATCH})

    @classmethod
    def check_match(cls, key: str, match: RequestMatch) -> None:
        if match.kind != "header":
            raise SpecError(key, "the toy router matches headers only")


class ToyRouter(Toy):
    """Its "route" is a ConfigMap NAME: ``data.canary`` the canary's weight, ``data.match`` the header
    routed to the canary at any weight."""

    resources = (CONFIGMAPS,)

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    def _data(self) -> dict[str, str]:
        c = self.ctx
        try:
            return dict(c.kube.get(CONFIGMAPS, c.namespace, c.route).get("data") or {})
        except NotFound:
            raise RoutingError(f"ConfigMap {c.namespace}/{c.route} not found") from None

    def validate(self) -> None:
        self._data()

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        if mirror or pin is not None:
            raise RoutingError("the toy router neither mirrors nor pins")
        want = {"canary": str(clamp(weight)), "match": f"{match.name}={match.value}" if match else None}
        have = self._data()
        if {k: have.get(k) for k in want} != want:
            c = self.ctx
            c.kube.patch(CONFIGMAPS, c.namespace, c.route, {"data": want})

    def verify_weight(self) -> int | None:
        return int(self._data().get("canary", "0"))

    def reset(self) -> None:
        self.set_weight(0)

    def verify_extras(self) -> bool:
        return "match" in self._data()


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> type[Toy]:
    """The toy router registered (in a copy of the registry, so no other test sees it)."""
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    return kinds.register(Toy)


def problem(**annotations: str) -> tuple[str, str] | None:
    try:
        specmod.parse(deployment(**annotations))
    except SpecError as err:
        return err.key, err.problem
    return None


# ------------------------------------------------------------------ the registry


def test_the_annotation_schema_loads_no_client() -> None:
    """delivery.spec (and the registry it reads) import neither delivery.kube.client nor kubernetes: lint
    and the schema stay offline."""
    code = (
        "import sys, delivery.spec, delivery.routing.kinds; print(sorted(m for m in sys.modules "
        "if m in ('delivery.kube.client', 'kubernetes') or m.startswith('delivery.routing.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "['delivery.routing.kinds']"


def test_each_registered_kind_is_built_by_a_router_that_carries_its_description() -> None:
    assert kinds.names() == ("replica", "gateway-api", "nginx", "istio", "smi")
    for name in kinds.names():
        described = kinds.get(name)
        assert described is not None
        cls = router_class(name)
        assert issubclass(cls, described) and cls.kind == name
        assert bool(cls.resources) == cls.weighted, f"{name}: a weighted router names the resources it writes"


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        (Capability.MATCH, ["gateway-api", "istio", "nginx"]),
        (Capability.MIRROR, ["gateway-api", "istio"]),
        (Capability.PIN, ["gateway-api", "istio"]),
    ],
)
def test_capabilities_are_the_routers_own(capability: Capability, expected: list[str]) -> None:
    assert kinds.able(capability) == expected


def test_only_replica_sets_no_weights() -> None:
    class Unweighted(RouterKind):
        kind = "plain"
        client = "x:Y"
        weighted = False

    class WeightedReplica(RouterKind):
        kind = kinds.NO_ROUTER
        client = "x:Y"

    for described in (Unweighted, WeightedReplica):
        with pytest.raises(ValueError, match="only 'replica' has no route"):
            kinds.register(described)
    assert "plain" not in kinds.KINDS and kinds.KINDS[kinds.NO_ROUTER] is kinds.Replica


def test_a_router_that_cannot_be_imported_is_a_routing_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Missing(RouterKind):
        kind = "missing"
        client = "delivery.routing.no_such_module:MissingRouter"

    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    kinds.register(Missing)
    with pytest.raises(RoutingError, match="router 'missing' is not available"):
        router_class("missing")
    with pytest.raises(RoutingError, match="unknown router kind 'nope'"):
        router_class("nope")


# ------------------------------------------------------------------ a new router, registered and nothing else


def test_a_registered_router_is_accepted_by_the_schema_with_its_capabilities(toy: type[Toy]) -> None:
    parsed = specmod.parse(deployment(router="toy/web-route", steps="match,20,100", match="header:x-canary=always"))
    assert parsed.router == RouterRef("toy", "web-route")
    assert parsed.stable_service == "web-stable", "a weighted router uses the stable and canary Services"
    # what it can do: match; what it cannot, refused with the same words as for the shipped routers
    assert problem(router="toy/web-route", affinity="cookie") == (
        "deliver.dev/affinity",
        "session affinity needs a gateway-api or istio router (not toy)",
    )
    assert problem(router="toy/web-route", steps="mirror,20,100") == (
        "deliver.dev/steps",
        "a `mirror` step needs a router that mirrors requests: gateway-api or istio (not toy)",
    )
    # its own check, in its own words
    assert problem(router="toy/web-route", match="cookie:canary=always") == (
        "deliver.dev/match",
        "the toy router matches headers only",
    )
    # the shipped routers' messages now name it among the routers that can match
    assert problem(router="smi/web", match="header:x=y") == (
        "deliver.dev/match",
        "an SMI TrafficSplit only splits by weight and has no request matches; "
        "use a gateway-api, istio, nginx or toy router",
    )
    assert problem(router="replica", match="header:x=y") == (
        "deliver.dev/match",
        "needs a router that can match requests: gateway-api, istio, nginx or toy",
    )
    unknown = problem(router="traefik/web")
    assert unknown is not None and unknown[1].endswith("(use one of replica, gateway-api, nginx, istio, smi, toy)")
    # a weighted router applies to canary only, like the others
    assert problem(strategy="rolling", router="toy/web-route") == (
        "deliver.dev/router",
        "weighted routers apply to canary, not rolling",
    )


def test_a_registered_router_is_built_by_the_factory(toy: type[Toy]) -> None:
    kube = FakeKube(namespace=NS)
    router = router_for("toy", RouterContext(kube, NS, "web", "web-route", "web-stable", "web-canary"))
    assert isinstance(router, ToyRouter) and router.weighted
    with pytest.raises(RoutingError, match="ConfigMap shop/web-route not found"):
        router.validate()


def test_a_registered_router_drives_a_whole_delivery(toy: type[Toy]) -> None:
    """The engine (observe, plan, act, release) uses the toy router as it uses the shipped ones:
    a match step, then the weights, then all traffic back to the stable Service at the end."""
    f = Fixture()
    f.kube.put(CONFIGMAPS, {"metadata": {"name": "web-route", "namespace": NS}, "data": {"canary": "0"}})
    f.given_service("web")
    f.given_deployment(
        "canary",
        "web:v1",
        replicas=4,
        steps="match,pause,50,100",
        interval="30s",
        router="toy/web-route",
        match="header:x-canary=always",
    )
    f.given_delivered()
    f.when_template_changes("web:v2")
    f.when_settled(until=lambda f: f.record().get("phase") == "Paused")
    assert route(f) == {"canary": "0", "match": "x-canary=always"}, "matched requests only"
    assert f.serving() == {"web:v1": 3, "web:v2": 1}
    Explorer(f, "promote").request("promote")
    f.when_settled()
    assert f.record()["phase"] == "Succeeded"
    written = [w.body["data"]["canary"] for w in f.kube.writes if w.plural == "configmaps" and w.verb == "patch"]
    assert written == ["0", "50", "100", "0"], "the match step, each weight, then all traffic to stable"
    assert route(f) == {"canary": "0"}, "no match left at rest"


def route(f: Fixture) -> dict[str, Any]:
    data: dict[str, Any] = f.kube.obj(CONFIGMAPS, "web-route", NS)["data"]
    return data
