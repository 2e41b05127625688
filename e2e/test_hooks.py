"""Hooks end to end: the real controller on the local control plane calls real local HTTP servers.

* ``test_a_failing_pre_rollout_hook_means_no_rollout``: the pre-rollout hook answers 503; not one
  pod of the new version is created, the template is back on v1, ``HookFailed`` says why.
* ``test_pre_rollout_confirm_promotion_and_post_rollout_around_a_canary``: pre-rollout answers 2xx
  before any pod of the new version exists; promotion waits for the confirm-promotion hook (polled,
  403 until approved) while the canary keeps its share; once approved it is promoted and the
  post-rollout hook hears about it.
* ``test_a_blue_green_switch_waits_for_its_confirm_promotion_hook``: the preview is up and passed,
  the active Service keeps selecting the stable pods while the hook answers 403; once it answers
  200 the active Service is switched and the delivery succeeds.
* ``test_a_load_test_hook_turns_an_inconclusive_canary_into_a_verdict``: a real app behind Envoy
  with no traffic: the canary's analysis is inconclusive (rolled back, on-inconclusive rollback).
  With a load-test hook whose server drives real requests through Envoy when called, the next
  version's step gets enough requests for a verdict: pass, promoted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delivery import templates
from delivery.kube.client import SERVICES
from delivery.kube.client import KubeClient as JsonKube
from delivery.routing.gateway import HTTPROUTES
from e2e import crds
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.dataplane import LocalStack
from e2e.demo import demo_deployment, demo_route
from e2e.helpers import (
    Kube,
    canary,
    deliver_replicasets,
    deployment_available,
    describe,
    events,
    image,
    make_deployment,
    phase,
    set_image,
    state,
    stays,
    wait_ended,
    wait_for,
    wait_stable,
)
from e2e.loadgen import LoadGen
from e2e.receiver import Receiver, Request
from e2e.services import Prometheus

pytestmark = pytest.mark.e2e


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_a_failing_pre_rollout_hook_means_no_rollout(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess, rx: Receiver
) -> None:
    rx.answer("/pre", 503)
    kube.apps.create_namespaced_deployment(
        namespace, canary("web", "50,100", interval="2s", hook_pre_rollout=rx.url("/pre"))
    )
    wait_stable(jk, namespace, "web", controller)
    created: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            created.append(len(deliver_replicasets(jk, namespace)))
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    set_image(kube.apps, namespace, "web", "example.com/web:v2")

    final = wait_ended(jk, namespace, "web", 60, controller, ends=("RolledBack",))
    watching.set()
    assert "pre-rollout hook failed: HTTP 503" in final["message"]
    assert image(jk, namespace) == "example.com/web:v1", "the template is back on the stable version"
    assert max(created) == 0, "no ReplicaSet of the new version was ever created"
    assert len(rx.at("/pre")) == 3, "tried 3 times"
    wait_for(lambda: events(jk, namespace, "HookFailed"), 10, "a HookFailed Warning")
    assert "not rolled out" in events(jk, namespace, "HookFailed")[0]["message"]


def test_pre_rollout_confirm_promotion_and_post_rollout_around_a_canary(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess, rx: Receiver
) -> None:
    replicasets_at_pre: list[int] = []

    def pre(r: Request) -> int:
        replicasets_at_pre.append(len(deliver_replicasets(jk, namespace)))
        return 200

    approved = threading.Event()
    rx.answer("/pre", pre)
    rx.answer("/confirm", lambda r: 200 if approved.is_set() else 403)
    kube.apps.create_namespaced_deployment(
        namespace,
        canary(
            "web",
            "50,100",
            interval="2s",
            replicas=2,
            hook_pre_rollout=rx.url("/pre"),
            hook_confirm_promotion=rx.url("/confirm"),
            hook_post_rollout=rx.url("/post"),
        ),
    )
    wait_stable(jk, namespace, "web", controller)
    set_image(kube.apps, namespace, "web", "example.com/web:v2")

    wait_for(
        lambda: events(jk, namespace, "AwaitingConfirmation"),
        60,
        "AwaitingConfirmation",
        describe=describe(jk, namespace),
    )
    assert replicasets_at_pre == [0], "pre-rollout answered before anything was rolled out"
    stays(
        lambda: phase(jk, namespace) == "Progressing" and state(jk, namespace)["step"] == 0, 6, "held before promotion"
    )
    assert len(rx.at("/confirm")) >= 2, "polled"
    assert [len(deliver_replicasets(jk, namespace))] == [1], "the canary keeps running"

    approved.set()
    wait_for(lambda: phase(jk, namespace) == "Succeeded", 60, "promotion", describe=describe(jk, namespace))
    post = rx.wait_for(lambda r: r.path == "/post", 15).json()
    assert (post["hook"], post["phase"], post["deployment"]) == ("post-rollout", "Succeeded", "web")
    wait_for(lambda: len(events(jk, namespace, "HookPassed")) == 3, 10, "pre, confirm and post HookPassed")
    assert len(events(jk, namespace, "AwaitingConfirmation")) == 1


def test_a_blue_green_switch_waits_for_its_confirm_promotion_hook(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess, rx: Receiver
) -> None:
    approved = threading.Event()
    rx.answer("/confirm", lambda r: 200 if approved.is_set() else 403)
    annotations = {
        "deliver.dev/strategy": "blue-green",
        "deliver.dev/interval": "2s",
        "deliver.dev/keep-warm": "2s",
        "deliver.dev/hook-confirm-promotion": rx.url("/confirm"),
    }
    kube.apps.create_namespaced_deployment(
        namespace, make_deployment("web", replicas=2, image="example.com/web:v1", annotations=annotations)
    )
    stable = wait_stable(jk, namespace, "web", controller)["stableHash"]
    set_image(kube.apps, namespace, "web", "example.com/web:v2")

    wait_for(
        lambda: events(jk, namespace, "AwaitingConfirmation"),
        60,
        "AwaitingConfirmation",
        describe=describe(jk, namespace),
    )

    def active() -> str:
        return str(jk.get(SERVICES, namespace, "web")["spec"]["selector"].get(templates.HASH_LABEL, ""))

    def held() -> bool:
        record = state(jk, namespace)
        return record["phase"] == "Progressing" and record["hold"] == "AwaitingConfirmation" and not record["switched"]

    stays(lambda: held() and active() == stable, 6, "the switch held, the active Service on the stable pods")
    assert len(rx.at("/confirm")) >= 2, "polled"
    assert rx.at("/confirm")[0].json()["strategy"] == "blue-green"

    approved.set()
    final = wait_ended(jk, namespace, "web", 60, controller, ends=("Succeeded", "RolledBack"))
    assert final["phase"] == "Succeeded", final["message"]
    assert active() == final["stableHash"] != stable, "switched to the new version once the hook answered 2xx"
    assert len(events(jk, namespace, "AwaitingConfirmation")) == 1
    assert "switching the active Service" in events(jk, namespace, "HookPassed")[0]["message"]


# ---------------------------------------------------------------------------- load-test through Envoy

APP = "shop"
STABLE, CANARY = f"{APP}-stable", f"{APP}-canary"


@pytest.fixture
def stack(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path, prometheus: Prometheus
) -> Iterator[LocalStack]:
    crds.install(kube.api_client, ["httproute"])
    jk = JsonKube.connect(str(cluster.kubeconfig))
    jk.create(HTTPROUTES, namespace, demo_route(APP))
    s = LocalStack(jk, namespace, APP, tmp_path, STABLE, CANARY, prometheus).start()
    yield s
    s.stop()


def test_a_load_test_hook_turns_an_inconclusive_canary_into_a_verdict(
    stack: LocalStack,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    cluster: RunningCluster,
    prometheus: Prometheus,
    tmp_path: Path,
    rx: Receiver,
) -> None:
    ns = namespace
    lg = LoadGen(stack.url)
    loads: list[dict[str, Any]] = []

    def load_test(r: Request) -> int:
        """The user's load tester: 12 s of 200 requests/s through Envoy, started when called."""
        loads.append(r.json())

        def run() -> None:
            with lg.background(rate=200, max_seconds=12):
                time.sleep(12)

        threading.Thread(target=run, daemon=True).start()
        return 202

    rx.answer("/load", load_test)
    dep = demo_deployment(APP, interval="8s")
    dep.metadata.annotations.update({"deliver.dev/steps": "50,100", "deliver.dev/on-inconclusive": "rollback"})
    with ControllerProcess(
        cluster.kubeconfig, ns, tmp_path, prometheus_url=prometheus.url, extra_args=["--metrics-addr", "0"]
    ) as ctl:
        kube.apps.create_namespaced_deployment(ns, dep)
        wait_for(lambda: deployment_available(kube.apps, ns, APP), 60, "v1 Available")
        wait_stable(jk, ns, APP, ctl)

        # Without traffic the analysis has nothing to judge: inconclusive, rolled back.
        set_image(kube.apps, ns, APP, "example.com/shop:v2")
        quiet = wait_ended(jk, ns, APP, 90, ctl, ends=("RolledBack",))
        assert [v["outcome"] for v in quiet["verdicts"]] == ["inconclusive"], quiet["verdicts"]

        # With a load-test hook, the same kind of change reaches a verdict (an inconclusive window,
        # if Prometheus lags, is extended and the hook called again).
        hooked = {"deliver.dev/hook-load-test": rx.url("/load"), "deliver.dev/on-inconclusive": "extend"}
        kube.apps.patch_namespaced_deployment(APP, ns, {"metadata": {"annotations": hooked}})
        set_image(kube.apps, ns, APP, "example.com/shop:v3")
        wait_for(lambda: state(jk, ns, APP).get("revision") != quiet["revision"], 30, "the delivery of v3 to start")
        try:
            final = wait_ended(jk, ns, APP, 90, ctl, ends=("RolledBack", "Succeeded"))
        finally:
            print("\n".join(line[:300] for line in ctl.log().splitlines() if "hook" in line or "transition" in line))

    assert final["phase"] == "Succeeded", (final["message"], final["verdicts"])
    assert [(v["step"], v["outcome"]) for v in final["verdicts"]][-1] == (0, "pass"), final["verdicts"]
    assert {(b["hook"], b["step"], b["weight"]) for b in loads} == {("load-test", 1, 50)}
    served = lg.snapshot()
    assert served.by_version.get("canary", 0) >= 200, served
    print(f"\nload-test hook: {served.by_version} requests through Envoy; verdict: {final['verdicts'][0]['summary']}")
