"""Hostile tenants (issue 24): whoever edits a Deployment controls its ``deliver.dev/`` annotations and
its record. Every size and number read from them is bounded; bad input is no action, a Warning Event,
and other Deployments go on."""

from __future__ import annotations

import base64
import json
import tracemalloc
import zlib

import pytest

from delivery.errors import StateError
from delivery.kube import DEPLOYMENTS, EVENTS
from delivery.state import read_state
from strategies.model import DeliveryState
from tests.fixture import NAME, STATE, Fixture


def _bomb(size: int = 140 * 1024 * 1024) -> str:
    """A record whose packed stable template inflates to ``size`` bytes (zeros compress ~1000:1)."""
    packed = base64.b64encode(zlib.compress(b"0" * size, 9)).decode()
    return json.dumps({"phase": "Idle", "stableTemplatePacked": packed})


BOMB = _bomb()


def _deployment(record: str) -> dict[str, object]:
    return {"metadata": {"name": NAME, "namespace": "shop", "annotations": {STATE: record}}}


def test_a_packed_template_bomb_is_refused_in_little_memory() -> None:
    assert len(BOMB) < 200 * 1024  # fits the annotations of one object
    tracemalloc.start()
    try:
        with pytest.raises(StateError, match="stableTemplatePacked"):
            read_state(_deployment(BOMB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_a_record_over_its_size_cap_is_refused_before_it_is_parsed() -> None:
    record = json.dumps({"phase": "Idle", "message": "x" * (600 * 1024)})
    with pytest.raises(StateError, match="bytes"):
        read_state(_deployment(record))


@pytest.mark.parametrize(
    "record",
    [
        '{"phase": "Idle", "stableTemplatePacked": "not base64 at all!"}',
        json.dumps({"phase": "Idle", "stableTemplatePacked": base64.b64encode(b"not zlib").decode()}),
        json.dumps({"phase": "Idle", "failedTemplatePacked": base64.b64encode(zlib.compress(b"[1,2]")).decode()}),
        json.dumps({"phase": "Idle", "stableTemplate": "a string"}),
        '{"phase": "Idle", "looks": [1]}',
        '{"phase": "Idle", "looks": {"a": [[1]]}}',
        '{"phase": "Idle", "verdicts": [{"step": 0}]}',
        '{"phase": "Idle", "step": 1e999}',
        '{"phase": "Idle", "started": "1e999"}',
        '{"phase": "Idle", "started": NaN}',
        '{"phase": "Idle", "weight": -Infinity}',
        '{"phase": "Idle", "step": "' + "9" * 5000 + '"}',
        '{"phase": "Idle", "step": 10000000000000}',
        '{"phase": "Idle", "verdicts": [{"step": 0, "outcome": "pass", "at": Infinity}]}',
        '{"phase": "Idle", "hooks": 5}',
        '{"phase": "Idle", "hold": 5}',
        "[1, 2]",
        "[" * 100_000,
        '"just a string"',
    ],
)
def test_a_malformed_record_is_a_state_error(record: str) -> None:
    with pytest.raises(StateError):
        read_state(_deployment(record))


def test_a_record_deliver_wrote_still_reads() -> None:
    big = {"spec": {"containers": [{"name": "app", "image": "web:v1", "env": [{"name": "X", "value": "y" * 200_000}]}]}}
    state = DeliveryState(stable_template=big, started=1_767_225_600.0)
    encoded = json.dumps(state.to_dict(), separators=(",", ":"))
    assert "stableTemplatePacked" in encoded  # packed to fit the budget
    assert read_state(_deployment(encoded)).stable_template == big


def test_a_bomb_in_one_record_is_a_warning_no_action_and_others_go_on() -> None:
    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3)
    f.given_delivered()
    f.when_annotated(state=BOMB)
    f.when_template_changes("web:v2")
    before = f.deployment()
    f.kube.writes.clear()
    outcome = f.when_reconciled()  # no exception
    assert outcome.requeue_after is not None
    assert all(w.plural == EVENTS.plural for w in f.kube.writes), f.kube.writes
    [warning] = f.events("RecordRejected", "Warning")
    assert STATE in warning["message"] and "deliver takes no action" in warning["message"]
    after = f.kube.obj(DEPLOYMENTS, NAME, f.ns)
    assert after["spec"] == before["spec"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    f.when_reconciled()
    assert len(f.events("RecordRejected", "Warning")) == 1  # said once

    other = Fixture(ns="other", kube=f.kube)  # another namespace on the same API: unaffected
    other.given_deployment("canary", "web:v1", replicas=3)
    other.given_delivered()
    other.when_template_changes("web:v2")
    other.when_reconciled()
    assert other.record()["phase"] == "Progressing"
