"""JUnit XML for ``deliver gate --junit`` (and, through ``to_xml``, ``deliver wave --junit``).

The files are valid against ``junit-10.xsd``, the schema Jenkins' xUnit plugin validates JUnit input
with (a copy with its origin is in ``tests/data/``), and are read as meant by Jenkins' own ``junit``
step, GitLab and most CI systems. Layout of the gate's report:

* ``testsuites`` ``deliver`` with one ``testsuite`` ``deliver.<namespace>.<app>``: the test cases'
  class name, so Jenkins files them under the app; its ``properties`` hold what changes from build to
  build (``deliver.revision``, ``deliver.stableRevision``, ``deliver.phase``, ``deliver.result``,
  ``deliver.exitCode``), its ``system-out`` the gate's reason;
* one test case per declared step, named by its place and what it does (``step 2: 50%``): passed,
  **failed** when the delivery failed at that step (the one failing case of a failed delivery: the
  reason in its message, the step's verdicts and check results in its body), error when the gate
  stopped there (timeout, API error), skipped when not reached;
* one test case per metric check of a step (``step 2 check: error-rate``, its last verdict at that
  step): passed on ``pass``, skipped on ``inconclusive``; a check that failed is reported in its
  step's failure, not as a second failing case;
* a test case ``delivery`` only when the outcome belongs to no step (not annotated, invalid
  annotations, superseded, not found, no step declared): failed or error, with the reason.

Names never contain the revision, so Jenkins keeps each case's history from build to build.
"""

from __future__ import annotations

import math
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from delivery.gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, GateResult
from strategies.evidence import Outcome
from strategies.spec import DeliverySpec, Strategy

# the phases of a delivery that failed at a step (Paused: failed, held for an operator)
FAILED_PHASES = ("RolledBack", "Aborted", "RollingBack", "Paused")

# characters XML 1.0 cannot carry (control characters from a pod's message): dropped
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class Case:
    """One test case; ``output`` is the body of its ``failure``/``error`` or else its ``system-out``."""

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
    properties: list[tuple[str, str]] = field(default_factory=list)
    output: str = ""

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


def _checks(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((verdict.get("details") or {}).get("checks")) or [])


def _check_text(check: dict[str, Any]) -> str:
    numbers = ", ".join(f"{k}={check[k]}" for k in ("stat", "p", "e", "effect", "n") if k in check)
    return f"{check.get('outcome')}: {check.get('msg', '')}" + (f" ({numbers})" if numbers else "")


def _evidence(verdicts: list[dict[str, Any]]) -> str:
    """The verdicts of one step and their checks, one line each."""
    lines = []
    for v in verdicts:
        lines.append(f"verdict {v.get('outcome', '')}: {v.get('summary', '')}")
        lines += [f"  check {c.get('name', 'check')}: {_check_text(c)}" for c in _checks(v)]
    return "\n".join(lines)


def _check_cases(step: int, verdicts: list[dict[str, Any]]) -> list[Case]:
    """A case per check of the step, from the last verdict that ran it; failed checks are left to the step."""
    last: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        for c in _checks(v):
            last[str(c.get("name", "check"))] = c
    cases = []
    for name, c in last.items():
        if c.get("outcome") == Outcome.FAIL:
            continue
        text = _check_text(c)
        case = Case(f"step {step + 1} check: {name}", output=text)
        if c.get("outcome") != Outcome.PASS:
            case.result, case.message = "skipped", text
        cases.append(case)
    return cases


def _outcome_step(result: GateResult, steps: int, verdicts: list[dict[str, Any]]) -> int:
    """The step the gate's outcome belongs to (-1: none, the outcome is the whole delivery's)."""
    status = result.status or {}
    current = int(status.get("step", 0) or 0)
    if result.code == EXIT_OK:
        return -1
    if result.code == EXIT_FAILED:
        if str(status.get("phase", "")) not in FAILED_PHASES:
            return -1  # refused, superseded, not found: not a step's failure
        failed = {int(v.get("step", 0)) for v in verdicts if v.get("outcome") == Outcome.FAIL}
        passed = {int(v.get("step", 0)) for v in verdicts if v.get("outcome") == Outcome.PASS}
        if failed:
            at = max(failed)
        elif 0 <= current < steps:
            at = current
        else:  # native rollbacks record step -1/-2: the first step that did not pass
            at = next((i for i in range(steps) if i not in passed), steps - 1)
    else:  # timeout, API error: the step the delivery was at when the gate stopped
        at = current
    return at if 0 <= at < steps else -1


def _properties(result: GateResult) -> list[tuple[str, str]]:
    status = result.status or {}
    return [
        ("deliver.app", f"{result.namespace}/{result.name}"),
        ("deliver.revision", result.revision),
        ("deliver.stableRevision", str(status.get("stableRevision", "") or "")),
        ("deliver.phase", str(status.get("phase", "") or "")),
        ("deliver.result", result.outcome),
        ("deliver.exitCode", str(result.code)),
        ("deliver.strategy", str(status.get("strategy", "") or "")),
    ]


def build(result: GateResult) -> Suite:
    status = result.status or {}
    suite = Suite(
        f"deliver.{result.namespace}.{result.name}",
        timestamp=time.time() - result.duration,
        seconds=result.duration,
        properties=_properties(result),
        output=result.reason,
    )
    verdicts = list(status.get("verdicts") or [])
    names = step_names(result.spec)
    phase = str(status.get("phase", ""))
    current = int(status.get("step", 0) or 0)
    at = _outcome_step(result, len(names), verdicts)
    kind = "failed" if result.code == EXIT_FAILED else "error"
    checks: list[Case] = []
    for i, name in enumerate(names):
        mine = [v for v in verdicts if int(v.get("step", 0)) == i]
        evidence = _evidence(mine)
        case = Case(name, output=evidence)
        if result.code == EXIT_OK:
            pass
        elif i == at:
            why = str(status.get("message", "")) or result.reason
            case.result, case.message = kind, _failure_message(result.reason, why, mine)
            case.output = "\n".join(x for x in (why, evidence, f"revision {result.revision or '?'}") if x)
        elif any(v.get("outcome") == Outcome.PASS for v in mine) or i < (at if at >= 0 else current):
            pass
        elif i == current and at < 0:
            case.result, case.message = "skipped", f"in progress when the gate stopped ({phase})"
        else:
            case.result, case.message = "skipped", "not reached"
        suite.cases.append(case)
        checks += _check_cases(i, mine)
    suite.cases += checks
    if result.code != EXIT_OK and at < 0:
        why = "\n".join(x for x in (result.reason, f"revision {result.revision or '?'}") if x)
        suite.cases.append(Case("delivery", kind, result.reason, why, result.duration))
    elif not suite.cases:
        suite.cases.append(Case("delivery", output=result.reason, seconds=result.duration))
    return suite


def _failure_message(reason: str, why: str, verdicts: list[dict[str, Any]]) -> str:
    """The gate's reason, then what the record says and each failed verdict's summary, unless already said."""
    parts = [reason]
    failed = [str(v.get("summary", "")) for v in verdicts if v.get("outcome") == Outcome.FAIL]
    for part in [why, *failed]:
        if part and not any(part in p for p in parts):
            parts.append(part)
    return "; ".join(p for p in parts if p)


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _seconds(value: float) -> str:
    """A duration as junit-10.xsd's SUREFIRE_TIME: digits, a dot, three decimals; never negative."""
    return f"{value if math.isfinite(value) and value > 0 else 0.0:.3f}"


def to_xml(suite: Suite) -> str:
    counts = {
        "tests": str(len(suite.cases)),
        "failures": str(suite.count("failed")),
        "errors": str(suite.count("error")),
    }
    # junit-10.xsd: <testsuites> takes name, time, tests, failures, errors (no skipped)
    root = ET.Element("testsuites", {"name": "deliver", **counts, "time": _seconds(suite.seconds)})
    ts = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _clean(suite.name),
            **counts,
            "skipped": str(suite.count("skipped")),
            "time": _seconds(suite.seconds),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(suite.timestamp or time.time())),
        },
    )
    if suite.properties:
        props = ET.SubElement(ts, "properties")
        for key, value in suite.properties:
            ET.SubElement(props, "property", {"name": _clean(key), "value": _clean(value)})
    for case in suite.cases:
        attrs = {"classname": _clean(suite.name), "name": _clean(case.name), "time": _seconds(case.seconds)}
        el = ET.SubElement(ts, "testcase", attrs)
        message = _clean(case.message)
        if case.result in ("failed", "error"):
            tag, kind = ("failure", "DeliveryFailed") if case.result == "failed" else ("error", "GateError")
            problem = ET.SubElement(el, tag, {"message": message[:1000], "type": kind})
            problem.text = _clean(case.output or case.message)
            continue
        if case.result == "skipped":
            ET.SubElement(el, "skipped", {"message": message[:1000]})
        if case.output:
            ET.SubElement(el, "system-out").text = _clean(case.output)
    if suite.output:
        ET.SubElement(ts, "system-out").text = _clean(suite.output)
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
