"""The planner decides what a broken router means: hold the step, warn once, roll back after the
progress deadline counted from the time kept in the record (so a new leader keeps the deadline)."""

from __future__ import annotations

import json

from strategies import plan
from strategies.actions import SetWeight
from strategies.reasons import EventReason
from strategies.record import DeliveryState, HoldReason, Phase
from strategies.spec import RouterRef, Strategy

from .planning import NEW, STABLE, canary_spec, obs, started, version

SPEC = canary_spec(router=RouterRef("gateway-api", "web"))  # progress deadline 120 s
BROKEN = "HTTPRoute web not found"


def broken(now: float, **kw: object) -> object:
    return obs(version(STABLE, 5), version(NEW, 1, owned=False), now=now, router_problem=BROKEN, **kw)


def reasons(p: object) -> list[str]:
    return [e.reason for e in p.events()]  # type: ignore[attr-defined]


def reread(state: DeliveryState) -> DeliveryState:
    """What a fresh process reads back from the deliver.dev/state annotation."""
    return DeliveryState.from_dict(json.loads(json.dumps(state.to_dict())))


def test_broken_router_holds_the_step_records_when_and_warns_once() -> None:
    first = plan(SPEC, started(Strategy.CANARY, weight=20), broken(1010))
    assert first.state.phase is Phase.PROGRESSING and first.state.step == 0
    assert first.state.router_down_since == 1010 and first.state.router_problem == BROKEN
    assert first.state.hold is HoldReason.ROUTER_UNAVAILABLE
    assert reasons(first) == [EventReason.ROUTER_UNAVAILABLE] and "holding step 1" in first.events()[0].message
    assert list(first.actions) == first.events() and first.paused is None  # nothing else is done meanwhile
    again = plan(SPEC, first.state, broken(1050))
    assert again.state.router_down_since == 1010 and not again.events() and not again.actions


def test_router_broken_past_the_deadline_rolls_back_in_a_fresh_process() -> None:
    held = plan(SPEC, started(Strategy.CANARY, weight=20), broken(1010)).state
    # a leader change: the next controller knows only the record
    p = plan(SPEC, reread(held), broken(1010 + 121))
    assert p.state.phase is Phase.ROLLING_BACK and "traffic router unavailable: " + BROKEN in p.state.message
    assert EventReason.DELIVERY_ROLLED_BACK in reasons(p)
    assert not any(isinstance(a, SetWeight) for a in p.actions)  # nothing to tell a broken router
    within = plan(SPEC, reread(held), broken(1010 + 119))
    assert within.state.phase is Phase.PROGRESSING


def test_a_router_that_works_again_clears_the_record_and_a_new_outage_warns_again() -> None:
    held = plan(SPEC, started(Strategy.CANARY, weight=20), broken(1010)).state
    ok = plan(SPEC, held, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1020, router_weight=20))
    assert ok.state.router_down_since == 0 and ok.state.router_problem == ""
    assert ok.state.hold is HoldReason.NONE
    later = plan(SPEC, ok.state, broken(1200))
    assert later.state.router_down_since == 1200 and reasons(later) == [EventReason.ROUTER_UNAVAILABLE]


def test_an_operator_pause_holds_past_the_deadline_and_abort_rolls_back_at_once() -> None:
    paused = started(Strategy.CANARY, weight=20, phase=Phase.PAUSED, hold=HoldReason.OPERATOR, router_down_since=1010)
    still = plan(SPEC, paused, broken(1500))
    assert still.state.phase is Phase.PAUSED and still.state.hold is HoldReason.OPERATOR
    aborted = plan(SPEC, paused, broken(1500, request="abort", request_id="a1"))
    assert aborted.state.phase is Phase.ROLLING_BACK and aborted.state.handled_request == "a1"
    assert "aborted by an operator" in aborted.state.message
    # other requests wait for the router
    promote = plan(SPEC, paused, broken(1500, request="promote", request_id="p1"))
    assert promote.state.phase is Phase.PAUSED and promote.state.handled_request == ""


def test_a_broken_router_stops_a_delivery_before_it_starts() -> None:
    idle = DeliveryState(phase=Phase.SUCCEEDED, revision=STABLE, stable_revision=STABLE, stable_hash=STABLE)
    p = plan(SPEC, idle, obs(version(STABLE, 5), now=1000, router_problem=BROKEN))
    assert p.state.phase is Phase.SUCCEEDED and reasons(p) == [EventReason.ROUTER_UNAVAILABLE]
    assert "deliver takes no action" in p.events()[0].message and "holding" not in p.events()[0].message
    assert [type(a) for a in p.actions] == [type(p.events()[0])]
    quiet = plan(SPEC, p.state, obs(version(STABLE, 5), now=1030, router_problem=BROKEN))
    assert not quiet.actions


def test_rolling_back_goes_on_while_the_router_is_broken() -> None:
    rb = started(Strategy.CANARY, phase=Phase.ROLLING_BACK, step=-1, finished=1000)
    p = plan(
        SPEC, rb, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1010, target=STABLE, router_problem=BROKEN)
    )
    assert p.state.phase is Phase.ROLLING_BACK and any(type(a).__name__ == "DeleteNew" for a in p.actions)
    assert not any(isinstance(a, SetWeight) for a in p.actions)
