"""One reconcile pass, and passes in a row, against the fake API: what a delivery does to the cluster.

Given/When/Then through ``tests.fixture.Fixture``; assertions read only what the API shows (objects,
the ``deliver.dev/state`` record, Events), so planner and engine internals may be renamed freely.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from delivery import templates
from delivery.engine.state import send_request
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS, SERVICES
from tests.fakekube import Crash, Write
from tests.fixture import NAME, NS, STATE, Fixture, native_hash, template

V1, V2 = "web:v1", "web:v2"
REV1, REV2 = templates.revision(template(V1)), templates.revision(template(V2))


def canary(**annotations: str) -> Fixture:
    """Given a canary Deployment at rest on v1, deliver's record written."""
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, **{"steps": "20,50,100", "interval": "30s", **annotations})
    f.given_delivered()
    return f


def is_record_write(w: Write) -> bool:
    return w.plural == "deployments" and w.verb == "patch" and STATE in str(w.body)


# ------------------------------------------------------------------ starting


def test_a_new_template_on_a_canary_deployment_starts_a_delivery() -> None:
    f = canary()
    assert f.record()["stableRevision"] == REV1
    f.when_template_changes(V2)

    f.when_reconciled()

    record = f.record()
    assert (record["phase"], record["revision"], record["stableRevision"]) == ("Progressing", REV2, REV1)
    [new] = f.delivers_replicasets()
    assert new["spec"]["replicas"] == 1, "20% of 3 replicas, rounded up"
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == V2
    assert new["spec"]["selector"]["matchLabels"][templates.HASH_LABEL] == REV2
    assert not any(r.get("controller") for r in new["metadata"]["ownerReferences"]), "deliver's, not the Deployment's"
    d = f.deployment()
    assert d["spec"]["paused"] is True, "the Deployment controller must not roll v2 out by itself"
    assert f.image() == V2, "deliver never rewrites the user's template to start"
    assert f.serving() == {V1: 3, V2: 1}, "stable capacity is kept"
    assert f.reasons() == ["DeliveryStarted"]


def test_a_canary_delivery_runs_to_success_step_by_step() -> None:
    f = canary()
    f.when_template_changes(V2)

    shares: list[tuple[int, int]] = []

    def note_share(f: Fixture) -> bool:
        shares.append((f.serving().get(V2, 0), f.serving().get(V1, 0)))
        return False

    f.when_settled(until=note_share)

    record = f.record()
    assert (record["phase"], record["stableRevision"]) == ("Succeeded", REV2)
    assert f.serving() == {V2: 3}
    assert f.delivers_replicasets() == [], "the new ReplicaSet was handed to the Deployment"
    assert (1, 2) in shares, "20% and 50% of 3 replicas (exact: 1 new pod, the stable scaled down to 2)"
    assert shares[-1] == (3, 0)
    assert f.reasons()[0] == "DeliveryStarted" and f.reasons()[-1] == "DeliverySucceeded"


@pytest.mark.parametrize(
    ("strategy", "annotations", "checked"),
    [
        ("canary", {"steps": "20,50,100", "interval": "30s"}, 2),  # 20% and 50%; 100% is the promotion
        ("rolling", {"pause_at": "40", "interval": "30s"}, 2),  # the 40% point and the finished rollout
        ("blue-green", {"interval": "30s", "keep_warm": "60s"}, 1),  # the preview
    ],
)
def test_each_checked_step_is_announced_by_one_step_passed_event(
    strategy: str, annotations: dict[str, str], checked: int
) -> None:
    f = Fixture()
    if strategy == "blue-green":
        f.given_service(NAME)
    f.given_deployment(strategy, V1, replicas=3, **annotations)
    f.given_delivered()
    f.when_template_changes(V2)

    f.when_settled()

    assert f.record()["phase"] == "Succeeded"
    passed = [e["message"] for e in f.events("StepPassed")]
    assert len(passed) == checked, f"one StepPassed per passed step, got {passed}"


# ------------------------------------------------------------------ persisted first


def test_the_record_is_written_before_any_action() -> None:
    f = canary()
    f.when_template_changes(V2)
    f.kube.crash_at_write(2)  # the record is write 1; the controller dies at the first action

    with pytest.raises(Crash):
        f.when_reconciled()

    assert is_record_write(f.kube.writes[0])
    assert f.record()["phase"] == "Progressing" and f.record()["revision"] == REV2
    assert f.delivers_replicasets() == [], "no action ran"

    f.when_restarted()
    f.when_reconciled()

    [new] = f.delivers_replicasets()
    assert new["spec"]["replicas"] == 1
    assert f.record()["phase"] == "Progressing" and f.record()["revision"] == REV2


def _final(f: Fixture) -> tuple[str, str, str, dict[str, int], int, bool]:
    r = f.record()
    return (
        r["phase"],
        r["stableRevision"],
        f.image(),
        f.serving(),
        len(f.delivers_replicasets()),
        f.deployment()["spec"]["paused"],
    )


def _crash_everywhere(given: Callable[[], Fixture]) -> tuple[int, list[Fixture]]:
    """Run the scenario once cleanly to count its writes, then once per write with a crash there
    (a new controller process resumes after it). Returns (writes, the crashed-and-resumed runs)."""
    clean = given()
    start = len(clean.kube.writes)
    clean.when_settled()
    writes = len(clean.kube.writes) - start
    runs = []
    for k in range(1, writes + 1):
        f = given()
        f.kube.crash_at_write(k)
        with pytest.raises(Crash):
            f.when_settled()
        f.when_restarted()
        f.when_settled()
        runs.append(f)
    return writes, [clean, *runs]


def test_a_crash_at_any_write_of_a_delivery_converges_to_the_same_outcome() -> None:
    def given() -> Fixture:
        f = canary()
        f.when_template_changes(V2)
        return f

    writes, runs = _crash_everywhere(given)
    assert writes >= 10
    for k, f in enumerate(runs):
        assert _final(f) == ("Succeeded", REV2, V2, {V2: 3}, 0, True), f"crash at write {k}"


def test_a_crash_at_any_write_of_a_rollback_converges_to_the_same_outcome() -> None:
    def given() -> Fixture:
        f = canary()
        f.crashing.add(V2)
        f.when_template_changes(V2)
        f.when_reconciled()  # started: a canary pod that crash-loops
        f.cluster()
        return f

    writes, runs = _crash_everywhere(given)
    assert writes >= 4
    for k, f in enumerate(runs):
        state = (f.record()["phase"], f.record()["failedRevision"], f.image(), f.serving(), f.delivers_replicasets())
        assert state == ("RolledBack", REV2, V1, {V1: 3}, []), f"crash at write {k}"


# ------------------------------------------------------------------ conflicts


def test_a_stale_resource_version_makes_the_pass_plan_again_without_applying_twice() -> None:
    f = canary()
    f.when_template_changes(V2)
    # The Deployment controller writes a status between deliver's read and deliver's record write.
    f.kube.before_write(
        lambda k: k.update_status(DEPLOYMENTS, NAME, {"conditions": [{"type": "Available", "status": "True"}]}),
        match=is_record_write,
    )

    f.when_reconciled()

    record_writes = [w for w in f.kube.writes if is_record_write(w)]
    assert len(record_writes) == 2, "the first record write got 409 Conflict, the pass planned again"
    assert f.record()["phase"] == "Progressing"
    assert len(f.writes_to("replicasets", "create")) == 1
    assert len(f.delivers_replicasets()) == 1
    assert f.reasons() == ["DeliveryStarted"], "announced once"


def test_a_conflict_on_a_guarded_action_is_retried_at_once_and_applied_once() -> None:
    f = canary()
    f.when_template_changes(V2)

    def is_adoption(w: Write) -> bool:
        return (
            w.plural == "replicasets"
            and w.verb == "patch"
            and templates.OWNER_LABEL in str(w.body)
            and "ownerReferences" in str(w.body)
        )

    # The ReplicaSet controller writes the status between deliver's read and its adoption patch.
    f.kube.before_write(
        lambda k: k.update_status(
            REPLICASETS,
            k.find(REPLICASETS, NS, f"{templates.OWNER_LABEL}={NAME}")[0]["metadata"]["name"],
            {"fullyLabeledReplicas": 3},
        ),
        match=is_adoption,
    )

    f.when_settled()

    adoptions = [w for w in f.kube.writes if is_adoption(w)]
    assert len(adoptions) == 2, "the first adoption patch got 409 Conflict and was planned again"
    assert any(o.requeue_after == 0.2 for o in f.outcomes), "a lost race is retried at once"
    assert _final(f) == ("Succeeded", REV2, V2, {V2: 3}, 0, True)
    assert len(f.events("DeliverySucceeded")) == 1


# ------------------------------------------------------------------ operator requests


def test_an_operator_abort_is_applied_exactly_once() -> None:
    f = canary()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.serving().get(V2, 0) > 0)
    rid = send_request(f.kube, f.deployment(), "abort")

    f.when_settled()

    record = f.record()
    assert (record["phase"], record["handledRequest"]) == ("Aborted", rid)
    assert (f.image(), f.serving(), f.delivers_replicasets()) == (V1, {V1: 3}, [])
    assert len(f.events("DeliveryAborted", "Warning")) == 1
    n = len(f.kube.writes)
    f.when_restarted()  # a new leader reads the same request annotation: it was handled, per the record
    f.when_settled()
    assert len(f.kube.writes) == n and len(f.events("DeliveryAborted")) == 1


# ------------------------------------------------------------------ bad input


def test_an_invalid_annotation_gives_a_warning_event_and_no_write_to_the_deployment() -> None:
    f = canary()
    f.when_annotated(steps="20,ten,100")
    f.when_template_changes(V2)
    before = f.deployment()

    f.when_reconciled()
    f.when_reconciled()

    assert f.writes_to("deployments") == []
    assert f.deployment() == before
    assert f.delivers_replicasets() == []
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/steps" in warning["message"]
    assert f.reasons() == ["InvalidAnnotation"], "one Warning, not one per pass"


# ------------------------------------------------------------------ blue-green


def test_blue_green_switches_the_active_service_selector_in_one_patch() -> None:
    f = Fixture()
    f.given_service(NAME)
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", keep_warm="60s")
    f.given_delivered()
    f.when_template_changes(V2)

    f.when_settled(until=lambda f: f.record().get("switched", 0) > 0)
    preview = f.kube.obj(SERVICES, f"{NAME}-preview")
    assert preview["spec"]["selector"] == {"app": NAME, templates.HASH_LABEL: REV2}
    assert preview["spec"]["ports"][0]["targetPort"] == 8080, "ports copied from the active Service"
    active_writes = [w for w in f.writes_to("services") if w.name == NAME]
    assert [(w.verb, w.body) for w in active_writes] == [
        ("patch", {"spec": {"selector": {templates.HASH_LABEL: native_hash(template(V1))}}}),
        ("patch", {"spec": {"selector": {templates.HASH_LABEL: REV2}}}),
    ], "the user's Service is pinned to the stable pods before any preview pod exists, then switched in one patch"
    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"] == {"app": NAME, templates.HASH_LABEL: REV2}
    assert f.serving() == {V1: 2, V2: 2}, "the old version is kept warm"

    f.when_settled()
    assert f.record()["phase"] == "Succeeded"
    assert f.serving() == {V2: 2}
    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"][templates.HASH_LABEL] == REV2


def test_blue_green_never_lets_the_users_service_reach_preview_pods_even_after_a_crash() -> None:
    f = Fixture()
    f.given_service(NAME)  # the user's Service selects app=web: the preview pods carry that label too
    f.given_deployment("blue-green", V1, replicas=2, interval="30s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.kube.before_write(lambda k: k.crash_at_write(1), match=lambda w: w.plural == "replicasets" and w.verb == "create")

    with pytest.raises(Crash):
        f.when_settled()  # the controller dies right after creating the preview ReplicaSet
    f.cluster()  # its pods come up and are Ready while no controller runs

    selector = f.kube.obj(SERVICES, NAME)["spec"]["selector"]
    selected = {p["spec"]["containers"][0]["image"] for p in f.kube.find(PODS, NS, {"matchLabels": selector})}
    assert selected == {V1}, "the active Service must be pinned to the stable pods before preview pods exist"


# ------------------------------------------------------------------ rollback


def test_crash_looping_canary_pods_roll_back_to_the_stable_version() -> None:
    f = canary()
    f.crashing.add(V2)
    f.when_template_changes(V2)

    f.when_settled()

    record = f.record()
    assert (record["phase"], record["failedRevision"], record["stableRevision"]) == ("RolledBack", REV2, REV1)
    assert f.image() == V1, "the stable template is written back"
    assert f.serving() == {V1: 3}
    assert f.delivers_replicasets() == []
    [rolled_back] = f.events("DeliveryRolledBack", "Warning")
    assert "CrashLoopBackOff" in rolled_back["message"]
    assert f.reasons()[-1] == "StableRestored"


# ------------------------------------------------------------------ release


def test_removing_the_strategy_mid_delivery_releases_the_deployment() -> None:
    f = Fixture()
    f.given_service(NAME)
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", keep_warm="60s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("switched", 0) > 0)
    assert f.delivers_replicasets() and SERVICES.plural in {w.plural for w in f.kube.writes}

    f.when_annotated(strategy=None)
    f.when_reconciled()

    d = f.deployment()
    assert STATE not in d["metadata"]["annotations"], "the record is gone"
    assert d["spec"]["paused"] is False, "the Deployment controller takes over"
    assert f.delivers_replicasets() == []
    assert ("services", "shop", f"{NAME}-preview") not in f.kube.objects, "deliver's own Service is deleted"
    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"] == {"app": NAME}, "the user's Service is unpinned"
    assert f.reasons()[-1] == "Released"

    f.cluster()
    assert f.serving() == {V2: 2}, "the native rollout of the template"
    n = len(f.kube.writes)
    f.when_reconciled()
    assert len(f.kube.writes) == n, "a plain Deployment: deliver does nothing"
