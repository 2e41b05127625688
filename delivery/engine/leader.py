"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

* A candidate takes the Lease when nobody holds it, when the holder released it (empty
  holderIdentity), or when the record has not changed for ``leaseDurationSeconds`` of the
  candidate's own clock (expiry is measured from when this process *observed* the last change, so
  clocks of different machines never need to agree).
* The leader renews every ``retry_period``. Every write is an update with the resourceVersion it
  read, so two candidates can never both win: the loser gets 409 Conflict.
* A leader that has not renewed successfully for ``renew_deadline`` stops acting at once
  (``is_leader()`` turns False even before the renew loop notices), well before another candidate
  may take over (``lease_duration`` > ``renew_deadline``).
* Fencing: the reconciler writes through ``Fenced``, which checks ``is_leader()`` before every
  write and raises ``LeadershipLost`` instead of sending it, so a long reconcile stops writing as
  soon as the Lease is lost or not renewed in time, not only when the next key is dequeued. (A
  write already sent when the Lease lapses cannot be called back; the renew deadline is shorter
  than the lease duration so it lands before anyone else may lead.)
* Time: ``ServerClock`` reads the API server's time off each Lease write the leader makes (the
  ``managedFields`` timestamp the server stamps), so the step start times the reconciler records and
  compares come from one clock, the API server's, whichever replica leads; skew between controller
  pods does not shorten or lengthen a step after a failover.
* ``release()`` (on SIGTERM, after the current write finished) empties holderIdentity so the next
  leader takes over within one ``retry_period`` instead of waiting out the lease.

The Lease's writes (create, update at the resourceVersion read, release) are ``delivery/kube/lease.py``'s,
shared with the wave lock; this module decides when a candidate may take the Lease, when a leader
stops acting, and fences the reconciler's writes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from delivery.errors import KubeError, LeadershipLost
from delivery.kube.client import JSON, MERGE, Kube, Resource
from delivery.kube.lease import Attempt, Lease
from delivery.kube.wrapper import KubeWrapper
from delivery.settings import Leadership, Settings

log = logging.getLogger("deliver.leader")


def default_identity() -> str:
    """POD_NAME (downward API) if set, else hostname; plus a random suffix so restarts differ."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


@dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    name: str
    identity: str = field(default_factory=default_identity)
    settings: Settings = field(default_factory=Settings)  # settings.leadership: the durations
    on_change: Callable[[bool], None] | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    server_clock: ServerClock | None = None  # anchored on every Lease this elector writes

    def __post_init__(self) -> None:
        t = self.timings
        if not t.lease_duration > t.renew_deadline > t.retry_period > 0:
            raise ValueError(
                "need lease-duration > renew-deadline > retry-period > 0 "
                f"(got {t.lease_duration:g}s, {t.renew_deadline:g}s, {t.retry_period:g}s)"
            )
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._stepping_down = threading.Event()
        self._last_renew = -1e18
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._thread: threading.Thread | None = None
        self._lease = Lease(self.kube, self.namespace, self.name, self.wall)
        self.transitions = 0  # times this process became leader
        self.became_leader_at: float | None = None

    @property
    def timings(self) -> Leadership:
        """The Lease's durations (``deliver run --lease-duration``, ``--renew-deadline``, ``--retry-period``)."""
        return self.settings.leadership

    # ---- queries ----

    def is_leader(self) -> bool:
        """True only while this process holds a Lease it renewed within the renew deadline."""
        return (
            self._leader.is_set()
            and not self._stepping_down.is_set()
            and self.clock() - self._last_renew < self.timings.renew_deadline
        )

    # ---- one round ----

    def try_acquire_or_renew(self) -> str:
        """One attempt; returns "leader", "other" (held by someone else) or "failed" (try again)."""
        outcome = self._lease.acquire_or_renew(self.identity, int(self.timings.lease_duration), self._may_take)
        if outcome.written is not None:
            self._anchor(outcome.written)
            self._observe(outcome.written)
            return "leader"
        return "other" if outcome.attempt is Attempt.OTHER else "failed"

    def _may_take(self, lease: dict[str, Any]) -> bool:
        """Unless another holder's record changed within its duration, as this process observed it."""
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe(lease)
        duration = float(spec.get("leaseDurationSeconds") or self.timings.lease_duration)
        return not (holder and holder != self.identity and self.clock() < self._observed_at + duration)

    def _anchor(self, written: dict[str, Any]) -> None:
        if self.server_clock is not None:
            self.server_clock.observe(written)

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()

    # ---- the loop ----

    def step(self) -> None:
        """One round of the loop (tests drive this directly)."""
        try:
            result = self.try_acquire_or_renew()
        except KubeError as exc:
            log.warning("lease update failed", extra={"lease": f"{self.namespace}/{self.name}", "error": str(exc)})
            result = "failed"
        if self._stepping_down.is_set():
            return
        if result == "leader":
            self._last_renew = self.clock()
            if not self._leader.is_set():
                self._leader.set()
                self.transitions += 1
                self.became_leader_at = self.wall()
                log.info("became leader", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
                if self.on_change:
                    self.on_change(True)
            return
        if self._leader.is_set() and (
            result == "other" or self.clock() - self._last_renew >= self.timings.renew_deadline
        ):
            self._leader.clear()
            log.error(
                "lost leadership",
                extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity, "why": result},
            )
            if self.on_change:
                self.on_change(False)

    def run(self) -> None:
        log.info("waiting for leadership", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.timings.retry_period)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self._thread.start()
        return self._thread

    def step_down(self) -> None:
        """Stop acting as leader now (no new reconcile starts); the Lease is kept until release()."""
        self._stepping_down.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop; wait for its thread at most ``timeout`` seconds (``timings.stop_wait``)."""
        self._stepping_down.set()
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timings.stop_wait if timeout is None else timeout)

    def release(self) -> bool:
        """Give the Lease up (only if this process holds it): empty holder, 1s duration."""
        self._leader.clear()
        if self._observed is None or self._observed[0] != self.identity:
            return False  # never held it (as far as this process last saw)
        try:
            if not self._lease.release(self.identity):
                return False
        except KubeError as exc:
            log.warning(
                "could not release the lease", extra={"lease": f"{self.namespace}/{self.name}", "error": str(exc)}
            )
            return False
        log.info("released the lease", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
        return True


class ServerClock:
    """Wall-clock seconds as the API server counts them: this process's clock plus an offset.

    The offset comes from objects this process just wrote (the leader's Lease renewals, every
    ``retry_period``): the API server stamps ``metadata.managedFields[].time`` of the writing manager
    with its own clock, to the second. Until a stamp is seen (or if the server sends none), it is
    this process's clock. Error: under a second plus the write's latency, whatever the pods' skew.
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.offset = 0.0
        self.anchored = False
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.wall() + self.offset

    def observe(self, written: dict[str, Any]) -> None:
        """Take the server's time from an object this process has just written (its newest stamp)."""
        stamps = [_parse_time(e.get("time")) for e in (written.get("metadata") or {}).get("managedFields") or []]
        seen = [t for t in stamps if t is not None]
        if not seen:
            return
        # the stamp is truncated to the second: the write happened within the second after it
        server = max(seen) + 0.5
        with self._lock:
            self.offset = server - self.wall()
            self.anchored = True


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class Fenced(KubeWrapper):
    """A ``Kube`` that sends a write only while ``is_leader()`` holds; reads always pass through.

    The controller's reconciler writes through it, so a reconcile that outlives the leadership
    (slow analysis, a stalled renew) stops at its next write with ``LeadershipLost``.
    """

    def __init__(self, kube: Kube, is_leader: Callable[[], bool]) -> None:
        super().__init__(kube)
        self.is_leader = is_leader

    def _check(self, verb: str, what: str) -> None:
        if not self.is_leader():
            raise LeadershipLost(f"not the leader any more: {verb} {what} not sent")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        if method.upper() not in ("GET", "HEAD"):
            self._check(method, path)
        return self.kube.request(method, path, body, query, content_type, timeout)

    def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        self._check("create", f"{res.plural} in {namespace}")
        return self.kube.create(res, namespace, body)

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = MERGE, sub: str = ""
    ) -> JSON:
        self._check("patch", f"{res.plural} {namespace}/{name}")
        return self.kube.patch(res, namespace, name, patch, content_type, sub)

    def replace(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        self._check("replace", f"{res.plural} {namespace}/{name}")
        return self.kube.replace(res, namespace, name, body)

    def delete(self, res: Resource, namespace: str | None, name: str, propagation: str = "Background") -> None:
        self._check("delete", f"{res.plural} {namespace}/{name}")
        self.kube.delete(res, namespace, name, propagation)
