"""Carry out a planner's actions against the cluster. Every action is idempotent."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from delivery import templates
from delivery.engine.observe import held_replicasets, replicasets
from delivery.errors import NotFound, StateError
from delivery.integrations.events import post_event
from delivery.kube.client import DEPLOYMENTS, JSON_PATCH, REPLICASETS, SERVICES, Kube
from delivery.routing.base import Router
from delivery.spec import REQUEST, STATE
from strategies.actions import (
    REJECTED_MARK,
    Action,
    AdoptNew,
    Analyse,
    ApplyTemplate,
    CallHook,
    DeleteNew,
    DeleteReplicaSet,
    DeleteService,
    DisownNew,
    EnsureService,
    HoldStable,
    MarkRejected,
    PostEvent,
    ReleaseStable,
    RemoveRecord,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SetWeight,
    SwitchActive,
    UnpinService,
)
from strategies.reasons import EventReason
from strategies.record import DeliveryState
from strategies.spec import Affinity, DeliverySpec, Strategy

log = logging.getLogger("deliver.act")


@dataclass
class Context:
    kube: Kube
    deployment: dict[str, Any]
    spec: DeliverySpec
    state: DeliveryState
    router: Router
    analyse: Callable[[Analyse], None]
    # called after each Event a plan posts, with (deployment, record, type, reason, message): the
    # notifications (delivery/integrations/notify.py) come from the very place the Events do
    notify: Callable[[dict[str, Any], DeliveryState, str, EventReason, str], None] | None = None
    call_hook: Callable[[CallHook], None] | None = None  # asks the hook pool (delivery/integrations/hooks.py)

    @property
    def ns(self) -> str:
        return str(self.deployment["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.deployment["metadata"]["name"])


def release_context(kube: Kube, deployment: dict[str, Any], router: Router) -> Context:
    """The Context a release's actions run in (strategies/release.py): the strategy annotation is gone,
    so there is no spec or record to read, and a release's actions read neither; ``router`` is the one
    the remaining annotations declare (its route is reset)."""
    return Context(kube, deployment, DeliverySpec(Strategy.ROLLING), DeliveryState(), router, _not_planned)


def _not_planned(a: Analyse) -> None:
    raise StateError("a release plans no analysis")


def execute(ctx: Context, action: Action) -> None:
    handler = _HANDLERS[type(action)]
    handler(ctx, action)


def _owner_ref(deployment: dict[str, Any], controller: bool) -> dict[str, Any]:
    meta = deployment["metadata"]
    # blockOwnerDeletion stays false: setting it needs `update deployments/finalizers` where the
    # OwnerReferencesPermissionEnforcement admission plugin runs, and background GC works without it.
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": False,
    }


def _set_paused(ctx: Context, a: SetPaused) -> None:
    if bool(ctx.deployment["spec"].get("paused")) != a.paused:
        ctx.deployment = ctx.kube.patch(DEPLOYMENTS, ctx.ns, ctx.name, {"spec": {"paused": a.paused}})


def _scale_new(ctx: Context, a: ScaleNew) -> None:
    d = ctx.deployment
    template = d["spec"]["template"]
    rev = templates.revision(template)
    if rev != ctx.state.revision:
        log.info("template moved on; not scaling a stale revision", extra={"revision": rev})
        return
    _, ours = replicasets(ctx.kube, d)
    mine = [rs for rs in ours if templates.revision(rs["spec"]["template"]) == rev]
    replicas_note = {
        "deployment.kubernetes.io/desired-replicas": str(d["spec"].get("replicas", 1)),
        "deployment.kubernetes.io/max-replicas": str(d["spec"].get("replicas", 1)),
    }
    if mine:
        rs = mine[0]
        if int(rs["spec"].get("replicas") or 0) != a.replicas or any(
            (rs["metadata"].get("annotations") or {}).get(k) != v for k, v in replicas_note.items()
        ):
            # Guarded by the resourceVersion the plan was made on (as every ReplicaSet scale write):
            # a ReplicaSet changed meanwhile (a lagging cache, another writer) makes this a Conflict,
            # the cache re-reads it and deliver plans again, instead of scaling from stale numbers.
            ctx.kube.patch(
                REPLICASETS,
                ctx.ns,
                rs["metadata"]["name"],
                {
                    "metadata": {"annotations": replicas_note, "resourceVersion": rs["metadata"]["resourceVersion"]},
                    "spec": {"replicas": a.replicas},
                },
            )
        return
    selector = copy.deepcopy(d["spec"]["selector"])
    selector.setdefault("matchLabels", {})[templates.HASH_LABEL] = rev
    name = f"{ctx.name}-{rev}"[:253]
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": ctx.ns,
            "labels": {templates.OWNER_LABEL: ctx.name, templates.REVISION_LABEL: rev},
            "annotations": replicas_note,
            "ownerReferences": [_owner_ref(d, controller=False)],
        },
        "spec": {
            "replicas": a.replicas,
            "minReadySeconds": int(d["spec"].get("minReadySeconds") or 0),
            "selector": selector,
            "template": templates.with_hash(template, rev),
        },
    }
    # A Conflict (the name is taken: a ReplicaSet the observation did not show yet) is a lost race:
    # the pass is planned again, and the planner removes a leftover of the Deployment's it then sees
    # (strategies/plan.py, ``_leftover_replicasets``).
    ctx.kube.create(REPLICASETS, ctx.ns, body)


def _delete_new(ctx: Context, a: DeleteNew) -> None:
    _, ours = replicasets(ctx.kube, ctx.deployment)
    for rs in ours:
        if a.keep_revision and templates.revision(rs["spec"]["template"]) == a.keep_revision:
            continue
        name = rs["metadata"]["name"]
        if int(rs["spec"].get("replicas") or 0):
            ctx.kube.patch(REPLICASETS, ctx.ns, name, {"spec": {"replicas": 0}})
        ctx.kube.delete(REPLICASETS, ctx.ns, name)


def _adopt(ctx: Context, a: AdoptNew) -> None:
    d = ctx.deployment
    _, ours = replicasets(ctx.kube, d)
    for rs in ours:
        if templates.revision(rs["spec"]["template"]) != ctx.state.revision:
            continue
        labels = dict(rs["spec"]["template"]["metadata"].get("labels") or {})
        labels[templates.OWNER_LABEL] = None  # no longer deliver's: the Deployment's
        ctx.kube.patch(
            REPLICASETS,
            ctx.ns,
            rs["metadata"]["name"],
            {
                "metadata": {
                    "labels": labels,
                    "resourceVersion": rs["metadata"]["resourceVersion"],
                    "ownerReferences": [_owner_ref(d, controller=True)],
                    "annotations": {"deployment.kubernetes.io/desired-replicas": str(d["spec"].get("replicas", 1))},
                }
            },
        )


def _disown(ctx: Context, a: DisownNew) -> None:
    """The Deployment's ReplicaSet of ``a.revision`` becomes deliver's own, in one write guarded by its
    resourceVersion: labels other than pod-template-hash give way to deliver's (the Deployment's
    selector no longer matches it, so its controller neither scales nor re-adopts it), its controller
    reference becomes a plain owner reference (still garbage-collected with the Deployment), and with
    ``a.replicas`` its size changes in the same write. Its pods keep their labels."""
    owned, ours = replicasets(ctx.kube, ctx.deployment)
    theirs = owned + held_replicasets(ctx.kube, ctx.deployment)
    for rs in theirs + ours:
        if templates.revision(rs["spec"]["template"]) != a.revision:
            continue
        labels: dict[str, Any] = {k: None for k in rs["metadata"].get("labels") or {} if k != templates.HASH_LABEL}
        labels.update({templates.OWNER_LABEL: ctx.name, templates.REVISION_LABEL: a.revision})
        patch: dict[str, Any] = {"metadata": {"resourceVersion": rs["metadata"]["resourceVersion"]}}
        if rs in theirs:
            patch["metadata"].update(labels=labels, ownerReferences=[_owner_ref(ctx.deployment, controller=False)])
        elif a.replicas is None or int(rs["spec"].get("replicas") or 0) == a.replicas:
            continue  # deliver's already, at its size
        if a.replicas is not None:
            patch["spec"] = {"replicas": a.replicas}
        ctx.kube.patch(REPLICASETS, ctx.ns, rs["metadata"]["name"], patch)


def _stable_template(ctx: Context, stable_revision: str) -> dict[str, Any]:
    owned, _ = replicasets(ctx.kube, ctx.deployment)
    for rs in owned + held_replicasets(ctx.kube, ctx.deployment):
        if templates.revision(rs["spec"]["template"]) == stable_revision:
            return templates.without_hash(rs["spec"]["template"])
    raise StateError(f"stable revision {stable_revision} has no ReplicaSet left to restore from")


def _replace_template(ctx: Context, template: dict[str, Any]) -> None:
    if templates.revision(ctx.deployment["spec"]["template"]) == templates.revision(template):
        return
    # Guarded by the template deliver planned on: a user's (or GitOps) template write that landed
    # meanwhile makes this fail (422) and deliver plans again instead of overwriting it. (Not the
    # resourceVersion: status updates by the Deployment controller would make that fail for nothing.)
    planned = ctx.deployment["spec"]["template"]
    ctx.deployment = ctx.kube.patch(
        DEPLOYMENTS,
        ctx.ns,
        ctx.name,
        [
            {"op": "test", "path": "/spec/template", "value": planned},
            {"op": "replace", "path": "/spec/template", "value": template},
        ],
        content_type=JSON_PATCH,
    )


def _revert(ctx: Context, a: RevertTemplate) -> None:
    try:
        template = _stable_template(ctx, a.stable_revision)
    except StateError:
        if not a.template or templates.revision(a.template) != a.stable_revision:
            raise
        template = a.template  # its ReplicaSet is gone (revisionHistoryLimit): the record's copy
    _replace_template(ctx, template)


def _apply_template(ctx: Context, a: ApplyTemplate) -> None:
    _replace_template(ctx, templates.without_hash(a.template))


def _mark_rejected(ctx: Context, a: MarkRejected) -> None:
    """Write (or take away) deliver's Progressing condition on the Deployment's status. While the
    Deployment is paused its controller keeps a ProgressDeadlineExceeded condition as it is; once it
    runs unpaused and complete it writes its own (NewReplicaSetAvailable)."""
    status = ctx.deployment.get("status") or {}
    conditions = [dict(c) for c in status.get("conditions") or []]
    progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
    ours = progressing is not None and str(progressing.get("message") or "").startswith(REJECTED_MARK)
    if not a.message and not ours:
        return
    if a.message and ours and progressing is not None and progressing.get("message") == a.message:
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if a.message:
        mark = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": a.message}
    else:  # what the Deployment controller itself says of a paused Deployment
        mark = {
            "type": "Progressing",
            "status": "Unknown",
            "reason": "DeploymentPaused",
            "message": "Deployment is paused",
        }
    mark.update(lastUpdateTime=now, lastTransitionTime=now)
    kept = [c for c in conditions if c.get("type") != "Progressing"] + [mark]
    ctx.deployment = ctx.kube.patch(DEPLOYMENTS, ctx.ns, ctx.name, {"status": {"conditions": kept}}, sub="status")


def _hold_stable(ctx: Context, a: HoldStable) -> None:
    """Run the stable ReplicaSet at ``a.replicas``, out of the Deployment controller's hands.

    A paused Deployment controller still scales its one active ReplicaSet to spec.replicas, and when
    none is active it scales its newest one up to spec.replicas. So deliver holds the stable
    ReplicaSet and, first, every other ReplicaSet of the Deployment with no replicas (its history):
    each in one merge patch guarded by its resourceVersion, its labels other than pod-template-hash
    give way to ``deliver.dev/held-by`` (the Deployment's selector no longer matches it, so the
    controller neither scales nor re-adopts it) and its controller reference becomes a plain owner
    reference (still garbage-collected with the Deployment). Pods, their labels and the Services in
    front of them do not change. ``ReleaseStable`` hands them all back.
    """
    owned, _ = replicasets(ctx.kube, ctx.deployment)
    held = held_replicasets(ctx.kube, ctx.deployment)

    def is_stable(rs: dict[str, Any]) -> bool:
        return templates.revision(rs["spec"]["template"]) == ctx.state.stable_revision

    # the held one, else the active one, else (a held rollback, delivery/steps.held_undo) the newest
    stable = (
        [rs for rs in held if is_stable(rs)]
        or [rs for rs in owned if is_stable(rs) and int(rs["spec"].get("replicas") or 0)]
        or sorted((rs for rs in owned if is_stable(rs)), key=lambda rs: str(rs["metadata"].get("creationTimestamp")))[
            -1:
        ]
    )
    if not stable:
        log.info("no active stable ReplicaSet to hold", extra={"revision": ctx.state.stable_revision})
        return
    for rs in owned:
        if rs is not stable[0] and not int(rs["spec"].get("replicas") or 0):
            _detach(ctx, rs, None)  # history first: the controller must find none to scale up
    if stable[0] in held:
        if int(stable[0]["spec"].get("replicas") or 0) != a.replicas:
            ctx.kube.patch(
                REPLICASETS,
                ctx.ns,
                stable[0]["metadata"]["name"],
                {
                    "metadata": {"resourceVersion": stable[0]["metadata"]["resourceVersion"]},
                    "spec": {"replicas": a.replicas},
                },
            )
        return
    _detach(ctx, stable[0], a.replicas)


def _detach(ctx: Context, rs: dict[str, Any], replicas: int | None) -> None:
    labels: dict[str, Any] = {k: None for k in rs["metadata"].get("labels") or {} if k != templates.HASH_LABEL}
    labels[templates.HELD_LABEL] = ctx.name
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": rs["metadata"]["resourceVersion"],
            "labels": labels,
            "ownerReferences": [_owner_ref(ctx.deployment, controller=False)],
        }
    }
    if replicas is not None:
        patch["spec"] = {"replicas": replicas}
    ctx.kube.patch(REPLICASETS, ctx.ns, rs["metadata"]["name"], patch)


def _release_stable(ctx: Context, a: ReleaseStable) -> None:
    """Hand every ReplicaSet deliver holds for this Deployment back to it: the labels of its pod
    template (which the Deployment created it with) and the Deployment's controller reference again,
    the one with pods first."""
    # The ReplicaSet with pods first: handed back alone, the history (no pods) would have the paused
    # controller scale its newest one up, as when none is active.
    for rs in sorted(held_replicasets(ctx.kube, ctx.deployment), key=lambda rs: -int(rs["spec"].get("replicas") or 0)):
        labels: dict[str, Any] = dict((rs["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels[templates.HELD_LABEL] = None
        ctx.kube.patch(
            REPLICASETS,
            rs["metadata"]["namespace"],
            rs["metadata"]["name"],
            {
                "metadata": {
                    "resourceVersion": rs["metadata"]["resourceVersion"],
                    "labels": labels,
                    "ownerReferences": [_owner_ref(ctx.deployment, controller=True)],
                }
            },
        )


def _set_weight(ctx: Context, a: SetWeight) -> None:
    match = ctx.spec.match if a.match else None
    pin = Affinity(f"deliver-{ctx.name}", ctx.state.stable_revision, ctx.state.revision) if a.pin else None
    if a.weight <= 0 and match is None and not a.mirror and pin is None:
        ctx.router.reset()
    else:
        ctx.router.set_weight(a.weight, match, a.mirror, pin)


def _service_ports(ctx: Context) -> list[dict[str, Any]]:
    for name in (ctx.spec.active_service, ctx.name):
        try:
            svc = ctx.kube.get(SERVICES, ctx.ns, name)
            return [
                {k: v for k, v in p.items() if k in ("name", "port", "targetPort", "protocol", "appProtocol")}
                for p in svc["spec"].get("ports") or []
            ]
        except NotFound:
            continue
    ports = []
    for c in ctx.deployment["spec"]["template"]["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            entry = {"port": p["containerPort"], "targetPort": p["containerPort"], "protocol": p.get("protocol", "TCP")}
            if p.get("name"):
                entry["name"] = p["name"]
            ports.append(entry)
    if len(ports) > 1:
        for i, p in enumerate(ports):
            p.setdefault("name", f"port-{i}")
    return ports or [{"port": 80, "targetPort": 80, "protocol": "TCP"}]


def _ensure_service(ctx: Context, name: str, pod_hash: str, patch_selector: bool = True) -> None:
    base = dict(ctx.deployment["spec"]["selector"].get("matchLabels") or {})
    selector = dict(base, **{templates.HASH_LABEL: pod_hash})
    try:
        svc = ctx.kube.get(SERVICES, ctx.ns, name)
    except NotFound:
        ctx.kube.create(
            SERVICES,
            ctx.ns,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": ctx.ns,
                    "labels": {templates.OWNER_LABEL: ctx.name},
                    "ownerReferences": [_owner_ref(ctx.deployment, controller=False)],
                },
                "spec": {"selector": selector, "ports": _service_ports(ctx)},
            },
        )
        return
    if patch_selector and (svc["spec"].get("selector") or {}).get(templates.HASH_LABEL) != pod_hash:
        ctx.kube.patch(SERVICES, ctx.ns, name, {"spec": {"selector": {templates.HASH_LABEL: pod_hash}}})


def _ensure_service_action(ctx: Context, a: EnsureService) -> None:
    _ensure_service(ctx, a.name, a.pod_hash, patch_selector=a.repoint)


def _switch(ctx: Context, a: SwitchActive) -> None:
    """One patch of the active Service's selector (creating the Service if it does not exist)."""
    _ensure_service(ctx, a.service, a.pod_hash)


def _unpin(ctx: Context, a: UnpinService) -> None:
    try:
        svc = ctx.kube.get(SERVICES, ctx.ns, a.name)
    except NotFound:
        return
    if templates.HASH_LABEL in ((svc.get("spec") or {}).get("selector") or {}):
        ctx.kube.patch(SERVICES, ctx.ns, a.name, {"spec": {"selector": {templates.HASH_LABEL: None}}})


def _delete_service(ctx: Context, a: DeleteService) -> None:
    ctx.kube.delete(SERVICES, ctx.ns, a.name)


def _delete_replicaset(ctx: Context, a: DeleteReplicaSet) -> None:
    ctx.kube.delete(REPLICASETS, ctx.ns, a.name)


def _remove_record(ctx: Context, a: RemoveRecord) -> None:
    ctx.deployment = ctx.kube.patch(
        DEPLOYMENTS,
        ctx.ns,
        ctx.name,
        {
            "metadata": {"resourceVersion": a.resource_version, "annotations": {STATE: None, REQUEST: None}},
            "spec": {"paused": False},
        },
    )


def _analyse(ctx: Context, a: Analyse) -> None:
    ctx.analyse(a)


def _post_event(ctx: Context, a: PostEvent) -> None:
    post_event(ctx.kube, ctx.deployment, a.type, a.reason, a.message)
    if ctx.notify is not None:
        # A notification never changes what a delivery does: a notifier that breaks (its queue, a
        # target it cannot build) is logged, and the plan's other actions still run (issue 24; found
        # by the crash-point explorer's notifier-broken scenario, which stopped the pass here).
        try:
            ctx.notify(ctx.deployment, ctx.state, a.type, a.reason, a.message)
        except Exception:  # any failure of the notifier, by design
            log.exception("notification failed; the delivery goes on", extra={"reason": a.reason.value})


def _call_hook(ctx: Context, a: CallHook) -> None:
    if ctx.call_hook is not None:
        ctx.call_hook(a)


_HANDLERS: dict[type, Callable[[Context, Any], None]] = {
    SetPaused: _set_paused,
    MarkRejected: _mark_rejected,
    ScaleNew: _scale_new,
    DeleteNew: _delete_new,
    AdoptNew: _adopt,
    DisownNew: _disown,
    RevertTemplate: _revert,
    ApplyTemplate: _apply_template,
    SetWeight: _set_weight,
    HoldStable: _hold_stable,
    ReleaseStable: _release_stable,
    EnsureService: _ensure_service_action,
    SwitchActive: _switch,
    UnpinService: _unpin,
    DeleteService: _delete_service,
    DeleteReplicaSet: _delete_replicaset,
    RemoveRecord: _remove_record,
    Analyse: _analyse,
    PostEvent: _post_event,
    CallHook: _call_hook,
}
