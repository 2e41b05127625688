"""Hook calls, off the reconcile path: a pass asks (``CallHook``), a pool thread calls the URL, a
later pass finds the answer in its observation (``HookResult``); ``strategies/hooks.py`` decides.

The request: ``POST`` with the JSON body of ``body`` (hook, namespace, deployment, strategy, phase,
revision, stable revision, step, weight), signed like notifications when ``DELIVER_WEBHOOK_SECRET``
is set (``X-Deliver-Signature``, ``delivery/notify.py``). 2xx within the timeout is a pass; any other
status, a timeout or an unreachable URL is a failure, with what happened in ``HookResult.detail``.
pre-rollout and post-rollout calls are tried up to 3 times (tenacity, backoff 0.5 s, 1 s) before failing;
confirm-promotion is polled by the planner anyway and load-test is called once per step.

Nothing here is state: the answers live in memory (a few per Deployment) until a pass records what
it decided. A restart loses them and the planner asks again (the same call, made once more).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from strategies.model import CallHook, DeliveryState, HookKind, HookResult

from .notify import signed_headers

log = logging.getLogger("deliver.hooks")

Key = tuple[str, str]
KEEP = 8  # answers kept per Deployment (the planner reads the newest of each kind)
DEPLOYMENTS_KEPT = 10_000  # Deployments whose calls are kept (the least recently called forgotten first)
ATTEMPTS = {HookKind.PRE_ROLLOUT: 3, HookKind.POST_ROLLOUT: 3}


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


def request(
    url: str,
    payload: dict[str, Any],
    timeout: float,
    secret: bytes | None = None,
    attempts: int = 1,
    backoff: float = 0.5,
) -> tuple[bool, str]:
    """POST ``payload``; (True, "HTTP 200 in 0.01s") on 2xx, else (False, what happened)."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    delivery_id = uuid.uuid4().hex

    def attempt() -> str:
        started = time.monotonic()
        try:
            response = httpx.post(
                url,
                content=data,
                headers=signed_headers(secret, data, delivery_id),
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            raise _NotPassed(f"timed out after {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise _NotPassed(f"unreachable ({type(exc).__name__}: {exc})"[:300]) from None
        if 200 <= response.status_code < 300:
            return f"HTTP {response.status_code} in {time.monotonic() - started:.2f}s"
        text = response.text.strip().replace("\n", " ")[:200]
        raise _NotPassed(f"HTTP {response.status_code}" + (f": {text}" if text else ""))

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff, max=30),
        retry=retry_if_exception_type(_NotPassed),
        reraise=True,
    )
    try:
        return True, retrying(attempt)
    except _NotPassed as exc:
        return False, str(exc) + (f" ({attempts} attempts)" if attempts > 1 else "")


def _same_call(one: CallHook, other: CallHook) -> bool:
    return (one.kind, one.revision, one.token, one.step) == (other.kind, other.revision, other.token, other.step)


class HookPool:
    """Hook calls in a bounded thread pool (``workers=0``: made inline, for tests and one-shot use)."""

    def __init__(
        self, workers: int = 4, on_done: Callable[[Key], None] | None = None, secret: bytes | None = None
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hook") if workers > 0 else None
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
            if self._executor is None:
                future = Future()
            else:
                future = self._executor.submit(run)
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


def run_call(
    action: CallHook,
    url: str,
    payload: dict[str, Any],
    timeout: float,
    secret: bytes | None,
    clock: Callable[[], float],
) -> HookResult:
    """One hook call to its answer; never raises (an error is a failed answer)."""
    try:
        ok, detail = request(url, payload, timeout, secret, ATTEMPTS.get(action.kind, 1))
    except Exception as exc:  # a broken call must never pass
        log.exception("hook call crashed", extra={"hook": action.kind.value})
        ok, detail = False, f"error: {exc}"
    log.info("hook called", extra={"hook": action.kind.value, "revision": action.revision, "ok": ok, "detail": detail})
    return HookResult(action.kind, action.revision, action.delivery, action.token, ok, detail, clock())


__all__ = ["HookPool", "body", "request", "run_call"]
