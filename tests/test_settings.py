"""The controller's timings live in one documented place (delivery/settings.py), and nowhere else.

Read from the source (an AST walk): a field's docstring exists only there, and a seconds constant
that comes back into the engine, the integrations or the client layer is a module-level name or a
literal in a wait, which only the source shows.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from delivery import settings as settings_module
from delivery.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "delivery" / "settings.py"
SCANNED = ("delivery/engine", "delivery/integrations", "delivery/kube")

# The names the timings had before they moved into Settings: none may come back.
FORMER = {
    "FIRST",
    "ROUTE_RECHECK",
    "SPEC_RETRY",
    "ANALYSIS_WAIT",
    "RECORD_RETRY",
    "RECHECK_SECONDS",
    "BUDGET",
    "DROP_LOG_EVERY",
}
# A name that says it holds a time.
TIMING_NAME = re.compile(
    r"(^|_)(SECONDS|TIMEOUT|RETRY|WAIT|RECHECK|BACKOFF|EVERY|DEADLINE|PERIOD|INTERVAL|GRACE|DELAY|TTL|RESYNC)(_|$)"
)
# Seconds that are not the controller's, each with the reason.
ALLOWED: dict[tuple[str, str] | tuple[str, str, float], str] = {
    ("delivery/integrations/helmhook.py", "GRACE"): "the Helm hook Job's deadline, rendered by `deliver helm-hook`",
    ("delivery/engine/reconcile.py", "Outcome", 0.2): "the placeholder before a pass's loop, which always replaces it",
    ("delivery/integrations/notify.py", "sleep", 0.02): "drain()'s poll (tests, and the shutdown's bounded drain)",
}


def _classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse(SOURCE.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _field_docs(cls: ast.ClassDef) -> dict[str, str]:
    """Each annotated field of ``cls`` -> the string literal right after it ('' when none)."""
    docs: dict[str, str] = {}
    body = cls.body
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            after = body[i + 1] if i + 1 < len(body) else None
            text = ""
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                text = str(after.value.value) if isinstance(after.value.value, str) else ""
            docs[stmt.target.id] = text
    return docs


def _groups() -> list[type]:
    return [type(getattr(Settings(), f.name)) for f in dataclasses.fields(Settings)]


def test_every_group_of_settings_is_a_documented_frozen_dataclass_and_every_dataclass_is_a_group() -> None:
    groups = _groups()
    assert groups, "Settings holds no group"
    defined = {
        name
        for name, value in vars(settings_module).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == settings_module.__name__
    }
    assert defined - {"Settings"} == {g.__name__ for g in groups}, "a timings class that Settings does not hold"
    for group in groups:
        assert group.__dataclass_params__.frozen, f"{group.__name__} is not frozen"  # type: ignore[attr-defined]
        assert (group.__doc__ or "").strip(), f"{group.__name__} has no docstring"


@pytest.mark.parametrize("group", _groups(), ids=lambda g: g.__name__)
def test_every_timing_has_a_doc_giving_its_unit_and_a_positive_default(group: type) -> None:
    docs = _field_docs(_classes()[group.__name__])
    fields = dataclasses.fields(group)
    assert fields and set(docs) == {f.name for f in fields}
    for f in fields:
        doc = docs[f.name]
        assert len(doc.split()) >= 6, f"{group.__name__}.{f.name}: no doc comment saying what it is and why"
        assert "second" in doc.lower(), f"{group.__name__}.{f.name}: its doc does not give its unit"
        default = getattr(group(), f.name)
        assert isinstance(default, int | float) and not isinstance(default, bool), f"{group.__name__}.{f.name}"
        assert default > 0, f"{group.__name__}.{f.name} = {default!r}"


def test_the_defaults_are_the_timings_the_controller_always_had() -> None:
    """Moving the timings changed none of them (the values before issue 25's settings object)."""
    s = Settings()
    assert (s.queue.first, s.queue.poll, s.queue.follower_retry, s.queue.follower_pause) == (3600.0, 0.5, 2.0, 0.5)
    assert (s.watches.timeout, s.watches.backoff, s.watches.max_backoff, s.watches.resync) == (240, 0.5, 30.0, 300.0)
    p = s.passes
    assert (p.route_recheck, p.spec_retry, p.analysis_wait, p.record_retry) == (5.0, 2.0, 2.0, 60.0)
    assert (p.race_retry, p.action_retry, p.error_retry, p.leadership_lost_retry, p.crash_retry) == (
        0.2,
        2.0,
        5.0,
        2.0,
        10.0,
    )
    assert s.hold_policy.recheck == 30.0
    assert (s.hooks.budget, s.hooks.backoff, s.hooks.max_backoff) == (90.0, 0.5, 30.0)
    n = s.notifications
    assert (n.timeout, n.backoff, n.max_backoff, n.drop_log_every, n.drain) == (5.0, 1.0, 60.0, 10.0, 5.0)
    lead = s.leadership
    assert (lead.lease_duration, lead.renew_deadline, lead.retry_period, lead.stop_wait) == (15.0, 10.0, 2.0, 5.0)
    assert s.analysis.prometheus_timeout == 10.0
    assert (s.shutdown.grace, s.shutdown.poll) == (30.0, 0.05)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().passes.route_recheck = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- no seconds constant outside


def _number(node: ast.expr | None) -> float | None:
    """The value of a numeric literal (or a negated one); None for anything else."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def offences(path: str, source: str) -> list[str]:
    """Seconds constants at module level (a former name; a timing's name with a number; any float
    literal) and positive literals handed to a wait, a sleep, a join, a pass's ``Outcome`` or any
    ``timeout=``."""
    found: list[str] = []
    tree = ast.parse(source)
    for stmt in tree.body:
        value: ast.expr | None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        else:
            continue
        is_float = isinstance(value, ast.Constant) and isinstance(value.value, float)
        for target in targets:
            if not isinstance(target, ast.Name) or (path, target.id) in ALLOWED:
                continue
            timed = TIMING_NAME.search(target.id) is not None and _number(value) is not None
            if target.id in FORMER or timed or is_float:
                found.append(f"{path}:{stmt.lineno} {target.id}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        args = [k.value for k in node.keywords if k.arg == "timeout"]
        if name in ("wait", "sleep", "join", "Outcome") and node.args:
            args.append(node.args[0])
        for arg in args:
            seconds = _number(arg)
            if seconds is not None and seconds > 0 and (path, name, seconds) not in ALLOWED:
                found.append(f"{path}:{node.lineno} {name}({seconds:g})")
    return found


def test_the_scan_finds_a_seconds_constant_and_a_hard_coded_wait() -> None:
    """The scan below can fail: it finds each kind of timing that moved into Settings."""
    source = "\n".join(
        [
            "ROUTE_RECHECK = 5.0",
            "RECHECK_SECONDS: float = 30.0",
            "LEASE_TIMEOUT = 15",
            "SLACK = 0.25",
            "PAGE = 500",  # a count: not a timing
            "FORMATS = ('json', 'slack')",
            "def f(stop, q, t):",
            "    stop.wait(0.5)",
            "    q.get(timeout=0.5)",
            "    time.sleep(0.05)",
            "    t.join(5)",
            "    stop.wait(t)",  # read from somewhere: fine
            "    Outcome(0.0, conflicted=True)",  # at once: not a timing
            "    return Outcome(10.0)",
        ]
    )
    found = [f.split(" ", 1)[1] for f in offences("delivery/engine/example.py", source)]
    assert sorted(found) == sorted(
        ["ROUTE_RECHECK", "RECHECK_SECONDS", "LEASE_TIMEOUT", "SLACK", "wait(0.5)", "get(0.5)", "sleep(0.05)",
         "join(5)", "Outcome(10)"]
    )  # fmt: skip


def test_no_module_of_the_engine_the_integrations_or_the_client_layer_keeps_a_seconds_constant() -> None:
    found: list[str] = []
    files = [p for folder in SCANNED for p in sorted((ROOT / folder).glob("*.py"))]
    assert len(files) > 15, "the scan sees too few modules: were they moved?"
    for p in files:
        found += offences(str(p.relative_to(ROOT)), p.read_text())
    assert not found, "timings belong in delivery/settings.py:\n" + "\n".join(found)


def test_every_allowed_exception_is_still_there() -> None:
    """An exception whose code is gone must go too (else it would let a new constant of that name in)."""
    for key in ALLOWED:
        text = (ROOT / str(key[0])).read_text()
        needle = key[1] if len(key) == 2 else f"{key[1]}({key[2]:g}"
        assert needle in text, f"{key}: {ALLOWED[key]} is no longer there"
