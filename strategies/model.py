"""Domain objects shared by the planners and the engine.

Everything here is pure data: the declared spec, the persisted rollout record, the observed
snapshot of the cluster and the actions a planner asks the engine to take. No I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import reprlib
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .reasons import EventReason

KEPT_VERDICTS = 20  # verdicts a record keeps (the newest), when it has room
KEPT_LOOKS = 30  # look points per check a record keeps for the current delivery (the newest)
RECORD_BUDGET = 128 * 1024  # bytes: the API server allows 256 KiB for all annotations of an object together
TEMPLATES = ("stableTemplate", "failedTemplate")
# Caps on reading a record: it is an annotation anyone who may edit the Deployment can write by hand.
PACKED_MAX = 1024 * 1024  # bytes a packed template may inflate to (a whole Deployment is at most ~1.5 MiB)
RECORD_DEPTH = 64  # nesting of JSON arrays/objects in a record or a packed template (a pod template: ~12)
RECORD_COUNT_MAX = 1_000_000  # a step index, extension count, ... (a canary has at most ~200 steps)
RECORD_TIME_MAX = 32_503_680_000.0  # a time in a record: seconds since the epoch, before the year 3000
RECORD_NUMBER_TEXT = 32  # characters of a number written as text (an older record's "3")
OBSERVATIONS_MAX = 10**15  # observations a check of a record rests on (the judges refuse larger counts)


class Strategy(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blue-green"
    RECREATE = "recreate"


class Phase(StrEnum):
    """Where a delivery is. Terminal phases: SUCCEEDED, ROLLED_BACK, ABORTED."""

    IDLE = "Idle"  # nothing to deliver: the template is the stable version
    PROGRESSING = "Progressing"  # a step is being rolled out / held / analysed
    PAUSED = "Paused"  # waiting for an operator; DeliveryState.hold says why
    PROMOTING = "Promoting"  # the new version is becoming stable
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"  # the stable version is being restored
    ROLLED_BACK = "RolledBack"  # failed automatically; stable serving again
    ABORTED = "Aborted"  # stopped by an operator; stable serving again

    @property
    def terminal(self) -> bool:
        return self in (Phase.IDLE, Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED)


class HoldMode(StrEnum):
    """How a template change waits for deliver before anything rolls out (docs/hold-modes.md).

    A fact the engine observes (is the API server's hold policy in force?); the planners decide
    what a Deployment looks like at rest from it."""

    POLICY = "policy"  # the API server pauses each template change (MutatingAdmissionPolicy): unpaused at rest
    PAUSED = "paused"  # no such policy: deliver keeps a managed Deployment paused at rest


class Outcome(StrEnum):
    """What checking a step (or one metric check) says. Decisions compare these members, never text;
    the values are what the record, ``deliver status -o json``, JUnit and notifications show."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # no evidence either way: never a promotion


class HoldReason(StrEnum):
    """Why a delivery is held (not moving on by itself). Decisions test this, never the message."""

    NONE = ""
    AWAITING_PROMOTION = "AwaitingPromotion"  # Paused: a manual promotion step, or blue-green without auto-promote
    INCONCLUSIVE = "Inconclusive"  # Paused: the analysis could not decide (on-inconclusive: pause)
    FAILED = "Failed"  # Paused: the step failed and automatic rollback is off
    OPERATOR = "Operator"  # Paused: `deliver pause`
    ROUTER_UNAVAILABLE = "RouterUnavailable"  # Progressing: the router is broken; rolled back after the deadline
    PREVIOUSLY_FAILED = "PreviouslyFailed"  # RolledBack/Aborted: the template is the failed revision again
    NO_REPLICAS = "NoReplicas"  # Progressing/Promoting: scaled to zero, no pods to check; goes on when they return
    AWAITING_CONFIRMATION = "AwaitingConfirmation"  # Progressing: promotion waits for the confirm-promotion hook

    def fits(self, phase: Phase) -> bool:
        """Whether this reason can describe a record in ``phase`` (others are stale and dropped)."""
        if self is HoldReason.NONE:
            return True
        if self in (HoldReason.ROUTER_UNAVAILABLE, HoldReason.AWAITING_CONFIRMATION):
            return phase is Phase.PROGRESSING
        if self is HoldReason.NO_REPLICAS:
            return phase in (Phase.PROGRESSING, Phase.PROMOTING)
        if self is HoldReason.PREVIOUSLY_FAILED:
            return phase in (Phase.ROLLED_BACK, Phase.ABORTED)
        return phase is Phase.PAUSED

    @classmethod
    def from_legacy(cls, phase: Phase, message: str) -> HoldReason:
        """The reason of a record written before ``hold`` existed, guessed from its message (read
        once, then rewritten with ``hold``). Only ``DeliveryState.from_dict`` calls it, and only for
        a record without the ``hold`` key: every record this code writes has one (``to_dict`` always
        writes it and ``_bounded`` never drops it), so no decision on such a record reads its message."""
        if phase is Phase.PAUSED:
            if message.startswith("failed: "):
                return cls.FAILED
            if message.startswith("paused by an operator"):
                return cls.OPERATOR
            if Outcome.INCONCLUSIVE.value in message:  # "step 2 inconclusive, waiting for ..."
                return cls.INCONCLUSIVE
            return cls.AWAITING_PROMOTION
        if phase in (Phase.ROLLED_BACK, Phase.ABORTED) and "deliver retry" in message:
            return cls.PREVIOUSLY_FAILED
        return cls.NONE


@dataclass(frozen=True)
class CanaryStep:
    """One canary step: the new version's share of traffic (percent), or a manual promotion."""

    weight: int = 0
    pause: bool = False  # a manual promotion: wait for `deliver promote`
    match: bool = False  # only requests matching ``DeliverySpec.match`` reach the new version (weight 0)
    mirror: bool = False  # the new version gets a copy of ``DeliverySpec.mirror_percent`` % of requests (weight 0)

    def describe(self) -> str:
        if self.match:
            return "match (matched requests only)"
        if self.mirror:
            return "mirror (a copy of the traffic)"
        return "pause (manual promotion)" if self.pause else f"{self.weight}%"


@dataclass(frozen=True)
class Affinity:
    """Session affinity at a weighted step: the cookie ``cookie`` carries the version a client got
    first (``stable`` or ``canary``: their revisions), and requests carrying it go to that version."""

    cookie: str
    stable: str
    canary: str


@dataclass(frozen=True)
class RequestMatch:
    """``deliver.dev/match``: requests carrying this header (or cookie) value go to the new version."""

    kind: str  # header | cookie
    name: str
    value: str

    def describe(self) -> str:
        return f"{self.kind} {self.name}={self.value}"


@dataclass(frozen=True)
class RouterRef:
    """A weighted traffic router declared with ``deliver.dev/router: KIND/NAME``."""

    kind: str  # replica | gateway-api | nginx | istio | smi
    name: str = ""


class HookKind(StrEnum):
    """The webhooks a delivery calls (``deliver.dev/hook-KIND``; strategies/hooks.py decides when)."""

    PRE_ROLLOUT = "pre-rollout"  # before the first step: 2xx or no rollout
    CONFIRM_PROMOTION = "confirm-promotion"  # before promotion (canary) or the switch (blue-green): polled until 2xx
    LOAD_TEST = "load-test"  # at the start of each analysed step (canary) or of the preview (blue-green): traffic
    POST_ROLLOUT = "post-rollout"  # once the delivery finished (promoted, rolled back or aborted)


@dataclass(frozen=True)
class Hooks:
    """The hooks of one Deployment: the URL of each kind declared, and how long a call may take."""

    urls: tuple[tuple[HookKind, str], ...] = ()
    timeout: float = 10.0  # seconds per call; a call that takes longer is a failure

    def url(self, kind: HookKind) -> str:
        return next((u for k, u in self.urls if k is kind), "")


@dataclass(frozen=True)
class DeliverySpec:
    """The validated ``deliver.dev/*`` annotations of one Deployment."""

    strategy: Strategy
    steps: tuple[CanaryStep, ...] = ()  # canary
    pause_at: tuple[int, ...] = ()  # rolling: percent of pods updated
    interval: float = 60.0  # seconds each step is held and analysed
    progress_deadline: float = 600.0  # seconds for a step's pods to become Ready
    auto_rollback: bool = True
    auto_promote: bool = True  # blue-green: switch without `deliver promote`
    active_service: str = ""  # blue-green
    preview_service: str = ""  # blue-green
    keep_warm: float = 120.0  # blue-green: seconds old version stays up after switch
    stable_service: str = ""  # canary with a router
    canary_service: str = ""  # canary with a router
    router: RouterRef = RouterRef("replica")
    max_restarts: int = 0  # restarts tolerated per new pod before failing
    hooks: Hooks = Hooks()  # deliver.dev/hook-* (strategies/hooks.py)
    on_inconclusive: str = "pause"  # pause | extend | rollback
    max_extensions: int = 3
    analysis: tuple[Any, ...] = ()  # delivery.analysis.checks.CheckSpec values
    # In-step analysis: seconds between looks at the growing window of an analysed step (None: the
    # engine's default, twice its Prometheus scrape interval; 0: off, the step is judged at its end only)
    analysis_every: float | None = None
    promote_early: bool = False  # a step whose every check passes moves on before its interval ends
    canary_scale: str = "exact"  # canary: exact (stable scaled down as the canary scales up) | surge
    match: RequestMatch | None = None  # canary with a router: requests routed to the new version by header/cookie
    mirror_percent: int = 100  # canary `mirror` step: share of requests copied to the new version
    affinity: bool = False  # canary with gateway-api/istio: a cookie pins each client to the version it first got
    scale_down_delay: float = 0.0  # canary with a router: seconds the old version stays after all traffic moved
    abort_scale_down_delay: float = 0.0  # canary with a router, blue-green: seconds a rolled-back version stays


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
class CheckEvidence:
    """One metric check of a verdict, as the planners read it: its outcome, the observations it rests
    on and the numbers its look point charts (``LookPoint``). Typed and never dropped from the record,
    unlike the verdict's human-facing ``details``, so what a planner decides from a verdict does not
    depend on how much room the record had. Written as a compact list (``to_list``, ~50 bytes)."""

    name: str
    outcome: Outcome
    n_canary: int = 0  # the new version's observations (requests, samples) the check rests on
    n_baseline: int = 0  # and the stable version's
    e_value: float | None = None
    canary_rate: float | None = None  # errors checks: the share of the new version's requests that failed
    baseline_rate: float | None = None
    effect_bound: float | None = None  # the judge's anytime-valid bound on the effect

    def to_list(self) -> list[Any]:
        return [
            self.name,
            self.outcome.value,
            self.n_canary,
            self.n_baseline,
            self.e_value,
            self.canary_rate,
            self.baseline_rate,
            self.effect_bound,
        ]

    @classmethod
    def from_list(cls, v: Any) -> CheckEvidence:
        """A check of a record's verdict; ValueError when it is not a list of 8, its outcome is not an
        ``Outcome`` or a count is bad. The numbers may be NaN or infinite, as in ``LookPoint``."""
        if not isinstance(v, list) or len(v) < 8:
            raise ValueError(f"a verdict's check is a list of 8 values, not {_shown(v)}")
        return cls(
            str(v[0]),
            _outcome("check outcome", v[1]),
            _observations("check n", v[2]),
            _observations("check n", v[3]),
            *(_num(x) for x in v[4:8]),
        )

    @classmethod
    def from_details(cls, check: Any) -> CheckEvidence | None:
        """From one check of the ``details`` of a verdict written before verdicts carried typed checks
        (``CheckResult.to_dict``), read as leniently as the planners read it then: None for what is
        not a check, an unknown outcome read as inconclusive, missing numbers as unknown."""
        if not isinstance(check, dict):
            return None
        n = check.get("n")
        counts = [_lenient_count(x) for x in n[:2]] if isinstance(n, list) and len(n) >= 2 else [0, 0]
        rate = check.get("rate")
        rc, rb = (rate[0], rate[1]) if isinstance(rate, list) and len(rate) == 2 else (None, None)
        outcome = check.get("outcome")
        return cls(
            str(check.get("name", "")),
            Outcome(outcome) if outcome in tuple(Outcome) else Outcome.INCONCLUSIVE,
            counts[0],
            counts[1],
            _num(check.get("e")),
            _num(rc),
            _num(rb),
            _num(check.get("bound")),
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
class StepVerdict:
    """The outcome of checking one step: pod health plus metric checks, with their numbers.

    What planners decide on is typed (``outcome``, ``checks``, ``out_of_reach``, ``interim``) and
    kept in the record whatever its size; ``summary`` and ``details`` are for people (Events,
    ``deliver status``, the dashboard, JUnit) and a record short of room drops the details."""

    step: int
    outcome: Outcome
    summary: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)
    interim: bool = False  # a look at the running window of a step still being held (not its end)
    checks: tuple[CheckEvidence, ...] = ()  # the metric checks' evidence (none: a health-only verdict)
    # why a step's whole analysis window cannot carry the requests a verdict needs ("": it can, or no
    # forecast was made): the engine's time-to-verdict forecast of an inconclusive analysis
    out_of_reach: str = ""

    def __post_init__(self) -> None:
        # Planners compare outcomes by identity (``is Outcome.PASS``): a plain string from a caller
        # mypy does not check (a test's fake analyser) becomes the member; anything else raises.
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "step": self.step,
            "outcome": self.outcome.value,
            "summary": self.summary,
            "at": round(self.at, 3),
            "details": self.details,
        }
        if self.interim:
            d["interim"] = True
        if self.checks:
            d["checks"] = [c.to_list() for c in self.checks]
        if self.out_of_reach:
            d["outOfReach"] = self.out_of_reach
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepVerdict:
        """A verdict of a record; ValueError when a field is missing, of the wrong type or out of range.
        A verdict written before the typed fields existed has them read from its details."""
        d = _object("verdict", d)
        details = _object("verdict details", d.get("details") or {})
        if "checks" in d:
            checks = tuple(CheckEvidence.from_list(c) for c in _array("verdict checks", d["checks"]))
        else:
            legacy = (CheckEvidence.from_details(c) for c in _listed(details.get("checks")))
            checks = tuple(c for c in legacy if c is not None)
        return cls(
            step=record_int("verdict step", d["step"], lo=-RECORD_COUNT_MAX),
            outcome=_outcome("verdict outcome", d["outcome"]),
            summary=str(d.get("summary", "")),
            at=record_time("verdict at", d.get("at", 0.0)),
            details=details,
            interim=bool(d.get("interim", False)),
            checks=checks,
            out_of_reach=str(d.get("outOfReach", details.get("outOfReach")) or ""),
        )


def _outcome(key: str, value: Any) -> Outcome:
    """An outcome of a record; ValueError naming the field for anything else."""
    if isinstance(value, str) and value in tuple(Outcome):
        return Outcome(value)
    raise ValueError(f"{key}: {_shown(value)} is not one of {', '.join(Outcome)}")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _observations(key: str, value: Any) -> int:
    """A count of observations of a record's check: a whole number 0..OBSERVATIONS_MAX; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= OBSERVATIONS_MAX:
        raise ValueError(f"{key}: {_shown(value)} is not a count of observations (0..{OBSERVATIONS_MAX})")
    return value


def _lenient_count(value: Any) -> int:
    """A count of an older verdict's details, or 0 (unknown) for anything that is not one."""
    number = _num(value)
    return int(number) if number is not None and 0 <= number <= OBSERVATIONS_MAX else 0


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class LookPoint:
    """One check's numbers at one look (or step verdict) of the current delivery: the evidence
    series the dashboard charts. Kept as a compact list in the record (``to_list``)."""

    at: float
    step: int
    outcome: Outcome
    e_value: float | None
    canary_rate: float | None
    baseline_rate: float | None
    effect_bound: float | None

    @classmethod
    def from_check(cls, at: float, step: int, check: CheckEvidence) -> LookPoint:
        """From one check of a verdict."""
        return cls(at, step, check.outcome, check.e_value, check.canary_rate, check.baseline_rate, check.effect_bound)

    def to_list(self) -> list[Any]:
        return [
            round(self.at, 1),
            self.step,
            self.outcome.value,
            self.e_value,
            self.canary_rate,
            self.baseline_rate,
            self.effect_bound,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> LookPoint:
        """A look point of a record; ValueError when it is not a list of 7 or its time, step or outcome is bad.
        The evidence numbers may be NaN or infinite (an analysis keeps them so); readers cope."""
        if not isinstance(v, list) or len(v) < 7:
            raise ValueError(f"a look point is a list of 7 values, not {_shown(v)}")
        return cls(
            record_time("look at", v[0]),
            record_int("look step", v[1], lo=-RECORD_COUNT_MAX),
            _outcome("look outcome", v[2]),
            *(_num(x) for x in v[3:7]),
        )


def with_look(
    looks: dict[str, tuple[LookPoint, ...]], verdict: StepVerdict, keep: int = KEPT_LOOKS
) -> dict[str, tuple[LookPoint, ...]]:
    """``looks`` with one point per check of ``verdict`` added, each check's newest ``keep`` kept."""
    out = dict(looks)
    for check in verdict.checks:
        if check.name:
            out[check.name] = (*out.get(check.name, ()), LookPoint.from_check(verdict.at, verdict.step, check))[-keep:]
    return out


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


@dataclass(frozen=True)
class DeliveryState:
    """The persisted rollout record (annotation ``deliver.dev/state``): enough to resume anywhere."""

    phase: Phase = Phase.IDLE
    strategy: str = ""
    revision: str = ""  # the template revision being delivered
    stable_revision: str = ""  # the revision serving before the delivery started
    stable_hash: str = ""  # its pod-template-hash
    step: int = 0  # index into the plan's steps
    step_started: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    switched: float = 0.0  # when traffic last moved wholesale (blue-green's switch; a route set to 100 or reset)
    analysis_started: float = 0.0  # start of the delivery's analysis span (its first analysed step)
    extensions: int = 0
    weight: int = 0  # traffic share promised to the new version now
    message: str = ""  # for people; decisions use phase and hold
    hold: HoldReason = HoldReason.NONE
    router_down_since: float = 0.0  # when the router was first seen broken in this delivery (0: it works)
    router_problem: str = ""  # what was wrong with it then (a Warning is posted when this changes)
    # the time of the verdict whose VerdictOutOfReach Warning this delivery posted (0: none yet): one
    # per delivery, known however few verdicts the record keeps
    out_of_reach_warned: float = 0.0
    failed_revision: str = ""  # a revision that was rolled back / aborted: not retried on its own
    failed_template: dict[str, Any] | None = None
    retrying: str = ""  # `deliver retry` of failed_revision: its template is written until observed
    stable_template: dict[str, Any] | None = None  # to revert to even if its ReplicaSet is gone
    handled_request: str = ""  # last operator request consumed (id), so none is applied twice
    hooks: tuple[str, ...] = ()  # hooks passed / due in this delivery (strategies/hooks.py)
    verdicts: tuple[StepVerdict, ...] = ()
    running: StepVerdict | None = None  # the newest look at the running window of the current step
    # per check, the numbers of the newest looks of this delivery (KEPT_LOOKS each): the dashboard's chart
    looks: dict[str, tuple[LookPoint, ...]] = field(default_factory=dict)

    def replace(self, **changes: Any) -> DeliveryState:
        return dataclasses.replace(self, **changes)

    def to_dict(self, budget: int = RECORD_BUDGET) -> dict[str, Any]:
        """The record as JSON data, at most ``budget`` bytes when encoded (see ``_bounded``)."""
        d: dict[str, Any] = {
            "phase": self.phase.value,
            "strategy": self.strategy,
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "stableHash": self.stable_hash,
            "step": self.step,
            "stepStarted": round(self.step_started, 3),
            "started": round(self.started, 3),
            "finished": round(self.finished, 3),
            "switched": round(self.switched, 3),
            "analysisStarted": round(self.analysis_started, 3),
            "extensions": self.extensions,
            "weight": self.weight,
            "message": self.message,
            "hold": self.hold.value,
            "failedRevision": self.failed_revision,
            "handledRequest": self.handled_request,
            "verdicts": [v.to_dict() for v in self.verdicts[-KEPT_VERDICTS:]],
        }
        if self.running is not None:
            d["running"] = self.running.to_dict()
        if self.router_down_since:
            d["routerDownSince"] = round(self.router_down_since, 3)
            d["routerProblem"] = self.router_problem
        if self.out_of_reach_warned:
            d["outOfReachWarned"] = round(self.out_of_reach_warned, 3)
        if self.failed_template is not None:
            d["failedTemplate"] = self.failed_template
        if self.retrying:
            d["retrying"] = self.retrying
        if self.stable_template is not None:
            d["stableTemplate"] = self.stable_template
        if self.hooks:
            d["hooks"] = list(self.hooks)
        if self.looks:
            d["looks"] = {name: [p.to_list() for p in points[-KEPT_LOOKS:]] for name, points in self.looks.items()}
        return _bounded(d, budget)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeliveryState:
        """The record from its JSON data. Anyone who may edit the Deployment may have written it: a
        field of the wrong type, a time or count that is not finite or out of range, nesting deeper
        than ``RECORD_DEPTH`` or a packed template that is not one (or inflates past ``PACKED_MAX``)
        raises ValueError naming the field. The evidence numbers of verdicts and looks are data."""
        try:
            return cls._from_dict(d)
        except (KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> DeliveryState:
        d = _object("the record", d)
        check_depth(d)
        phase = Phase(d.get("phase", Phase.IDLE.value))
        message = str(d.get("message", ""))
        hold = HoldReason(d["hold"]) if "hold" in d else HoldReason.from_legacy(phase, message)
        return cls(
            phase=phase,
            strategy=str(d.get("strategy", "")),
            revision=str(d.get("revision", "")),
            stable_revision=str(d.get("stableRevision", "")),
            stable_hash=str(d.get("stableHash", "")),
            step=record_int("step", d.get("step", 0), lo=-RECORD_COUNT_MAX),  # -1: rolling back
            step_started=record_time("stepStarted", d.get("stepStarted", 0.0)),
            started=record_time("started", d.get("started", 0.0)),
            finished=record_time("finished", d.get("finished", 0.0)),
            switched=record_time("switched", d.get("switched", 0.0)),
            analysis_started=record_time("analysisStarted", d.get("analysisStarted", 0.0)),
            extensions=record_int("extensions", d.get("extensions", 0)),
            weight=record_int("weight", d.get("weight", 0), 100),
            message=message,
            hold=hold,
            router_down_since=record_time("routerDownSince", d.get("routerDownSince", 0.0)),
            router_problem=str(d.get("routerProblem", "")),
            out_of_reach_warned=record_time("outOfReachWarned", d.get("outOfReachWarned", 0.0)),
            failed_revision=str(d.get("failedRevision", "")),
            failed_template=_template(d, "failedTemplate"),
            retrying=str(d.get("retrying", "")),
            stable_template=_template(d, "stableTemplate"),
            handled_request=str(d.get("handledRequest", "")),
            hooks=tuple(str(h) for h in _array("hooks", d.get("hooks") or [])),
            verdicts=tuple(StepVerdict.from_dict(v) for v in _array("verdicts", d.get("verdicts", []))),
            running=StepVerdict.from_dict(d["running"]) if d.get("running") else None,
            looks={
                str(name): tuple(LookPoint.from_list(p) for p in _array("looks", points))
                for name, points in _object("looks", d.get("looks") or {}).items()
            },
        )


def _encoded_size(d: dict[str, Any]) -> int:
    return len(json.dumps(d, sort_keys=True, separators=(",", ":")).encode())


def _pack(template: dict[str, Any]) -> str:
    """A template as compact text: zlib-compressed JSON, base64 (deterministic: no timestamp)."""
    raw = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode()


def _template(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A template of the record, as it is (``key``) or packed (``key + "Packed"``), or None."""
    if d.get(key):
        return _object(key, d[key])
    return _unpack(key + "Packed", d.get(key + "Packed"))


def _unpack(key: str, text: Any) -> dict[str, Any] | None:
    """A packed template (``_pack``), inflated to at most ``PACKED_MAX`` bytes: a few hundred KiB of
    hand-written zeros would otherwise inflate to gigabytes in one read."""
    if not text:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{key} is not text but {_shown(text)}")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(text, validate=True), PACKED_MAX + 1)
    except zlib.error as exc:
        raise ValueError(f"{key} is not zlib data ({exc})") from None
    if len(raw) > PACKED_MAX:
        raise ValueError(f"{key} inflates past {PACKED_MAX} bytes")
    if not inflater.eof:
        raise ValueError(f"{key} is truncated")
    loaded = _object(key, json.loads(raw))
    check_depth(loaded)
    return loaded


def check_depth(value: Any, limit: int = RECORD_DEPTH) -> None:
    """ValueError if JSON data nests deeper than ``limit`` arrays/objects (walked without recursion)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            raise ValueError(f"nested deeper than {limit} levels")
        todo.extend((child, depth + 1) for child in children)


def record_int(key: str, value: Any, hi: int = RECORD_COUNT_MAX, lo: int = 0) -> int:
    """A count of a record (a step, a weight): a whole number in lo..hi; ValueError otherwise."""
    number = _finite(key, value)
    if not lo <= number <= hi:
        raise ValueError(f"{key}: {_shown(value)} is out of range ({lo}..{hi})")
    return int(number)


def record_time(key: str, value: Any) -> float:
    """A time of a record: seconds since the epoch, finite, 0..RECORD_TIME_MAX; ValueError otherwise."""
    number = _finite(key, value)
    if not 0 <= number <= RECORD_TIME_MAX:
        raise ValueError(f"{key}: {_shown(value)} is out of range (0..{RECORD_TIME_MAX:.0f})")
    return number


def _finite(key: str, value: Any) -> float:
    if isinstance(value, str) and len(value) <= RECORD_NUMBER_TEXT:
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{key}: {_shown(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: {_shown(value)} is not a number")
    if isinstance(value, int):
        return value if abs(value) <= RECORD_TIME_MAX else math.inf  # no float overflow of a huge int
    if not math.isfinite(value):
        raise ValueError(f"{key}: {value} is not a finite number")
    return value


def _object(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not a JSON object but {_shown(value)}")
    return value


def _array(key: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{key} is not a JSON array but {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A value of a record in a message: its type and a short form of it (reprlib: bounded)."""
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _bounded(d: dict[str, Any], budget: int) -> dict[str, Any]:
    """The record within ``budget`` bytes, giving up first what decisions need least.

    A record past the API server's limit is rejected (422) and then nothing can be recorded or done,
    so, in this order, until it fits: the templates are packed (lossless: ``from_dict`` unpacks
    them); the look points go (only the dashboard reads them); older verdicts lose their details, then
    only the newest 5, then only the newest verdict is kept (decisions read only the current step's
    newest verdict); the failed template goes (`deliver
    retry` is then refused; applying the template again delivers it); last the stable template (only
    needed when the stable ReplicaSet is gone). A record small enough is returned as it is.

    Only ``details`` and ``summary`` (for people) are given up from the verdicts kept: what planners
    decide on (outcome, ``checks``, ``outOfReach``, ``interim``) stays, as do ``hold`` and
    ``outOfReachWarned``, so a decision never changes with the room the record had."""
    if _encoded_size(d) <= budget:
        return d
    d = dict(d)
    for key in TEMPLATES:
        if key in d:
            d[key + "Packed"] = _pack(d.pop(key))
    if "looks" in d and _encoded_size(d) > budget:
        d.pop("looks")  # only the dashboard's chart reads them
    if "running" in d and _encoded_size(d) > budget:
        d["running"] = dict(d["running"], details={})  # its typed checks stay: the look's evidence
    verdicts: list[dict[str, Any]] = list(d.get("verdicts") or [])
    for fewer in (len(verdicts), 5, 1):
        if _encoded_size(d) <= budget:
            return d
        kept = verdicts[-fewer:] if verdicts else []
        d["verdicts"] = [dict(v, details={}) for v in kept[:-1]] + kept[-1:]
    if _encoded_size(d) > budget and verdicts:
        d["verdicts"] = [dict(verdicts[-1], summary=str(verdicts[-1].get("summary", ""))[:200], details={})]
    for key in ("failedTemplatePacked", "stableTemplatePacked"):
        if _encoded_size(d) <= budget:
            return d
        d.pop(key, None)
    return d


# ---- actions: what a planner asks the engine to do (all idempotent) ----


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
