"""A leader change does not restart the router's progress deadline: the time the router broke is in
the record, so a fresh Reconciler (a new controller process) rolls back on time. Against the fake API."""

from __future__ import annotations

import json
from typing import Any

from delivery import templates
from delivery.engine.reconcile import Reconciler
from delivery.kube.client import DEPLOYMENTS, EVENTS, REPLICASETS
from strategies.record import DeliveryState, Phase
from tests.fakekube import FakeKube

V1 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v1"}]}}
V2 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v2"}]}}
R1, R2 = templates.revision(V1), templates.revision(V2)


class Cluster(FakeKube):
    """The fake API with the Gateway API installed (discovery answers), in case the fake lacks it."""

    def request(self, method: str, path: str, *args: Any, **kw: Any) -> dict[str, Any]:
        if getattr(FakeKube, "request", None) is not None:
            return FakeKube.request(self, method, path, *args, **kw)  # type: ignore[attr-defined,no-any-return]
        return {"resources": [{"name": "httproutes"}]}

    def create(self, res: Any, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        if "name" not in meta and "generateName" in meta:  # Events
            body = dict(body, metadata=dict(meta, name=f"{meta['generateName']}{len(self.objects)}"))
        return super().create(res, namespace, body)


def given_a_canary_at_20_percent_behind_a_route(kube: FakeKube) -> None:
    record = DeliveryState(
        phase=Phase.PROGRESSING,
        strategy="canary",
        revision=R2,
        stable_revision=R1,
        stable_hash=R1,
        step=0,
        step_started=1000.0,
        started=1000.0,
        weight=20,
    )
    kube.put(
        DEPLOYMENTS,
        {
            "metadata": {
                "name": "web",
                "namespace": "ns",
                "generation": 2,
                "annotations": {
                    "deliver.dev/strategy": "canary",
                    "deliver.dev/steps": "20,50,100",
                    "deliver.dev/router": "gateway-api/web",
                    "deliver.dev/progress-deadline": "60s",
                    "deliver.dev/state": json.dumps(record.to_dict()),
                },
            },
            "spec": {"replicas": 2, "paused": True, "selector": {"matchLabels": {"app": "web"}}, "template": V2},
            "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
        },
    )
    kube.put(
        REPLICASETS,
        {
            "metadata": {
                "name": f"web-{R1}",
                "namespace": "ns",
                "labels": {"app": "web", templates.HASH_LABEL: R1},
                "ownerReferences": [{"uid": "uid-web", "controller": True, "kind": "Deployment", "name": "web"}],
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": templates.with_hash(V1, R1),
            },
            "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
        },
    )
    # no HTTPRoute "web": the router is broken


def record(kube: FakeKube) -> DeliveryState:
    d = kube.get(DEPLOYMENTS, "ns", "web")
    return DeliveryState.from_dict(json.loads(d["metadata"]["annotations"]["deliver.dev/state"]))


def events(kube: FakeKube, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.items(EVENTS, "ns") if e.get("reason") == reason]


def test_a_new_leader_keeps_the_router_deadline() -> None:
    kube = Cluster()
    given_a_canary_at_20_percent_behind_a_route(kube)
    # the first leader sees the router broken at t=1010 and holds the step
    Reconciler(kube, clock=lambda: 1010.0).reconcile("ns", "web")
    held = record(kube)
    assert held.phase is Phase.PROGRESSING
    assert len(events(kube, "RouterUnavailable")) == 1
    # a new leader (fresh process: nothing in memory) 61 s later rolls back: the deadline was not restarted
    Reconciler(kube, clock=lambda: 1071.0).reconcile("ns", "web")
    after = record(kube)
    assert after.phase is Phase.ROLLING_BACK, after
    assert "traffic router unavailable" in after.message
    assert len(events(kube, "RouterUnavailable")) == 1  # told once, by the record, not by memory
    assert held.router_down_since == 1010.0
