"""What a wave run reports: its events as they happen (``WaveEvent``), how each stage ended
(``StageResult``) and the run as a whole (``WaveResult``: exit code, ``-o json|yaml``), and the JUnit
report of ``--junit`` (one test case per stage, named by its place, stage and app, never the revision:
see ``junit_suite``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from delivery import junit
from delivery.gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT


@dataclass(frozen=True)
class WaveEvent:
    """Something the CLI shows: a stage's new state, or its delivery's status (``status``)."""

    stage: str
    state: str
    message: str
    status: dict[str, Any] | None = None


@dataclass
class StageResult:
    """How one stage ended in this run (``outcome``: passed, failed, rolled-back, held, timeout,
    api-error, delivering, abort-requested, not-reached)."""

    name: str
    where: str
    outcome: str = "not-reached"
    reason: str = ""
    revision: str = ""
    started: float = 0.0
    ended: float = 0.0
    phase: str = ""
    app: str = ""  # namespace/app, what the JUnit case is named by

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started) if self.started else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "where": self.where,
            "result": self.outcome,
            "reason": self.reason,
            "revision": self.revision,
            "phase": self.phase,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class WaveResult:
    code: int
    reason: str
    wave: str
    id: str
    stages: list[StageResult]
    seconds: float = 0.0
    started: float = 0.0

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "passed", EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout", EXIT_API: "api-error"}.get(
            self.code, "error"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "id": self.id,
            "result": self.outcome,
            "exitCode": self.code,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
            "stages": [s.to_dict() for s in self.stages],
        }


def junit_suite(result: WaveResult) -> junit.Suite:
    """One JUnit test case per stage, in wave order: ``stage 2: eu-1 (shop/web)``.

    Failed (``failed``, ``abort-requested``: the stage's delivery failed, its reason in the message),
    error (``timeout``, ``api-error``), skipped (``not-reached``, ``delivering``), passed otherwise
    (a stage put back or held after a later one failed passed its own delivery; its system-out says
    what the wave did). Where each stage ran and the revision it delivered are in the system-out and
    the suite's properties, which also hold the wave's id, result and exit code."""
    suite = junit.Suite(
        f"deliver.wave.{result.wave}",
        timestamp=result.started,
        seconds=result.seconds,
        properties=[
            ("deliver.wave", result.wave),
            ("deliver.wave.id", result.id),
            ("deliver.result", result.outcome),
            ("deliver.exitCode", str(result.code)),
        ],
        output=result.reason,
    )
    for i, s in enumerate(result.stages):
        suite.properties += [(f"deliver.stage.{s.name}.where", s.where), (f"deliver.stage.{s.name}.result", s.outcome)]
        if s.revision:
            suite.properties.append((f"deliver.stage.{s.name}.revision", s.revision))
        facts = [f"{s.outcome}: {s.reason}" if s.reason else s.outcome, f"where: {s.where}"]
        facts += [f"{k}: {v}" for k, v in (("phase", s.phase), ("revision", s.revision)) if v]
        case = junit.Case(f"stage {i + 1}: {s.name}" + (f" ({s.app})" if s.app else ""), seconds=s.seconds)
        case.output = "\n".join(facts)
        if s.outcome in ("failed", "abort-requested"):
            case.result, case.message = "failed", s.reason
        elif s.outcome in ("timeout", "api-error"):
            case.result, case.message = "error", s.reason
        elif s.outcome in ("not-reached", "delivering"):
            case.result, case.message = "skipped", s.reason or "not reached"
        suite.cases.append(case)
    return suite


def write_junit(path: str, result: WaveResult) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(junit.to_xml(junit_suite(result)))
