"""Mirroring (a `mirror` step, ``deliver.dev/mirror-percent``; issue 12 item 3): the annotation, the
planner's step and what the Gateway API and Istio routers write, against the one fake API."""

from __future__ import annotations

import pytest

from delivery import spec as specmod
from delivery.errors import RoutingError
from delivery.routing.base import router_for
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from strategies import plan
from strategies.actions import HoldStable, SetWeight
from strategies.spec import CanaryStep, RouterRef, Strategy
from tests.crashpoints import Explorer
from tests.fixture import Fixture

from .planning import NEW, STABLE, canary_spec, obs, started, version
from .test_match_routing import HEADER, deployment
from .test_routers import NS, ctx, fake_kube, httproute, nginx_kube, virtualservice


def test_a_mirror_step_parses_with_its_percent() -> None:
    parsed = specmod.parse(deployment(steps="mirror,pause,20,100", router="istio/web", mirror_percent="50%"))
    assert parsed.steps[0] == CanaryStep(mirror=True) and parsed.mirror_percent == 50
    assert specmod.parse(deployment(steps="mirror,20,100", router="gateway-api/web")).mirror_percent == 100


@pytest.mark.parametrize(
    ("annotations", "key", "needle"),
    [
        (dict(steps="mirror,20", router="nginx/web"), "steps", "gateway-api or istio (not nginx)"),
        (dict(steps="mirror,20", router="smi/web"), "steps", "(not smi)"),
        (dict(steps="mirror,20"), "steps", "(not replica)"),
        (dict(steps="20,mirror,50", router="istio/web"), "steps", "before any percentage"),
        (dict(steps="mirror,mirror,50", router="istio/web"), "steps", "once"),
        (dict(router="istio/web", mirror_percent="50"), "mirror-percent", "needs a `mirror` step"),
        (dict(steps="mirror,50", router="istio/web", mirror_percent="0"), "mirror-percent", "out of range"),
    ],
)
def test_an_invalid_mirror_is_a_problem_naming_the_key(annotations: dict[str, str], key: str, needle: str) -> None:
    problems = specmod.problems(deployment(**annotations))
    assert [p.key for p in problems] == [f"deliver.dev/{key}"], problems
    assert needle in problems[0].problem


def mirrored(mirror_percent: int = 100) -> object:
    return canary_spec(
        router=RouterRef("gateway-api", "web"),
        steps=(CanaryStep(mirror=True), CanaryStep(20), CanaryStep(100)),
        mirror_percent=mirror_percent,
    )


def test_a_mirror_step_runs_pods_for_the_copies_beside_all_stable_pods_at_weight_zero() -> None:
    s = started(Strategy.CANARY)
    p = plan(mirrored(), s, obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, router_weight=0))
    assert SetWeight(0, mirror=100) in p.actions
    assert not any(isinstance(a, HoldStable) for a in p.actions), "stable serves every client: kept at N"
    half = plan(
        mirrored(mirror_percent=50),
        s,
        obs(version(STABLE, 4), version(NEW, 2, owned=False), replicas=4, router_weight=0),
    )
    assert SetWeight(0, mirror=50) in half.actions
    nxt = plan(
        mirrored(),
        started(Strategy.CANARY, step=1),
        obs(version(STABLE, 4), version(NEW, 1, owned=False), replicas=4, router_weight=0),
    )
    assert SetWeight(20) in nxt.actions, "the weighted step drops the mirror"


def test_gateway_mirror_filter_on_each_managed_rule_and_gone_after_reset() -> None:
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(0, mirror=100)
    [rule] = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert rule["filters"][-1] == {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "web-canary", "port": 80}},
    }
    assert rule["filters"][:-1] == httproute()["spec"]["rules"][0]["filters"], "the user's filter kept"
    assert router.verify_extras() and router.verify_weight() == 0
    writes = len(kube.writes)
    router.set_weight(0, mirror=100)
    assert len(kube.writes) == writes, "already so: no write"
    router.set_weight(0, HEADER, mirror=30)
    rules = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert rules[0]["filters"][-1]["requestMirror"]["percent"] == 30
    assert [f["type"] for f in rules[1]["filters"]] == ["RequestHeaderModifier"], "the match rule does not mirror"
    router.reset()
    assert kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"] == httproute(weights=(100, 0))["spec"]["rules"]
    assert not router.verify_extras()


def test_istio_mirror_and_mirror_percentage_on_the_managed_http_route() -> None:
    kube = fake_kube()
    kube.put(VIRTUALSERVICES, virtualservice())
    router = router_for("istio", ctx(kube))
    router.set_weight(0, mirror=40)
    main = kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"][1]
    assert main["mirror"] == {"host": "web-canary", "port": {"number": 80}}
    assert main["mirrorPercentage"] == {"value": 40.0}
    assert router.verify_extras()
    router.reset()
    assert kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"] == virtualservice()["spec"]["http"]
    assert not router.verify_extras()


def test_istio_never_replaces_a_mirror_of_the_users() -> None:
    kube = fake_kube()
    vs = virtualservice()
    vs["spec"]["http"][1]["mirror"] = {"host": "audit"}
    kube.put(VIRTUALSERVICES, vs)
    with pytest.raises(RoutingError, match="mirrors to another host"):
        router_for("istio", ctx(kube)).set_weight(0, mirror=100)
    router_for("istio", ctx(kube)).reset()
    assert kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"][1]["mirror"] == {"host": "audit"}


def test_nginx_and_smi_refuse_to_mirror() -> None:
    with pytest.raises(RoutingError, match="mirror"):
        router_for("nginx", ctx(nginx_kube())).set_weight(0, mirror=100)
    with pytest.raises(RoutingError, match="mirror"):
        router_for("smi", ctx(fake_kube())).set_weight(0, mirror=100)


def test_a_delivery_with_a_mirror_step_copies_then_weighs_then_leaves_the_route_as_it_was() -> None:
    f = Fixture()
    f.kube.put(HTTPROUTES, dict(httproute(weights=(100, 0)), metadata={"name": "web", "namespace": "shop"}))
    f.given_service("web")
    f.given_deployment(
        "canary", "web:v1", replicas=4, steps="mirror,pause,50,100", interval="30s", router="gateway-api/web"
    )
    f.given_delivered()
    original = f.kube.obj(HTTPROUTES, "web", NS)["spec"]
    f.when_template_changes("web:v2")
    f.when_settled(until=lambda f: f.record().get("phase") == "Paused")
    [rule] = f.kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert rule["filters"][-1]["type"] == "RequestMirror" and rule["backendRefs"][1]["weight"] == 0
    assert f.serving() == {"web:v1": 4, "web:v2": 4}, "pods for a copy of all traffic, all stable pods kept"
    Explorer(f, "promote").request("promote")
    f.when_settled(until=lambda f: f.record().get("weight") == 50)
    [rule] = f.kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert [x["type"] for x in rule["filters"]] == ["RequestHeaderModifier"], "no mirror at a weighted step"
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.kube.obj(HTTPROUTES, "web", NS)["spec"] == original
