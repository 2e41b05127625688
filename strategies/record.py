"""The rollout record (annotation ``deliver.dev/state``): ``DeliveryState``, enough to resume
anywhere, with the ``Phase`` a delivery is in and why it is held (``HoldReason``). Written within a
byte budget and read as hostile input, both through ``strategies/codec.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .codec import (
    KEPT_LOOKS,
    KEPT_VERDICTS,
    RECORD_BUDGET,
    RECORD_COUNT_MAX,
    bounded,
    check_depth,
    record_array,
    record_int,
    record_object,
    record_template,
    record_time,
)
from .evidence import LookPoint, Outcome, StepVerdict


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
        writes it and ``bounded`` never drops it), so no decision on such a record reads its message."""
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
        """The record as JSON data, at most ``budget`` bytes when encoded (see ``bounded``)."""
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
        return bounded(d, budget)

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
        d = record_object("the record", d)
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
            failed_template=record_template(d, "failedTemplate"),
            retrying=str(d.get("retrying", "")),
            stable_template=record_template(d, "stableTemplate"),
            handled_request=str(d.get("handledRequest", "")),
            hooks=tuple(str(h) for h in record_array("hooks", d.get("hooks") or [])),
            verdicts=tuple(StepVerdict.from_dict(v) for v in record_array("verdicts", d.get("verdicts", []))),
            running=StepVerdict.from_dict(d["running"]) if d.get("running") else None,
            looks={
                str(name): tuple(LookPoint.from_list(p) for p in record_array("looks", points))
                for name, points in record_object("looks", d.get("looks") or {}).items()
            },
        )
