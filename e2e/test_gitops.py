"""Argo CD's view of a deliver-managed Deployment: the shipped Lua, run on live objects in each phase.

The health check and the resource actions of gitops/argocd/argocd-cm.yaml run in Argo CD's own Lua
sandbox (e2e/argocd.py: gopher-lua with only base, table, package and a cut-down os, as Argo CD
opens them; ``obj`` in, ``hs.status``/``hs.message`` out; an action returns the modified ``obj``) on
the Deployment read from the local control plane while the real controller drives a canary through
its phases. The controller may hold Deployments either way (paused at rest, or unpaused at rest
with an admission policy holding each change): the expectations follow ``spec.paused``. An
action's result is patched onto the cluster as Argo CD does, and the controller must take it.
Flux's kstatus judges the same objects (e2e/kstatus.py). With ``DELIVER_RECORD_ARGOCD=PATH`` the
objects are written to PATH (that is how tests/data/argocd_objects.json was recorded).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from delivery.kube.client import DEPLOYMENTS
from delivery.kube.client import KubeClient as JsonKube
from e2e.argocd import ArgoLua
from e2e.cluster import BEHAVIOUR_LABEL
from e2e.controller import ControllerProcess
from e2e.helpers import (
    CRASHLOOP,
    Kube,
    canary,
    deployment,
    event_messages,
    images,
    make_deployment,
    set_image,
    state,
    wait_for,
    wait_stable,
)
from e2e.kstatus import flux_cel, kstatus

pytestmark = pytest.mark.e2e

RECORDED: dict[str, dict[str, Any]] = {}


def record(label: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Keep ``obj`` as the live example of ``label`` (written out with DELIVER_RECORD_ARGOCD)."""
    kept = json.loads(json.dumps(obj))
    kept["metadata"].pop("managedFields", None)
    RECORDED[label] = kept
    return obj


def when_phase(jk: JsonKube, ns: str, name: str, phase: str, timeout: float = 60, **record_has: Any) -> dict[str, Any]:
    """The live Deployment, read at a moment its record is in ``phase`` (one consistent object)."""

    def check() -> dict[str, Any] | None:
        obj = deployment(jk, ns, name)
        raw = (obj["metadata"].get("annotations") or {}).get("deliver.dev/state")
        st = json.loads(raw) if raw else {}
        ok = st.get("phase") == phase and all(st.get(k) == v for k, v in record_has.items())
        return obj if ok else None

    return wait_for(check, timeout, f"{ns}/{name} in {phase} {record_has}", describe=lambda: state(jk, ns, name))


def argocd_action(lua: ArgoLua, jk: JsonKube, ns: str, name: str, verb: str) -> str:
    """Run action ``verb`` on the live object and patch what it changed (as Argo CD does); the request id."""
    live = deployment(jk, ns, name)
    assert verb in lua.enabled_actions(live), (verb, lua.enabled_actions(live), state(jk, ns, name))
    changed = lua.act(verb, live)
    before = live["metadata"].get("annotations") or {}
    after = changed["metadata"]["annotations"]
    patch = {k: v for k, v in after.items() if before.get(k) != v}
    assert list(patch) == ["deliver.dev/request"], patch  # the action changes nothing else
    jk.patch(DEPLOYMENTS, ns, name, {"metadata": {"annotations": patch}})
    return str(json.loads(patch["deliver.dev/request"])["id"])


def test_argocd_health_and_actions_on_live_objects(
    kube: Kube, jk: JsonKube, namespace: str, controller: ControllerProcess
) -> None:
    ns, lua = namespace, ArgoLua()
    kube.apps.create_namespaced_deployment(ns, canary("web", "50,pause,100", interval="3s"))
    kube.apps.create_namespaced_deployment(ns, make_deployment("plain", replicas=2))

    # at rest: Healthy, also when the Deployment is paused (Argo CD's built-in check says Suspended)
    wait_stable(jk, ns, "web", controller)
    rest = wait_for(
        lambda: (lambda o: o if lua.health(o)[0] == "Healthy" else None)(deployment(jk, ns, "web")),
        30,
        "web Healthy at rest",
        describe=lambda: lua.health(deployment(jk, ns, "web")),
    )
    record("at-rest", rest)
    held_paused = rest["spec"].get("paused") is True  # the "paused" hold mode (else "policy")
    unmanaged_view = json.loads(json.dumps(rest))
    del unmanaged_view["metadata"]["annotations"]["deliver.dev/strategy"]
    assert lua.health(unmanaged_view) == (("Suspended", "Deployment is paused") if held_paused else ("Healthy", ""))
    assert lua.enabled_actions(rest) == set()

    # a Deployment deliver does not manage: Argo CD's built-in rules
    plain = wait_for(
        lambda: (lambda o: o if lua.health(o)[0] == "Healthy" else None)(deployment(jk, ns, "plain")),
        60,
        "plain Healthy",
        describe=lambda: lua.health(deployment(jk, ns, "plain")),
    )
    record("unmanaged", plain)

    # mid-delivery: Progressing at the first step, Suspended at the manual gate
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    step = record("progressing", when_phase(jk, ns, "web", "Progressing", step=0))
    status, message = lua.health(step)
    assert status == "Progressing" and message.startswith("deliver canary: Progressing"), message
    assert lua.enabled_actions(step) == {"promote", "abort"}
    gate = record("paused-at-gate", when_phase(jk, ns, "web", "Paused", hold="AwaitingPromotion"))
    status, message = lua.health(gate)
    assert status == "Suspended" and "step 2" in message, message
    assert lua.enabled_actions(gate) == {"promote", "abort"}

    # the promote action: the controller takes the request and completes the delivery
    rid = argocd_action(lua, jk, ns, "web", "promote")
    when_phase(jk, ns, "web", "Succeeded", handledRequest=rid)
    # recorded once Healthy: right at Succeeded the old pods may still be terminating, which kstatus
    # and Flux read as InProgress ("Pending termination") whatever deliver says
    done = record(
        "succeeded",
        wait_for(
            lambda: (lambda o: o if lua.health(o)[0] == "Healthy" else None)(deployment(jk, ns, "web")),
            30,
            "web Healthy after the promotion",
            describe=lambda: lua.health(deployment(jk, ns, "web")),
        ),
    )
    assert lua.health(done)[1].startswith("deliver canary: Succeeded")

    # a bad version: rolled back -> Degraded while held paused (else the stable pods' own health),
    # with retry offered
    set_image(kube.apps, ns, "web", "example.com/web:v3", behaviour=CRASHLOOP)
    back = record("rolled-back", when_phase(jk, ns, "web", "RolledBack", timeout=90))
    status, message = lua.health(back)
    expected = "Degraded" if back["spec"].get("paused") is True else "Healthy"
    assert status == expected and "RolledBack" in message, message
    assert lua.enabled_actions(back) == {"retry"}

    # GitOps self-heal writes the failed template again: refused, still RolledBack, still Degraded
    set_image(kube.apps, ns, "web", "example.com/web:v3", behaviour=CRASHLOOP)
    healed = record("self-heal-refused", when_phase(jk, ns, "web", "RolledBack", hold="PreviouslyFailed"))
    assert lua.health(healed)[0] == "Degraded"
    assert healed["spec"]["paused"] is True  # the failed template is held, not rolled out
    assert images(kube, ns, "web") == {"example.com/web:v2"}

    # retry through its action: the controller takes it and delivers the failed revision again
    rid = argocd_action(lua, jk, ns, "web", "retry")
    first = json.loads(back["metadata"]["annotations"]["deliver.dev/state"])["started"]
    wait_for(
        lambda: (lambda st: st.get("handledRequest") == rid and st.get("started", 0) > first)(state(jk, ns, "web")),
        60,
        "the retry taken and a new delivery started",
        describe=lambda: state(jk, ns, "web"),
    )
    when_phase(jk, ns, "web", "RolledBack", timeout=90)  # the crashing version is rolled back again

    # a good version, aborted at the gate through the abort action: Degraded
    kube.apps.patch_namespaced_deployment(
        "web",
        ns,
        {
            "spec": {
                "template": {
                    "metadata": {"labels": {BEHAVIOUR_LABEL: None}},
                    "spec": {"containers": [{"name": "app", "image": "example.com/web:v4"}]},
                }
            }
        },
    )
    when_phase(jk, ns, "web", "Paused", timeout=60, hold="AwaitingPromotion")
    rid = argocd_action(lua, jk, ns, "web", "abort")
    aborted = record("aborted", when_phase(jk, ns, "web", "Aborted", handledRequest=rid))
    status, message = lua.health(aborted)
    expected = "Degraded" if aborted["spec"].get("paused") is True else "Healthy"
    assert status == expected and "Aborted" in message, message

    # an invalid annotation: Degraded, and the controller's Warning Event says the same
    jk.patch(DEPLOYMENTS, ns, "web", {"metadata": {"annotations": {"deliver.dev/steps": "50,20"}}})
    wait_for(lambda: event_messages(jk, ns, "InvalidAnnotation"), 30, "the InvalidAnnotation Event")
    invalid = record("invalid-steps", deployment(jk, ns, "web"))
    status, message = lua.health(invalid)
    assert status == "Degraded" and "weights must increase: 20 after 50" in message, message
    assert "weights must increase: 20 after 50" in " ".join(event_messages(jk, ns, "InvalidAnnotation"))

    # Flux's health assessment (kstatus) on the same live objects: a deliver-managed Deployment is
    # InProgress at rest, because the deployment controller marks a paused Deployment's Progressing
    # condition Unknown/DeploymentPaused (docs/gitops.md#flux)
    verdicts = kstatus(RECORDED)
    assert verdicts["unmanaged"][0] == "Current"
    for label in ("at-rest", "succeeded", "rolled-back", "aborted"):
        assert verdicts[label] == ("InProgress", "ReplicaSet not Available"), (label, verdicts[label])
    for label in ("progressing", "paused-at-gate"):
        assert verdicts[label][0] == "InProgress", (label, verdicts[label])
    progressing = [c for c in rest["status"]["conditions"] if c["type"] == "Progressing"]
    assert [(c["status"], c["reason"]) for c in progressing] == [("Unknown", "DeploymentPaused")]

    # deliver's healthCheckExprs for Flux (gitops/flux/kustomization-health.yaml), through Flux's own
    # CEL evaluator: Current at rest, InProgress mid-delivery, Failed after a rollback or an abort
    assert flux_cel(RECORDED) == {
        "at-rest": "Current",
        "succeeded": "Current",
        "unmanaged": "Current",
        "progressing": "InProgress",
        "paused-at-gate": "InProgress",
        "rolled-back": "Failed",
        "self-heal-refused": "Failed",
        "aborted": "Failed",
        "invalid-steps": "Failed",
    }

    target = os.environ.get("DELIVER_RECORD_ARGOCD")
    if target:
        Path(target).write_text(json.dumps(RECORDED, indent=1, sort_keys=True) + "\n")
