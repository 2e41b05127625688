"""The record's look points: per check, the numbers of the newest looks of the current delivery
(the dashboard's evidence chart), bounded and reset when a delivery starts."""

from __future__ import annotations

import json

from strategies.codec import KEPT_LOOKS
from strategies.evidence import CheckEvidence, LookPoint, Outcome, StepVerdict, with_look
from strategies.record import DeliveryState
from tests.fixture import Fixture
from tests.test_failfast import analysed


def _verdict(at: float, e: float) -> StepVerdict:
    check = CheckEvidence("error-rate", Outcome.INCONCLUSIVE, 100, 400, e, 0.012, 0.005, 1.5)
    unnamed = CheckEvidence("", Outcome.PASS)  # charts nothing
    return StepVerdict(0, Outcome.INCONCLUSIVE, "", at, interim=True, checks=(check, unnamed))


def test_a_look_point_keeps_the_checks_numbers_and_round_trips_through_the_record() -> None:
    looks = with_look({}, _verdict(100.04, 3.5))
    assert looks == {"error-rate": (LookPoint(100.04, 0, "inconclusive", 3.5, 0.012, 0.005, 1.5),)}
    state = DeliveryState(looks=looks)
    d = state.to_dict()
    assert d["looks"] == {"error-rate": [[100.0, 0, "inconclusive", 3.5, 0.012, 0.005, 1.5]]}
    assert DeliveryState.from_dict(d).to_dict() == d
    assert "looks" not in DeliveryState().to_dict()  # nothing charted: nothing written


def test_each_check_keeps_only_its_newest_looks() -> None:
    looks: dict[str, tuple[LookPoint, ...]] = {}
    for i in range(KEPT_LOOKS + 12):
        looks = with_look(looks, _verdict(float(i), float(i)))
    points = looks["error-rate"]
    assert len(points) == KEPT_LOOKS
    assert [p.at for p in points] == [float(i) for i in range(12, KEPT_LOOKS + 12)]


def test_look_points_are_the_first_thing_a_record_short_of_room_gives_up() -> None:
    looks: dict[str, tuple[LookPoint, ...]] = {}
    for i in range(KEPT_LOOKS):
        looks = with_look(looks, _verdict(float(i), float(i)))
    state = DeliveryState(looks=looks, running=_verdict(40.0, 2.0))
    full = state.to_dict()
    size = len(json.dumps(full, sort_keys=True, separators=(",", ":")).encode())
    small = state.to_dict(budget=size - 10)
    assert "looks" not in small and small["running"]["details"] == full["running"]["details"]


def test_the_engine_records_a_bounded_series_of_looks_and_a_new_delivery_starts_it_afresh() -> None:
    f = Fixture()
    analysed(f, lambda a: "pass", interval="20m")  # a 20-minute step looked at every 30 s: ~40 looks
    f.when_settled(until=lambda f: f.record().get("step") == 1)
    points = f.record()["looks"]["error-rate"]
    assert len(points) == KEPT_LOOKS
    times = [p[0] for p in points]
    assert times == sorted(times) and all(p[1] == 0 and p[2] == "pass" for p in points)
    assert points[-1][0] >= float(f.record()["stepStarted"]) - 1  # the step's own verdict is the newest point
    f.when_settled(until=lambda f: f.record().get("phase") == "Succeeded")
    f.when_template_changes("web:v3")
    f.when_settled(until=lambda f: f.record().get("revision") and f.record().get("weight") == 20)
    started = float(f.record()["started"])
    assert all(p[0] >= started for p in (f.record().get("looks") or {}).get("error-rate", []))
    f.when_settled(until=lambda f: len((f.record().get("looks") or {}).get("error-rate", [])) >= 2)
    assert all(p[0] >= started for p in f.record()["looks"]["error-rate"])
