"""Notifications end to end: the real controller on the local control plane sends a delivery's phase
changes to a real local HTTP receiver (e2e/receiver.py), signed; a receiver that is down holds
nothing up, the Events remain and /metrics counts the failures.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.kube.client import KubeClient as JsonKube
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import (
    CRASHLOOP,
    Kube,
    canary,
    describe,
    events,
    phase,
    set_image,
    wait_for,
    wait_stable,
)
from e2e.receiver import Receiver, namespace_key, verified

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def controller(cluster: RunningCluster, namespace: str, run_dir: Path, port: int, *args: str) -> ControllerProcess:
    return ControllerProcess(
        cluster.kubeconfig, namespace, run_dir, extra_args=["--metrics-addr", f"127.0.0.1:{port}", *args]
    )


def test_a_canary_delivery_is_announced_to_a_signed_webhook_and_a_cluster_wide_slack_receiver(
    cluster: RunningCluster,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    run_dir: Path,
    rx: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DELIVER_WEBHOOK_SECRET", SECRET)  # the controller's environment, as the chart sets it
    port = free_port()
    kube.apps.create_namespaced_deployment(
        namespace, canary("web", "50,100", interval="2s", notify_webhook=rx.url("/deliveries"))
    )
    with controller(cluster, namespace, run_dir, port, "--notify-slack", rx.url("/slack")) as ctl:
        wait_stable(jk, namespace, "web", ctl)
        set_image(kube.apps, namespace, "web", "example.com/web:v2")
        wait_for(lambda: phase(jk, namespace) == "Succeeded", 90, "promotion", describe=describe(jk, namespace))
        done = rx.wait_for(lambda r: r.path == "/deliveries" and r.json()["kind"] == "promoted", 15)
        rx.wait_for(lambda r: r.path == "/slack" and "promoted" in r.json()["text"], 15)
        wait_for(lambda: metric(port, "deliver_notifications_sent_total") >= 8, 15, "sent counted in /metrics")
        failed = metric(port, "deliver_notifications_failed_total")

    got = [r.json() for r in rx.at("/deliveries")]
    assert [b["kind"] for b in got] == ["started", "step-passed", "promoting", "promoted"]
    assert {b["namespace"] for b in got} == {namespace} and done.json()["phase"] == "Succeeded"
    started = events(jk, namespace, "DeliveryStarted")[0]["message"]
    assert got[0]["message"] == started, "the notification says what the Event says"
    for r in rx.at("/deliveries") + rx.at("/slack"):
        assert verified(namespace_key(SECRET.encode(), namespace), r.headers, r.body)
    slack = [r.json() for r in rx.at("/slack")]
    assert len(slack) == 4 and all(s["blocks"][0]["type"] == "section" for s in slack)
    assert failed == 0


def test_a_receiver_that_is_down_holds_nothing_up_and_is_counted(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, run_dir: Path
) -> None:
    port = free_port()
    down = f"http://127.0.0.1:{free_port()}/nobody"
    kube.apps.create_namespaced_deployment(namespace, canary("web", "50,100", interval="2s", notify_webhook=down))
    with controller(cluster, namespace, run_dir, port) as ctl:
        wait_stable(jk, namespace, "web", ctl)
        set_image(kube.apps, namespace, "web", "example.com/web:v2", behaviour=CRASHLOOP)
        wait_for(
            lambda: phase(jk, namespace) == "RolledBack", 90, "automatic rollback", describe=describe(jk, namespace)
        )
        assert events(jk, namespace, "DeliveryRolledBack"), "the Event remains"
        wait_for(lambda: metric(port, "deliver_notification_retries_total") >= 2, 20, "retries counted")
        # the first notification (started) is given up after 5 attempts (1+2+4+8 s of backoff)
        wait_for(lambda: metric(port, "deliver_notifications_failed_total") >= 1, 40, "failures counted")
        assert metric(port, "deliver_notifications_sent_total") == 0
