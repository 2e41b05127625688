"""What the dashboard shows, read from the API in one pass: the deliveries, their versions' pods, the ladder.

Pure apart from ``collect`` (reads only). Errors are kept in the snapshot, never swallowed: the page
says what failed (API unreachable, Forbidden) and what it could still read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from delivery import spec as specmod
from delivery import templates
from delivery.engine.health import is_ready
from delivery.errors import Forbidden, KubeError, SpecError, Unauthorized
from delivery.gate import status_dict
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS, Kube

JSON = dict[str, Any]
ERROR_SHOWN = 200  # characters of an error shown for a Deployment the dashboard cannot show


@dataclass(frozen=True)
class Version:
    """One ReplicaSet of a delivery and its pods."""

    name: str
    revision: str  # deliver's revision hash of its pod template
    role: str  # new | stable | old
    images: tuple[str, ...]
    ready: int
    not_ready: int
    restarts: int


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: its label and where the delivery stands (done | current | todo)."""

    label: str
    where: str


@dataclass(frozen=True)
class Delivery:
    """One annotated Deployment: ``status`` is exactly what ``deliver status -o json`` prints."""

    status: JSON
    versions: tuple[Version, ...] = ()
    ladder: tuple[Rung, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.status['namespace']}/{self.status['name']}"


@dataclass(frozen=True)
class Snapshot:
    """One read of the namespace (or all): the deliveries, and what could not be read."""

    at: float
    scope: str  # "namespace NAME" or "all namespaces"
    deliveries: tuple[Delivery, ...] = ()
    error: str = ""  # the deliveries could not be listed (then ``deliveries`` is empty)
    forbidden: bool = False  # the error is a 401/403: the caller's identity may not do this
    warnings: tuple[str, ...] = field(default=())  # partial reads (pods not listable, ...)

    def find(self, key: str) -> Delivery | None:
        return next((d for d in self.deliveries if d.key == key), None)


def collect(kube: Kube, namespace: str | None, now: float | None = None) -> Snapshot:
    """Read the annotated Deployments of ``namespace`` (None: all), their ReplicaSets and pods."""
    now = time.time() if now is None else now
    scope = "all namespaces" if namespace is None else f"namespace {namespace}"
    try:
        deployments = [d for d in kube.items(DEPLOYMENTS, namespace) if specmod.has_strategy(d)]
    except (Forbidden, Unauthorized) as exc:
        return Snapshot(now, scope, error=denied(exc, f"list Deployments in {scope}"), forbidden=True)
    except KubeError as exc:
        return Snapshot(now, scope, error=f"cannot list Deployments in {scope}: {exc}")
    warnings: list[str] = []
    replicasets: list[JSON] = []
    pods: list[JSON] = []
    if deployments:
        try:
            replicasets = kube.items(REPLICASETS, namespace)
            pods = kube.items(PODS, namespace)
        except KubeError as exc:
            warnings.append(f"pods per version not shown: {exc}")
    deliveries = []
    for d in deployments:
        try:
            deliveries.append(delivery(d, replicasets, pods))
        except Exception as exc:  # one Deployment's hostile or broken data must not hide the others
            deliveries.append(broken(d, exc))
    deliveries.sort(key=lambda d: (d.status["namespace"], d.status["name"]))
    return Snapshot(now, scope, tuple(deliveries), warnings=tuple(warnings))


def denied(exc: KubeError, what: str) -> str:
    who = "not authenticated" if isinstance(exc, Unauthorized) else "Forbidden"
    return f"{who}: your kubeconfig's identity may not {what}; the dashboard acts with your permissions ({exc})"


def delivery(deployment: JSON, replicasets: list[JSON], pods: list[JSON]) -> Delivery:
    s = status_dict(deployment)
    return Delivery(s, versions(deployment, s, replicasets, pods), ladder(deployment, s))


def broken(deployment: JSON, exc: Exception) -> Delivery:
    """A Deployment the dashboard cannot show: its name and why (``status["error"]``), nothing else."""
    meta = deployment.get("metadata") or {}
    why = f"this delivery cannot be shown ({type(exc).__name__}: {str(exc)[:ERROR_SHOWN]}); see `deliver status`"
    status: JSON = {
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "valid": False,
        "problems": [],
        "phase": "Unknown",
        "ready": 0,
        "replicas": 0,
        "error": why,
    }
    return Delivery(status)


def _owned_by(obj: JSON, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def versions(deployment: JSON, s: JSON, replicasets: list[JSON], pods: list[JSON]) -> tuple[Version, ...]:
    """The ReplicaSets of the Deployment (its own and deliver's) with pods, newest role first."""
    meta = deployment["metadata"]
    uid, ns, name = meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", "")
    out: list[Version] = []
    for rs in replicasets:
        rmeta = rs.get("metadata") or {}
        if rmeta.get("namespace") != ns:
            continue
        labels = rmeta.get("labels") or {}
        if not (_owned_by(rs, uid) or labels.get(templates.OWNER_LABEL) == name):
            continue
        template = (rs.get("spec") or {}).get("template") or {}
        revision = templates.revision(template)
        mine = [
            p for p in pods if _owned_by(p, (rmeta.get("uid") or "")) and not p["metadata"].get("deletionTimestamp")
        ]
        if not mine and not int((rs.get("spec") or {}).get("replicas") or 0):
            continue  # a scaled-down old ReplicaSet: history, not a running version
        ready = sum(1 for p in mine if is_ready(p))
        restarts = sum(
            int(cs.get("restartCount") or 0)
            for p in mine
            for cs in ((p.get("status") or {}).get("containerStatuses") or [])
        )
        role = "new" if revision == s.get("revision") else "stable" if revision == s.get("stableRevision") else "old"
        images = tuple(c.get("image", "") for c in (template.get("spec") or {}).get("containers") or [])
        out.append(Version(rmeta.get("name", ""), revision, role, images, ready, len(mine) - ready, restarts))
    order = {"new": 0, "stable": 1, "old": 2}
    out.sort(key=lambda v: (order[v.role], v.name))
    return tuple(out)


def ladder(deployment: JSON, s: JSON) -> tuple[Rung, ...]:
    """The steps of the delivery and where it stands; empty when the annotations cannot be read."""
    try:
        spec = specmod.parse(deployment)
    except SpecError:
        return ()
    if spec.steps:
        labels = [step.describe() for step in spec.steps]
    elif spec.pause_at:
        labels = [f"{p}% of pods" for p in spec.pause_at] + ["100% of pods"]
    else:
        labels = ["deliver"]
    phase = s.get("phase", "Idle")
    step = int(s.get("step", 0) or 0)
    if phase == "Succeeded":
        return tuple(Rung(label, "done") for label in labels)
    if phase in ("Idle", "RolledBack", "Aborted") or not s.get("revision"):
        return tuple(Rung(label, "todo") for label in labels)
    return tuple(
        Rung(label, "done" if i < step else "current" if i == step else "todo") for i, label in enumerate(labels)
    )
