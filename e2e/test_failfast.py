"""Fail fast on the real data plane (issue 17): a bad canary behind a 5-minute step is rolled back
within seconds of receiving traffic, not at the step's end.

Real Envoy splits real HTTP traffic by the HTTPRoute deliver writes; Debian's Prometheus scrapes
Envoy every second; the real controller runs with ``--scrape-interval 1s`` (so it looks at the
running window every 2 s). The canary's process fails 30 % of its requests. The test measures, from
the moment Envoy routes 20 % to the canary to the moment Envoy routes it nothing again, the seconds
and the 5xx answers the canary served (from the clients' side and from Envoy's own counters), and
prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.controller import ControllerProcess
from e2e.dataplane import LocalStack
from e2e.demo import demo_deployment
from e2e.helpers import Kube, deployment_available, set_image, state, wait_ended, wait_for
from e2e.loadgen import LoadGen
from e2e.services import Prometheus

pytestmark = pytest.mark.e2e

APP = "shop"
STABLE, CANARY = f"{APP}-stable", f"{APP}-canary"
STEP = "5m"
WITHIN = 30.0  # seconds from the canary's first traffic to its last


def test_a_canary_failing_30_percent_behind_a_5_minute_step_is_rolled_back_within_30s(
    stack: LocalStack,
    kube: Kube,
    namespace: str,
    cluster: Any,
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    ns = namespace
    assert prometheus.scrape_interval == "1s"
    with ControllerProcess(
        cluster.kubeconfig,
        ns,
        tmp_path,
        prometheus_url=prometheus.url,
        extra_args=["--metrics-addr", "0", "--scrape-interval", prometheus.scrape_interval],
    ) as ctl:
        kube.apps.create_namespaced_deployment(ns, demo_deployment(APP, interval=STEP))
        wait_for(lambda: deployment_available(kube.apps, ns, APP), 60, "v1 Available")
        wait_for(lambda: state(kube, ns, APP).get("stableHash"), 30, "deliver to record the stable version")
        lg = LoadGen(stack.url)
        with lg.background(rate=200, max_seconds=120, workers=4):
            # Given a canary whose pods (the canary process) fail 30 % of requests, behind a 5-minute step
            stack.canary.control(fail_rate=0.3)
            before = lg.snapshot()
            envoy_before = stack.envoy_counts()[CANARY]
            set_image(kube.apps, ns, APP, "example.com/shop:v2-broken")

            # When Envoy sends it 20 % of the traffic
            twenty = stack.plane.wait_for(stack.weights(20), timeout=60)  # type: ignore[union-attr]
            # Then deliver rolls it back long before the step's end: Envoy sends it nothing again
            zero = stack.plane.wait_for(stack.weights(0), timeout=WITHIN + 30)  # type: ignore[union-attr]
            served = lg.snapshot().minus(before)
            envoy_requests, envoy_5xx = (a - b for a, b in zip(stack.envoy_counts()[CANARY], envoy_before, strict=True))
            final = wait_ended(kube, ns, APP, 30, ctl)
        assert twenty is not None and zero is not None
        seconds = zero.at - twenty.at
        canary_5xx = served.errors_by_version.get("canary", 0)
        failed = [v for v in final["verdicts"] if v["outcome"] == "fail"]
        print(
            f"\nfailfast e2e: canary at 20 % for {seconds:.1f}s of a {STEP} step; it answered "
            f"{served.by_version.get('canary', 0)} requests, {canary_5xx} of them 5xx (Envoy: {envoy_requests} "
            f"requests, {envoy_5xx} 5xx); verdict: {failed[0]['summary'] if failed else final.get('message')}"
        )
        assert final["phase"] == "RolledBack", final.get("message")
        assert failed and failed[0].get("interim") is True, final["verdicts"]
        assert "error-rate fail" in failed[0]["summary"]
        assert "into the step" in final["message"]
        assert seconds < WITHIN, f"rolled back {seconds:.1f}s after the canary got traffic"
        assert 0 < canary_5xx
