"""Scale-down delay and abort scale-down delay (issue 12 item 5), on the one fake API: the old
version stays that long after all traffic moved to the new one; a rolled-back version's pods stay
that long (no traffic) after the rollback."""

from __future__ import annotations

from typing import Any

import pytest

from delivery import spec as specmod
from delivery.routing.gateway import HTTPROUTES
from tests.fixture import Fixture

from .test_match_routing import deployment
from .test_routers import NS, httproute

V1, V2 = "web:v1", "web:v2"


@pytest.mark.parametrize(
    ("strategy", "annotations", "key", "needle"),
    [
        ("canary", dict(scale_down_delay="30s"), "scale-down-delay", "needs a weighted router"),
        ("canary", dict(abort_scale_down_delay="30s"), "abort-scale-down-delay", "needs a weighted router"),
        ("rolling", dict(scale_down_delay="30s"), "scale-down-delay", "only applies to canary and blue-green"),
        ("blue-green", dict(scale_down_delay="30s", keep_warm="1m"), "scale-down-delay", "set one of them"),
        ("canary", dict(scale_down_delay="soon", router="istio/web"), "scale-down-delay", "not a duration"),
    ],
)
def test_invalid_delays(strategy: str, annotations: dict[str, str], key: str, needle: str) -> None:
    d = deployment(**annotations)
    d["metadata"]["annotations"]["deliver.dev/strategy"] = strategy
    problems = specmod.problems(d)
    assert [p.key for p in problems] == [f"deliver.dev/{key}"], problems
    assert needle in problems[0].problem


def test_blue_green_scale_down_delay_is_its_keep_warm() -> None:
    d = deployment(scale_down_delay="45s")
    d["metadata"]["annotations"]["deliver.dev/strategy"] = "blue-green"
    assert specmod.parse(d).keep_warm == 45.0


def routed(**annotations: str) -> Fixture:
    f = Fixture()
    f.kube.put(HTTPROUTES, dict(httproute(weights=(100, 0)), metadata={"name": "web", "namespace": NS}))
    f.given_service("web")
    f.given_deployment(
        "canary", V1, replicas=3, steps="50,100", interval="10s", router="gateway-api/web", **annotations
    )
    f.given_delivered()
    return f


def weights(f: Fixture) -> list[Any]:
    [rule] = f.kube.obj(HTTPROUTES, "web", NS)["spec"]["rules"]
    return [ref["weight"] for ref in rule["backendRefs"]]


def test_the_old_version_stays_for_the_scale_down_delay_after_the_switch_then_goes() -> None:
    f = routed(scale_down_delay="60s")
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("phase") == "Promoting" and weights(f) == [0, 100])
    switched = f.now
    f.when_settled(until=lambda f: f.now - switched >= 55)
    assert f.record()["phase"] == "Promoting" and f.serving().get(V1, 0) > 0, "old pods kept during the delay"
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.serving() == {V2: 3}
    assert f.now - switched >= 60


def test_an_abort_during_the_scale_down_delay_switches_traffic_back_at_once() -> None:
    from tests.crashpoints import Explorer

    f = routed(scale_down_delay="60s")
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("phase") == "Promoting" and weights(f) == [0, 100])
    f.when_time_passes(10)
    Explorer(f, "abort").request("abort")
    f.when_reconciled()
    assert weights(f) == [100, 0], "all traffic on the old version, which was still up"
    f.when_settled()
    assert f.record()["phase"] == "Aborted" and f.serving() == {V1: 3}


def test_a_rolled_back_version_stays_for_the_abort_scale_down_delay_without_traffic() -> None:
    f = routed(abort_scale_down_delay="2m", progress_deadline="20s")
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("phase") == "RolledBack")
    rolled_back = f.now
    assert weights(f) == [100, 0] and f.delivers_replicasets(), "no traffic, the failed pods still there"
    f.when_settled(until=lambda f: not f.delivers_replicasets())
    assert f.now - rolled_back >= 115, f.now - rolled_back
    assert f.record()["phase"] == "RolledBack"


def test_without_a_delay_a_rolled_back_version_goes_after_the_router_drain() -> None:
    f = routed(progress_deadline="20s")
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("phase") == "RolledBack")
    assert not f.delivers_replicasets()
