"""Hold modes (issue 23): the API server's MutatingAdmissionPolicy holds each template change, so a
managed Deployment is unpaused at rest (``policy``); without it deliver pauses it at rest (``paused``).

The fake API runs deliver's policy as the API server would (``FakeKube.hold_policy``): a write that
changes the pod template of an annotated Deployment is stored paused, deliver's own writes included.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from delivery import templates
from delivery.engine.holdpolicy import (
    MATCH_CONDITIONS,
    POLICY_NAME,
    HoldStatus,
    HoldWatch,
    all_manifests,
    detect,
    manifests,
)
from delivery.errors import Forbidden
from delivery.integrations.metrics import Metrics
from delivery.kube.client import DEPLOYMENTS, MUTATING_POLICIES, MUTATING_POLICY_BINDINGS, REPLICASETS
from strategies.actions import REJECTED_MARK, DisownNew, HoldStable, ReleaseStable, RevertTemplate
from strategies.observation import HoldMode
from strategies.plan import plan
from strategies.record import DeliveryState, Phase
from strategies.spec import DeliverySpec, Strategy
from tests.fakekube import FakeKube
from tests.fixture import NAME, Fixture, template
from tests.planning import NEW, STABLE, obs, started, version

V1, V2 = "web:v1", "web:v2"
REV1, REV2 = templates.revision(template(V1)), templates.revision(template(V2))

STRATEGIES: dict[str, dict[str, str]] = {
    "canary": {"steps": "20,50,100", "interval": "30s"},
    "rolling": {"pause_at": "40", "interval": "30s"},
    "blue-green": {"interval": "30s", "keep_warm": "60s", "active_service": "web", "preview_service": "web-preview"},
    "recreate": {"interval": "30s"},
}


def managed(strategy: str = "canary", mode: HoldMode = HoldMode.POLICY) -> Fixture:
    f = Fixture(hold_mode=mode)
    f.given_deployment(strategy, V1, replicas=3, **STRATEGIES[strategy])
    if strategy == "recreate":
        d = f.kube.obj(DEPLOYMENTS, NAME)
        d["spec"]["strategy"] = {"type": "Recreate"}
        f.kube.put(DEPLOYMENTS, d)
    f.given_delivered()
    return f


def native_replicasets_of(f: Fixture, image: str) -> list[dict[str, Any]]:
    """The Deployment controller's own ReplicaSets running ``image`` (not deliver's)."""
    return [
        rs
        for rs in f.kube.find(REPLICASETS, f.ns)
        if any(r.get("controller") for r in rs["metadata"].get("ownerReferences") or [])
        and rs["spec"]["template"]["spec"]["containers"][0]["image"] == image
        and int(rs["spec"].get("replicas") or 0) > 0
    ]


# ------------------------------------------------------------------ at rest


def test_policy_mode_leaves_a_managed_deployment_unpaused_at_rest() -> None:
    f = managed("canary", HoldMode.POLICY)
    assert not f.deployment()["spec"].get("paused"), "at rest it looks like any plain Deployment"
    assert f.record()["stableRevision"] == REV1


def test_paused_mode_pauses_a_managed_deployment_at_rest() -> None:
    f = managed("canary", HoldMode.PAUSED)
    assert f.deployment()["spec"]["paused"] is True


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_policy_mode_delivers_a_held_change_and_ends_unpaused(strategy: str) -> None:
    f = managed(strategy, HoldMode.POLICY)
    f.when_template_changes(V2)
    assert f.deployment()["spec"]["paused"] is True, "the API server held the change in the same write"

    early: list[int] = []

    def watch(f: Fixture) -> bool:
        record = f.record()
        if strategy in ("canary", "blue-green") and record.get("phase") == "Progressing":
            early.append(len(native_replicasets_of(f, V2)))
        return False

    f.when_settled(until=watch)

    record = f.record()
    assert (record["phase"], record["stableRevision"]) == ("Succeeded", REV2)
    assert f.serving() == {V2: 3}
    assert not f.deployment()["spec"].get("paused"), "unpaused again at rest"
    assert not any(early), "the Deployment controller rolled nothing of v2 out before deliver promoted it"


def progressing(f: Fixture) -> dict[str, Any]:
    conditions = (f.deployment().get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Progressing"), {})


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_policy_mode_holds_a_rolled_back_template_and_marks_it_rejected(strategy: str) -> None:
    """A rejected change never reads as rolled out: its template stays, held, while the stable version
    serves, and the status says ProgressDeadlineExceeded (kubectl rollout status fails at once,
    kstatus says Failed)."""
    f = managed(strategy, HoldMode.POLICY)
    f.crashing.add(V2)
    f.when_template_changes(V2)

    looks: list[tuple[str, bool, str]] = []  # (template image, paused, Progressing reason) while rolling back
    both: list[dict[str, int]] = []  # recreate: two versions with pods at once

    def watch(f: Fixture) -> bool:
        if f.record().get("phase") in ("RollingBack", "RolledBack"):
            looks.append((f.image(), bool(f.deployment()["spec"].get("paused")), progressing(f).get("reason", "")))
        pods = f.pods_by_image()
        if strategy == "recreate" and len([i for i, k in pods.items() if k]) > 1:
            both.append(pods)
        return False

    f.when_settled(until=watch)

    record = f.record()
    assert (record["phase"], record["failedRevision"], record["hold"]) == ("RolledBack", REV2, "PreviouslyFailed")
    assert f.serving() == {V1: 3}, "the stable version serves"
    assert f.image() == V2, "the rejected template is what the Deployment says, as applied"
    assert f.deployment()["spec"]["paused"] is True
    # rolled back with the Deployment held: its template is never written (no field changes owner, so
    # a server-side apply by Helm meets no conflict), and at no pass of the rollback does the
    # Deployment read as anything but a held, failed rollout of the rejected template
    assert not [w for w in f.kube.writes if w.plural == "deployments" and "/spec/template" in str(w.body)]
    assert looks and set(looks) == {(V2, True, "ProgressDeadlineExceeded")}, looks
    assert not both, f"two versions at once: {both[:3]}"
    mark = progressing(f)
    assert (mark.get("status"), mark.get("reason")) == ("False", "ProgressDeadlineExceeded")
    assert mark["message"].startswith(REJECTED_MARK) and REV2 in mark["message"]
    assert not f.delivers_replicasets()


def test_writing_the_stable_template_over_a_held_rejected_one_is_at_rest_at_once() -> None:
    """`helm upgrade --rollback-on-failure` puts the previous release's template back: the version
    already running. It is not delivered again: unpaused, the rejection mark gone, the failure kept."""
    f = managed("canary", HoldMode.POLICY)
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert f.image() == V2

    f.when_template_changes(V1)
    f.when_settled()

    record = f.record()
    assert (record["phase"], record["hold"], record["failedRevision"]) == ("RolledBack", "", REV2)
    assert f.image() == V1 and not f.deployment()["spec"].get("paused")
    assert progressing(f).get("reason") == "NewReplicaSetAvailable"
    assert [e["reason"] for e in f.events()].count("DeliveryStarted") == 1, "not delivered again"
    assert f.serving() == {V1: 3}


def test_a_new_template_over_a_held_rejected_one_is_delivered_and_the_mark_goes() -> None:
    f = managed("canary", HoldMode.POLICY)
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()

    f.when_template_changes("web:v3")
    f.when_reconciled()
    assert f.record()["phase"] == "Progressing"
    assert not progressing(f).get("message", "").startswith(REJECTED_MARK)
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.serving() == {"web:v3": 3}
    assert not f.deployment()["spec"].get("paused")


def test_a_retry_in_policy_mode_delivers_the_held_template() -> None:
    f = managed("canary", HoldMode.POLICY)
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert f.record()["phase"] == "RolledBack"
    f.crashing.discard(V2)

    from delivery.engine.state import send_request

    send_request(f.kube, f.deployment(), "retry")
    f.when_reconciled()  # the request taken: the template to deliver is the held one already
    f.when_reconciled()
    assert f.record()["phase"] == "Progressing"
    f.cluster()
    assert not native_replicasets_of(f, V2), "the held template waits for deliver"
    f.when_settled()
    assert (f.record()["phase"], f.record()["stableRevision"]) == ("Succeeded", REV2)
    assert not f.deployment()["spec"].get("paused")


# ------------------------------------------------------------------ switching modes


def test_the_policy_disappearing_pauses_deployments_at_rest_at_their_next_pass() -> None:
    f = managed("canary", HoldMode.POLICY)
    assert not f.deployment()["spec"].get("paused")

    f.hold_mode = HoldMode.PAUSED
    f.kube.hold_policy = False
    f.when_reconciled()

    assert f.deployment()["spec"]["paused"] is True


def test_the_policy_appearing_unpauses_deployments_at_rest() -> None:
    f = managed("canary", HoldMode.PAUSED)
    assert f.deployment()["spec"]["paused"] is True

    f.hold_mode = HoldMode.POLICY
    f.kube.hold_policy = True
    f.when_reconciled()

    assert not f.deployment()["spec"].get("paused")


def test_a_delivery_in_flight_keeps_its_hold_when_the_mode_changes() -> None:
    f = managed("canary", HoldMode.POLICY)
    f.when_template_changes(V2)
    f.when_reconciled()
    assert f.record()["phase"] == "Progressing"

    f.hold_mode = HoldMode.PAUSED
    f.kube.hold_policy = False
    f.when_reconciled()
    f.cluster()

    assert f.deployment()["spec"]["paused"] is True
    assert not native_replicasets_of(f, V2)
    f.when_settled()
    assert f.record()["phase"] == "Succeeded"
    assert f.deployment()["spec"]["paused"] is True, "paused at rest in the paused mode"


# ------------------------------------------------------------------ detecting the mode


SERVED = (MUTATING_POLICIES, MUTATING_POLICY_BINDINGS)


def test_an_api_server_without_the_api_means_paused_and_says_why() -> None:
    status = detect(FakeKube())
    assert status.mode is HoldMode.PAUSED and "does not serve" in status.why


def install(kube: FakeKube, policy: dict[str, Any] | None = None, binding: dict[str, Any] | None = None) -> None:
    p, b = manifests()
    kube.put(MUTATING_POLICIES, policy or p)
    kube.put(MUTATING_POLICY_BINDINGS, binding or b)


def test_detect_without_a_policy_is_paused_and_says_how_to_install_it() -> None:
    status = detect(FakeKube(installed=SERVED))
    assert status.mode is HoldMode.PAUSED
    assert "deliver hold-policy" in status.why


def test_detect_with_deliver_s_policy_and_a_cluster_wide_binding_is_policy() -> None:
    kube = FakeKube(installed=SERVED)
    install(kube)
    assert detect(kube).mode is HoldMode.POLICY


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["spec"].update(matchConditions=MATCH_CONDITIONS[:1]),
        lambda p: p["spec"].update(failurePolicy="Ignore"),
        lambda p: p["spec"].update(mutations=[]),
        lambda p: p["spec"]["matchConstraints"]["resourceRules"][0].update(resources=["statefulsets"]),
    ],
)
def test_a_policy_that_would_not_hold_every_change_is_not_trusted(change: Any) -> None:
    kube = FakeKube(installed=SERVED)
    policy = manifests()[0]
    change(policy)
    install(kube, policy=policy)
    assert detect(kube).mode is HoldMode.PAUSED


def test_a_binding_limited_to_some_namespaces_is_not_trusted() -> None:
    kube = FakeKube(installed=SERVED)
    binding = manifests()[1]
    binding["spec"]["matchResources"] = {"namespaceSelector": {"matchLabels": {"team": "a"}}}
    install(kube, binding=binding)
    status = detect(kube)
    assert status.mode is HoldMode.PAUSED and "matchResources" in status.why


def test_a_policy_deliver_may_not_read_means_paused() -> None:
    kube = FakeKube(installed=SERVED)
    install(kube)
    kube.fail_next(Forbidden("forbidden", status=403, reason="Forbidden"), verb="get")
    status = detect(kube)
    assert status.mode is HoldMode.PAUSED and "forbidden" in status.why


def test_the_watch_reports_a_deleted_policy_and_a_new_one() -> None:
    import threading

    kube = FakeKube(installed=SERVED)
    install(kube)
    seen: list[HoldStatus] = []
    watch = HoldWatch(kube, threading.Event(), on_change=seen.append)
    assert watch.mode() is HoldMode.POLICY

    kube.remove(MUTATING_POLICIES, POLICY_NAME)
    watch._on_event("DELETED", {"metadata": {"name": POLICY_NAME}})
    assert watch.mode() is HoldMode.PAUSED and [s.mode for s in seen] == [HoldMode.PAUSED]

    install(kube)
    watch._on_event("ADDED", {"metadata": {"name": POLICY_NAME}})
    assert watch.mode() is HoldMode.POLICY and [s.mode for s in seen] == [HoldMode.PAUSED, HoldMode.POLICY]


def test_a_forced_mode_reads_nothing() -> None:
    import threading

    kube = FakeKube(installed=SERVED)
    watch = HoldWatch(kube, threading.Event(), forced=HoldMode.POLICY)
    assert watch.mode() is HoldMode.POLICY and kube.calls == []


# ------------------------------------------------------------------ what people see


def test_deliver_hold_policy_prints_the_policy_and_binding() -> None:
    from delivery.cli import main

    result = CliRunner().invoke(main, ["hold-policy"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.output)) == all_manifests()


def test_metrics_say_which_hold_mode_is_in_force() -> None:
    text = Metrics(hold_mode=lambda: "policy").exposition().decode()
    assert 'deliver_hold_mode{mode="policy"} 1.0' in text
    assert 'deliver_hold_mode{mode="paused"} 0.0' in text


def test_deliver_status_says_which_hold_mode_the_cluster_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    from delivery.cli import main
    from delivery.cli.context import Globals
    from tests.test_gate import TPL_B, deployment, st

    kube = FakeKube(installed=SERVED)
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing", step=0, weight=20)))
    monkeypatch.setattr(Globals, "kube", lambda self: kube)
    result = CliRunner().invoke(main, ["status", "web", "-n", "ns"])
    assert result.exit_code == 0 and "hold mode: paused (no MutatingAdmissionPolicy" in result.stderr
    install(kube)
    result = CliRunner().invoke(main, ["status", "web", "-n", "ns"])
    assert "hold mode: policy" in result.stderr and "hold mode" not in result.stdout


# ------------------------------------------------------------------ the held rollback of rolling/recreate


def _rolling_back(strategy: Strategy) -> tuple[DeliverySpec, DeliveryState]:
    spec = DeliverySpec(strategy=strategy, interval=30.0, progress_deadline=120.0)
    state = started(strategy).replace(
        phase=Phase.ROLLING_BACK, failed_revision=NEW, message="rolled back: x", finished=1000.0
    )
    return spec, state


def test_a_held_rolling_rollback_with_the_stable_version_active_only_disowns_the_rejected_one() -> None:
    """The paused Deployment controller scales its one active ReplicaSet (the stable one) back to
    spec.replicas itself once the rejected one is not its own; the rejected pods serve meanwhile."""
    spec, state = _rolling_back(Strategy.ROLLING)
    seen = obs(version(STABLE, 2), version(NEW, 3), hold_mode=HoldMode.POLICY, rejected_marked=True)
    actions = plan(spec, state, seen).actions
    assert DisownNew(NEW) in actions and not any(isinstance(a, (HoldStable, RevertTemplate)) for a in actions)
    # disowned: the rejected pods stay until the stable version is back in full, then go
    back = obs(
        version(STABLE, 5, ready=3), version(NEW, 3, owned=False), hold_mode=HoldMode.POLICY, rejected_marked=True
    )
    assert not any(isinstance(a, DisownNew) for a in plan(spec, state, back).actions)
    full = obs(version(STABLE, 5), version(NEW, 3, owned=False), hold_mode=HoldMode.POLICY, rejected_marked=True)
    assert DisownNew(NEW, 0) in plan(spec, state, full).actions
    done = obs(version(STABLE, 5), version(NEW, 0, owned=False), hold_mode=HoldMode.POLICY, rejected_marked=True)
    assert plan(spec, state, done).state.phase is Phase.ROLLED_BACK


def test_a_held_recreate_rollback_starts_the_stable_version_only_once_every_rejected_pod_is_gone() -> None:
    spec, state = _rolling_back(Strategy.RECREATE)
    o = {"hold_mode": HoldMode.POLICY, "rejected_marked": True, "native": "Recreate"}
    first = plan(spec, state, obs(version(STABLE, 0), version(NEW, 5), **o)).actions
    assert first.index(HoldStable(0)) < first.index(DisownNew(NEW, 0)), (
        "held first: nothing for the controller to scale"
    )
    held = replace(version(STABLE, 0), held=True)
    going = obs(held, version(NEW, 0, owned=False, terminating=2), **o)
    assert HoldStable(0) in plan(spec, state, going).actions, "terminating pods may still run"
    gone = obs(held, version(NEW, 0, owned=False), **o)
    assert HoldStable(5) in plan(spec, state, gone).actions
    up = obs(replace(version(STABLE, 5), held=True), version(NEW, 0, owned=False), **o)
    assert ReleaseStable() in plan(spec, state, up).actions


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_scaled_to_zero_and_back_a_held_rejected_template_stays_held(strategy: str) -> None:
    """Found by the crash-point explorer: with the rejected template held and the Deployment scaled to
    zero and back, deliver's next pass saw no active ReplicaSet, took it for a first rollout and
    unpaused: the rejected, crash-looping template rolled out natively."""
    f = managed(strategy, HoldMode.POLICY)
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled()
    assert f.record()["hold"] == "PreviouslyFailed"
    rolled_out: list[dict[str, int]] = []

    def watch(f: Fixture) -> bool:
        if f.serving().get(V2) and not f.delivers_replicasets():
            rolled_out.append(f.serving())
        return False

    f.when_scaled(0)
    f.when_settled(until=watch)
    f.when_scaled(3)
    f.when_settled(until=watch)
    assert not rolled_out, f"the rejected template rolled out natively: {rolled_out[:3]}"
    assert f.serving() == {V1: 3} and f.image() == V2 and f.deployment()["spec"]["paused"] is True


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_stable_template_written_during_a_rollback_is_the_user_s(strategy: str) -> None:
    """Found by the crash-point explorer: `helm rollback` (the stable template written) while deliver
    was still rolling back; once done, deliver wrote the rejected template back over the user's."""
    f = managed(strategy, HoldMode.POLICY)
    f.crashing.add(V2)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("phase") == "RollingBack")
    f.when_template_changes(V1)
    f.when_settled()
    assert f.image() == V1, "the user's write stands"
    assert f.serving() == {V1: 3}
    assert not progressing(f).get("message", "").startswith(REJECTED_MARK)
