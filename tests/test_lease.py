"""delivery.kube.lease: the one Lease implementation under leader election and the wave lock (fake API)."""

from __future__ import annotations

from typing import Any

import pytest

from delivery.errors import Conflict, KubeError, WaveBusy
from delivery.kube.client import LEASES
from delivery.kube.lease import Attempt, Holder, Lease, micro_time, parse_micro_time
from delivery.wave.lock import LOCK_DURATION, WaveLock
from tests.fakekube import FakeKube

T0 = 1_800_000_000.0


def anyone(_lease: dict[str, Any]) -> bool:
    return True


def nobody(_lease: dict[str, Any]) -> bool:
    return False


def test_created_taken_over_and_renewed_at_the_resource_version_read() -> None:
    kube, now = FakeKube(), {"t": T0}
    lease = Lease(kube, "ns", "x", lambda: now["t"])
    first = lease.acquire_or_renew("a", 15, nobody)
    assert first.attempt is Attempt.HELD and first.read is None
    spec = kube.get(LEASES, "ns", "x")["spec"]
    assert spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": micro_time(T0),
        "renewTime": micro_time(T0),
        "leaseTransitions": 0,
    }
    assert lease.acquire_or_renew("b", 15, nobody).attempt is Attempt.OTHER  # asked even about an empty holder
    now["t"] += 5
    assert lease.acquire_or_renew("a", 15, anyone).attempt is Attempt.HELD  # a renewal moves renewTime only
    spec = kube.get(LEASES, "ns", "x")["spec"]
    assert (spec["acquireTime"], spec["renewTime"], spec["leaseTransitions"]) == (micro_time(T0), micro_time(T0 + 5), 0)
    now["t"] += 5
    taken = lease.acquire_or_renew("b", 20, anyone)
    assert taken.written is not None and Holder.of(taken.written) == Holder("b", 20, T0 + 10)
    spec = kube.get(LEASES, "ns", "x")["spec"]
    assert (spec["acquireTime"], spec["leaseTransitions"]) == (micro_time(T0 + 10), 1)


def test_two_writers_of_one_read_never_both_hold_it() -> None:
    kube = FakeKube()
    Lease(kube, "ns", "x", lambda: T0).acquire_or_renew("a", 15, anyone)
    read = kube.get(LEASES, "ns", "x")
    real_get = kube.get
    kube.get = lambda *args: dict(read)  # type: ignore[method-assign]
    attempts = [Lease(kube, "ns", "x", lambda: T0).acquire_or_renew(i, 15, anyone).attempt for i in "bc"]
    kube.get = real_get  # type: ignore[method-assign]
    assert attempts == [Attempt.HELD, Attempt.RACE] and Holder.of(kube.get(LEASES, "ns", "x")).identity == "b"


def test_no_lease_and_not_to_create_one_is_absent() -> None:
    kube = FakeKube()
    assert Lease(kube, "ns", "x").acquire_or_renew("a", 15, anyone, create=False).attempt is Attempt.ABSENT
    assert kube.writes == []


def test_released_or_deleted_only_by_its_holder() -> None:
    kube = FakeKube()
    lease = Lease(kube, "ns", "x", lambda: T0)
    lease.acquire_or_renew("a", 15, anyone)
    assert not lease.release("b") and not lease.delete("b")
    assert lease.release("a")
    assert Holder.of(kube.get(LEASES, "ns", "x")) == Holder("", 1, T0)
    lease.acquire_or_renew("a", 15, anyone)
    assert lease.delete("a") and kube.items(LEASES, "ns") == []


def test_times_read_back() -> None:
    assert parse_micro_time(micro_time(T0 + 0.25)) == T0 + 0.25
    assert parse_micro_time("not a time") == 0.0 and parse_micro_time(None) == 0.0


# ---------------------------------------------------------------- the wave lock on it


def test_a_wave_lock_renewal_never_recreates_a_deleted_lease_and_notes_a_takeover() -> None:
    clock = {"t": T0}
    kube = FakeKube()
    lock = WaveLock(kube, "ns", "web", "wave-a", lambda: clock["t"])
    lock.acquire()
    kube.delete(LEASES, "ns", "deliver-wave-web")
    lock.renew()
    assert kube.items(LEASES, "ns") == [] and lock.lost == ""
    lock.acquire()
    clock["t"] += LOCK_DURATION + 1
    WaveLock(kube, "ns", "web", "wave-b", lambda: clock["t"]).acquire()
    lock.renew()
    assert lock.lost.startswith("Lease ns/deliver-wave-web taken by wave-b/")


def test_a_wave_lock_gives_up_after_lost_races_and_lets_api_errors_through() -> None:
    kube = FakeKube()
    kube.fail_next(KubeError("unreachable", status=503), verb="get")
    with pytest.raises(KubeError):
        WaveLock(kube, "ns", "web", "wave-a", lambda: T0).acquire()

    # another wave creates it between each read and create of ours, and is gone again before the next read
    kube.fail_next(*[Conflict("already exists")] * 5, verb="create")
    with pytest.raises(WaveBusy, match="kept changing under us"):
        WaveLock(kube, "ns", "web", "wave-a", lambda: T0).acquire()
