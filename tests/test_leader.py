"""Lease leader election (fake API, fake clock) and the metrics / health endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from delivery.engine.controller import Controller
from delivery.engine.leader import Fenced, LeaderElector, ServerClock
from delivery.engine.reconcile import Outcome, Reconciler
from delivery.errors import DeliverError, KubeError, LeadershipLost
from delivery.integrations.metrics import Metrics, Server, parse_addr
from delivery.kube.client import LEASES
from delivery.settings import Leadership, Settings
from tests.fakekube import FakeKube
from tests.fixture import NAME, NS, Fixture


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


DURATIONS = Settings(leadership=Leadership(lease_duration=15, renew_deadline=10, retry_period=2))


def elector(kube: FakeKube, clock: Clock, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(
        kube,
        "ns",
        "deliver",
        identity,
        settings=DURATIONS,
        clock=clock,
        wall=lambda: 1.7e9 + clock.t,
        **kw,
    )


def holder(kube: FakeKube) -> str:
    return kube.objects[("leases", "ns", "deliver")]["spec"]["holderIdentity"]


def test_first_candidate_creates_the_lease_and_leads() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.step()
    b.step()
    assert a.is_leader() and not b.is_leader()
    assert holder(kube) == "a"
    spec = kube.objects[("leases", "ns", "deliver")]["spec"]
    assert spec["leaseDurationSeconds"] == 15 and spec["renewTime"].endswith("Z")


def test_follower_takes_over_only_after_the_lease_expires_on_its_own_clock() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.step()
    b.step()  # b observes a's record at t=1000
    # a dies (no more renewals)
    clock.t += 14
    b.step()
    assert not b.is_leader()
    clock.t += 2
    b.step()
    assert b.is_leader() and holder(kube) == "b"
    assert kube.objects[("leases", "ns", "deliver")]["spec"]["leaseTransitions"] == 1


def test_renewals_keep_the_follower_out() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    for _ in range(20):
        a.step()
        b.step()
        clock.t += 2
    assert a.is_leader() and not b.is_leader() and holder(kube) == "a"


def test_leader_stops_acting_when_it_cannot_renew_before_anyone_else_may_lead() -> None:
    kube, clock = FakeKube(), Clock()
    changes: list[bool] = []
    a = elector(kube, clock, "a", on_change=changes.append)
    a.step()
    assert a.is_leader()
    kube.fail_next = [KubeError("unreachable")] * 100
    clock.t += 9
    assert a.is_leader()
    clock.t += 1.5
    assert not a.is_leader()  # renew deadline passed: no more writes, even before the loop notices
    a.step()
    assert changes == [True, False]


def test_release_hands_over_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.step()
    b.step()
    a.step_down()
    assert not a.is_leader()
    assert a.release()
    assert holder(kube) == ""
    b.step()  # no need to wait out the lease
    assert b.is_leader()


def test_conflicting_writes_never_make_two_leaders() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.step()
    a.step_down()
    a.release()
    # both read the released lease, then both try to write: only one wins
    lease = kube.get(LEASES, "ns", "deliver")
    real_get = kube.get
    kube.get = lambda *args: dict(lease)  # type: ignore[method-assign]
    results = [b.try_acquire_or_renew(), elector(kube, clock, "c").try_acquire_or_renew()]
    kube.get = real_get  # type: ignore[method-assign]
    assert sorted(results) == ["failed", "leader"]


def test_durations_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        LeaderElector(FakeKube(), "ns", "x", "a", Settings(leadership=Leadership(5, 10, 2)))


# ---------------------------------------------------------------- metrics


def test_metrics_exposition() -> None:
    leader = {"v": True}
    m = Metrics(is_leader=lambda: leader["v"], watch_restarts=lambda: 3, synced=lambda: True)
    m.observe(("ns", "web"), Outcome(2.0, "Progressing", 1, 50, ["pass"]), 0.03)
    m.observe(("ns", "api"), Outcome(None, "Succeeded", 3, 100), 0.2)
    m.observe(("ns", "bad"), Outcome(None, "Invalid"), 0.001)
    m.observe(("ns", "err"), Outcome(5.0), 0.5)  # failed pass: counted, no delivery entry
    text = m.exposition().decode()
    assert 'deliver_deliveries{phase="Progressing"} 1.0' in text
    assert 'deliver_deliveries{phase="Succeeded"} 1.0' in text
    assert 'deliver_deliveries{phase="Invalid"} 1.0' in text
    assert 'deliver_deliveries{phase="Aborted"} 0.0' in text
    assert 'deliver_delivery_step{deployment="web",namespace="ns"} 2.0' in text
    assert 'deliver_delivery_weight_percent{deployment="web",namespace="ns"} 50.0' in text
    assert 'deliver_delivery_phase{deployment="api",namespace="ns",phase="Succeeded"} 1.0' in text
    assert 'deliver_verdicts_total{deployment="web",namespace="ns",outcome="pass"} 1.0' in text
    assert "deliver_reconcile_duration_seconds_count 4.0" in text
    assert "deliver_reconcile_errors_total 1.0" in text
    assert "deliver_watch_restarts_total 3.0" in text
    assert "deliver_is_leader 1.0" in text
    m.observe(("ns", "web"), Outcome(None), 0.01)  # deleted / unmanaged
    leader["v"] = False
    text = m.exposition().decode()
    # the per-delivery series no longer name web (the verdicts counter keeps its history)
    assert delivery_series(text, "web") == []
    assert delivery_series(text, "api") != []  # the check sees the series it looks for
    assert "deliver_is_leader 0.0" in text
    m.forget_all()  # leadership lost: this replica reports no delivery
    assert delivery_series(m.exposition().decode(), "api") == []


def delivery_series(text: str, deployment: str) -> list[str]:
    """The samples of the per-delivery gauges (deliver_delivery_*) that name ``deployment``."""
    return [
        sample.name
        for family in text_string_to_metric_families(text)
        if family.name.startswith("deliver_delivery_")
        for sample in family.samples
        if sample.labels.get("deployment") == deployment
    ]


def test_http_endpoints() -> None:
    synced = {"v": False}
    server = Server(Metrics(synced=lambda: synced["v"]), "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/readyz")
        assert err.value.code == 503
        synced["v"] = True
        assert urllib.request.urlopen(base + "/readyz").status == 200
        body = urllib.request.urlopen(base + "/metrics").read().decode()
        assert "deliver_is_leader" in body and "deliver_reconcile_duration_seconds_bucket" in body
    finally:
        server.stop()


@pytest.mark.parametrize(
    "text, want",
    [
        (":8080", ("", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9090", ("::1", 9090)),
        ("9090", ("", 9090)),
        ("0", None),
        ("", None),
    ],
)
def test_parse_addr(text: str, want: Any) -> None:
    assert parse_addr(text) == want


def test_parse_addr_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_addr("host:port")


def test_release_without_holding_does_nothing() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.step()
    b.step()
    assert not b.release()
    assert holder(kube) == "a"


def test_release_after_stepping_down_mid_acquire() -> None:
    kube, clock = FakeKube(), Clock()
    a = elector(kube, clock, "a")
    a.step_down()  # SIGTERM arrived while the first acquire was in flight
    a.step()
    assert not a.is_leader() and holder(kube) == "a"
    assert a.release() and holder(kube) == ""


# ---------------------------------------------------------------- issue 10 defect 15: fencing


def fenced_canary_mid_change() -> tuple[Fixture, LeaderElector, Clock, Controller]:
    """A canary whose template just changed (a reconcile with several writes ahead), on a leader's fenced Kube."""
    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3, steps="20,50,100", interval="30s")
    f.given_delivered()
    f.when_template_changes("web:v2")
    clock = Clock()
    a = LeaderElector(f.kube, NS, "deliver", "a", DURATIONS, clock=clock, wall=lambda: 1.7e9 + clock.t)
    a.step()
    assert a.is_leader()
    f.kube.writes.clear()
    reconciler = Reconciler(Fenced(f.kube, a.is_leader), analyser=None, clock=lambda: f.now)
    return f, a, clock, Controller(f.kube, reconciler, NS, is_leader=a.is_leader)


def test_a_reconcile_stops_writing_once_the_lease_is_not_renewed() -> None:
    f, a, clock, controller = fenced_canary_mid_change()

    def renew_stalls(_kube: FakeKube) -> None:
        clock.t += 11  # past the renew deadline while the first write is on its way

    f.kube.before_write(renew_stalls)
    controller.process((NS, NAME))
    assert not a.is_leader()
    assert len(f.kube.writes) == 1, [(w.verb, w.plural) for w in f.kube.writes]
    assert controller.queue._due, "requeued for whoever leads next"


def test_a_fenced_reconcile_writes_as_usual_while_leading() -> None:
    f, a, _clock, controller = fenced_canary_mid_change()
    controller.process((NS, NAME))
    assert len(f.kube.writes) > 1 and f.record()["phase"] == "Progressing"


def test_fenced_writes_raise_leadership_lost_and_reads_pass() -> None:
    kube = FakeKube()
    kube.put(LEASES, {"metadata": {"name": "x", "namespace": "ns"}, "spec": {}})
    fenced = Fenced(kube, lambda: False)
    assert fenced.get(LEASES, "ns", "x")["metadata"]["name"] == "x"
    assert fenced.items(LEASES, "ns") and fenced.list(LEASES, "ns")["items"]
    for write in (
        lambda: fenced.patch(LEASES, "ns", "x", {"spec": {"holderIdentity": "me"}}),
        lambda: fenced.create(LEASES, "ns", {"metadata": {"name": "y"}}),
        lambda: fenced.replace(LEASES, "ns", "x", {"metadata": {"name": "x"}}),
        lambda: fenced.delete(LEASES, "ns", "x"),
        lambda: fenced.request("POST", "/api/v1/namespaces/ns/events", {}),
    ):
        with pytest.raises(LeadershipLost):
            write()
    assert kube.writes == [] and isinstance(LeadershipLost("x"), DeliverError)


# ---------------------------------------------------------------- issue 10 defect 16: one clock across replicas


class StampingKube(FakeKube):
    """The fake API, stamping managedFields time with the API server's clock as a real one does."""

    def __init__(self, server_time: Callable[[], float]) -> None:
        super().__init__()
        self.server_time = server_time

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(int(self.server_time()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj["metadata"]["managedFields"] = [{"manager": "deliver", "operation": "Update", "time": stamp}]
        return obj

    def create(self, res: Any, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        return self._stamp(super().create(res, namespace, body))

    def replace(self, res: Any, namespace: str | None, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._stamp(super().replace(res, namespace, name, body))


def test_step_times_come_from_the_api_server_whatever_the_replicas_clocks() -> None:
    """Replica a runs 200 s behind the API server, replica b 300 s ahead; a leads, then b takes over.
    The time each reconciler would record and compare is the server's (to a second) on both."""
    server = {"t": 1.7e9}
    kube = StampingKube(lambda: server["t"])
    mono = Clock()
    clocks = {"a": ServerClock(lambda: server["t"] - 200), "b": ServerClock(lambda: server["t"] + 300)}
    electors = {
        n: LeaderElector(kube, "ns", "deliver", n, DURATIONS, clock=mono, wall=clocks[n].wall, server_clock=clocks[n])
        for n in "ab"
    }
    electors["a"].step()
    assert electors["a"].is_leader() and abs(clocks["a"]() - server["t"]) <= 1
    started = clocks["a"]()  # a starts a step
    electors["a"].step_down()
    assert electors["a"].release()
    server["t"] += 5
    mono.t += 5
    electors["b"].step()
    assert electors["b"].is_leader()
    elapsed = clocks["b"]() - started  # b judges the step's age after the failover
    assert 4 <= elapsed <= 6, elapsed


def test_server_clock_without_a_stamp_is_the_local_clock() -> None:
    c = ServerClock(lambda: 100.0)
    c.observe({"metadata": {}})
    c.observe({"metadata": {"managedFields": [{"time": "not a time"}]}})
    assert c() == 100.0 and not c.anchored
