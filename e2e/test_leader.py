"""Two controller processes with Lease leader election on the real local control plane.

One leads, the other stands by (both Ready); the leader is SIGKILLed mid-delivery and the other
takes over after the Lease expires and finishes the delivery; a SIGTERMed leader releases the Lease
and the other takes over at once. /metrics, /healthz and /readyz are served by both.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from delivery.kube.client import DEPLOYMENTS, EVENTS, REPLICASETS, SERVICES
from delivery.kube.client import KubeClient as JsonKube
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, canary, pods_of, set_image, stays, wait_for, wait_phase, wait_stable

pytestmark = pytest.mark.e2e

LEASE_DURATION, RENEW_DEADLINE, RETRY = 4.0, 3.0, 0.5
ELECTION = [
    "--leader-elect",
    "--lease-name",
    "deliver-e2e",
    "--lease-duration",
    f"{int(LEASE_DURATION)}s",
    "--renew-deadline",
    f"{int(RENEW_DEADLINE)}s",
    "--retry-period",
    f"{int(RETRY * 1000)}ms",
]


def address(ctl: ControllerProcess) -> str:
    def found() -> str | None:
        m = re.search(r'"msg": "serving /metrics, /healthz, /readyz", "address": "([^"]+)"', ctl.log())
        return m.group(1) if m else None

    return wait_for(found, 30, "the metrics address in the controller log", describe=lambda: ctl.log()[-2000:])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def leads(ctl: ControllerProcess) -> bool:
    if not ctl.alive():
        return False
    code, body = get(f"http://{address(ctl)}/metrics")
    return code == 200 and "\ndeliver_is_leader 1.0" in body


def holder(kube: Kube, namespace: str) -> str:
    try:
        lease = client.CoordinationV1Api(kube.api_client).read_namespaced_lease("deliver-e2e", namespace)
    except client.ApiException:
        return ""  # not created yet
    return lease.spec.holder_identity or ""


def lease(kube: Kube, namespace: str) -> tuple[str, int]:
    """(holderIdentity, leaseTransitions) of the election Lease, as the API server stores it."""
    try:
        spec = client.CoordinationV1Api(kube.api_client).read_namespaced_lease("deliver-e2e", namespace).spec
    except client.ApiException:
        return "", 0
    return spec.holder_identity or "", spec.lease_transitions or 0


def identity(ctl: ControllerProcess) -> str:
    """The identity this process puts in the Lease (it names itself when it starts campaigning)."""

    def found() -> str | None:
        m = re.search(r'"msg": "waiting for leadership".*?"identity": "([^"]+)"', ctl.log())
        return m.group(1) if m else None

    return wait_for(found, 30, "the elector identity in the controller log", describe=lambda: ctl.log()[-2000:])


def deliver_writes(jk: JsonKube, namespace: str) -> dict[str, Any]:
    """Everything deliver writes in the namespace, minus what other controllers keep changing (status):
    the Deployment's annotations and spec, each ReplicaSet's labels/annotations/spec, each Service's
    labels and selector, and every Event deliver posted (the Lease is the election, not a delivery write)."""
    d = jk.get(DEPLOYMENTS, namespace, "web")
    return {
        "deployment": (d["metadata"].get("annotations"), d["spec"]),
        "replicasets": {
            r["metadata"]["name"]: (r["metadata"].get("labels"), r["metadata"].get("annotations"), r["spec"])
            for r in jk.items(REPLICASETS, namespace)
        },
        "services": {
            s["metadata"]["name"]: (s["metadata"].get("labels"), s["spec"].get("selector"))
            for s in jk.items(SERVICES, namespace)
        },
        "events": {
            e["metadata"]["name"]: e.get("count", 1)
            for e in jk.items(EVENTS, namespace)
            if (e.get("source") or {}).get("component") == "deliver" or e.get("reportingComponent") == "deliver"
        },
    }


def pair(cluster: RunningCluster, namespace: str, tmp_path: Path) -> tuple[ControllerProcess, ControllerProcess]:
    a = ControllerProcess(cluster.kubeconfig, namespace, tmp_path, extra_args=ELECTION, name="a").start()
    b = ControllerProcess(cluster.kubeconfig, namespace, tmp_path, extra_args=ELECTION, name="b").start()
    return a, b


def test_leader_killed_the_other_takes_over_and_completes(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    a, b = pair(cluster, namespace, tmp_path)
    try:
        # exactly one leads; both are Ready (readiness is not tied to leadership) and healthy
        wait_for(lambda: holder(kube, namespace), 30, "a Lease holder")
        wait_for(lambda: leads(a) != leads(b), 30, "exactly one leader")
        for ctl in (a, b):
            assert get(f"http://{address(ctl)}/healthz")[0] == 200
            wait_for(lambda ctl=ctl: get(f"http://{address(ctl)}/readyz")[0] == 200, 30, "ready")
        leader, follower = (a, b) if leads(a) else (b, a)

        kube.apps.create_namespaced_deployment(namespace, canary("web", "34,67,100", interval="3s"))
        wait_stable(kube, namespace, "web", leader)
        set_image(kube.apps, namespace, "web", "example.com/web:v2")
        wait_phase(kube, namespace, "web", "Progressing", ctl=leader)

        # the Lease names the leader (behaviour, not a log line)
        held_by, transitions_before = lease(kube, namespace)
        assert held_by == identity(leader) != identity(follower)

        # the leader dies without a chance to clean up
        leader.kill()
        killed = time.monotonic()
        wait_for(
            lambda: leads(follower),
            LEASE_DURATION + 10,
            "the standby to take over",
            interval=0.1,
            describe=lambda: follower.log()[-2000:],
        )
        # the Lease moved to the follower, counted as a transition
        wait_for(lambda: lease(kube, namespace)[0] == identity(follower), 10, "the Lease held by the follower")
        assert lease(kube, namespace)[1] > transitions_before
        failover = time.monotonic() - killed
        print(f"\nfailover after SIGKILL: {failover:.2f}s (lease {LEASE_DURATION}s, retry {RETRY}s)")
        assert failover <= LEASE_DURATION + 4  # bounded by the lease, not by luck

        # ...and finishes the delivery from the record on the cluster
        s = wait_phase(kube, namespace, "web", "Succeeded", timeout=90, ctl=follower)
        assert s["revision"] == s["stableRevision"]
        wait_for(
            lambda: {p.spec.containers[0].image for p in pods_of(kube, namespace, "web")} == {"example.com/web:v2"},
            60,
            "only v2 pods",
        )
        # only the follower was alive after the kill: it wrote the rest, and still holds the Lease
        assert not leader.alive() and lease(kube, namespace)[0] == identity(follower)
        # the gauges are refreshed by the controller's next pass after the record: wait for them
        body = wait_for(
            lambda: (lambda text: text if 'deliver_deliveries{phase="Succeeded"} 1.0' in text else "")(
                get(f"http://{address(follower)}/metrics")[1]
            ),
            15,
            "the new leader's metrics to count the delivery as Succeeded",
        )
        assert 'deliver_delivery_weight_percent{deployment="web",namespace="' in body
        assert "deliver_reconcile_duration_seconds_count" in body
    finally:
        a.stop()
        b.stop()


def test_sigterm_releases_the_lease_for_a_prompt_handover(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    a, b = pair(cluster, namespace, tmp_path)
    try:
        wait_for(lambda: leads(a) != leads(b), 30, "exactly one leader")
        leader, follower = (a, b) if leads(a) else (b, a)
        kube.apps.create_namespaced_deployment(namespace, canary("web", "50,100"))
        wait_stable(kube, namespace, "web", leader)

        started = time.monotonic()
        code = leader.stop(timeout=15)
        exited = time.monotonic() - started
        wait_for(lambda: leads(follower), 10, "the standby to take over", interval=0.1)
        handover = time.monotonic() - started
        print(f"\nSIGTERM: leader exited in {exited:.2f}s (code {code}); handover {handover:.2f}s")
        assert code == 0
        assert exited < 5
        assert "released the lease" in leader.log()
        assert handover < exited + 2 * RETRY + 1.5  # no waiting out the {LEASE_DURATION}s lease

        set_image(kube.apps, namespace, "web", "example.com/web:v2")
        wait_phase(kube, namespace, "web", "Succeeded", ctl=follower)
    finally:
        a.stop()
        b.stop()


def test_frozen_leader_writes_nothing_after_losing_the_lease(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, tmp_path: Path
) -> None:
    """Fencing (issue 10 defect 15), measured on the cluster: the leader is frozen (SIGSTOP: a long
    GC pause, a stalled node) mid-delivery, the follower takes the Lease and moves the delivery on;
    then the follower is frozen and the old leader thawed while its step is due. Nothing deliver
    writes may change while only the old leader runs: it lost the Lease, so it must not write."""
    a, b = pair(cluster, namespace, tmp_path)
    frozen: list[ControllerProcess] = []

    def freeze(ctl: ControllerProcess) -> None:
        assert ctl.proc is not None
        os.killpg(ctl.proc.pid, signal.SIGSTOP)
        frozen.append(ctl)

    def thaw(ctl: ControllerProcess) -> None:
        assert ctl.proc is not None
        os.killpg(ctl.proc.pid, signal.SIGCONT)
        frozen.remove(ctl)

    try:
        wait_for(lambda: leads(a) != leads(b), 30, "exactly one leader")
        leader, follower = (a, b) if leads(a) else (b, a)
        old_id, new_id = identity(leader), identity(follower)
        kube.apps.create_namespaced_deployment(namespace, canary("web", "34,67,100", interval="3s"))
        wait_stable(kube, namespace, "web", leader)
        set_image(kube.apps, namespace, "web", "example.com/web:v2")
        wait_phase(kube, namespace, "web", "Progressing", step=0, ctl=leader)

        freeze(leader)
        wait_for(lambda: lease(kube, namespace)[0] == new_id, LEASE_DURATION + 10, "the follower to take the Lease")
        # the new leader acts: it moves the delivery past the step the old one was frozen in
        wait_phase(kube, namespace, "web", "Progressing", step=1, timeout=30, ctl=follower)

        freeze(follower)
        time.sleep(3.5)  # the step's 3 s interval passes: the next transition is due
        before = deliver_writes(jk, namespace)
        thaw(leader)
        # a window shorter than the Lease (the old leader could legitimately win it back after
        # LEASE_DURATION of seeing no renewal from the frozen follower)
        stays(
            lambda: deliver_writes(jk, namespace) == before,
            LEASE_DURATION - 1,
            "no deliver write while only the deposed leader runs",
        )
        assert leader.alive() and lease(kube, namespace)[0] == new_id
        assert "lost leadership" in leader.log()

        thaw(follower)
        s = wait_phase(kube, namespace, "web", "Succeeded", timeout=90, ctl=follower)
        assert s["revision"] == s["stableRevision"]
        assert old_id != new_id
    finally:
        for ctl in list(frozen):
            thaw(ctl)
        a.stop()
        b.stop()
