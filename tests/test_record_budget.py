"""What a planner decides from a record does not depend on how much room the record had.

A record short of room (``DeliveryState.to_dict(budget)``) gives up the verdicts' details, older
verdicts and the templates; the evidence a planner decides on is typed and kept. Each test plans
the same pass from the same record written with the full budget and with a tiny one, and expects
the same plan. The verdicts come in as an engine writes them into the record (``from_dict``), so
this file reads a record of any version of deliver the same way."""

from __future__ import annotations

import json
from typing import Any

from strategies import plan
from strategies.actions import Plan
from strategies.codec import RECORD_BUDGET
from strategies.evidence import StepVerdict
from strategies.observation import Observation
from strategies.reasons import EventReason
from strategies.record import DeliveryState
from strategies.spec import DeliverySpec, Strategy
from tests.planning import NEW, STABLE, canary_spec, obs, started, version

TINY = 600  # bytes: less than the record needs, so everything a record may give up goes
TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}
WHY = "check error-rate needs ~50,000 requests for a verdict but a step's analysis window carries ~900"


def verdict(at: float, outcome: str, n: int, interim: bool = False, out_of_reach: str = "") -> StepVerdict:
    """A verdict of one errors check resting on ``n`` canary requests, as the engine records it."""
    details: dict[str, Any] = {
        "outcome": outcome,
        "window": [1000.0, at],
        "checks": [{"name": "error-rate", "outcome": outcome, "e": 2.5, "n": [n, 4 * n], "critical": True, "msg": "m"}],
    }
    if out_of_reach:
        details["outOfReach"] = out_of_reach  # where an engine put it before it was typed (and ignored since)
    d: dict[str, Any] = {"step": 0, "outcome": outcome, "summary": f"error-rate {outcome}", "at": at}
    d.update(details=details, interim=interim)
    if out_of_reach:
        d["outOfReach"] = out_of_reach
    return StepVerdict.from_dict(d)


def written(state: DeliveryState, budget: int) -> DeliveryState:
    """The record as the next pass reads it back after it was written within ``budget`` bytes."""
    return DeliveryState.from_dict(json.loads(json.dumps(state.to_dict(budget=budget))))


def at(now: float, *analysed: StepVerdict) -> Observation:
    return obs(version(STABLE, 5), version(NEW, 1, owned=False), now=now, analysed=analysed)


def same_plan_whatever_the_budget(spec: DeliverySpec, state: DeliveryState, then: Observation) -> Plan:
    """The plan of ``then`` from ``state`` written with the full budget; the same from the tiny one."""
    full, tiny = written(state, RECORD_BUDGET), written(state, TINY)
    assert tiny.verdicts == () or all(not v.details for v in tiny.verdicts), "the tiny record gave up details"
    decided = plan(spec, full, then)
    small = plan(spec, tiny, then)
    assert small.actions == decided.actions
    assert (small.state.phase, small.state.hold, small.state.step, small.state.weight) == (
        decided.state.phase,
        decided.state.hold,
        decided.state.step,
        decided.state.weight,
    )
    assert small.requeue_after == decided.requeue_after
    return decided


def reasons(p: Plan) -> list[EventReason]:
    return [e.reason for e in p.events()]


def test_a_look_is_announced_by_the_evidence_of_the_running_window_whatever_the_budget() -> None:
    # AnalysisRunning is posted for the first look of a window, when the outcome changes and when the
    # canary's requests grew tenfold: that compares with the requests of the running look in the record
    spec = canary_spec(analysis=("error-rate",), interval=600.0, analysis_every=30.0)
    s = started(Strategy.CANARY, weight=20, stable_template=TEMPLATE)
    first = plan(spec, s, at(1031, verdict(1030.0, "inconclusive", 5000, interim=True)))
    assert reasons(first) == [EventReason.ANALYSIS_RUNNING] and first.state.running is not None

    decided = same_plan_whatever_the_budget(
        spec, first.state, at(1062, verdict(1061.0, "inconclusive", 9000, interim=True))
    )
    assert EventReason.ANALYSIS_RUNNING not in reasons(decided), "9,000 is not tenfold 5,000: no Event"


def test_the_out_of_reach_warning_is_posted_once_per_delivery_whatever_the_budget() -> None:
    spec = canary_spec(analysis=("error-rate",), interval=30.0, on_inconclusive="extend", max_extensions=5)
    s = started(Strategy.CANARY, weight=20, stable_template=TEMPLATE)
    first = plan(spec, s, at(1031, verdict(1030.0, "inconclusive", 40, out_of_reach=WHY)))
    assert EventReason.VERDICT_OUT_OF_REACH in reasons(first)
    # the step is extended; its next verdict is in reach (the rate went up), and a record short of
    # room keeps only the newest verdict
    second = plan(spec, first.state, at(1062, verdict(1061.0, "inconclusive", 400)))
    assert EventReason.VERDICT_OUT_OF_REACH not in reasons(second)
    decided = same_plan_whatever_the_budget(
        spec, second.state, at(1093, verdict(1092.0, "inconclusive", 60, out_of_reach=WHY))
    )
    assert EventReason.VERDICT_OUT_OF_REACH not in reasons(decided), "once per delivery"
