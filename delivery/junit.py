"""JUnit XML for ``deliver gate --junit``: one test case per step and per analysis verdict.

Jenkins (junit step), GitLab and most CI systems read this format. Layout:

* ``testsuite`` ``deliver.<namespace>.<name>``
* one test case per declared step (``step 1: 20%``): passed, failed (the delivery failed at that
  step, or a verdict of that step failed) or skipped (not reached);
* one test case per analysis verdict and, when the verdict carries metric checks, one per check
  (``step 1 verdict 1: error-rate``): failed on ``fail``, skipped on ``inconclusive``;
* one test case ``delivery`` for the whole outcome: failure when rolled back / aborted, error on
  timeout or API error.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from delivery.gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, GateResult
from strategies.evidence import Outcome
from strategies.spec import DeliverySpec, Strategy


@dataclass
class Case:
    name: str
    result: str = "passed"  # passed | failed | error | skipped
    message: str = ""
    output: str = ""
    seconds: float = 0.0


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)
    timestamp: float = 0.0
    seconds: float = 0.0

    def count(self, result: str) -> int:
        return sum(1 for c in self.cases if c.result == result)


def step_names(spec: DeliverySpec | None) -> list[str]:
    """Human names of the declared steps, indexed like DeliveryState.step."""
    if spec is None:
        return []
    if spec.strategy is Strategy.CANARY:
        names = []
        for i, s in enumerate(spec.steps):
            if s.pause:
                names.append(f"step {i + 1}: manual promotion")
            elif s.weight >= 100:
                names.append(f"step {i + 1}: promote to 100%")
            else:
                names.append(f"step {i + 1}: {s.weight}%")
        if not spec.steps or spec.steps[-1].pause or spec.steps[-1].weight < 100:
            names.append(f"step {len(names) + 1}: promote to 100%")
        return names
    if spec.strategy is Strategy.ROLLING:
        points = [p for p in spec.pause_at if 0 < p < 100]
        return [f"step {i + 1}: pause at {p}% updated" for i, p in enumerate(points)] + [
            f"step {len(points) + 1}: 100% rolled out"
        ]
    if spec.strategy is Strategy.BLUE_GREEN:
        return ["step 1: preview", "step 2: switch active Service (keep warm)", "step 3: finalise"]
    return ["step 1: recreate and verify"]


def _verdict_cases(verdicts: list[dict[str, Any]]) -> list[Case]:
    cases: list[Case] = []
    per_step: dict[int, int] = {}
    for v in verdicts:
        step = int(v.get("step", 0))
        per_step[step] = per_step.get(step, 0) + 1
        label = f"step {step + 1} verdict {per_step[step]}"
        outcome = str(v.get("outcome", ""))
        summary = str(v.get("summary", ""))
        checks = ((v.get("details") or {}).get("checks")) or []
        case = Case(f"{label}: {'analysis' if checks else 'health'}", output=summary)
        if outcome == Outcome.FAIL:
            case.result, case.message = "failed", summary
        elif outcome != Outcome.PASS:
            case.result, case.message = "skipped", f"{outcome}: {summary}"
        cases.append(case)
        for c in checks:
            name = str(c.get("name", "check"))
            numbers = ", ".join(f"{k}={c[k]}" for k in ("stat", "p", "e", "effect", "n") if k in c)
            text = f"{c.get('outcome')}: {c.get('msg', '')}" + (f" ({numbers})" if numbers else "")
            check = Case(f"{label}: {name}", output=text)
            if c.get("outcome") == Outcome.FAIL:
                check.result, check.message = "failed", text
            elif c.get("outcome") != Outcome.PASS:
                check.result, check.message = "skipped", text
            cases.append(check)
    return cases


def build(result: GateResult) -> Suite:
    status = result.status or {}
    suite = Suite(
        f"deliver.{result.namespace}.{result.name}", timestamp=time.time() - result.duration, seconds=result.duration
    )
    verdicts = list(status.get("verdicts") or [])
    names = step_names(result.spec)
    phase = str(status.get("phase", ""))
    current = int(status.get("step", 0) or 0)
    failed = result.code == EXIT_FAILED and phase in ("RolledBack", "Aborted", "RollingBack", "Paused")
    passed_steps = {int(v.get("step", 0)) for v in verdicts if v.get("outcome") == Outcome.PASS}
    failed_steps = {int(v.get("step", 0)) for v in verdicts if v.get("outcome") == Outcome.FAIL}
    failed_at = -1
    if failed:
        if failed_steps:
            failed_at = max(failed_steps)
        elif 0 <= current < len(names):
            failed_at = current
        else:  # native rollbacks record step -1/-2: the first step that did not pass
            failed_at = next((i for i in range(len(names)) if i not in passed_steps), max(len(names) - 1, 0))
    for i, name in enumerate(names):
        case = Case(name)
        if i in failed_steps or i == failed_at:
            case.result = "failed"
            case.message = str(status.get("message", "")) or "step failed"
        elif result.code == EXIT_OK or i in passed_steps or (i < current and not failed):
            case.result = "passed"
        elif i == current and result.code in (EXIT_TIMEOUT, EXIT_API):
            case.result, case.message = "skipped", f"in progress when the gate stopped ({phase})"
        else:
            case.result, case.message = "skipped", "not reached"
        suite.cases.append(case)
    suite.cases.extend(_verdict_cases(verdicts))
    if failed and failed_at >= 0 and failed_at not in failed_steps:
        # rolled back by the health check (crash loop, not Ready in time) or aborted: no metric verdict
        # was recorded, so the failing health verdict is reported here
        k = sum(1 for v in verdicts if int(v.get("step", 0)) == failed_at) + 1
        message = str(status.get("message", "")) or result.reason
        kind = "operator" if phase == "Aborted" else "health"
        suite.cases.append(Case(f"step {failed_at + 1} verdict {k}: {kind}", "failed", message, message))
    overall = Case(f"delivery of revision {result.revision or '?'}", seconds=result.duration, output=result.reason)
    if result.code == EXIT_FAILED:
        overall.result, overall.message = "failed", result.reason
    elif result.code in (EXIT_TIMEOUT, EXIT_API):
        overall.result, overall.message = "error", result.reason
    elif result.code != EXIT_OK:
        overall.result, overall.message = "error", result.reason
    suite.cases.append(overall)
    return suite


def to_xml(suite: Suite) -> str:
    root = ET.Element(
        "testsuites",
        {
            "name": "deliver",
            "tests": str(len(suite.cases)),
            "failures": str(suite.count("failed")),
            "errors": str(suite.count("error")),
            "skipped": str(suite.count("skipped")),
            "time": f"{suite.seconds:.3f}",
        },
    )
    ts = ET.SubElement(
        root,
        "testsuite",
        {
            "name": suite.name,
            "tests": str(len(suite.cases)),
            "failures": str(suite.count("failed")),
            "errors": str(suite.count("error")),
            "skipped": str(suite.count("skipped")),
            "time": f"{suite.seconds:.3f}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(suite.timestamp or time.time())),
        },
    )
    for case in suite.cases:
        el = ET.SubElement(ts, "testcase", {"classname": suite.name, "name": case.name, "time": f"{case.seconds:.3f}"})
        if case.result == "failed":
            f = ET.SubElement(el, "failure", {"message": case.message[:1000], "type": "DeliveryFailed"})
            f.text = case.message
        elif case.result == "error":
            e = ET.SubElement(el, "error", {"message": case.message[:1000], "type": "GateError"})
            e.text = case.message
        elif case.result == "skipped":
            ET.SubElement(el, "skipped", {"message": case.message[:1000]})
        if case.output:
            out = ET.SubElement(el, "system-out")
            out.text = case.output
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(path: str, result: GateResult) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(to_xml(build(result)))


__all__ = [
    "build",
    "to_xml",
    "write",
    "step_names",
    "Suite",
    "Case",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_API",
]
