"""One wave per app: a Lease ``deliver-wave-<app>`` in every stage's namespace (``WaveLocks``).

The Lease is written through ``delivery.kube.lease``, as leader election writes its own; what is the
wave's is when it may take one. The holder is ``<wave id>/<run id>``. Another wave's Lease whose
``renewTime`` plus duration is still ahead of this machine's wall clock refuses the wave
(``WaveBusy``); an expired one is taken over, and so is one of the same wave (a crashed or killed
run of the same command: both converge on the same stages). Taken in stage order, renewed every
``LOCK_RENEW`` seconds while the run lasts, deleted at its end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping

from delivery.errors import KubeError, WaveBusy
from delivery.kube.client import JSON, Kube
from delivery.kube.lease import Attempt, Holder, Lease
from delivery.wave.file import Wave

LOCK_DURATION = 30  # seconds a wave's Lease lasts unless renewed
LOCK_RENEW = 10.0
ACQUIRE_ATTEMPTS = 5  # lost races (409) before a wave gives up taking one Lease


def lock_name(app: str) -> str:
    return f"deliver-wave-{app}"


class WaveLock:
    """The Lease ``deliver-wave-<app>`` in one stage's namespace."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        app: str,
        wid: str,
        clock: Callable[[], float] = time.time,
        identity: str = "",
    ):
        self.namespace, self.name = namespace, lock_name(app)
        self.lease = Lease(kube, namespace, self.name, clock)
        self.wid = wid
        self.identity = identity or f"{wid}/{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = ""

    def acquire(self) -> None:
        for _ in range(ACQUIRE_ATTEMPTS):
            outcome = self.lease.acquire_or_renew(self.identity, LOCK_DURATION, self._may_take)
            if outcome.attempt is Attempt.HELD:
                return
            if outcome.attempt is Attempt.OTHER and outcome.read is not None:
                raise WaveBusy(self._busy(Holder.of(outcome.read)))
        raise WaveBusy(f"Lease {self.namespace}/{self.name} kept changing under us; another wave is starting")

    def _may_take(self, lease: JSON) -> bool:
        """Unless another wave holds it and its ``renewTime`` plus duration has not passed."""
        holder = Holder.of(lease)
        return not (holder.identity and self._wave_of(holder) != self.wid and holder.expires > self.clock())

    @staticmethod
    def _wave_of(holder: Holder) -> str:
        return holder.identity.split("/")[0]

    def _busy(self, holder: Holder) -> str:
        now = self.clock()
        return (
            f"another wave ({self._wave_of(holder)}) is running for {self.namespace}/{self.name[13:]} "
            f"(Lease {self.namespace}/{self.name}, renewed {max(0, int(now - holder.renewed))}s "
            f"ago, expires in {int(holder.expires - now)}s unless renewed); wait for it to end"
        )

    def renew(self) -> None:
        try:
            outcome = self.lease.acquire_or_renew(
                self.identity, LOCK_DURATION, lambda lease: Holder.of(lease).identity == self.identity, create=False
            )
        except KubeError:
            return  # the next renewal tries again; the Lease lasts LOCK_DURATION
        if outcome.attempt is Attempt.OTHER and outcome.read is not None:
            holder = (outcome.read.get("spec") or {}).get("holderIdentity")
            self.lost = f"Lease {self.namespace}/{self.name} taken by {holder}"

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(LOCK_RENEW):
                self.renew()

        self._thread = threading.Thread(target=loop, name="wave-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.lease.delete(self.identity)
        except KubeError:
            pass  # it expires by itself


class WaveLocks:
    """The wave's Lease on every stage's (cluster, namespace, app), taken in stage order.

    One per stage, not only the first: a wave for the same app that starts elsewhere (a hotfix
    straight to one region) is refused too. If one cannot be taken, those already taken are given
    back and the wave is refused (``WaveBusy``).
    """

    def __init__(self, wave: Wave, kubes: Mapping[str, Kube], wid: str, clock: Callable[[], float] = time.time):
        identity = f"{wid}/{uuid.uuid4().hex[:8]}"
        self.locks: list[WaveLock] = []
        seen: set[tuple[int, str, str]] = set()
        for s in wave.stages:
            key = (id(kubes[s.name]), s.namespace, s.app)
            if key not in seen:
                seen.add(key)
                self.locks.append(WaveLock(kubes[s.name], s.namespace, s.app, wid, clock, identity))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> str:
        return next((lock.lost for lock in self.locks if lock.lost), "")

    def acquire(self) -> None:
        taken: list[WaveLock] = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in taken:
                lock.release()
            raise

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(LOCK_RENEW):
                for lock in self.locks:
                    lock.renew()

        self._thread = threading.Thread(target=loop, name="wave-locks", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for lock in self.locks:
            lock.release()
