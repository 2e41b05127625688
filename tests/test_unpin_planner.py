"""The planner's side of issue 10 defect 2: which pinned Services it unpins, and when (pure)."""

from __future__ import annotations

from strategies import plan
from strategies.actions import SwitchActive, UnpinService
from strategies.observation import ServiceObs
from strategies.record import DeliveryState, Phase
from strategies.spec import DeliverySpec, Strategy

from .planning import NEW, STABLE, obs, started, version

BLUE_GREEN = DeliverySpec(Strategy.BLUE_GREEN, active_service="app", preview_service="app-preview")
ROLLING = DeliverySpec(Strategy.ROLLING, pause_at=(50,), active_service="app", preview_service="app-preview")
AT_REST = DeliveryState(
    phase=Phase.SUCCEEDED, strategy="blue-green", revision=STABLE, stable_revision=STABLE, stable_hash=STABLE
)


def test_a_pin_the_declared_strategy_does_not_make_is_removed_first_even_as_a_delivery_starts() -> None:
    p = plan(ROLLING, AT_REST, obs(version(STABLE, 5), target=NEW, services=(ServiceObs("app", STABLE),)))
    assert p.actions[0] == UnpinService("app")
    assert p.state.phase is Phase.PROGRESSING


def test_blue_green_keeps_its_own_pins_at_rest_and_mid_delivery() -> None:
    pinned = (ServiceObs("app", STABLE), ServiceObs("app-preview", STABLE, ours=True))
    rest = plan(BLUE_GREEN, AT_REST, obs(version(STABLE, 5), target=STABLE, services=pinned))
    assert not any(isinstance(a, UnpinService) for a in rest.actions)
    mid = plan(
        BLUE_GREEN,
        started(Strategy.BLUE_GREEN),
        obs(version(STABLE, 5), version(NEW, 5, owned=False), services=(ServiceObs("app", "gone1"),)),
    )
    assert not any(isinstance(a, UnpinService) for a in mid.actions), "mid-delivery its pins are its own"


def test_at_rest_a_pin_to_a_hash_no_replicaset_has_is_removed() -> None:
    p = plan(BLUE_GREEN, AT_REST, obs(version(STABLE, 5), target=STABLE, services=(ServiceObs("app", "gone1"),)))
    assert UnpinService("app") in p.actions


def test_while_the_old_strategy_is_undone_its_pins_are_left_to_the_undo() -> None:
    old = started(Strategy.BLUE_GREEN)
    p = plan(ROLLING, old, obs(version(STABLE, 5), version(NEW, 5, owned=False), services=(ServiceObs("app", NEW),)))
    assert not any(isinstance(a, UnpinService) for a in p.actions)
    assert SwitchActive("app", STABLE) in p.actions, "the undo switches the active Service back"
