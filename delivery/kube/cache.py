"""The informer cache: what the controller's watches last said, so a reconcile pass reads memory.

Without it every pass of every Deployment listed its ReplicaSets (three selectors), pods,
Services and PodDisruptionBudgets from the API server: eight requests before it decided anything.
With it, the controller's informers (delivery/engine/controller.py) keep one ``Store`` per resource
(Deployments, ReplicaSets, pods, Services, PodDisruptionBudgets) and ``CachedKube`` answers the
engine's ``get`` and ``items`` for those from memory; everything else, and every write, goes to
the API server.

What is kept is only what deliver reads: ``metadata.managedFields`` is dropped from every object,
and a pod keeps only its identity, labels, owner and the status fields health is judged on
(delivery/engine/health.py), so a cluster's pods cost little memory.

Staleness. A store may lag the API server by one watch event, so:

* a write's answer is put in the store at once (write-through: the next pass sees its own writes);
* an object is only replaced by one with a newer resourceVersion, and a deleted one is not brought
  back by an update from before its deletion (an event arriving late never rolls the store back);
  a relist keeps what this process saw later than the list's snapshot (``Store.replace_trimmed``);
* a write refused as Conflict (the record's resourceVersion precondition, delivery/engine/state.py)
  re-reads that object from the API server into the store before the Conflict goes up, so the
  reconciler's re-plan sees the newer object;
* until its informer has listed once (``synced``), or for a namespace it does not watch, a store
  is not used: those reads go to the API server as before.

The stores are level-triggered inputs like the API itself: a stale read can only delay a decision
by one event, and every write is still guarded by the record's resourceVersion.
"""

from __future__ import annotations

import builtins
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from delivery import labels
from delivery.errors import Conflict, KubeError, NotFound
from delivery.kube.client import DEPLOYMENTS, MERGE, PDBS, PODS, REPLICASETS, SERVICES, Kube, Resource
from delivery.kube.wrapper import KubeWrapper

JSON = dict[str, Any]

CACHED = (DEPLOYMENTS, REPLICASETS, PODS, SERVICES, PDBS)
TOMBSTONES = 10_000  # deleted objects remembered per store (see Store.apply)

_POD_META = ("name", "namespace", "uid", "labels", "ownerReferences", "creationTimestamp", "deletionTimestamp")


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON tree (dicts, lists, scalars): what copy.deepcopy does for these, faster
    (no memo: a JSON tree shares nothing)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def _rv_int(rv: str) -> int | None:
    return int(rv) if rv.isdigit() else None


def _newer(candidate: str, held: str) -> bool:
    """May resourceVersion ``candidate`` replace ``held`` (the same or a later version)?

    The API's resourceVersions are opaque strings in general: clients are told to compare them only
    for equality. Here they are not compared blindly but as what they are on every API server
    deliver runs against: etcd-backed storage, where an object's resourceVersion is the etcd
    revision of its last change, a decimal integer that only grows (cluster-wide), so of two versions
    of one object the larger is the later one. A non-decimal (opaque) version cannot be ordered:
    the candidate wins, which is what a cache without the comparison did.
    """
    c, h = _rv_int(candidate), _rv_int(held)
    if c is not None and h is not None:
        return c >= h
    return True


def _strictly_older(candidate: str, held: str) -> bool:
    """Is ``candidate`` known to be an earlier version than ``held`` (both decimal, smaller)?"""
    c, h = _rv_int(candidate), _rv_int(held)
    return c is not None and h is not None and c < h


def _container(cs: JSON) -> JSON:
    return {k: cs[k] for k in ("name", "ready", "restartCount", "state") if k in cs}


def _compact(value: Any) -> Any:
    """A copy of a JSON tree whose keys and short strings are interned: the same label keys, names,
    reasons and timestamps recur across thousands of objects, and one copy of each is kept (about
    half the memory of the stores: measured 3.9 -> 2.3 KiB per pod, 9.2 -> 4.2 KiB per Deployment)."""
    if isinstance(value, dict):
        return {sys.intern(k): _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    if isinstance(value, str) and len(value) <= 64:
        return sys.intern(value)
    return value


def trim(res: Resource, obj: JSON) -> JSON:
    """What the store keeps of an object (a new tree, interned): no managedFields; for a pod, only
    what health reads."""
    return _compact(_trimmed(res, obj))  # type: ignore[no-any-return]


def _trimmed(res: Resource, obj: JSON) -> JSON:
    meta = obj.get("metadata") or {}
    if res == PODS:
        status = obj.get("status") or {}
        kept: JSON = {"phase": status.get("phase")}
        if "conditions" in status:
            kept["conditions"] = [
                {k: c[k] for k in ("type", "status", "lastTransitionTime") if k in c}
                for c in status.get("conditions") or []
            ]
        for field in ("containerStatuses", "initContainerStatuses"):
            if field in status:
                kept[field] = [_container(cs) for cs in status.get(field) or []]
        small_meta = {k: meta[k] for k in _POD_META if k in meta}
        small_meta["resourceVersion"] = meta.get("resourceVersion", "")
        return {"apiVersion": "v1", "kind": "Pod", "metadata": small_meta, "status": kept}
    if "managedFields" not in meta:
        return obj
    return dict(obj, metadata={k: v for k, v in meta.items() if k != "managedFields"})


class Store:
    """The objects of one resource as last seen, with a label index; thread-safe."""

    def __init__(self, res: Resource, namespace: str | None = None) -> None:
        self.res = res
        self.namespace = namespace  # the informer's scope (None: every namespace)
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], JSON] = {}
        self._by_ns: dict[str, set[str]] = defaultdict(set)
        self._by_label: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        # deleted objects: (namespace, name) -> the last resourceVersion seen of them, so that a late
        # update from before the deletion does not bring them back (cleared by a relist)
        self._deleted: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def serves(self, namespace: str | None) -> bool:
        """May reads in ``namespace`` be answered from here?"""
        if not self.synced.is_set():
            return False
        return self.namespace is None or namespace == self.namespace

    # ---- writes (informer and write-through) ----

    def replace_all(self, objects: builtins.list[JSON], list_rv: str = "") -> None:
        """A relist: exactly these objects, nothing else (what was deleted meanwhile goes)."""
        self.replace_trimmed([trim(self.res, obj) for obj in objects], list_rv)

    def replace_trimmed(self, objects: builtins.list[JSON], list_rv: str = "") -> None:
        """``replace_all`` with objects already trimmed (an informer trims each page as it comes).

        ``list_rv`` is the list's resourceVersion (its snapshot). A relist never rolls the store
        back past what this process saw later by write-through or watch (issue 24):

        * a listed object older than the one held (e.g. a write's answer at rv 105, the list's copy
          at rv 100) leaves the held one in place;
        * a listed object this process deleted at or after the listed version stays deleted;
        * a held object missing from the list but newer than the list's snapshot (created after it)
          is kept; any other object missing from the list was deleted and goes.

        The watch then starts from the list's resourceVersion and delivers what happened after the
        snapshot, each event again only replacing older versions.
        """
        with self._lock:
            held = self._objects
            deleted = self._deleted
            self._objects = {}
            self._by_ns.clear()
            self._by_label.clear()
            self._deleted = {}
            listed: set[tuple[str, str]] = set()
            for obj in objects:
                meta = obj.get("metadata") or {}
                key = (meta.get("namespace", ""), meta.get("name", ""))
                listed.add(key)
                rv = str(meta.get("resourceVersion", ""))
                mine = held.get(key)
                if mine is not None and _strictly_older(rv, self._rv(mine)):
                    self._put(mine)  # seen later by write-through or watch: the newer one stays
                    continue
                gone = deleted.get(key)
                if mine is None and gone is not None and (rv == gone or _strictly_older(rv, gone)):
                    self._deleted[key] = gone  # deleted after this version: not brought back
                    continue
                self._put(obj)
            for key, obj in held.items():
                if key not in listed and _strictly_older(list_rv, self._rv(obj)):
                    self._put(obj)  # created or changed after the list's snapshot
            for key, rv in deleted.items():
                if key not in self._deleted and key not in self._objects and _strictly_older(list_rv, rv):
                    self._deleted[key] = rv  # deleted after the snapshot: the watch may still replay older events
        self.synced.set()

    def apply(self, kind: str, obj: JSON) -> None:
        """A watch event (ADDED, MODIFIED, DELETED) or a write's answer (kind "WRITE")."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        rv = str(meta.get("resourceVersion", ""))
        with self._lock:
            held = self._objects.get(key)
            if kind == "DELETED":
                if held is None:
                    self._bury(key, rv)
                elif _newer(rv, self._rv(held)):
                    self._drop(key)
                    self._bury(key, rv)
                return
            if held is not None and not _newer(rv, self._rv(held)):
                return
            gone = self._deleted.get(key)
            if held is None and gone is not None:
                if not _newer(rv, gone) or rv == gone:
                    return  # an update from before the deletion
                del self._deleted[key]  # created again
            if held is not None:
                self._drop(key)
            self._put(trim(self.res, obj))

    def forget(self, namespace: str, name: str) -> None:
        """Deleted by this process: gone from the store, and no update older than it comes back."""
        with self._lock:
            key = (namespace, name)
            if key in self._objects:
                self._bury(key, self._rv(self._objects[key]))
                self._drop(key)

    def _bury(self, key: tuple[str, str], rv: str) -> None:
        if len(self._deleted) >= TOMBSTONES:  # bounded: the oldest go first
            self._deleted.pop(next(iter(self._deleted)))
        self._deleted[key] = rv

    @staticmethod
    def _rv(obj: JSON) -> str:
        return str((obj.get("metadata") or {}).get("resourceVersion", ""))

    def _put(self, obj: JSON) -> None:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        self._objects[(ns, name)] = obj
        self._by_ns[ns].add(name)
        for k, v in (meta.get("labels") or {}).items():
            self._by_label[(ns, k, v)].add(name)

    def _drop(self, key: tuple[str, str]) -> None:
        obj = self._objects.pop(key)
        ns, name = key
        self._by_ns[ns].discard(name)
        if not self._by_ns[ns]:
            del self._by_ns[ns]
        for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items():
            names = self._by_label.get((ns, k, v))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_label[(ns, k, v)]

    # ---- reads (copies: a caller may change what it gets) ----

    # The stored objects are never changed in place (an update replaces the whole object), so the
    # copies are made after the lock is released: workers do not queue behind each other's copies.

    def get(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            obj = self._objects.get((namespace, name))
        return copy_json(obj) if obj is not None else None

    def owners(self, namespace: str, name: str) -> JSON | None:
        """Just the labels and ownerReferences of an object (no deep copy: for event handlers)."""
        with self._lock:
            obj = self._objects.get((namespace, name))
            if obj is None:
                return None
            meta = obj.get("metadata") or {}
            return {
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": list(meta.get("ownerReferences") or []),
            }

    def items(self, namespace: str | None, selector: str | None = None) -> builtins.list[JSON]:
        reqs = labels.parse(selector)
        with self._lock:
            namespaces = [namespace] if namespace is not None else list(self._by_ns)
            found = []
            for ns in namespaces:
                names: set[str] | None = None
                for r in reqs:  # narrow by an equality requirement through the index
                    if r.op == "=" and len(r.values) == 1:
                        hit = self._by_label.get((ns, r.key, next(iter(r.values))), set())
                        names = hit if names is None or len(hit) < len(names) else names
                for name in sorted(names if names is not None else self._by_ns.get(ns, set())):
                    obj = self._objects[(ns, name)]
                    if labels.matches(reqs, (obj.get("metadata") or {}).get("labels")):
                        found.append(obj)
        return copy_json(found)  # type: ignore[no-any-return]


class Cache:
    """One store per cached resource, scoped like the controller's informers."""

    def __init__(self, namespace: str | None = None) -> None:
        self.stores = {res: Store(res, namespace) for res in CACHED}

    def store(self, res: Resource) -> Store | None:
        return self.stores.get(res)

    def size(self) -> dict[str, int]:
        return {res.plural: len(store) for res, store in self.stores.items()}


class CachedKube(KubeWrapper):
    """A ``Kube`` whose reads of the cached resources come from the informers' stores.

    Writes go to ``kube`` and their answers into the stores; every other call is ``kube``'s.
    """

    def __init__(self, kube: Kube, cache: Cache) -> None:
        super().__init__(kube)
        self.cache = cache

    def _serving(self, res: Resource, namespace: str | None) -> Store | None:
        store = self.cache.store(res)
        return store if store is not None and store.serves(namespace) else None

    def get(self, res: Resource, namespace: str | None, name: str) -> JSON:
        store = self._serving(res, namespace)
        if store is None or namespace is None:
            return self.kube.get(res, namespace, name)
        found = store.get(namespace, name)
        if found is None:
            raise NotFound(f"{res.plural} {namespace}/{name} not found (informer cache)", status=404, reason="NotFound")
        return found

    def items(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[JSON]:
        store = self._serving(res, namespace)
        if store is None or field_selector:
            return self.kube.items(res, namespace, selector, field_selector)
        return store.items(namespace, selector)

    def _through(self, res: Resource, answer: JSON) -> JSON:
        store = self.cache.store(res)
        if store is not None and answer.get("metadata"):
            store.apply("WRITE", answer)  # kept as trim's new tree: the caller may change its answer
        return answer

    def _refresh(self, res: Resource, namespace: str | None, name: str) -> None:
        """After a Conflict: the API server's object into the store (the next plan reads it)."""
        store = self.cache.store(res)
        if store is None or namespace is None:
            return
        try:
            store.apply("WRITE", self.kube.get(res, namespace, name))
        except NotFound:
            store.forget(namespace, name)
        except KubeError:
            pass  # the Conflict still goes up; the watch catches the store up

    def _guarded(self, res: Resource, namespace: str | None, name: str, write: Callable[[], JSON]) -> JSON:
        try:
            return self._through(res, write())
        except Conflict:
            self._refresh(res, namespace, name)
            raise
        except NotFound:
            store = self.cache.store(res)
            if store is not None and namespace is not None:
                store.forget(namespace, name)
            raise

    def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        return self._through(res, self.kube.create(res, namespace, body))

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = MERGE, sub: str = ""
    ) -> JSON:
        return self._guarded(
            res, namespace, name, lambda: self.kube.patch(res, namespace, name, patch, content_type, sub)
        )

    def replace(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        return self._guarded(res, namespace, name, lambda: self.kube.replace(res, namespace, name, body))

    def delete(self, res: Resource, namespace: str | None, name: str, propagation: str = "Background") -> None:
        self.kube.delete(res, namespace, name, propagation)
        store = self.cache.store(res)
        if store is not None and namespace is not None:
            store.forget(namespace, name)
