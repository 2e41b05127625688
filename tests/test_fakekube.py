"""The one fake API behaves like the API server where deliver depends on it (and fails when told to)."""

from __future__ import annotations

from typing import Any

import pytest

from delivery.errors import Conflict, Gone, KubeError, NotFound
from delivery.kube.client import (
    DEPLOYMENTS,
    EVENTS,
    JSON_PATCH,
    PODS,
    REPLICASETS,
    SERVICES,
    STRATEGIC,
    Kube,
    KubeClient,
    selector_string,
)
from delivery.routing.gateway import HTTPROUTES
from tests.fakekube import Crash, FakeKube, json_patch, selector_matches


def test_the_fake_and_the_real_client_are_kubes() -> None:
    assert isinstance(FakeKube(), Kube)
    assert issubclass(KubeClient, Kube)


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "api"}, False),
        ("app!=web", {}, True),
        ("app=web,tier in (front, back)", {"app": "web", "tier": "back"}, True),
        ("tier in (front)", {"tier": "back"}, False),
        ("tier notin (front)", {}, True),
        ("tier notin (front)", {"tier": "front"}, False),
        ("tier", {"tier": ""}, True),
        ("!tier", {"tier": "x"}, False),
        ("", {"any": "thing"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": "1"}, False),
    ],
)
def test_label_selectors(selector: str | dict, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_items_honour_the_selector_strings_deliver_builds() -> None:
    kube = FakeKube()
    for name, labels in [("a", {"app": "web", "t": "x"}), ("b", {"app": "web"}), ("c", {"app": "api"})]:
        kube.put(PODS, {"metadata": {"name": name, "labels": labels}})
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["x"]}]}

    assert [p["metadata"]["name"] for p in kube.items(PODS, "ns", selector_string(sel))] == ["b"]
    assert [p["metadata"]["name"] for p in kube.items(PODS, "ns", field_selector="metadata.name!=b")] == ["a", "c"]
    assert kube.items(PODS, "other") == []


def test_create_with_generate_name_and_conflicts() -> None:
    kube = FakeKube()
    first = kube.create(EVENTS, "ns", {"metadata": {"generateName": "web."}, "reason": "X"})
    second = kube.create(EVENTS, "ns", {"metadata": {"generateName": "web."}, "reason": "Y"})
    assert first["metadata"]["name"].startswith("web.") and first["metadata"]["name"] != second["metadata"]["name"]
    assert first["metadata"]["uid"] != second["metadata"]["uid"]
    with pytest.raises(Conflict):
        kube.create(EVENTS, "ns", {"metadata": {"name": first["metadata"]["name"]}})
    with pytest.raises(KubeError) as bad:
        kube.create(EVENTS, "ns", {"metadata": {}})
    assert bad.value.status == 422


def test_stale_resource_versions_conflict() -> None:
    kube = FakeKube()
    svc = kube.put(SERVICES, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}})
    rv = svc["metadata"]["resourceVersion"]
    kube.patch(SERVICES, "ns", "web", {"metadata": {"resourceVersion": rv, "labels": {"a": "b"}}})
    with pytest.raises(Conflict):
        kube.patch(SERVICES, "ns", "web", {"metadata": {"resourceVersion": rv, "labels": {"a": "c"}}})
    with pytest.raises(Conflict):
        kube.replace(SERVICES, "ns", "web", svc)
    assert kube.get(SERVICES, "ns", "web")["metadata"]["labels"] == {"a": "b"}


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"name": "Web"}},
        {"metadata": {"name": "web", "labels": {"a": "x" * 64}}},
        {"metadata": {"name": "web", "annotations": {"a": 1}}},
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "api"}}}},
        },
    ],
)
def test_invalid_objects_are_422(body: dict) -> None:
    kube = FakeKube()
    with pytest.raises(KubeError) as bad:
        kube.create(REPLICASETS, "ns", body)
    assert bad.value.status == 422
    assert kube.objects == {}


def test_patches() -> None:
    kube = FakeKube()
    kube.put(SERVICES, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web", "h": "1"}}})
    kube.patch(SERVICES, "ns", "web", {"spec": {"selector": {"h": None}}})
    assert kube.get(SERVICES, "ns", "web")["spec"]["selector"] == {"app": "web"}

    kube.put(PODS, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]}})
    kube.patch(PODS, "ns", "p", {"spec": {"containers": [{"name": "b", "image": "2"}]}}, content_type=STRATEGIC)
    assert kube.get(PODS, "ns", "p")["spec"]["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]

    doc = {"a": [1, 2], "b": {"c~/": 1}}
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "replace", "path": "/b/c~0~1", "value": 2},
        {"op": "remove", "path": "/a/0"},
    ]
    assert json_patch(doc, ops) == {"a": [2, 3], "b": {"c~/": 2}}
    with pytest.raises(KubeError) as failed:
        kube.patch(SERVICES, "ns", "web", [{"op": "test", "path": "/spec/selector/app", "value": "api"}], JSON_PATCH)
    assert failed.value.status == 422


def test_status_is_a_subresource_and_generation_follows_the_spec() -> None:
    kube = FakeKube()
    d = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}},
        },
    }
    created = kube.create(DEPLOYMENTS, "ns", dict(d, status={"replicas": 9}))
    assert "status" not in created and created["metadata"]["generation"] == 1
    kube.patch(DEPLOYMENTS, "ns", "web", {"spec": {"replicas": 2}, "status": {"replicas": 5}})
    kube.patch(DEPLOYMENTS, "ns", "web", {"status": {"replicas": 2}}, sub="status")
    got = kube.get(DEPLOYMENTS, "ns", "web")
    assert (got["metadata"]["generation"], got["status"]) == (2, {"replicas": 2})
    with pytest.raises(KubeError):
        kube.patch(DEPLOYMENTS, "ns", "web", {"spec": {"selector": {"matchLabels": {"a": "b", "c": "d"}}}})


def test_delete_collects_dependents_and_ignores_the_missing() -> None:
    kube = FakeKube()
    rs = kube.put(REPLICASETS, {"metadata": {"name": "rs", "uid": "u-rs"}})
    kube.put(PODS, {"metadata": {"name": "p", "ownerReferences": [{"uid": rs["metadata"]["uid"], "controller": True}]}})
    kube.delete(REPLICASETS, "ns", "rs")
    kube.delete(REPLICASETS, "ns", "rs")
    assert kube.objects == {}


def test_failures_on_demand() -> None:
    kube = FakeKube()
    kube.put(SERVICES, {"metadata": {"name": "web"}})
    kube.fail_next(NotFound("gone", status=404), verb="get", resource=SERVICES)
    kube.items(SERVICES, "ns")  # a list is not a get
    with pytest.raises(NotFound):
        kube.get(SERVICES, "ns", "web")
    kube.get(SERVICES, "ns", "web")

    kube.fail_next = [KubeError("down")]  # type: ignore[method-assign, assignment]  # the older spelling
    with pytest.raises(KubeError):
        kube.items(SERVICES, "ns")

    kube.crash_at_write(2)
    kube.get(SERVICES, "ns", "web")  # reads do not count
    kube.patch(SERVICES, "ns", "web", {"metadata": {"labels": {"n": "1"}}})
    with pytest.raises(Crash):
        kube.patch(SERVICES, "ns", "web", {"metadata": {"labels": {"n": "2"}}})
    assert kube.get(SERVICES, "ns", "web")["metadata"]["labels"] == {"n": "1"}, "the crashed write did not happen"
    assert [w.verb for w in kube.writes] == ["patch", "patch"]


def test_crds_are_served_only_when_installed() -> None:
    kube = FakeKube(installed=())
    with pytest.raises(NotFound):
        kube.get(HTTPROUTES, "ns", "web")
    with pytest.raises(NotFound):
        kube.request("GET", "/apis/gateway.networking.k8s.io/v1")
    kube.installed.add(HTTPROUTES)
    assert kube.request("GET", "/apis/gateway.networking.k8s.io/v1")["resources"] == [{"name": "httproutes"}]


def test_watch_replays_changes_after_a_resource_version_and_is_gone_after_compaction() -> None:
    kube = FakeKube()
    listing = kube.list(SERVICES, "ns")
    kube.put(SERVICES, {"metadata": {"name": "a"}})
    kube.put(PODS, {"metadata": {"name": "p"}})
    kube.delete(SERVICES, "ns", "a")
    events = list(kube.watch(SERVICES, "ns", listing["metadata"]["resourceVersion"]))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("DELETED", "a")]
    kube.compact()
    with pytest.raises(Gone):
        list(kube.watch(SERVICES, "ns", listing["metadata"]["resourceVersion"]))
