"""Session affinity (``deliver.dev/affinity: cookie``; issue 12 item 4): the annotation, the
planner's weighted steps, and what the Gateway API and Istio routers write, on the one fake API."""

from __future__ import annotations

import pytest

from delivery import spec as specmod
from delivery.errors import RoutingError
from delivery.routing.base import router_for
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from strategies import plan
from strategies.actions import SetWeight
from strategies.spec import Affinity, CanaryStep, RouterRef, Strategy
from tests.fixture import Fixture

from .planning import NEW, STABLE, canary_spec, obs, started, version
from .test_match_routing import HEADER, deployment
from .test_routers import NS, ctx, fake_kube, httproute, nginx_kube, virtualservice

PIN = Affinity("deliver-web", "stablerev1", "newrev0001")
COOKIE_RE = r"^(.*;\s*)?deliver-web={}(;.*)?$"


def test_affinity_parses_and_needs_gateway_api_or_istio() -> None:
    assert specmod.parse(deployment(affinity="cookie", router="istio/web")).affinity is True
    assert specmod.parse(deployment(affinity="none", router="istio/web")).affinity is False
    for given, needle in (
        (dict(affinity="cookie", router="nginx/web"), "(not nginx)"),
        (dict(affinity="cookie"), "(not replica)"),
        (dict(affinity="sticky", router="istio/web"), "not one of cookie, none"),
    ):
        [problem] = specmod.problems(deployment(**given))
        assert problem.key == "deliver.dev/affinity" and needle in problem.problem


def test_weighted_steps_pin_and_the_others_do_not() -> None:
    spec = canary_spec(
        router=RouterRef("gateway-api", "web"),
        steps=(CanaryStep(match=True), CanaryStep(20), CanaryStep(100)),
        match=HEADER,
        affinity=True,
    )
    o = obs(version(STABLE, 4), version(NEW, 1, owned=False), replicas=5, router_weight=0)
    assert SetWeight(0, match=True) in plan(spec, started(Strategy.CANARY), o).actions
    assert SetWeight(20, match=True, pin=True) in plan(spec, started(Strategy.CANARY, step=1), o).actions


def test_gateway_sets_a_cookie_per_version_and_pins_each_cookie_to_its_version() -> None:
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(20, pin=PIN)
    rules = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    stable_ref, canary_ref = rules[0]["backendRefs"]
    assert (stable_ref["weight"], canary_ref["weight"]) == (80, 20)
    assert stable_ref["filters"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": "deliver-web=stablerev1; Path=/"}]},
        }
    ]
    assert canary_ref["filters"][0]["responseHeaderModifier"]["add"][0]["value"] == "deliver-web=newrev0001; Path=/"
    pins = {r["backendRefs"][0]["name"]: r["matches"][0]["headers"][0]["value"] for r in rules[1:]}
    assert pins == {"web-canary": COOKIE_RE.format("newrev0001"), "web-stable": COOKIE_RE.format("stablerev1")}
    assert router.verify_weight() == 20 and router.verify_extras()
    writes = len(kube.writes)
    router.set_weight(20, pin=PIN)
    assert len(kube.writes) == writes, "already so: no write"
    router.set_weight(50, HEADER, pin=PIN)
    rules = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert len(rules) == 4 and rules[1]["matches"][0]["headers"][0]["name"] == "x-canary", "the match rule first"
    router.reset()
    assert kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"] == httproute(weights=(100, 0))["spec"]["rules"]
    assert not router.verify_extras()


def test_istio_sets_response_cookies_and_pin_routes_after_the_match_routes() -> None:
    kube = fake_kube()
    kube.put(VIRTUALSERVICES, virtualservice())
    router = router_for("istio", ctx(kube))
    router.set_weight(20, HEADER, pin=PIN)
    http = kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"]
    assert [r["name"] for r in http] == ["deliver-match-0", "deliver-pin-0", "deliver-pin-1", "admin", "main"]
    assert http[1]["match"] == [{"headers": {"cookie": {"regex": COOKIE_RE.format("newrev0001")}}}]
    assert http[1]["route"] == [{"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 100}]
    assert http[2]["route"][0]["destination"]["host"] == f"web-stable.{NS}.svc.cluster.local"
    stable, canary = http[4]["route"]
    assert stable["headers"] == {"response": {"add": {"set-cookie": "deliver-web=stablerev1; Path=/"}}}
    assert (stable["weight"], canary["weight"]) == (80, 20)
    assert router.verify_extras()
    router.reset()
    assert kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"] == virtualservice()["spec"]["http"]


def test_istio_leaves_a_destination_with_headers_of_the_users_alone() -> None:
    kube = fake_kube()
    vs = virtualservice()
    vs["spec"]["http"][1]["route"][0]["headers"] = {"request": {"set": {"x-team": "shop"}}}
    kube.put(VIRTUALSERVICES, vs)
    with pytest.raises(RoutingError, match="headers of its own"):
        router_for("istio", ctx(kube)).set_weight(20, pin=PIN)


def test_nginx_and_smi_refuse_affinity() -> None:
    with pytest.raises(RoutingError, match="session affinity"):
        router_for("nginx", ctx(nginx_kube())).set_weight(20, pin=PIN)
    with pytest.raises(RoutingError, match="session affinity"):
        router_for("smi", ctx(fake_kube())).set_weight(20, pin=PIN)


def test_a_delivery_with_affinity_pins_at_its_weighted_step_and_leaves_the_route_as_it_was() -> None:
    f = Fixture()
    f.kube.put(HTTPROUTES, dict(httproute(weights=(100, 0)), metadata={"name": "web", "namespace": "shop"}))
    f.given_service("web")
    f.given_deployment(
        "canary", "web:v1", replicas=4, steps="50,100", interval="30s", router="gateway-api/web", affinity="cookie"
    )
    f.given_delivered()
    original = f.kube.obj(HTTPROUTES, "web", NS)["spec"]
    f.when_template_changes("web:v2")
    f.when_settled(until=lambda f: f.record().get("weight") == 50)
    rules = f.kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    record = f.record()
    values = {r["backendRefs"][0]["name"]: r["matches"][0]["headers"][-1]["value"] for r in rules[1:]}
    assert values == {
        "web-canary": COOKIE_RE.format(record["revision"]),
        "web-stable": COOKIE_RE.format(record["stableRevision"]),
    }
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.kube.obj(HTTPROUTES, "web", NS)["spec"] == original
