"""One rule set for operator requests: strategies.requests.refusal, used by the planner (and the CLI)."""

from __future__ import annotations

import pytest

from strategies import plan
from strategies.record import DeliveryState, HoldReason, Phase
from strategies.requests import ALLOWED, refusal
from strategies.spec import CanaryStep, Strategy

from .planning import NEW, STABLE, canary_spec, obs, started, version

MANUAL = canary_spec(steps=(CanaryStep(20), CanaryStep(pause=True), CanaryStep(100)))


@pytest.mark.parametrize("verb", sorted(ALLOWED))
@pytest.mark.parametrize("phase", list(Phase))
def test_the_planner_applies_exactly_the_requests_refusal_allows(verb: str, phase: Phase) -> None:
    state = started(Strategy.CANARY, weight=20, phase=phase, failed_template={"spec": {}}, failed_revision=NEW)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1005, request=verb, request_id="r1")
    p = plan(canary_spec(), state, o)
    acted = bool(p.events()) and any(
        e.reason.startswith(("Delivery", "Abort")) and e.reason != "DeliveryStarted" for e in p.events()
    )
    assert acted == (refusal(canary_spec(), state, verb) is None), (verb, phase, p.events())
    assert p.state.handled_request == "r1" or phase is Phase.ROLLING_BACK  # consumed either way


def test_refusal_words() -> None:
    idle = DeliveryState(phase=Phase.SUCCEEDED)
    assert refusal(None, idle, "promote", "ns/web") == (
        "ns/web is Succeeded (no delivery in progress); `promote` needs one of: Progressing, Paused"
    )
    assert refusal(None, idle, "promote-full", "ns/web").startswith(
        "ns/web is Succeeded (no delivery in progress); `promote --full`"
    )
    assert refusal(None, DeliveryState(phase=Phase.ROLLED_BACK), "retry", "ns/web") == (
        "ns/web is RolledBack but has no failed revision to retry"
    )
    assert refusal(None, DeliveryState(phase=Phase.PROGRESSING), "resume", "ns/web").endswith("needs one of: Paused")
    assert refusal(None, DeliveryState(phase=Phase.PAUSED, hold=HoldReason.OPERATOR), "resume") is None
    assert "unknown request" in (refusal(None, idle, "rewind") or "")


def test_resume_does_not_pass_a_manual_promotion_promote_does() -> None:
    at_step = started(Strategy.CANARY, step=1, weight=20, phase=Phase.PAUSED, hold=HoldReason.AWAITING_PROMOTION)
    why = refusal(MANUAL, at_step, "resume", "ns/web")
    assert why == "ns/web is waiting for a manual promotion (step 2); `deliver promote web` passes it"
    # the step alone tells it too (a record written before hold existed)
    assert refusal(MANUAL, at_step.replace(hold=HoldReason.NONE), "resume") is not None
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1005, request="resume", request_id="r1")
    resumed = plan(MANUAL, at_step, o)
    assert resumed.state.phase is Phase.PAUSED and not resumed.events() and resumed.state.handled_request == "r1"
    promoted = plan(
        MANUAL, at_step, obs(version(STABLE, 5), version(NEW, 1, owned=False), request="promote", request_id="r2")
    )
    assert promoted.state.phase is Phase.PROMOTING


def test_retry_after_a_success_is_refused_saying_how_to_deliver_a_revision_again() -> None:
    done = DeliveryState(phase=Phase.SUCCEEDED, revision="third00003", stable_revision="third00003")
    why = refusal(None, done, "retry", "ns/web") or ""
    assert why.startswith("ns/web is Succeeded: revision third00003 is the stable version and no failed revision")
    assert "apply its template" in why
    # the planner follows the same rule: nothing is applied
    p = plan(canary_spec(), done, obs(version("third00003", 5), target="third00003", request="retry", request_id="r"))
    assert not p.actions or not any(type(a).__name__ == "ApplyTemplate" for a in p.actions)
    assert p.state.handled_request == "r"


def test_the_cli_refuses_requests_with_the_planners_words() -> None:
    from delivery.cli.request_rules import check_request

    deployment = {
        "metadata": {
            "namespace": "ns",
            "name": "web",
            "annotations": {
                "deliver.dev/strategy": "canary",
                "deliver.dev/steps": "20,pause,100",
                "deliver.dev/state": '{"phase": "Paused", "step": 1, "hold": "AwaitingPromotion"}',
            },
        },
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}},
        },
    }
    state = DeliveryState(phase=Phase.PAUSED, step=1, hold=HoldReason.AWAITING_PROMOTION)
    for verb in ALLOWED:
        assert check_request(deployment, verb) == refusal(MANUAL, state, verb, "ns/web"), verb
