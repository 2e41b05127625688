"""Exact canary replica shares (``deliver.dev/canary-scale``, issue 12 item 1): the pure share
planner, then whole deliveries against the one fake API (the Deployment controller played by the
fixture scales its one active ReplicaSet back to spec.replicas, paused or not, as the real one does)."""

from __future__ import annotations

from typing import Any

import pytest

from delivery import templates
from delivery.cli.lint import lint_documents
from delivery.kube.client import DEPLOYMENTS, PDBS, PODS, REPLICASETS
from strategies import plan
from strategies.actions import HoldStable, ReleaseStable
from strategies.canary import canary_pods, min_available, stable_pods
from strategies.observation import Disruption
from strategies.spec import Strategy
from tests.fixture import NAME, NS, Fixture

from .planning import NEW, STABLE, canary_spec, obs, started, version

V1, V2 = "web:v1", "web:v2"

# ------------------------------------------------------------------ the pure share planner


@pytest.mark.parametrize(
    ("total", "shares"),
    [
        (1, {20: 1, 50: 1, 100: 1}),  # one pod of each below 100 %: the nearest share there is
        (3, {20: 1, 50: 1, 100: 3}),  # 1.5 is a tie: the fewer canary pods
        (5, {20: 1, 50: 2, 100: 5}),
        (10, {20: 2, 50: 5, 100: 10}),
    ],
)
def test_exact_canary_pods_are_the_nearest_share_of_the_total(total: int, shares: dict[int, int]) -> None:
    assert {w: canary_pods(total, w, "exact") for w in shares} == shares


def test_surge_keeps_todays_ceil_share_beside_all_stable_pods() -> None:
    assert [canary_pods(5, w, "surge") for w in (20, 50, 100)] == [1, 3, 5]
    assert canary_pods(0, 50, "exact") == canary_pods(0, 50, "surge") == 0


@pytest.mark.parametrize(
    ("disruption", "floor"),
    [
        (Disruption(), 8),  # maxUnavailable 25 % of 10, rounded down
        (Disruption(max_unavailable="0"), 10),
        (Disruption(max_unavailable="0", max_surge="0"), 9),  # both 0: the controller allows 1
        (Disruption(strategy="Recreate"), 10),
        (Disruption(pdb_min_available="100%"), 10),
        (Disruption(pdb_min_available="9"), 9),
        (Disruption(pdb_max_unavailable="15%"), 8),  # 1.5 rounded up: 2 may go
        (Disruption(unknown=True), 10),  # PDBs unreadable: assume none may go
    ],
)
def test_min_available_follows_max_unavailable_and_the_pdb(disruption: Disruption, floor: int) -> None:
    assert min_available(10, disruption) == floor


def test_stable_goes_down_only_as_far_as_availability_allows_and_back_up_when_canary_pods_fail() -> None:
    strict = Disruption(max_unavailable="0")
    # 2 canary pods not Ready yet: the stable keeps all 10
    assert stable_pods(10, 2, version(STABLE, 10), version(NEW, 2, ready=0, owned=False), strict) == 10
    # one Ready: one stable pod may go
    assert stable_pods(10, 2, version(STABLE, 10), version(NEW, 2, ready=1, owned=False), strict) == 9
    assert stable_pods(10, 2, version(STABLE, 10), version(NEW, 2, owned=False), strict) == 8
    # a canary pod stops being Ready: the stable is scaled back up to cover it
    assert stable_pods(10, 2, version(STABLE, 8), version(NEW, 2, ready=1, owned=False), strict) == 9
    # the default 25 %: two may be unavailable meanwhile
    assert stable_pods(10, 2, version(STABLE, 10), version(NEW, 2, ready=0, owned=False), Disruption()) == 8
    # an HPA grew the total to 20 mid-step: the stable follows at once
    assert stable_pods(20, 4, version(STABLE, 8), version(NEW, 2, owned=False), strict) == 18


def test_exact_step_holds_the_stable_replicaset_and_surge_does_not() -> None:
    s = started(Strategy.CANARY)
    o = obs(version(STABLE, 10), version(NEW, 2, owned=False), replicas=10, now=1001)
    exact = plan(canary_spec(), s, o)
    assert HoldStable(8) in exact.actions
    surge = plan(canary_spec(canary_scale="surge"), s, o)
    assert not any(isinstance(a, HoldStable | ReleaseStable) for a in surge.actions)


def test_a_rollback_releases_the_stable_first_and_keeps_the_canary_until_the_stable_is_back() -> None:
    s = started(Strategy.CANARY)
    held = version(STABLE, 8)
    held = type(held)(**{**held.__dict__, "held": True})
    crashing = version(NEW, 2, ready=0, owned=False, crashloop=2, restarts=5)
    p = plan(canary_spec(), s, obs(held, crashing, replicas=10, now=1001))
    kinds = [type(a).__name__ for a in p.actions]
    assert kinds[0] == "ReleaseStable", kinds
    assert "DeleteNew" not in kinds, "the canary's pods stay until the stable version is back"
    back = plan(canary_spec(), p.state, obs(version(STABLE, 10), crashing, replicas=10, now=1010))
    assert "DeleteNew" in [type(a).__name__ for a in back.actions]


# ------------------------------------------------------------------ whole deliveries on the fake API


def canary(replicas: int, **annotations: str) -> Fixture:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=replicas, **{"steps": "20,50,100", "interval": "30s", **annotations})
    f.given_delivered()
    return f


def shares(f: Fixture) -> tuple[int, int]:
    serving = f.serving()
    return serving.get(V2, 0), serving.get(V1, 0)


def ready_pods(f: Fixture) -> int:
    return sum(
        1
        for p in f.kube.find(PODS, NS)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    )


def held(f: Fixture) -> list[dict[str, Any]]:
    return f.kube.find(REPLICASETS, NS, f"{templates.HELD_LABEL}={NAME}")


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [(1, [(1, 1), (1, 0)]), (3, [(1, 2), (3, 0)]), (5, [(1, 4), (2, 3), (5, 0)]), (10, [(2, 8), (5, 5), (10, 0)])],
)
def test_an_exact_canary_runs_each_step_at_its_share_of_the_total(replicas: int, expected: list[Any]) -> None:
    f = canary(replicas)
    f.when_template_changes(V2)
    seen: list[tuple[int, int]] = []

    def note(f: Fixture) -> bool:
        if f.record().get("weight") in (20, 50) and not seen[-1:] == [shares(f)]:
            seen.append(shares(f))
        return False

    f.when_settled(until=note)
    assert f.record()["phase"] == "Succeeded"
    seen.append(shares(f))
    assert [s for s in expected if s in seen] == expected, seen
    assert held(f) == [], "the stable ReplicaSet was handed back"


def test_the_held_stable_replicaset_is_out_of_the_deployment_controllers_hands_and_back_at_rest() -> None:
    f = canary(10)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("weight") == 20 and shares(f) == (2, 8))
    [rs] = held(f)
    assert not any(r.get("controller") for r in rs["metadata"]["ownerReferences"]), "not the controller's"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == f.deployment()["metadata"]["uid"], "still GC'd with it"
    assert "app" not in rs["metadata"]["labels"], "the Deployment's selector does not match it"
    f.cluster()
    f.cluster()
    assert shares(f) == (2, 8), "the paused Deployment controller does not scale it back to 10"
    f.when_settled()
    [adopted] = f.replicasets(V1)
    assert (
        adopted["metadata"]["labels"].get("app") == NAME and templates.HELD_LABEL not in adopted["metadata"]["labels"]
    )
    assert any(r.get("controller") for r in adopted["metadata"]["ownerReferences"])


def test_an_hpa_rescale_mid_step_is_followed() -> None:
    f = canary(10, steps="50,100")
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: shares(f) == (5, 5))
    d = f.kube.obj(DEPLOYMENTS, NAME, NS)
    d["spec"]["replicas"] = 4
    f.kube.put(DEPLOYMENTS, d)
    f.when_settled(until=lambda f: shares(f) == (2, 2))
    d = f.kube.obj(DEPLOYMENTS, NAME, NS)
    d["spec"]["replicas"] = 20
    f.kube.put(DEPLOYMENTS, d)
    f.when_settled(until=lambda f: shares(f) == (10, 10))
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and shares(f) == (20, 0)


def test_a_pdb_keeps_every_pod_available_while_the_stable_is_scaled_down() -> None:
    f = canary(10)
    f.kube.put(
        PDBS,
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"minAvailable": "100%", "selector": {"matchLabels": {"app": NAME}}},
        },
    )
    f.when_template_changes(V2)
    lowest: list[int] = []

    def note(f: Fixture) -> bool:
        lowest.append(ready_pods(f))
        return f.record().get("weight") == 50 and shares(f) == (5, 5)

    f.when_settled(until=note)
    assert min(lowest) >= 10, lowest


def test_surge_keeps_all_stable_pods() -> None:
    f = canary(5, canary_scale="surge")
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("weight") == 50)
    assert shares(f) == (3, 5) and held(f) == []


def test_a_rollback_brings_the_stable_back_to_full_capacity_before_the_canary_goes() -> None:
    f = canary(10, progress_deadline="60s")
    f.crashing.add(V2)
    f.when_template_changes(V2)
    order: list[tuple[int, int]] = []

    def note(f: Fixture) -> bool:
        order.append((len(f.delivers_replicasets()), f.serving().get(V1, 0)))
        return False

    f.when_settled(until=note)
    assert f.record()["phase"] == "RolledBack"
    assert min(v1 for _, v1 in order) == 8, "held at 8 (25 % of 10 may be unavailable) while the canary starts"
    gone = next(i for i, (canaries, _) in enumerate(order) if i and canaries == 0 and order[i - 1][0] == 1)
    assert order[gone - 1][1] == 10, "the canary's ReplicaSet went only once the stable was back at 10"
    assert f.serving() == {V1: 10} and held(f) == []


def test_an_invalid_canary_scale_is_no_action_a_warning_and_a_lint_problem() -> None:
    f = canary(3)
    f.when_annotated(canary_scale="half")
    f.when_template_changes(V2)
    f.when_reconciled()
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/canary-scale" in warning["message"]
    assert f.delivers_replicasets() == []
    [result] = lint_documents([f.deployment()], "web.yaml")
    assert [p["key"] for p in result["problems"]] == ["deliver.dev/canary-scale"]


class RealisticFixture(Fixture):
    """The fixture, with one more rule of the real (paused) Deployment controller: when none of its
    ReplicaSets is active it scales the newest one up to spec.replicas (FindActiveOrLatest); and the
    controller gets in between any two of deliver's ReplicaSet writes, as the real one may."""

    def __init__(self) -> None:
        super().__init__()
        self._between()

    def _between(self) -> None:
        def act(kube: Any) -> None:
            self._deployment_controller()
            self._between()

        self.kube.before_write(act, match=lambda w: w.plural == "replicasets")

    def _deployment_controller(self) -> None:
        super()._deployment_controller()
        d = self.kube.obj(DEPLOYMENTS, NAME, NS)
        owned = self._owned(d)
        if owned and not any(int(rs["spec"].get("replicas") or 0) for rs in owned):
            newest = max(owned, key=lambda rs: int(rs["metadata"]["resourceVersion"]))
            self._scale(newest, int(d["spec"]["replicas"]))


def test_the_deployments_history_is_held_too_so_no_old_version_is_scaled_up() -> None:
    f = RealisticFixture()
    f.given_deployment("canary", V1, replicas=4, steps="50,100", interval="30s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.serving() == {V2: 4}  # v1's ReplicaSet is history now
    f.when_template_changes("web:v3")
    seen: list[dict[str, int]] = []
    f.when_settled(until=lambda f: seen.append(f.serving()) or False)
    assert all(V1 not in s for s in seen), f"the history ReplicaSet of v1 was scaled up: {seen}"
    assert {"web:v3": 2, V2: 2} in seen
    assert f.record()["phase"] == "Succeeded" and f.serving() == {"web:v3": 4} and held(f) == []
    assert len(f.replicasets()) == 3 and all(
        any(r.get("controller") for r in rs["metadata"]["ownerReferences"]) for rs in f.replicasets()
    ), "the history is the Deployment's again"


def test_an_abort_after_an_earlier_delivery_restores_the_stable_version_not_an_older_one() -> None:
    from tests.crashpoints import Explorer

    f = RealisticFixture()
    f.given_deployment("canary", V1, replicas=2, steps="20,pause,100", interval="1s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("phase") == "Paused")
    Explorer(f, "promote").request("promote")
    f.when_settled()
    f.when_template_changes("web:v3")
    f.when_settled(until=lambda f: f.record().get("phase") == "Paused")
    assert f.serving() == {"web:v3": 1, V2: 1}
    Explorer(f, "abort").request("abort")
    f.when_settled()
    assert f.record()["phase"] == "Aborted" and f.serving() == {V2: 2} and held(f) == []


def test_deliver_undo_sees_the_history_deliver_holds() -> None:
    from delivery.cli.undo import previous_revision

    f = RealisticFixture()
    f.given_deployment("canary", V1, replicas=4, steps="50,100", interval="30s")
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_settled()
    f.when_template_changes("web:v3")
    f.when_settled(until=lambda f: len(held(f)) == 2)  # v2 (stable, 2 pods) and v1 (history, none)
    for rs in held(f):
        rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = (
            "2" if rs["spec"]["replicas"] else "1"
        )
    found, why = previous_revision(f.deployment(), held(f))
    assert found is not None and found["spec"]["template"]["spec"]["containers"][0]["image"] == V2, why
