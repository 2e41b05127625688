from strategies import plan
from strategies.actions import AdoptNew, DeleteNew, RevertTemplate, ScaleNew, SetPaused, SwitchActive
from strategies.evidence import StepVerdict
from strategies.record import DeliveryState, Phase
from strategies.spec import DeliverySpec, Strategy

from .planning import NEW, STABLE, later, obs, started, version


def bg(**kw):
    base = dict(
        strategy=Strategy.BLUE_GREEN,
        interval=10.0,
        progress_deadline=60.0,
        keep_warm=30.0,
        active_service="app",
        preview_service="app-preview",
    )
    base.update(kw)
    return DeliverySpec(**base)


def reasons(p):
    return [e.reason for e in p.events()]


# ---- blue-green ----


def test_bluegreen_superseded_while_the_adopted_revision_settles_keeps_the_active_service_on_it():
    """Issue 10 defect 8: v2 is handed to the Deployment (Promoting, v1 scaling to zero) when v3 is
    applied: v2 is the stable version now, and the active Service stays on its pods, not v1's."""
    promoting = started(Strategy.BLUE_GREEN, phase=Phase.PROMOTING, step=2, switched=1000.0)
    o = obs(version(STABLE, 0), version(NEW, 4), replicas=4, target="newrev0003", now=1100)
    p = plan(bg(), promoting, o)
    assert SwitchActive("app", NEW) in p.actions and SwitchActive("app", STABLE) not in p.actions
    assert (p.state.revision, p.state.stable_revision, p.state.stable_hash) == ("newrev0003", NEW, NEW)
    assert not any(isinstance(a, RevertTemplate) for a in p.actions)


def test_bluegreen_brings_up_full_preview_with_active_on_stable():
    p = plan(bg(), DeliveryState(), obs(version(STABLE, 4), replicas=4))
    assert ScaleNew(4) in p.actions and SwitchActive("app", STABLE) in p.actions
    assert SwitchActive("app", NEW) not in p.actions


def test_bluegreen_switches_in_one_action_after_preview_passes_then_keeps_old_warm():
    s = started(Strategy.BLUE_GREEN)
    o = obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1011)
    p = plan(bg(), s, o)  # records the health verdict
    p = plan(bg(), p.state, o)
    assert p.state.step == 1 and SwitchActive("app", NEW) in p.actions and "ActiveSwitched" in reasons(p)
    assert p.state.switched == 1011
    assert not any(isinstance(a, AdoptNew) for a in p.actions)  # old kept warm
    warm = plan(bg(), p.state, obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1030))
    assert not any(isinstance(a, AdoptNew) for a in warm.actions)
    done_warm = plan(bg(), p.state, obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1042))
    assert AdoptNew() in done_warm.actions and done_warm.state.phase is Phase.PROMOTING
    final = plan(bg(), done_warm.state, obs(version(STABLE, 0), version(NEW, 4), replicas=4, now=1044))
    assert final.state.phase is Phase.SUCCEEDED


def test_bluegreen_failure_after_switch_switches_back():
    s = started(Strategy.BLUE_GREEN, step=1, switched=1000.0)
    o = obs(version(STABLE, 4), version(NEW, 4, ready=2, owned=False, crashloop=2), replicas=4, now=1005)
    p = plan(bg(), s, o)
    assert p.state.phase is Phase.ROLLING_BACK
    assert SwitchActive("app", STABLE) in p.actions
    assert DeleteNew() not in p.actions  # green pods drain first
    later_ = plan(
        bg(),
        p.state,
        obs(version(STABLE, 4), version(NEW, 4, ready=2, owned=False), replicas=4, target=STABLE, now=1011),
    )
    assert SwitchActive("app", STABLE) in later_.actions and DeleteNew() in later_.actions
    assert later_.actions.index(SwitchActive("app", STABLE)) < later_.actions.index(DeleteNew())  # traffic first


def test_bluegreen_without_auto_promote_waits_for_promote():
    s = started(Strategy.BLUE_GREEN, verdicts=(StepVerdict(0, "pass", "ok", 1011.0),))
    o = obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1011)
    p = plan(bg(auto_promote=False), s, o)
    assert p.state.phase is Phase.PAUSED and SwitchActive("app", NEW) not in p.actions
    go = plan(
        bg(auto_promote=False),
        p.state,
        obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1012, request="promote", request_id="1"),
    )
    assert SwitchActive("app", NEW) in go.actions


# ---- rolling ----


def rolling(**kw):
    base = dict(strategy=Strategy.ROLLING, pause_at=(25, 50), interval=10.0, progress_deadline=60.0)
    base.update(kw)
    return DeliverySpec(**base)


def test_rolling_unpauses_until_the_pause_point_then_pauses():
    p = plan(rolling(), DeliveryState(), obs(version(STABLE, 4), replicas=4))
    assert SetPaused(False) in p.actions and p.state.phase is Phase.PROGRESSING
    s = p.state
    at_point = plan(rolling(), s, obs(version(STABLE, 3), version(NEW, 1, ready=0), replicas=4, paused=False, now=1001))
    assert at_point.paused


def test_rolling_moves_through_points_and_finishes_paused():
    s = started(Strategy.ROLLING, step=2)
    o = obs(version(STABLE, 0), version(NEW, 4), replicas=4, paused=False, now=1011)
    p = plan(rolling(), s, o)
    p = plan(rolling(), p.state, o)
    assert p.state.phase is Phase.SUCCEEDED and p.paused


def test_rolling_failure_reverts_template_natively_then_pauses_when_restored():
    s = started(Strategy.ROLLING)
    o = obs(version(STABLE, 3), version(NEW, 1, ready=0, crashloop=1), replicas=4, paused=True, now=1003)
    p = plan(rolling(), s, o)
    assert p.state.phase is Phase.ROLLING_BACK
    assert RevertTemplate(STABLE) in p.actions and SetPaused(False) in p.actions
    restoring = plan(
        rolling(),
        p.state,
        obs(version(STABLE, 3), version(NEW, 1, ready=0), replicas=4, target=STABLE, paused=False, now=1004),
    )
    assert restoring.state.phase is Phase.ROLLING_BACK
    back = plan(
        rolling(), p.state, obs(version(STABLE, 4), version(NEW, 0), replicas=4, target=STABLE, paused=False, now=1010)
    )
    assert back.state.phase is Phase.ROLLED_BACK and back.paused


# ---- recreate ----


def recreate(**kw):
    base = dict(strategy=Strategy.RECREATE, interval=10.0, progress_deadline=60.0)
    base.update(kw)
    return DeliverySpec(**base)


def test_recreate_unpauses_verifies_and_finishes():
    p = plan(recreate(), DeliveryState(), obs(version(STABLE, 3), replicas=3, native="Recreate"))
    assert SetPaused(False) in p.actions
    o = obs(version(STABLE, 0), version(NEW, 3), replicas=3, paused=False, native="Recreate", now=1011)
    p2 = plan(recreate(), p.state, o)
    p3 = plan(recreate(), p2.state, o)
    assert p3.state.phase is Phase.SUCCEEDED and p3.paused
    # the verified version is announced once: the health check records, the planner posts
    assert reasons(p2).count("StepPassed") + reasons(p3).count("StepPassed") == 1
    assert reasons(p3) == ["StepPassed", "DeliverySucceeded"]


def test_recreate_not_ready_in_deadline_restores_old():
    s = started(Strategy.RECREATE)
    o = obs(version(STABLE, 0), version(NEW, 3, ready=0), replicas=3, paused=False, native="Recreate", now=1061)
    p = plan(recreate(), s, o)
    assert p.state.phase is Phase.ROLLING_BACK and RevertTemplate(STABLE) in p.actions


def test_bluegreen_promote_before_preview_is_ready_does_not_switch():
    s = started(Strategy.BLUE_GREEN)
    o = obs(
        version(STABLE, 4),
        version(NEW, 4, ready=1, owned=False),
        replicas=4,
        now=1002,
        request="promote-full",
        request_id="p",
    )
    p = plan(bg(), s, o)
    assert SwitchActive("app", NEW) not in p.actions and AdoptNew() not in p.actions
    assert SwitchActive("app", STABLE) in p.actions
    late = plan(bg(), p.state, obs(version(STABLE, 4), version(NEW, 4, ready=1, owned=False), replicas=4, now=1070))
    assert late.state.phase is Phase.ROLLING_BACK


def test_adoption_that_does_not_settle_unpauses_and_success_pauses_again():
    from strategies.spec import CanaryStep

    spec = DeliverySpec(strategy=Strategy.CANARY, steps=(CanaryStep(50), CanaryStep(100)), interval=5.0)
    s = started(Strategy.CANARY, step=1, phase=Phase.PROMOTING)
    # an HPA moved replicas 4 -> 6 after adoption: the paused controller scaled proportionally
    mixed = obs(version(STABLE, 2), version(NEW, 4), replicas=6, now=1003)
    p = plan(spec, s, mixed)
    assert SetPaused(False) in p.actions and p.state.phase is Phase.PROMOTING
    done = plan(spec, p.state, obs(version(STABLE, 0), version(NEW, 6), replicas=6, paused=False, now=1010))
    assert done.state.phase is Phase.SUCCEEDED and done.paused


def test_abort_after_adoption_is_refused():
    s = started(Strategy.CANARY, step=2, phase=Phase.PROMOTING)
    p = plan(
        DeliverySpec(strategy=Strategy.CANARY),
        s,
        obs(version(STABLE, 3), version(NEW, 5), request="abort", request_id="z"),
    )
    assert p.state.phase is Phase.PROMOTING and "AbortRefused" in reasons(p)
    assert not any(isinstance(a, (DeleteNew, RevertTemplate)) for a in p.actions)


def test_bluegreen_analysis_compares_preview_with_active() -> None:
    from strategies.actions import Analyse

    p = plan(
        bg(analysis=("x",)),
        started(Strategy.BLUE_GREEN),
        obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1011),
    )
    (a,) = [x for x in p.actions if isinstance(x, Analyse)]
    assert (a.new_hash, a.new_service, a.stable_service) == (NEW, "app-preview", "app")


def test_no_strategy_passes_a_check_on_zero_pods() -> None:
    from strategies.record import HoldReason

    zero = obs(version(STABLE, 0), version(NEW, 0), replicas=0, paused=False, now=1500)
    for spec, state in (
        (rolling(), started(Strategy.ROLLING, step=0)),
        (rolling(), started(Strategy.ROLLING, step=2)),
        (recreate(), started(Strategy.RECREATE)),
    ):
        p = plan(spec, state, zero)
        p = plan(spec, p.state, zero)
        assert p.state.phase is Phase.PROGRESSING and p.state.hold is HoldReason.NO_REPLICAS, (spec.strategy, p.state)
    bg_zero = obs(version(STABLE, 0), version(NEW, 0, owned=False), replicas=0, now=1500)
    p = plan(bg(), started(Strategy.BLUE_GREEN), bg_zero)
    p = plan(bg(), p.state, bg_zero)
    assert p.state.step == 0 and p.state.hold is HoldReason.NO_REPLICAS
    assert SwitchActive("app", NEW) not in p.actions


# ---- a failed revision is forgotten once another one succeeds (issue 10, defect 11) ----


def test_a_later_success_clears_the_failed_revision_so_it_may_be_delivered_again() -> None:
    third = "third00003"
    spec = rolling(pause_at=())
    failed = DeliveryState(
        phase=Phase.ROLLED_BACK,
        stable_revision=STABLE,
        stable_hash=STABLE,
        failed_revision=NEW,
        failed_template={"a": 1},
    )
    p = plan(spec, failed, obs(version(STABLE, 4), replicas=4, target=third))
    assert p.state.phase is Phase.PROGRESSING and p.state.revision == third
    done = obs(version(STABLE, 0), version(third, 4), replicas=4, target=third, paused=False, now=1011)
    p = plan(spec, plan(spec, p.state, done).state, done)
    assert p.state.phase is Phase.SUCCEEDED
    assert (p.state.failed_revision, p.state.failed_template) == ("", None)
    again = plan(spec, p.state, obs(version(third, 4), replicas=4, target=NEW, now=1020))
    assert again.state.phase is Phase.PROGRESSING and again.state.revision == NEW
    assert "RevisionPreviouslyFailed" not in reasons(again) and "DeliveryStarted" in reasons(again)


def test_a_success_recorded_before_the_fix_forgets_its_failed_revision_on_the_next_pass() -> None:
    legacy = DeliveryState(
        phase=Phase.SUCCEEDED, revision="third00003", stable_revision="third00003", failed_revision=NEW
    )
    p = plan(rolling(), legacy, obs(version("third00003", 4), replicas=4, target=NEW))
    assert p.state.phase is Phase.PROGRESSING and p.state.revision == NEW and p.state.failed_revision == ""


# ---- rolling's last step fails with automatic rollback off (issue 10, defect 9) ----


def test_rolling_last_step_failure_with_auto_rollback_off_is_held_as_failed_and_told() -> None:
    from strategies.record import HoldReason

    for points in ((), (25, 50)):
        spec = rolling(pause_at=points, auto_rollback=False)
        s = started(Strategy.ROLLING, step=len(points))
        stuck = obs(version(STABLE, 2), version(NEW, 2, ready=0), replicas=4, paused=False, now=1061)
        p = plan(spec, s, stuck)
        assert p.state.phase is Phase.PAUSED and p.state.hold is HoldReason.FAILED, (points, p.state)
        assert reasons(p) == ["DeliveryFailed"] and "automatic rollback is off" in p.state.message
        assert p.paused, "no further new pods are rolled out while an operator decides"
        assert not any(isinstance(a, RevertTemplate) for a in p.actions)
        again = plan(spec, p.state, later(stuck, 30))
        assert again.state.phase is Phase.PAUSED and not again.events()


# ---- superseding a paused native delivery starts the new one cleanly (issue 10, defect 5) ----


def test_superseding_a_paused_rolling_or_recreate_delivery_starts_the_newest_one_cleanly() -> None:
    from strategies.record import HoldReason

    newer = "newer00002"
    cases = (
        (rolling(auto_rollback=False), started(Strategy.ROLLING, step=1), "RollingUpdate"),
        (recreate(auto_rollback=False), started(Strategy.RECREATE), "Recreate"),
    )
    for spec, s, native in cases:
        held = s.replace(phase=Phase.PAUSED, hold=HoldReason.FAILED, message="failed: new version unhealthy")
        by_operator = s.replace(phase=Phase.PAUSED, hold=HoldReason.OPERATOR, message="paused by an operator")
        for paused_as in (held, by_operator):
            o = obs(version(STABLE, 3), version(NEW, 1, ready=0), replicas=4, target=newer, native=native, now=1100)
            p = plan(spec, paused_as, o)
            st = p.state
            assert (st.phase, st.hold, st.revision, st.step) == (Phase.PROGRESSING, HoldReason.NONE, newer, 0), st
            assert newer in st.message and "failed" not in st.message and "operator" not in st.message
            assert "DeliverySuperseded" in reasons(p)
    # the checks apply to the newest revision: crash-looping recreate pods roll back
    spec, s, native = cases[1]
    p = plan(
        spec, s.replace(phase=Phase.PAUSED, hold=HoldReason.FAILED), obs(version(STABLE, 3), target=newer, now=1100)
    )
    crashing = obs(version(STABLE, 0), version(newer, 3, ready=0, crashloop=3), replicas=3, target=newer, paused=False)
    failed = plan(recreate(), p.state, later(crashing, 105))
    assert failed.state.phase is Phase.ROLLING_BACK and failed.state.failed_revision == newer


def test_bluegreen_failing_after_the_switch_with_auto_rollback_off_is_held_not_finished_by_itself() -> None:
    from strategies.record import HoldReason

    spec = bg(auto_rollback=False)
    s = started(Strategy.BLUE_GREEN, step=1, switched=1000.0)
    slow = obs(version(STABLE, 4), version(NEW, 4, ready=2, owned=False), replicas=4, now=1061)
    p = plan(spec, s, slow)
    assert (p.state.phase, p.state.hold, reasons(p)) == (Phase.PAUSED, HoldReason.FAILED, ["DeliveryFailed"])
    ready = obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1100)  # past keep-warm too
    again = plan(spec, p.state, ready)
    assert (again.state.phase, again.state.hold) == (Phase.PAUSED, HoldReason.FAILED)
    assert AdoptNew() not in again.actions and not again.events(), "a failed revision is not promoted by itself"
    go = plan(
        spec,
        p.state,
        obs(version(STABLE, 4), version(NEW, 4, owned=False), replicas=4, now=1101, request="promote", request_id="p"),
    )
    assert AdoptNew() in go.actions and go.state.phase is Phase.PROMOTING
