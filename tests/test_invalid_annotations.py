"""Bad input changes nothing (DESIGN.md): generated invalid ``deliver.dev/*`` annotation sets
(hypothesis, the generator of the chaos run, e2e/chaos.py) on a canary at rest, with a new template
applied under them. After each set deliver has written nothing but its Warning Event."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, seed, settings

from delivery.kube.client import EVENTS
from e2e.chaos import STRATEGIES, invalid_sets
from tests.fixture import Fixture

BASE = STRATEGIES["canary"][0]


def at_rest() -> Fixture:
    f = Fixture()
    keys = {k.removeprefix("deliver.dev/"): v for k, v in BASE.items() if k != "deliver.dev/strategy"}
    f.given_deployment(BASE["deliver.dev/strategy"], "web:v1", replicas=3, **keys)
    f.given_delivered()
    return f


AT_REST = at_rest()
SNAPSHOT = (copy.deepcopy(AT_REST.kube.objects), AT_REST.kube.rv, AT_REST.kube._serial, AT_REST.now)


def fresh() -> Fixture:
    """The canary at rest (a copy: each example starts from the same cluster)."""
    objects, rv, serial, now = SNAPSHOT
    f = Fixture()
    f.kube.objects, f.kube.rv, f.kube._serial, f.now = copy.deepcopy(objects), rv, serial, now
    return f


@seed(10)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(invalid_sets(BASE))
def test_an_invalid_annotation_set_writes_nothing_but_a_warning(annotations: dict[str, str]) -> None:
    f = fresh()
    f.when_annotated(**{k.removeprefix("deliver.dev/"): v for k, v in annotations.items()})
    f.when_template_changes("web:v2")  # a new template under the invalid set: it must not go out
    record, template = f.deployment()["metadata"]["annotations"].get("deliver.dev/state"), f.image()
    f.kube.writes.clear()
    f.when_reconciled()
    f.cluster()
    writes = [(w.verb, w.plural) for w in f.kube.writes]
    assert all(plural == EVENTS.plural for _, plural in writes), (annotations, writes)
    assert any(e["reason"] == "InvalidAnnotation" and e["type"] == "Warning" for e in f.events()), annotations
    assert f.deployment()["metadata"]["annotations"].get("deliver.dev/state") == record
    assert f.image() == template == "web:v2" and f.deployment()["spec"]["paused"] is True
    assert not f.delivers_replicasets() and f.serving() == {"web:v1": 3}
