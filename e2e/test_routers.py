"""Every weighted router end to end: the real controller, the real API server, the real CRDs.

For each router kind a canary Deployment declares ``deliver.dev/router: KIND/web`` and steps
``20,pause,50,pause,100`` (the pause gates hold each weight still so the route can be checked).
The user's route object carries deliver's two backends plus rules/fields of its own. Checked:

* the route's weights after each step: 80/20, 50/50, then 100/0 after promotion, with the stable
  Service now selecting the promoted pods;
* after a second delivery is aborted at 20 %, the canary weight is 0 again;
* every other rule and field of the user's object is exactly as the user wrote it (for NGINX the
  user's Ingress is never written at all: its resourceVersion does not change);
* a Deployment naming a route that does not exist gets a Warning Event and nothing is done.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from delivery.errors import NotFound
from delivery.kube.client import KubeClient as JsonKube
from delivery.kube.client import Resource
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from delivery.routing.smi import TRAFFICSPLITS
from e2e import crds
from e2e.controller import ControllerProcess
from e2e.helpers import (
    Kube,
    deliver,
    deployment_available,
    event_messages,
    make_deployment,
    phase,
    set_image,
    state,
    wait_for,
)

pytestmark = pytest.mark.e2e

ANNOTATIONS = {
    "deliver.dev/strategy": "canary",
    "deliver.dev/steps": "20,pause,50,pause,100",
    "deliver.dev/interval": "1s",
}
STABLE, CANARY = "web-stable", "web-canary"


@pytest.fixture(scope="module")
def route_crds(kube: Kube) -> list[str]:
    return crds.install(kube.api_client)


# ------------------------------------------------------------------ the user's route objects


def httproute() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "labels": {"team": "shop"}},
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 8080}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-env", "value": "prod"}]},
                        }
                    ],
                    "backendRefs": [
                        {"name": STABLE, "port": 80, "weight": 100},
                        {"name": CANARY, "port": 80, "weight": 0},
                    ],
                },
            ],
        },
    }


def virtualservice() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": ["web"],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "admin"}}],
                },
                {
                    "name": "main",
                    "retries": {"attempts": 3, "perTryTimeout": "2s"},
                    "route": [
                        {"destination": {"host": STABLE, "port": {"number": 80}}, "weight": 100},
                        {"destination": {"host": CANARY, "port": {"number": 80}}, "weight": 0},
                    ],
                },
            ],
        },
    }


def trafficsplit() -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": "web"},
        "spec": {"service": "web", "backends": [{"service": STABLE, "weight": 100}, {"service": CANARY, "weight": 0}]},
    }


def ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "shop.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": STABLE, "port": {"number": 80}}},
                            },
                            {
                                "path": "/admin",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "admin", "port": {"number": 8080}}},
                            },
                        ]
                    },
                }
            ],
        },
    }


# ------------------------------------------------------------------ per-kind access


@dataclass
class Case:
    kind: str
    body: Callable[[], dict[str, Any]]
    resource: Resource | None  # None: a built-in Ingress
    weights: Callable[[dict[str, Any]], list[tuple[int, int]]]  # (stable, canary) per managed rule
    strip: Callable[[dict[str, Any]], dict[str, Any]]  # the object without deliver's weights


def _gw_weights(obj: dict[str, Any]) -> list[tuple[int, int]]:
    out = []
    for rule in obj["spec"]["rules"]:
        w = {r["name"]: r.get("weight", 1) for r in rule.get("backendRefs") or []}
        if STABLE in w:
            out.append((w[STABLE], w[CANARY]))
    return out


def _gw_strip(obj: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(obj["spec"])
    for rule in spec["rules"]:
        for ref in rule.get("backendRefs") or []:
            if ref["name"] in (STABLE, CANARY):
                ref.pop("weight", None)
    return spec


def _vs_weights(obj: dict[str, Any]) -> list[tuple[int, int]]:
    out = []
    for route in obj["spec"]["http"]:
        w = {d["destination"]["host"]: d.get("weight", 0) for d in route["route"]}
        if STABLE in w:
            out.append((w[STABLE], w[CANARY]))
    return out


def _vs_strip(obj: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(obj["spec"])
    for route in spec["http"]:
        for d in route["route"]:
            if d["destination"]["host"] in (STABLE, CANARY):
                d.pop("weight", None)
    return spec


def _ts_weights(obj: dict[str, Any]) -> list[tuple[int, int]]:
    w = {b["service"]: b["weight"] for b in obj["spec"]["backends"]}
    return [(w[STABLE], w[CANARY])]


def _ts_strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {"service": obj["spec"]["service"], "backends": [b["service"] for b in obj["spec"]["backends"]]}


CASES = {
    "gateway-api": Case("gateway-api", httproute, HTTPROUTES, _gw_weights, _gw_strip),
    "istio": Case("istio", virtualservice, VIRTUALSERVICES, _vs_weights, _vs_strip),
    "smi": Case("smi", trafficsplit, TRAFFICSPLITS, _ts_weights, _ts_strip),
    "nginx": Case("nginx", ingress, None, lambda o: [], lambda o: o["spec"]),
}


class Routes:
    """Create/read the user's route object of one case in one namespace."""

    def __init__(self, kube: Kube, namespace: str, case: Case) -> None:
        self.kube, self.ns, self.case = kube, namespace, case

    def create(self) -> dict[str, Any]:
        body = self.case.body()
        if self.case.resource is None:
            return self.kube.networking.create_namespaced_ingress(self.ns, body).to_dict()
        r = self.case.resource
        return self.kube.custom.create_namespaced_custom_object(r.group, r.version, self.ns, r.plural, body)

    def read(self, name: str = "web") -> dict[str, Any]:
        if self.case.resource is None:
            return self.kube.api_client.sanitize_for_serialization(
                self.kube.networking.read_namespaced_ingress(name, self.ns)
            )
        r = self.case.resource
        return self.kube.custom.get_namespaced_custom_object(r.group, r.version, self.ns, r.plural, name)

    def weights(self) -> list[tuple[int, int]]:
        if self.case.resource is None:
            try:
                canary = self.read("web-canary")
            except client.ApiException as exc:
                if exc.status == 404:
                    return [(100, 0)]
                raise
            w = int(canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"])
            return [(100 - w, w)]
        return self.case.weights(self.read())


# ------------------------------------------------------------------ helpers


def service_hash(kube: Kube, ns: str, name: str) -> str:
    return kube.core.read_namespaced_service(name, ns).spec.selector.get("pod-template-hash", "")


def pod_hash_of(kube: Kube, ns: str, revision_image: str) -> str:
    """pod-template-hash of the ReplicaSet running ``revision_image``."""
    for rs in kube.apps.list_namespaced_replica_set(ns).items:
        if rs.spec.template.spec.containers[0].image == revision_image and rs.spec.replicas:
            return rs.spec.template.metadata.labels["pod-template-hash"]
    return ""


def given_web_v1(kube: Kube, ns: str, annotations: dict[str, str]) -> None:
    """Given the annotated Deployment ``web`` at v1 (2 replicas), rolled out and recorded by deliver."""
    kube.apps.create_namespaced_deployment(
        ns, make_deployment("web", replicas=2, image="example.com/web:v1", annotations=annotations)
    )
    wait_for(lambda: deployment_available(kube.apps, ns, "web"), 60, "web v1 Available")
    wait_for(lambda: state(kube, ns).get("stableHash"), 30, "deliver to record the stable version")


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", list(CASES))
def test_router_moves_weights_step_by_step_and_back_to_zero(
    kind: str, kube: Kube, namespace: str, cluster: Any, route_crds: list[str], controller: ControllerProcess
) -> None:
    ns = namespace
    routes = Routes(kube, ns, CASES[kind])
    # Given the user's route object with deliver's two backends and rules of its own
    created = routes.create()
    original = routes.read()
    original_rv = original["metadata"]["resourceVersion"]
    annotations = dict(ANNOTATIONS, **{"deliver.dev/router": f"{kind}/web"})
    given_web_v1(kube, ns, annotations)
    assert created

    def record() -> dict[str, Any]:
        return state(kube, ns)

    def at_gate(step: int) -> bool:
        s = record()
        return s.get("phase") == "Paused" and s.get("step") == step

    # When a new version is delivered
    set_image(kube.apps, ns, "web", "example.com/web:v2")

    # Then the first gate holds 20 % on the canary
    wait_for(lambda: at_gate(1), 90, "the first manual promotion (after 20 %)", describe=record)
    assert routes.weights() == [(80, 20)] * len(routes.weights())
    v2_hash = pod_hash_of(kube, ns, "example.com/web:v2")
    assert v2_hash and service_hash(kube, ns, CANARY) == v2_hash
    assert service_hash(kube, ns, STABLE) != v2_hash

    promoted = deliver(cluster.kubeconfig, "-n", ns, "promote", "web")
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: at_gate(3), 90, "the second manual promotion (after 50 %)", describe=record)
    assert set(routes.weights()) == {(50, 50)}

    # And after the last promote, all traffic is on the stable Service, which now selects v2
    promoted = deliver(cluster.kubeconfig, "-n", ns, "promote", "web")
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: record().get("phase") == "Succeeded", 120, "promotion", describe=record)
    # (the record is written first; the Service re-point and weight reset follow it)
    wait_for(lambda: set(routes.weights()) == {(100, 0)}, 10, "weights reset after promotion", describe=routes.weights)
    wait_for(
        lambda: service_hash(kube, ns, STABLE) == pod_hash_of(kube, ns, "example.com/web:v2"),
        10,
        "stable Service on v2",
    )

    # When a third version is started and aborted at 20 %
    set_image(kube.apps, ns, "web", "example.com/web:v3")
    wait_for(lambda: at_gate(1), 90, "v3 at the first gate", describe=record)
    assert set(routes.weights()) == {(80, 20)}
    aborted = deliver(cluster.kubeconfig, "-n", ns, "abort", "web")
    assert aborted.returncode == 0, aborted.stderr
    wait_for(lambda: record().get("phase") == "Aborted", 60, "abort", describe=record)

    # Then the canary's weight is 0 again
    wait_for(lambda: set(routes.weights()) == {(100, 0)}, 10, "weight 0 after the abort", describe=routes.weights)

    # And nothing but deliver's two weights ever changed in the user's object
    final = routes.read()
    assert CASES[kind].strip(final) == CASES[kind].strip(original)
    assert final["metadata"].get("labels") == original["metadata"].get("labels")
    if kind == "nginx":
        assert final["metadata"]["resourceVersion"] == original_rv, "the user's Ingress was written"
        canary = routes.read("web-canary")
        assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"] == "true"
        assert [o["kind"] for o in canary["metadata"]["ownerReferences"]] == ["Deployment"]
        paths = canary["spec"]["rules"][0]["http"]["paths"]
        assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [("/", CANARY)]


@pytest.mark.parametrize("kind", ["gateway-api", "nginx"])
def test_missing_route_is_a_warning_event_and_no_action(
    kind: str, kube: Kube, namespace: str, route_crds: list[str], controller: ControllerProcess
) -> None:
    ns = namespace
    annotations = dict(ANNOTATIONS, **{"deliver.dev/router": f"{kind}/no-such-route"})
    given_web_v1(kube, ns, annotations)
    set_image(kube.apps, ns, "web", "example.com/web:v2")

    messages = wait_for(lambda: event_messages(kube, ns, "RouterUnavailable"), 60, "a RouterUnavailable event")
    assert "no-such-route not found" in messages[0] and "deliver takes no action" in messages[0]
    ev = [e for e in kube.core.list_namespaced_event(ns).items if e.reason == "RouterUnavailable"][0]
    assert ev.type == "Warning" and ev.involved_object.name == "web"
    # nothing was created for the canary: no Services, no ReplicaSet of deliver's
    names = {s.metadata.name for s in kube.core.list_namespaced_service(ns).items}
    assert not {STABLE, CANARY} & names
    assert not kube.apps.list_namespaced_replica_set(ns, label_selector="deliver.dev/owner=web").items


def test_route_without_the_canary_backend_is_a_warning_event(
    kube: Kube, namespace: str, route_crds: list[str], controller: ControllerProcess
) -> None:
    ns = namespace
    route = httproute()
    route["spec"]["rules"][1]["backendRefs"] = [{"name": STABLE, "port": 80}]  # the user forgot the canary
    kube.custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", route)
    annotations = dict(ANNOTATIONS, **{"deliver.dev/router": "gateway-api/web"})
    given_web_v1(kube, ns, annotations)
    set_image(kube.apps, ns, "web", "example.com/web:v2")

    messages = wait_for(lambda: event_messages(kube, ns, "RouterUnavailable"), 60, "a RouterUnavailable event")
    assert "rule 1 must have exactly one backendRef to Service web-stable and one to web-canary" in messages[0]
    assert not kube.apps.list_namespaced_replica_set(ns, label_selector="deliver.dev/owner=web").items
    assert phase(kube, ns) == "Idle"


def test_missing_crd_is_a_warning_event(
    kube: Kube, namespace: str, route_crds: list[str], controller: ControllerProcess
) -> None:
    """Runs last in this module: removes the SMI CRD, then puts it back."""
    ns = namespace
    crds.uninstall(kube.api_client, ["trafficsplit"])

    def gone() -> bool:
        try:
            JsonKube(kube.api_client).request("GET", "/apis/split.smi-spec.io/v1alpha2")
        except NotFound:
            return True
        return False

    try:
        wait_for(gone, 90, "the TrafficSplit API to disappear")
        annotations = dict(ANNOTATIONS, **{"deliver.dev/router": "smi/web"})
        given_web_v1(kube, ns, annotations)
        set_image(kube.apps, ns, "web", "example.com/web:v2")
        messages = wait_for(lambda: event_messages(kube, ns, "RouterUnavailable"), 60, "a RouterUnavailable event")
        assert "split.smi-spec.io/v1alpha2 is not installed" in messages[0]
        assert not kube.apps.list_namespaced_replica_set(ns, label_selector="deliver.dev/owner=web").items
    finally:
        crds.install(kube.api_client, ["trafficsplit"])


def test_route_deleted_mid_delivery_holds_then_rolls_back(
    kube: Kube, namespace: str, route_crds: list[str], controller: ControllerProcess
) -> None:
    ns = namespace
    Routes(kube, ns, CASES["gateway-api"]).create()
    annotations = {
        "deliver.dev/strategy": "canary",
        "deliver.dev/steps": "20,50,100",
        "deliver.dev/interval": "60s",
        "deliver.dev/router": "gateway-api/web",
        "deliver.dev/progress-deadline": "8s",
    }
    given_web_v1(kube, ns, annotations)
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    wait_for(lambda: state(kube, ns).get("weight") == 20, 60, "the first step at 20 %")
    # When the user's HTTPRoute disappears in the middle of a step
    kube.custom.delete_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", "web")
    # Then deliver warns and holds, and once the router has been broken for the progress deadline
    # it rolls back
    messages = wait_for(lambda: event_messages(kube, ns, "RouterUnavailable"), 30, "a RouterUnavailable event")
    assert "holding step" in messages[0]
    assert state(kube, ns).get("phase") == "Progressing"
    wait_for(
        lambda: state(kube, ns).get("phase") == "RolledBack",
        60,
        "rollback",
        describe=lambda: state(kube, ns),
    )
    assert "traffic router unavailable" in state(kube, ns)["message"]
    assert not kube.apps.list_namespaced_replica_set(ns, label_selector="deliver.dev/owner=web").items
    assert (
        kube.apps.read_namespaced_deployment("web", ns).spec.template.spec.containers[0].image == "example.com/web:v1"
    )
