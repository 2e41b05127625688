"""Real traffic through a real Envoy follows the HTTPRoute's weights, and the loop closes.

* ``test_traffic_share_follows_each_weight``: deliver's Gateway API router writes each weight into
  a real HTTPRoute; the stand-in gateway (``e2e.dataplane``) programs Envoy from it; 3000 real
  requests per weight go through Envoy to two real app processes. The observed canary share must
  be within ``TOLERANCE`` (3.5 percentage points: at least 3.8 binomial standard deviations at
  n=3000 for every weight; measured spread of repeated 2000-request bursts at 20 %: sd 0.91 pp,
  binomial 0.89 pp) of the weight, and Envoy's own per-cluster counters must agree with the load
  generator request for request.
* ``test_failing_canary_is_rolled_back_from_envoy_metrics``: the real controller (with
  ``--prometheus-url``) delivers a new version whose stand-in process fails 30 % of requests;
  Prometheus scrapes Envoy; the envoy error-rate check fails; the controller rolls back and the
  canary weight is 0 again in Envoy. The time from the failed verdict to the weight-0 patch (as
  seen by the route watch) and to Envoy using it is measured and printed.
* ``test_healthy_canary_is_promoted_through_envoy``: the same loop with a healthy canary passes
  each step (20, 50) on real metrics and is promoted (100/0 with the stable Service on v2).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from delivery.kube.client import KubeClient as JsonKube
from delivery.routing.base import RouterContext, router_for
from e2e.controller import ControllerProcess
from e2e.dataplane import LocalStack
from e2e.demo import DEMO_ANNOTATIONS, demo_deployment
from e2e.helpers import Kube, deployment_available, set_image, state, stays, wait_ended, wait_for
from e2e.loadgen import LoadGen
from e2e.services import Prometheus

pytestmark = pytest.mark.e2e

TOLERANCE = 0.035
REQUESTS_PER_STEP = 3000
APP = "shop"
STABLE, CANARY = f"{APP}-stable", f"{APP}-canary"


def test_traffic_share_follows_each_weight(stack: LocalStack, json_kube: JsonKube, namespace: str) -> None:
    router = router_for("gateway-api", RouterContext(json_kube, namespace, APP, APP, STABLE, CANARY))
    lg = LoadGen(stack.url)
    rows = []
    for weight in (0, 5, 20, 50, 80, 100):
        patched = time.monotonic()
        router.set_weight(weight)
        assert router.verify_weight() == weight
        stack.plane.wait_for(stack.weights(weight), timeout=15)  # type: ignore[union-attr]
        in_envoy = time.monotonic() - patched
        before = stack.envoy_counts()
        counts = lg.burst(REQUESTS_PER_STEP)
        after = stack.envoy_counts()
        share = counts.share("canary")
        envoy_canary = after[CANARY][0] - before[CANARY][0]
        envoy_stable = after[STABLE][0] - before[STABLE][0]
        rows.append((weight, share, in_envoy, envoy_canary, envoy_stable))
        assert counts.transport_errors == 0 and counts.by_version.get("-", 0) == 0
        assert sum(counts.by_version.values()) == REQUESTS_PER_STEP
        assert abs(share - weight / 100) <= TOLERANCE, f"weight {weight}: canary share {share:.3f}"
        if weight in (0, 100):
            assert share == weight / 100, "an all-or-nothing weight is exact"
        # Envoy's own counters agree request for request with what the clients saw
        assert (envoy_stable, envoy_canary) == (counts.by_version.get("stable", 0), counts.by_version.get("canary", 0))
    print("\nweight  canary share  patch->envoy  envoy rq (canary/stable)")
    for weight, share, took, c, s in rows:
        print(f"{weight:>5}%  {share * 100:>11.1f}%  {took * 1000:>9.0f} ms  {c:>6}/{s}")


def _canary_weight(json_kube: JsonKube, ns: str) -> int | None:
    return router_for("gateway-api", RouterContext(json_kube, ns, APP, APP, STABLE, CANARY)).verify_weight()


def _start_app(kube: Kube, ns: str, annotations: dict[str, str | None] | None = None) -> None:
    dep = demo_deployment(APP, interval="8s")
    for key, value in (annotations or {}).items():
        if value is None:
            dep.metadata.annotations.pop(key, None)
        else:
            dep.metadata.annotations[key] = value
    kube.apps.create_namespaced_deployment(ns, dep)
    wait_for(lambda: deployment_available(kube.apps, ns, APP), 60, "v1 Available")
    wait_for(lambda: state(kube, ns, APP).get("stableHash"), 30, "deliver to record the stable version")


# failure mode -> (canary process behaviour, analysis annotations, check name in the verdict)
FAILURES: dict[str, tuple[dict[str, float], dict[str, str | None], str]] = {
    "errors": ({"fail_rate": 0.3}, {}, "error-rate"),
    "latency": (
        {"latency_ms": 60.0},
        {
            "deliver.dev/analysis": "latency",
            "deliver.dev/analysis.error-rate": None,
            "deliver.dev/analysis.latency": "min-samples=200",
        },
        "latency",
    ),
}


@pytest.mark.parametrize("mode", list(FAILURES))
def test_failing_canary_is_rolled_back_from_envoy_metrics(
    mode: str,
    stack: LocalStack,
    kube: Kube,
    json_kube: JsonKube,
    namespace: str,
    cluster: Any,
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    ns = namespace
    behaviour, annotations, check = FAILURES[mode]
    assert DEMO_ANNOTATIONS["deliver.dev/analysis-metrics"] == "envoy"
    with ControllerProcess(
        cluster.kubeconfig, ns, tmp_path, prometheus_url=prometheus.url, extra_args=["--metrics-addr", "0"]
    ) as ctl:
        _start_app(kube, ns, annotations)
        lg = LoadGen(stack.url)
        with lg.background(rate=200, max_seconds=240, workers=4):
            # Given a canary version whose pods (the canary process) fail 30 % of requests / are slow
            stack.canary.control(**behaviour)
            set_image(kube.apps, ns, APP, "example.com/shop:v2-broken")

            # Then traffic reaches it at 20 %, and Envoy's metrics fail the analysis: rolled back
            stack.plane.wait_for(stack.weights(20), timeout=60)  # type: ignore[union-attr]
            final = wait_ended(kube, ns, APP, 120, ctl)
            zero = stack.plane.wait_for(stack.weights(0), timeout=15)  # type: ignore[union-attr]
            # no request reaches the canary once Envoy has weight 0
            after_rollback = lg.snapshot()
            stays(
                lambda: lg.snapshot().minus(after_rollback).by_version.get("canary", 0) == 0,
                2,
                "no request on the canary after weight 0",
            )
            tail = lg.snapshot().minus(after_rollback)
        assert final["phase"] == "RolledBack", final.get("message")
        failed = [v for v in final["verdicts"] if v["outcome"] == "fail"]
        assert failed and f"{check} fail" in failed[0]["summary"], final["verdicts"]
        assert _canary_weight(json_kube, ns) == 0
        assert zero is not None
        assert tail.by_version.get("canary", 0) == 0 and tail.by_version.get("stable", 0) > 0
        verdict_at = failed[0]["at"]
        to_patch, to_envoy = zero.seen_at - verdict_at, zero.at - verdict_at
        print(
            f"\n{mode}: failed verdict -> weight-0 route event {to_patch * 1000:.0f} ms, -> Envoy using it "
            f"{to_envoy * 1000:.0f} ms; verdict: {failed[0]['summary']}"
        )
        assert 0 <= to_patch < 5.0 and to_envoy < 5.0


def test_healthy_canary_is_promoted_through_envoy(
    stack: LocalStack,
    kube: Kube,
    json_kube: JsonKube,
    namespace: str,
    cluster: Any,
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    ns = namespace
    with ControllerProcess(
        cluster.kubeconfig, ns, tmp_path, prometheus_url=prometheus.url, extra_args=["--metrics-addr", "0"]
    ) as ctl:
        _start_app(kube, ns)
        lg = LoadGen(stack.url)
        with lg.background(rate=200, max_seconds=240):
            set_image(kube.apps, ns, APP, "example.com/shop:v2")
            for w in (20, 50):
                stack.plane.wait_for(stack.weights(w), timeout=90)  # type: ignore[union-attr]
            final = wait_ended(kube, ns, APP, 150, ctl)
        assert final["phase"] == "Succeeded", final.get("message")
        last_per_step = {v["step"]: v["outcome"] for v in final["verdicts"]}  # an extended step ends in pass
        assert last_per_step == {0: "pass", 1: "pass"}, final["verdicts"]
        # The record is written before the actions that follow it (stable Service to v2, canary weight
        # back to 0), and Envoy applies the last route change a moment after it: wait for each.
        wait_for(lambda: _canary_weight(json_kube, ns) == 0, 30, "the route's canary weight back to 0")

        def weights_in_envoy() -> list[int]:
            return [h.weights[CANARY] for h in stack.plane.history]  # type: ignore[union-attr]

        wait_for(
            lambda: 100 in weights_in_envoy() and weights_in_envoy()[-1] == 0,
            30,
            "Envoy to apply the canary weight 0 after 100",
            describe=weights_in_envoy,
        )
        assert weights_in_envoy() == [20, 50, 100, 0]

        def v2_hash() -> str:
            return next(
                rs.spec.template.metadata.labels["pod-template-hash"]
                for rs in kube.apps.list_namespaced_replica_set(ns).items
                if rs.spec.template.spec.containers[0].image == "example.com/shop:v2"
            )

        def stable_selects() -> str:
            return str(kube.core.read_namespaced_service(STABLE, ns).spec.selector.get("pod-template-hash", ""))

        wait_for(
            lambda: stable_selects() == v2_hash(),
            30,
            "the stable Service to select v2",
            describe=lambda: (stable_selects(), v2_hash()),
        )
