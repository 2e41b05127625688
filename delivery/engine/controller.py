"""The controller: watches annotated Deployments (and their ReplicaSets), queues them, reconciles.

List + watch with resourceVersion, relist on 410 Gone, client-side timeouts on every stream; no
polling loops. A delayed work queue carries the planners' requeue timers (e.g. "hold this step
for 60s"). N workers reconcile concurrently, each a different Deployment: a key handed out is
"processing" until ``done``, and adding it meanwhile only marks it to be handed out again after
``done``, so a key is never processed twice at once. Analyses run off this path (delivery/engine/background.py).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from delivery.engine.reconcile import Outcome, Reconciler
from delivery.errors import DeliverError, Gone, KubeError, LeadershipLost
from delivery.kube.cache import Cache, Store, trim
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS, Kube, Resource
from delivery.settings import Settings
from delivery.spec import has_record, has_strategy
from delivery.templates import HELD_LABEL, OWNER_LABEL

log = logging.getLogger("deliver.controller")

Key = tuple[str, str]


class WorkQueue:
    """Keys with due times; adding a pending key keeps the earlier due time (dedupe).

    A key returned by ``get`` is processing until ``done(key)``: adding it meanwhile is remembered
    (earliest due time) and queued by ``done``, so no two workers ever hold the same key.
    """

    def __init__(self, settings: Settings = Settings()) -> None:
        self.first = settings.queue.first  # how far ahead of "now" a key queued first goes
        self._heap: list[tuple[float, Key]] = []
        self._due: dict[Key, float] = {}
        self._processing: set[Key] = set()
        self._again: dict[Key, float] = {}  # added while processing: due time once done
        self._cond = threading.Condition()
        self._closed = False

    def add(self, key: Key, delay: float = 0.0, first: bool = False) -> None:
        """Queue ``key`` after ``delay`` seconds; ``first``: ahead of every key due now (a user's
        change waits for no pass of a delivery already under way)."""
        due = time.monotonic() + max(0.0, delay) - (self.first if first else 0.0)
        with self._cond:
            if key in self._processing:
                self._again[key] = min(due, self._again.get(key, due))
                return
            self._push(key, due)

    def done(self, key: Key) -> None:
        """The worker holding ``key`` finished with it; a re-add made meanwhile is queued now."""
        with self._cond:
            self._processing.discard(key)
            due = self._again.pop(key, None)
            if due is not None:
                self._push(key, due)

    def _push(self, key: Key, due: float) -> None:
        """Queue ``key`` (the caller holds the condition)."""
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        self._cond.notify()

    def get(self, timeout: float = 1.0) -> Key | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded entry
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    return key
                wait = deadline - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if wait <= 0:
                    return None
                self._cond.wait(wait)
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due) + len(self._again)


PAGE = 500  # objects per page of a relist: the memory of a relist is one page, not the cluster


@dataclass
class Informer:
    """list + watch of one resource; keeps ``store`` (delivery/kube/cache.py) when given, then calls
    ``on_event(type, obj)``; relists (in pages of ``page``) on 410 and on errors (after a backoff,
    ``settings.watches``)."""

    kube: Kube
    resource: Resource
    namespace: str | None
    on_event: Callable[[str, dict[str, Any]], None] | None
    stop: threading.Event
    store: Store | None = None
    synced: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    page: int = PAGE
    settings: Settings = field(default_factory=Settings)

    def relist(self) -> str:
        """List every object page by page; the store gets exactly them. Returns the resourceVersion
        to watch from (the first page's: the pages are one snapshot)."""
        listed: list[dict[str, Any]] = []
        token: str | None = None
        rv = ""
        while True:
            listing = self.kube.list(self.resource, self.namespace, limit=self.page, continue_token=token)
            meta = listing.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion", ""))
            items = listing.get("items") or []
            if self.store is not None:  # trimmed page by page: a relist holds one raw page at a time
                listed += [trim(self.resource, obj) for obj in items]
            if self.on_event is not None:
                for obj in items:
                    self.on_event("SYNC", obj)
            token = meta.get("continue") or None
            if not token:
                break
        if self.store is not None:
            self.store.replace_trimmed(listed, rv)
        return rv

    def thread(self) -> threading.Thread:
        """A daemon thread that runs this informer (not started)."""
        return threading.Thread(target=self.run, name=f"watch-{self.resource.plural}", daemon=True)

    def run(self) -> None:
        timings = self.settings.watches
        backoff = timings.backoff
        while not self.stop.is_set():
            try:
                rv = self.relist()
                self.synced.set()
                backoff = timings.backoff
                while not self.stop.is_set():
                    for event in self.kube.watch(self.resource, self.namespace, rv, timings.timeout):
                        obj = event.get("object") or {}
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if event.get("type") != "BOOKMARK":
                            if self.store is not None:
                                self.store.apply(event["type"], obj)
                            if self.on_event is not None:
                                self.on_event(event["type"], obj)
                        if self.stop.is_set():
                            return
            except Gone:
                self.restarts += 1
                log.info("watch expired; relisting", extra={"resource": self.resource.plural})
            except Exception as exc:  # a watch thread must never die silently
                self.restarts += 1
                level = logging.WARNING if isinstance(exc, (KubeError, ValueError)) else logging.ERROR
                log.log(
                    level,
                    "watch failed; relisting",
                    extra={"resource": self.resource.plural, "error": repr(exc), "backoff": backoff},
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, timings.max_backoff)


class Controller:
    def __init__(
        self,
        kube: Kube,
        reconciler: Reconciler,
        namespace: str | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        on_outcome: Callable[[Key, Outcome, float], None] | None = None,
        workers: int = 1,
        cache: Cache | None = None,
        settings: Settings = Settings(),
    ) -> None:
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        self.workers = workers
        self.kube = kube
        self.reconciler = reconciler
        self.namespace = namespace
        self.is_leader = is_leader
        self.on_outcome = on_outcome
        self.settings = settings
        self.queue = WorkQueue(settings)
        self.stop = threading.Event()
        self.managed: set[Key] = set()
        self._generations: dict[Key, int] = {}  # the metadata.generation last seen of each managed one
        self._lock = threading.Lock()
        self.cache = cache
        stores = cache.stores if cache is not None else {}
        self.informers = [
            Informer(
                kube, DEPLOYMENTS, namespace, self._on_deployment, self.stop, stores.get(DEPLOYMENTS), settings=settings
            ),
            Informer(
                kube, REPLICASETS, namespace, self._on_replicaset, self.stop, stores.get(REPLICASETS), settings=settings
            ),
        ]
        # the cache's other resources: read from memory; a pod's change also starts a pass of its
        # Deployment (a crash-looping canary is seen at its first restart, not at the next timer)
        self.informers += [
            Informer(kube, res, namespace, self._on_pod if res == PODS else None, self.stop, store, settings=settings)
            for res, store in stores.items()
            if res not in (DEPLOYMENTS, REPLICASETS)
        ]
        self.busy = _Busy()  # set while any worker is reconciling

    # ---- event handlers ----

    def _on_deployment(self, type_: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        generation = int(meta.get("generation") or 0)
        with self._lock:
            if type_ == "DELETED" or not (has_strategy(obj) or has_record(obj)):
                self.managed.discard(key)
                self._generations.pop(key, None)
                return
            self.managed.add(key)
            seen = self._generations.get(key)
            self._generations[key] = generation
        # a changed spec (a new template, above all) is a user's: its pass goes first
        self.queue.add(key, first=seen is not None and generation > seen)

    @staticmethod
    def _deployment_of(rs_meta: dict[str, Any]) -> str | None:
        """The Deployment a ReplicaSet serves: its controller, or deliver's labels on its own and held ones."""
        for ref in rs_meta.get("ownerReferences") or []:
            if ref.get("kind") == "Deployment":
                return str(ref.get("name"))
        found = rs_meta.get("labels") or {}
        owner = found.get(OWNER_LABEL) or found.get(HELD_LABEL)
        return str(owner) if owner else None

    def _enqueue_managed(self, namespace: str, name: str | None) -> None:
        if name:
            key = (namespace, name)
            with self._lock:
                known = key in self.managed
            if known:
                self.queue.add(key)

    def _on_replicaset(self, type_: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self._enqueue_managed(meta.get("namespace", ""), self._deployment_of(meta))

    def _on_pod(self, type_: str, obj: dict[str, Any]) -> None:
        if type_ == "SYNC" or self.cache is None:
            return  # a relist is not a change; without the ReplicaSet store the owner is unknown
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "")
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet":
                rs_meta = self.cache.stores[REPLICASETS].owners(ns, str(ref.get("name")))
                if rs_meta is not None:
                    self._enqueue_managed(ns, self._deployment_of(rs_meta))

    @property
    def synced(self) -> bool:
        """The Deployment and ReplicaSet informers have listed once. The cache's others may lag, or
        be refused (an older RBAC without watch on pods): until they list, those reads go to the API
        server, so readiness does not wait for them."""
        return all(i.synced.is_set() for i in self.informers if i.resource in (DEPLOYMENTS, REPLICASETS))

    @property
    def watch_restarts(self) -> int:
        return sum(i.restarts for i in self.informers)

    # ---- running ----

    def start(self) -> list[threading.Thread]:
        threads = [i.thread() for i in self.informers]
        threads.append(threading.Thread(target=self._resync_loop, name="resync", daemon=True))
        for t in threads:
            t.start()
        return threads

    def _resync_loop(self) -> None:
        while not self.stop.wait(self.settings.watches.resync):
            self.requeue_all()

    def requeue_all(self) -> None:
        """A pass for every managed Deployment (the periodic resync; a change of the hold mode)."""
        with self._lock:
            keys = list(self.managed)
        for key in keys:
            self.queue.add(key)

    def run(self) -> None:
        """Start the informers and ``workers`` workers; work until ``stop`` is set. Each worker finishes
        its current reconcile before this returns."""
        self.start()
        log.info("controller started", extra={"namespace": self.namespace or "*", "workers": self.workers})
        workers = [threading.Thread(target=self.work, name=f"worker-{i}", daemon=True) for i in range(self.workers)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        self.queue.close()
        log.info("controller stopped")

    def work(self) -> None:
        """One worker: take a due key (never one another worker holds), reconcile it, hand it back."""
        queue = self.settings.queue
        while not self.stop.is_set():
            key = self.queue.get(timeout=queue.poll)
            if key is None:
                continue
            try:
                if not self.is_leader():
                    self.queue.add(key, queue.follower_retry)
                    self.stop.wait(queue.follower_pause)
                    continue
                self.process(key)
            finally:
                self.queue.done(key)

    def process(self, key: Key) -> None:
        passes = self.settings.passes
        started = time.monotonic()
        self.busy.set()
        try:
            outcome = self.reconciler.reconcile(*key)
        except LeadershipLost as exc:  # the reconciler's Kube is leader.Fenced: no write after the Lease is gone
            log.info(
                "leadership lost mid-reconcile; stopped writing",
                extra={"namespace": key[0], "deployment": key[1], "error": str(exc)},
            )
            outcome = Outcome(
                passes.leadership_lost_retry
            )  # the next leader (maybe this replica again) takes it from the record
        except DeliverError as exc:
            log.warning("reconcile failed", extra={"namespace": key[0], "deployment": key[1], "error": str(exc)})
            outcome = Outcome(passes.error_retry)
        except Exception:  # one bad Deployment must not stop the controller
            log.exception("reconcile crashed", extra={"namespace": key[0], "deployment": key[1]})
            outcome = Outcome(passes.crash_retry)
        finally:
            self.busy.clear()
        elapsed = time.monotonic() - started
        if self.on_outcome is not None:
            self.on_outcome(key, outcome, elapsed)
        if outcome.requeue_after is not None:
            self.queue.add(key, outcome.requeue_after)


class _Busy:
    """How many workers are reconciling; ``is_set`` while any is (so a shutdown waits for their writes)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def set(self) -> None:
        with self._lock:
            self._count += 1

    def clear(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)

    def is_set(self) -> bool:
        with self._lock:
            return self._count > 0
