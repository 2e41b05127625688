"""The informer cache (delivery/kube/cache.py) and paged relists (issue 13), on the one fake API.

A pass reads Deployments, ReplicaSets, pods, Services and PodDisruptionBudgets from the informers'
stores instead of eight API requests; these tests hold it to the API's answers: selectors select
what the API server selects, a late event never rolls a store back, a write is seen by the next
pass, a Conflict refreshes the object, and every strategy ends where it ends without the cache,
also with a watch that lags behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery import labels
from delivery.engine.controller import Controller, Informer
from delivery.engine.reconcile import Reconciler
from delivery.errors import Conflict, Forbidden, NotFound
from delivery.kube.cache import Cache, CachedKube, Store, trim
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS, SERVICES, selector_string
from tests.fakekube import FakeKube, selector_matches
from tests.fixture import NAME, NS, Fixture

KEYS = ["app", "tier", "deliver.dev/owner", "x"]
VALUES = ["a", "b", "web", ""]


# ---------------------------------------------------------------------------- selectors


@st.composite
def requirement(draw: Any) -> str:
    key = draw(st.sampled_from(KEYS))
    kind = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!exists"]))
    if kind in ("=", "==", "!="):
        return f"{key}{kind}{draw(st.sampled_from(VALUES[:3]))}"
    if kind in ("in", "notin"):
        values = draw(st.lists(st.sampled_from(VALUES[:3]), min_size=1, max_size=3))
        return f"{key} {kind} ({','.join(values)})"
    return key if kind == "exists" else f"!{key}"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(requirement(), max_size=4),
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES[:3]), max_size=4),
)
def test_a_selector_selects_what_the_api_server_selects(reqs: list[str], found: dict[str, str]) -> None:
    selector = ",".join(reqs)
    assert labels.matches(labels.parse(selector), found) == selector_matches(selector, found)


@st.composite
def label_selector(draw: Any) -> dict[str, Any]:
    ops = ["In", "NotIn", "Exists", "DoesNotExist"]
    exprs = draw(
        st.lists(
            st.builds(
                lambda k, op, vs: {"key": k, "operator": op, "values": vs if op in ("In", "NotIn") else []},
                st.sampled_from(KEYS),
                st.sampled_from(ops),
                st.lists(st.sampled_from(VALUES[:3]), min_size=1, max_size=3),
            ),
            max_size=3,
        )
    )
    match = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES[:3]), max_size=2))
    return {"matchLabels": match, "matchExpressions": exprs}


@settings(max_examples=400, deadline=None)
@given(label_selector(), st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES[:3]), max_size=4))
def test_a_label_selector_object_selects_what_the_api_server_selects(
    selector: dict[str, Any], found: dict[str, str]
) -> None:
    """The one matcher of LabelSelector objects (observe: PodDisruptionBudgets; spec: the selector
    check) and the string form agree with the fake API's."""
    assert labels.selects(selector, found) == selector_matches(selector, found)
    assert labels.selects(selector, found) == labels.matches(labels.parse(selector_string(selector)), found)


def test_a_selector_the_api_server_would_refuse_is_an_error() -> None:
    with pytest.raises(ValueError, match="invalid label selector"):
        labels.parse("app in a,b")


# ---------------------------------------------------------------------------- the store


def rs(name: str, rv: int, **lbls: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": str(rv),
            "labels": lbls,
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        "spec": {"replicas": 1},
    }


def test_a_late_event_never_rolls_the_store_back() -> None:
    store = Store(REPLICASETS)
    store.replace_all([rs("a", 10, app="web")])
    store.apply("WRITE", rs("a", 12, app="web", step="2"))  # a write's answer
    store.apply("MODIFIED", rs("a", 11, app="web", step="1"))  # the watch, one event behind
    assert store.get(NS, "a")["metadata"]["labels"] == {"app": "web", "step": "2"}
    store.apply("DELETED", rs("a", 11, app="web"))  # an older deletion cannot remove a newer object
    assert store.get(NS, "a") is not None
    store.apply("DELETED", rs("a", 13, app="web"))
    assert store.get(NS, "a") is None and store.items(NS, "app=web") == []


def test_the_label_index_follows_changed_labels() -> None:
    store = Store(REPLICASETS)
    store.replace_all([rs("a", 1, app="web"), rs("b", 2, app="web", held="yes")])
    assert [o["metadata"]["name"] for o in store.items(NS, "app=web")] == ["a", "b"]
    store.apply("MODIFIED", rs("b", 3, app="shop"))
    assert [o["metadata"]["name"] for o in store.items(NS, "app=web")] == ["a"]
    assert [o["metadata"]["name"] for o in store.items(NS, "app=shop,!held")] == ["b"]
    assert store.items("elsewhere", "app=web") == []
    assert [o["metadata"]["name"] for o in store.items(None, "app in (web,shop)")] == ["a", "b"]


def test_a_relist_drops_what_was_deleted_meanwhile_and_reads_are_copies() -> None:
    store = Store(REPLICASETS)
    store.replace_all([rs("a", 1, app="web"), rs("b", 2, app="web")])
    store.replace_all([rs("b", 5, app="web")])
    got = store.items(NS, "app=web")
    assert [o["metadata"]["name"] for o in got] == ["b"]
    got[0]["metadata"]["labels"]["app"] = "changed"  # a caller changing what it read
    assert store.items(NS, "app=web")[0]["metadata"]["labels"]["app"] == "web"


def test_the_store_keeps_no_managed_fields_and_of_a_pod_only_what_health_reads() -> None:
    assert "managedFields" not in trim(REPLICASETS, rs("a", 1))["metadata"]
    pod = {
        "metadata": {
            "name": "p",
            "namespace": NS,
            "resourceVersion": "7",
            "labels": {"app": "web"},
            "annotations": {"big": "x" * 5000},
        },
        "spec": {"containers": [{"name": "app", "image": "web:v1", "env": [{"name": "A", "value": "1"}]}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t", "lastProbeTime": None}],
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 2, "state": {"running": {}}, "imageID": "sha256:..."}
            ],
        },
    }
    kept = trim(PODS, pod)
    assert "spec" not in kept and "annotations" not in kept["metadata"]
    assert kept["status"]["containerStatuses"] == [
        {"name": "app", "ready": True, "restartCount": 2, "state": {"running": {}}}
    ]
    assert kept["status"]["conditions"] == [{"type": "Ready", "status": "True", "lastTransitionTime": "t"}]


# ---------------------------------------------------------------------------- CachedKube


def cached(kube: FakeKube, namespace: str | None = None) -> tuple[Cache, CachedKube]:
    cache = Cache(namespace)
    for res, store in cache.stores.items():
        store.replace_all(kube.find(res))
    return cache, CachedKube(kube, cache)


def test_reads_come_from_the_store_and_writes_go_through_to_it() -> None:
    f = Fixture()
    f.given_deployment(strategy="canary", steps="50,100")
    f.cluster()
    cache, reads = cached(f.kube)
    f.kube.calls.clear()
    deployment = reads.get(DEPLOYMENTS, NS, NAME)
    assert reads.items(REPLICASETS, NS, f"app={NAME}")
    assert f.kube.calls == []  # nothing asked of the API server
    patched = reads.patch(DEPLOYMENTS, NS, NAME, {"metadata": {"annotations": {"deliver.dev/x": "1"}}})
    assert reads.get(DEPLOYMENTS, NS, NAME)["metadata"]["annotations"]["deliver.dev/x"] == "1"
    assert patched["metadata"]["resourceVersion"] != deployment["metadata"]["resourceVersion"]
    with pytest.raises(NotFound):
        reads.get(DEPLOYMENTS, NS, "missing")


def test_a_conflict_refreshes_the_object_so_the_next_plan_reads_the_new_one() -> None:
    f = Fixture()
    f.given_deployment(strategy="canary", steps="50,100")
    cache, reads = cached(f.kube)
    stale = reads.get(DEPLOYMENTS, NS, NAME)
    f.kube.patch(DEPLOYMENTS, NS, NAME, {"metadata": {"labels": {"changed": "by-someone"}}})  # the store misses it
    with pytest.raises(Conflict):
        reads.patch(
            DEPLOYMENTS,
            NS,
            NAME,
            {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"], "labels": {"x": "y"}}},
        )
    assert reads.get(DEPLOYMENTS, NS, NAME)["metadata"]["labels"]["changed"] == "by-someone"


def test_reads_go_to_the_api_server_until_the_store_has_listed_and_outside_its_namespace() -> None:
    f = Fixture()
    f.given_deployment(strategy="canary", steps="50,100")
    cache = Cache(namespace=NS)
    reads = CachedKube(f.kube, cache)
    assert reads.get(DEPLOYMENTS, NS, NAME)["metadata"]["name"] == NAME  # not listed yet: the API
    assert ("get", "deployments") in f.kube.calls
    cache.stores[SERVICES].replace_all([])
    f.kube.calls.clear()
    assert reads.items(SERVICES, NS) == []
    reads.items(SERVICES, "other-namespace")
    assert f.kube.calls == [("list", "services")]


# ---------------------------------------------------------------------------- paged relists


def test_a_relist_comes_in_pages_and_fills_the_store() -> None:
    kube = FakeKube(namespace=NS)
    for i in range(7):
        kube.put(REPLICASETS, rs(f"rs-{i}", 0, app="web"))
    seen: list[str] = []
    store = Store(REPLICASETS)
    informer = Informer(
        kube, REPLICASETS, None, lambda t, o: seen.append(o["metadata"]["name"]), threading.Event(), store, page=3
    )
    informer.relist()
    assert kube.pages == [("replicasets", 3), ("replicasets", 3), ("replicasets", 1)]
    assert len(store) == 7 and sorted(seen) == [f"rs-{i}" for i in range(7)]


# ---------------------------------------------------------------------------- the engine on the cache


def outcome(f: Fixture) -> tuple[str, str, dict[str, int], list[str]]:
    f.when_settled()
    return f.record().get("phase", ""), f.image(), f.serving(), f.reasons()


SCENARIOS = {
    "canary": ({"strategy": "canary", "steps": "20,50,100", "interval": "30s"}, False),
    "canary crash-looping": ({"strategy": "canary", "steps": "20,50,100", "interval": "30s"}, True),
    "blue-green": ({"strategy": "blue-green", "interval": "30s"}, False),
    "blue-green crash-looping": ({"strategy": "blue-green", "interval": "30s"}, True),
    "rolling": ({"strategy": "rolling", "pause_at": "50", "interval": "30s"}, False),
    "recreate crash-looping": ({"strategy": "recreate", "interval": "30s"}, True),
}


@pytest.mark.parametrize("lag", [0, 1, 3])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_strategy_ends_where_it_ends_without_the_cache(scenario: str, lag: int) -> None:
    """The same delivery, read from the API (no cache) and from a cache whose watch is ``lag``
    events behind at every pass: the same phase, template, pods and Events at the end."""
    annotations, crash = SCENARIOS[scenario]
    ends = []
    for cache_lag in (None, lag):
        f = Fixture(cache_lag=cache_lag)
        f.given_deployment(image="web:v1", replicas=4, **annotations)
        if annotations["strategy"] == "recreate":
            d = f.kube.obj(DEPLOYMENTS, NAME)
            d["spec"]["strategy"] = {"type": "Recreate"}
            f.kube.put(DEPLOYMENTS, d)
        f.given_delivered()
        if crash:
            f.crashing.add("web:v2")
        f.when_template_changes("web:v2")
        ends.append(outcome(f))
    assert ends[1][:3] == ends[0][:3]
    assert sorted(set(ends[1][3])) == sorted(set(ends[0][3]))


def test_a_pass_on_a_caught_up_cache_asks_the_api_server_for_nothing_but_writes() -> None:
    f = Fixture(cache_lag=0)
    f.given_deployment(strategy="canary", steps="20,50,100", interval="30s")
    f.given_delivered()
    f.when_template_changes("web:v2")
    f.when_reconciled()  # lists into the cache, starts the delivery
    f.cluster()
    f.kube.calls.clear()
    f.when_reconciled()
    reads = [c for c in f.kube.calls if c[0] in ("get", "list")]
    assert reads == [], reads


def at_rest_canary() -> Fixture:
    f = Fixture()
    f.given_deployment(strategy="canary", steps="50,100", interval="30s")
    f.given_delivered()
    return f


@contextmanager
def running_controller(f: Fixture) -> Iterator[tuple[Controller, Cache]]:
    """The controller with its cache and informers running on the fake API (workers not started)."""
    cache = Cache()
    controller = Controller(f.kube, Reconciler(CachedKube(f.kube, cache), clock=lambda: f.now), cache=cache)
    controller.start()
    try:
        yield controller, cache
    finally:
        controller.stop.set()


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return bool(predicate())


def image_in_store(cache: Cache) -> str | None:
    got = cache.stores[DEPLOYMENTS].get(NS, NAME)
    return str(got["spec"]["template"]["spec"]["containers"][0]["image"]) if got else None


def test_the_controller_keeps_its_stores_from_its_watches() -> None:
    """Controller + informers on the fake API: the stores follow the fake, the pass reads them."""
    f = at_rest_canary()
    with running_controller(f) as (_, cache):
        wait_until(lambda: all(s.synced.is_set() for s in cache.stores.values()))
        assert cache.size()["deployments"] == 1 and cache.size()["pods"] == 3
        f.when_template_changes("web:v2")
        wait_until(lambda: image_in_store(cache) == "web:v2")
        assert image_in_store(cache) == "web:v2"


def test_a_pod_change_starts_a_pass_of_its_deployment() -> None:
    """A crash-looping canary is seen at the pod's change, not at the next timer: the pod informer
    finds the Deployment through the pod's ReplicaSet in the cache."""
    f = at_rest_canary()
    with running_controller(f) as (controller, cache):
        assert wait_until(lambda: all(s.synced.is_set() for s in cache.stores.values()))
        assert controller.queue.get(timeout=2) == (NS, NAME)  # the Deployment's own listing
        controller.queue.done((NS, NAME))
        assert controller.queue.get(timeout=0.3) is None
        pod = f.kube.find(PODS, NS)[0]
        f.kube.update_status(PODS, pod["metadata"]["name"], dict(pod["status"], phase="Failed"), namespace=NS)
        assert controller.queue.get(timeout=2) == (NS, NAME)


def test_a_refused_pod_watch_leaves_the_controller_ready_and_its_reads_on_the_api_server() -> None:
    """An RBAC from before the cache (pods: list only) refuses the pod informer: the controller is
    still ready, and pod reads go to the API server as they did before."""
    f = at_rest_canary()
    refused = [Forbidden("pods is forbidden: cannot list pods", status=403) for _ in range(50)]
    f.kube.fail_next(*refused, verb="list", resource=PODS)
    with running_controller(f) as (controller, cache):
        assert wait_until(lambda: controller.synced)
        assert not cache.stores[PODS].synced.is_set()
        f.kube.calls.clear()
        f.kube._failures.clear()  # the test reads pods itself now
        assert CachedKube(f.kube, cache).items(PODS, NS, "app=web")
        assert ("list", "pods") in f.kube.calls


def test_a_late_update_does_not_bring_back_a_deleted_object() -> None:
    """Found by the explorer's review: after this process deleted an object (or its DELETED event
    came), a late update from before the deletion put it back in the store."""
    store = Store(REPLICASETS)
    store.replace_all([rs("a", 10, app="web"), rs("b", 10, app="web")])
    store.forget(NS, "a")  # CachedKube.delete
    store.apply("MODIFIED", rs("a", 10, app="web"))  # the watch, behind: same version as deleted
    store.apply("DELETED", rs("b", 12, app="web"))
    store.apply("MODIFIED", rs("b", 11, app="web"))  # from before the deletion
    assert store.get(NS, "a") is None and store.get(NS, "b") is None
    store.apply("ADDED", rs("b", 20, app="web"))  # created again, later
    assert store.get(NS, "b") is not None


def test_changing_a_write_s_answer_does_not_change_the_store() -> None:
    f = Fixture()
    f.given_deployment(strategy="canary", steps="50,100")
    cache, reads = cached(f.kube)
    answer = reads.patch(DEPLOYMENTS, NS, NAME, {"metadata": {"labels": {"x": "1"}}})
    answer["spec"]["replicas"] = 99  # e.g. act.py keeping the answer as its Deployment and changing it
    assert reads.get(DEPLOYMENTS, NS, NAME)["spec"]["replicas"] == 3


def test_a_relist_older_than_a_write_does_not_roll_the_store_back() -> None:
    # A write's answer (rv 105) is in the store; a relist whose snapshot was taken before it (rv 100)
    # arrives afterwards: the object stays at 105.
    store = Store(REPLICASETS)
    store.replace_all([rs("a", 90, app="web"), rs("gone", 91, app="web")])
    store.apply("WRITE", rs("a", 105, app="web", step="2"))
    store.forget(NS, "gone")  # deleted by this process after the list's snapshot
    store.replace_all([rs("a", 100, app="web", step="1"), rs("gone", 91, app="web")])
    assert store.get(NS, "a")["metadata"]["labels"] == {"app": "web", "step": "2"}
    assert store.get(NS, "gone") is None
    # An object created by a write after the snapshot is not dropped for missing from the list.
    store.apply("WRITE", rs("new", 106, app="web"))
    store.replace_trimmed([trim(REPLICASETS, rs("a", 100, app="web", step="1"))], list_rv="100")
    assert store.get(NS, "new") is not None and store.get(NS, "a")["metadata"]["labels"]["step"] == "2"
    # A newer list wins as before: what it lacks was deleted, what it has is newer.
    store.replace_all([rs("a", 110, app="web", step="3")])
    assert [o["metadata"]["name"] for o in store.items(NS)] == ["a"]
    assert store.get(NS, "a")["metadata"]["labels"]["step"] == "3"


def test_a_replicaset_scale_on_stale_data_is_refused_and_refreshes_the_store() -> None:
    # The store's copy of deliver's ReplicaSet is older than the server's (someone scaled it to 5
    # meanwhile; ReplicaSet events lag). Scaling it from the stale copy must not overwrite the
    # server's 5 blindly: the write carries the resourceVersion it was planned on, is refused as a
    # Conflict, and the store holds the server's object for the next plan.
    from delivery import spec as specmod
    from delivery.engine import act
    from delivery.engine.state import read_state
    from delivery.routing.base import RouterContext, router_for
    from strategies.actions import ScaleNew
    from strategies.record import Phase

    f = Fixture()
    f.given_deployment(strategy="canary", steps="50,100", replicas=10)
    f.given_delivered()
    f.when_template_changes("web:v2")
    f.when_reconciled()
    [mine] = f.delivers_replicasets()
    cache, reads = cached(f.kube)
    name = mine["metadata"]["name"]
    f.kube.patch(REPLICASETS, NS, name, {"spec": {"replicas": 5}})  # the store misses it
    d = reads.get(DEPLOYMENTS, NS, NAME)
    spec = specmod.parse(d, lambda _: {})
    state = read_state(d)
    assert state.phase is Phase.PROGRESSING
    router = router_for(spec.router.kind, RouterContext(reads, NS, NAME, spec.router.name, "", ""))
    ctx = act.Context(reads, d, spec, state, router, lambda a: None)
    with pytest.raises(Conflict):
        act.execute(ctx, ScaleNew(6))
    assert f.kube.get(REPLICASETS, NS, name)["spec"]["replicas"] == 5
    assert reads.get(REPLICASETS, NS, name)["spec"]["replicas"] == 5
