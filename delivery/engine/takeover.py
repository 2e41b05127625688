"""Which existing Services a Deployment's annotations may have deliver rewrite (invariant 4, issue 24).

A strategy pins Services by name: blue-green's active and preview Services, a routed canary's
stable and canary Services. The names come from annotations the user of the Deployment writes, and
so do the labels of its pod template. A Service may be rewritten only if it is

* **deliver's own for this Deployment**: deliver's owner label naming it *and* an ownerReference
  to this Deployment's uid (what deliver writes when it creates one; the label alone could be set by
  whoever made the Service); or
* **already serving this Deployment, and only it**: its selector (ignoring ``pod-template-hash``) is
  non-empty and a subset of the pod template's labels, and in the namespace (a Service selects only
  there)

  - every pod it selects belongs to a ReplicaSet of this Deployment (its own, deliver's, or one
    deliver holds for it): the pod's controller reference names a ReplicaSet with an ownerReference
    to this Deployment's uid (terminating pods, and pods whose ReplicaSet is gone, are being
    removed and do not count);
  - no other Deployment's pod template has labels it selects: a Deployment scaled to zero still
    owns its Service.

A selector being a subset of the pod labels was the whole rule before; it is not enough, because a
hostile user can copy another team's labels into their own template and name that team's Service.
Reads only (through the informer cache in the controller); the caller refuses the annotation.
"""

from __future__ import annotations

from typing import Any

from delivery import labels, templates
from delivery.errors import NotFound, SpecError
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS, SERVICES, Kube, selector_string
from delivery.spec import PREFIX
from strategies.spec import DeliverySpec, Strategy

JSON = dict[str, Any]


def named_services(spec: DeliverySpec) -> tuple[tuple[str, str], ...]:
    """(annotation key without the prefix, Service name) of every Service the strategy pins."""
    if spec.strategy is Strategy.BLUE_GREEN:
        return (("active-service", spec.active_service), ("preview-service", spec.preview_service))
    if spec.strategy is Strategy.CANARY and spec.router.kind != "replica":
        return (("stable-service", spec.stable_service), ("canary-service", spec.canary_service))
    return ()


def is_ours(service: JSON, deployment: JSON) -> bool:
    """Created by deliver for this Deployment: its owner label and an ownerReference to its uid."""
    meta = service.get("metadata") or {}
    dmeta = deployment.get("metadata") or {}
    if (meta.get("labels") or {}).get(templates.OWNER_LABEL) != dmeta.get("name"):
        return False
    return any(ref.get("uid") == dmeta.get("uid") for ref in meta.get("ownerReferences") or [])


def serves_only(kube: Kube, service: JSON, deployment: JSON) -> str:
    """Why ``service`` is not a Service in front of this Deployment's pods alone ("" when it is)."""
    meta = deployment["metadata"]
    ns, uid = meta["namespace"], meta["uid"]
    if (service.get("metadata") or {}).get("namespace", ns) != ns:
        return "it is in another namespace"
    selector = (service.get("spec") or {}).get("selector") or {}
    rest = {k: v for k, v in selector.items() if k != templates.HASH_LABEL}
    pod_labels = (templates.without_hash(deployment["spec"]["template"]).get("metadata") or {}).get("labels") or {}
    if not templates.fronts(rest, pod_labels):
        return "it does not select this Deployment's pods"
    query = selector_string({"matchLabels": rest})
    mine: dict[str, bool | None] = {}  # ReplicaSet name -> this Deployment's (None: gone)
    for pod in kube.items(PODS, ns, query):
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue  # terminating: no Service sends it traffic, and it is going
        ctl = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
        if ctl is None or ctl.get("kind") != "ReplicaSet":
            return f"it also selects pod {meta.get('name')}, which is not this Deployment's"
        name = str(ctl.get("name"))
        if name not in mine:
            mine[name] = _owned_by(kube, ns, name, str(ctl.get("uid") or ""), uid)
        if mine[name] is False:
            return f"it also selects pod {meta.get('name')}, which is not this Deployment's"
    for other in kube.items(DEPLOYMENTS, ns):
        if other["metadata"].get("uid") == uid:
            continue
        tpl = ((other.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if labels.selects({"matchLabels": rest}, tpl.get("labels") or {}):
            return f"it selects the pods of Deployment {other['metadata'].get('name')}"
    return ""


def _owned_by(kube: Kube, ns: str, name: str, rs_uid: str, uid: str) -> bool | None:
    """Is ReplicaSet ``name`` (of uid ``rs_uid``, when the pod says) this Deployment's: controlled by
    it, or deliver's own or held one for it (an ownerReference to its uid either way)? None when it
    is gone: its pods are being garbage-collected (a superseded ReplicaSet of deliver's just
    deleted), which says nothing about whose Service this is."""
    try:
        rs = kube.get(REPLICASETS, ns, name)
    except NotFound:
        return None
    meta = rs.get("metadata") or {}
    if rs_uid and meta.get("uid") and meta.get("uid") != rs_uid:
        return None  # the pod's ReplicaSet is gone; another of the same name exists now
    return any(ref.get("uid") == uid and ref.get("kind") == "Deployment" for ref in meta.get("ownerReferences") or [])


def service_takeovers(kube: Kube, spec: DeliverySpec, deployment: JSON) -> list[SpecError]:
    """Problems of the Service-name annotations: each named Service that exists must be deliver's
    own for this Deployment or already in front of this Deployment's pods alone (module docstring)."""
    ns = deployment["metadata"]["namespace"]
    errors = []
    for short, name in named_services(spec):
        try:
            svc = kube.get(SERVICES, ns, name)
        except NotFound:
            continue  # deliver creates it
        if is_ours(svc, deployment):
            continue
        why = serves_only(kube, svc, deployment)
        if not why:
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        shown = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "none"
        errors.append(
            SpecError(
                PREFIX + short,
                f"Service {name!r} (selector {shown}) was not created by deliver for this Deployment and is not "
                f"in front of its pods alone: {why}; deliver does not redirect it",
            )
        )
    return errors
