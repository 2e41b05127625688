"""Header/cookie routing (``deliver.dev/match``, issue 12 item 2): the annotation, the planner's
``match`` step, and the objects each router writes, against the one fake API."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from delivery import spec as specmod
from delivery.cli.lint import lint_documents
from delivery.errors import RoutingError
from delivery.kube.client import JSON_PATCH
from delivery.routing.base import router_for
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from delivery.routing.nginx import CANARY_BY_COOKIE, CANARY_BY_HEADER, CANARY_BY_HEADER_VALUE, CANARY_WEIGHT, INGRESSES
from strategies import plan
from strategies.actions import SetWeight
from strategies.spec import CanaryStep, RequestMatch, RouterRef, Strategy
from tests.crashpoints import Explorer
from tests.fixture import Fixture

from .planning import NEW, STABLE, canary_spec, obs, started, version
from .test_routers import NS, ctx, fake_kube, httproute, ingress, nginx_kube, virtualservice

HEADER = RequestMatch("header", "x-canary", "always")
COOKIE = RequestMatch("cookie", "canary", "always")


def deployment(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "deliver.dev/strategy": "canary",
                **{f"deliver.dev/{k.replace('_', '-')}": v for k, v in annotations.items()},
            },
        },
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}}},
    }


# ------------------------------------------------------------------ the annotation


def test_a_match_step_and_a_header_match_parse() -> None:
    parsed = specmod.parse(
        deployment(steps="match,pause,20,100", match="header:X-Canary=always", router="gateway-api/web")
    )
    assert parsed.steps[0] == CanaryStep(match=True) and parsed.steps[1].pause
    assert parsed.match == HEADER, "header names are case-insensitive: kept lower-case"
    cookie = specmod.parse(deployment(match="cookie:canary=always", router="nginx/web"))
    assert cookie.match == COOKIE and cookie.steps == (CanaryStep(20), CanaryStep(50), CanaryStep(100))


@pytest.mark.parametrize(
    ("annotations", "key", "needle"),
    [
        (dict(steps="match,20"), "steps", "needs deliver.dev/match"),
        (dict(steps="20,match,50", match="header:x=1", router="istio/web"), "steps", "before any percentage"),
        (dict(steps="match", match="header:x=1", router="istio/web"), "steps", "at least one percentage"),
        (dict(match="header:x=1"), "match", "needs a router"),
        (dict(match="header:x=1", router="smi/web"), "match", "SMI TrafficSplit"),
        (dict(match="cookie:c=yes", router="nginx/web"), "match", "`always`"),
        (dict(match="header x=1", router="istio/web"), "match", "header:NAME=VALUE"),
        (dict(match="header:x-c=a;b", router="istio/web"), "match", "letters, digits"),
        (dict(match="query:x=1", router="istio/web"), "match", "header:NAME=VALUE"),
    ],
)
def test_an_invalid_match_is_a_problem_naming_the_key(annotations: dict[str, str], key: str, needle: str) -> None:
    problems = specmod.problems(deployment(**annotations))
    assert [p.key for p in problems] == [f"deliver.dev/{key}"], problems
    assert needle in problems[0].problem
    [result] = lint_documents([deployment(**annotations)], "web.yaml")
    assert not result["valid"] and result["problems"][0]["key"] == f"deliver.dev/{key}"


def test_an_invalid_match_is_no_action_and_a_warning() -> None:
    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3, steps="20,100")
    f.given_delivered()
    f.when_annotated(match="header:x-canary=always", router="smi/web")
    f.when_template_changes("web:v2")
    f.when_reconciled()
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/match" in warning["message"] and "SMI" in warning["message"]
    assert f.delivers_replicasets() == []


# ------------------------------------------------------------------ the planner


def routed(**kw: Any) -> Any:
    return canary_spec(
        router=RouterRef("gateway-api", "web"),
        steps=(CanaryStep(match=True), CanaryStep(20), CanaryStep(100)),
        match=HEADER,
        **kw,
    )


def test_a_match_step_runs_one_new_pod_and_routes_only_matched_requests() -> None:
    s = started(Strategy.CANARY)
    starting = plan(routed(), s, obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False), router_weight=0))
    assert not [a for a in starting.actions if isinstance(a, SetWeight) and a.match], "no Ready pod: no match yet"
    ready = plan(routed(), s, obs(version(STABLE, 5), version(NEW, 1, owned=False), router_weight=0))
    assert SetWeight(0, match=True) in ready.actions
    assert ready.state.step == 0


def test_weighted_steps_keep_the_match_and_the_end_removes_it() -> None:
    s = started(Strategy.CANARY, step=1)
    p = plan(routed(), s, obs(version(STABLE, 4), version(NEW, 1, owned=False), replicas=5, router_weight=0))
    assert SetWeight(20, match=True) in p.actions
    back = plan(
        routed(), s, obs(version(STABLE, 4), version(NEW, 1, ready=0, owned=False, crashloop=1), router_weight=20)
    )
    assert SetWeight(0) in back.actions and not any(isinstance(a, SetWeight) and a.match for a in back.actions)


# ------------------------------------------------------------------ Gateway API


def test_gateway_adds_one_header_rule_per_managed_rule_in_one_patch_and_reset_removes_it() -> None:
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(0, HEADER)
    [write] = kube.writes
    assert write.content_type == JSON_PATCH
    rules = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert len(rules) == 2
    assert rules[1] == {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}],
            }
        ],
        "filters": rules[0]["filters"],
        "backendRefs": [{"name": "web-canary", "port": 80}],
    }
    assert router.verify_weight() == 0, "deliver's rule is not a weighted rule"
    router.set_weight(0, HEADER)
    assert len(kube.writes) == 1, "already so: no write"
    router.set_weight(20, HEADER)
    rules = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert len(rules) == 2 and router.verify_weight() == 20
    router.reset()
    rules = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert len(rules) == 1 and router.verify_weight() == 0


def test_gateway_cookie_is_a_regular_expression_on_the_cookie_header() -> None:
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))
    router_for("gateway-api", ctx(kube)).set_weight(0, COOKIE)
    [header] = kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"][1]["matches"][0]["headers"]
    assert header == {"type": "RegularExpression", "name": "Cookie", "value": r"^(.*;\s*)?canary=always(;.*)?$"}


# ------------------------------------------------------------------ Istio


def test_istio_puts_a_named_match_route_first_and_reset_removes_it() -> None:
    kube = fake_kube()
    kube.put(VIRTUALSERVICES, virtualservice())
    router = router_for("istio", ctx(kube))
    router.set_weight(0, HEADER)
    http = kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"]
    assert [r["name"] for r in http] == ["deliver-match-0", "admin", "main"]
    assert http[0] == {
        "name": "deliver-match-0",
        "retries": {"attempts": 3},
        "match": [{"headers": {"x-canary": {"exact": "always"}}}],
        "route": [{"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 100}],
    }
    assert http[2] == virtualservice()["spec"]["http"][1], "the weighted route is unchanged at weight 0"
    router.set_weight(50, COOKIE)
    http = kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"]
    assert http[0]["match"] == [{"headers": {"cookie": {"regex": r"^(.*;\s*)?canary=always(;.*)?$"}}}]
    assert len(http) == 3 and router.verify_weight() == 50
    router.reset()
    assert kube.obj(VIRTUALSERVICES, "web", NS)["spec"]["http"] == virtualservice()["spec"]["http"]
    assert router.verify_weight() == 0


def test_istio_without_an_http_route_cannot_match() -> None:
    kube = fake_kube()
    vs = virtualservice()
    vs["spec"]["tcp"] = vs["spec"].pop("http")[1:]
    kube.put(VIRTUALSERVICES, vs)
    with pytest.raises(RoutingError, match="no http route"):
        router_for("istio", ctx(kube)).set_weight(0, HEADER)


# ------------------------------------------------------------------ NGINX


def test_nginx_canary_ingress_carries_canary_by_header_even_at_weight_zero() -> None:
    kube = nginx_kube()
    router = router_for("nginx", ctx(kube))
    router.set_weight(0, HEADER)
    canary = kube.obj(INGRESSES, "web-canary", NS)
    annotations = canary["metadata"]["annotations"]
    assert (annotations[CANARY_WEIGHT], annotations[CANARY_BY_HEADER], annotations[CANARY_BY_HEADER_VALUE]) == (
        "0",
        "x-canary",
        "always",
    )
    router.set_weight(20, COOKIE)
    annotations = kube.obj(INGRESSES, "web-canary", NS)["metadata"]["annotations"]
    assert annotations[CANARY_BY_COOKIE] == "canary" and CANARY_BY_HEADER not in annotations
    router.reset()
    annotations = kube.obj(INGRESSES, "web-canary", NS)["metadata"]["annotations"]
    assert annotations[CANARY_WEIGHT] == "0" and not {CANARY_BY_COOKIE, CANARY_BY_HEADER} & set(annotations)


def test_nginx_user_canary_by_annotations_are_not_copied() -> None:
    kube = nginx_kube()
    user = copy.deepcopy(ingress())
    user["metadata"].setdefault("annotations", {})[CANARY_BY_HEADER] = "x-user"
    kube.put(INGRESSES, user)
    router_for("nginx", ctx(kube)).set_weight(10)
    assert CANARY_BY_HEADER not in kube.obj(INGRESSES, "web-canary", NS)["metadata"]["annotations"]


def test_smi_refuses_a_match() -> None:
    with pytest.raises(RoutingError, match="no request matches"):
        router_for("smi", ctx(fake_kube())).set_weight(0, HEADER)


# ------------------------------------------------------------------ the whole loop on the fake API


def test_a_delivery_with_a_match_step_routes_matched_requests_then_leaves_the_route_as_it_was() -> None:
    f = Fixture()
    f.kube.put(HTTPROUTES, dict(httproute(weights=(100, 0)), metadata={"name": "web", "namespace": "shop"}))
    f.given_service("web")
    f.given_deployment(
        "canary",
        "web:v1",
        replicas=4,
        steps="match,pause,50,100",
        interval="30s",
        router="gateway-api/web",
        match="header:x-canary=always",
    )
    f.given_delivered()
    original = f.kube.obj(HTTPROUTES, "web", NS)["spec"]
    f.when_template_changes("web:v2")
    f.when_settled(until=lambda f: f.record().get("phase") == "Paused")
    rules = f.kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    assert [r["backendRefs"][-1].get("weight") for r in rules] == [0, None], "weight 0, plus deliver's match rule"
    assert rules[1]["backendRefs"] == [{"name": "web-canary", "port": 80}]
    assert rules[1]["matches"][0]["headers"] == [{"type": "Exact", "name": "x-canary", "value": "always"}]
    assert f.serving() == {"web:v1": 3, "web:v2": 1}, "one new pod for the matched requests"
    assert "step 1 (match (matched requests only)) passed" in " ".join(e["message"] for e in f.events("StepPassed"))
    Explorer(f, "promote").request("promote")  # `deliver promote web`
    f.when_settled()
    assert f.record()["phase"] == "Succeeded"
    assert f.kube.obj(HTTPROUTES, "web", NS)["spec"] == original, "no match rule left, weights back to 100/0"


def test_a_match_left_on_the_route_is_removed_at_rest_and_holds_a_rollback_open() -> None:
    from strategies.record import DeliveryState, Phase

    at_rest = plan(
        routed(),
        DeliveryState(phase=Phase.SUCCEEDED, stable_revision=STABLE, revision=STABLE),
        obs(version(STABLE, 5), target=STABLE, router_weight=0, router_extras=True),
    )
    assert SetWeight(0) in at_rest.actions
    clean = plan(
        routed(),
        DeliveryState(phase=Phase.SUCCEEDED, stable_revision=STABLE, revision=STABLE),
        obs(version(STABLE, 5), target=STABLE, router_weight=0),
    )
    assert SetWeight(0) not in clean.actions
    rolling_back = started(Strategy.CANARY, phase=Phase.ROLLING_BACK, step=-1, finished=900.0)
    held = plan(routed(), rolling_back, obs(version(STABLE, 5), target=STABLE, router_weight=0, router_extras=True))
    assert held.state.phase is Phase.ROLLING_BACK and SetWeight(0) in held.actions
    done = plan(routed(), rolling_back, obs(version(STABLE, 5), target=STABLE, router_weight=0))
    assert done.state.phase is Phase.ROLLED_BACK


def test_each_router_tells_whether_its_route_carries_deliver_s_match() -> None:
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))
    kube.put(VIRTUALSERVICES, virtualservice())
    for kind in ("gateway-api", "istio"):
        router = router_for(kind, ctx(kube))
        assert not router.verify_extras()
        router.set_weight(0, HEADER)
        assert router.verify_extras()
        router.reset()
        assert not router.verify_extras()
    nginx = router_for("nginx", ctx(nginx_kube()))
    nginx.set_weight(10)
    assert not nginx.verify_extras()
    nginx.set_weight(10, COOKIE)
    assert nginx.verify_extras()


def test_gateway_match_rule_read_back_with_the_api_servers_defaults_is_not_written_again() -> None:
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(0, HEADER)
    route = kube.obj(HTTPROUTES, "web", NS)
    rule = route["spec"]["rules"][1]  # as the HTTPRoute CRD's defaults fill it in
    rule["backendRefs"][0].update(group="", kind="Service", weight=1)
    kube.put(HTTPROUTES, route)
    writes = len(kube.writes)
    router.set_weight(0, HEADER)
    assert len(kube.writes) == writes
