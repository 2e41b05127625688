"""Every Event reason deliver posts comes from strategies/reasons.py: no reason is spelled out as a
string anywhere else in the code (so the list there, and docs/events.md's table, is complete)."""

from __future__ import annotations

import ast
from pathlib import Path

from strategies.reasons import EventReason
from strategies.record import HoldReason, Phase

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "strategies" / "reasons.py"
# calls that post an Event, and the position of their reason argument
POSTERS = {"PostEvent": 1, "post_event": 3, "_warn_once": 1}
# words that are also a phase or a hold reason (same thing, another enum), and the JUnit failure type
OTHER_MEANINGS = {p.value for p in Phase} | {h.value for h in HoldReason} | {"DeliveryFailed@delivery/junit.py"}


def sources() -> list[Path]:
    return [p for pkg in ("strategies", "delivery") for p in sorted((ROOT / pkg).rglob("*.py")) if p != HOME]


def stray_reasons(path: Path) -> list[str]:
    """``file:line reason`` for every reason given as a literal string instead of an EventReason."""
    tree = ast.parse(path.read_text(), str(path))
    known = {r.value for r in EventReason}
    found = []
    for node in ast.walk(tree):
        # a known reason's text anywhere (a dict of reasons, a default argument, ...)
        where = f"{node.value}@{path.relative_to(ROOT)}" if isinstance(node, ast.Constant) else ""
        if isinstance(node, ast.Constant) and node.value in known and not {node.value, where} & OTHER_MEANINGS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
        # any literal in the reason position of a call that posts an Event
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in POSTERS:
                args = list(node.args) + [k.value for k in node.keywords if k.arg == "reason"]
                index = POSTERS[name]
                reason = args[index] if index < len(args) else None
                if isinstance(reason, ast.Constant) and isinstance(reason.value, str):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {reason.value}")
    return sorted(set(found))


def test_every_event_reason_comes_from_the_one_module() -> None:
    assert [line for path in sources() for line in stray_reasons(path)] == []


def test_the_check_finds_a_literal_reason(tmp_path: Path) -> None:
    global ROOT
    sample = tmp_path / "delivery" / "sample.py"
    sample.parent.mkdir()
    sample.write_text(
        'PostEvent("Normal", "SomethingNew", "m")\n'
        'post_event(kube, d, "Warning", "Other", "m")\n'
        'REASONS = {"pass": "AnalysisPassed"}\n'
        'PostEvent("Normal", EventReason.STEP_PASSED, "m")\n'
    )
    old, ROOT = ROOT, tmp_path
    try:
        assert stray_reasons(sample) == [
            "delivery/sample.py:1 SomethingNew",
            "delivery/sample.py:2 Other",
            "delivery/sample.py:3 AnalysisPassed",
        ]
    finally:
        ROOT = old


def test_reasons_are_unique_camel_case() -> None:
    values = [r.value for r in EventReason]
    assert len(values) == len(set(values))
    assert all(v[:1].isupper() and v.isalnum() for v in values)
