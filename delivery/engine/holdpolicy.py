"""Who holds a template change until deliver acts: the API server's hold policy, or deliver itself.

Kubernetes 1.36+ (``admissionregistration.k8s.io/v1``; beta behind a gate in 1.34-1.35) runs a
``MutatingAdmissionPolicy`` inside the API server. deliver's policy (``manifests``) pauses a
Deployment that carries ``deliver.dev/strategy`` in the very write that changes its pod template, so
no change rolls out natively before deliver decides, and a managed Deployment can stay unpaused at
rest, read by Helm, kubectl, kstatus and Argo CD like any other (``HoldMode.POLICY``). Where the
policy is missing, not bound cluster-wide, or cannot be read, deliver keeps managed Deployments
paused at rest itself (``HoldMode.PAUSED``).

``HoldWatch`` keeps the mode current: it reads the policy and its binding at start, then watches
both; a policy deleted or changed switches to ``paused`` at once and every managed Deployment gets a
pass (which pauses those at rest). deliver's own template writes need no exemption: a revert or a
retry is written while the Deployment is paused or is followed by deliver's own unpause
(docs/hold-modes.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delivery.engine.controller import Informer
from delivery.errors import Forbidden, KubeError, NotFound
from delivery.kube.client import MUTATING_POLICIES, MUTATING_POLICY_BINDINGS, Kube
from delivery.settings import Settings
from strategies.actions import REJECTED_MARK
from strategies.observation import HoldMode

log = logging.getLogger("deliver.holdpolicy")

POLICY_NAME = "deliver-hold-template-changes"
STRATEGY_KEY = "deliver.dev/strategy"

MATCH_CONDITIONS: list[dict[str, str]] = [
    {
        "name": "managed-by-deliver",
        "expression": f"has(object.metadata.annotations) && '{STRATEGY_KEY}' in object.metadata.annotations",
    },
    {"name": "template-changed", "expression": "object.spec.template != oldObject.spec.template"},
]
MUTATION: dict[str, Any] = {
    "patchType": "ApplyConfiguration",
    "applyConfiguration": {"expression": "Object{spec: Object.spec{paused: true}}"},
}


def _deployment_updates() -> dict[str, Any]:
    """The matchConstraints of both admission policies: UPDATE of apps/v1 deployments (not a subresource)."""
    rule = {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments"]}
    return {"resourceRules": [rule]}


def manifests(name: str = POLICY_NAME) -> list[dict[str, Any]]:
    """The policy and its binding, as the chart installs them and ``deliver hold-policy`` prints them."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "deliver"}},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": _deployment_updates(),
            "matchConditions": [dict(c) for c in MATCH_CONDITIONS],
            "mutations": [dict(MUTATION)],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "deliver"}},
        "spec": {"policyName": name},
    }
    return [policy, binding]


GUARD_NAME = "deliver-keep-rejected-templates-held"
REJECTED_CONDITION = (
    "has(oldObject.status) && has(oldObject.status.conditions) && oldObject.status.conditions.exists(c, "
    "c.type == 'Progressing' && c.reason == 'ProgressDeadlineExceeded' && has(c.message) && "
    "c.message.startsWith('{mark}'))"
)


def guard_manifests(name: str = GUARD_NAME) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy and binding that refuse to unpause a Deployment whose template deliver
    rejected (its status carries deliver's mark, ``MarkRejected``) without changing the template: a
    `kubectl rollout resume` of a held rejected template would roll it out natively. Apply another
    template, or `deliver retry` (deliver takes the mark away before it unpauses anything)."""
    rejected = REJECTED_CONDITION.format(mark=REJECTED_MARK)
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "deliver"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": _deployment_updates(),
            "matchConditions": [
                dict(MATCH_CONDITIONS[0]),
                {
                    "name": "unpaused-as-it-is",
                    "expression": "has(oldObject.spec.paused) && oldObject.spec.paused && "
                    "!(has(object.spec.paused) && object.spec.paused) && "
                    "object.spec.template == oldObject.spec.template",
                },
            ],
            "validations": [
                {
                    "expression": f"!({rejected})",
                    "messageExpression": "'deliver rejected the template of ' + object.metadata.name + "
                    "' and holds it: apply another template, or run `deliver retry ' + object.metadata.name + '`'",
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "deliver"}},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def all_manifests(name: str = POLICY_NAME, guard: str = GUARD_NAME) -> list[dict[str, Any]]:
    """What `deliver hold-policy` prints and the chart installs: the hold policy and the guard."""
    return manifests(name) + guard_manifests(guard)


@dataclass(frozen=True)
class HoldStatus:
    """The hold mode in force and, for people, why."""

    mode: HoldMode
    why: str


def _holds(policy: dict[str, Any]) -> str:
    """ "" when the policy pauses every template change of a managed Deployment; else what is wrong."""
    spec = policy.get("spec") or {}
    rules = (spec.get("matchConstraints") or {}).get("resourceRules") or []
    covered = any(
        "apps" in (r.get("apiGroups") or [])
        and "deployments" in (r.get("resources") or [])
        and set(r.get("operations") or []) & {"UPDATE", "*"}
        for r in rules
    )
    if not covered:
        return "its matchConstraints do not cover UPDATE of apps/v1 deployments"
    conditions = [{"name": c.get("name"), "expression": c.get("expression")} for c in spec.get("matchConditions") or []]
    if conditions != MATCH_CONDITIONS:
        return "its matchConditions differ from deliver's (`deliver hold-policy` prints them)"
    mutations = spec.get("mutations") or []
    if not any(m.get("applyConfiguration") == MUTATION["applyConfiguration"] for m in mutations):
        return "it does not set spec.paused: true (`deliver hold-policy` prints deliver's)"
    if spec.get("failurePolicy", "Fail") != "Fail":
        return "its failurePolicy is not Fail (a failed evaluation would let a change roll out)"
    return ""


def _served(kube: Kube) -> bool:
    """Does the API server serve MutatingAdmissionPolicy at all (discovery)?"""
    try:
        found = kube.request("GET", f"/apis/{MUTATING_POLICIES.group}/{MUTATING_POLICIES.version}")
    except KubeError:
        return False
    return any(r.get("name") == MUTATING_POLICIES.plural for r in found.get("resources") or [])


def detect(kube: Kube, name: str = POLICY_NAME) -> HoldStatus:
    """Read the policy and its binding: ``policy`` only when both hold every managed Deployment."""
    paused = HoldMode.PAUSED
    try:
        policy = kube.get(MUTATING_POLICIES, None, name)
    except NotFound:
        if not _served(kube):
            return HoldStatus(
                paused,
                "the API server does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy "
                "(Kubernetes 1.36+): deliver pauses managed Deployments at rest",
            )
        return HoldStatus(paused, f"no MutatingAdmissionPolicy {name} (install it: `deliver hold-policy`)")
    except Forbidden:
        return HoldStatus(paused, f"cannot read MutatingAdmissionPolicy {name}: forbidden (the chart's ClusterRole)")
    except KubeError as exc:
        return HoldStatus(paused, f"cannot read MutatingAdmissionPolicy {name}: {exc}")
    wrong = _holds(policy)
    if wrong:
        return HoldStatus(paused, f"MutatingAdmissionPolicy {name} does not hold template changes: {wrong}")
    try:
        bindings = kube.items(MUTATING_POLICY_BINDINGS, None)
    except KubeError as exc:
        return HoldStatus(paused, f"cannot list MutatingAdmissionPolicyBindings: {exc}")
    ours = [b for b in bindings if (b.get("spec") or {}).get("policyName") == name]
    if not ours:
        return HoldStatus(paused, f"MutatingAdmissionPolicy {name} has no binding (install it: `deliver hold-policy`)")
    for b in ours:
        spec = b.get("spec") or {}
        if not spec.get("matchResources") and not spec.get("paramRef"):
            return HoldStatus(HoldMode.POLICY, f"MutatingAdmissionPolicy {name} holds template changes")
    return HoldStatus(
        paused,
        f"the bindings of MutatingAdmissionPolicy {name} are limited by matchResources or paramRef; "
        "deliver holds changes itself (paused at rest)",
    )


class HoldWatch:
    """The hold mode in force, kept current from the policy and its binding.

    ``forced``: a mode fixed by the operator (``deliver run --hold-mode``); nothing is read.
    ``on_change`` is called (from a watch thread) with the new status whenever the mode changes."""

    def __init__(
        self,
        kube: Kube,
        stop: threading.Event,
        name: str = POLICY_NAME,
        forced: HoldMode | None = None,
        on_change: Callable[[HoldStatus], None] | None = None,
        settings: Settings = Settings(),
    ) -> None:
        self.kube = kube
        self.stop = stop
        self.name = name
        self.forced = forced
        self.on_change = on_change
        self.settings = settings  # settings.hold_policy.recheck: the backstop re-read, and the poll without the API
        self._lock = threading.Lock()
        if forced is not None:
            self.status = HoldStatus(forced, f"set by --hold-mode={forced.value}")
        else:
            self.status = detect(kube, name)

    def mode(self) -> HoldMode:
        return self.status.mode

    def recheck(self) -> HoldStatus:
        """Read the policy again; tell ``on_change`` when the mode moved."""
        if self.forced is not None:
            return self.status
        found = detect(self.kube, self.name)
        with self._lock:
            before, self.status = self.status, found
        if found.mode is not before.mode:
            log.warning(
                "hold mode changed",
                extra={"mode": found.mode.value, "was": before.mode.value, "why": found.why},
            )
            if self.on_change is not None:
                self.on_change(found)
        return found

    def _on_event(self, type_: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("name") == self.name or (obj.get("spec") or {}).get("policyName") == self.name:
            self.recheck()

    def start(self) -> list[threading.Thread]:
        """Watch the policy and its bindings (an Informer each), with a periodic re-read as a backstop
        (a watch that broke, an API that appears after an upgrade)."""
        if self.forced is not None:
            return []
        informers = [
            Informer(self.kube, MUTATING_POLICIES, None, self._on_event, self.stop, settings=self.settings),
            Informer(self.kube, MUTATING_POLICY_BINDINGS, None, self._on_event, self.stop, settings=self.settings),
        ]
        threads = [i.thread() for i in informers if self._api_exists()]
        threads.append(threading.Thread(target=self._poll, name="hold-mode", daemon=True))
        for t in threads:
            t.start()
        return threads

    def _api_exists(self) -> bool:
        try:
            self.kube.list(MUTATING_POLICIES, None, limit=1)
        except KubeError:
            return False
        return True

    def _poll(self) -> None:
        while not self.stop.wait(self.settings.hold_policy.recheck):
            try:
                self.recheck()
            except Exception as exc:  # the backstop must never die
                log.warning("hold mode re-read failed", extra={"error": repr(exc)})
