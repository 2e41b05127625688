"""Hook calls, off the reconcile path: a pass asks (``CallHook``), a pool thread calls the URL, a
later pass finds the answer in its observation (``HookResult``); ``strategies/hooks.py`` decides.

The request: ``POST`` with the JSON body of ``body`` (hook, namespace, deployment, strategy, phase,
revision, stable revision, step, weight), signed with the namespace's key like notifications when
``DELIVER_WEBHOOK_SECRET`` is set (``X-Deliver-Signature: v2=``, ``delivery/integrations/notify.py``), sent through
``delivery/integrations/egress.py`` (the operator's egress policy, one deadline for the whole call, a capped
answer). 2xx within the timeout is a pass; any other status, no answer by the deadline or a refused
destination is a failure, with the words a tenant may read in ``HookResult.detail`` (never the
answer's body). pre-rollout and post-rollout calls are tried up to 3 times (tenacity, backoff 0.5 s,
1 s; none started after ``Settings.hooks.budget`` minus the timeout) before failing; confirm-promotion is polled by
the planner anyway and load-test is called once per step. At most ``per_namespace`` calls of one
namespace run at once (``_NamespaceLimiter``), so one namespace's hanging hooks hold no other's.

Nothing here is state: the answers live in memory (a few per Deployment) until a pass records what
it decided. A restart loses them and the planner asks again (the same call, made once more).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from delivery.integrations.egress import Answer, EgressPolicy, origin, post
from delivery.integrations.notify import signed_headers
from delivery.settings import Settings
from strategies.actions import CallHook
from strategies.observation import HookResult
from strategies.record import DeliveryState
from strategies.spec import HookKind

log = logging.getLogger("deliver.hooks")

Key = tuple[str, str]
KEEP = 8  # answers kept per Deployment (the planner reads the newest of each kind)
DEPLOYMENTS_KEPT = 10_000  # Deployments whose calls are kept (the least recently called forgotten first)
ATTEMPTS = {HookKind.PRE_ROLLOUT: 3, HookKind.POST_ROLLOUT: 3}
PER_NAMESPACE = 2  # hook calls of one namespace running at once (the others wait for one of them)
QUEUED_PER_NAMESPACE = 64  # hook calls of one namespace waiting; more fail at once
DEFAULT_POLICY = EgressPolicy()  # deny loopback, link-local, private; the controller's comes from its flags


def body(deployment: dict[str, Any], state: DeliveryState, action: CallHook) -> dict[str, Any]:
    meta = deployment["metadata"]
    return {
        "hook": action.kind.value,
        "namespace": meta.get("namespace", ""),
        "deployment": meta.get("name", ""),
        "strategy": state.strategy,
        "phase": state.phase.value,
        "revision": action.revision,
        "stableRevision": state.stable_revision,
        "step": action.step + 1 if action.step >= 0 else None,
        "weight": state.weight,
    }


class _NotPassed(Exception):
    """One attempt of a hook call that did not answer 2xx (retried by tenacity, then reported)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.outcome)
        self.answer = answer


def request(
    url: str,
    payload: dict[str, Any],
    timeout: float,
    secret: bytes | None = None,
    attempts: int = 1,
    egress: EgressPolicy = DEFAULT_POLICY,
    namespace: str = "",
    settings: Settings = Settings(),
) -> tuple[bool, str]:
    """POST ``payload``; (True, "HTTP 200") on 2xx, else (False, what a tenant may see: "HTTP 503",
    "no answer within 10s" or the egress policy's refusal). ``timeout`` is one wall-clock deadline
    per attempt; all attempts stop within ``settings.hooks.budget`` seconds. What really happened is logged only."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    delivery_id = uuid.uuid4().hex

    def attempt() -> Answer:
        answer = post(url, data, signed_headers(secret, data, delivery_id, namespace), egress, timeout)
        log.info(
            "hook attempt",
            extra={"target": origin(url), "namespace": namespace, "ok": answer.ok, "detail": answer.detail,
                   "seconds": round(answer.seconds, 3)},
        )  # fmt: skip
        if not answer.ok:
            raise _NotPassed(answer)
        return answer

    timings = settings.hooks
    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)) | stop_after_delay(max(0.0, timings.budget - timeout)),
        wait=wait_exponential(multiplier=timings.backoff, max=timings.max_backoff),
        retry=retry_if_exception(lambda e: isinstance(e, _NotPassed) and not e.answer.denied),
        reraise=True,
    )
    try:
        return True, retrying(attempt).outcome
    except _NotPassed as exc:
        tried = retrying.statistics.get("attempt_number", 1)
        return False, exc.answer.outcome + (f" ({tried} attempts)" if tried > 1 else "")


def _same_call(one: CallHook, other: CallHook) -> bool:
    return (one.kind, one.revision, one.token, one.step) == (other.kind, other.revision, other.token, other.step)


class _NamespaceLimiter:
    """At most ``limit`` calls of one namespace on the pool at once; the rest wait in that namespace's
    own queue (at most ``queued``; more fail at once), so one namespace's slow hooks hold at most
    ``limit`` of the pool's threads and never another namespace's calls."""

    def __init__(self, executor: ThreadPoolExecutor, limit: int, queued: int) -> None:
        self._executor = executor
        self.limit = max(1, limit)
        self.queued = queued
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[Callable[[], HookResult], Future[HookResult]]]] = {}

    def submit(
        self, namespace: str, run: Callable[[], HookResult], too_many: Callable[[], HookResult]
    ) -> Future[HookResult]:
        future: Future[HookResult] = Future()
        with self._lock:
            waiting = self._waiting.setdefault(namespace, deque())
            if self._running.get(namespace, 0) >= self.limit:
                if len(waiting) >= self.queued:
                    future.set_result(too_many())
                    return future
                waiting.append((run, future))
                return future
            self._running[namespace] = self._running.get(namespace, 0) + 1
        self._start(namespace, run, future)
        return future

    def _start(self, namespace: str, run: Callable[[], HookResult], future: Future[HookResult]) -> None:
        def work() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(run())
                    except BaseException as exc:  # run_call never raises; keep the future honest anyway
                        future.set_exception(exc)
            finally:
                self._next(namespace)

        self._executor.submit(work)

    def _next(self, namespace: str) -> None:
        with self._lock:
            waiting = self._waiting.get(namespace)
            if waiting:
                run, future = waiting.popleft()
            else:
                self._running[namespace] -= 1
                if not self._running[namespace]:
                    del self._running[namespace]
                    self._waiting.pop(namespace, None)
                return
        try:
            self._start(namespace, run, future)
        except RuntimeError:  # the pool is shut down
            future.cancel()


class HookPool:
    """Hook calls in a bounded thread pool (``workers=0``: made inline, for tests and one-shot use),
    at most ``per_namespace`` of one namespace at once, to destinations ``egress`` allows."""

    def __init__(
        self,
        workers: int = 4,
        on_done: Callable[[Key], None] | None = None,
        secret: bytes | None = None,
        egress: EgressPolicy = DEFAULT_POLICY,
        per_namespace: int = PER_NAMESPACE,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hook") if workers > 0 else None
        self._limiter = (
            _NamespaceLimiter(self._executor, per_namespace, QUEUED_PER_NAMESPACE) if self._executor else None
        )
        self.egress = egress
        self._calls: dict[Key, tuple[str, dict[CallHook, Future[HookResult]]]] = {}
        self._lock = threading.Lock()
        self.on_done = on_done
        self.secret = secret or None

    def call(self, key: Key, uid: str, action: CallHook, run: Callable[[], HookResult]) -> None:
        """Make the call ``action`` stands for, unless it is running or answered already."""
        with self._lock:
            known_uid, calls = self._calls.get(key, (uid, {}))
            if known_uid != uid:
                calls = {}  # a new Deployment with the same name
            if action in calls:
                return
            if any(_same_call(action, a) and not f.done() for a, f in calls.items()):
                return  # the same call of a delivery whose start was re-planned: it is under way
            log.info(
                "hook call started",
                extra={
                    "namespace": key[0],
                    "deployment": key[1],
                    "hook": action.kind.value,
                    "revision": action.revision,
                    "delivery": action.delivery,
                    "token": action.token,
                    "step": action.step,
                },
            )
            future: Future[HookResult]
            if self._limiter is None:
                future = Future()
            else:
                future = self._limiter.submit(key[0], run, lambda: _too_many(action))
            calls[action] = future
            while len(calls) > KEEP:
                calls.pop(next(iter(calls)))
            self._calls.pop(key, None)
            self._calls[key] = (uid, calls)  # the newest last: the oldest go first past the cap
            self._evict()
        if self._executor is None:
            future.set_result(run())
        future.add_done_callback(lambda _f: self._finished(key))

    def results(self, key: Key, uid: str) -> tuple[HookResult, ...]:
        """The answers of the calls made for this Deployment that finished, oldest first."""
        with self._lock:
            known_uid, calls = self._calls.get(key, (uid, {}))
            if known_uid != uid:
                return ()
            done = [f.result() for f in calls.values() if f.done() and not f.cancelled()]
        return tuple(sorted(done, key=lambda r: r.at))

    def forget(self, key: Key) -> None:
        """Drop what is kept for a Deployment that is gone (or no longer deliver's)."""
        with self._lock:
            self._calls.pop(key, None)

    def _evict(self) -> None:
        """At most DEPLOYMENTS_KEPT Deployments' calls: the least recently called go first, finished
        ones before running ones (a forgotten answer is asked for again: the call is made again)."""
        while len(self._calls) > DEPLOYMENTS_KEPT:
            idle = (k for k, (_, calls) in self._calls.items() if all(f.done() for f in calls.values()))
            self._calls.pop(next(idle, next(iter(self._calls))))

    def _finished(self, key: Key) -> None:
        if self.on_done is not None and self._executor is not None:
            try:
                self.on_done(key)
            except Exception:
                log.exception("hook completion callback failed", extra={"namespace": key[0], "deployment": key[1]})

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _too_many(action: CallHook) -> HookResult:
    detail = f"not called: more than {QUEUED_PER_NAMESPACE} hook calls of this namespace are waiting"
    return HookResult(action.kind, action.revision, action.delivery, action.token, False, detail, time.time())


def run_call(
    action: CallHook,
    url: str,
    payload: dict[str, Any],
    timeout: float,
    secret: bytes | None,
    clock: Callable[[], float],
    egress: EgressPolicy = DEFAULT_POLICY,
    settings: Settings = Settings(),
) -> HookResult:
    """One hook call to its answer; never raises (an error is a failed answer)."""
    namespace = str(payload.get("namespace", ""))
    try:
        attempts = ATTEMPTS.get(action.kind, 1)
        ok, detail = request(
            url, payload, timeout, secret, attempts, egress=egress, namespace=namespace, settings=settings
        )
    except Exception:  # a broken call must never pass
        log.exception("hook call crashed", extra={"hook": action.kind.value})
        ok, detail = False, "error in the controller (see its log)"
    log.info("hook called", extra={"hook": action.kind.value, "revision": action.revision, "ok": ok, "detail": detail})
    return HookResult(action.kind, action.revision, action.delivery, action.token, ok, detail, clock())


__all__ = ["HookPool", "body", "request", "run_call"]
