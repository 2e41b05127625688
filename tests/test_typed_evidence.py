"""Typed evidence: a verdict's outcome is an ``Outcome``, the evidence planners decide on is typed
fields of the verdict (``checks``, ``out_of_reach``), and no decision reads message text.

The source scan reads strategies/ and delivery/ with ast: a string constant "pass", "fail" or
"inconclusive" anywhere but in the enum's own definition is a literal that ``Outcome`` should name."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from strategies.codec import RECORD_BUDGET
from strategies.evidence import CheckEvidence, LookPoint, Outcome, StepVerdict
from strategies.record import DeliveryState, HoldReason, Phase

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("strategies", "delivery")
ENUM = ("strategies/evidence.py", "Outcome")  # the one place the values are written


def outcome_literals(source: str, path: str) -> list[str]:
    """``path:line: 'value'`` for each string constant equal to an outcome's value, outside the
    definition of the enum itself."""
    tree = ast.parse(source, path)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and (path, node.name) == ENUM:
            allowed |= {id(n) for n in ast.walk(node)}
    values = {o.value for o in Outcome}
    return [
        f"{path}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in values and id(node) not in allowed
    ]


def test_no_outcome_is_written_as_a_string_literal_in_strategies_or_delivery() -> None:
    found = [
        hit
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for hit in outcome_literals(path.read_text(), path.relative_to(ROOT).as_posix())
    ]
    assert found == [], "use strategies.evidence.Outcome:\n" + "\n".join(found)


def test_the_scan_finds_literals_and_spares_only_the_enum() -> None:
    source = 'class Outcome:\n    PASS = "pass"\n\nif v.outcome == "fail":\n    kinds = {"inconclusive": 1}\n'
    assert outcome_literals(source, "delivery/x.py") == [
        "delivery/x.py:2: 'pass'",
        "delivery/x.py:4: 'fail'",
        "delivery/x.py:5: 'inconclusive'",
    ]
    assert outcome_literals(source, "strategies/evidence.py") == [
        "strategies/evidence.py:4: 'fail'",
        "strategies/evidence.py:5: 'inconclusive'",
    ]
    # the real definition is there, and is what the scan spares
    model = (ROOT / "strategies/evidence.py").read_text()
    assert len(outcome_literals(model.replace("class Outcome(", "class Renamed("), "strategies/evidence.py")) == 3


def test_the_outcomes_are_written_as_before() -> None:
    assert [o.value for o in Outcome] == ["pass", "fail", "inconclusive"]
    v = StepVerdict(2, Outcome.FAIL, "error-rate fail", 1000.0, {"checks": []})
    assert json.dumps(v.to_dict()) == (
        '{"step": 2, "outcome": "fail", "summary": "error-rate fail", "at": 1000.0, "details": {"checks": []}}'
    )
    assert f"{Outcome.INCONCLUSIVE}" == "inconclusive"
    assert StepVerdict(0, "pass", "", 0.0).outcome is Outcome.PASS  # a plain value is taken as the member
    with pytest.raises(ValueError):
        StepVerdict(0, "passed", "", 0.0)


CHECK = CheckEvidence("error-rate", Outcome.INCONCLUSIVE, 812, 3210, 3.1, 0.012, 0.005, 1.5)


def test_a_verdicts_checks_and_out_of_reach_go_compactly_into_the_record_and_back() -> None:
    v = StepVerdict(0, Outcome.INCONCLUSIVE, "s", 1030.0, {"forecast": []}, True, (CHECK,), "too few requests")
    d = v.to_dict()
    assert d["checks"] == [["error-rate", "inconclusive", 812, 3210, 3.1, 0.012, 0.005, 1.5]]
    assert d["outOfReach"] == "too few requests" and d["interim"] is True
    assert StepVerdict.from_dict(json.loads(json.dumps(d))) == v
    health = StepVerdict(0, Outcome.PASS, "health ok", 1030.0)
    assert set(health.to_dict()) == {"step", "outcome", "summary", "at", "details"}  # as before: nothing added


def test_a_verdict_written_before_the_typed_fields_reads_them_from_its_details() -> None:
    old = {
        "step": 0,
        "outcome": "inconclusive",
        "summary": "s",
        "at": 1030.0,
        "details": {
            "outOfReach": "too few requests",
            "checks": [
                {"name": "error-rate", "outcome": "inconclusive", "e": 3.1, "rate": [0.012, 0.005], "bound": 1.5}
                | {"n": [812, 3210], "critical": True, "msg": "m"},
                {"name": "latency", "outcome": "odd", "n": "x"},  # read as the planners read it then
                "not a check",
            ],
        },
    }
    v = StepVerdict.from_dict(old)
    assert v.checks == (CHECK, CheckEvidence("latency", Outcome.INCONCLUSIVE))
    assert v.out_of_reach == "too few requests"


@pytest.mark.parametrize(
    ("checks", "named"),
    [
        ("x", "verdict checks"),
        ([["error-rate", "passed", 1, 1, None, None, None, None]], "check outcome"),
        ([["error-rate", "pass", -1, 1, None, None, None, None]], "check n"),
        ([["error-rate", "pass", 1.5, 1, None, None, None, None]], "check n"),
        ([["error-rate", "pass"]], "a list of 8"),
    ],
)
def test_a_hand_written_check_of_the_wrong_shape_is_refused_naming_it(checks: object, named: str) -> None:
    d = {"verdicts": [{"step": 0, "outcome": "pass", "at": 1.0, "checks": checks}]}
    with pytest.raises(ValueError, match=named):
        DeliveryState.from_dict(d)


def test_an_outcome_of_a_record_is_one_of_the_three() -> None:
    with pytest.raises(ValueError, match="verdict outcome: str 'maybe' is not one of pass, fail, inconclusive"):
        DeliveryState.from_dict({"verdicts": [{"step": 0, "outcome": "maybe", "at": 1.0}]})
    with pytest.raises(ValueError, match="look outcome"):
        DeliveryState.from_dict({"looks": {"error-rate": [[1.0, 0, "passed", None, None, None, None]]}})


def test_the_evidence_numbers_may_be_nan_as_the_analysis_keeps_them() -> None:
    d = {"verdicts": [{"step": 0, "outcome": "pass", "at": 1.0, "checks": [["c", "pass", 1, 1, math.nan, 0, 0, 0]]}]}
    (check,) = DeliveryState.from_dict(d).verdicts[0].checks
    assert check.e_value is not None and math.isnan(check.e_value)


def test_a_look_point_is_made_from_a_typed_check() -> None:
    assert LookPoint.from_check(1030.0, 0, CHECK) == LookPoint(1030.0, 0, Outcome.INCONCLUSIVE, 3.1, 0.012, 0.005, 1.5)


# ---------------------------------------------------------------- holds: typed, never message text


@pytest.mark.parametrize("budget", [RECORD_BUDGET, 300])
@pytest.mark.parametrize(
    ("phase", "hold", "message"),
    [
        # messages that the reading of records written before ``hold`` existed would take for another reason
        (Phase.PAUSED, HoldReason.OPERATOR, "failed: step 2 inconclusive"),
        (Phase.PAUSED, HoldReason.AWAITING_PROMOTION, "step 2 inconclusive, waiting for `deliver promote`"),
        (Phase.PAUSED, HoldReason.INCONCLUSIVE, "paused by an operator"),
        (Phase.ROLLED_BACK, HoldReason.NONE, "rolled back; `deliver retry app` delivers it again"),
        (Phase.PROGRESSING, HoldReason.NONE, "failed: "),
    ],
)
def test_a_record_of_this_version_keeps_its_hold_whatever_its_message_and_size(
    phase: Phase, hold: HoldReason, message: str, budget: int
) -> None:
    state = DeliveryState(phase=phase, hold=hold, message=message, stable_template={"spec": {"x": "y" * 400}})
    written = state.to_dict(budget=budget)
    assert written["hold"] == hold.value
    assert DeliveryState.from_dict(json.loads(json.dumps(written))).hold is hold


def test_a_record_written_before_hold_existed_still_reads_its_reason_from_the_message() -> None:
    def read(phase: Phase, message: str) -> HoldReason:
        return DeliveryState.from_dict({"phase": phase.value, "message": message}).hold

    assert read(Phase.PAUSED, "failed: analysis failed") is HoldReason.FAILED
    assert read(Phase.PAUSED, "paused by an operator (deliver pause)") is HoldReason.OPERATOR
    assert read(Phase.PAUSED, "step 2 inconclusive, waiting for `deliver promote app`") is HoldReason.INCONCLUSIVE
    assert read(Phase.PAUSED, "step 3 is a manual promotion") is HoldReason.AWAITING_PROMOTION
    assert read(Phase.ROLLED_BACK, "use `deliver retry app`") is HoldReason.PREVIOUSLY_FAILED
    assert read(Phase.PROGRESSING, "step 2 inconclusive") is HoldReason.NONE
