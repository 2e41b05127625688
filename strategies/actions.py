"""What a planner asks the engine to do: the actions (all idempotent) and the ``Plan`` that
carries them, after the record to persist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .reasons import EventReason
from .record import DeliveryState
from .spec import HookKind


@dataclass(frozen=True)
class SetPaused:
    """Set the Deployment's spec.paused (paused: the native controller rolls nothing out)."""

    paused: bool


@dataclass(frozen=True)
class ScaleNew:
    """Ensure deliver's own ReplicaSet for the target template exists with this many replicas."""

    replicas: int


@dataclass(frozen=True)
class DeleteNew:
    """Scale deliver's own ReplicaSets to zero and delete them (the rollback of canary/blue-green)."""

    keep_revision: str = ""  # do not delete the RS of this revision (used for stale cleanup)


@dataclass(frozen=True)
class AdoptNew:
    """Hand deliver's ReplicaSet to the Deployment (labels + controller ownerRef).

    The Deployment controller then sees it as the new ReplicaSet (same template) and, since it is
    saturated, scales the old ones to zero: promotion without unpausing.
    """


@dataclass(frozen=True)
class DisownNew:
    """Take the Deployment's own ReplicaSet of ``revision`` from it and make it deliver's (as if
    deliver had made it for a canary), optionally scaling it to ``replicas``, in one write: the held
    rollback of rolling/recreate in the policy hold mode, where the rejected template stays in the
    Deployment and its controller must neither scale nor re-adopt that ReplicaSet."""

    revision: str
    replicas: int | None = None


@dataclass(frozen=True)
class RevertTemplate:
    """Write the stable ReplicaSet's pod template back into the Deployment (the rollback of rolling/recreate).

    ``template`` is the copy kept in the record, used when that ReplicaSet is gone
    (e.g. revisionHistoryLimit: 0)."""

    stable_revision: str
    template: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ApplyTemplate:
    """Write a pod template into the Deployment (``deliver retry`` of a failed revision)."""

    template: dict[str, Any]


REJECTED_MARK = "deliver rejected"  # how deliver's Progressing condition message starts (MarkRejected)


@dataclass(frozen=True)
class MarkRejected:
    """Say on the Deployment's status that its template was rejected: the Progressing condition False
    with reason ProgressDeadlineExceeded (what kubectl rollout status, kstatus, Helm --wait and Argo CD
    read as a failed rollout), its message starting with ``REJECTED_MARK``. An empty ``message`` takes
    deliver's mark away (a new delivery starts, or the stable template is back)."""

    message: str


@dataclass(frozen=True)
class HoldStable:
    """Exact canary share: take the stable ReplicaSet from the Deployment controller (which would scale
    it back to spec.replicas) and run it at ``replicas``. ``ReleaseStable`` hands it back."""

    replicas: int


@dataclass(frozen=True)
class ReleaseStable:
    """Hand a ReplicaSet held by ``HoldStable`` back to the Deployment (its labels and controller
    reference restored); the Deployment controller scales it from then on."""


@dataclass(frozen=True)
class SetWeight:
    """Send this percentage of traffic to the new version through the declared router; with
    ``match``, also every request matching ``DeliverySpec.match`` (even at weight 0); with ``mirror``,
    a copy of that percent of requests (the clients get the stable version's answers)."""

    weight: int
    match: bool = False
    mirror: int = 0  # percent of requests copied to the new version (responses discarded); 0: no mirror
    pin: bool = False  # session affinity: a cookie pins each client to the version it first got


@dataclass(frozen=True)
class EnsureService:
    """Create the Service ``name`` selecting one version's pods, or point it there (``repoint``).

    ``repoint=False`` only creates it: an existing Service keeps its selector (blue-green's active
    Service, which only SwitchActive moves)."""

    name: str
    pod_hash: str
    repoint: bool = True


@dataclass(frozen=True)
class SwitchActive:
    """Blue-green: point the active Service ``service`` at one version's pod hash in one patch."""

    service: str
    pod_hash: str


@dataclass(frozen=True)
class UnpinService:
    """Remove the pod-template-hash key from a Service's selector: it selects the app's pods again."""

    name: str


@dataclass(frozen=True)
class DeleteService:
    """Delete a Service deliver created (a release: blue-green's preview Service, which never had
    production traffic)."""

    name: str


@dataclass(frozen=True)
class DeleteReplicaSet:
    """Delete the ReplicaSet ``name`` as it is (not scaled to zero first): deliver's own at a release;
    before ``ScaleNew``, the Deployment's own empty ReplicaSet of the revision being delivered."""

    name: str


@dataclass(frozen=True)
class RemoveRecord:
    """Hand the Deployment back (a release): remove the record and any operator request and unpause
    it, in one write guarded by ``resource_version`` (the Deployment the release was planned on): a
    Conflict means someone wrote meanwhile, and the release is planned again from fresh data."""

    resource_version: str


@dataclass(frozen=True)
class Analyse:
    """Run the metric checks over [start, now], the new version's pods against the stable ones', and
    hand the verdict for this step to the next plan."""

    step: int
    start: float
    new_hash: str = ""  # pod-template-hash of the new version's pods
    stable_hash: str = ""  # and of the stable version's
    new_service: str = ""  # the Services in front of each, when the strategy has them
    stable_service: str = ""
    baseline_end: float | None = None  # the stable version stopped then (recreate): judge against its last window
    interim: bool = False  # a look at the running window while the step is still held (its verdict is interim)


@dataclass(frozen=True)
class CallHook:
    """Call the Deployment's ``kind`` hook (off the reconcile path); its answer comes back as a
    ``HookResult`` in a later observation. Same (kind, revision, delivery, token): the same call."""

    kind: HookKind
    revision: str
    delivery: float
    token: str = ""
    step: int = 0  # for the body: the step the call is about


@dataclass(frozen=True)
class PostEvent:
    """Post a Kubernetes Event on the Deployment."""

    type: str  # Normal | Warning
    reason: EventReason
    message: str


Action = (
    SetPaused
    | ScaleNew
    | DeleteNew
    | AdoptNew
    | DisownNew
    | RevertTemplate
    | ApplyTemplate
    | MarkRejected
    | SetWeight
    | HoldStable
    | ReleaseStable
    | EnsureService
    | SwitchActive
    | UnpinService
    | DeleteService
    | DeleteReplicaSet
    | RemoveRecord
    | Analyse
    | PostEvent
    | CallHook
)


@dataclass(frozen=True)
class Plan:
    """A planner's answer: the record to persist (first), then the actions to converge on it."""

    state: DeliveryState
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    paused: bool | None = None  # spec.paused to write in the same patch as the record (None: leave it)

    def events(self) -> list[PostEvent]:
        return [a for a in self.actions if isinstance(a, PostEvent)]
