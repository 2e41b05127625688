"""Traffic beyond weights (issue 12), end to end.

* ``test_exact_replica_shares_on_live_pods``: on the real control plane (real Deployment and
  ReplicaSet controllers, kwok pods), the real controller delivers v2 with
  ``deliver.dev/canary-scale: exact`` (the default) and steps ``20,pause,50,pause,100``; at each
  manual-promotion hold the Ready pods of each version are counted and must be the exact share of
  the Deployment's N replicas (and stay so for 2 s: the paused Deployment controller does not scale
  the held stable ReplicaSet back), for N = 1, 3, 5, 10; after promotion only v2 runs, N pods, and
  the stable ReplicaSet was handed back to the Deployment.
"""

from __future__ import annotations

from typing import Any

import pytest

from delivery import templates
from delivery.kube import REPLICASETS
from delivery.kube import KubeClient as JsonKube
from e2e.controller import ControllerProcess
from e2e.helpers import (
    Kube,
    canary,
    deliver,
    deliver_replicasets,
    deployment,
    describe,
    phase,
    ready_by_hash,
    set_image,
    stable_hash,
    state,
    stays,
    wait_for,
)

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
