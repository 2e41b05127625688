"""The planners' own decisions about what goes (pure): a release (the strategy annotation removed,
``strategies/release.py``) and a leftover ReplicaSet of the Deployment's before deliver's is made
(``strategies/plan.py``). The engine only carries them out (delivery/engine/act.py)."""

from __future__ import annotations

from dataclasses import replace

from strategies import plan
from strategies.actions import (
    DeleteReplicaSet,
    DeleteService,
    PostEvent,
    ReleaseStable,
    RemoveRecord,
    ScaleNew,
    SetPaused,
    SetWeight,
    UnpinService,
)
from strategies.observation import Leftovers, ServiceObs
from strategies.reasons import EventReason
from strategies.record import DeliveryState, Phase
from strategies.release import release
from strategies.spec import RouterRef, Strategy

from .planning import NEW, STABLE, canary_spec, obs, started, version

# ------------------------------------------------------------------ release

BLUE_GREEN = Leftovers(
    resource_version="41",
    services=(
        ServiceObs("app", STABLE),  # the user's, pinned by blue-green's switch
        ServiceObs("app-preview", NEW, ours=True),
        ServiceObs("app-extra", "", ours=True),  # deliver's, not pinned
    ),
    preview_service="app-preview",
    replicasets=("app-newrev0001",),
)
ROUTED = Leftovers(
    resource_version="7",
    services=(ServiceObs("app-stable", STABLE, ours=True), ServiceObs("app-canary", NEW, ours=True)),
    preview_service="app-preview",
    router=RouterRef("gateway-api", "shop"),
    stable_service="app-stable",
    canary_service="app-canary",
    route_weighted=True,
    held=True,
    replicasets=("app-newrev0001", "app-otherrev01"),
)


def event(actions: tuple[object, ...]) -> PostEvent:
    last = actions[-1]
    assert isinstance(last, PostEvent) and last.reason is EventReason.RELEASED and last.type == "Normal"
    return last


def test_pinned_services_are_unpinned_whoever_made_them() -> None:
    actions = release(BLUE_GREEN)
    assert UnpinService("app") in actions, "the user's Service selects the app again"
    assert UnpinService("app-extra") not in actions, "not pinned: nothing to undo"
    routed = release(ROUTED)
    assert UnpinService("app-stable") in routed and UnpinService("app-canary") in routed, "deliver's own, kept"


def test_delivers_preview_service_is_deleted_and_not_unpinned() -> None:
    actions = release(BLUE_GREEN)
    assert DeleteService("app-preview") in actions
    assert UnpinService("app-preview") not in actions
    users = replace(BLUE_GREEN, services=(ServiceObs("app-preview", NEW),))  # the user's, named like it
    assert release(users)[:1] == (UnpinService("app-preview"),), "a Service deliver did not make stays"


def test_delivers_other_services_are_kept_and_named_in_the_event() -> None:
    actions = release(ROUTED)
    assert not any(isinstance(a, DeleteService) for a in actions)
    assert event(actions).message == (
        "deliver.dev/strategy removed: deliver no longer holds this Deployment; kept the Services deliver "
        "created (app-canary, app-stable), now selecting every pod of the app, since route gateway-api/shop "
        "(set to 100/0: all traffic to the stable backend) may still send traffic to them. Once no route or "
        "client uses them you may delete them, and the remaining deliver.dev/* annotations"
    )
    assert "since your routes may" in event(release(BLUE_GREEN)).message, "no route declared: the user's own"
    alone = replace(BLUE_GREEN, services=(ServiceObs("app-preview", NEW, ours=True),))
    assert event(release(alone)).message == "deliver.dev/strategy removed: deliver no longer holds this Deployment"


def test_the_route_is_reset_for_weighted_routers_only() -> None:
    assert SetWeight(0) in release(ROUTED)
    assert not any(isinstance(a, SetWeight) for a in release(BLUE_GREEN)), "no route to reset"
    replica = replace(ROUTED, router=RouterRef("replica"), route_weighted=False)
    assert not any(isinstance(a, SetWeight) for a in release(replica))
    assert "set to 100/0" not in event(release(replica)).message


def test_what_a_router_generated_and_keeps_and_a_failed_reset_are_in_the_event() -> None:
    nginx = replace(ROUTED, router=RouterRef("nginx", "shop"), route_kept="the canary Ingress shop-canary is kept")
    assert "send traffic to them; the canary Ingress shop-canary is kept. Once" in event(release(nginx)).message
    failed = release(nginx, route_error="503 webhook down")
    assert "route nginx/shop (not reset: 503 webhook down) may still" in event(failed).message
    assert failed[:-1] == release(nginx)[:-1], "the same actions: only the Event says the route was not reset"


def test_a_held_stable_is_released_before_delivers_replicasets_go() -> None:
    actions = release(ROUTED)
    gone = [i for i, a in enumerate(actions) if isinstance(a, DeleteReplicaSet)]
    assert [actions[i] for i in gone] == [DeleteReplicaSet("app-newrev0001"), DeleteReplicaSet("app-otherrev01")]
    assert actions.index(ReleaseStable()) < gone[0]
    assert actions.index(SetWeight(0)) < actions.index(ReleaseStable()), "traffic to stable first"
    assert ReleaseStable() not in release(BLUE_GREEN), "nothing held"


def test_the_record_goes_and_the_deployment_is_unpaused_last_in_one_guarded_write() -> None:
    for left in (BLUE_GREEN, ROUTED, Leftovers(resource_version="3")):
        actions = release(left)
        assert actions[-2] == RemoveRecord(left.resource_version), "then only the Event"
        assert not any(isinstance(a, SetPaused) for a in actions), "the unpause rides in that one write"
    assert release(Leftovers(resource_version="3"))[:-1] == (RemoveRecord("3"),)


# ------------------------------------------------------------------ a leftover ReplicaSet of the Deployment's

EMPTY_OLD = replace(version(NEW, 0), name="app-newrev0001")  # an earlier delivery's, adopted, scaled down


def test_an_empty_replicaset_of_the_revision_goes_just_before_delivers_is_made() -> None:
    p = plan(canary_spec(), DeliveryState(), obs(version(STABLE, 5), EMPTY_OLD, target=NEW))
    assert p.state.phase is Phase.PROGRESSING and p.state.revision == NEW
    at = next(i for i, a in enumerate(p.actions) if isinstance(a, ScaleNew))
    assert p.actions[at - 1] == DeleteReplicaSet("app-newrev0001")
    assert sum(isinstance(a, DeleteReplicaSet) for a in p.actions) == 1


def test_a_replicaset_of_the_revision_with_pods_or_replicas_stays() -> None:
    for busy in (replace(EMPTY_OLD, status_replicas=1), replace(EMPTY_OLD, replicas=1)):
        p = plan(canary_spec(), started(Strategy.CANARY), obs(version(STABLE, 5), busy, now=1010))
        assert ScaleNew(1) in p.actions and not any(isinstance(a, DeleteReplicaSet) for a in p.actions)
    p = plan(canary_spec(), started(Strategy.CANARY), obs(version(STABLE, 5), EMPTY_OLD, now=1010))
    assert p.actions[p.actions.index(ScaleNew(1)) - 1] == DeleteReplicaSet("app-newrev0001"), "mid-delivery too"


def test_no_leftover_is_removed_once_delivers_replicaset_exists_or_for_another_revision() -> None:
    mine = version(NEW, 1, owned=False)
    p = plan(canary_spec(), started(Strategy.CANARY), obs(version(STABLE, 5), EMPTY_OLD, mine, now=1010))
    assert any(isinstance(a, ScaleNew) for a in p.actions)
    assert not any(isinstance(a, DeleteReplicaSet) for a in p.actions), "deliver's is there: nothing to win over"
    other = replace(EMPTY_OLD, revision="otherrev01", name="app-otherrev01")
    p = plan(canary_spec(), DeliveryState(), obs(version(STABLE, 5), other, target=NEW))
    assert not any(isinstance(a, DeleteReplicaSet) for a in p.actions), "history of another revision stays"
    held = replace(EMPTY_OLD, held=True)
    p = plan(canary_spec(), DeliveryState(), obs(version(STABLE, 5), held, target=NEW))
    assert not any(isinstance(a, DeleteReplicaSet) for a in p.actions), "deliver holds it: not the Deployment's"
