"""The Services deliver touches (issue 10: defects 1, 2 and 18), against the one fake API.

Given/When/Then through ``tests.fixture.Fixture``: a release behind a weighted router keeps the app
served; a blue-green pin never outlives blue-green; a Service-name annotation cannot take over a
Service that is neither deliver's nor already in front of this Deployment's pods.
"""

from __future__ import annotations

from typing import Any

import pytest

from delivery import templates
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS, SERVICES
from delivery.routing.gateway import HTTPROUTES
from tests.fakekube import Crash
from tests.fixture import NAME, NS, STATE, Fixture, owner_ref, template

V1, V2, V3 = "web:v1", "web:v2", "web:v3"
REV2 = templates.revision(template(V2))


def httproute(canary: str = f"{NAME}-canary") -> dict[str, Any]:
    backends = [
        {"name": f"{NAME}-stable", "port": 80, "weight": 100},
        {"name": canary, "port": 80, "weight": 0},
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME},
        "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": backends}]},
    }


def weights(f: Fixture) -> dict[str, int]:
    rule = f.kube.obj(HTTPROUTES, NAME)["spec"]["rules"][0]
    return {b["name"]: int(b.get("weight", 1)) for b in rule["backendRefs"]}


def selected_images(f: Fixture, service: str) -> set[str]:
    """Images of the pods a Service selects now (nothing for a Service that does not exist)."""
    try:
        selector = f.kube.obj(SERVICES, service)["spec"]["selector"]
    except KeyError:
        return set()
    return {p["spec"]["containers"][0]["image"] for p in f.kube.find(PODS, NS, {"matchLabels": selector})}


def routed_canary() -> Fixture:
    """A canary behind a Gateway API HTTPRoute, mid-delivery of v2 (20 % of traffic)."""
    f = Fixture()
    f.kube.put(HTTPROUTES, httproute())
    f.given_deployment("canary", V1, replicas=3, steps="20,50,100", interval="30s", router=f"gateway-api/{NAME}")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: weights(f)[f"{NAME}-canary"] == 20)
    return f


# ------------------------------------------------------------------ defect 1: release behind a router


def test_release_behind_a_weighted_router_keeps_the_app_served() -> None:
    f = routed_canary()
    assert selected_images(f, f"{NAME}-stable") == {V1}

    f.when_annotated(strategy=None)
    f.when_reconciled()
    f.cluster()

    d = f.deployment()
    assert STATE not in d["metadata"]["annotations"] and d["spec"]["paused"] is False
    assert f.delivers_replicasets() == []
    for service in (f"{NAME}-stable", f"{NAME}-canary"):
        selector = f.kube.obj(SERVICES, service)["spec"]["selector"]
        assert selector == {"app": NAME}, f"{service} is kept, unpinned: it selects the app"
        assert selected_images(f, service), f"{service} still reaches pods"
    assert weights(f) == {f"{NAME}-stable": 100, f"{NAME}-canary": 0}, "the route is back at 100/0"
    [released] = f.events("Released", "Normal")
    assert f"{NAME}-stable" in released["message"] and f"{NAME}-canary" in released["message"]
    assert "HTTPRoute" in released["message"] or "route" in released["message"]

    f.when_settled()
    assert selected_images(f, f"{NAME}-stable") == {V2}, "the native rollout is served through the route"
    n = len(f.kube.writes)
    f.when_reconciled()
    assert len(f.kube.writes) == n, "a plain Deployment: deliver does nothing more"


# ------------------------------------------------------------------ defect 2: a blue-green pin outlives blue-green


def promoted_blue_green() -> Fixture:
    """Blue-green, v2 promoted: the user's Service ``web`` was switched to v2's pods (pinned)."""
    f = Fixture()
    f.given_service(NAME)
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", keep_warm="30s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled()
    assert f.record()["phase"] == "Succeeded"
    assert templates.HASH_LABEL in f.kube.obj(SERVICES, NAME)["spec"]["selector"]
    return f


def test_changing_blue_green_to_rolling_at_rest_unpins_the_active_service() -> None:
    f = promoted_blue_green()

    f.when_annotated(strategy="rolling", keep_warm=None, pause_at="50")
    f.when_reconciled()
    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"] == {"app": NAME}, "unpinned at once, at rest"

    f.when_template_changes(V3)
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.serving() == {V3: 2}
    assert selected_images(f, NAME) == {V3}, "the user's Service follows the rolling delivery"


def test_a_pin_left_from_before_is_removed_before_a_rolling_delivery_starts() -> None:
    f = promoted_blue_green()
    f.when_annotated(strategy="rolling", keep_warm=None)
    f.when_template_changes(V3)  # both in one apply

    f.when_reconciled()

    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"] == {"app": NAME}
    service_writes = [i for i, w in enumerate(f.kube.writes) if w.plural == "services"]
    template_moves = [i for i, w in enumerate(f.kube.writes) if w.plural == "deployments" and w.verb != "get"]
    assert service_writes and service_writes[0] < max(template_moves), "unpinned in the pass that starts"
    f.when_settled()
    assert selected_images(f, NAME) == {V3}


def test_a_recreated_deployment_does_not_inherit_a_stale_pin() -> None:
    f = promoted_blue_green()
    f.kube.delete(DEPLOYMENTS, NS, NAME)
    f.cluster()
    assert selected_images(f, NAME) == set(), "the old pods are gone with their Deployment"

    f.given_deployment("blue-green", V2, replicas=2, interval="30s")  # applied again: a new object, no record
    f.when_settled()

    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"] == {"app": NAME}
    assert selected_images(f, NAME) == {V2}, "the user's Service serves the new Deployment's pods"


# ------------------------------------------------------------------ defect 18: no Service takeover


def test_an_annotation_naming_someone_elses_service_is_refused_without_a_write() -> None:
    f = Fixture()
    f.given_service("payments", {"app": "payments"})  # another team's Service in the namespace
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", active_service="payments")
    f.when_settled()
    f.when_template_changes(V2)
    before = f.deployment()
    f.kube.writes.clear()

    f.when_reconciled()
    f.when_reconciled()

    assert f.kube.obj(SERVICES, "payments")["spec"]["selector"] == {"app": "payments"}, "never rewritten"
    assert f.writes_to("services") == [] and f.writes_to("replicasets") == []
    assert f.writes_to("deployments") == [] and f.deployment() == before, "no action on the Deployment"
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/active-service" in warning["message"] and "payments" in warning["message"]


def test_a_router_annotation_naming_someone_elses_service_is_refused() -> None:
    f = Fixture()
    f.kube.put(HTTPROUTES, httproute(canary="payments"))
    f.given_service("payments", {"app": "payments"})
    f.given_deployment(
        "canary",
        V1,
        replicas=3,
        steps="20,100",
        interval="30s",
        router=f"gateway-api/{NAME}",
        canary_service="payments",
    )
    f.when_settled()
    f.when_template_changes(V2)

    f.when_reconciled()

    assert f.kube.obj(SERVICES, "payments")["spec"]["selector"] == {"app": "payments"}
    assert f.writes_to("services") == [] and f.delivers_replicasets() == []
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/canary-service" in warning["message"]


def test_services_deliver_may_touch_are_its_own_and_those_in_front_of_the_pods() -> None:
    f = Fixture()
    f.given_service("web-public", {"app": NAME})  # the user's, in front of this Deployment's pods: allowed
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", keep_warm="30s", active_service="web-public")
    f.given_delivered()
    f.when_template_changes(V2)

    f.when_settled()

    assert f.record()["phase"] == "Succeeded"
    assert f.events("InvalidAnnotation") == []
    assert selected_images(f, "web-public") == {V2}
    assert f.kube.obj(SERVICES, f"{NAME}-preview")["metadata"]["labels"][templates.OWNER_LABEL] == NAME


def given_victim(f: Fixture, replicas: int) -> None:
    """Another team's Deployment ``shop`` in the namespace whose pods carry ``app: web`` too (labels
    the hostile user can copy into their own template), and its Service ``shop`` selecting ``app: web``."""
    tpl = {"metadata": {"labels": {"app": NAME, "team": "shop"}}, "spec": {"containers": [{"name": "a", "image": "s"}]}}
    shop = f.kube.put(
        DEPLOYMENTS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "shop", "namespace": NS, "uid": "uid-deployment-shop"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"team": "shop"}}, "template": tpl},
        },
    )
    f.kube.put(
        REPLICASETS,
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "shop-1",
                "namespace": NS,
                "labels": {"team": "shop"},
                "ownerReferences": [owner_ref(shop, "Deployment")],
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"team": "shop"}}, "template": tpl},
        },
    )
    f.given_service("shop", {"app": NAME})


@pytest.mark.parametrize("victim_pods", [2, 0], ids=["serving", "scaled-to-zero"])
def test_a_service_in_front_of_another_deployments_pods_is_not_taken_over(victim_pods: int) -> None:
    # The selector {app: web} is a subset of this Deployment's pod labels, which the annotating user
    # controls: that alone does not make the Service this Deployment's. It selects (or, scaled to
    # zero, would select) the pods of the Deployment `shop`, so deliver refuses to pin it.
    f = Fixture()
    given_victim(f, victim_pods)
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", active_service="shop")
    f.when_settled()
    f.when_template_changes(V2)
    f.kube.writes.clear()

    f.when_reconciled()
    f.when_reconciled()

    assert f.kube.obj(SERVICES, "shop")["spec"]["selector"] == {"app": NAME}, "never rewritten"
    assert f.writes_to("services") == [] and f.writes_to("replicasets") == []
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/active-service" in warning["message"] and "shop" in warning["message"]


def test_a_service_selecting_pods_no_deployment_owns_is_not_taken_over() -> None:
    f = Fixture()
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", active_service="public")
    f.given_service("public", {"app": NAME})
    f.kube.put(PODS, {"metadata": {"name": "bare", "namespace": NS, "labels": {"app": NAME}}, "spec": {}})
    f.when_settled()
    f.when_template_changes(V2)
    f.kube.writes.clear()

    f.when_reconciled()

    assert f.writes_to("services") == [] and f.events("InvalidAnnotation", "Warning")


def test_pods_on_their_way_out_do_not_refuse_the_deployments_own_service() -> None:
    # A superseded ReplicaSet of deliver's was just deleted: its pods linger (terminating, or not yet
    # collected). They are this Deployment's past, not another owner's: the Service stays usable.
    f = Fixture()
    f.given_service("public", {"app": NAME})
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", active_service="public")
    gone = {"controller": True, "kind": "ReplicaSet", "name": f"{NAME}-superseded", "uid": "uid-gone"}
    f.kube.put(
        PODS, {"metadata": {"name": "old-1", "namespace": NS, "labels": {"app": NAME}, "ownerReferences": [gone]}}
    )
    terminating = {
        "name": "old-2",
        "namespace": NS,
        "labels": {"app": NAME},
        "deletionTimestamp": "2026-01-01T00:00:00Z",
    }
    f.kube.put(PODS, {"metadata": terminating})
    f.when_settled()
    f.when_template_changes(V2)

    f.when_reconciled()

    assert f.events("InvalidAnnotation") == [] and f.record()["phase"] == "Progressing"


def test_a_service_labelled_as_delivers_but_not_owned_by_this_deployment_is_not_taken_over() -> None:
    # deliver's owner label alone is a label anyone who made the Service could set; deliver's own
    # Services also carry this Deployment's ownerReference.
    f = Fixture()
    given_victim(f, 2)
    f.kube.patch(SERVICES, NS, "shop", {"metadata": {"labels": {templates.OWNER_LABEL: NAME}}})
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", active_service="shop")
    f.when_settled()
    f.when_template_changes(V2)
    f.kube.writes.clear()

    f.when_reconciled()

    assert f.writes_to("services") == [] and f.events("InvalidAnnotation", "Warning")


def test_a_crash_at_any_write_of_a_release_behind_a_router_still_leaves_the_app_served() -> None:
    clean = routed_canary()
    clean.when_annotated(strategy=None)
    start = len(clean.kube.writes)
    clean.when_reconciled()
    writes = len(clean.kube.writes) - start
    assert writes >= 5
    for k in range(1, writes + 1):
        f = routed_canary()
        f.when_annotated(strategy=None)
        f.kube.crash_at_write(k)
        with pytest.raises(Crash):
            f.when_reconciled()
        for service in (f"{NAME}-stable", f"{NAME}-canary"):
            assert selected_images(f, service), f"crash at write {k}: {service} reaches no pod"
        f.when_restarted()
        f.when_settled()
        assert STATE not in f.deployment()["metadata"]["annotations"], f"crash at write {k}"
        assert weights(f) == {f"{NAME}-stable": 100, f"{NAME}-canary": 0}, f"crash at write {k}"
        assert selected_images(f, f"{NAME}-stable") == {V2} and f.delivers_replicasets() == []
