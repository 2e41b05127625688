"""Notifications: a delivery's phase changes sent to webhooks, off the reconcile path.

Derived from the Events a plan posts (``act`` calls :meth:`Notifier.event` right after it posts
each Event), so a notification and its Event cannot drift apart: the same reason, the same message.
Only the reasons in ``KINDS`` are sent (a delivery's phase changes); the rest stay Events only.

Targets: cluster-wide (``deliver run --notify-webhook/--notify-slack``) and per Deployment
(annotations ``deliver.dev/notify-webhook`` / ``deliver.dev/notify-slack``, validated in
``delivery/spec.py``). Two body formats: ``json`` (the generic body, ``body_json``) and ``slack``
(an incoming-webhook body with ``text`` and ``blocks``, ``body_slack``).

Never blocking: :meth:`Notifier.event` only puts the notification into a bounded queue; sender
threads post it, retrying with exponential backoff (a retry waits in the queue, so one dead receiver
never holds back another). A full queue drops the notification (counted). A receiver that stays down
loses nothing that matters: the Kubernetes Event is there either way, and ``/metrics`` counts what
was sent, what failed after every attempt and what was dropped.

Signed when a secret is configured (``DELIVER_WEBHOOK_SECRET``, from the environment, e.g. a Secret
mounted by the chart; never an annotation): ``X-Deliver-Signature: sha256=HEX``, the HMAC-SHA256 of
``TIMESTAMP.BODY`` with ``X-Deliver-Timestamp: TIMESTAMP`` (seconds) ([notifications.md](../docs/notifications.md)).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter

from delivery.integrations.egress import MAX_REQUEST_BYTES, EgressPolicy, post
from delivery.settings import Settings
from strategies.evidence import Outcome
from strategies.reasons import EventReason as R
from strategies.record import DeliveryState

log = logging.getLogger("deliver.notify")

SECRET_ENV = "DELIVER_WEBHOOK_SECRET"  # the operator's secret: each namespace's HMAC key is derived from it
KEY_LABEL = b"deliver-namespace-key/v2\x00"  # namespace_key(): HMAC-SHA256(secret, KEY_LABEL + namespace)
DEFAULT_POLICY = EgressPolicy()  # the controller's comes from `deliver run --egress-*`
FORMATS = ("json", "slack")
ANNOTATION_FORMATS = {"deliver.dev/notify-webhook": "json", "deliver.dev/notify-slack": "slack"}

# The kind of the notification of an inconclusive analysis: named after the verdict's outcome.
INCONCLUSIVE = Outcome.INCONCLUSIVE.value

# The Event reasons sent as notifications, and the kind each one is (the body's "kind").
KINDS: dict[R, str] = {
    R.DELIVERY_STARTED: "started",
    R.STEP_PASSED: "step-passed",
    R.AWAITING_PROMOTION: "paused",
    R.DELIVERY_PAUSED: "paused",
    R.DELIVERY_HELD: "paused",
    R.ANALYSIS_INCONCLUSIVE: INCONCLUSIVE,
    R.PROMOTING: "promoting",
    R.DELIVERY_SUCCEEDED: "promoted",
    R.DELIVERY_ROLLED_BACK: "rolled-back",
    R.DELIVERY_ABORTED: "aborted",
    R.DELIVERY_FAILED: "failed",
    R.AWAITING_CONFIRMATION: "paused",
    R.HOOK_FAILED: "hook-failed",
}

EMOJI = {
    "started": ":rocket:",
    "step-passed": ":white_check_mark:",
    "paused": ":double_vertical_bar:",
    INCONCLUSIVE: ":grey_question:",
    "promoting": ":arrow_up:",
    "promoted": ":tada:",
    "rolled-back": ":rewind:",
    "aborted": ":no_entry:",
    "failed": ":x:",
    "hook-failed": ":warning:",
}


@dataclass(frozen=True)
class Target:
    """One webhook: its URL and the body format it takes."""

    url: str
    format: str = "json"  # json | slack

    @property
    def origin(self) -> str:
        """scheme://host[:port]: what logs and metrics name (a Slack URL's path is a credential)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


@dataclass(frozen=True)
class Notification:
    """One phase change of one delivery, as sent."""

    kind: str
    reason: str
    type: str  # Normal | Warning (the Event's)
    message: str
    namespace: str
    deployment: str
    strategy: str
    phase: str
    revision: str
    stable_revision: str
    step: int
    weight: int
    at: float
    verdict: dict[str, Any] | None = None  # the newest verdict of the record, with its numbers
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


def notification(deployment: dict[str, Any], state: DeliveryState, type_: str, reason: R, message: str) -> Notification:
    """The notification of an Event posted by a plan whose record is ``state``."""
    meta = deployment["metadata"]
    verdict = state.verdicts[-1].to_dict() if state.verdicts else None
    return Notification(
        kind=KINDS.get(reason, "event"),
        reason=reason.value,
        type=type_,
        message=message,
        namespace=str(meta.get("namespace", "")),
        deployment=str(meta.get("name", "")),
        strategy=state.strategy,
        phase=state.phase.value,
        revision=state.revision,
        stable_revision=state.stable_revision,
        step=state.step,
        weight=state.weight,
        at=time.time(),
        verdict=verdict,
    )


def body_json(n: Notification) -> dict[str, Any]:
    """The generic body."""
    return {
        "id": n.id,
        "kind": n.kind,
        "reason": n.reason,
        "type": n.type,
        "message": n.message,
        "namespace": n.namespace,
        "deployment": n.deployment,
        "strategy": n.strategy,
        "phase": n.phase,
        "revision": n.revision,
        "stableRevision": n.stable_revision,
        "step": n.step + 1 if n.step >= 0 else None,  # 1-based, as Events and `deliver status` say
        "weight": n.weight,
        "time": datetime.fromtimestamp(n.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verdict": n.verdict,
    }


def body_slack(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook body (also taken by Mattermost, Rocket.Chat and others)."""
    title = f"{EMOJI.get(n.kind, ':information_source:')} *{n.namespace}/{n.deployment}* {n.kind}: {n.message}"
    facts = [f"phase *{n.phase}*", f"revision `{n.revision}`", f"stable `{n.stable_revision}`"]
    if n.step >= 0:
        facts.append(f"step {n.step + 1}, weight {n.weight}%")
    if n.verdict is not None and n.kind in ("rolled-back", "failed", INCONCLUSIVE, "aborted"):
        facts.append(f"verdict {n.verdict.get('outcome')}: {n.verdict.get('summary')}")
    return {
        "text": f"{n.namespace}/{n.deployment} {n.kind}: {n.message}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": title[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)[:3000]}]},
        ],
    }


def namespace_key(secret: bytes, namespace: str) -> bytes:
    """The HMAC key of one namespace's hooks and notifications, derived from the operator's secret:
    a receiver given this key can verify its namespace's requests and forge no other namespace's."""
    return hmac.new(secret, KEY_LABEL + namespace.encode(), hashlib.sha256).digest()


def signature(key: bytes, namespace: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-Deliver-Signature`` value: ``v2=`` + hex HMAC-SHA256, with the namespace's key, of
    ``v2.NAMESPACE.DELIVERY.TIMESTAMP.BODY`` (the delivery id and the time are signed with the body)."""
    signed = b".".join((b"v2", namespace.encode(), delivery_id.encode(), timestamp.encode(), body))
    return "v2=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes | None, body: bytes, delivery_id: str, namespace: str) -> dict[str, str]:
    """The headers of one webhook request (signed with the namespace's key when there is a secret)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "deliver",
        "X-Deliver-Delivery": delivery_id,
        "X-Deliver-Namespace": namespace,
    }
    if secret:
        ts = str(int(time.time()))
        headers["X-Deliver-Timestamp"] = ts
        headers["X-Deliver-Signature"] = signature(namespace_key(secret, namespace), namespace, delivery_id, ts, body)
    return headers


def encoded(payload: dict[str, Any]) -> bytes:
    """The request body, within ``MAX_REQUEST_BYTES``: a verdict's numbers go first (``truncated``),
    then the message is cut."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    if len(body) <= MAX_REQUEST_BYTES:
        return body
    payload = dict(payload)
    if isinstance(payload.get("verdict"), dict):
        v = payload["verdict"]
        payload["verdict"] = {k: v.get(k) for k in ("step", "outcome", "at")} | {
            "summary": str(v.get("summary", ""))[:1000],
            "details": None,
            "truncated": True,
        }
    for key in ("message", "text"):
        if isinstance(payload.get(key), str):
            payload[key] = payload[key][:2000]
    if isinstance(payload.get("blocks"), list):
        payload["blocks"] = payload["blocks"][:1]
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body if len(body) <= MAX_REQUEST_BYTES else body[:0]


def targets_of(deployment: dict[str, Any]) -> tuple[Target, ...]:
    """The Deployment's own webhooks (its annotations, validated by ``delivery/spec.py``)."""
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    found: list[Target] = []
    for key, fmt in ANNOTATION_FORMATS.items():
        for url in str(annotations.get(key) or "").split(","):
            if url.strip():
                found.append(Target(url.strip(), fmt))
    return tuple(found)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    target: Target = field(compare=False)
    notification: Notification = field(compare=False)
    attempt: int = field(default=0, compare=False)


class Notifier:
    """Per-namespace queues of notifications and the sender threads that serve them round-robin.

    Fairness: a namespace has at most ``per_namespace`` notifications queued, waiting for a retry or
    being sent, and at most ``sending_per_namespace`` being sent at once, so its slow or dead targets
    hold at most that many of the ``senders`` threads; the other senders go on with the other
    namespaces, one job of each in turn. A namespace over its limit drops its own oldest waiting
    notification, never another namespace's. ``capacity`` bounds them all: when it is reached, the
    namespace with the most queued drops its oldest (the newest notification of a namespace is kept).
    """

    def __init__(
        self,
        targets: tuple[Target, ...] = (),
        secret: bytes | None = None,
        registry: CollectorRegistry | None = None,
        capacity: int = 1000,
        attempts: int = 5,
        senders: int = 4,
        per_namespace: int = 50,
        sending_per_namespace: int = 2,
        egress: EgressPolicy = DEFAULT_POLICY,
        settings: Settings = Settings(),
    ) -> None:
        self.targets = targets
        self.secret = secret or None
        self.capacity = capacity
        self.per_namespace = max(1, per_namespace)
        self.sending_per_namespace = max(1, sending_per_namespace)
        self.attempts = attempts
        # one wall-clock deadline per attempt, the backoff between attempts, how often drops are logged
        self.timings = settings.notifications
        self.egress = egress
        # The operator's own targets (the flags) are reached under the same policy with their hosts
        # allowed; a tenant's URL on the same host still goes through ``egress`` alone.
        operator_hosts = tuple(h for h in (urlsplit(t.url).hostname for t in targets) if h)
        self._operator_egress = dataclasses.replace(egress, allow_hosts=egress.allow_hosts + operator_hosts)
        self._ready: dict[str, deque[_Job]] = {}  # per namespace, oldest first
        self._turns: deque[str] = deque()  # namespaces with ready jobs, in round-robin order
        self._delayed: list[_Job] = []  # retries, by due time
        self._count: dict[str, int] = {}  # per namespace: ready + delayed + being sent
        self._sending: dict[str, int] = {}
        self._busy: set[tuple[str, Target]] = set()  # (namespace, target) with a request under way
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        registry = registry if registry is not None else CollectorRegistry()
        self.sent = Counter(
            "deliver_notifications_sent_total", "Notifications a webhook answered 2xx.", ["target"], registry=registry
        )
        self.failed = Counter(
            "deliver_notifications_failed_total",
            "Notifications given up after every attempt failed (the Kubernetes Event remains).",
            ["target"],
            registry=registry,
        )
        self.retried = Counter(
            "deliver_notification_retries_total",
            "Failed attempts that were retried later.",
            ["target"],
            registry=registry,
        )
        self.dropped = Counter(
            "deliver_notifications_dropped_total",
            "Notifications dropped because their namespace's queue or the whole queue was full "
            "(the Kubernetes Event remains).",
            registry=registry,
        )
        # namespace -> (when its last drop was logged, its drops not logged since); one entry a namespace
        self._drops_logged: dict[str, tuple[float | None, int]] = {}
        self._threads = [
            threading.Thread(target=self._run, name=f"notify-{i}", daemon=True) for i in range(max(1, senders))
        ]
        for t in self._threads:
            t.start()

    # ---- the reconcile side: never blocks

    def event(self, deployment: dict[str, Any], state: DeliveryState, type_: str, reason: R, message: str) -> None:
        """An Event was posted: queue its notification for every target (if its reason is notified)."""
        if reason not in KINDS:
            return
        targets = self.targets + targets_of(deployment)
        if not targets:
            return
        self.submit(notification(deployment, state, type_, reason, message), targets)

    def submit(self, n: Notification, targets: tuple[Target, ...]) -> None:
        ns = n.namespace
        with self._cond:
            for target in targets:
                if self._count.get(ns, 0) >= self.per_namespace:
                    victim = ns  # a full namespace makes room in its own queue only
                elif self._count and sum(self._count.values()) >= self.capacity:
                    victim = max(self._count, key=lambda k: (self._queued(k), k == ns))
                else:
                    victim = None
                if victim is not None and not self._drop_oldest(victim):
                    self._dropped(ns, target, n)  # all of it is being sent: the new one goes
                    continue
                self._count[ns] = self._count.get(ns, 0) + 1
                self._push_ready(_Job(time.monotonic(), next(self._seq), target, n))
            self._cond.notify_all()

    def _queued(self, ns: str) -> int:
        return self._count.get(ns, 0) - self._sending.get(ns, 0)

    def _drop_oldest(self, ns: str) -> bool:
        """Drop ``ns``'s oldest notification that is not being sent; False when there is none."""
        ready = self._ready.get(ns) or deque()
        waiting = [j for j in self._delayed if j.notification.namespace == ns]
        candidates = ([ready[0]] if ready else []) + waiting
        if not candidates:
            return False
        oldest = min(candidates, key=lambda j: j.seq)
        if ready and oldest is ready[0]:
            ready.popleft()
        else:
            self._delayed.remove(oldest)
            heapq.heapify(self._delayed)
        self._count[ns] -= 1
        self._dropped(ns, oldest.target, oldest.notification)
        return True

    def _dropped(self, ns: str, target: Target, n: Notification) -> None:
        self.dropped.inc()
        now = time.monotonic()
        last, unlogged = self._drops_logged.get(ns, (None, 0))
        if last is not None and now - last < self.timings.drop_log_every:
            self._drops_logged[ns] = (last, unlogged + 1)
            return
        self._drops_logged[ns] = (now, 0)
        log.warning(
            "notification dropped: queue full",
            extra={
                "target": target.origin,
                "kind": n.kind,
                "namespace": ns,
                "deployment": n.deployment,
                "dropped": unlogged + 1,  # this one and those of the namespace not logged since the last line
            },
        )

    def _push_ready(self, job: _Job) -> None:
        ns = job.notification.namespace
        ready = self._ready.setdefault(ns, deque())
        ready.append(job)
        if ns not in self._turns:
            self._turns.append(ns)

    # ---- the sender side

    def pending(self) -> int:
        with self._cond:
            return sum(self._count.values())

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return self.pending() == 0

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _take(self) -> _Job | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._delayed and self._delayed[0].due <= now:
                    self._push_ready(heapq.heappop(self._delayed))
                for _ in range(len(self._turns)):
                    ns = self._turns[0]
                    self._turns.rotate(-1)  # the next one takes the next namespace's turn
                    ready = self._ready.get(ns)
                    if not ready:
                        self._turns.remove(ns)
                        self._ready.pop(ns, None)
                        continue
                    if self._sending.get(ns, 0) >= self.sending_per_namespace:
                        continue
                    # one request at a time per target: a target gets its notifications in order
                    job = next((j for j in ready if (ns, j.target) not in self._busy), None)
                    if job is None:
                        continue
                    ready.remove(job)
                    self._busy.add((ns, job.target))
                    self._sending[ns] = self._sending.get(ns, 0) + 1
                    return job
                wait = self._delayed[0].due - now if self._delayed else None
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            try:
                error = self._send(job)
            except Exception as exc:  # a sender thread never dies
                error = f"{type(exc).__name__}: {exc}"
            ns = job.notification.namespace
            with self._cond:
                self._sending[ns] -= 1
                self._busy.discard((ns, job.target))
                if error is not None and job.attempt + 1 < self.attempts and not self._stopped:
                    self.retried.labels(job.target.origin).inc()
                    delay = min(self.timings.max_backoff, self.timings.backoff * 2**job.attempt)
                    job.attempt += 1
                    job.due = time.monotonic() + delay
                    heapq.heappush(self._delayed, job)
                else:
                    self._count[ns] -= 1
                    if not self._count[ns]:
                        del self._count[ns]
                    if error is None:
                        self.sent.labels(job.target.origin).inc()
                    else:
                        self.failed.labels(job.target.origin).inc()
                        log.warning(
                            "notification not delivered",
                            extra={
                                "target": job.target.origin,
                                "kind": job.notification.kind,
                                "namespace": ns,
                                "deployment": job.notification.deployment,
                                "attempts": job.attempt + 1,
                                "error": error,
                            },
                        )
                self._cond.notify_all()

    def _send(self, job: _Job) -> str | None:
        """One attempt; None when the receiver answered 2xx, else why not (for the log)."""
        n = job.notification
        body = encoded(body_slack(n) if job.target.format == "slack" else body_json(n))
        if not body:
            return "the notification does not fit the request cap"
        policy = self._operator_egress if job.target in self.targets else self.egress
        answer = post(
            job.target.url, body, signed_headers(self.secret, body, n.id, n.namespace), policy, self.timings.timeout
        )
        return None if answer.ok else answer.detail or answer.outcome


__all__ = [
    "FORMATS",
    "KINDS",
    "SECRET_ENV",
    "Notification",
    "Notifier",
    "Target",
    "body_json",
    "body_slack",
    "namespace_key",
    "notification",
    "signature",
    "signed_headers",
    "targets_of",
]
