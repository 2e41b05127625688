"""Hostile tenants through whole reconcile passes (issue 24): generated hostile annotation values
(numbers of thousands of digits, NaN/inf, deep JSON, wrong types, long strings, unicode) and hostile
records (the same, and packed-template garbage) on a canary at rest with a new template applied
under them. No exception escapes a pass, the Deployment's spec and record are never changed, and a
Warning Event says what is wrong."""

from __future__ import annotations

import base64
import copy
import json
import zlib
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from delivery.kube.client import DEPLOYMENTS, EVENTS
from tests.fixture import NAME, STATE, Fixture

SETTINGS = settings(max_examples=80, deadline=2000, database=None, suppress_health_check=list(HealthCheck))


def _at_rest() -> Fixture:
    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3, steps="34,67,100", interval="2s", analysis="error-rate")
    f.given_delivered()
    return f


SNAPSHOT = (lambda f: (copy.deepcopy(f.kube.objects), f.kube.rv, f.kube._serial, f.now))(_at_rest())


def fresh() -> Fixture:
    objects, rv, serial, now = SNAPSHOT
    f = Fixture()
    f.kube.objects, f.kube.rv, f.kube._serial, f.now = copy.deepcopy(objects), rv, serial, now
    return f


HUGE_DIGITS = st.integers(min_value=10, max_value=6000).map(lambda n: "9" * n)
NON_FINITE = st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e309"])
DEEP = st.integers(min_value=50, max_value=5000).map(lambda n: "[" * n + "]" * n)
UNICODE = st.text(min_size=1, max_size=60).map(lambda t: "\u0663\u2028" + t)  # never a valid value
LONG = st.integers(min_value=1000, max_value=100_000).map(lambda n: "x" * n)
HOSTILE_VALUE = st.one_of(
    HUGE_DIGITS,
    HUGE_DIGITS.map(lambda d: d + "s"),
    HUGE_DIGITS.map(lambda d: f"20,{d}"),
    HUGE_DIGITS.map(lambda d: f"0.{d}"),
    NON_FINITE,
    NON_FINITE.map(lambda v: v + "s"),
    DEEP,
    UNICODE,
    LONG,
    st.sampled_from(["-1", "0x10", "1_000", " ", "", "20,,50", "{}", "null", "true"]),
)
# keys whose value each of HOSTILE_VALUE makes invalid (on this canary with an analysis)
KEYS = (
    "steps",
    "interval",
    "progress-deadline",
    "max-restarts",
    "max-extensions",
    "hook-timeout",
    "analysis-every",
    "analysis-resolution",
    "analysis-alpha",
    "on-inconclusive",
    "auto-rollback",
    "router",
    "mirror-percent",
)


def _no_action(f: Fixture, record: str | None, spec: dict[str, Any]) -> None:
    writes = [(w.verb, w.plural) for w in f.kube.writes]
    assert all(plural == EVENTS.plural for _, plural in writes), writes
    d = f.kube.obj(DEPLOYMENTS, NAME, f.ns)
    assert d["spec"] == spec, "the spec is never modified over invalid input"
    assert (d["metadata"].get("annotations") or {}).get(STATE) == record
    assert not f.delivers_replicasets() and f.serving() == {"web:v1": 3}


@seed(24)
@SETTINGS
@given(key=st.sampled_from(KEYS), value=HOSTILE_VALUE)
def test_a_hostile_annotation_value_is_a_warning_naming_its_key_and_no_action(key: str, value: str) -> None:
    f = fresh()
    f.when_annotated(**{key: value})
    f.when_template_changes("web:v2")
    before = f.deployment()
    f.kube.writes.clear()
    for _ in range(2):
        f.when_reconciled()  # raises nothing
    _no_action(f, before["metadata"]["annotations"].get(STATE), before["spec"])
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert f"deliver.dev/{key}" in warning["message"] and "takes no action" in warning["message"]
    assert len(warning["message"]) <= 1024


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
JSON = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
)
FIELDS = (
    "phase",
    "step",
    "stepStarted",
    "started",
    "weight",
    "extensions",
    "hold",
    "verdicts",
    "running",
    "looks",
    "hooks",
    "stableTemplate",
    "failedTemplate",
)


def _packed(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode()


PACKED_GARBAGE = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),  # not zlib
    st.binary(max_size=64).map(_packed),  # zlib, not JSON
    JSON.map(lambda v: _packed(json.dumps([v]).encode())),  # JSON, not an object
    st.just(_packed(b"0" * (8 * 1024 * 1024))),  # a bomb
    st.text(max_size=40).map(lambda t: t + "!*"),  # not base64
    st.just(_packed(b'{"a":' * 100 + b"1" + b"}" * 100)),  # nested too deep
)
# one field that makes any record invalid, whatever else it holds
POISON = st.one_of(
    st.tuples(st.sampled_from(["step", "weight", "extensions"]), st.sampled_from([1e999, -1e999, 10**13, "1e999"])),
    st.tuples(st.sampled_from(["started", "stepStarted", "finished"]), st.sampled_from([1e999, -5.0, 1e300, "nan"])),
    st.tuples(st.sampled_from(["stableTemplatePacked", "failedTemplatePacked"]), PACKED_GARBAGE),
    st.tuples(st.sampled_from(["looks", "verdicts", "hooks"]), st.sampled_from([5, "x", 1.5, True])),
    st.tuples(st.just("stableTemplate"), st.sampled_from(["a string", [1, 2], 7])),
)


def _record(base: dict[str, Any], fields: dict[str, Any], poison: tuple[str, Any]) -> str:
    record = dict(base, **fields)
    record.pop(poison[0].removesuffix("Packed"), None)  # a template as it is wins over its packed form
    record[poison[0]] = poison[1]
    return json.dumps(record)


HOSTILE_RECORD = st.one_of(
    st.builds(_record, st.just({"phase": "Idle"}), st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5), POISON),
    DEEP.map(lambda d: '{"phase": "Idle", "looks": {"a": ' + d + "}}"),
    st.just("[" * 200_000),
    st.just(json.dumps({"phase": "Idle", "message": "x" * (300 * 1024)})),
    JSON.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    st.text(max_size=80).map(lambda t: "{" + t),
)


@seed(24)
@SETTINGS
@given(record=HOSTILE_RECORD)
def test_a_hostile_record_is_a_warning_and_no_action(record: str) -> None:
    f = fresh()
    f.when_annotated(state=record)
    f.when_template_changes("web:v2")
    before = f.deployment()
    f.kube.writes.clear()
    for _ in range(2):
        f.when_reconciled()  # raises nothing
    _no_action(f, record, before["spec"])
    [warning] = f.events("RecordRejected", "Warning")
    assert STATE in warning["message"] and "takes no action" in warning["message"]


@seed(24)
@SETTINGS
@given(
    details=st.dictionaries(st.sampled_from(["checks", "window", "forecast", "outcome"]) | st.text(max_size=8), JSON),
    message=st.text(max_size=200),
    hooks=st.lists(st.text(max_size=20), max_size=5),
)
def test_a_well_formed_record_with_hostile_details_and_text_raises_nothing(
    details: dict[str, Any], message: str, hooks: list[str]
) -> None:
    f = fresh()
    record = f.record()
    verdict = {"step": 0, "outcome": "pass", "summary": message, "at": f.now, "details": details}
    record.update(message=message, hooks=hooks, verdicts=[verdict], running=verdict)
    f.when_annotated(state=json.dumps(record))
    f.when_template_changes("web:v2")
    for _ in range(3):
        f.when_reconciled()  # raises nothing; what it does is the planner's business
    assert f.record()["phase"]
