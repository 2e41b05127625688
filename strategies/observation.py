"""What the engine observed of a Deployment: the snapshot a planner decides from (``Observation``:
its ReplicaSets, pod health, Services, what may be unavailable, hook answers, the hold mode in force)
and what a released Deployment still has of deliver's (``Leftovers``). Pure data;
``delivery/engine/observe.py`` reads them from the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .evidence import StepVerdict
from .spec import HookKind, RouterRef


class HoldMode(StrEnum):
    """How a template change waits for deliver before anything rolls out (docs/hold-modes.md).

    A fact the engine observes (is the API server's hold policy in force?); the planners decide
    what a Deployment looks like at rest from it."""

    POLICY = "policy"  # the API server pauses each template change (MutatingAdmissionPolicy): unpaused at rest
    PAUSED = "paused"  # no such policy: deliver keeps a managed Deployment paused at rest


@dataclass(frozen=True)
class PodHealth:
    """What the pods of one version say about its health."""

    total: int = 0
    ready: int = 0
    restarts: int = 0
    crashloop: int = 0  # pods waiting in CrashLoopBackOff
    image_errors: int = 0  # pods waiting in ImagePullBackOff / ErrImagePull / InvalidImageName
    oldest_unready_age: float = 0.0  # seconds the longest-unready pod has been unready
    terminating: int = 0  # pods being deleted (not in ``total``): still running until they are gone

    def problem(self, max_restarts: int) -> str | None:
        if self.image_errors:
            return f"{self.image_errors} pod(s) cannot pull their image"
        if self.crashloop:
            return f"{self.crashloop} pod(s) in CrashLoopBackOff ({self.restarts} restarts)"
        if self.restarts > max_restarts:
            return f"pods restarted {self.restarts} times (allowed {max_restarts})"
        return None


@dataclass(frozen=True)
class VersionObs:
    """One ReplicaSet (one version of the pod template) as observed."""

    name: str
    pod_hash: str  # the pod-template-hash label value
    revision: str  # deliver's hash of the template (without pod-template-hash)
    owned: bool  # controlled by the Deployment (False: deliver's own canary/preview RS)
    replicas: int  # spec.replicas
    ready: int
    available: int
    created: float = 0.0
    health: PodHealth = PodHealth()
    template: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # without pod-template-hash
    held: bool = False  # the Deployment's ReplicaSet, held by deliver for an exact canary share (HoldStable)
    status_replicas: int = 0  # status.replicas: the pods it has now (0 with ``replicas`` 0: an empty ReplicaSet)


@dataclass(frozen=True)
class ServiceObs:
    """A Service in front of this Deployment's pods (its selector, without the pod-template-hash key,
    is a non-empty subset of the pod template's labels), or one deliver created for it."""

    name: str
    pod_hash: str = ""  # the pod-template-hash it is pinned to ("": it selects the app)
    ours: bool = False  # created by deliver for this Deployment (its owner label)


@dataclass(frozen=True)
class Disruption:
    """How many of the Deployment's pods may be unavailable at once, as the user declared it: the
    Deployment's ``maxUnavailable``/``maxSurge`` (int or percent text) and a PodDisruptionBudget
    selecting its pods (its ``minAvailable`` or ``maxUnavailable``, "" when absent)."""

    strategy: str = "RollingUpdate"  # the Deployment's spec.strategy.type
    max_unavailable: str = "25%"
    max_surge: str = "25%"
    pdb_min_available: str = ""
    pdb_max_unavailable: str = ""
    unknown: bool = False  # the PodDisruptionBudgets could not be read: assume none may go


@dataclass(frozen=True)
class Observation:
    """A snapshot of one annotated Deployment and everything deliver owns beside it."""

    now: float
    namespace: str
    name: str
    generation: int
    observed_generation: int
    replicas: int  # the Deployment's spec.replicas (owned by the user / HPA)
    paused: bool
    target_revision: str  # deliver's hash of spec.template
    native_strategy: str  # the Deployment's spec.strategy.type
    updated_replicas: int = 0  # status.updatedReplicas
    ready_replicas: int = 0
    available_replicas: int = 0
    total_replicas: int = 0  # status.replicas
    deadline_exceeded: bool = False  # Progressing condition reason ProgressDeadlineExceeded
    hold_mode: HoldMode = HoldMode.PAUSED  # who holds a template change until deliver acts (HoldMode)
    rejected_marked: bool = False  # the status carries deliver's MarkRejected condition
    versions: tuple[VersionObs, ...] = ()
    request: str = ""  # promote | promote-full | abort | retry | pause | resume | ""
    request_id: str = ""  # unique id of that request (consumed once)
    router_weight: int | None = None  # weight the router reports now (None: unknown / no router)
    router_problem: str = ""  # why the declared router is broken now ("": it works or was not checked)
    router_extras: bool = False  # the route carries deliver's request matches or mirror now (see Router.verify_extras)
    analysed: tuple[StepVerdict, ...] = ()  # verdicts of the analyses run since the record was read
    hook_results: tuple[HookResult, ...] = ()  # answers of hook calls that finished (newest last)
    services: tuple[ServiceObs, ...] = ()  # Services in front of this Deployment's pods (see ServiceObs)
    disruption: Disruption = Disruption()  # what the user allows to be unavailable (exact canary shares)
    template: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def version(self, revision: str) -> VersionObs | None:
        """The version with this revision, preferring the Deployment-owned ReplicaSet."""
        found = [v for v in self.versions if v.revision == revision]
        found.sort(key=lambda v: (not v.owned, -v.replicas))
        return found[0] if found else None

    def owned_versions(self) -> list[VersionObs]:
        return [v for v in self.versions if v.owned]

    def active_owned(self) -> list[VersionObs]:
        return [v for v in self.versions if v.owned and v.replicas > 0]

    def deliver_owned(self, revision: str) -> VersionObs | None:
        for v in self.versions:
            if v.revision == revision and not v.owned:
                return v
        return None

    @property
    def rollout_complete(self) -> bool:
        """The native Deployment controller has finished rolling out the current template."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == self.replicas
            and self.total_replicas == self.replicas
            and self.available_replicas == self.replicas
        )


@dataclass(frozen=True)
class Leftovers:
    """What a Deployment whose ``deliver.dev/strategy`` was removed still has of deliver's, as observed:
    the observation a release is planned from (``strategies/release.py``)."""

    resource_version: str  # the Deployment's, as read: the release's one write to it is guarded by it
    # deliver's own Services for this Deployment, and every Service pinned to a pod-template-hash whose
    # other selector keys (if any) match its pods' labels; in the order listed
    services: tuple[ServiceObs, ...] = ()
    preview_service: str = ""  # the preview Service's name the remaining annotations give (or its default)
    router: RouterRef = RouterRef("replica")  # the router the remaining annotations still declare
    stable_service: str = ""  # and the Services its route sends traffic to (the router's backends)
    canary_service: str = ""
    route_weighted: bool = False  # that router sets weights on a route object (delivery/routing/kinds.py)
    route_kept: str = ""  # what deliver generated for that router and a release keeps, in words ("": nothing)
    held: bool = False  # deliver holds a ReplicaSet of the Deployment's (HoldStable)
    replicasets: tuple[str, ...] = ()  # deliver's own ReplicaSets for this Deployment, by name


@dataclass(frozen=True)
class HookResult:
    """The answer of one hook call (``CallHook``): 2xx (``ok``) or why not (error, timeout, status)."""

    kind: HookKind
    revision: str
    delivery: float  # the delivery's start (DeliveryState.started): a result belongs to one delivery
    token: str  # which call of that delivery (CallHook.token)
    ok: bool
    detail: str  # e.g. "HTTP 200 in 0.05s", "timed out after 10s"
    at: float
