from dataclasses import replace

from strategies import plan
from strategies.actions import (
    AdoptNew,
    Analyse,
    DeleteNew,
    EnsureService,
    HoldStable,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SetWeight,
)
from strategies.evidence import StepVerdict
from strategies.record import DeliveryState, Phase
from strategies.spec import CanaryStep, DeliverySpec, RouterRef, Strategy

from .planning import NEW, STABLE, canary_spec, later, obs, started, version


def kinds(p):
    return [type(a).__name__ for a in p.actions]


def analyses(p):
    return [a for a in p.actions if isinstance(a, Analyse)]


def reasons(p):
    return [e.reason for e in p.events()]


def test_template_change_starts_first_step_with_ceil_share_of_pods():
    p = plan(canary_spec(), DeliveryState(), obs(version(STABLE, 5)))
    assert p.state.phase is Phase.PROGRESSING
    assert p.state.revision == NEW and p.state.stable_revision == STABLE
    assert ScaleNew(1) in p.actions  # 20% of 5 replicas
    assert "DeliveryStarted" in reasons(p)
    assert not p.paused  # already paused


def test_idle_deployment_is_paused_and_stray_replicasets_removed():
    o = obs(version(STABLE, 5), version("other", 1, owned=False), target=STABLE, paused=False)
    p = plan(canary_spec(), DeliveryState(), o)
    assert p.paused and DeleteNew() in p.actions
    assert p.state.phase is Phase.IDLE and p.state.stable_revision == STABLE


def test_step_waits_for_ready_pods_then_holds_for_interval():
    s = started(Strategy.CANARY)
    waiting = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False), now=1010))
    assert waiting.state.step == 0 and waiting.requeue_after
    holding = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1010))
    assert holding.state.step == 0 and not holding.state.verdicts


def test_health_only_step_records_a_pass_then_moves_to_next_weight():
    s = started(Strategy.CANARY, weight=20)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1031)
    p = plan(canary_spec(), s, o)
    assert p.state.verdicts and p.state.verdicts[-1].outcome == "pass"
    p2 = plan(canary_spec(), p.state, o)
    assert p2.state.step == 1
    assert ScaleNew(2) in p2.actions  # 50% of 5 -> 2 pods (exact: the nearest share, a tie to fewer)
    assert HoldStable(3) in p2.actions  # and 3 stable pods (5 - 1 maxUnavailable available meanwhile)
    assert "StepPassed" in reasons(p2)


def test_analysis_is_requested_when_checks_are_declared_and_fail_rolls_back():
    spec = canary_spec(analysis=("error-rate",))
    s = started(Strategy.CANARY, weight=20)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1031)
    p = plan(spec, s, o)
    assert analyses(p) == [Analyse(0, 1000.0, new_hash=NEW, stable_hash=STABLE)]
    failed = s.replace(verdicts=(StepVerdict(0, "fail", "error-rate fail", 1031.0),))
    rb = plan(spec, failed, o)
    assert rb.state.phase is Phase.ROLLING_BACK
    assert rb.state.failed_revision == NEW
    assert DeleteNew() in rb.actions and RevertTemplate(STABLE) in rb.actions and SetWeight(0) in rb.actions
    assert "DeliveryRolledBack" in reasons(rb)


def test_inconclusive_pauses_by_default_and_extends_when_asked():
    s = started(Strategy.CANARY, weight=20).replace(verdicts=(StepVerdict(0, "inconclusive", "no data", 1031.0),))
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1031)
    paused = plan(canary_spec(analysis=("x",)), s, o)
    assert paused.state.phase is Phase.PAUSED
    extended = plan(canary_spec(analysis=("x",), on_inconclusive="extend"), s, o)
    assert extended.state.phase is Phase.PROGRESSING and extended.state.extensions == 1
    assert extended.state.step_started == 1031
    rolled = plan(canary_spec(analysis=("x",), on_inconclusive="rollback"), s, o)
    assert rolled.state.phase is Phase.ROLLING_BACK


def test_crashloop_rolls_back_at_once():
    s = started(Strategy.CANARY)
    o = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False, crashloop=1, restarts=3), now=1005)
    p = plan(canary_spec(), s, o)
    assert p.state.phase is Phase.ROLLING_BACK and "CrashLoopBackOff" in p.state.message
    assert p.state.failed_template == o.template


def test_never_ready_rolls_back_after_progress_deadline_only():
    s = started(Strategy.CANARY)
    early = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False), now=1100))
    assert early.state.phase is Phase.PROGRESSING
    late = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False), now=1121))
    assert late.state.phase is Phase.ROLLING_BACK and "progress deadline" in late.state.message


def test_auto_rollback_off_pauses_instead():
    s = started(Strategy.CANARY)
    o = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False, crashloop=1), now=1005)
    p = plan(canary_spec(auto_rollback=False), s, o)
    assert p.state.phase is Phase.PAUSED and not any(isinstance(a, DeleteNew) for a in p.actions)


def test_promotion_scales_to_full_then_adopts_then_succeeds():
    s = started(Strategy.CANARY, step=2)
    p1 = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 3, owned=False), now=1001))
    assert p1.state.phase is Phase.PROMOTING and ScaleNew(5) in p1.actions and AdoptNew() not in p1.actions
    p2 = plan(canary_spec(), p1.state, obs(version(STABLE, 5), version(NEW, 5, owned=False), now=1002))
    assert AdoptNew() in p2.actions and SetWeight(100) in p2.actions
    p3 = plan(canary_spec(), p2.state, obs(version(STABLE, 5), version(NEW, 5, pod_hash=NEW), now=1003))
    assert p3.state.phase is Phase.PROMOTING  # old still running
    p4 = plan(canary_spec(), p3.state, obs(version(STABLE, 0), version(NEW, 5, pod_hash=NEW), now=1004))
    assert p4.state.phase is Phase.SUCCEEDED and p4.state.stable_revision == NEW
    assert (
        not any(isinstance(a, EnsureService) for a in p4.actions) and SetWeight(0) in p4.actions
    )  # no router: no Services


def test_manual_promotion_pauses_until_promote():
    spec = canary_spec(steps=(CanaryStep(20), CanaryStep(pause=True), CanaryStep(100)))
    s = started(Strategy.CANARY, step=1)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1001)
    held = plan(spec, s, o)
    assert held.state.phase is Phase.PAUSED and "AwaitingPromotion" in reasons(held)
    assert ScaleNew(1) in held.actions  # keeps the previous step's weight
    again = plan(spec, held.state, o)
    assert again.state.phase is Phase.PAUSED and not again.events()
    promoted = plan(
        spec,
        held.state,
        obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1002, request="promote", request_id="r1"),
    )
    assert promoted.state.phase is Phase.PROMOTING and promoted.state.handled_request == "r1"
    replay = plan(
        spec,
        promoted.state.replace(phase=Phase.PAUSED, step=1),
        obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1003, request="promote", request_id="r1"),
    )
    assert replay.state.phase is Phase.PAUSED  # the same request is never applied twice


def test_abort_request_restores_stable():
    s = started(Strategy.CANARY, step=1)
    p = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 3, owned=False), request="abort", request_id="a"))
    assert p.state.phase is Phase.ROLLING_BACK and DeleteNew() in p.actions and "DeliveryAborted" in reasons(p)
    # the undo is repeated until the stable version is fully back, then the record says Aborted
    again = plan(canary_spec(), p.state, obs(version(STABLE, 5), version(NEW, 3, owned=False), target=STABLE))
    assert again.state.phase is Phase.ROLLING_BACK and DeleteNew() in again.actions
    done = plan(canary_spec(), p.state, obs(version(STABLE, 5), target=STABLE))
    assert done.state.phase is Phase.ABORTED and "StableRestored" in reasons(done)


def test_failed_undo_step_is_retried_on_the_next_pass():
    s = started(Strategy.CANARY, step=1)
    rb = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 3, owned=False, crashloop=1), now=1001))
    # say RevertTemplate failed: the template is still the new revision and the canary RS is there
    retry = plan(canary_spec(), rb.state, obs(version(STABLE, 5), version(NEW, 3, owned=False), now=1003))
    assert retry.state.phase is Phase.ROLLING_BACK
    assert RevertTemplate(STABLE) in retry.actions and DeleteNew() in retry.actions and SetWeight(0) in retry.actions


def test_failed_revision_is_not_retried_by_itself_but_retry_reapplies_it():
    s = DeliveryState(phase=Phase.ROLLED_BACK, failed_revision=NEW, failed_template={"a": 1}, stable_revision=STABLE)
    p = plan(canary_spec(), s, obs(version(STABLE, 5)))
    assert p.state.phase is Phase.ROLLED_BACK and "RevisionPreviouslyFailed" in reasons(p)
    quiet = plan(canary_spec(), p.state, obs(version(STABLE, 5)))
    assert not quiet.events()
    r = plan(canary_spec(), s, obs(version(STABLE, 5), target=STABLE, request="retry", request_id="x"))
    assert any(type(a).__name__ == "ApplyTemplate" for a in r.actions)
    # kept until the template is observed: a lost template write is issued again, not forgotten
    assert (r.state.failed_revision, r.state.retrying) == (NEW, NEW)
    again = plan(canary_spec(), r.state, obs(version(STABLE, 5), target=STABLE))
    assert [type(a).__name__ for a in again.actions] == ["ApplyTemplate"] and again.state.retrying == NEW
    seen = plan(canary_spec(), r.state, obs(version(STABLE, 5), target=NEW))
    assert seen.state.phase is Phase.PROGRESSING and (seen.state.retrying, seen.state.failed_revision) == ("", "")
    other = plan(canary_spec(), r.state, obs(version(STABLE, 5), target="newer00002"))
    assert other.state.revision == "newer00002" and not other.state.retrying, "a newer template wins over the retry"


def test_new_template_mid_delivery_supersedes_the_old_canary():
    s = started(Strategy.CANARY, step=1)
    p = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 3, owned=False), target="newer00002"))
    assert p.state.revision == "newer00002" and p.state.step == 0
    assert DeleteNew() in p.actions and not any(isinstance(a, RevertTemplate) for a in p.actions)
    assert "DeliverySuperseded" in reasons(p)


def test_a_superseded_canary_replicaset_is_deleted_on_every_pass_until_gone():
    # the supersede pass was recorded, but its delete was lost (a crash, a failed write)
    s = started(Strategy.CANARY)
    o = obs(version(STABLE, 5), version("older00001", 3, owned=False), version(NEW, 1, owned=False), now=1001)
    p = plan(canary_spec(), s, o)
    assert DeleteNew(keep_revision=NEW) in p.actions and ScaleNew(1) in p.actions
    for state in (s.replace(phase=Phase.PAUSED), s.replace(phase=Phase.PROMOTING, step=2)):
        assert DeleteNew(keep_revision=NEW) in plan(canary_spec(), state, o).actions
    quiet = plan(canary_spec(), s, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1001))
    assert not any(isinstance(a, DeleteNew) for a in quiet.actions)


def test_router_weight_waits_until_router_confirms():
    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    s = started(Strategy.CANARY, weight=20)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1031, router_weight=0)
    p = plan(spec, s, o)
    assert SetWeight(20) in p.actions and not p.state.verdicts
    ok = plan(spec, s, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1031, router_weight=20))
    assert ok.state.verdicts


def test_router_rollback_drains_canary_pods_before_deleting_them():
    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    s = started(Strategy.CANARY, step=1)
    rb = plan(spec, s, obs(version(STABLE, 5), version(NEW, 3, owned=False), now=1010, request="abort", request_id="a"))
    assert SetWeight(0) in rb.actions and DeleteNew() not in rb.actions
    assert rb.actions.index(SetWeight(0)) == 0
    soon = plan(spec, rb.state, obs(version(STABLE, 5), version(NEW, 3, owned=False), target=STABLE, now=1012))
    assert DeleteNew() not in soon.actions and soon.requeue_after and soon.requeue_after <= 5
    later_ = plan(spec, rb.state, obs(version(STABLE, 5), version(NEW, 3, owned=False), target=STABLE, now=1016))
    assert DeleteNew() in later_.actions


def test_router_promotion_adopts_only_after_weight_100_has_drained():
    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    s = started(Strategy.CANARY, step=2, weight=50)
    full = obs(version(STABLE, 5), version(NEW, 5, owned=False), now=1001, router_weight=50)
    p1 = plan(spec, s, full)
    assert SetWeight(100) in p1.actions and AdoptNew() not in p1.actions
    p2 = plan(spec, p1.state, obs(version(STABLE, 5), version(NEW, 5, owned=False), now=1002, router_weight=100))
    assert AdoptNew() not in p2.actions  # still draining the old pods
    p3 = plan(spec, p1.state, obs(version(STABLE, 5), version(NEW, 5, owned=False), now=1007, router_weight=100))
    assert AdoptNew() in p3.actions


def test_at_rest_behind_a_router_a_lost_route_reset_and_stable_repin_are_issued_again():
    """Succeeded was written, then the repin of NAME-stable and the route reset were lost (a failed
    write, a crash): the next pass at rest re-issues both from what it observes."""
    from strategies.observation import ServiceObs

    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    done = started(Strategy.CANARY, phase=Phase.SUCCEEDED, stable_revision=NEW, stable_hash=NEW, finished=1000.0)
    lost = obs(
        version(NEW, 5),
        version(STABLE, 0),
        now=1100,
        router_weight=100,
        services=(ServiceObs("app-stable", STABLE, ours=True), ServiceObs("app-canary", NEW, ours=True)),
    )
    p = plan(spec, done, lost)
    assert EnsureService("app-stable", NEW) in p.actions and SetWeight(0) in p.actions
    assert p.state.phase is Phase.SUCCEEDED and p.state.switched == 1100  # the drain counts from the reset
    served = obs(
        version(NEW, 5),
        version(STABLE, 0),
        now=1101,
        router_weight=0,
        services=(ServiceObs("app-stable", NEW, ours=True), ServiceObs("app-canary", NEW, ours=True)),
    )
    again = plan(spec, p.state, served)
    assert not any(isinstance(a, (EnsureService, SetWeight)) for a in again.actions)


def test_at_rest_canary_pods_are_deleted_only_after_a_reissued_reset_has_drained():
    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    back = started(Strategy.CANARY, phase=Phase.ROLLED_BACK, finished=1000.0)
    o = obs(version(STABLE, 5), version(NEW, 2, owned=False), target=STABLE, now=1100, router_weight=50)
    p = plan(spec, back, o)
    assert SetWeight(0) in p.actions and DeleteNew() not in p.actions
    soon = plan(spec, p.state, later(replace(o, router_weight=0), 2))
    assert DeleteNew() not in soon.actions and soon.requeue_after
    drained = plan(spec, p.state, later(replace(o, router_weight=0), 6))
    assert DeleteNew() in drained.actions


def test_router_gives_the_canary_its_weight_only_once_it_has_a_ready_pod_after_a_scale_to_zero():
    """Issue 10 defect 13 behind a router: scaled to zero the route is withdrawn from the canary
    before its pods go; scaled back, the step's weight returns only with a Ready canary pod."""
    from strategies.record import HoldReason

    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    serving = started(Strategy.CANARY, weight=20)
    zero = plan(spec, serving, obs(version(STABLE, 5), version(NEW, 1, owned=False), replicas=0, router_weight=20))
    assert SetWeight(0) in zero.actions and SetWeight(20) not in zero.actions
    assert ScaleNew(1) in zero.actions and ScaleNew(0) not in zero.actions  # the pods go once the route is 0
    assert zero.state.weight == 0
    gone = plan(spec, zero.state, obs(version(STABLE, 5), version(NEW, 1, owned=False), replicas=0, router_weight=0))
    assert ScaleNew(0) in gone.actions and gone.state.hold is HoldReason.NO_REPLICAS
    back = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False), replicas=5, router_weight=0, now=1100)
    starting = plan(spec, gone.state, back)
    assert not any(isinstance(a, SetWeight) and a.weight > 0 for a in starting.actions)
    ready = plan(spec, starting.state, replace(back, versions=(version(STABLE, 5), version(NEW, 1, owned=False))))
    assert SetWeight(20) in ready.actions and ready.state.weight == 20


def test_router_promotion_scaled_to_zero_withdraws_the_route_and_switches_again_once_ready():
    spec = canary_spec(router=RouterRef("gateway-api", "route"))
    switched = started(Strategy.CANARY, phase=Phase.PROMOTING, step=3, weight=100, switched=990.0)
    zero = plan(spec, switched, obs(version(STABLE, 5), version(NEW, 5, owned=False), replicas=0, router_weight=100))
    assert SetWeight(0) in zero.actions and ScaleNew(5) in zero.actions and AdoptNew() not in zero.actions
    assert (zero.state.weight, zero.state.switched) == (0, 0.0)
    back = obs(version(STABLE, 5), version(NEW, 5, ready=0, owned=False), router_weight=0, now=1100)
    starting = plan(spec, zero.state, back)
    assert not any(isinstance(a, SetWeight) and a.weight > 0 for a in starting.actions)
    ready = plan(spec, starting.state, replace(back, versions=(version(STABLE, 5), version(NEW, 5, owned=False))))
    assert SetWeight(100) in ready.actions and AdoptNew() not in ready.actions  # switched again, then drained


def test_hold_and_analysis_window_start_when_the_step_weight_is_served():
    s = started(Strategy.CANARY)  # step began at 1000; pods took until 1025 to become Ready
    p = plan(canary_spec(analysis=("x",)), s, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1025))
    assert p.state.weight == 20 and p.state.step_started == 1025 and p.state.analysis_started == 1025
    early = plan(canary_spec(analysis=("x",)), p.state, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1040))
    assert not any(isinstance(a, Analyse) for a in early.actions)  # 15s of traffic < 30s interval
    due = plan(canary_spec(analysis=("x",)), p.state, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1056))
    assert [(a.step, a.start) for a in analyses(due)] == [(0, 1025.0)]


def test_verdicts_of_an_analysis_go_into_the_next_plans_record_with_their_events() -> None:
    spec = canary_spec(analysis=("error-rate",))
    s = started(Strategy.CANARY, weight=20)
    failed = StepVerdict(0, "fail", "error-rate fail", 1031.0)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1032, analysed=(failed,))
    p = plan(spec, s, o)
    # one record: the verdict and the decision it leads to, announced in that order
    assert p.state.verdicts == (failed,) and p.state.phase is Phase.ROLLING_BACK
    assert reasons(p)[:1] == ["AnalysisFailed"] and "DeliveryRolledBack" in reasons(p)
    # planning again with the same analysis (a conflicting write, re-planned) records it once
    again = plan(spec, p.state.replace(phase=Phase.PROGRESSING), o)
    assert again.state.verdicts == (failed,) and "AnalysisFailed" not in reasons(again)
    passed = StepVerdict(0, "pass", "ok", 1031.0)
    ok = plan(spec, s, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1032, analysed=(passed,)))
    assert reasons(ok)[:2] == ["AnalysisPassed", "StepPassed"] and ok.state.step == 1


def test_a_pause_is_part_of_the_record_write_and_an_unpause_an_ordered_action() -> None:
    running = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1001, paused=False)
    p = plan(canary_spec(), started(Strategy.CANARY), running)
    assert p.paused is True and not any(isinstance(a, SetPaused) for a in p.actions)
    s = started(Strategy.ROLLING, step=0)
    rb = plan(
        DeliverySpec(strategy=Strategy.ROLLING, pause_at=(50,)),
        s,
        obs(version(STABLE, 3), version(NEW, 2, crashloop=1), now=1001, paused=True),
    )
    assert rb.paused is None and rb.actions.index(RevertTemplate(STABLE)) < rb.actions.index(SetPaused(False))


def test_the_plan_says_what_the_analysis_compares() -> None:
    routed = canary_spec(analysis=("x",), router=RouterRef("gateway-api", "route"))
    s = started(Strategy.CANARY, weight=20)
    o = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1031, router_weight=20)
    assert analyses(plan(routed, s, o)) == [
        Analyse(0, 1000.0, new_hash=NEW, stable_hash=STABLE, new_service="app-canary", stable_service="app-stable")
    ]
    rolling = DeliverySpec(strategy=Strategy.ROLLING, analysis=("x",), interval=10.0)
    done = obs(version(STABLE, 0), version(NEW, 5, pod_hash="podhash1"), now=1011, paused=False)
    (a,) = analyses(plan(rolling, started(Strategy.ROLLING), done))
    assert (a.new_hash, a.new_service, a.baseline_end) == ("podhash1", "", None)  # the pods' own hash
    recreate = DeliverySpec(strategy=Strategy.RECREATE, analysis=("x",), interval=10.0)
    (r,) = analyses(plan(recreate, started(Strategy.RECREATE, now=990), done))
    assert r.baseline_end == 990  # the old version stopped when the delivery started


# ---- scaled to zero mid-delivery (issue 10, defect 13): no pods is no evidence ----


def test_a_step_never_passes_on_zero_pods_and_the_delivery_holds_until_replicas_return() -> None:
    from strategies.record import HoldReason

    s = started(Strategy.CANARY, weight=20)
    state = s
    for now in (1031.0, 1100.0, 2000.0):  # far past the interval and the progress deadline
        zero = obs(version(STABLE, 0), version(NEW, 0, owned=False), replicas=0, now=now)
        p = plan(canary_spec(), state, zero)
        state = p.state
        assert state.phase is Phase.PROGRESSING and state.step == 0, state.message
        assert state.hold is HoldReason.NO_REPLICAS and "scaled to zero" in state.message
        assert not any(v.outcome == "pass" for v in state.verdicts)
        assert not any(isinstance(a, AdoptNew) for a in p.actions)
    assert reasons(plan(canary_spec(), s, obs(version(STABLE, 0), replicas=0, now=1031))) == ["DeliveryHeld"]
    assert reasons(plan(canary_spec(), state, obs(version(STABLE, 0), replicas=0, now=2001))) == []  # told once
    back = plan(canary_spec(), state, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=2010))
    assert back.state.hold is HoldReason.NONE and back.state.step == 0
    assert back.state.step_started == 2010 and not back.state.verdicts  # the hold starts over on real pods
    passed = plan(canary_spec(), back.state, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=2041))
    assert passed.state.verdicts[-1].outcome == "pass" and "1/1" in passed.state.verdicts[-1].summary


def test_promotion_never_hands_over_zero_pods() -> None:
    from strategies.record import HoldReason

    s = started(Strategy.CANARY, step=2, weight=50)
    p = plan(canary_spec(), s, obs(version(STABLE, 0), version(NEW, 0, owned=False), replicas=0, now=1001))
    assert AdoptNew() not in p.actions and p.state.hold is HoldReason.NO_REPLICAS
    assert p.state.phase is not Phase.SUCCEEDED


def test_a_promotion_failing_with_auto_rollback_off_is_held_once_not_restarted_every_pass() -> None:
    from strategies.record import HoldReason

    spec = canary_spec(auto_rollback=False)
    s = started(Strategy.CANARY, step=3, phase=Phase.PROMOTING)
    o = obs(version(STABLE, 5), version(NEW, 5, ready=2, owned=False, crashloop=3), now=1001)
    p = plan(spec, s, o)
    assert (p.state.phase, p.state.hold, reasons(p)) == (Phase.PAUSED, HoldReason.FAILED, ["DeliveryFailed"])
    for seconds in (5, 60, 600):
        again = plan(spec, p.state, obs(version(STABLE, 5), version(NEW, 5, ready=5, owned=False), now=1001 + seconds))
        assert (again.state.phase, again.state.hold) == (Phase.PAUSED, HoldReason.FAILED)
        assert not again.events() and AdoptNew() not in again.actions, "held until an operator decides"
    go = obs(version(STABLE, 5), version(NEW, 5, owned=False), now=1700, request="promote", request_id="p")
    promoted = plan(spec, p.state, go)
    assert promoted.state.phase is Phase.PROMOTING and AdoptNew() in promoted.actions


def test_progress_deadline_counts_how_long_a_needed_pod_is_unready_not_the_steps_age():
    spec = canary_spec(interval=1800.0, progress_deadline=120.0)  # a 30-minute step, a 2-minute deadline
    s = started(Strategy.CANARY, weight=20)
    # 900 s into the step one pod was Ready until 2 s ago (a readiness blip): wait, do not roll back
    blip = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False, oldest_unready_age=2.0), now=1900)
    p = plan(spec, s, blip)
    assert p.state.phase is Phase.PROGRESSING and p.requeue_after
    # unready for longer than the deadline: rolled back
    stuck = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False, oldest_unready_age=121.0), now=1900)
    assert plan(spec, s, stuck).state.phase is Phase.ROLLING_BACK
    # (a pod never Ready since its creation has been unready for its age: the observation says so)
    # a pod that does not exist at all counts from the step's start
    missing = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False, total=0), now=1121)
    assert plan(spec, s, missing).state.phase is Phase.ROLLING_BACK
    assert plan(spec, s, later(missing, -2)).state.phase is Phase.PROGRESSING
    # an unready age older than the step (a step just extended, or resumed) counts from the step's start
    resumed = obs(version(STABLE, 5), version(NEW, 1, ready=0, owned=False, oldest_unready_age=500.0), now=1010)
    assert plan(spec, s, resumed).state.phase is Phase.PROGRESSING


def test_promotion_deadline_counts_the_unready_age_too():
    spec = canary_spec(progress_deadline=120.0)
    s = started(Strategy.CANARY, phase=Phase.PROMOTING, step=3, weight=100)
    blip = obs(version(STABLE, 5), version(NEW, 5, ready=4, owned=False, oldest_unready_age=3.0), now=1900)
    p = plan(spec, s, blip)
    assert p.state.phase is Phase.PROMOTING and ScaleNew(5) in p.actions
    stuck = obs(version(STABLE, 5), version(NEW, 5, ready=4, owned=False, oldest_unready_age=300.0), now=1900)
    assert plan(spec, s, stuck).state.phase is Phase.ROLLING_BACK
