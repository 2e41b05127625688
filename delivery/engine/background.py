"""Analyses off the reconcile path: a bounded pool of threads runs them; a pass only asks for the verdict.

A pass that needs a verdict calls :meth:`AnalysisPool.verdict` with the planner's ``Analyse``: the
first call starts the analysis and returns None at once (the pass goes on, health checks keep running
every pass); a later pass with the same ``Analyse`` gets the verdict once it is there. When an
analysis finishes, ``on_done`` is called with the Deployment's key (the controller queues it), so the
verdict is recorded by the next pass without waiting for a timer.

Nothing here is state: a verdict lives in memory until a pass takes it into the record. A crash (or a
pass that fails before its record write) loses it, and the next pass simply starts the analysis again.
A verdict is handed only to a pass asking for the very same ``Analyse`` (step, window start, versions,
Services) of the same Deployment uid: an analysis of a superseded or rolled-back delivery is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from strategies.actions import Analyse
from strategies.evidence import StepVerdict

log = logging.getLogger("deliver.background")

Key = tuple[str, str]


@dataclass(frozen=True)
class _Job:
    uid: str
    action: Analyse
    future: Future[StepVerdict]


class AnalysisPool:
    """At most ``workers`` analyses run at once; at most one per Deployment is kept (the latest asked)."""

    def __init__(self, workers: int = 4, on_done: Callable[[Key], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("an analysis pool needs at least one worker")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analysis")
        self._jobs: dict[Key, _Job] = {}
        self._lock = threading.Lock()
        self.on_done = on_done

    def verdict(self, key: Key, uid: str, action: Analyse, run: Callable[[], StepVerdict]) -> StepVerdict | None:
        """The verdict of ``action`` if its analysis finished; else start it (once) and return None."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.uid == uid and job.action == action:
                if not job.future.done():
                    return None
                del self._jobs[key]  # taken: the pass records it (or, if that fails, asks again)
                return job.future.result()  # ``run`` never raises (it turns errors into verdicts)
            future = self._executor.submit(run)
            self._jobs[key] = _Job(uid, action, future)
        future.add_done_callback(lambda _f: self._finished(key))
        return None

    def pending(self, key: Key) -> bool:
        with self._lock:
            job = self._jobs.get(key)
            return job is not None and not job.future.done()

    def forget(self, key: Key) -> None:
        """The Deployment is gone: drop its analysis (a running one finishes, its verdict unread)."""
        with self._lock:
            self._jobs.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _finished(self, key: Key) -> None:
        if self.on_done is not None:
            try:
                self.on_done(key)
            except Exception:  # a callback failure must not hide the verdict; the next pass takes it
                log.exception("analysis completion callback failed", extra={"namespace": key[0], "deployment": key[1]})

    def shutdown(self) -> None:
        """Stop taking work; running analyses are not waited for (their verdicts are not state)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["AnalysisPool"]
