"""The engine end to end: four strategies on the real local control plane (real Deployment and
ReplicaSet controllers, kwok nodes), driven by the real controller process.

Given an annotated Deployment at v1, when its template changes to v2, then deliver drives the
change under the declared strategy and either promotes it (good version) or rolls it back by
itself (kwok `never-ready` / `crashloop` pods), with the stable version fully serving again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client

from delivery import templates
from delivery.engine.health import is_ready
from delivery.kube.client import PODS, SERVICES
from delivery.kube.client import KubeClient as JsonKube
from e2e.controller import ControllerProcess
from e2e.helpers import (
    CRASHLOOP,
    NEVER_READY,
    Kube,
    deliver_replicasets,
    deployment,
    describe,
    events,
    image,
    make_deployment,
    phase,
    ready_by_hash,
    sampler,
    service_exists,
    set_image,
    stable_hash,
    state,
    stays,
    wait_for,
)

pytestmark = pytest.mark.e2e

N = 5


# ---------------------------------------------------------------- given
def given_v1(
    kube: Kube,
    jk: JsonKube,
    ns: str,
    annotations: dict[str, str],
    replicas: int = N,
    strategy_type: str | None = None,
    ready_delay: str | None = None,
) -> str:
    body = make_deployment("web", replicas=replicas, image="example.com/web:v1", annotations=annotations)
    if ready_delay:  # kwok: pods of this template take this long to become Ready
        body.spec.template.metadata.annotations = {"e2e.deliver.dev/ready-delay": ready_delay}
    if strategy_type:
        body.spec.strategy = client.V1DeploymentStrategy(type=strategy_type)
    kube.apps.create_namespaced_deployment(ns, body)
    # deliver lets the first rollout finish natively, then holds the Deployment (paused)
    wait_for(
        lambda: deployment(jk, ns)["spec"].get("paused") and ready_by_hash(jk, ns).get(stable_hash(jk, ns)) == replicas,
        60,
        "v1 rolled out and held by deliver",
        describe=describe(jk, ns),
    )
    return stable_hash(jk, ns)


def pod_sampler(jk: JsonKube, ns: str, v1_hash: str) -> tuple[list[tuple[bool, int]], threading.Event]:
    """Every change to the namespace's pods, from a watch (a poll misses a canary that lives for
    less than its interval: a crash-looping one is rolled back at its first restart): after each,
    (does a pod of another version than v1 exist, how many v1 pods are Ready)."""
    samples: list[tuple[bool, int]] = []
    stop = threading.Event()
    listing = jk.list(PODS, ns, "app=web")
    pods = {p["metadata"]["name"]: p for p in listing["items"]}

    def sample() -> None:
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        hashes = [p["metadata"]["labels"].get(templates.HASH_LABEL, "") for p in live]
        ready = sum(1 for p, h in zip(live, hashes, strict=True) if h == v1_hash and is_ready(p))
        samples.append((any(h != v1_hash for h in hashes), ready))

    def run() -> None:
        rv = listing["metadata"]["resourceVersion"]
        while not stop.is_set():
            for event in jk.watch(PODS, ns, rv, 5):
                obj = event["object"]
                rv = obj["metadata"].get("resourceVersion", rv)
                if event["type"] == "BOOKMARK" or (obj["metadata"].get("labels") or {}).get("app") != "web":
                    continue
                if event["type"] == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj
                sample()
                if stop.is_set():
                    return

    sample()
    threading.Thread(target=run, daemon=True).start()
    return samples, stop


def assert_rolled_back(jk: JsonKube, ns: str, v1_hash: str, replicas: int = N) -> None:
    wait_for(lambda: phase(jk, ns) == "RolledBack", 90, "automatic rollback", describe=describe(jk, ns))
    wait_for(
        lambda: ready_by_hash(jk, ns) == {v1_hash: replicas},
        60,
        "only stable pods, all Ready",
        describe=describe(jk, ns),
    )
    # the template says what runs, and deliver's ReplicaSet is gone
    wait_for(lambda: image(jk, ns) == "example.com/web:v1", 15, "template reverted to v1")
    wait_for(lambda: not deliver_replicasets(jk, ns), 15, "deliver's ReplicaSet deleted")
    assert state(jk, ns)["failedRevision"]
    wait_for(lambda: events(jk, ns, "DeliveryRolledBack"), 15, "a DeliveryRolledBack event")


CANARY = {
    "deliver.dev/strategy": "canary",
    "deliver.dev/steps": "20,50,100",
    "deliver.dev/interval": "4s",
    "deliver.dev/progress-deadline": "15s",
}


# ---------------------------------------------------------------- canary
def test_canary_good_version_is_promoted_step_by_step(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, CANARY)
    seen, stop = sampler(
        lambda: (state(jk, namespace).get("step"), state(jk, namespace).get("phase"), ready_by_hash(jk, namespace))
    )
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(lambda: phase(jk, namespace) == "Succeeded", 90, "promotion", describe=describe(jk, namespace))
    stop.set()
    v2 = stable_hash(jk, namespace)
    assert v2 != v1
    # exact shares (deliver.dev/canary-scale defaults to exact): at each step the nearest whole share
    # of N runs the new version (20 % of 5: 1; 50 %: 2, a tie goes to fewer) and stable the rest
    for step, canary in ((0, 1), (1, 2)):
        held = [r for s, p, r in seen if s == step and p == "Progressing" and r.get(v2) == canary]
        assert held, f"step {step}: never saw {canary} canary pods Ready; samples: {seen[-5:]}"
        exact = [r for r in held if r.get(v1) == N - canary]
        assert exact, f"step {step}: stable never came down to {N - canary} beside {canary} canary pods: {held[-5:]}"
    # capacity never below what maxUnavailable allows (25 % of 5, rounded down: 1) while stable scales down
    low = [r for _, p, r in seen if p == "Progressing" and r.get(v1, 0) + r.get(v2, 0) < N - 1]
    assert not low, f"Ready pods fell below N - maxUnavailable: {low[:5]}"
    assert all(r.get(v2, 0) <= N for _, _, r in seen)
    wait_for(lambda: ready_by_hash(jk, namespace) == {v2: N}, 30, "only v2 pods")
    d = deployment(jk, namespace)
    assert d["spec"]["paused"] is True and image(jk, namespace) == "example.com/web:v2"
    assert not deliver_replicasets(jk, namespace)  # handed to the Deployment
    wait_for(
        lambda: len(events(jk, namespace, "StepPassed")) >= 2 and events(jk, namespace, "DeliverySucceeded"),
        15,
        "two StepPassed events and a DeliverySucceeded event",
    )


# (canary-scale, the least stable Ready pods allowed): surge never takes a stable pod away; exact
# (the default) may go as low as the Deployment's maxUnavailable allows (25 % of 5, rounded down: 1)
SCALES = [("surge", N), ("exact", N - 1)]


@pytest.mark.parametrize("scale,floor", SCALES, ids=[s for s, _ in SCALES])
@pytest.mark.parametrize("behaviour", [NEVER_READY, CRASHLOOP])
def test_canary_bad_version_is_rolled_back(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess, behaviour: str, scale: str, floor: int
) -> None:
    v1 = given_v1(kube, jk, namespace, dict(CANARY, **{"deliver.dev/canary-scale": scale}))
    # stable capacity never dropped below the floor while the bad canary was tried: every pod change
    # from apply to rollback is looked at (a watch), not re-checked at the end, so any dip fails
    samples, stop = pod_sampler(jk, namespace, v1)
    set_image(kube.apps, namespace, "web", "example.com/web:v2", behaviour=behaviour)
    assert_rolled_back(jk, namespace, v1)
    stop.set()
    stable = [ready for _, ready in samples]
    assert min(stable) >= floor, f"stable Ready pods dropped to {min(stable)} of {N} during the delivery: {samples}"
    assert stable[-1] == N, f"stable capacity not whole again after the rollback: {samples[-5:]}"
    # the samples cover the canary's life (a crash-looping one lives for about a second)
    assert any(canary_exists for canary_exists, _ in samples), f"no sample while the canary existed: {samples}"


def test_controller_killed_mid_canary_resumes_and_finishes(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    annotations = dict(CANARY, **{"deliver.dev/interval": "6s"})
    v1 = given_v1(kube, jk, namespace, annotations)
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(
        lambda: state(jk, namespace).get("step") == 1 and phase(jk, namespace) == "Progressing",
        60,
        "second step",
        describe=describe(jk, namespace),
    )
    controller.kill()  # SIGKILL in the middle of step 2
    before = state(jk, namespace)
    stays(lambda: state(jk, namespace)["step"] == before["step"], 2, "nothing moving without the controller")
    controller.start()
    wait_for(
        lambda: phase(jk, namespace) == "Succeeded", 90, "promotion after restart", describe=describe(jk, namespace)
    )
    assert ready_by_hash(jk, namespace).get(v1, 0) == 0
    assert controller.starts == 2


def test_invalid_annotation_changes_nothing_and_warns(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, CANARY)
    before = deployment(jk, namespace)
    kube.apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"annotations": {"deliver.dev/steps": "20,abc"}}}
    )
    wait_for(lambda: events(jk, namespace, "InvalidAnnotation"), 30, "InvalidAnnotation event")
    message = events(jk, namespace, "InvalidAnnotation")[0]["message"]
    assert "deliver.dev/steps" in message and "abc" in message
    set_image(kube.apps, namespace, "web", "example.com/web:v2")

    def unchanged() -> bool:
        after = deployment(jk, namespace)
        return (
            after["metadata"]["annotations"].get("deliver.dev/state")
            == before["metadata"]["annotations"].get("deliver.dev/state")
            and after["spec"]["paused"] is True  # still held: the change does not roll out ungated
            and not deliver_replicasets(jk, namespace)
            and ready_by_hash(jk, namespace) == {v1: N}
        )

    stays(unchanged, 4, "the record unchanged, the Deployment held, no deliver ReplicaSet, only v1 pods Ready")


# ---------------------------------------------------------------- blue-green
BLUE_GREEN = {
    "deliver.dev/strategy": "blue-green",
    "deliver.dev/interval": "3s",
    "deliver.dev/keep-warm": "6s",
    "deliver.dev/progress-deadline": "15s",
}


def watch_selectors(jk: JsonKube, ns: str, name: str) -> tuple[list[str], threading.Event]:
    """Record the pod-template-hash of every version of a Service's selector (one entry per write)."""
    seen: list[str] = []
    stop = threading.Event()

    def run() -> None:
        rv = "0"
        while not stop.is_set():
            try:
                for ev in jk.watch(SERVICES, ns, rv, timeout_seconds=5):
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if obj["metadata"]["name"] == name and ev["type"] in ("ADDED", "MODIFIED"):
                        h = (obj["spec"].get("selector") or {}).get(templates.HASH_LABEL, "")
                        if not seen or seen[-1] != h:
                            seen.append(h)
                    if stop.is_set():
                        return
            except Exception:
                time.sleep(0.2)

    threading.Thread(target=run, daemon=True).start()
    return seen, stop


def test_bluegreen_switches_in_one_patch_and_keeps_old_warm(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, BLUE_GREEN)
    selectors, stop = watch_selectors(jk, namespace, "web")
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(lambda: service_exists(jk, namespace, "web-preview"), 30, "preview Service")
    new_hash = wait_for(lambda: deliver_replicasets(jk, namespace), 30, "green ReplicaSet")[0]["metadata"]["labels"][
        templates.REVISION_LABEL
    ]
    # preview selects the new version in full while active still selects the old
    wait_for(lambda: ready_by_hash(jk, namespace) == {v1: N, new_hash: N}, 30, "both versions in full")
    assert jk.get(SERVICES, namespace, "web-preview")["spec"]["selector"][templates.HASH_LABEL] == new_hash
    assert jk.get(SERVICES, namespace, "web")["spec"]["selector"][templates.HASH_LABEL] == v1
    wait_for(lambda: state(jk, namespace).get("switched"), 30, "switch")
    # the record is written first, then the one Service patch follows
    wait_for(
        lambda: jk.get(SERVICES, namespace, "web")["spec"]["selector"][templates.HASH_LABEL] == new_hash,
        15,
        "active Service on green",
    )
    # keep-warm: active on green, blue still fully up
    assert ready_by_hash(jk, namespace).get(v1) == N
    wait_for(lambda: phase(jk, namespace) == "Succeeded", 60, "promotion", describe=describe(jk, namespace))
    wait_for(lambda: ready_by_hash(jk, namespace) == {new_hash: N}, 30, "old version scaled down")
    stop.set()
    assert selectors == [v1, new_hash], f"active Service selector history: {selectors}"


def test_bluegreen_abort_after_switch_switches_back_in_one_patch(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, dict(BLUE_GREEN, **{"deliver.dev/keep-warm": "60s"}))
    selectors, stop = watch_selectors(jk, namespace, "web")
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(lambda: state(jk, namespace).get("switched"), 60, "switch", describe=describe(jk, namespace))
    new_hash = state(jk, namespace)["revision"]
    from delivery.engine.state import send_request

    send_request(jk, deployment(jk, namespace), "abort")
    wait_for(lambda: phase(jk, namespace) == "Aborted", 30, "abort", describe=describe(jk, namespace))
    wait_for(
        lambda: jk.get(SERVICES, namespace, "web")["spec"]["selector"][templates.HASH_LABEL] == v1,
        15,
        "active Service back on blue",
    )
    wait_for(lambda: ready_by_hash(jk, namespace) == {v1: N}, 30, "only blue left")
    stop.set()
    assert selectors == [v1, new_hash, v1], f"active Service selector history: {selectors}"
    wait_for(lambda: image(jk, namespace) == "example.com/web:v1", 15, "template reverted to v1")


def test_bluegreen_bad_version_never_gets_traffic(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, BLUE_GREEN)
    selectors, stop = watch_selectors(jk, namespace, "web")
    set_image(kube.apps, namespace, "web", "example.com/web:v2", behaviour=CRASHLOOP)
    assert_rolled_back(jk, namespace, v1)
    stop.set()
    assert set(selectors) == {v1}


# ---------------------------------------------------------------- rolling
ROLLING = {
    "deliver.dev/strategy": "rolling",
    "deliver.dev/pause-at": "40",
    "deliver.dev/interval": "3s",
    "deliver.dev/progress-deadline": "15s",
}


def test_rolling_good_version_rolls_out_with_a_checked_pause(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, ROLLING, ready_delay="2s")

    def updated() -> tuple[Any, ...]:
        d, st = deployment(jk, namespace), state(jk, namespace)
        return (
            st.get("step"),
            st.get("phase"),
            bool(d["spec"].get("paused")),
            d.get("status", {}).get("updatedReplicas", 0),
        )

    samples, stop = sampler(updated)
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(lambda: phase(jk, namespace) == "Succeeded", 90, "rollout", describe=describe(jk, namespace))
    stop.set()
    v2 = stable_hash(jk, namespace)
    assert v2 != v1
    wait_for(lambda: ready_by_hash(jk, namespace) == {v2: N}, 30, "all pods on v2")
    # the native rollout was held at the 40% point (2 of 5 pods updated) while it was checked
    held = [s for s in samples if s[0] == 0 and s[1] == "Progressing" and s[2] and 2 <= s[3] < N]
    assert len(held) >= 5, f"never held at the pause point: {samples[::10]}"
    assert deployment(jk, namespace)["spec"]["paused"] is True
    # the pause point and the end were both checked
    wait_for(lambda: len(events(jk, namespace, "StepPassed")) >= 2, 15, "two StepPassed events")


@pytest.mark.parametrize("behaviour", [NEVER_READY, CRASHLOOP])
def test_rolling_bad_version_is_undone_by_reverting_the_template(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess, behaviour: str
) -> None:
    v1 = given_v1(kube, jk, namespace, ROLLING)
    set_image(kube.apps, namespace, "web", "example.com/web:v2", behaviour=behaviour)
    assert_rolled_back(jk, namespace, v1)
    wait_for(lambda: events(jk, namespace, "StableRestored"), 15, "a StableRestored event")


# ---------------------------------------------------------------- recreate
RECREATE = {"deliver.dev/strategy": "recreate", "deliver.dev/interval": "3s", "deliver.dev/progress-deadline": "12s"}


def _never_two_versions(samples: list[dict[str, int]]) -> None:
    both = [s for s in samples if sum(1 for v in s.values() if v > 0) > 1]
    assert not both, f"two versions Ready at once: {both[:3]}"


def test_recreate_good_version_never_overlaps(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, RECREATE, replicas=3, strategy_type="Recreate")
    samples, stop = sampler(lambda: ready_by_hash(jk, namespace), 0.05)
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(lambda: phase(jk, namespace) == "Succeeded", 60, "recreate", describe=describe(jk, namespace))
    stop.set()
    assert len(samples) > 20
    _never_two_versions(samples)
    v2 = stable_hash(jk, namespace)
    assert v2 != v1
    wait_for(lambda: ready_by_hash(jk, namespace) == {v2: 3}, 30, "only v2 pods, all Ready")


def test_recreate_bad_version_restores_old_without_overlap(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    v1 = given_v1(kube, jk, namespace, RECREATE, replicas=3, strategy_type="Recreate")
    samples, stop = sampler(lambda: ready_by_hash(jk, namespace), 0.05)
    set_image(kube.apps, namespace, "web", "example.com/web:v2", behaviour=NEVER_READY)
    assert_rolled_back(jk, namespace, v1, replicas=3)
    stop.set()
    _never_two_versions(samples)


def test_recreate_without_native_recreate_is_refused(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    kube.apps.create_namespaced_deployment(
        namespace, make_deployment("web", replicas=2, image="example.com/web:v1", annotations=RECREATE)
    )
    wait_for(lambda: events(jk, namespace, "InvalidAnnotation"), 30, "InvalidAnnotation event")
    assert "Recreate" in events(jk, namespace, "InvalidAnnotation")[0]["message"]
    assert not state(jk, namespace)


def test_removing_the_strategy_hands_the_deployment_back(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    given_v1(kube, jk, namespace, dict(CANARY, **{"deliver.dev/interval": "60s"}))
    set_image(kube.apps, namespace, "web", "example.com/web:v2")
    wait_for(lambda: deliver_replicasets(jk, namespace), 30, "canary ReplicaSet")
    kube.apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"annotations": {key: None for key in CANARY}}}
    )
    wait_for(lambda: not deployment(jk, namespace)["spec"].get("paused"), 30, "unpaused")
    wait_for(lambda: not deliver_replicasets(jk, namespace), 30, "canary ReplicaSet removed")
    assert "deliver.dev/state" not in deployment(jk, namespace)["metadata"].get("annotations", {})
    wait_for(lambda: events(jk, namespace, "Released"), 15, "a Released event")
    # a plain Deployment again: the native controller rolls out v2
    wait_for(
        lambda: (
            len(ready_by_hash(jk, namespace)) == 1
            and stable_hash(jk, namespace)
            and ready_by_hash(jk, namespace).get(stable_hash(jk, namespace)) == N
            and image(jk, namespace) == "example.com/web:v2"
        ),
        60,
        "native rollout of v2",
    )
