"""JUnit files every Jenkins reader accepts (issue 29): each report ``deliver gate --junit`` and
``deliver wave --junit`` can write is valid against the xUnit plugin's junit-10.xsd, its case names
never carry the revision, and a failed delivery is one failing case with the evidence in it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from delivery import gate, junit
from delivery.wave.report import StageResult, WaveResult, junit_suite
from delivery.wave.runner import WaveRunner
from tests.test_gate import TPL_B, B, deployment, st
from tests.test_wave import CHANGE, THREE, Clock, clusters, parse
from tests.xunit_schema import problems

BEFORE = Path(__file__).parent / "data" / "junit-gate-rolled-back-before.xml"

PASS_CHECKS = {"checks": [{"name": "error-rate", "outcome": "pass", "p": 0.4, "msg": "same"}]}
FAIL_CHECKS = {
    "checks": [
        {"name": "error-rate", "outcome": "fail", "p": 0.001, "msg": "worse"},
        {"name": "latency", "outcome": "pass", "p": 0.6, "msg": "same"},
    ]
}
HEALTH_OK = {"step": 0, "outcome": "pass", "summary": "health ok: 3/3 Ready", "at": 1}


def gate_result(
    code: int, state: dict[str, Any] | None, reason: str, annotations: dict[str, str] | None = None
) -> gate.GateResult:
    """What the gate returns; ``state`` None: the Deployment was never read (no status, no spec)."""
    if state is None:
        return gate.GateResult(code, reason, "ns", "web", B, {}, 30.0, None)
    d = deployment(TPL_B, state, annotations)
    ann = d["metadata"]["annotations"]
    if ann["deliver.dev/strategy"] != "canary":
        del ann["deliver.dev/steps"]
    return gate.GateResult(code, reason, "ns", "web", B, gate.status_dict(d), 12.5, gate.spec_of(d))


def cases(xml: str) -> dict[str, tuple[str, str, str]]:
    """name: (passed|failure|error|skipped, message, body or system-out)"""
    out = {}
    for case in ET.fromstring(xml).iter("testcase"):
        kind, message, text = "passed", "", case.findtext("system-out") or ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind, message = child.tag, child.get("message", "")
                text = child.text or text
        out[case.get("name", "")] = (kind, message, text)
    return out


def properties(xml: str) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in ET.fromstring(xml).iter("property")}


ROLLED_BACK = st(
    "RolledBack",
    step=1,
    failedRevision=B,
    verdicts=[
        HEALTH_OK,
        {"step": 1, "outcome": "fail", "summary": "error-rate fail (p=0.001)", "at": 2, "details": FAIL_CHECKS},
    ],
    message=f"revision {B} rolled back: analysis failed: error-rate fail (p=0.001)",
)

# every kind of report the gate writes: (what, exit code, record, reason, annotations)
GATE_REPORTS: list[tuple[str, int, dict[str, Any] | None, str, dict[str, str] | None]] = [
    (
        "promoted",
        0,
        st(
            "Succeeded",
            B,
            B,
            step=2,
            verdicts=[HEALTH_OK, {"step": 1, "outcome": "pass", "summary": "ok", "at": 2, "details": PASS_CHECKS}],
        ),
        f"revision {B} promoted",
        None,
    ),
    ("nothing to deliver", 0, st("Idle", B, B), f"nothing to deliver: revision {B} is the stable version", None),
    ("rolled back by the analysis", 1, ROLLED_BACK, f"RolledBack: {ROLLED_BACK['message']}", None),
    (
        "rolled back by the health check",
        1,
        st("RolledBack", step=0, failedRevision=B, message=f"revision {B} rolled back: 1 pod(s) in CrashLoopBackOff"),
        f"RolledBack: revision {B} rolled back: 1 pod(s) in CrashLoopBackOff",
        None,
    ),
    (
        "native rollback (step -1)",
        1,
        st("RolledBack", step=-1, failedRevision=B, verdicts=[HEALTH_OK], message="progress deadline exceeded"),
        "RolledBack: progress deadline exceeded",
        {"deliver.dev/strategy": "rolling", "deliver.dev/pause-at": "25,50"},
    ),
    ("aborted", 1, st("Aborted", step=1, message="aborted by alice"), "Aborted: aborted by alice", None),
    (
        "failed, held for an operator",
        1,
        st("Paused", step=0, message="analysis failed: error-rate fail", hold="Failed"),
        "failed, automatic rollback is off, waiting for an operator: analysis failed",
        None,
    ),
    (
        "timeout at a manual promotion",
        3,
        st("Paused", step=1, message="waiting for `deliver promote web`"),
        "timed out after 15m",
        {"deliver.dev/steps": "20,pause,100"},
    ),
    ("API error at the first read", 4, None, "cannot read deployment ns/web: connection refused", None),
    ("API error while delivering", 4, st("Progressing", step=1), "the API kept failing for 31s: 503", None),
    ("access denied", 4, None, "Forbidden: deployments.apps web is forbidden", None),
    (
        "invalid annotations",
        1,
        st("Idle", B, B),
        "invalid annotations, deliver takes no action: deliver.dev/steps: not a number",
        {"deliver.dev/steps": "20,abc"},
    ),
    (
        "superseded",
        1,
        st("Progressing", step=1),
        "the Deployment's template changed to revision x while the gate waited (superseded)",
        None,
    ),
    ("blue-green", 0, st("Succeeded", B, B, step=2), "promoted", {"deliver.dev/strategy": "blue-green"}),
    (
        "blue-green, aborted at the preview",
        1,
        st("Aborted", step=0, message="aborted"),
        "Aborted: aborted",
        {"deliver.dev/strategy": "blue-green"},
    ),
    ("recreate, timed out", 3, st("Progressing"), "timed out", {"deliver.dev/strategy": "recreate"}),
    (
        "control characters in a pod's message",
        1,
        st("RolledBack", step=0, failedRevision=B, message="crash: \x1b[31mpanic\x1b[0m \x00 <&>\"'"),
        "RolledBack: crash \x07",
        None,
    ),
]


@pytest.mark.parametrize("what, code, state, reason, annotations", GATE_REPORTS, ids=[r[0] for r in GATE_REPORTS])
def test_every_gate_report_is_valid_junit_10(
    what: str, code: int, state: dict[str, Any] | None, reason: str, annotations: dict[str, str] | None
) -> None:
    result = gate_result(code, state, reason, annotations)
    xml = junit.to_xml(junit.build(result))
    assert problems(xml) == [], xml
    found = cases(xml)
    assert found and not any(B in name for name in found), found  # the revision is never in a name
    assert properties(xml)["deliver.revision"] == B and properties(xml)["deliver.exitCode"] == str(code)
    kinds = [kind for kind, _, _ in found.values()]
    root = ET.fromstring(xml)
    assert root.get("tests") == str(len(found)) and root.get("failures") == str(kinds.count("failure"))
    assert root.get("errors") == str(kinds.count("error"))
    # one failing case per failed delivery, one error per gate that stopped, none when promoted
    assert (kinds.count("failure"), kinds.count("error")) == {0: (0, 0), 1: (1, 0)}.get(code, (0, 1)), found


def test_the_old_report_is_refused_by_the_schema() -> None:
    """The validation can fail: the report written before issue 29 is refused (<testsuites skipped>)."""
    old = BEFORE.read_text()
    found = problems(old)
    assert found and all("skipped" in p for p in found), found
    assert problems(old.replace(' skipped="1" time="12.500">\n  <testsuite', ' time="12.500">\n  <testsuite', 1)) == []


def test_schema_refuses_what_it_should() -> None:
    suite = '<testsuite name="s" tests="1" failures="0" errors="0"><testcase name="c"/></testsuite>'
    ok = f"<testsuites>{suite}</testsuites>"
    assert problems(ok) == []
    assert problems(ok.replace('name="s"', 'name="s" time="-1.0"'))  # a suite's time: not a SUREFIRE_TIME
    assert problems(ok.replace(' failures="0"', ""))  # a required count missing
    assert problems(ok.replace("<testcase", "<testcase><properties/></testcase><testcase"))  # no case properties


def test_a_rolled_back_delivery_is_one_failure_with_its_evidence() -> None:
    xml = junit.to_xml(junit.build(gate_result(1, ROLLED_BACK, f"RolledBack: {ROLLED_BACK['message']}")))
    found = cases(xml)
    assert list(found) == [
        "step 1: 20%",
        "step 2: 50%",
        "step 3: promote to 100%",
        "step 2 check: latency",  # the failed check (error-rate) is in its step's failure, not a second one
    ]
    kind, message, body = found["step 2: 50%"]
    assert kind == "failure" and "analysis failed: error-rate fail (p=0.001)" in message
    assert "check error-rate: fail: worse (p=0.001)" in body and "check latency: pass" in body
    assert found["step 1: 20%"] == ("passed", "", "verdict pass: health ok: 3/3 Ready")
    assert found["step 2 check: latency"][0] == "passed" and found["step 3: promote to 100%"][0] == "skipped"
    assert properties(xml)["deliver.phase"] == "RolledBack"
    assert ET.fromstring(xml).findtext("testsuite/system-out", "").startswith("RolledBack: revision")


def test_the_same_delivery_twice_has_the_same_case_names() -> None:
    """Jenkins keeps a case's history by its name: another revision, the same names."""
    other = {**ROLLED_BACK, "revision": "zzzz", "message": "revision zzzz rolled back: analysis failed"}
    first = cases(junit.to_xml(junit.build(gate_result(1, ROLLED_BACK, "one"))))
    second = cases(junit.to_xml(junit.build(gate_result(1, other, "two"))))
    assert list(first) == list(second)


def test_a_failure_before_any_step_is_the_delivery_case() -> None:
    result = gate_result(1, st("Idle", B, B), "invalid annotations: x", {"deliver.dev/steps": "20,abc"})
    assert cases(junit.to_xml(junit.build(result))) == {
        "delivery": ("failure", "invalid annotations: x", f"invalid annotations: x\nrevision {B}")
    }


def test_a_timeout_is_an_error_at_the_step_it_waited_at() -> None:
    state = st("Paused", step=1, message="manual promotion at step 2: waiting for `deliver promote web`")
    result = gate_result(3, state, "timed out", {"deliver.dev/steps": "20,pause,100"})
    found = cases(junit.to_xml(junit.build(result)))
    assert {name: kind for name, (kind, _, _) in found.items()} == {
        "step 1: 20%": "passed",
        "step 2: manual promotion": "error",
        "step 3: promote to 100%": "skipped",
    }
    assert "deliver promote web" in found["step 2: manual promotion"][2]


# ---------------------------------------------------------------- the wave's report


def wave_reports() -> list[tuple[str, WaveResult]]:
    clock = Clock()
    w = parse(THREE.format(mode="rollback"))
    out = [("passed", WaveRunner(w, CHANGE, clusters(clock), "w1", clock=clock, sleep=clock.sleep).run())]
    for mode in ("rollback", "hold"):
        kubes = clusters(clock, bad={"eu-1": {"web:v2"}})
        runner = WaveRunner(parse(THREE.format(mode=mode)), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep)
        out.append((f"failed at stage 2, on-failure {mode}", runner.run()))
    every = [
        StageResult("staging", "kind@127.0.0.1:6443 shop/web", "rolled-back", "put back", "r1", 1.0, 9.0, "Succeeded"),
        StageResult("eu-1", "eu@h shop/web", "failed", "RolledBack: bad", "r1", 9.0, 20.0, "RolledBack", "shop/web"),
        StageResult("eu-2", "eu2@h shop/web", "abort-requested", "aborted by the wave", app="shop/web"),
        StageResult("us-1", "us@h shop/web", "timeout", "timed out after 20m", app="shop/web"),
        StageResult("us-2", "us2@h shop/web", "api-error", "stage us-2: unreachable", app="shop/web"),
        StageResult("ap-1", "ap@h shop/web", "held", "held", app="shop/web"),
        StageResult("ap-2", "ap2@h shop/web", "delivering", app="shop/web"),
        StageResult("ap-3", "ap3@h shop/web", app="shop/web"),
    ]
    out.append(("every outcome", WaveResult(1, "stage eu-1 failed", "web-release", "w9", every, 31.0, 1.0)))
    return out


@pytest.mark.parametrize("what, result", wave_reports(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_wave_report_is_valid_junit_10(what: str, result: WaveResult) -> None:
    xml = junit.to_xml(junit_suite(result))
    assert problems(xml) == [], xml
    found = cases(xml)
    assert len(found) == len(result.stages)  # a case per stage
    failed = sum(1 for s in result.stages if s.outcome in ("failed", "abort-requested"))
    assert [kind for kind, _, _ in found.values()].count("failure") == failed
    for s in result.stages:
        assert not s.revision or all(s.revision not in name for name in found)


def test_wave_case_names_are_place_stage_and_app() -> None:
    kubes = clusters(Clock(), bad={"eu-1": {"web:v2"}})
    clock = Clock()
    result = WaveRunner(parse(THREE.format(mode="rollback")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    xml = junit.to_xml(junit_suite(result))
    found = cases(xml)
    assert {name: kind for name, (kind, _, _) in found.items()} == {
        "stage 1: staging (ns/web)": "passed",
        "stage 2: eu-1 (ns/web)": "failure",
        "stage 3: us-1 (ns/web)": "skipped",
    }
    assert found["stage 1: staging (ns/web)"][2].startswith("rolled-back")
    props = properties(xml)
    assert props["deliver.result"] == "failed" and props["deliver.stage.eu-1.result"] == "failed"
    assert props["deliver.stage.eu-1.revision"] == result.stages[1].revision != ""
