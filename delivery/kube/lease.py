"""One coordination.k8s.io/v1 Lease: taken, renewed and given up the way client-go's leaderelection does it.

Two features hold Leases, both through this module: leader election (``delivery/engine/leader.py``: which
replica reconciles) and the wave lock (``delivery/wave/lock.py``: one wave per app). Whether a Lease
another identity holds may be taken is theirs to say (``may_take``): the elector counts a Lease's
expiry on its own clock from when it last saw the record change; a wave, which runs once and has
seen nothing before, compares ``renewTime`` with its wall clock. The writes are the same:

* Every write is at the resourceVersion read: a create, or an update of the object just read. Two
  candidates can never both take a Lease: the loser gets 409 Conflict (``Attempt.RACE``) and looks
  again.
* Taking a Lease from another holder sets ``acquireTime`` and counts ``leaseTransitions``; renewing
  it moves ``renewTime``.
* Giving it up, only while this identity still holds it: ``release`` empties ``holderIdentity`` (1 s
  duration) so the next candidate takes it at once and the object stays; ``delete`` removes it.

Fencing of everything else a holder writes is the holder's business (``leader.Fenced`` for the
reconciler; a wave checks its locks before each stage).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from delivery.errors import Conflict, NotFound
from delivery.kube.client import JSON, LEASES, Kube


def micro_time(ts: float) -> str:
    """The API's MicroTime format: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: Any) -> float:
    """Wall-clock seconds of a MicroTime (or any RFC 3339 time); 0.0 if it is not one."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Holder:
    """Who a Lease says holds it: the identity, and until when by its ``renewTime`` (wall-clock seconds)."""

    identity: str
    duration: float
    renewed: float  # 0.0 if the Lease carries no readable renewTime

    @property
    def expires(self) -> float:
        return self.renewed + self.duration

    @classmethod
    def of(cls, lease: JSON) -> Holder:
        spec = lease.get("spec") or {}
        return cls(
            str(spec.get("holderIdentity") or ""),
            float(spec.get("leaseDurationSeconds") or 0),
            parse_micro_time(spec.get("renewTime")),
        )


class Attempt(Enum):
    """How one acquire-or-renew went."""

    HELD = "held"  # this identity holds the Lease now: created, taken over or renewed
    OTHER = "other"  # another identity holds it (``may_take`` said no)
    RACE = "race"  # another writer came first (409 Conflict): look again
    ABSENT = "absent"  # there is no such Lease, and this attempt was not to create one


@dataclass(frozen=True)
class AttemptResult:
    """One acquire-or-renew: how it went, the Lease it read and the Lease it wrote."""

    attempt: Attempt
    read: JSON | None = None  # the Lease as read (None: there was none)
    written: JSON | None = None  # the Lease as this attempt wrote it (``HELD`` only)


@dataclass(frozen=True)
class Lease:
    """The Lease ``namespace/name``; ``wall`` stamps ``acquireTime`` and ``renewTime``."""

    kube: Kube
    namespace: str
    name: str
    wall: Callable[[], float] = field(default=time.time)

    def acquire_or_renew(
        self, identity: str, duration: int, may_take: Callable[[JSON], bool], create: bool = True
    ) -> AttemptResult:
        """One attempt to hold the Lease as ``identity`` for ``duration`` seconds.

        No Lease: create it (unless ``create`` is False). A Lease: ``may_take`` is asked first,
        whoever holds it (the caller decides about its own identity and an empty holder too); then
        one update at the resourceVersion read. KubeErrors other than 404 and 409 are raised.
        """
        now = self.wall()
        try:
            lease = self.kube.get(LEASES, self.namespace, self.name)
        except NotFound:
            if not create:
                return AttemptResult(Attempt.ABSENT)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": micro_time(now),
                    "renewTime": micro_time(now),
                    "leaseTransitions": 0,
                },
            }
            try:
                created = self.kube.create(LEASES, self.namespace, body)
            except Conflict:
                return AttemptResult(Attempt.RACE)  # someone else created it first
            return AttemptResult(Attempt.HELD, None, created)
        if not may_take(lease):
            return AttemptResult(Attempt.OTHER, lease)
        spec = lease.get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec = dict(spec)
        if (spec.get("holderIdentity") or "") != identity:
            transitions += 1
            new_spec["acquireTime"] = micro_time(now)
        new_spec.update(
            {
                "holderIdentity": identity,
                "leaseDurationSeconds": duration,
                "renewTime": micro_time(now),
                "leaseTransitions": transitions,
            }
        )
        try:
            updated = self.kube.replace(LEASES, self.namespace, self.name, dict(lease, spec=new_spec))
        except Conflict:
            return AttemptResult(Attempt.RACE, lease)
        return AttemptResult(Attempt.HELD, lease, updated)

    def release(self, identity: str) -> bool:
        """Give the Lease up if ``identity`` holds it: empty holder, 1 s duration, the object kept."""
        lease = self.kube.get(LEASES, self.namespace, self.name)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != identity:
            return False
        now = micro_time(self.wall())
        spec.update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now})
        self.kube.replace(LEASES, self.namespace, self.name, dict(lease, spec=spec))
        return True

    def delete(self, identity: str) -> bool:
        """Delete the Lease if ``identity`` holds it."""
        lease = self.kube.get(LEASES, self.namespace, self.name)
        if (lease.get("spec") or {}).get("holderIdentity") != identity:
            return False
        self.kube.delete(LEASES, self.namespace, self.name)
        return True
