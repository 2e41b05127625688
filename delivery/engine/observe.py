"""Build the Observation a planner needs from the cluster (reads only)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from delivery import templates
from delivery.engine.health import pod_health
from delivery.engine.state import read_request
from delivery.errors import KubeError
from delivery.kube.client import PDBS, PODS, REPLICASETS, SERVICES, Kube, selector_string
from delivery.labels import selects
from delivery.routing import kinds as routers
from delivery.spec import leftover_routing
from strategies.actions import REJECTED_MARK
from strategies.observation import Disruption, Leftovers, Observation, PodHealth, ServiceObs, VersionObs


def _ts(text: str | None) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def _controlled_by(obj: dict[str, Any], uid: str) -> bool:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == uid:
            return True
    return False


def _has_controller(obj: dict[str, Any]) -> bool:
    return any(ref.get("controller") for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def replicasets(kube: Kube, deployment: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ReplicaSets the Deployment controls, deliver's own ReplicaSets for this Deployment)."""
    meta = deployment["metadata"]
    ns, uid = meta["namespace"], meta["uid"]
    selector = selector_string(deployment["spec"]["selector"])
    owned = [rs for rs in kube.items(REPLICASETS, ns, selector) if _controlled_by(rs, uid)]
    ours = [
        rs for rs in kube.items(REPLICASETS, ns, f"{templates.OWNER_LABEL}={meta['name']}") if not _has_controller(rs)
    ]
    return owned, ours


def held_replicasets(kube: Kube, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's stable ReplicaSet while deliver holds it for an exact canary share (HoldStable)."""
    meta = deployment["metadata"]
    found = kube.items(REPLICASETS, meta["namespace"], f"{templates.HELD_LABEL}={meta['name']}")
    return [rs for rs in found if not _has_controller(rs)]


def disruption_of(kube: Kube, deployment: dict[str, Any]) -> Disruption:
    """What the user allows to be unavailable: the Deployment's rolling-update limits and the first
    PodDisruptionBudget whose selector selects its pods (read only for canary Deployments)."""
    spec = deployment["spec"]
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    found = Disruption(
        strategy=str(strategy.get("type") or "RollingUpdate"),
        max_unavailable=str(rolling.get("maxUnavailable", "25%")),
        max_surge=str(rolling.get("maxSurge", "25%")),
    )
    annotations = deployment["metadata"].get("annotations") or {}
    if str(annotations.get("deliver.dev/strategy", "")).strip() != "canary":
        return found
    labels = templates.without_hash(spec["template"])["metadata"].get("labels") or {}
    try:
        budgets = kube.items(PDBS, deployment["metadata"]["namespace"])
    except KubeError:
        return Disruption(found.strategy, found.max_unavailable, found.max_surge, unknown=True)
    for pdb in budgets:
        pspec = pdb.get("spec") or {}
        selector = pspec.get("selector")
        if selector is None or not selects(selector, labels):
            continue
        return Disruption(
            found.strategy,
            found.max_unavailable,
            found.max_surge,
            pdb_min_available=str(pspec.get("minAvailable", "")),
            pdb_max_unavailable=str(pspec.get("maxUnavailable", "")),
        )
    return found


def services_of(kube: Kube, deployment: dict[str, Any]) -> tuple[ServiceObs, ...]:
    """The Services in front of this Deployment's pods, and those deliver created for it."""
    meta = deployment["metadata"]
    labels = templates.without_hash(deployment["spec"]["template"])["metadata"].get("labels") or {}
    found = []
    for svc in kube.items(SERVICES, meta["namespace"]):
        selector = (svc.get("spec") or {}).get("selector") or {}
        ours = (svc["metadata"].get("labels") or {}).get(templates.OWNER_LABEL) == meta["name"]
        if ours or templates.fronts(selector, labels):
            found.append(ServiceObs(svc["metadata"]["name"], str(selector.get(templates.HASH_LABEL, "")), ours))
    return tuple(found)


def observe(kube: Kube, deployment: dict[str, Any], now: float, router_weight: int | None = None) -> Observation:
    meta, spec = deployment["metadata"], deployment["spec"]
    status = deployment.get("status") or {}
    ns = meta["namespace"]
    owned, ours = replicasets(kube, deployment)
    held = held_replicasets(kube, deployment)
    pods = kube.items(PODS, ns, selector_string(spec["selector"]))
    by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in pods:
        by_hash[((pod.get("metadata") or {}).get("labels") or {}).get(templates.HASH_LABEL, "")].append(pod)
    versions = []
    listed = [(r, True, False) for r in owned] + [(r, True, True) for r in held] + [(r, False, False) for r in ours]
    for rs, is_owned, is_held in listed:
        tpl = rs["spec"]["template"]
        pod_hash = ((tpl.get("metadata") or {}).get("labels") or {}).get(templates.HASH_LABEL, "")
        rstatus = rs.get("status") or {}
        versions.append(
            VersionObs(
                name=rs["metadata"]["name"],
                pod_hash=pod_hash,
                revision=templates.revision(tpl),
                owned=is_owned,
                replicas=int(rs["spec"].get("replicas") or 0),
                ready=int(rstatus.get("readyReplicas") or 0),
                available=int(rstatus.get("availableReplicas") or 0),
                created=_ts(rs["metadata"].get("creationTimestamp")),
                health=pod_health(by_hash.get(pod_hash, []), now) if pod_hash else PodHealth(),
                template=templates.without_hash(tpl),
                held=is_held,
                status_replicas=int(rstatus.get("replicas") or 0),
            )
        )
    exceeded = [
        str(c.get("message") or "")
        for c in status.get("conditions") or []
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
    ]
    # deliver's own mark of a rejected template (MarkRejected) is not the Deployment controller's deadline
    marked = any(m.startswith(REJECTED_MARK) for m in exceeded)
    deadline = bool(exceeded) and not marked
    verb, rid = read_request(deployment)
    return Observation(
        services=services_of(kube, deployment),
        disruption=disruption_of(kube, deployment),
        now=now,
        namespace=ns,
        name=meta["name"],
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        paused=bool(spec.get("paused")),
        target_revision=templates.revision(spec["template"]),
        native_strategy=(spec.get("strategy") or {}).get("type", "RollingUpdate"),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        total_replicas=int(status.get("replicas") or 0),
        deadline_exceeded=deadline,
        rejected_marked=marked,
        versions=tuple(versions),
        request=verb,
        request_id=rid,
        router_weight=router_weight,
        template=spec["template"],
    )


def leftovers(kube: Kube, deployment: dict[str, Any]) -> Leftovers:
    """What a Deployment whose ``deliver.dev/strategy`` was removed still has of deliver's (reads only):
    the Services deliver made or pinned, the route its remaining annotations declare, the ReplicaSets
    deliver holds or owns for it."""
    meta = deployment["metadata"]
    router, stable_service, canary_service, preview_service = leftover_routing(deployment)
    described = routers.get(router.kind)
    app = templates.without_hash(deployment["spec"]["template"])["metadata"].get("labels") or {}
    services = []
    for svc in kube.items(SERVICES, meta["namespace"]):
        selector = (svc.get("spec") or {}).get("selector") or {}
        ours = (svc["metadata"].get("labels") or {}).get(templates.OWNER_LABEL) == meta["name"]
        pinned = templates.HASH_LABEL in selector
        if ours or (pinned and all(app.get(k) == v for k, v in selector.items() if k != templates.HASH_LABEL)):
            services.append(ServiceObs(svc["metadata"]["name"], str(selector.get(templates.HASH_LABEL, "")), ours))
    _, ours_rs = replicasets(kube, deployment)
    return Leftovers(
        resource_version=str(meta["resourceVersion"]),
        services=tuple(services),
        preview_service=preview_service,
        router=router,
        stable_service=stable_service,
        canary_service=canary_service,
        route_weighted=described is not None and described.weighted,
        route_kept=described.kept_at_release(router.name) if described is not None and described.weighted else "",
        held=bool(held_replicasets(kube, deployment)),
        replicasets=tuple(rs["metadata"]["name"] for rs in ours_rs),
    )
