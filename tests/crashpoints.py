"""The crash-point explorer (issue 10, "a proof, not more examples"), on the one fake API.

A scenario is a strategy's Deployment at rest on v1 (``given``) and a script of steps, each what the
user or an operator does (a new template, a request, an annotation, a scale) and then the controllers
running until deliver is at rest (or until a condition). ``explore`` runs it once cleanly, counting
deliver's API writes; then, for every k, once with the k-th write failing (a 500, or a 409 for a
patch) and once with the process dying right at it (``Crash``: a fresh ``Reconciler`` resumes on the
same cluster), each time to the end. After every reconcile pass, and at the end, it checks:

* no Service that receives traffic (the user's Service; with a router, every backend of a weight
  above 0) selects zero Ready pods while any Ready pod of the app exists and the Deployment wants
  replicas (scaled to zero, the user asked for no serving capacity: the Deployment controller drops
  the stable pods at once and deliver its own a pass later);
* a revision that failed is never the stable one afterwards (unless an operator retried it);
* each operator request is applied exactly once per send, counted from its effect (an abort puts the
  delivery in Aborted, a promote leaves a step before its interval, a retry writes the failed
  template back, pause/resume enter/leave an operator's pause), and recorded as handled;
* at the end: the same terminal record, template, pods, Service selectors and route weights as the
  clean run; no ReplicaSet of deliver's with replicas > 0 at rest; no pin left after a release;
* a scenario's own ``checks`` (``Check``): at every observed point, i.e. after each of deliver's
  passes (crashed or not) and after each round of the cluster's controllers, and at the end.

Violations are collected with the crash point that caused them, never stopped at the first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from delivery import templates
from delivery.engine.reconcile import Outcome
from delivery.errors import Conflict, DeliverError, KubeError
from delivery.kube.client import DEPLOYMENTS, PODS, SERVICES, Resource
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from delivery.routing.nginx import CANARY, CANARY_WEIGHT, INGRESSES
from delivery.routing.smi import TRAFFICSPLITS
from tests.fakekube import Crash
from tests.fixture import NAME, STATE, Fixture, template

V1, V2, V3 = "web:v1", "web:v2", "web:v3"
REQUEST = "deliver.dev/request"

Until = Callable[[Fixture], bool]


@dataclass(frozen=True)
class Step:
    """What happens (``do``, on the cluster, not through deliver's API writes), then the controllers
    run until deliver is at rest, or until ``until`` holds."""

    do: Callable[[Fixture, Explorer], None] | None = None
    until: Until | None = None


@dataclass(frozen=True)
class Check:
    """A scenario's own invariant. ``observe`` runs at every observed point: after each of deliver's
    passes (also one cut short by a crash or an error) and after each round of the cluster's
    controllers; ``end`` once the run is at rest. Each returns what it found wrong (no crash point:
    the explorer adds it)."""

    observe: Callable[[Explorer], list[str]] | None = None
    end: Callable[[Explorer], list[str]] | None = None


@dataclass(frozen=True)
class Scenario:
    strategy: str  # canary | router | blue-green | rolling | recreate (| rolling-policy ...: a figures key)
    name: str
    given: Callable[[], Fixture]
    steps: tuple[Step, ...]
    failed: frozenset[str] = frozenset()  # images that crash-loop from the start
    # other Deployments reconciled by the same process (another worker each), on the same fake API:
    # each made from the main fixture (its namespace, the shared kube); a crash restarts them all
    peers: tuple[Callable[[Fixture], Fixture], ...] = ()
    # the faults tried at each crash point: "error" (500, or 409 for even k), "crash" (the process
    # dies), "relist" (the informer cache relists and gets an older list: Fixture.stale_relist)
    modes: tuple[str, ...] = ("error", "crash")
    checks: tuple[Check, ...] = ()


@dataclass
class Explorer:
    """One run of a scenario: the fixture, what was asked of deliver, and what went wrong."""

    f: Fixture
    label: str
    failed_images: frozenset[str] = frozenset()  # the scenario's crash-looping images (what a retry re-applies)
    violations: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (verb, id) sent
    failed_revisions: set[str] = field(default_factory=set)
    applied: set[str] = field(default_factory=set)  # request ids the record has shown as handled
    released: bool = False
    crashes: int = 0
    errors: int = 0
    # what each operator request did, counted from its effect on the cluster (the record's phase
    # and step, the Deployment's template), never from its Event: verb -> times applied
    effects: dict[str, int] = field(default_factory=dict)
    interval: float = 30.0  # the scenario's step interval: a step left sooner was skipped by a promote
    seen: tuple[dict[str, Any], str] | None = None  # (record, template image) after the last pass
    peers: list[Explorer] = field(default_factory=list)  # the other workers' Deployments (same process)
    checks: tuple[Check, ...] = ()  # the scenario's own invariants

    # ---- what the user and operators do (the cluster's own writes: never counted as deliver's)

    def request(self, verb: str) -> None:
        rid = f"r{len(self.requests) + 1}-{verb}"
        d = self.f.kube.obj(DEPLOYMENTS, NAME, self.f.ns)
        d["metadata"].setdefault("annotations", {})[REQUEST] = json.dumps({"verb": verb, "id": rid, "at": self.f.now})
        self.f.kube.put(DEPLOYMENTS, d)
        self.requests.append((verb, rid))

    # ---- running

    def settle(self, until: Until | None = None, passes: int = 200) -> None:
        """Like ``Fixture.when_settled``, but an API error out of a pass requeues (as the controller
        does), a ``Crash`` starts a new process, and the invariants are checked after every pass.
        With peers, each pass of this Deployment is followed by one of each peer's (one worker each,
        one process: a crash in any of them restarts all), until all are at rest."""
        f = self.f
        workers = [self, *self.peers]
        quiet = 0
        for _ in range(passes):
            if until is not None and until(f):
                return
            outcomes = []
            for w in workers:
                w.f.now = f.now
                try:
                    outcome = w.f.when_reconciled()
                except Crash:
                    self.crashes += 1
                    for other in workers:
                        other.f.when_restarted()
                    outcome = Outcome(0.0)
                except (KubeError, DeliverError):
                    self.errors += 1
                    outcome = Outcome(5.0)
                outcomes.append(outcome)
            for w in workers:
                w.check_observed()
            before = f.kube.rv
            for w in workers:
                w.f.cluster()
            for w in workers:
                w.check_pass()
            # at rest: nothing changed and nothing is due, or held for an operator or for replicas to
            # come back (a delivery behind a router still looks at its route every few seconds while it waits)
            waiting = all(
                o.requeue_after is None
                or current_record(w.f).get("phase") == "Paused"
                or current_record(w.f).get("hold") == "NoReplicas"
                for w, o in zip(workers, outcomes, strict=True)
            )
            # a lagging cache's watch still has events to deliver: each of them would start a pass;
            # a terminating pod is still to go
            if (
                waiting
                and f.kube.rv == before
                and all(w.f.cache_caught_up() and not w.f.terminating() for w in workers)
            ):
                quiet += 1
                if quiet >= 2:
                    return
            else:
                quiet = 0
            f.now += min(max(o.requeue_after or 1.0, 0.5) for o in outcomes)
        self.violate(f"not at rest after {passes} passes: {f.record()}")

    def run(self, scenario: Scenario) -> None:
        for step in scenario.steps:
            if step.do is not None:
                step.do(self.f, self)
                for w in (self, *self.peers):  # the user's own change is no effect
                    w.seen = (current_record(w.f), w.f.image())
            self.settle(step.until)

    def count_effects(self) -> None:
        """Each request's effect, from one pass to the next: an abort puts the delivery in Aborted;
        a promote leaves a step before its interval (or starts the promotion early); a retry writes
        the failed revision's template back; pause and resume enter and leave an operator's pause."""
        f = self.f
        record, image = current_record(f), f.image()
        if self.seen is None:
            self.seen = (record, image)
            return
        before, before_image = self.seen
        self.seen = (record, image)
        was, now = before.get("phase"), record.get("phase")
        sent = {verb for verb, _ in self.requests}

        def applied(verb: str) -> None:
            self.effects[verb] = self.effects.get(verb, 0) + 1

        if "abort" in sent and now == "Aborted" and was != "Aborted":
            applied("abort")
        early = f.now - float(before.get("stepStarted") or 0.0) < self.interval
        moved_on = int(record.get("step") or 0) > int(before.get("step") or 0) or (
            was in ("Progressing", "Paused") and now in ("Promoting", "Succeeded")
        )
        if (
            sent & {"promote", "promote-full"}
            and moved_on
            and early
            and record.get("revision") == before.get("revision")
        ):
            applied("promote-full" if "promote-full" in sent else "promote")
        if "retry" in sent and image != before_image and image in self.failed_images:
            applied("retry")
        if "pause" in sent and now == "Paused" and record.get("hold") == "Operator" and was != "Paused":
            applied("pause")
        if "resume" in sent and was == "Paused" and before.get("hold") == "Operator" and now != "Paused":
            applied("resume")

    # ---- invariants

    def violate(self, what: str) -> None:
        if self.label.startswith("peer "):
            what = f"{self.label.split(':')[0]}: {what}"
        if what not in self.violations:
            self.violations.append(what)

    def check_observed(self) -> None:
        """The scenario's own invariants, at this point."""
        for check in self.checks:
            for what in check.observe(self) if check.observe is not None else ():
                self.violate(what)

    def check_pass(self) -> None:
        self.check_observed()
        f = self.f
        record = current_record(f)
        handled = record.get("handledRequest") or ""
        if handled not in self.applied and any(rid == handled for v, rid in self.requests if v == "retry"):
            self.failed_revisions.clear()  # the operator's retry was applied: the failed revision may go out again
        self.applied.add(handled)
        failed = record.get("failedRevision") or ""
        retrying = record.get("retrying") or ""  # an applied retry keeps the revision until its template is written
        if failed and failed != retrying and record.get("phase") in ("RolledBack", "Aborted", "Paused", "RollingBack"):
            self.failed_revisions.add(failed)
        stable = record.get("stableRevision") or ""
        if stable and stable in self.failed_revisions:
            self.violate(f"failed revision {stable} promoted to stable (phase {record.get('phase')})")
        ready = ready_pods(f)
        # Scaled to zero (KEDA, an operator), nothing is meant to serve: the Deployment controller
        # takes the stable pods away at once (a paused Deployment is still scaled), deliver its own
        # a pass later; a Service without Ready pods then is what the user asked for, not an outage.
        wanted = int(f.kube.obj(DEPLOYMENTS, NAME, f.ns)["spec"].get("replicas", 1))
        if ready and wanted > 0:
            for service in traffic_services(f):
                if not selected_ready(f, service):
                    self.violate(f"Service {service} receives traffic and selects no Ready pod ({record.get('phase')})")
        self.count_effects()
        for verb, _ in self.requests:
            count = self.effects.get(verb, 0)
            sent = sum(1 for v, _ in self.requests if v == verb)
            if count > sent:
                self.violate(f"request {verb} applied {count} times for {sent} sent")

    def check_end(self, clean: Ending | None) -> Ending:
        f = self.f
        end = ending(f)
        record = f.record()
        if record and record.get("phase") not in ("Idle", "Succeeded", "RolledBack", "Aborted", "Paused"):
            self.violate(f"not at rest: phase {record.get('phase')}")
        for rs in f.delivers_replicasets():
            if int(rs["spec"].get("replicas") or 0) > 0 and record.get("phase") != "Paused":
                self.violate(f"deliver's ReplicaSet {rs['metadata']['name']} left with replicas at rest")
        if self.released:
            for svc in f.kube.find(SERVICES, f.ns):
                if templates.HASH_LABEL in (svc["spec"].get("selector") or {}):
                    self.violate(f"Service {svc['metadata']['name']} still pinned after the release")
        for verb in {v for v, _ in self.requests}:
            sent = sum(1 for v, _ in self.requests if v == verb)
            if self.effects.get(verb, 0) != sent:
                self.violate(f"request {verb} applied {self.effects.get(verb, 0)} times for {sent} sent (lost)")
        handled = record.get("handledRequest", "")
        if self.requests and record and handled != self.requests[-1][1]:
            self.violate(f"request {self.requests[-1]} not recorded as handled (handledRequest={handled!r})")
        if clean is not None and end != clean:
            diff = {
                k: (getattr(clean, k), getattr(end, k))
                for k in Ending.__dataclass_fields__
                if getattr(clean, k) != getattr(end, k)
            }
            self.violate(f"ended differently from the clean run: {diff}")
        for check in self.checks:
            for what in check.end(self) if check.end is not None else ():
                self.violate(f"at the end: {what}")
        return end


@dataclass(frozen=True)
class Ending:
    """What a run leaves on the cluster, compared with the clean run's."""

    phase: str
    revision: str
    stable: str
    failed: str
    image: str
    serving: tuple[tuple[str, int], ...]
    selectors: tuple[tuple[str, str], ...]  # Service receiving traffic -> images of the pods it selects
    weights: tuple[tuple[str, int], ...]
    delivers_replicasets: int


def ending(f: Fixture) -> Ending:
    record = f.record()
    selectors = tuple((name, ",".join(sorted(selected_images(f, name)))) for name in traffic_services(f))
    return Ending(
        phase=record.get("phase", "-"),
        revision=record.get("revision", ""),
        stable=record.get("stableRevision", ""),
        failed=record.get("failedRevision", ""),
        image=f.image(),
        serving=tuple(sorted(f.serving().items())),
        selectors=selectors,
        weights=tuple(sorted(route_weights(f).items())),
        delivers_replicasets=len(f.delivers_replicasets()),
    )


# ------------------------------------------------------------------ what receives traffic


def route_weights(f: Fixture) -> dict[str, int]:
    """Backend Service -> weight, from whichever route the scenario uses (Gateway API HTTPRoute,
    Istio VirtualService, SMI TrafficSplit, or the user's Ingress with deliver's NGINX canary Ingress)."""
    kinds = {res.plural: res for res in (HTTPROUTES, VIRTUALSERVICES, TRAFFICSPLITS, INGRESSES)}
    found = {
        plural: o for (plural, ns, name), o in f.kube.objects.items() if ns == f.ns and name == NAME and plural in kinds
    }
    if HTTPROUTES.plural in found:
        rules = found[HTTPROUTES.plural]["spec"]["rules"]
        return {b["name"]: int(b.get("weight", 1)) for r in rules for b in r["backendRefs"]}
    if VIRTUALSERVICES.plural in found:
        out: dict[str, int] = {}
        for http in found[VIRTUALSERVICES.plural]["spec"].get("http") or []:
            routes = http.get("route") or []
            for r in routes:
                host = r["destination"]["host"].split(".")[0]
                out[host] = out.get(host, 0) + int(r.get("weight", 100 if len(routes) == 1 else 0))
        return out
    if TRAFFICSPLITS.plural in found:
        return {b["service"]: int(b.get("weight", 0)) for b in found[TRAFFICSPLITS.plural]["spec"]["backends"]}
    if INGRESSES.plural in found:
        canary = f.kube.objects.get((INGRESSES.plural, f.ns, f"{NAME}-canary"))
        annotations = (canary or {}).get("metadata", {}).get("annotations") or {}
        weight = int(annotations.get(CANARY_WEIGHT, 0)) if annotations.get(CANARY) == "true" else 0
        return {f"{NAME}-stable": 100 - weight, f"{NAME}-canary": weight}
    return {}


def traffic_services(f: Fixture) -> list[str]:
    """The user's Service, and each route backend that gets a share of the traffic."""
    names = [NAME] if (SERVICES.plural, f.ns, NAME) in f.kube.objects else []
    names += [name for name, weight in route_weights(f).items() if weight > 0]
    return names


def stored(f: Fixture, res: Resource) -> list[dict[str, Any]]:
    """The stored objects of a kind in the namespace, not copied (read only: checks run after every pass)."""
    return [o for (plural, ns, _), o in f.kube.objects.items() if plural == res.plural and ns == f.ns]


def selects(selector: dict[str, str], obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def current_record(f: Fixture) -> dict[str, Any]:
    raw = (f.kube.obj(DEPLOYMENTS, NAME, f.ns)["metadata"].get("annotations") or {}).get(STATE)
    return json.loads(raw) if raw else {}


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", []))


def ready_pods(f: Fixture) -> list[dict[str, Any]]:
    return [p for p in stored(f, PODS) if (p["metadata"].get("labels") or {}).get("app") == NAME and is_ready(p)]


def selected_images(f: Fixture, service: str) -> set[str]:
    try:
        selector = f.kube.obj(SERVICES, service, f.ns)["spec"].get("selector") or {}
    except KeyError:
        return set()
    return {p["spec"]["containers"][0]["image"] for p in stored(f, PODS) if selects(selector, p) and is_ready(p)}


def selected_ready(f: Fixture, service: str) -> bool:
    try:
        selector = f.kube.obj(SERVICES, service, f.ns)["spec"].get("selector") or {}
    except KeyError:
        return False
    return any(is_ready(p) for p in stored(f, PODS) if selects(selector, p)) if selector else False


# ------------------------------------------------------------------ exploring


@dataclass
class Report:
    scenario: str
    writes: int  # deliver's API writes in the clean run (the crash points)
    explored: int  # runs with a fault injected
    violations: list[str]


def run_once(
    scenario: Scenario, fault: Callable[[Fixture], None] | None, label: str, clean: tuple[Ending, ...] | None
) -> tuple[Explorer, tuple[Ending, ...], int]:
    f = scenario.given()
    f.crashing |= set(scenario.failed)
    explorer = Explorer(f, label, failed_images=scenario.failed, checks=scenario.checks)
    for make in scenario.peers:
        peer = make(f)
        peer.crashing |= set(scenario.failed)
        # a peer's violations are the run's: they share its list
        explorer.peers.append(Explorer(peer, f"peer {peer.ns}: {label}", scenario.failed, explorer.violations))
    if f.cache is not None:
        f.mark_origin()
    start = len(f.kube.writes)
    if fault is not None:
        fault(f)
    explorer.run(scenario)
    workers = [explorer, *explorer.peers]
    ends = tuple(w.check_end(clean[i] if clean is not None else None) for i, w in enumerate(workers))
    return explorer, ends, len(f.kube.writes) - start


def explore(scenario: Scenario) -> Report:
    clean_run, clean, writes = run_once(scenario, None, "clean", None)
    violations = [f"clean: {v}" for v in clean_run.violations]
    explored = 0
    for k in range(1, writes + 1):
        for mode in scenario.modes:

            def fault(f: Fixture, k: int = k, mode: str = mode) -> None:
                if mode == "crash":
                    f.kube.crash_at_write(k)
                elif mode == "relist":
                    f.kube.before_write(lambda kube: f.stale_relist(), _kth(k))
                else:
                    f.kube.fail_at_write(k, _error_for(f, k))

            run, _, _ = run_once(scenario, fault, f"{mode}@{k}", clean)
            explored += 1
            violations += [f"{mode} at write {k}: {v}" for v in run.violations]
    return Report(f"{scenario.strategy}/{scenario.name}", writes, explored, violations)


def _kth(k: int) -> Callable[[Any], bool]:
    """A ``before_write`` match for the k-th write from now."""
    seen = [0]

    def match(_write: Any) -> bool:
        seen[0] += 1
        return seen[0] == k

    return match


def _error_for(f: Fixture, k: int) -> BaseException:
    """Odd crash points get a 500, even ones a 409 Conflict (a concurrent writer)."""
    if k % 2:
        return KubeError("500 Internal Server Error: etcdserver: request timed out", status=500, reason="InternalError")
    return Conflict("409 Conflict: the object has been modified", status=409, reason="Conflict")


__all__ = ["Check", "Scenario", "Step", "Explorer", "Report", "explore", "V1", "V2", "V3", "template", "STATE"]
