"""deliver gate: the exit-code decision, the wait loop (fake API) and the JUnit report."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml

from delivery import gate, junit, templates
from delivery.errors import Forbidden, KubeError, Unauthorized
from delivery.kube.client import DEPLOYMENTS
from delivery.spec import REQUEST, STATE
from tests.fakekube import FakeKube

TPL_A = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v1"}]}}
TPL_B = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v2"}]}}
A, B = templates.revision(TPL_A), templates.revision(TPL_B)


def deployment(
    template: dict[str, Any] = TPL_B,
    state: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ann = {"deliver.dev/strategy": "canary", "deliver.dev/steps": "20,50,100"}
    ann.update(annotations or {})
    if state is not None:
        ann[STATE] = json.dumps(state)
    if request is not None:
        ann[REQUEST] = json.dumps(request)
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "annotations": ann},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": copy.deepcopy(template)},
        "status": {"readyReplicas": 3},
    }


def st(phase: str, revision: str = B, stable: str = A, **kw: Any) -> dict[str, Any]:
    return {"phase": phase, "revision": revision, "stableRevision": stable, **kw}


# ---------------------------------------------------------------- decide


@pytest.mark.parametrize(
    "state, template, code",
    [
        (st("Succeeded", B, B), TPL_B, 0),
        (st("Idle", A, A), TPL_A, 0),  # nothing to deliver
        (st("RolledBack", failedRevision=B), TPL_B, 1),
        (st("RolledBack", failedRevision=B), TPL_A, 1),  # rolling: template written back to stable
        (st("Aborted"), TPL_B, 1),
        (st("Progressing"), TPL_B, None),
        (st("Paused"), TPL_B, None),
        (st("Promoting"), TPL_B, None),
        (st("RollingBack"), TPL_A, None),
        (st("Succeeded", A, A), TPL_B, None),  # controller has not started the new one yet
        (st("RolledBack", A, A, failedRevision=A), TPL_B, None),
    ],
)
def test_decide(state: dict[str, Any], template: dict[str, Any], code: int | None) -> None:
    want = B if template is TPL_B or state["revision"] == B else A
    assert gate.decide(want, deployment(template, state))[0] == code


def test_decide_invalid_annotations_fail_at_once() -> None:
    code, reason = gate.decide(B, deployment(TPL_B, st("Progressing"), {"deliver.dev/steps": "50,20"}))
    assert code == 1 and "deliver.dev/steps" in reason


def test_decide_not_managed() -> None:
    d = deployment(TPL_B)
    del d["metadata"]["annotations"]["deliver.dev/strategy"]
    code, reason = gate.decide(B, d)
    assert code == 1 and "not managed" in reason


def test_decide_superseded_by_another_template() -> None:
    tpl_c = copy.deepcopy(TPL_B)
    tpl_c["spec"]["containers"][0]["image"] = "web:v3"
    code, reason = gate.decide(B, deployment(tpl_c, st("Succeeded", A, A)))
    assert code == 1 and "superseded" in reason


def test_decide_waits_for_a_pending_request() -> None:
    d = deployment(
        TPL_B, st("RolledBack", failedRevision=B, handledRequest="old"), request={"verb": "retry", "id": "new", "at": 1}
    )
    assert gate.decide(B, d)[0] is None
    d = deployment(
        TPL_B, st("RolledBack", failedRevision=B, handledRequest="new"), request={"verb": "retry", "id": "new", "at": 1}
    )
    assert gate.decide(B, d)[0] == 1


def test_decide_previously_failed_revision_suggests_retry() -> None:
    code, reason = gate.decide(B, deployment(TPL_B, st("RolledBack", failedRevision=B, message="bad")))
    assert code == 1 and "deliver retry web" in reason


# ---------------------------------------------------------------- wait


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def set_state(state: dict[str, Any], advance: float = 0.0, clock: Clock | None = None):
    def event(kube: FakeKube) -> dict[str, Any]:
        if clock is not None:
            clock.t += advance
        key = ("deployments", "ns", "web")
        obj = kube.objects[key]
        obj["metadata"]["annotations"][STATE] = json.dumps(state)
        kube._bump(obj)
        return {"type": "MODIFIED", "object": copy.deepcopy(obj)}

    return event


def test_wait_follows_the_delivery_to_success() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Succeeded", A, A)))
    kube.watch_events = [
        [
            {"type": "MODIFIED", "object": {"metadata": {"name": "other"}}},
            set_state(st("Progressing", step=0, weight=20), 5, clock),
            set_state(
                st(
                    "Progressing",
                    step=1,
                    weight=50,
                    verdicts=[{"step": 0, "outcome": "pass", "summary": "health ok", "at": 1}],
                ),
                5,
                clock,
            ),
            set_state(st("Succeeded", B, B, step=2, weight=100), 5, clock),
        ]
    ]
    seen: list[str] = []
    result = gate.wait(
        kube, "ns", "web", 60, on_status=lambda s: seen.append(s["phase"]), clock=clock, sleep=clock.sleep
    )
    assert result.code == 0 and result.revision == B
    assert seen == ["Succeeded", "Progressing", "Progressing", "Succeeded"]


def test_wait_reports_rollback_as_failure() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing")))
    kube.watch_events = [[set_state(st("RolledBack", failedRevision=B, message="revision rolled back: crash"))]]
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep)
    assert result.code == 1 and "crash" in result.reason


def test_wait_times_out_with_3() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(
        DEPLOYMENTS,
        deployment(TPL_B, st("Paused", message="manual promotion at step 2: waiting for `deliver promote web`")),
    )

    def quiet(k: FakeKube) -> None:
        clock.t += 30
        return None

    kube.watch_events = [[quiet], [quiet], [quiet]]
    result = gate.wait(kube, "ns", "web", 45, clock=clock, sleep=clock.sleep)
    assert result.code == 3 and "timed out" in result.reason and "manual promotion" in result.reason


@pytest.mark.parametrize("error", [Unauthorized("401", status=401), Forbidden("403", status=403)])
def test_wait_auth_errors_exit_4(error: KubeError) -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing")))
    kube.fail_next = [error]
    assert gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep).code == 4


def test_wait_rides_out_a_short_api_outage_then_exits_4_on_a_long_one() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Succeeded", B, B)))
    kube.fail_next = [KubeError("unreachable")] * 3
    assert gate.wait(kube, "ns", "web", 600, clock=clock, sleep=clock.sleep).code == 0
    kube.fail_next = [KubeError("unreachable")] * 100
    assert gate.wait(kube, "ns", "web", 600, clock=clock, sleep=clock.sleep).code == 4


def test_wait_missing_deployment_exits_1() -> None:
    assert gate.wait(FakeKube(), "ns", "web", 10).code == 1


def test_wait_falls_back_to_reading_when_watch_is_forbidden() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing")))
    real_get = kube.get
    reads = {"n": 0}

    def get(res: Any, ns: Any, name: str) -> dict[str, Any]:
        reads["n"] += 1
        if reads["n"] == 3:
            obj = kube.objects[("deployments", "ns", "web")]
            obj["metadata"]["annotations"][STATE] = json.dumps(st("Succeeded", B, B))
        return real_get(res, ns, name)

    kube.get = get  # type: ignore[method-assign]
    orig_watch = kube.watch

    def watch(*a: Any, **k: Any) -> Any:
        raise Forbidden("watch forbidden", status=403)
        yield from orig_watch(*a, **k)

    kube.watch = watch  # type: ignore[method-assign]
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep)
    assert result.code == 0 and reads["n"] == 3


# ---------------------------------------------------------------- junit


def result_for(code: int, state: dict[str, Any], reason: str = "r") -> gate.GateResult:
    d = deployment(TPL_B, state)
    return gate.GateResult(code, reason, "ns", "web", B, gate.status_dict(d), 12.5, gate.spec_of(d))


def parse(xml: str) -> list[tuple[str, str, str]]:
    root = ET.fromstring(xml)
    out = []
    for case in root.iter("testcase"):
        kind = "passed"
        message = ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind, message = child.tag, child.get("message", "")
        out.append((case.get("name", ""), kind, message))
    return out


def test_junit_success_lists_steps_and_verdicts() -> None:
    verdicts = [
        {"step": 0, "outcome": "pass", "summary": "health ok: 1/1", "at": 1},
        {
            "step": 1,
            "outcome": "pass",
            "summary": "error-rate pass",
            "at": 2,
            "details": {"checks": [{"name": "error-rate", "outcome": "pass", "p": 0.4, "msg": "same"}]},
        },
    ]
    xml = junit.to_xml(junit.build(result_for(0, st("Succeeded", B, B, step=2, verdicts=verdicts))))
    cases = parse(xml)
    names = [c[0] for c in cases]
    assert names[:3] == ["step 1: 20%", "step 2: 50%", "step 3: promote to 100%"]
    assert "step 2 check: error-rate" in names
    assert all(kind == "passed" for _, kind, _ in cases)
    root = ET.fromstring(xml)
    assert root.get("failures") == "0" and root.get("tests") == str(len(cases))


def test_junit_failure_marks_the_failed_step_and_verdict() -> None:
    verdicts = [
        {"step": 0, "outcome": "pass", "summary": "ok", "at": 1},
        {
            "step": 1,
            "outcome": "fail",
            "summary": "error-rate fail (p=0.001)",
            "at": 2,
            "details": {"checks": [{"name": "error-rate", "outcome": "fail", "p": 0.001, "msg": "worse"}]},
        },
    ]
    state = st(
        "RolledBack",
        step=1,
        failedRevision=B,
        verdicts=verdicts,
        message=f"revision {B} rolled back: analysis failed: error-rate fail",
    )
    cases = {
        name: (kind, msg) for name, kind, msg in parse(junit.to_xml(junit.build(result_for(1, state, "RolledBack"))))
    }
    assert cases["step 1: 20%"][0] == "passed"
    assert cases["step 2: 50%"][0] == "failure" and "analysis failed" in cases["step 2: 50%"][1]
    assert cases["step 3: promote to 100%"][0] == "skipped"
    # one failing case for the failed delivery: the check is in the step's failure, the revision in no name
    assert [kind for kind, _ in cases.values()].count("failure") == 1
    assert "step 2 check: error-rate" not in cases and not any(B in name for name in cases)


def test_junit_health_rollback_without_verdict_fails_the_current_step() -> None:
    state = st(
        "RolledBack",
        step=0,
        failedRevision=B,
        message=f"revision {B} rolled back: new version unhealthy: 1 pod(s) in CrashLoopBackOff",
    )
    cases = {name: (kind, msg) for name, kind, msg in parse(junit.to_xml(junit.build(result_for(1, state))))}
    assert cases["step 1: 20%"][0] == "failure" and "CrashLoopBackOff" in cases["step 1: 20%"][1]


def test_junit_timeout_is_an_error_at_the_current_step() -> None:
    cases = {
        name: kind
        for name, kind, _ in parse(
            junit.to_xml(
                junit.build(
                    result_for(
                        3,
                        st("Paused", step=1, message="manual promotion at step 2: waiting for `deliver promote web`"),
                        "timed out",
                    )
                )
            )
        )
    }
    assert cases == {"step 1: 20%": "passed", "step 2: 50%": "error", "step 3: promote to 100%": "skipped"}


def test_junit_step_names_for_every_strategy() -> None:
    from strategies.spec import CanaryStep, DeliverySpec, Strategy

    assert junit.step_names(DeliverySpec(Strategy.ROLLING, pause_at=(25, 50))) == [
        "step 1: pause at 25% updated",
        "step 2: pause at 50% updated",
        "step 3: 100% rolled out",
    ]
    assert junit.step_names(DeliverySpec(Strategy.CANARY, steps=(CanaryStep(10), CanaryStep(pause=True)))) == [
        "step 1: 10%",
        "step 2: manual promotion",
        "step 3: promote to 100%",
    ]
    assert len(junit.step_names(DeliverySpec(Strategy.BLUE_GREEN))) == 3
    assert junit.step_names(DeliverySpec(Strategy.RECREATE)) == ["step 1: recreate and verify"]
    assert junit.step_names(None) == []


# ---------------------------------------------------------------- which revision the gate follows


@pytest.mark.parametrize(
    "state, template, want",
    [
        (st("Succeeded", A, A), TPL_B, B),  # a new change: follow it
        (st("Progressing"), TPL_B, B),
        (st("RollingBack", B, A), TPL_A, B),  # template already written back
        (st("RolledBack", B, A, finished=90), TPL_A, B),  # failed a moment ago
        (st("RolledBack", B, A, finished=90), TPL_A, B),  # long ago: still the failed change
        (st("Aborted", B, A, finished=90), TPL_A, B),
        (st("Succeeded", A, A, finished=90), TPL_A, A),
        (st("Idle", A, A), TPL_A, A),
    ],
)
def test_choose_revision(state: dict[str, Any], template: dict[str, Any], want: str) -> None:
    assert gate.choose_revision(deployment(template, state)) == want


def test_gate_started_after_a_fast_rollback_reports_it() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(
        DEPLOYMENTS, deployment(TPL_A, st("RolledBack", B, A, finished=1000.0, failedRevision=B, message="crash loop"))
    )
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep)
    assert result.code == 1 and result.revision == B and "crash loop" in result.reason


def test_decide_old_failure_with_stable_template_is_nothing_to_deliver() -> None:
    d = deployment(TPL_A, st("Aborted", B, A, failedRevision=B, finished=1.0))
    assert gate.decide(A, d)[0] == 0


def test_decide_failed_with_auto_rollback_off_is_a_failure() -> None:
    paused = st(
        "Paused", message="failed: new version unhealthy: 1 pod(s) in CrashLoopBackOff; automatic rollback is off"
    )
    code, reason = gate.decide(B, deployment(TPL_B, paused, {"deliver.dev/auto-rollback": "false"}))
    assert code == 1 and "automatic rollback is off" in reason
    verdict = st(
        "Paused",
        step=0,
        stepStarted=10,
        message="x",
        verdicts=[{"step": 0, "outcome": "fail", "summary": "error-rate fail", "at": 20}],
    )
    assert gate.decide(B, deployment(TPL_B, verdict))[0] == 1
    manual = st(
        "Paused",
        step=1,
        stepStarted=10,
        message="manual promotion at step 2",
        verdicts=[{"step": 0, "outcome": "pass", "summary": "ok", "at": 5}],
    )
    assert gate.decide(B, deployment(TPL_B, manual))[0] is None


def test_decide_reads_the_typed_hold_not_the_message() -> None:
    # the words are for people: a failed hold with any message is a failure, a manual promotion
    # whose message happens to start with "failed: " is not
    failed = st("Paused", hold="Failed", message="the new version is unwell")
    assert gate.decide(B, deployment(TPL_B, failed))[0] == 1
    awaiting = st("Paused", hold="AwaitingPromotion", message="failed: words only")
    assert gate.decide(B, deployment(TPL_B, awaiting))[0] is None
    # the retry hint is left out only when the record already says the revision waits for retry
    told = st("RolledBack", failedRevision=B, hold="PreviouslyFailed", message="was rolled back before")
    assert "deliver retry web" not in gate.decide(B, deployment(TPL_B, told))[1]
    plain = st("RolledBack", failedRevision=B, hold="", message="run `deliver retry web` later")
    assert "(run `deliver retry web` to deliver it again)" in gate.decide(B, deployment(TPL_B, plain))[1]


@pytest.mark.parametrize(
    "phase, message, hold",
    [
        ("Paused", "failed: x; automatic rollback is off", "Failed"),
        ("Paused", "paused by an operator", "Operator"),
        ("Paused", "step 1 inconclusive, waiting for `deliver promote web`", "Inconclusive"),
        ("Paused", "manual promotion at step 2: waiting for `deliver promote web`", "AwaitingPromotion"),
        (
            "RolledBack",
            "revision b was rolled back before; run `deliver retry web` to try it again",
            "PreviouslyFailed",
        ),
        ("Progressing", "delivering", ""),
    ],
)
def test_records_written_before_hold_existed_are_read_with_their_reason(phase: str, message: str, hold: str) -> None:
    from strategies.record import DeliveryState

    assert DeliveryState.from_dict(st(phase, message=message)).hold.value == hold


def test_decide_a_rolling_last_step_held_as_failed_is_a_failure_not_a_timeout() -> None:
    # issue 10, defect 9: the record the planner writes when rolling's last step fails with
    # auto-rollback off makes the gate exit 1 at once (it used to wait for the timeout, 3)
    from strategies import plan
    from strategies.spec import DeliverySpec, Strategy

    from .planning import obs, started, version

    spec = DeliverySpec(strategy=Strategy.ROLLING, progress_deadline=60.0, auto_rollback=False)
    stuck = obs(version(A, 2), version(B, 2, ready=0), replicas=4, paused=False, target=B, now=1061)
    record = plan(spec, started(Strategy.ROLLING, revision=B, stable_revision=A, stable_hash=A), stuck).state
    d = deployment(TPL_B, record.to_dict(), {"deliver.dev/strategy": "rolling", "deliver.dev/auto-rollback": "false"})
    del d["metadata"]["annotations"]["deliver.dev/steps"]
    code, reason = gate.decide(B, d)
    assert code == 1 and "automatic rollback is off" in reason


# ---------------------------------------------------------------- issue 10 defect 7: a late gate still fails


def rolled_back_long_ago() -> dict[str, Any]:
    return deployment(
        TPL_A,
        st("RolledBack", B, A, finished=1000.0, failedRevision=B, failedTemplate=TPL_B, message="crash loop"),
    )


def test_gate_started_long_after_a_rollback_still_fails() -> None:
    """A Jenkins stage that starts 10 minutes after the apply finds the template already reverted."""
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, rolled_back_long_ago())
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep)
    assert result.code == 1 and result.revision == B and "crash loop" in result.reason


@pytest.mark.parametrize(
    "pin, code, want",
    [
        (gate.Pin(revision=B), 1, B),  # the failed change, however late
        (gate.Pin(image="web:v2"), 1, B),  # found in the record's failed template
        (gate.Pin(revision=A), 0, A),  # a revert to the stable version: nothing to deliver
        (gate.Pin(image="web:v1"), 0, A),
    ],
)
def test_a_pinned_gate_reports_the_pinned_revision_however_late(pin: gate.Pin, code: int, want: str) -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, rolled_back_long_ago())
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep, pin=pin)
    assert (result.code, result.revision) == (code, want), result.reason


def test_a_pinned_gate_waits_for_its_revision_to_be_applied() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_A, st("Succeeded", A, A)))

    def apply_b(k: FakeKube) -> dict[str, Any]:
        obj = k.objects[("deployments", "ns", "web")]
        obj["spec"]["template"] = copy.deepcopy(TPL_B)
        k._bump(obj)
        return {"type": "MODIFIED", "object": copy.deepcopy(obj)}

    kube.watch_events = [
        [apply_b, set_state(st("Progressing")), set_state(st("RolledBack", failedRevision=B, message="crash"))]
    ]
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep, pin=gate.Pin(image="web:v2"))
    assert result.code == 1 and result.revision == B and "crash" in result.reason


def test_a_pinned_gate_times_out_if_its_revision_never_appears() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, deployment(TPL_A, st("Succeeded", A, A)))

    def quiet(k: FakeKube) -> None:
        clock.t += 30

    kube.watch_events = [[quiet], [quiet]]
    result = gate.wait(kube, "ns", "web", 45, clock=clock, sleep=clock.sleep, pin=gate.Pin(image="web:v9"))
    assert result.code == 3 and "web:v9" in result.reason


def test_manifest_pin_is_the_template_revision_or_its_images(tmp_path: Any) -> None:
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": TPL_B}}
    other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump_all([other, doc]))
    pin = gate.manifest_pin(path.read_text(), "web")
    assert pin.revision == B
    # the API server fills in defaults (imagePullPolicy, ...): the stored template hashes differently,
    # and the manifest's images still find it
    served = copy.deepcopy(TPL_B)
    served["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert pin.matches(served) and pin.matches(TPL_B) and not pin.matches(TPL_A)
    with pytest.raises(ValueError):
        gate.manifest_pin(yaml.safe_dump(other), "web")
    with pytest.raises(ValueError):
        gate.manifest_pin("{not yaml: [", "web")
    with pytest.raises(ValueError):
        gate.manifest_pin(yaml.safe_dump(doc), "api")  # names another Deployment


def test_manifest_pin_finds_the_served_template_of_a_failed_change() -> None:
    served = copy.deepcopy(TPL_B)
    served["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    d = deployment(
        TPL_A,
        st(
            "RolledBack",
            templates.revision(served),
            A,
            failedRevision=templates.revision(served),
            failedTemplate=served,
        ),
    )
    kube, clock = FakeKube(), Clock()
    kube.put(DEPLOYMENTS, d)
    doc = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": TPL_B}}
    pin = gate.manifest_pin(yaml.safe_dump(doc), "web")
    result = gate.wait(kube, "ns", "web", 60, clock=clock, sleep=clock.sleep, pin=pin)
    assert result.code == 1 and result.revision == templates.revision(served)
