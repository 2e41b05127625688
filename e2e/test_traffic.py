"""Traffic beyond weights (issue 12), end to end.

* ``test_exact_replica_shares_on_live_pods``: on the real control plane (real Deployment and
  ReplicaSet controllers, kwok pods), the real controller delivers v2 with
  ``deliver.dev/canary-scale: exact`` (the default) and steps ``20,pause,50,pause,100``; at each
  manual-promotion hold the Ready pods of each version are counted and must be the exact share of
  the Deployment's N replicas (and stay so for 2 s: the paused Deployment controller does not scale
  the held stable ReplicaSet back), for N = 1, 3, 5, 10; after promotion only v2 runs, N pods, and
  the stable ReplicaSet was handed back to the Deployment.
* ``test_header_and_cookie_requests_always_reach_the_canary_and_others_never``: deliver's Gateway
  API router writes ``deliver.dev/match`` into a real HTTPRoute, the stand-in gateway
  (``e2e.dataplane``) programs a real Envoy from it, and real requests through Envoy show every
  matched request (header ``x-canary: always``, or cookie ``canary=always``) on the canary and every
  other one (near misses included) on stable at weight 0; at weight 50 matched requests stay on
  the canary; after the reset all are on stable and the route's rules are the user's again.
* ``test_a_mirrored_canary_gets_a_copy_of_every_request_while_clients_see_only_stable``: a
  ``mirror`` step (a RequestMirror filter deliver adds) through the real Envoy: every client answer
  is stable's, the canary process answers a copy of every request (50 %: about half).
* ``test_with_affinity_each_client_cookie_sees_one_version_across_weighted_steps``: session
  affinity through the real Envoy: 50 clients with cookie jars, 1000 requests per measurement, flips
  between versions counted (0 with affinity, also across a weight change; hundreds without).
* ``test_istio_and_nginx_match_objects_as_their_controllers_would_load_them``: the VirtualService
  and the generated canary Ingress deliver writes, as the real API server stores them.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delivery import templates
from delivery.kube.client import REPLICASETS
from delivery.kube.client import KubeClient as JsonKube
from delivery.routing.base import RouterContext, router_for
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from delivery.routing.nginx import INGRESSES
from e2e import crds
from e2e.controller import ControllerProcess
from e2e.dataplane import CookieClient, LocalStack, versions
from e2e.demo import demo_route
from e2e.helpers import (
    Kube,
    canary,
    deliver,
    deliver_replicasets,
    deployment,
    describe,
    make_deployment,
    phase,
    ready_by_hash,
    set_image,
    stable_hash,
    state,
    stays,
    wait_for,
)
from strategies.spec import Affinity, RequestMatch

pytestmark = pytest.mark.e2e

# N -> (canary, stable) Ready pods at 20 %, 50 %, then 100 % (exact: the nearest share of N, a tie
# to the fewer canary pods, at least one pod of each below 100 %)
SHARES = {
    1: [(1, 1), (1, 1), (1, 0)],
    3: [(1, 2), (1, 2), (3, 0)],
    5: [(1, 4), (2, 3), (5, 0)],
    10: [(2, 8), (5, 5), (10, 0)],
}
MEASURED: dict[int, list[tuple[int, int]]] = {}


def _shares(jk: JsonKube, ns: str, v1: str) -> tuple[int, int]:
    ready = ready_by_hash(jk, ns)
    return sum(n for h, n in ready.items() if h != v1), ready.get(v1, 0)


def _held(jk: JsonKube, ns: str) -> list[dict[str, Any]]:
    return jk.items(REPLICASETS, ns, f"{templates.HELD_LABEL}=web")


@pytest.mark.parametrize("replicas", sorted(SHARES))
def test_exact_replica_shares_on_live_pods(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess, replicas: int
) -> None:
    body = canary("web", "20,pause,50,pause,100", interval="1s", replicas=replicas, progress_deadline="30s")
    kube.apps.create_namespaced_deployment(namespace, body)
    wait_for(
        lambda: (
            deployment(jk, namespace)["spec"].get("paused")
            and ready_by_hash(jk, namespace).get(stable_hash(jk, namespace)) == replicas
        ),
        60,
        "v1 rolled out and held by deliver",
        describe=describe(jk, namespace),
    )
    v1 = stable_hash(jk, namespace)
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    measured: list[tuple[int, int]] = []
    for hold, want in enumerate(SHARES[replicas][:2]):
        wait_for(
            lambda hold=hold: phase(jk, namespace) == "Paused" and state(jk, namespace).get("step") == 1 + 2 * hold,
            60,
            f"manual-promotion hold {hold + 1}",
            describe=describe(jk, namespace),
        )
        wait_for(
            lambda want=want: _shares(jk, namespace, v1) == want, 30, f"{want} Ready", describe=describe(jk, namespace)
        )
        stays(lambda want=want: _shares(jk, namespace, v1) == want, 2.0, f"{want} Ready pods (canary, stable)")
        measured.append(_shares(jk, namespace, v1))
        if want[1] < replicas:
            assert _held(jk, namespace), "the stable ReplicaSet is held while it runs below N"
        r = deliver(kube.kubeconfig, "-n", namespace, "promote", "web")
        assert r.returncode == 0, r.stderr
    wait_for(lambda: phase(jk, namespace) == "Succeeded", 60, "promotion", describe=describe(jk, namespace))
    v2 = stable_hash(jk, namespace)
    wait_for(lambda: ready_by_hash(jk, namespace) == {v2: replicas}, 30, f"{replicas} v2 pods only")
    measured.append((ready_by_hash(jk, namespace)[v2], ready_by_hash(jk, namespace).get(v1, 0)))
    MEASURED[replicas] = measured
    print(
        f"exact shares N={replicas}: "
        + ", ".join(f"{w}%: {c}/{c + s}" for w, (c, s) in zip((20, 50, 100), measured, strict=True))
    )
    assert measured == SHARES[replicas]
    assert not _held(jk, namespace) and not deliver_replicasets(jk, namespace)
    stable_sets = [
        rs
        for rs in jk.items(REPLICASETS, namespace)
        if any(r.get("controller") for r in rs["metadata"].get("ownerReferences") or [])
    ]
    assert len(stable_sets) == 2, "v1's ReplicaSet is the Deployment's again (at 0), beside v2's"


# ---------------------------------------------------------------- header / cookie routing (A/B)
APP = "shop"
STABLE, CANARY = f"{APP}-stable", f"{APP}-canary"
HEADER = RequestMatch("header", "x-canary", "always")
COOKIE = RequestMatch("cookie", "canary", "always")
REQUESTS = 400


@pytest.fixture
def json_kube(cluster: Any, kube: Kube) -> JsonKube:
    crds.install(kube.api_client, ["httproute", "virtualservice"])
    return JsonKube.connect(str(cluster.kubeconfig))


@pytest.fixture
def stack(json_kube: JsonKube, namespace: str, tmp_path: Path) -> Iterator[LocalStack]:
    json_kube.create(HTTPROUTES, namespace, demo_route(APP))
    s = LocalStack(json_kube, namespace, APP, tmp_path, STABLE, CANARY).start()
    yield s
    s.stop()


def _matching(header: str, weight: int) -> Any:
    """Envoy routes by a match on ``header`` and gives the canary ``weight`` of the rest."""

    def check(routes: list[dict[str, Any]]) -> bool:
        names = {h["name"] for r in routes for h in r["match"].get("headers", [])}
        split = [r["route"]["weighted_clusters"]["clusters"] for r in routes if "weighted_clusters" in r["route"]]
        return names == {header} and bool(split) and {c["name"]: c["weight"] for c in split[0]}[CANARY] == weight

    return check


def test_header_and_cookie_requests_always_reach_the_canary_and_others_never(
    stack: LocalStack, json_kube: JsonKube, namespace: str
) -> None:
    """deliver's Gateway API router writes the match rule into the real HTTPRoute; the stand-in
    gateway programs the real Envoy from it; real requests go through Envoy to the two app processes."""
    assert stack.plane is not None
    router = router_for("gateway-api", RouterContext(json_kube, namespace, APP, APP, STABLE, CANARY))
    original = json_kube.get(HTTPROUTES, namespace, APP)["spec"]["rules"]
    url = stack.url
    rows = []
    for match, headers in ((HEADER, {"x-canary": "always"}), (COOKIE, {"cookie": "session=42; canary=always"})):
        # a `match` step: weight 0, matched requests only
        header = "cookie" if match.kind == "cookie" else match.name
        router.set_weight(0, match)
        stack.plane.wait_routes(_matching(header, 0), timeout=15)
        written = json_kube.get(HTTPROUTES, namespace, APP)["metadata"]["resourceVersion"]
        router.set_weight(0, match)
        assert json_kube.get(HTTPROUTES, namespace, APP)["metadata"]["resourceVersion"] == written, "no-op: no write"
        matched, others = versions(url, REQUESTS, headers), versions(url, REQUESTS)
        near_miss = versions(url, REQUESTS // 4, {"x-canary": "sometimes", "cookie": "canary=never; xcanary=always"})
        rows.append((match.describe(), 0, matched, others, near_miss))
        assert matched == {"canary": REQUESTS}, matched
        assert others == {"stable": REQUESTS}, others
        assert near_miss == {"stable": REQUESTS // 4}, near_miss
        # a weighted step keeps the match: matched requests still all on the canary
        router.set_weight(50, match)
        stack.plane.wait_routes(_matching(header, 50), timeout=15)
        matched, others = versions(url, REQUESTS, headers), versions(url, REQUESTS)
        rows.append((match.describe(), 50, matched, others, {}))
        assert matched == {"canary": REQUESTS}, matched
        assert set(others) == {"stable", "canary"} and abs(others["canary"] / REQUESTS - 0.5) < 0.1, others
    # reset (rollback, promotion's end): no match left, everything on stable
    router.reset()
    stack.plane.wait_routes(lambda routes: not routes, timeout=15)
    stack.plane.wait_for(stack.weights(0), timeout=15)
    assert versions(url, REQUESTS, {"x-canary": "always"}) == {"stable": REQUESTS}
    rules = json_kube.get(HTTPROUTES, namespace, APP)["spec"]["rules"]
    assert rules == original, "the user's rules as they were"
    for row in rows:
        what, weight, matched, others, near_miss = row
        print(f"match {what:<28} weight {weight:3d}  matched {matched}  others {others}  near-miss {near_miss}")


def test_istio_and_nginx_match_objects_as_their_controllers_would_load_them(
    kube: Kube, json_kube: JsonKube, namespace: str
) -> None:
    """On the real API server (the VirtualService CRD's schema, the Ingress API's validation)."""
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": ["web"],
            "http": [
                {
                    "name": "main",
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [
                        {"destination": {"host": "web-stable"}, "weight": 100},
                        {"destination": {"host": "web-canary"}, "weight": 0},
                    ],
                }
            ],
        },
    }
    json_kube.create(VIRTUALSERVICES, namespace, vs)
    istio = router_for("istio", RouterContext(json_kube, namespace, "web", "web", "web-stable", "web-canary"))
    istio.set_weight(0, HEADER)
    http = json_kube.get(VIRTUALSERVICES, namespace, "web")["spec"]["http"]
    assert http[0] == {
        "name": "deliver-match-0",
        "match": [{"uri": {"prefix": "/"}, "headers": {"x-canary": {"exact": "always"}}}],
        "route": [{"destination": {"host": "web-canary"}, "weight": 100}],
    }
    assert http[1] == vs["spec"]["http"][0]
    istio.set_weight(20, COOKIE)
    http = json_kube.get(VIRTUALSERVICES, namespace, "web")["spec"]["http"]
    assert http[0]["match"][0]["headers"] == {"cookie": {"regex": r"^(.*;\s*)?canary=always(;.*)?$"}}
    assert [d["weight"] for d in http[1]["route"]] == [80, 20]
    istio.reset()
    assert json_kube.get(VIRTUALSERVICES, namespace, "web")["spec"]["http"] == vs["spec"]["http"]

    kube.apps.create_namespaced_deployment(namespace, make_deployment("web", replicas=1))  # the canary Ingress's owner
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "web.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web-stable", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    json_kube.create(INGRESSES, namespace, ingress)
    nginx = router_for("nginx", RouterContext(json_kube, namespace, "web", "web", "web-stable", "web-canary"))
    nginx.set_weight(0, HEADER)
    annotations = json_kube.get(INGRESSES, namespace, "web-canary")["metadata"]["annotations"]
    assert {k.rsplit("/", 1)[1]: v for k, v in annotations.items()} == {
        "canary": "true",
        "canary-weight": "0",
        "canary-by-header": "x-canary",
        "canary-by-header-value": "always",
    }
    nginx.set_weight(20, COOKIE)
    annotations = json_kube.get(INGRESSES, namespace, "web-canary")["metadata"]["annotations"]
    assert {k.rsplit("/", 1)[1]: v for k, v in annotations.items()} == {
        "canary": "true",
        "canary-weight": "20",
        "canary-by-cookie": "canary",
    }
    nginx.reset()
    annotations = json_kube.get(INGRESSES, namespace, "web-canary")["metadata"]["annotations"]
    assert {k.rsplit("/", 1)[1]: v for k, v in annotations.items()} == {"canary": "true", "canary-weight": "0"}


# ---------------------------------------------------------------- mirroring (shadow)
def _requests_served(address: str) -> int:
    """Requests an app process answered, from its own /metrics (``app_requests_total``)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith("app_requests_total{")
    )


def _mirrored(percent: int) -> Any:
    def check(routes: list[dict[str, Any]]) -> bool:
        policies = [p for r in routes for p in r["route"].get("request_mirror_policies", [])]
        return [p["runtime_fraction"]["default_value"]["numerator"] for p in policies] == [percent]

    return check


def test_a_mirrored_canary_gets_a_copy_of_every_request_while_clients_see_only_stable(
    stack: LocalStack, json_kube: JsonKube, namespace: str
) -> None:
    """A `mirror` step through the real Envoy: deliver's Gateway API router adds a RequestMirror
    filter to the canary Service; every client answer comes from stable, and the canary's own
    process counts a copy of every request (Envoy's counters for its cluster agree)."""
    assert stack.plane is not None
    router = router_for("gateway-api", RouterContext(json_kube, namespace, APP, APP, STABLE, CANARY))
    original = json_kube.get(HTTPROUTES, namespace, APP)["spec"]["rules"]
    rows = []
    for percent in (100, 50):
        router.set_weight(0, mirror=percent)
        stack.plane.wait_routes(_mirrored(percent), timeout=15)
        canary_before, envoy_before = _requests_served(stack.canary.address), stack.envoy_counts()
        seen = versions(stack.url, REQUESTS)
        assert seen == {"stable": REQUESTS}, f"clients only ever get stable's answers: {seen}"
        expected = REQUESTS * percent // 100

        def copies(before: int = canary_before) -> int:
            return _requests_served(stack.canary.address) - before

        if percent == 100:
            wait_for(lambda: copies() == REQUESTS, 15, f"{REQUESTS} mirrored requests at the canary")
            stays(lambda: copies() == REQUESTS, 1.0, "no more, no fewer copies")
        else:  # Envoy draws each copy at random: within 5 binomial standard deviations of 50 %
            time.sleep(1.0)
            assert abs(copies() - expected) <= 5 * (REQUESTS * 0.25) ** 0.5, copies()
        envoy_copies = stack.envoy_counts()[CANARY][0] - envoy_before[CANARY][0]
        assert envoy_copies == copies(), (envoy_copies, copies())
        rows.append((percent, seen, copies()))
    router.reset()
    stack.plane.wait_routes(lambda routes: not routes, timeout=15)
    before = _requests_served(stack.canary.address)
    assert versions(stack.url, REQUESTS // 4) == {"stable": REQUESTS // 4}
    time.sleep(0.5)
    assert _requests_served(stack.canary.address) == before, "no copies after the reset"
    assert json_kube.get(HTTPROUTES, namespace, APP)["spec"]["rules"] == original
    for percent, seen, copied in rows:
        print(f"mirror {percent:3d}%: clients saw {seen}; the canary answered {copied} copies of {REQUESTS} requests")


# ---------------------------------------------------------------- session affinity
CLIENTS = 50
ROUNDS = 20  # CLIENTS * ROUNDS = 1000 requests per measurement


def _flips(clients: list[CookieClient], last: dict[int, str]) -> tuple[int, dict[str, int]]:
    """ROUNDS requests from each client, interleaved: (times a client got another version than its
    previous answer, answers per version)."""
    flips, seen = 0, {}
    for _ in range(ROUNDS):
        for i, c in enumerate(clients):
            version = c.get()
            seen[version] = seen.get(version, 0) + 1
            if i in last and last[i] != version:
                flips += 1
            last[i] = version
    return flips, seen


def _pinned(weight: int) -> Any:
    def check(routes: list[dict[str, Any]]) -> bool:
        split = [r["route"]["weighted_clusters"]["clusters"] for r in routes if "weighted_clusters" in r["route"]]
        cookies = [h for r in routes for h in r["match"].get("headers", []) if h["name"] == "cookie"]
        return len(cookies) == 2 and bool(split) and {c["name"]: c["weight"] for c in split[0]}[CANARY] == weight

    return check


def test_with_affinity_each_client_cookie_sees_one_version_across_weighted_steps(
    stack: LocalStack, json_kube: JsonKube, namespace: str
) -> None:
    """Session affinity through the real Envoy: 50 clients with cookie jars, 1000 requests per
    measurement; each client's first answer sets ``deliver-shop=<revision>`` and every later request
    goes to that version (flips: 0), also when the weight moves from 50 to 80; without affinity
    the same clients flip about every other request (the measurement can fail)."""
    assert stack.plane is not None
    router = router_for("gateway-api", RouterContext(json_kube, namespace, APP, APP, STABLE, CANARY))
    original = json_kube.get(HTTPROUTES, namespace, APP)["spec"]["rules"]
    pin = Affinity(f"deliver-{APP}", "stablerev01", "canaryrev1")
    router.set_weight(50, pin=pin)
    stack.plane.wait_routes(_pinned(50), timeout=15)
    clients = [CookieClient(stack.url) for _ in range(CLIENTS)]
    last: dict[int, str] = {}
    flips50, seen50 = _flips(clients, last)
    on_canary = sum(1 for c in clients if c.cookies.get(pin.cookie) == pin.canary)
    router.set_weight(80, pin=pin)  # the next weighted step
    stack.plane.wait_routes(_pinned(80), timeout=15)
    flips80, seen80 = _flips(clients, last)
    newcomers = [CookieClient(stack.url) for _ in range(CLIENTS)]
    first = [c.get() for c in newcomers]
    router.set_weight(50)  # the control: no affinity
    stack.plane.wait_routes(lambda routes: not routes, timeout=15)
    control = [CookieClient(stack.url) for _ in range(CLIENTS)]
    flips_off, _ = _flips(control, {})
    for c in clients + newcomers + control:
        c.close()
    print(
        f"affinity at 50 %: {flips50} flips per {CLIENTS * ROUNDS} requests, answers {seen50}, "
        f"{on_canary}/{CLIENTS} clients pinned to the canary; across the move to 80 %: {flips80} flips, "
        f"answers {seen80}; new clients at 80 %: {first.count('canary')}/{CLIENTS} on the canary; "
        f"without affinity: {flips_off} flips per {CLIENTS * ROUNDS} requests"
    )
    assert flips50 == 0 and flips80 == 0
    assert seen80 == seen50, "each pinned client kept its version when the weight moved"
    assert 0 < on_canary < CLIENTS, "the weight still decides a new client's version"
    assert flips_off > 100, "without affinity clients do flip (the measurement can fail)"
    router.reset()
    assert json_kube.get(HTTPROUTES, namespace, APP)["spec"]["rules"] == original
