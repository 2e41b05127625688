"""What checking a step says: its ``Outcome``, the ``StepVerdict`` and the typed evidence planners
decide on (``CheckEvidence``, one per metric check), and the looks the dashboard charts
(``LookPoint``). Each reads itself back from a record as hostile input (``strategies/codec.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .codec import (
    KEPT_LOOKS,
    OBSERVATIONS_MAX,
    RECORD_COUNT_MAX,
    record_array,
    record_int,
    record_object,
    record_time,
    shown,
)


class Outcome(StrEnum):
    """What checking a step (or one metric check) says. Decisions compare these members, never text;
    the values are what the record, ``deliver status -o json``, JUnit and notifications show."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # no evidence either way: never a promotion


@dataclass(frozen=True)
class CheckEvidence:
    """One metric check of a verdict, as the planners read it: its outcome, the observations it rests
    on and the numbers its look point charts (``LookPoint``). Typed and never dropped from the record,
    unlike the verdict's human-facing ``details``, so what a planner decides from a verdict does not
    depend on how much room the record had. Written as a compact list (``to_list``, ~50 bytes)."""

    name: str
    outcome: Outcome
    n_canary: int = 0  # the new version's observations (requests, samples) the check rests on
    n_baseline: int = 0  # and the stable version's
    e_value: float | None = None
    canary_rate: float | None = None  # errors checks: the share of the new version's requests that failed
    baseline_rate: float | None = None
    effect_bound: float | None = None  # the judge's anytime-valid bound on the effect

    def to_list(self) -> list[Any]:
        return [
            self.name,
            self.outcome.value,
            self.n_canary,
            self.n_baseline,
            self.e_value,
            self.canary_rate,
            self.baseline_rate,
            self.effect_bound,
        ]

    @classmethod
    def from_list(cls, v: Any) -> CheckEvidence:
        """A check of a record's verdict; ValueError when it is not a list of 8, its outcome is not an
        ``Outcome`` or a count is bad. The numbers may be NaN or infinite, as in ``LookPoint``."""
        if not isinstance(v, list) or len(v) < 8:
            raise ValueError(f"a verdict's check is a list of 8 values, not {shown(v)}")
        return cls(
            str(v[0]),
            _outcome("check outcome", v[1]),
            _observations("check n", v[2]),
            _observations("check n", v[3]),
            *(_num(x) for x in v[4:8]),
        )

    @classmethod
    def from_details(cls, check: Any) -> CheckEvidence | None:
        """From one check of the ``details`` of a verdict written before verdicts carried typed checks
        (``CheckResult.to_dict``), read as leniently as the planners read it then: None for what is
        not a check, an unknown outcome read as inconclusive, missing numbers as unknown."""
        if not isinstance(check, dict):
            return None
        n = check.get("n")
        counts = [_lenient_count(x) for x in n[:2]] if isinstance(n, list) and len(n) >= 2 else [0, 0]
        rate = check.get("rate")
        rc, rb = (rate[0], rate[1]) if isinstance(rate, list) and len(rate) == 2 else (None, None)
        outcome = check.get("outcome")
        return cls(
            str(check.get("name", "")),
            Outcome(outcome) if outcome in tuple(Outcome) else Outcome.INCONCLUSIVE,
            counts[0],
            counts[1],
            _num(check.get("e")),
            _num(rc),
            _num(rb),
            _num(check.get("bound")),
        )


@dataclass(frozen=True)
class StepVerdict:
    """The outcome of checking one step: pod health plus metric checks, with their numbers.

    What planners decide on is typed (``outcome``, ``checks``, ``out_of_reach``, ``interim``) and
    kept in the record whatever its size; ``summary`` and ``details`` are for people (Events,
    ``deliver status``, the dashboard, JUnit) and a record short of room drops the details."""

    step: int
    outcome: Outcome
    summary: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)
    interim: bool = False  # a look at the running window of a step still being held (not its end)
    checks: tuple[CheckEvidence, ...] = ()  # the metric checks' evidence (none: a health-only verdict)
    # why a step's whole analysis window cannot carry the requests a verdict needs ("": it can, or no
    # forecast was made): the engine's time-to-verdict forecast of an inconclusive analysis
    out_of_reach: str = ""

    def __post_init__(self) -> None:
        # Planners compare outcomes by identity (``is Outcome.PASS``): a plain string from a caller
        # mypy does not check (a test's fake analyser) becomes the member; anything else raises.
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "step": self.step,
            "outcome": self.outcome.value,
            "summary": self.summary,
            "at": round(self.at, 3),
            "details": self.details,
        }
        if self.interim:
            d["interim"] = True
        if self.checks:
            d["checks"] = [c.to_list() for c in self.checks]
        if self.out_of_reach:
            d["outOfReach"] = self.out_of_reach
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepVerdict:
        """A verdict of a record; ValueError when a field is missing, of the wrong type or out of range.
        A verdict written before the typed fields existed has them read from its details."""
        d = record_object("verdict", d)
        details = record_object("verdict details", d.get("details") or {})
        if "checks" in d:
            checks = tuple(CheckEvidence.from_list(c) for c in record_array("verdict checks", d["checks"]))
        else:
            legacy = (CheckEvidence.from_details(c) for c in _listed(details.get("checks")))
            checks = tuple(c for c in legacy if c is not None)
        return cls(
            step=record_int("verdict step", d["step"], lo=-RECORD_COUNT_MAX),
            outcome=_outcome("verdict outcome", d["outcome"]),
            summary=str(d.get("summary", "")),
            at=record_time("verdict at", d.get("at", 0.0)),
            details=details,
            interim=bool(d.get("interim", False)),
            checks=checks,
            out_of_reach=str(d.get("outOfReach", details.get("outOfReach")) or ""),
        )


def _outcome(key: str, value: Any) -> Outcome:
    """An outcome of a record; ValueError naming the field for anything else."""
    if isinstance(value, str) and value in tuple(Outcome):
        return Outcome(value)
    raise ValueError(f"{key}: {shown(value)} is not one of {', '.join(Outcome)}")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _observations(key: str, value: Any) -> int:
    """A count of observations of a record's check: a whole number 0..OBSERVATIONS_MAX; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= OBSERVATIONS_MAX:
        raise ValueError(f"{key}: {shown(value)} is not a count of observations (0..{OBSERVATIONS_MAX})")
    return value


def _lenient_count(value: Any) -> int:
    """A count of an older verdict's details, or 0 (unknown) for anything that is not one."""
    number = _num(value)
    return int(number) if number is not None and 0 <= number <= OBSERVATIONS_MAX else 0


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class LookPoint:
    """One check's numbers at one look (or step verdict) of the current delivery: the evidence
    series the dashboard charts. Kept as a compact list in the record (``to_list``)."""

    at: float
    step: int
    outcome: Outcome
    e_value: float | None
    canary_rate: float | None
    baseline_rate: float | None
    effect_bound: float | None

    @classmethod
    def from_check(cls, at: float, step: int, check: CheckEvidence) -> LookPoint:
        """From one check of a verdict."""
        return cls(at, step, check.outcome, check.e_value, check.canary_rate, check.baseline_rate, check.effect_bound)

    def to_list(self) -> list[Any]:
        return [
            round(self.at, 1),
            self.step,
            self.outcome.value,
            self.e_value,
            self.canary_rate,
            self.baseline_rate,
            self.effect_bound,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> LookPoint:
        """A look point of a record; ValueError when it is not a list of 7 or its time, step or outcome is bad.
        The evidence numbers may be NaN or infinite (an analysis keeps them so); readers cope."""
        if not isinstance(v, list) or len(v) < 7:
            raise ValueError(f"a look point is a list of 7 values, not {shown(v)}")
        return cls(
            record_time("look at", v[0]),
            record_int("look step", v[1], lo=-RECORD_COUNT_MAX),
            _outcome("look outcome", v[2]),
            *(_num(x) for x in v[3:7]),
        )


def with_look(
    looks: dict[str, tuple[LookPoint, ...]], verdict: StepVerdict, keep: int = KEPT_LOOKS
) -> dict[str, tuple[LookPoint, ...]]:
    """``looks`` with one point per check of ``verdict`` added, each check's newest ``keep`` kept."""
    out = dict(looks)
    for check in verdict.checks:
        if check.name:
            out[check.name] = (*out.get(check.name, ()), LookPoint.from_check(verdict.at, verdict.step, check))[-keep:]
    return out
