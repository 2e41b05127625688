"""Given/When/Then fixture for engine tests against the one fake API (like Argo Rollouts' ``newFixture``).

    f = Fixture()
    f.given_deployment(strategy="canary", steps="20,50,100")
    f.given_delivered()                   # at rest on web:v1, record written
    f.when_template_changes("web:v2")
    f.when_reconciled()
    assert f.record()["phase"] == "Progressing"

The fake runs no controllers. ``cluster()`` plays them once: the Deployment controller (creates and
scales the Deployment's own ReplicaSet for its template unless paused; when paused, no rollout but
scaling still: the one active ReplicaSet, or with none active the newest, gets ``spec.replicas``, and
old versions are scaled down once the new one is saturated, as the real one does; a Recreate
Deployment's new ReplicaSet only once no old pod is left; a RollingUpdate at once, or with
``stepwise`` within maxSurge/maxUnavailable), the ReplicaSet controller and kubelet (pods per
ReplicaSet, Ready, or crash-looping for images in ``crashing``; a deleted pod gone at once, or with
``pod_grace`` terminating that long first), and the status of both. Tests look only at what the API
shows: objects, the ``deliver.dev/state`` record, Events.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from delivery import templates
from delivery.engine.reconcile import Outcome, Reconciler
from delivery.kube.cache import Cache, CachedKube
from delivery.kube.client import DEPLOYMENTS, EVENTS, PODS, REPLICASETS, SERVICES, selector_string
from strategies.observation import HoldMode
from tests.fakekube import FakeKube

NS = "shop"
NAME = "web"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STATE = "deliver.dev/state"
STRATEGY = "deliver.dev/strategy"


def template(image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": NAME}},
        "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080, "name": "http"}]}]},
    }


def native_hash(tpl: dict[str, Any]) -> str:
    """The Deployment controller's pod-template-hash: not deliver's revision (as on a real cluster)."""
    return "d" + templates.revision(tpl)[:8]


def owner_ref(obj: dict[str, Any], kind: str, controller: bool = True) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": "apps/v1", "kind": kind, "name": meta["name"], "uid": meta["uid"], "controller": controller}


class Fixture:
    def __init__(
        self,
        ns: str = NS,
        kube: FakeKube | None = None,
        cache_lag: int | None = None,
        hold_mode: HoldMode = HoldMode.PAUSED,
    ) -> None:
        """``ns`` and a shared ``kube``: several Fixtures (one Deployment each, in its own namespace)
        on the one fake API, e.g. for the controller's workers. ``cache_lag``: the reconciler reads
        through the informer cache (delivery/kube/cache.py), whose watch delivers at each pass what had
        happened that many passes before (0: caught up; None: no cache, every read from the API)."""
        self.now = START
        self.ns = ns
        self.kube = kube if kube is not None else FakeKube(namespace=ns, clock=lambda: self.now)
        # HoldMode.POLICY: the fake API server runs deliver's hold policy, and the reconciler knows it
        self.hold_mode = hold_mode
        if hold_mode is HoldMode.POLICY:
            self.kube.hold_policy = True
        self.cache_lag = cache_lag
        self.cache = Cache() if cache_lag is not None else None
        self._cached_upto = -1  # history entries applied to the cache (-1: not listed yet)
        self._history_at_pass: list[int] = []  # the fake's history length at each pass
        # the Reconciler's other parts for each (new) process, e.g. a hook pool or a notifier
        self.options: Callable[[], dict[str, Any]] | None = None
        # the objects when this fixture began (with ``kube.history`` after it: any earlier state)
        self._origin: tuple[dict[tuple[str, str, str], dict[str, Any]], int, int] = ({}, 0, 0)
        self.reconciler = self._reconciler()
        self.crashing: set[str] = set()  # images whose containers crash-loop
        # seconds a pod the ReplicaSet controller deletes keeps running, terminating (its
        # deletionTimestamp set, not Ready) before it is gone; 0: gone at once
        self.pod_grace = 0.0
        # the Deployment controller rolls a RollingUpdate out step by step, within maxSurge and
        # maxUnavailable, as the real one does; False: the new ReplicaSet at once, the old ones to zero
        self.stepwise = False
        self.outcomes: list[Outcome] = []

    # ------------------------------------------------------------------ given

    def given_deployment(
        self, strategy: str | None = "canary", image: str = "web:v1", replicas: int = 3, **annotations: str
    ) -> dict[str, Any]:
        """A Deployment running ``image`` (its ReplicaSet and Ready pods made by ``cluster()``)."""
        ann = {STRATEGY: strategy} if strategy else {}
        ann.update({f"deliver.dev/{k.replace('_', '-')}": v for k, v in annotations.items()})
        self.kube.put(
            DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": NAME,
                    "namespace": self.ns,
                    "uid": "uid-deployment-web" if self.ns == NS else f"uid-deployment-{self.ns}-web",
                    "annotations": ann,
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": NAME}},
                    "template": template(image),
                    "strategy": {"type": "RollingUpdate"},
                },
            },
        )
        self.cluster()
        return self.deployment()

    def given_delivered(self) -> None:
        """deliver has seen the Deployment at rest: its record names the running version stable.
        (``kube.writes`` starts empty after it: tests look at what happens from then on.)"""
        self.when_settled()
        assert self.record()["phase"] in ("Idle", "Succeeded"), self.record()
        self.kube.writes.clear()

    def given_service(self, name: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
        return self.kube.put(
            SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {
                    "selector": selector or {"app": NAME},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                },
            },
        )

    def given_replicaset(
        self, image: str, replicas: int, owner: dict[str, Any] | None = None, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A ReplicaSet of ``image`` (controlled by ``owner`` if given); pods come with ``cluster()``."""
        tpl = template(image)
        pod_hash = native_hash(tpl)
        tpl = templates.with_hash(tpl, pod_hash)
        return self.kube.put(
            REPLICASETS,
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{NAME}-{pod_hash}",
                    "namespace": self.ns,
                    "labels": dict(tpl["metadata"]["labels"], **(labels or {})),
                    "ownerReferences": [owner_ref(owner, "Deployment")] if owner else [],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": NAME, templates.HASH_LABEL: pod_hash}},
                    "template": tpl,
                },
            },
        )

    # ------------------------------------------------------------------ when

    def when_template_changes(self, image: str) -> None:
        """The user (or GitOps) writes a new pod template (through the API server's admission: a copy)."""
        d = copy.deepcopy(self.kube.obj(DEPLOYMENTS, NAME, self.ns))
        d["spec"]["template"] = template(image)
        d["metadata"]["generation"] += 1
        self.kube.put(DEPLOYMENTS, d)

    def when_scaled(self, replicas: int) -> None:
        """The user (or an HPA, KEDA) sets the Deployment's ``spec.replicas``."""
        d = self.kube.obj(DEPLOYMENTS, NAME, self.ns)
        d["spec"]["replicas"] = replicas
        self.kube.put(DEPLOYMENTS, d)

    def when_annotated(self, **annotations: str | None) -> None:
        """The user changes deliver.dev/* annotations (None removes one)."""
        d = self.kube.obj(DEPLOYMENTS, NAME, self.ns)
        ann = d["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            key = f"deliver.dev/{k.replace('_', '-')}"
            if v is None:
                ann.pop(key, None)
            else:
                ann[key] = v
        self.kube.put(DEPLOYMENTS, d)

    def _reconciler(self) -> Reconciler:
        reads = CachedKube(self.kube, self.cache) if self.cache is not None else self.kube
        return Reconciler(
            reads,
            analyser=None,
            clock=lambda: self.now,
            hold_mode=lambda: self.hold_mode,
            **(self.options() if self.options else {}),
        )

    def mark_origin(self) -> None:
        """Remember the objects now: ``stale_relist`` rebuilds older lists from them and the history."""
        self._origin = (copy.deepcopy(self.kube.objects), len(self.kube.history), self.kube.rv)

    def stale_relist(self, passes_back: int = 3) -> None:
        """The cache relists and gets an older list than what it holds (an API server behind on etcd,
        a watch cache serving from before deliver's last writes): the objects as they were
        ``passes_back`` passes ago, at that resourceVersion; its watches then go on from there
        (replaying what came after, as an informer watching from the list's resourceVersion does)."""
        if self.cache is None or self._cached_upto < 0:
            return
        objects, start, origin_rv = self._origin
        marks = [m for m in self._history_at_pass if m >= start] or [start]
        upto = max(start, min(marks[max(0, len(marks) - 1 - passes_back)], self._cached_upto))
        state = dict(objects)
        for _rv, plural, ns, kind, obj in self.kube.history[start:upto]:
            key = (plural, ns, obj["metadata"]["name"])
            if kind == "DELETED":
                state.pop(key, None)
            else:
                state[key] = obj
        rv = self.kube.history[upto - 1][0] if upto > start else origin_rv
        for res, store in self.cache.stores.items():
            listed = [o for (plural, ns, _), o in state.items() if plural == res.plural]
            store.replace_all(copy.deepcopy(listed), str(rv))
        self._cached_upto = upto

    def _catch_up(self) -> None:
        """The cache's watches deliver what happened, all but the last ``cache_lag`` events."""
        if self.cache is None:
            return
        history = self.kube.history
        if self._cached_upto < 0 or self._cached_upto > len(history):  # first pass, or compacted: relist
            for res, store in self.cache.stores.items():
                store.replace_all(self.kube.find(res))
            self._cached_upto = len(history)
            self._history_at_pass = [len(history)]
            return
        self._history_at_pass.append(len(history))
        lag = self.cache_lag or 0
        # what had happened ``lag`` passes ago (a watch that slow still delivers everything, later)
        upto = self._history_at_pass[-1 - lag] if len(self._history_at_pass) > lag else self._cached_upto
        upto = max(self._cached_upto, min(upto, len(history)))
        plurals = {res.plural: store for res, store in self.cache.stores.items()}
        for _rv, plural, _ns, kind, obj in history[self._cached_upto : upto]:
            if plural in plurals:
                plurals[plural].apply(kind, obj)
        self._cached_upto = upto

    def cache_caught_up(self) -> bool:
        """Has the cache's watch delivered everything that happened (always, without a cache)?"""
        return self.cache is None or self._cached_upto >= len(self.kube.history)

    def terminating(self) -> bool:
        """Are pods still terminating (a change the kubelet has yet to make: the cluster is not at rest)?"""
        return self.pod_grace > 0 and any(
            plural == PODS.plural and ns == self.ns and o["metadata"].get("deletionTimestamp")
            for (plural, ns, _), o in self.kube.objects.items()
        )

    def when_reconciled(self) -> Outcome:
        self._catch_up()
        outcome = self.reconciler.reconcile(self.ns, NAME)
        self.outcomes.append(outcome)
        return outcome

    def when_restarted(self) -> None:
        """A new controller process: everything deliver kept in memory is gone (its cache too)."""
        if self.cache is not None:
            self.cache = Cache()
            self._cached_upto = -1
        self.reconciler = self._reconciler()

    def when_settled(self, passes: int = 300, until: Callable[[Fixture], bool] | None = None) -> Outcome:
        """Reconcile, let the cluster act, let time pass; until deliver has nothing left to do (or ``until``)."""
        quiet = 0
        outcome = Outcome(None)
        for _ in range(passes):
            if until is not None and until(self):
                return outcome
            outcome = self.when_reconciled()
            before = self.kube.rv
            self.cluster()
            # a lagging cache's watch still has events to deliver: each of them would start a pass
            caught_up = self.cache_caught_up() and not self.terminating()
            if outcome.requeue_after is None and self.kube.rv == before and caught_up:
                quiet += 1
                if quiet >= 2:
                    return outcome
            else:
                quiet = 0
            self.now += max(outcome.requeue_after or 1.0, 0.5)
        raise AssertionError(f"not settled after {passes} passes: {self.record()}")

    def when_time_passes(self, seconds: float) -> None:
        self.now += seconds

    # ------------------------------------------------------------------ the cluster's controllers

    def cluster(self) -> None:
        """One round of the Deployment controller, the ReplicaSet controller and the kubelet."""
        self._terminated()
        self._deployment_controller()
        for rs in self.kube.find(REPLICASETS, self.ns):
            self._replicaset_controller(rs)
        self._deployment_status()

    def _owned(self, d: dict[str, Any]) -> list[dict[str, Any]]:
        uid = d["metadata"]["uid"]
        return [
            rs
            for rs in self.kube.find(REPLICASETS, self.ns, selector_string(d["spec"]["selector"]))
            if any(r.get("uid") == uid and r.get("controller") for r in rs["metadata"].get("ownerReferences") or [])
        ]

    def _deployment_controller(self) -> None:
        try:
            d = self.kube.obj(DEPLOYMENTS, NAME, self.ns)
        except KeyError:
            return
        want = int(d["spec"].get("replicas", 1))
        rev = templates.revision(d["spec"]["template"])
        owned = self._owned(d)
        new = next((rs for rs in owned if templates.revision(rs["spec"]["template"]) == rev), None)
        if d["spec"].get("paused"):
            # paused stops rollouts, not scaling (the real controller's sync -> scale, which
            # runs for a paused Deployment too): the one active ReplicaSet, or with none active the
            # one of the template, else the newest, is scaled to spec.replicas; no ReplicaSet is
            # created while paused
            olds = sorted((rs for rs in owned if rs is not new), key=_created, reverse=True)
            active = [rs for rs in ([new] if new is not None else []) + olds if int(rs["spec"].get("replicas") or 0)]
            target = (
                active[0]
                if len(active) == 1
                else None
                if active
                else (new if new is not None else olds[0] if olds else None)
            )
            if target is not None:
                self._scale(target, want)
                return
            saturated = (
                new is not None
                and int(new["spec"]["replicas"]) == want
                and int((new.get("status") or {}).get("availableReplicas") or 0) >= want
            )
            olds = olds if saturated else []
        else:
            if (d["spec"].get("strategy") or {}).get("type") == "Recreate" and self._old_pods(d, new):
                return  # Recreate: the old pods are scaled away and gone (terminating ones too) first
            if self.stepwise and (d["spec"].get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
                self._rolling_update(d, new, want)
                return
            if new is None:
                image = d["spec"]["template"]["spec"]["containers"][0]["image"]
                new = self.given_replicaset(image, want, owner=d)
            olds = [rs for rs in owned if rs["metadata"]["name"] != new["metadata"]["name"]]
            self._scale(new, want)
        for rs in olds:
            self._scale(rs, 0)

    def _rolling_update(self, d: dict[str, Any], new: dict[str, Any] | None, want: int) -> None:
        """One sync of the real controller's rolloutRolling: the new ReplicaSet scaled up within
        maxSurge, then the old ones down within maxUnavailable (their unavailable pods first), counting
        only available pods (defaults 25 %: surge rounded up, unavailable down; both 0 means 1 unavailable)."""
        rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        surge = _share(rolling.get("maxSurge", "25%"), want, up=True)
        unavailable = _share(rolling.get("maxUnavailable", "25%"), want, up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        olds = [rs for rs in self._owned(d) if new is None or rs["metadata"]["uid"] != new["metadata"]["uid"]]

        def replicas(rs: dict[str, Any]) -> int:
            return int(rs["spec"].get("replicas") or 0)

        def available(rs: dict[str, Any]) -> int:
            return min(replicas(rs), int((rs.get("status") or {}).get("availableReplicas") or 0))

        total = sum(replicas(rs) for rs in olds) + (replicas(new) if new is not None else 0)
        current = replicas(new) if new is not None else 0
        target = want if current > want else min(want, current + max(0, want + surge - total))
        if new is None:
            image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            new = self.given_replicaset(image, target, owner=d)
        elif target != current:
            self._scale(new, target)
        else:  # (a sync that scaled the new one up ends there: the old ones go at a later one)
            minimum = want - unavailable
            total = sum(replicas(rs) for rs in olds) + replicas(new)
            room = total - minimum - (replicas(new) - available(new))
            for rs in sorted(olds, key=_created):  # unavailable old pods first
                cut = min(room, replicas(rs) - available(rs))
                if cut > 0:
                    self._scale(rs, replicas(rs) - cut)
                    room -= cut
            olds = [self.kube.obj(REPLICASETS, rs["metadata"]["name"], self.ns) for rs in olds]
            spare = sum(available(rs) for rs in olds) + available(new) - minimum
            for rs in sorted(olds, key=_created):
                cut = min(replicas(rs), spare)
                if cut > 0:
                    self._scale(rs, replicas(rs) - cut)
                    spare -= cut

    def _old_pods(self, d: dict[str, Any], new: dict[str, Any] | None) -> bool:
        """A Recreate rollout (the real controller's rolloutRecreate): the old ReplicaSets are scaled to
        zero, and while any of their pods still exists (running or terminating) the new ReplicaSet is
        neither created nor scaled up. True while that is so."""
        olds = [rs for rs in self._owned(d) if new is None or rs["metadata"]["uid"] != new["metadata"]["uid"]]
        for rs in olds:
            self._scale(rs, 0)
        uids = {rs["metadata"]["uid"] for rs in olds}
        return any(
            (p["metadata"].get("ownerReferences") or [{}])[0].get("uid") in uids for p in self.kube.find(PODS, self.ns)
        )

    def _scale(self, rs: dict[str, Any], replicas: int) -> None:
        stored = self.kube.obj(REPLICASETS, rs["metadata"]["name"], self.ns)
        if int(stored["spec"].get("replicas") or 0) != replicas:
            stored["spec"]["replicas"] = replicas
            self.kube.put(REPLICASETS, stored)

    def _replicaset_controller(self, rs: dict[str, Any]) -> None:
        name = rs["metadata"]["name"]
        want = int(rs["spec"].get("replicas") or 0)
        mine = [
            p
            for p in self.kube.find(PODS, self.ns)
            if (p["metadata"].get("ownerReferences") or [{}])[0].get("uid") == rs["metadata"]["uid"]
        ]
        pods = [p for p in mine if not p["metadata"].get("deletionTimestamp")]
        for pod in pods[want:]:
            if self.pod_grace > 0:
                self._terminate(pod)
            else:
                self.kube.remove(PODS, pod["metadata"]["name"], self.ns)
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        crashing = image in self.crashing
        taken = {p["metadata"]["name"] for p in mine}
        free = (f"{name}-{i}" for i in range(len(mine) + want) if f"{name}-{i}" not in taken)
        for _ in range(len(pods), want):
            self.kube.put(
                PODS,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": next(free),
                        "namespace": self.ns,
                        "labels": copy.deepcopy(rs["spec"]["template"]["metadata"]["labels"]),
                        "ownerReferences": [owner_ref(rs, "ReplicaSet")],
                    },
                    "spec": copy.deepcopy(rs["spec"]["template"]["spec"]),
                    "status": self._pod_status(crashing),
                },
            )
        ready = 0 if crashing else want
        status = {"replicas": want, "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1}
        if {k: (rs.get("status") or {}).get(k) for k in status} != status:
            self.kube.update_status(REPLICASETS, name, status, self.ns)

    def _terminate(self, pod: dict[str, Any]) -> None:
        """The pod is deleted with a grace period: it runs on, terminating and no longer Ready, until
        ``pod_grace`` seconds from now (its deletionTimestamp, as the API server sets it)."""
        pod["metadata"]["deletionTimestamp"] = timestamp(self.now + self.pod_grace)
        pod["metadata"]["deletionGracePeriodSeconds"] = int(self.pod_grace)
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                c["status"] = "False"
        self.kube.put(PODS, pod)

    def _terminated(self) -> None:
        """The kubelet ends the terminating pods whose grace period is over."""
        if self.pod_grace <= 0:
            return
        for pod in self.kube.find(PODS, self.ns):
            deleted = pod["metadata"].get("deletionTimestamp")
            if deleted and datetime.fromisoformat(deleted.replace("Z", "+00:00")).timestamp() <= self.now:
                self.kube.remove(PODS, pod["metadata"]["name"], self.ns)

    def _pod_status(self, crashing: bool) -> dict[str, Any]:
        since = timestamp(self.now)
        if crashing:
            return {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": since}],
                "containerStatuses": [
                    {"name": "app", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            }
        return {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": since}],
            "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"running": {}}}],
        }

    def _deployment_status(self) -> None:
        try:
            d = self.kube.obj(DEPLOYMENTS, NAME, self.ns)
        except KeyError:
            return
        rev = templates.revision(d["spec"]["template"])
        owned = self._owned(d)
        count = {
            k: sum(int((rs.get("status") or {}).get(k) or 0) for rs in owned)
            for k in ("replicas", "readyReplicas", "availableReplicas")
        }
        updated = sum(int(rs["spec"]["replicas"]) for rs in owned if templates.revision(rs["spec"]["template"]) == rev)
        status: dict[str, Any] = dict(count, updatedReplicas=updated, observedGeneration=d["metadata"]["generation"])
        # conditions as the real controller keeps them: a paused Deployment's Progressing condition
        # stays as it is (a ProgressDeadlineExceeded one above all); unpaused and complete, it says so
        conditions = [dict(c) for c in (d.get("status") or {}).get("conditions") or []]
        want = int(d["spec"].get("replicas", 1))
        if not d["spec"].get("paused") and updated == want == count["availableReplicas"] == count["replicas"]:
            conditions = [c for c in conditions if c.get("type") != "Progressing"] + [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        if conditions:
            status["conditions"] = conditions
        if {k: (d.get("status") or {}).get(k) for k in status} != status:
            self.kube.update_status(DEPLOYMENTS, NAME, status, self.ns)

    # ------------------------------------------------------------------ then

    def deployment(self) -> dict[str, Any]:
        return copy.deepcopy(self.kube.obj(DEPLOYMENTS, NAME, self.ns))

    def record(self) -> dict[str, Any]:
        """The persisted delivery record, as JSON (``deliver.dev/state``)."""
        raw = (self.deployment()["metadata"].get("annotations") or {}).get(STATE)
        return json.loads(raw) if raw else {}

    def image(self) -> str:
        """The image of the Deployment's pod template."""
        return str(self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"])

    def replicasets(self, image: str | None = None) -> list[dict[str, Any]]:
        return [
            rs
            for rs in self.kube.find(REPLICASETS, self.ns)
            if image is None or rs["spec"]["template"]["spec"]["containers"][0]["image"] == image
        ]

    def delivers_replicasets(self) -> list[dict[str, Any]]:
        """deliver's own ReplicaSets (its owner label, no controller)."""
        return self.kube.find(REPLICASETS, self.ns, f"{templates.OWNER_LABEL}={NAME}")

    def serving(self) -> dict[str, int]:
        """image -> pods running it."""
        out: dict[str, int] = {}
        for rs in self.replicasets():
            if int(rs["spec"]["replicas"] or 0):
                image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
                out[image] = out.get(image, 0) + int(rs["spec"]["replicas"])
        return out

    def pods_by_image(self) -> dict[str, int]:
        """image -> pods that exist, terminating ones included (they may still run); read in place, no copies."""
        out: dict[str, int] = {}
        for (plural, ns, _), pod in self.kube.objects.items():
            if plural == PODS.plural and ns == self.ns:
                image = pod["spec"]["containers"][0]["image"]
                out[image] = out.get(image, 0) + 1
        return out

    def events(self, reason: str | None = None, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kube.find(EVENTS, self.ns)
            if (reason is None or e["reason"] == reason) and (type_ is None or e["type"] == type_)
        ]

    def reasons(self) -> list[str]:
        """Event reasons in the order they were created."""
        found = sorted(self.kube.find(EVENTS, self.ns), key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [e["reason"] for e in found]

    def writes_to(self, plural: str, verb: str | None = None) -> list[Any]:
        return [w for w in self.kube.writes if w.plural == plural and (verb is None or w.verb == verb)]


def _share(value: int | str, of: int, up: bool) -> int:
    """A rollingUpdate limit (a count, or a percentage of ``of`` rounded up or down)."""
    if isinstance(value, str) and value.endswith("%"):
        exact = of * int(value[:-1]) / 100
        return math.ceil(exact) if up else math.floor(exact)
    return int(value)


def _created(obj: dict[str, Any]) -> tuple[str, int]:
    """Creation order: the timestamp, then the fake's serial (in the uid) for objects of the same second."""
    meta = obj["metadata"]
    serial = str(meta.get("uid", "")).rsplit("-", 1)[-1]
    return meta.get("creationTimestamp") or "", int(serial) if serial.isdigit() else 0


def timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
