"""deliver check-install (delivery/cli/installcheck.py): the chart's `helm test`, against the fake API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from delivery import cli
from delivery.cli.context import Globals
from delivery.cli.installcheck import deployments_finding, leader_finding
from delivery.errors import Forbidden
from delivery.kube.client import DEPLOYMENTS, LEASES, PODS
from tests.fakekube import FakeKube

SELECTOR = "app.kubernetes.io/name=deliver,app.kubernetes.io/instance=rel,app.kubernetes.io/component=controller"
LABELS = dict(kv.split("=") for kv in SELECTOR.split(","))


def lease(kube: FakeKube, holder: str, renew: str = "2026-12-08T04:00:00.000000Z", duration: int = 15) -> None:
    kube.put(
        LEASES,
        {
            "metadata": {"name": "deliver-controller", "namespace": "ds"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": renew},
        },
    )


def pod(kube: FakeKube, name: str, phase: str = "Running", labels: dict[str, str] | None = None) -> None:
    meta = {"name": name, "namespace": "ds", "labels": labels or LABELS}
    kube.put(PODS, {"metadata": meta, "status": {"phase": phase}})


class Clock:
    """A fake clock; each sleep may run what the controller does meanwhile."""

    def __init__(self, meanwhile: Callable[[int], None] = lambda _n: None) -> None:
        self.t = 0.0
        self.sleeps = 0
        self.meanwhile = meanwhile

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.sleeps += 1
        self.meanwhile(self.sleeps)


def renewing(kube: FakeKube, holder: str, after: int = 2) -> Clock:
    def renew(n: int) -> None:
        if n == after:
            lease(kube, holder, renew=f"2026-12-08T04:00:{n:02d}.000000Z")

    return Clock(renew)


def test_a_held_and_renewed_lease_of_a_release_pod_is_leading() -> None:
    kube = FakeKube(namespace="ds")
    pod(kube, "rel-deliver-7d9f-abcde")
    lease(kube, "rel-deliver-7d9f-abcde_1a2b3c4d")
    clock = renewing(kube, "rel-deliver-7d9f-abcde_1a2b3c4d")
    found = leader_finding(kube, "ds", "deliver-controller", SELECTOR, clock.sleep, clock)
    assert found.ok, found.message
    assert found.message == "Lease ds/deliver-controller is held and renewed by rel-deliver-7d9f-abcde_1a2b3c4d"
    assert clock.sleeps == 2


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (lambda k: None, "no Lease ds/deliver-controller: no replica has been elected"),
        (lambda k: lease(k, ""), "has no holder: no replica leads"),
        (lambda k: lease(k, "laptop_1a2b3c4d"), "held by laptop_1a2b3c4d, not by a pod of " + SELECTOR + " (none)"),
        (
            lambda k: (pod(k, "other-pod", labels={"app": "x"}), lease(k, "other-pod_1a2b3c4d")),
            "not by a pod of",
        ),
        (
            lambda k: (pod(k, "rel-deliver-1-a", phase="Pending"), lease(k, "rel-deliver-1-a_00")),
            "whose pod is Pending, not Running",
        ),
        (
            lambda k: (pod(k, "rel-deliver-1-a"), lease(k, "rel-deliver-1-a_00")),
            "did not renew it within 15s",  # nobody renews: the holder is gone or stuck
        ),
    ],
)
def test_no_leader_is_said_plainly(setup: Callable[[FakeKube], Any], says: str) -> None:
    kube = FakeKube(namespace="ds")
    setup(kube)
    clock = Clock()
    found = leader_finding(kube, "ds", "deliver-controller", SELECTOR, clock.sleep, clock)
    assert not found.ok and says in found.message, found.message
    assert clock.t <= 17  # bounded by the Lease's duration


def test_leadership_moving_during_the_check_fails_it() -> None:
    kube = FakeKube(namespace="ds")
    pod(kube, "rel-deliver-1-a")
    lease(kube, "rel-deliver-1-a_00")
    clock = Clock(lambda n: lease(kube, "rel-deliver-1-b_11") if n == 1 else None)
    found = leader_finding(kube, "ds", "deliver-controller", SELECTOR, clock.sleep, clock)
    assert not found.ok and "moved from rel-deliver-1-a_00 to rel-deliver-1-b_11" in found.message


def test_without_a_selector_only_the_lease_is_checked() -> None:
    kube = FakeKube(namespace="ds")
    lease(kube, "somewhere_00")
    clock = renewing(kube, "somewhere_00", after=1)
    assert leader_finding(kube, "ds", "deliver-controller", None, clock.sleep, clock).ok
    assert ("list", "pods") not in kube.calls


def test_listing_deployments_asks_for_one_item_and_says_where() -> None:
    kube = FakeKube(namespace="ds")
    assert deployments_finding(kube, None).message == "may list Deployments in all namespaces"
    assert deployments_finding(kube, "apps").ok
    kube.fail_next(Forbidden("deployments.apps is forbidden"), verb="list", resource=DEPLOYMENTS)
    found = deployments_finding(kube, "apps")
    assert not found.ok and found.message.startswith("may not list Deployments in namespace apps: ")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    kube = FakeKube(namespace="ds")
    monkeypatch.setattr(Globals, "kube", lambda self: kube)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    renewals = iter(range(1_000))  # the leader renews during each second the check waits

    def renew(_seconds: float) -> None:
        lease(kube, "rel-deliver-1-a_00", renew=f"2026-12-08T05:00:00.{next(renewals):06d}Z")

    monkeypatch.setattr("delivery.cli.installcheck.time.sleep", renew)
    return kube


def test_the_verb_as_the_chart_runs_it(fake: FakeKube) -> None:
    pod(fake, "rel-deliver-1-a")
    lease(fake, "rel-deliver-1-a_00")
    args = ["check-install", "--all-namespaces", "--lease-name=deliver-controller", "--lease-namespace=ds"]
    result = CliRunner().invoke(cli.main, [*args, f"--pods={SELECTOR}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "ok   leader: Lease ds/deliver-controller is held and renewed by rel-deliver-1-a_00",
        "ok   deployments: may list Deployments in all namespaces",
    ]
    as_json = CliRunner().invoke(cli.main, ["-o", "json", *args], catch_exceptions=False)
    assert [f["check"] for f in json.loads(as_json.output)] == ["leader", "deployments"]


def test_the_verb_fails_with_exit_1_and_skips_the_lease_with_no_leader(fake: FakeKube) -> None:
    result = CliRunner().invoke(cli.main, ["check-install", "-n", "ds"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "FAIL leader: no Lease ds/deliver-controller" in result.output
    assert "ok   deployments: may list Deployments in namespace ds" in result.output
    result = CliRunner().invoke(cli.main, ["check-install", "-n", "ds", "--no-leader"], catch_exceptions=False)
    assert result.exit_code == 0 and "leader" not in result.output
