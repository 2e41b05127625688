"""Weighted routers: patch bodies, weight math, error cases, against the one fake API (tests/fakekube.py).

Every write is recorded in ``kube.writes`` so a test can assert it was exactly one request touching
only the intended fields.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from delivery.errors import RoutingError
from delivery.kube.client import DEPLOYMENTS, JSON_PATCH, MERGE, Resource
from delivery.routing.base import RouterContext, router_for
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from delivery.routing.nginx import CANARY, CANARY_WEIGHT, INGRESSES
from delivery.routing.patches import pair, share
from delivery.routing.smi import TRAFFICSPLITS
from tests.fakekube import FakeKube

NS = "shop"


def fake_kube(installed: tuple[Resource, ...] = (HTTPROUTES, VIRTUALSERVICES, TRAFFICSPLITS)) -> FakeKube:
    """The one fake API, its objects in namespace NS; CRDs are 'installed' by Resource."""
    return FakeKube(namespace=NS, installed=installed)


def ctx(kube: FakeKube, route: str = "web") -> RouterContext:
    return RouterContext(kube, NS, "web", route, "web-stable", "web-canary")


# ------------------------------------------------------------------ weight math


@pytest.mark.parametrize(
    "w,expected", [(0, (100, 0)), (20, (80, 20)), (50, (50, 50)), (100, (0, 100)), (-5, (100, 0)), (130, (0, 100))]
)
def test_pair_always_sums_to_100(w, expected):
    assert pair(w) == expected


@pytest.mark.parametrize("s,c,expected", [(80, 20, 20), (1, 1, 50), (0, 0, 0), (0, 7, 100), (3, 1, 25), (2, 1, 33)])
def test_share_is_the_canary_percentage(s, c, expected):
    assert share(s, c) == expected


# ------------------------------------------------------------------ Gateway API


def httproute(extra_rules: list[dict[str, Any]] | None = None, weights: tuple[int | None, int | None] = (None, None)):
    stable: dict[str, Any] = {"name": "web-stable", "port": 80}
    canary: dict[str, Any] = {"name": "web-canary", "port": 80}
    if weights[0] is not None:
        stable["weight"] = weights[0]
    if weights[1] is not None:
        canary["weight"] = weights[1]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "labels": {"team": "shop"}},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "hostnames": ["shop.example.com"],
            "rules": (extra_rules or [])
            + [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-env", "value": "prod"}]},
                        }
                    ],
                    "backendRefs": [stable, canary],
                }
            ],
        },
    }


ADMIN_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
    "backendRefs": [{"name": "admin", "port": 8080, "weight": 1}],
}


def test_gateway_patch_touches_only_the_two_weights():
    kube = fake_kube()
    before = kube.put(HTTPROUTES, httproute([ADMIN_RULE], weights=(100, 0)))
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(20)
    assert len(kube.writes) == 1
    _, plural, name, ops, ctype = kube.writes[0]
    assert (plural, name, ctype) == ("httproutes", "web", JSON_PATCH)
    assert ops == [
        {"op": "test", "path": "/spec/rules/1/backendRefs/0/name", "value": "web-stable"},
        {"op": "add", "path": "/spec/rules/1/backendRefs/0/weight", "value": 80},
        {"op": "test", "path": "/spec/rules/1/backendRefs/1/name", "value": "web-canary"},
        {"op": "add", "path": "/spec/rules/1/backendRefs/1/weight", "value": 20},
    ]
    after = kube.obj(HTTPROUTES, "web")
    assert after["spec"]["rules"][0] == ADMIN_RULE
    expected = copy.deepcopy(before)
    expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = 80
    expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = 20
    expected["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"]
    expected["metadata"]["generation"] = before["metadata"]["generation"] + 1  # a spec change
    assert after == expected
    assert router.verify_weight() == 20


def test_gateway_default_weights_read_as_half_and_reset_is_one_patch():
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute())  # no weights: 1 and 1
    router = router_for("gateway-api", ctx(kube))
    assert router.verify_weight() == 50
    router.reset()
    assert len(kube.writes) == 1
    refs = kube.obj(HTTPROUTES, "web")["spec"]["rules"][0]["backendRefs"]
    assert [r["weight"] for r in refs] == [100, 0]
    assert router.verify_weight() == 0
    router.reset()
    assert len(kube.writes) == 1, "already at 0: no second write"


def test_gateway_every_rule_with_the_pair_is_managed_and_disagreement_reports_the_lowest():
    kube = fake_kube()
    second = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
        "backendRefs": [
            {"name": "web-canary", "port": 80, "weight": 50},
            {"name": "web-stable", "port": 80, "weight": 50},
        ],
    }
    kube.put(HTTPROUTES, httproute([second], weights=(90, 10)))
    router = router_for("gateway-api", ctx(kube))
    assert router.verify_weight() == 10
    router.set_weight(50)
    assert len(kube.writes[0][3]) == 4, "the /api rule already has 50/50: only the other rule is patched"
    router.set_weight(100)
    rules = kube.obj(HTTPROUTES, "web")["spec"]["rules"]
    assert [r["weight"] for r in rules[0]["backendRefs"]] == [100, 0]  # canary first in this rule
    assert [r["weight"] for r in rules[1]["backendRefs"]] == [0, 100]
    assert router.verify_weight() == 100


def test_gateway_ignores_backendrefs_of_other_kinds_or_namespaces():
    kube = fake_kube()
    route = httproute()
    route["spec"]["rules"][0]["backendRefs"].append({"name": "web-canary", "namespace": "other", "port": 80})
    route["spec"]["rules"][0]["backendRefs"].append(
        {"name": "web-stable", "kind": "ServiceImport", "group": "multicluster.x-k8s.io", "port": 80}
    )
    kube.put(HTTPROUTES, route)
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(30)
    refs = kube.obj(HTTPROUTES, "web")["spec"]["rules"][0]["backendRefs"]
    assert [r.get("weight") for r in refs] == [70, 30, None, None]


def test_gateway_retries_when_the_route_changes_between_read_and_patch():
    kube = fake_kube()
    kube.put(HTTPROUTES, httproute(weights=(100, 0)))

    def reorder(_: FakeKube) -> None:  # someone inserts a backend before ours, shifting the indexes
        obj = kube.obj(HTTPROUTES, "web")
        obj["spec"]["rules"][0]["backendRefs"].insert(0, {"name": "mirror", "port": 80, "weight": 0})

    kube.before_write(reorder)
    router = router_for("gateway-api", ctx(kube))
    router.set_weight(20)
    refs = kube.obj(HTTPROUTES, "web")["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("mirror", 0), ("web-stable", 80), ("web-canary", 20)]
    assert len(kube.writes) == 2  # the first (stale) patch failed its test op, the second applied


@pytest.mark.parametrize(
    "setup,needle",
    [
        (lambda k: None, "HTTPRoute shop/web not found"),
        (lambda k: k.installed.discard(HTTPROUTES), "not installed"),
        (
            lambda k: k.put(
                HTTPROUTES,
                {"metadata": {"name": "web"}, "spec": {"rules": [{"backendRefs": [{"name": "other", "port": 80}]}]}},
            ),
            "no rule with backendRefs",
        ),
        (
            lambda k: k.put(
                HTTPROUTES,
                {
                    "metadata": {"name": "web"},
                    "spec": {"rules": [{"backendRefs": [{"name": "web-stable", "port": 80}]}]},
                },
            ),
            "exactly one backendRef",
        ),
    ],
)
def test_gateway_errors_are_routing_errors(setup, needle):
    kube = fake_kube()
    setup(kube)
    router = router_for("gateway-api", ctx(kube))
    for call in (router.validate, router.verify_weight, lambda: router.set_weight(20)):
        with pytest.raises(RoutingError, match=needle):
            call()
    assert kube.writes == []


# ------------------------------------------------------------------ Istio


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
                    "retries": {"attempts": 3},
                    "route": [
                        {
                            "destination": {"host": f"web-stable.{NS}.svc.cluster.local", "port": {"number": 80}},
                            "weight": 100,
                        },
                        {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 0},
                    ],
                },
            ],
        },
    }


def test_istio_patch_sets_the_two_destination_weights_only():
    kube = fake_kube()
    before = kube.put(VIRTUALSERVICES, virtualservice())
    router = router_for("istio", ctx(kube))
    assert router.verify_weight() == 0
    router.set_weight(50)
    assert len(kube.writes) == 1
    ops = kube.writes[0][3]
    assert ops == [
        {"op": "test", "path": "/spec/http/1/route/0/destination/host", "value": f"web-stable.{NS}.svc.cluster.local"},
        {"op": "add", "path": "/spec/http/1/route/0/weight", "value": 50},
        {"op": "test", "path": "/spec/http/1/route/1/destination/host", "value": "web-canary"},
        {"op": "add", "path": "/spec/http/1/route/1/weight", "value": 50},
    ]
    after = kube.obj(VIRTUALSERVICES, "web")
    assert after["spec"]["http"][0] == before["spec"]["http"][0]
    assert after["spec"]["http"][1]["retries"] == {"attempts": 3}
    assert router.verify_weight() == 50
    router.reset()
    assert [d["weight"] for d in kube.obj(VIRTUALSERVICES, "web")["spec"]["http"][1]["route"]] == [100, 0]


def test_istio_refuses_a_route_shared_with_a_third_destination():
    kube = fake_kube()
    vs = virtualservice()
    vs["spec"]["http"][1]["route"].append({"destination": {"host": "legacy"}, "weight": 0})
    kube.put(VIRTUALSERVICES, vs)
    with pytest.raises(RoutingError, match="exactly two destinations"):
        router_for("istio", ctx(kube)).set_weight(20)


def test_istio_host_of_another_namespace_is_not_ours():
    kube = fake_kube()
    vs = virtualservice()
    vs["spec"]["http"][1]["route"][1]["destination"]["host"] = "web-canary.elsewhere.svc.cluster.local"
    kube.put(VIRTUALSERVICES, vs)
    with pytest.raises(RoutingError, match="exactly two destinations"):
        router_for("istio", ctx(kube)).validate()


def test_istio_missing_crd():
    kube = fake_kube(installed=(HTTPROUTES,))
    with pytest.raises(RoutingError, match="networking.istio.io/v1 is not installed"):
        router_for("istio", ctx(kube)).verify_weight()


# ------------------------------------------------------------------ SMI


def trafficsplit() -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": "web"},
        "spec": {
            "service": "web",
            "backends": [
                {"service": "web-stable", "weight": 100},
                {"service": "web-canary", "weight": 0},
                {"service": "web-legacy", "weight": 10},
            ],
        },
    }


def test_smi_sets_two_backend_weights_and_leaves_the_third():
    kube = fake_kube()
    kube.put(TRAFFICSPLITS, trafficsplit())
    router = router_for("smi", ctx(kube))
    router.set_weight(20)
    spec = kube.obj(TRAFFICSPLITS, "web")["spec"]
    assert spec == {
        "service": "web",
        "backends": [
            {"service": "web-stable", "weight": 80},
            {"service": "web-canary", "weight": 20},
            {"service": "web-legacy", "weight": 10},
        ],
    }
    assert router.verify_weight() == 20
    assert kube.writes[0][4] == JSON_PATCH and len(kube.writes[0][3]) == 4


def test_smi_missing_backend():
    kube = fake_kube()
    ts = trafficsplit()
    ts["spec"]["backends"] = ts["spec"]["backends"][:1]
    kube.put(TRAFFICSPLITS, ts)
    with pytest.raises(RoutingError, match="needs exactly one backend"):
        router_for("smi", ctx(kube)).verify_weight()


def test_smi_missing_crd_and_missing_route():
    with pytest.raises(RoutingError, match="split.smi-spec.io/v1alpha2 is not installed"):
        router_for("smi", ctx(fake_kube(installed=()))).validate()
    with pytest.raises(RoutingError, match="TrafficSplit shop/web not found"):
        router_for("smi", ctx(fake_kube())).validate()


# ------------------------------------------------------------------ NGINX


def ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "web",
            "labels": {"team": "shop"},
            "annotations": {
                "nginx.ingress.kubernetes.io/rewrite-target": "/",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [
                {
                    "host": "shop.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web-stable", "port": {"number": 80}}},
                            },
                            {
                                "path": "/admin",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "admin", "port": {"number": 8080}}},
                            },
                        ]
                    },
                },
                {
                    "host": "static.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "cdn", "port": {"name": "http"}}},
                            }
                        ]
                    },
                },
            ],
        },
    }


def nginx_kube() -> FakeKube:
    kube = fake_kube()
    kube.put(INGRESSES, ingress())
    kube.put(DEPLOYMENTS, {"metadata": {"name": "web", "uid": "dep-uid"}})
    return kube


def test_nginx_generates_an_owned_canary_ingress():
    kube = nginx_kube()
    user_before = kube.obj(INGRESSES, "web")
    router = router_for("nginx", ctx(kube))
    assert router.verify_weight() == 0
    router.set_weight(20)
    assert [w[0] for w in kube.writes] == ["create"]
    canary = kube.obj(INGRESSES, "web-canary")
    meta = canary["metadata"]
    assert meta["annotations"] == {
        "nginx.ingress.kubernetes.io/rewrite-target": "/",
        CANARY: "true",
        CANARY_WEIGHT: "20",
    }
    assert meta["labels"] == {"team": "shop", "deliver.dev/owner": "web"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "dep-uid",
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    assert canary["spec"] == {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
        "rules": [
            {
                "host": "shop.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web-canary", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    }
    assert kube.obj(INGRESSES, "web") == user_before, "the user's Ingress is never written"
    assert router.verify_weight() == 20


def test_nginx_weight_change_is_one_merge_patch_of_the_annotation():
    kube = nginx_kube()
    router = router_for("nginx", ctx(kube))
    router.set_weight(20)
    router.set_weight(50)
    kind, plural, name, patch, ctype = kube.writes[1]
    assert (kind, plural, name, ctype) == ("patch", "ingresses", "web-canary", MERGE)
    assert patch["metadata"]["annotations"] == {CANARY: "true", CANARY_WEIGHT: "50"}
    assert "spec" not in patch
    assert router.verify_weight() == 50
    router.reset()
    assert kube.writes[2][3] == {"metadata": {"annotations": {CANARY_WEIGHT: "0"}}}
    assert router.verify_weight() == 0
    router.reset()
    assert len(kube.writes) == 3


def test_nginx_resyncs_the_canary_spec_when_the_user_ingress_changes():
    kube = nginx_kube()
    router = router_for("nginx", ctx(kube))
    router.set_weight(20)
    user = kube.obj(INGRESSES, "web")
    del user["spec"]["tls"]
    user["spec"]["rules"][0]["http"]["paths"][0]["path"] = "/shop"
    router.set_weight(20)
    patch = kube.writes[-1][3]
    assert "annotations" not in patch["metadata"] and patch["spec"]["tls"] is None
    canary = kube.obj(INGRESSES, "web-canary")
    assert "tls" not in canary["spec"]
    assert canary["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/shop"


def test_nginx_never_touches_a_foreign_canary_ingress():
    kube = nginx_kube()
    kube.put(
        INGRESSES, {"metadata": {"name": "web-canary", "annotations": {CANARY: "true", CANARY_WEIGHT: "5"}}, "spec": {}}
    )
    router = router_for("nginx", ctx(kube))
    for call in (router.validate, router.verify_weight, lambda: router.set_weight(20), router.reset):
        with pytest.raises(RoutingError, match="not generated by deliver"):
            call()
    assert kube.writes == []


def test_nginx_errors():
    kube = fake_kube()
    with pytest.raises(RoutingError, match="Ingress shop/web not found"):
        router_for("nginx", ctx(kube)).verify_weight()
    ing = ingress()
    ing["spec"]["rules"] = ing["spec"]["rules"][1:]
    kube.put(INGRESSES, ing)
    with pytest.raises(RoutingError, match="no path .* for Service web-stable"):
        router_for("nginx", ctx(kube)).set_weight(20)
    canary_itself = ingress()
    canary_itself["metadata"]["annotations"][CANARY] = "true"
    kube.put(INGRESSES, canary_itself)
    with pytest.raises(RoutingError, match="itself a canary"):
        router_for("nginx", ctx(kube)).validate()


def test_nginx_reset_works_without_the_user_ingress():
    kube = nginx_kube()
    router = router_for("nginx", ctx(kube))
    router.set_weight(50)
    kube.remove(INGRESSES, "web")
    router.reset()
    assert kube.obj(INGRESSES, "web-canary")["metadata"]["annotations"][CANARY_WEIGHT] == "0"


def test_nginx_default_backend_is_copied_when_it_is_the_stable_service():
    kube = fake_kube()
    kube.put(DEPLOYMENTS, {"metadata": {"name": "web", "uid": "u"}})
    kube.put(
        INGRESSES,
        {
            "metadata": {"name": "web"},
            "spec": {"defaultBackend": {"service": {"name": "web-stable", "port": {"number": 80}}}},
        },
    )
    router_for("nginx", ctx(kube)).set_weight(10)
    assert kube.obj(INGRESSES, "web-canary")["spec"] == {
        "defaultBackend": {"service": {"name": "web-canary", "port": {"number": 80}}}
    }


def test_every_router_kind_resolves():
    kube = fake_kube()
    kinds = {k: type(router_for(k, ctx(kube))).__name__ for k in ("gateway-api", "nginx", "istio", "smi")}
    assert kinds == {"gateway-api": "GatewayRouter", "nginx": "NginxRouter", "istio": "IstioRouter", "smi": "SmiRouter"}


# ------------------------------------------------------------------ e2e helpers that must hold without a cluster


def test_dataplane_reads_the_rule_with_the_mapped_backends():
    from e2e.dataplane import weights_of

    route = httproute([ADMIN_RULE], weights=(80, 20))
    assert weights_of(route, ["web-stable", "web-canary"], NS) == {"web-stable": 80, "web-canary": 20}
    assert weights_of(httproute(), ["web-stable", "web-canary"], NS) == {"web-stable": 1, "web-canary": 1}
    only_stable = httproute()
    only_stable["spec"]["rules"][0]["backendRefs"].pop()
    assert weights_of(only_stable, ["web-stable", "web-canary"], NS) == {"web-stable": 1, "web-canary": 0}
    assert weights_of(route, ["other"], NS) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:80/",
        "http://192.168.1.5:8080/",
        "http://example.com:80/",
        "https://127.0.0.1:443/",
        "http://127.0.0.1/",
    ],
)
def test_loadgen_refuses_anything_but_loopback(url):
    from e2e.loadgen import LoadGen

    with pytest.raises(ValueError):
        LoadGen(url)
    LoadGen("http://127.0.0.1:9/")  # loopback with a port is accepted (nothing is sent yet)
