"""Edges production hits (issue 10), against the one fake API: scale to zero mid-delivery, a
failure on rolling's last step with automatic rollback off, superseding a paused delivery, retrying
after later successes. Given/When/Then through ``tests.fixture.Fixture``; only what the API shows.
"""

from __future__ import annotations

from delivery import templates
from delivery.kube.client import DEPLOYMENTS
from tests.fixture import NAME, Fixture, template

V1, V2, V3 = "web:v1", "web:v2", "web:v3"
REV1, REV2, REV3 = (templates.revision(template(v)) for v in (V1, V2, V3))


def scale(f: Fixture, replicas: int) -> None:
    """KEDA (or `kubectl scale`) sets the Deployment's replicas."""
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["spec"]["replicas"] = replicas
    f.kube.put(DEPLOYMENTS, d)


def test_a_canary_scaled_to_zero_mid_step_is_held_not_promoted_and_goes_on_when_scaled_back() -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="20,50,100", interval="30s", progress_deadline="60s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.serving().get(V2, 0) == 1)

    scale(f, 0)
    f.when_settled()
    f.when_time_passes(3600)  # far past every interval and deadline
    f.when_settled()

    record = f.record()
    assert (record["phase"], record["hold"], record["stableRevision"]) == ("Progressing", "NoReplicas", REV1)
    assert not any(v["outcome"] == "pass" for v in record["verdicts"]), "0/0 Ready is no evidence"
    assert [e["type"] for e in f.events("DeliveryHeld")] == ["Normal"]
    assert "DeliverySucceeded" not in f.reasons()

    scale(f, 3)
    f.when_settled()

    record = f.record()
    assert (record["phase"], record["hold"], record["stableRevision"]) == ("Succeeded", "", REV2)
    assert all("0/0" not in v["summary"] for v in record["verdicts"])


def test_a_revision_that_failed_once_is_delivered_again_after_another_one_succeeded() -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="50,100", interval="30s")
    f.given_delivered()
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert (f.record()["phase"], f.record()["failedRevision"]) == ("RolledBack", REV2)

    f.when_template_changes(V3)
    f.when_settled()
    assert (f.record()["phase"], f.record()["failedRevision"]) == ("Succeeded", ""), "a success forgets the failure"

    f.crashing.clear()  # v2's crash was in its environment, since fixed: re-applying it delivers it
    f.when_template_changes(V2)
    f.when_settled()

    record = f.record()
    assert (record["phase"], record["stableRevision"]) == ("Succeeded", REV2)
    assert "RevisionPreviouslyFailed" not in f.reasons()
    assert f.serving() == {V2: 3}


def test_superseding_a_rolling_delivery_held_as_failed_delivers_the_newest_with_its_checks() -> None:
    from delivery import gate

    f = Fixture()
    f.given_deployment("rolling", V1, replicas=3, pause_at="50", interval="30s", auto_rollback="false")
    f.given_delivered()
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert (f.record()["phase"], f.record()["hold"]) == ("Paused", "Failed")
    assert gate.decide(REV2, f.deployment())[0] == 1

    f.when_template_changes(V3)  # the fix
    f.when_reconciled()
    record = f.record()
    assert (record["phase"], record["hold"], record["revision"], record["step"]) == ("Progressing", "", REV3, 0)
    assert "failed" not in record["message"] and REV3 in record["message"]
    assert gate.decide(REV3, f.deployment())[0] is None, "the gate of the fix waits for it, not exit 1"

    f.when_settled()

    record = f.record()
    assert (record["phase"], record["stableRevision"]) == ("Succeeded", REV3)
    assert f.serving() == {V3: 3}
    assert gate.decide(REV3, f.deployment())[0] == 0
    assert "StepPassed" in f.reasons()[f.reasons().index("DeliverySuperseded") :], "the new revision was checked"


def test_a_crash_at_any_write_of_a_supersede_of_a_held_rolling_delivery_converges() -> None:
    import pytest

    from tests.fakekube import Crash

    def given() -> Fixture:
        f = Fixture()
        f.given_deployment("rolling", V1, replicas=3, pause_at="50", interval="30s", auto_rollback="false")
        f.given_delivered()
        f.crashing.add(V2)
        f.when_template_changes(V2)
        f.when_settled()
        f.when_template_changes(V3)
        return f

    clean = given()
    start = len(clean.kube.writes)
    clean.when_settled()
    writes = len(clean.kube.writes) - start
    assert writes >= 4
    for k in range(1, writes + 1):
        f = given()
        f.kube.crash_at_write(k)
        with pytest.raises(Crash):
            f.when_settled()
        f.when_restarted()
        f.when_settled()
        record = f.record()
        assert (record["phase"], record["stableRevision"], f.serving()) == ("Succeeded", REV3, {V3: 3}), k


def test_a_crash_at_any_write_while_scaled_to_zero_never_promotes() -> None:
    import pytest

    from tests.fakekube import Crash

    def given() -> Fixture:
        f = Fixture()
        f.given_deployment("canary", V1, replicas=3, steps="20,50,100", interval="30s")
        f.given_delivered()
        f.when_template_changes(V2)
        f.when_settled(until=lambda f: f.serving().get(V2, 0) == 1)
        scale(f, 0)
        return f

    clean = given()
    start = len(clean.kube.writes)
    clean.when_settled()
    writes = len(clean.kube.writes) - start
    assert writes >= 2
    for k in range(1, writes + 1):
        f = given()
        f.kube.crash_at_write(k)
        with pytest.raises(Crash):
            f.when_settled()
        f.when_restarted()
        f.when_time_passes(3600)
        f.when_settled()
        record = f.record()
        assert (record["phase"], record["hold"], record["stableRevision"]) == ("Progressing", "NoReplicas", REV1), k
        scale(f, 3)
        f.when_settled()
        assert (f.record()["phase"], f.record()["stableRevision"], f.serving()) == ("Succeeded", REV2, {V2: 3}), k


def recreate_held_as_failed() -> Fixture:
    """A recreate Deployment whose v2 crash-looped with auto-rollback off: held as failed."""
    f = Fixture()
    f.given_deployment("recreate", V1, replicas=2, interval="30s", auto_rollback="false")
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["spec"]["strategy"] = {"type": "Recreate"}
    f.kube.put(DEPLOYMENTS, d)
    f.given_delivered()
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert (f.record()["phase"], f.record()["hold"], f.record()["revision"]) == ("Paused", "Failed", REV2)
    return f


def test_superseding_a_held_recreate_delivery_checks_the_newest_revision() -> None:
    f = recreate_held_as_failed()
    f.crashing.add(V3)
    f.when_template_changes(V3)  # also broken: it must be caught, not rolled out unchecked
    f.when_settled()
    record = f.record()
    assert (record["phase"], record["hold"], record["revision"]) == ("Paused", "Failed", REV3)
    assert len(f.events("DeliveryFailed", "Warning")) == 2, "the newest revision's failure is told too"

    f = recreate_held_as_failed()
    f.when_template_changes(V3)
    f.when_settled()
    assert (f.record()["phase"], f.record()["stableRevision"], f.serving()) == ("Succeeded", REV3, {V3: 2})
    assert "StepPassed" in f.reasons() or any(v["outcome"] == "pass" for v in f.record()["verdicts"])


# ------------------------------------------------------------------ defect 6: actions after the record write


def rolled_back_canary() -> Fixture:
    """A canary whose v2 crash-looped and was rolled back; v2's crash has since been fixed."""
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="50,100", interval="30s")
    f.given_delivered()
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert (f.record()["phase"], f.record()["failedRevision"], f.image()) == ("RolledBack", REV2, V1)
    f.crashing.clear()
    return f


def test_a_retry_survives_a_failed_or_lost_template_write() -> None:
    import pytest

    from delivery.engine.state import send_request
    from delivery.errors import KubeError
    from tests.fakekube import Crash

    clean = rolled_back_canary()
    send_request(clean.kube, clean.deployment(), "retry")
    clean.kube.writes.clear()
    clean.when_settled()
    assert (clean.record()["phase"], clean.record()["stableRevision"], clean.serving()) == ("Succeeded", REV2, {V2: 3})
    assert len(clean.events("DeliveryRetried")) == 1
    writes = len(clean.kube.writes)
    assert writes >= 3
    for k in range(1, writes + 1):
        for crash in (True, False):
            f = rolled_back_canary()
            rid = send_request(f.kube, f.deployment(), "retry")
            f.kube.writes.clear()
            if crash:
                f.kube.crash_at_write(k)
                with pytest.raises(Crash):
                    f.when_settled()
                f.when_restarted()
            else:
                f.kube.fail_at_write(k, KubeError("the API server timed out", 504))
                try:
                    f.when_settled()
                except KubeError:
                    pass  # a failed record write: the controller's queue retries the key
            f.when_settled()
            record = f.record()
            outcome = (record["phase"], record["stableRevision"], record["handledRequest"], f.serving())
            assert outcome == ("Succeeded", REV2, rid, {V2: 3}), (k, crash)
            assert len(f.events("DeliveryRetried")) <= 1, (k, crash)  # an Event lost with its write is not re-posted


def test_a_superseded_canary_replicaset_goes_even_after_a_crash_at_any_write_of_the_supersede() -> None:
    import pytest

    from tests.fakekube import Crash

    def given() -> Fixture:
        f = Fixture()
        f.given_deployment("canary", V1, replicas=4, steps="50,100", interval="30s")
        f.given_delivered()
        f.crashing.add(V2)  # v2 crash-loops: it must not keep serving while v3 is delivered
        f.when_template_changes(V2)
        f.reconciler.reconcile("shop", NAME)  # step 1 scaled, not yet observed as unhealthy
        f.cluster()
        assert f.serving().get(V2, 0) == 2
        f.when_template_changes(V3)
        f.kube.writes.clear()
        return f

    clean = given()
    clean.when_reconciled()
    writes = len(clean.kube.writes)
    assert writes >= 3
    for k in range(1, writes + 1):
        f = given()
        f.kube.crash_at_write(k)
        with pytest.raises(Crash):
            f.when_reconciled()
        f.when_restarted()
        f.when_reconciled()
        f.cluster()
        revisions = {
            templates.revision(templates.without_hash(rs["spec"]["template"])) for rs in f.delivers_replicasets()
        }
        assert V2 not in f.serving() and revisions <= {REV3}, k
        f.when_settled()
        assert (f.record()["phase"], f.record()["stableRevision"], f.serving()) == ("Succeeded", REV3, {V3: 4}), k


# ------------------------------------------------------------------ defect 10: strategy change mid-delivery


def canary_changed_to_rolling() -> Fixture:
    """A canary delivery of v2 at its first step, when the user changes the strategy to rolling."""
    f = Fixture()
    f.given_deployment("canary", V1, replicas=4, steps="50,100", interval="30s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.serving().get(V2, 0) == 2)
    f.when_annotated(strategy="rolling", steps=None)
    f.when_settled()
    return f


def test_a_strategy_change_mid_delivery_records_the_revision_as_aborted_and_says_how_to_deliver_it() -> None:
    from delivery.engine.state import send_request

    f = canary_changed_to_rolling()
    record = f.record()
    assert (record["phase"], record["revision"], record["stableRevision"]) == ("Aborted", REV2, REV1)
    assert (f.image(), f.serving(), f.delivers_replicasets()) == (V1, {V1: 4}, [])
    assert not record["failedRevision"], "not a failure of the revision: re-applying it is not refused"
    [warning] = f.events("DeliveryAborted", "Warning")
    for words in ("from canary to rolling", f"reverted to the stable revision {REV1}", "deliver retry web"):
        assert words in warning["message"] and words in record["message"], words

    send_request(f.kube, f.deployment(), "retry")  # the template of v2 comes back, delivered with rolling
    f.when_settled()
    record = f.record()
    assert (record["phase"], record["strategy"], record["stableRevision"]) == ("Succeeded", "rolling", REV2)
    assert f.serving() == {V2: 4}

    f = canary_changed_to_rolling()
    f.when_template_changes(V2)  # or the user (GitOps) applies it again
    f.when_settled()
    record = f.record()
    assert (record["phase"], record["strategy"], record["stableRevision"]) == ("Succeeded", "rolling", REV2)
    assert "RevisionPreviouslyFailed" not in f.reasons()


# ------------------------------------------------------------------ defect 4: progress deadline


def test_a_readiness_blip_late_in_a_long_step_does_not_roll_back_but_a_pod_unready_too_long_does() -> None:
    from delivery.kube.client import PODS, REPLICASETS
    from tests.fixture import timestamp

    def blip(f: Fixture, unready_for: float) -> None:
        """One canary pod turned unready ``unready_for`` seconds ago (its ReplicaSet's status says so)."""
        [rs] = f.delivers_replicasets()
        pod = next(p for p in f.kube.find(PODS, "shop") if p["metadata"]["name"].startswith(rs["metadata"]["name"]))
        pod["status"]["conditions"] = [
            {"type": "Ready", "status": "False", "lastTransitionTime": timestamp(f.now - unready_for)}
        ]
        f.kube.put(PODS, pod)
        f.kube.update_status(REPLICASETS, rs["metadata"]["name"], dict(rs["status"], readyReplicas=0))

    def at_900s() -> Fixture:
        f = Fixture()
        f.given_deployment("canary", V1, replicas=3, steps="20,100", interval="30m", progress_deadline="60s")
        f.given_delivered()
        f.when_template_changes(V2)
        f.when_settled(until=lambda f: f.serving().get(V2, 0) == 1 and f.record().get("weight") == 20)
        f.when_time_passes(900)
        return f

    f = at_900s()
    blip(f, 2)
    f.when_reconciled()
    assert (f.record()["phase"], f.serving()) == ("Progressing", {V1: 3, V2: 1}), f.record()["message"]
    assert "DeliveryRolledBack" not in f.reasons()

    f = at_900s()
    blip(f, 61)
    f.when_reconciled()
    record = f.record()
    assert record["phase"] == "RollingBack" and "unready for 61s" in record["message"], record["message"]


# ------------------------------------------------------------------ defect 17: record size


def big_template(image: str, kib: int) -> dict[str, object]:
    """A pod template with a large JSON config in an env var."""
    routes = (f'{{"route":"/api/v{i}","upstream":"svc-{i % 37}:8080","retries":{i % 5}}},' for i in range(kib * 16))
    value = "".join(routes)[: kib * 1024]
    tpl = template(image)
    tpl["spec"]["containers"][0]["env"] = [{"name": "CONFIG", "value": value}]  # type: ignore[index]
    return tpl


def test_a_large_record_is_bounded_and_reads_back_what_decisions_need() -> None:
    import json

    from strategies.evidence import StepVerdict
    from strategies.record import DeliveryState, Phase

    verdicts = tuple(StepVerdict(i % 3, "pass", "s" * 300, 1000.0 + i, {"checks": ["x" * 2000]}) for i in range(40))
    small = DeliveryState(phase=Phase.PROGRESSING, revision=REV2, verdicts=verdicts[:3])
    assert DeliveryState.from_dict(small.to_dict()) == small, "a small record is kept as it is"

    stable, failed = big_template(V1, 140), big_template(V2, 140)
    state = DeliveryState(
        phase=Phase.ROLLED_BACK, revision=REV2, stable_template=stable, failed_template=failed, verdicts=verdicts
    )
    for budget in (256 * 1024, 64 * 1024):
        d = state.to_dict(budget=budget)
        assert len(json.dumps(d, sort_keys=True, separators=(",", ":"))) <= budget, budget
        back = DeliveryState.from_dict(json.loads(json.dumps(d)))
        assert (back.stable_template, back.failed_template) == (stable, failed), "templates kept, packed"
        assert back.verdicts[-1].at == verdicts[-1].at and back.verdicts[-1].outcome == "pass"


def test_a_record_past_the_annotation_limit_is_bounded_so_the_rollback_is_recorded() -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="50,100", interval="30s")
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["spec"]["template"] = big_template(V1, 140)
    f.kube.put(DEPLOYMENTS, d)
    f.when_settled()
    f.kube.writes.clear()
    f.crashing.add(V2)
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["spec"]["template"] = big_template(V2, 140)
    d["metadata"]["generation"] += 1
    f.kube.put(DEPLOYMENTS, d)
    f.when_settled()  # stable and failed template: 280 KiB unpacked, past the API's 256 KiB for annotations
    record = f.record()
    assert (record["phase"], f.serving()) == ("RolledBack", {V1: 3})
    assert "RecordRejected" not in f.reasons()


def test_a_rejected_record_write_raises_a_warning_once_and_is_not_retried_every_few_seconds() -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="50,100", interval="30s")
    f.given_delivered()
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["metadata"]["annotations"]["example.com/notes"] = "n" * (256 * 1024 - 600)  # leaves the record no room
    f.kube.put(DEPLOYMENTS, d)
    f.when_template_changes(V2)
    outcome = f.when_reconciled()  # no exception out of the pass: a 422 is not a crash
    assert outcome.requeue_after is not None and outcome.requeue_after >= 30
    f.when_reconciled()
    [warning] = f.events("RecordRejected", "Warning")
    assert "256" in warning["message"] or "too long" in warning["message"].lower(), warning["message"]
    assert f.serving() == {V1: 3}, "nothing acted on without a record"


def test_a_rolling_delivery_changed_to_canary_is_rolled_back_natively_and_retry_delivers_it_as_a_canary() -> None:
    from delivery.engine.state import send_request

    f = Fixture()
    f.given_deployment("rolling", V1, replicas=4, pause_at="50", interval="30s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.serving().get(V2, 0) >= 2)
    f.when_annotated(strategy="canary", pause_at=None, steps="50,100")
    f.when_settled()
    record = f.record()
    assert (record["phase"], record["revision"], f.serving()) == ("Aborted", REV2, {V1: 4})
    assert "from rolling to canary" in f.events("DeliveryAborted", "Warning")[0]["message"]

    send_request(f.kube, f.deployment(), "retry")
    f.when_settled()
    record = f.record()
    assert (record["phase"], record["strategy"], record["stableRevision"], f.serving()) == (
        "Succeeded",
        "canary",
        REV2,
        {V2: 4},
    )
    assert "StepPassed" in f.reasons()[f.reasons().index("DeliveryRetried") :]
