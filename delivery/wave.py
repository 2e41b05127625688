"""``deliver wave``: ship one change through several clusters, stage by stage, with the gate's semantics.

Each cluster's own deliver controller does each delivery; the wave only sequences them:

1. **Observe** every stage from its cluster (``observe``, pure): the wave's marker on the
   Deployment (annotation ``wave.deliver.dev/stage``: wave id, revision, when applied, passed,
   rolled back) and deliver's record, read with the gate's ``decide``.
2. **Plan** (``plan``, pure): the first group of stages not yet passed runs now; a failed stage
   ends the wave, and says which earlier stages to put back (``on-failure: rollback``) or keep
   (``hold``); later stages stay untouched.
3. **Act**: apply the change to the group's stages (one JSON patch: template, overrides, marker,
   at the resourceVersion read), wait for each with ``delivery.gate.wait`` pinned to the change,
   soak, record ``passedAt``; then observe again.

No state lives outside the clusters: the same command run again (after a crash, a killed CI job)
observes the same stages and goes on where the wave stands. Two waves for the same app are kept
apart by a Lease (``deliver-wave-<app>``) in every stage's namespace (``WaveLocks``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from strategies.model import Phase

from . import junit, templates
from .errors import Conflict, DeliverError, KubeError, NotFound, StateError, WaveBusy
from .gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, Pin, decide, resolve, status_dict, wait
from .kube import DEPLOYMENTS, JSON_PATCH, LEASES, REPLICASETS, Kube, KubeClient, selector_string
from .leader import micro_time
from .state import read_state, send_request
from .wavefile import Change, ClusterRef, OnFailure, Stage, Wave, stage_problems

MARKER = "wave.deliver.dev/stage"
LOCK_DURATION = 30  # seconds a wave's Lease lasts unless renewed
LOCK_RENEW = 10.0
SOAK_POLL = 2.0
WRITE_ATTEMPTS = 5


class StageState(Enum):
    """Where one stage stands, as its cluster says."""

    PENDING = "Pending"  # this wave has not applied its change there
    DELIVERING = "Delivering"  # applied; the cluster's delivery goes on
    SOAKING = "Soaking"  # delivered; the soak time has not passed
    PASSED = "Passed"  # delivered (and soaked)
    FAILED = "Failed"  # rolled back, aborted, refused or held failed by the cluster's deliver
    ROLLED_BACK = "RolledBack"  # passed, then put back by this wave after a later stage failed
    UNREACHABLE = "Unreachable"  # its API server could not be read: where it stands is unknown


@dataclass(frozen=True)
class Marker:
    """What the wave wrote on a stage's Deployment (annotation ``wave.deliver.dev/stage``)."""

    id: str
    wave: str = ""
    stage: str = ""
    revision: str = ""  # the revision the wave applied
    previous: str = ""  # the stable revision before it (rollback goes back there)
    applied_at: float = 0.0
    passed_at: float = 0.0
    rolled_back_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "wave": self.wave,
                "stage": self.stage,
                "revision": self.revision,
                "previous": self.previous,
                "appliedAt": round(self.applied_at, 3),
                "passedAt": round(self.passed_at, 3),
                "rolledBackAt": round(self.rolled_back_at, 3),
            },
            separators=(",", ":"),
        )


def read_marker(deployment: dict[str, Any]) -> Marker | None:
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(MARKER)
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return Marker(
            id=str(d["id"]),
            wave=str(d.get("wave", "")),
            stage=str(d.get("stage", "")),
            revision=str(d.get("revision", "")),
            previous=str(d.get("previous", "")),
            applied_at=float(d.get("appliedAt") or 0),
            passed_at=float(d.get("passedAt") or 0),
            rolled_back_at=float(d.get("rolledBackAt") or 0),
        )
    except (ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------- observe (pure)


@dataclass(frozen=True)
class StageView:
    """One stage as observed: its state, the revision of the change there, and why."""

    stage: Stage
    state: StageState
    reason: str
    revision: str = ""
    ours: bool = False  # the marker is this wave's
    marker: Marker | None = None
    soak_left: float = 0.0
    held: bool = False  # the delivery failed and waits for an operator (auto-rollback off)
    status: dict[str, Any] = field(default_factory=dict)


def pin_of(stage: Stage, change: Change, deployment: dict[str, Any], marker: Marker | None, wid: str) -> Pin:
    if marker is not None and marker.id == wid and marker.revision and not change.manifest:
        return Pin(revision=marker.revision)
    return change.pin_for(stage, (deployment.get("spec") or {}).get("template") or {})


def observe(stage: Stage, change: Change, wid: str, deployment: dict[str, Any], now: float) -> StageView:
    """Where ``stage`` stands for the wave ``wid``, from its Deployment alone. Pure."""
    marker = read_marker(deployment)
    ours = marker is not None and marker.id == wid
    status = status_dict(deployment)
    try:
        pin = pin_of(stage, change, deployment, marker, wid)
    except ValueError as exc:
        return StageView(stage, StageState.FAILED if ours else StageState.PENDING, str(exc), "", ours, marker)
    want = resolve(pin, deployment)
    if ours and marker is not None and marker.rolled_back_at:
        return StageView(stage, StageState.ROLLED_BACK, "put back by this wave", want, True, marker, status=status)
    if not ours:
        # already there (delivered by someone else)? Exact for an image change; a manifest's template
        # is found by its images, which is not enough to skip writing it: it is applied (a no-op if same)
        if want and not change.manifest:
            code, reason = decide(want, deployment)
            if code == EXIT_OK:
                return StageView(
                    stage, StageState.PASSED, f"already delivered: {reason}", want, False, marker, status=status
                )
        return StageView(stage, StageState.PENDING, "not applied by this wave yet", want, False, marker, status=status)
    assert marker is not None
    template = (deployment.get("spec") or {}).get("template") or {}
    if not want and pin.matches(template):  # applied; the controller has not taken it up yet
        return StageView(
            stage,
            StageState.DELIVERING,
            "waiting for the controller to start delivering the change",
            templates.revision(template),
            True,
            marker,
            status=status,
        )
    if not want:
        return StageView(
            stage,
            StageState.FAILED,
            "the change is neither the Deployment's template nor in deliver's record (changed by someone else)",
            "",
            True,
            marker,
            status=status,
        )
    code, reason = decide(want, deployment)
    if code is None:
        return StageView(stage, StageState.DELIVERING, reason, want, True, marker, status=status)
    if code == EXIT_OK:
        passed = marker.passed_at
        left = stage.soak - (now - passed) if passed else stage.soak
        if left > 0:
            return StageView(stage, StageState.SOAKING, reason, want, True, marker, left, status=status)
        return StageView(stage, StageState.PASSED, reason, want, True, marker, status=status)
    held = status.get("phase") == Phase.PAUSED.value
    return StageView(stage, StageState.FAILED, reason, want, True, marker, held=held, status=status)


# ---------------------------------------------------------------------------- plan (pure)


@dataclass(frozen=True)
class WavePlan:
    """What the wave does next. ``outcome``: "run" (the stages in ``run``), "passed" or "failed"."""

    outcome: str
    reason: str
    run: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    undo: tuple[str, ...] = ()  # passed stages of this wave to put back, the latest first
    abort: tuple[str, ...] = ()  # deliveries of this wave to abort (still going, or held failed)
    untouched: tuple[str, ...] = ()  # stages the wave never reached
    # stages whose API server cannot be read and which this wave may have changed: a rollback
    # cannot know whether they need putting back (the run exits 4: run the wave again to finish)
    unreachable: tuple[str, ...] = ()


def plan(wave: Wave, views: Mapping[str, StageView], until: str | None = None) -> WavePlan:
    """The next move of the wave, from the observed stages. Pure."""
    stages = wave.stages
    lost = tuple(s.name for s in stages if views[s.name].state is StageState.UNREACHABLE)
    failed = tuple(s.name for s in stages if views[s.name].state is StageState.FAILED)
    rolled = tuple(s.name for s in stages if views[s.name].state is StageState.ROLLED_BACK)
    if failed or rolled:
        first = failed[0] if failed else rolled[0]
        reason = (
            f"stage {first} failed: {views[first].reason}"
            if failed
            else f"stage {first} was put back by this wave after a failure"
        )
        at = wave.group_of(first)
        # A stage that cannot be read matters only if this wave may have changed it: it is in a group
        # up to the failed one, or up to the last group where a readable stage carries this wave's
        # change. A stage beyond both was never reached: its rollback is not needed (issue 24).
        reached = max([at] + [wave.group_of(s.name) for s in stages if views[s.name].ours])
        unknown = tuple(n for n in lost if wave.group_of(n) <= reached)
        untouched = tuple(
            s.name
            for g in wave.groups[at:]
            for s in g
            if views[s.name].state is StageState.PENDING
            or (views[s.name].state is StageState.UNREACHABLE and s.name not in unknown)
        )
        undo: tuple[str, ...] = ()
        abort: tuple[str, ...] = ()
        if wave.on_failure is OnFailure.ROLLBACK:
            reach = [s for g in wave.groups[: at + 1] for s in g]
            undo = tuple(
                s.name
                for s in reversed(reach)
                if views[s.name].ours and views[s.name].state in (StageState.PASSED, StageState.SOAKING)
            )
            abort = tuple(
                s.name
                for s in reach
                if views[s.name].ours
                and (
                    views[s.name].state is StageState.DELIVERING
                    or (views[s.name].state is StageState.FAILED and views[s.name].held)
                )
            )
        if wave.on_failure is not OnFailure.ROLLBACK:
            unknown = ()
        return WavePlan(
            "failed",
            reason,
            failed=failed or rolled,
            undo=undo,
            abort=abort,
            untouched=untouched,
            unreachable=unknown,
        )
    if lost:
        # nothing failed that can be seen: no stage is started while a cluster cannot be read
        return WavePlan("unreachable", f"stage {lost[0]}: {views[lost[0]].reason}", unreachable=lost)
    last = wave.group_of(until) if until else len(wave.groups) - 1
    for i, group in enumerate(wave.groups):
        todo = tuple(s.name for s in group if views[s.name].state is not StageState.PASSED)
        if not todo:
            continue
        if i > last:
            return WavePlan(
                "passed",
                f"stages up to {until} passed; {len(wave.stages) - sum(len(g) for g in wave.groups[: last + 1])} "
                "left for a later run",
                untouched=tuple(s.name for g in wave.groups[i:] for s in g),
            )
        return WavePlan("run", f"stage{'s' if len(todo) > 1 else ''} {', '.join(todo)}", run=todo)
    return WavePlan("passed", f"all {len(stages)} stages passed")


# ---------------------------------------------------------------------------- results


@dataclass
class StageResult:
    """How one stage ended in this run (``outcome``: passed, failed, rolled-back, held, timeout,
    api-error, delivering, abort-requested, not-reached)."""

    name: str
    where: str
    outcome: str = "not-reached"
    reason: str = ""
    revision: str = ""
    started: float = 0.0
    ended: float = 0.0
    phase: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started) if self.started else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "where": self.where,
            "result": self.outcome,
            "reason": self.reason,
            "revision": self.revision,
            "phase": self.phase,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class WaveResult:
    code: int
    reason: str
    wave: str
    id: str
    stages: list[StageResult]
    seconds: float = 0.0
    started: float = 0.0

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "passed", EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout", EXIT_API: "api-error"}.get(
            self.code, "error"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "id": self.id,
            "result": self.outcome,
            "exitCode": self.code,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
            "stages": [s.to_dict() for s in self.stages],
        }


def junit_suite(result: WaveResult) -> junit.Suite:
    """One JUnit test case per stage, in wave order."""
    suite = junit.Suite(f"deliver.wave.{result.wave}", timestamp=result.started, seconds=result.seconds)
    for i, s in enumerate(result.stages):
        case = junit.Case(f"stage {i + 1}: {s.name} ({s.where})", seconds=s.seconds, output=s.reason)
        if s.outcome in ("failed", "abort-requested"):
            case.result, case.message = "failed", s.reason
        elif s.outcome in ("timeout", "api-error"):
            case.result, case.message = "error", s.reason
        elif s.outcome in ("not-reached", "delivering"):
            case.result, case.message = "skipped", s.reason or "not reached"
        suite.cases.append(case)
    return suite


def write_junit(path: str, result: WaveResult) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(junit.to_xml(junit_suite(result)))


# ---------------------------------------------------------------------------- clusters


def where(stage: Stage, ref: ClusterRef) -> str:
    """How a stage is shown: ``context@host:port namespace/app``."""
    host = ref.server.split("://", 1)[-1].split("/", 1)[0]
    return f"{ref.context or 'in-cluster'}@{host} {stage.namespace}/{stage.app}"


def connect(refs: Mapping[str, ClusterRef]) -> dict[str, Kube]:
    """One client per distinct (kubeconfig, context); stages on the same cluster share it."""
    made: dict[tuple[str, str], Kube] = {}
    out: dict[str, Kube] = {}
    for name, ref in refs.items():
        key = (ref.kubeconfig, ref.context)
        if key not in made:
            made[key] = KubeClient.connect(ref.kubeconfig or None, ref.context or None)
        out[name] = made[key]
    return out


class StageUnreachable(DeliverError):
    """A stage's API server could not be read (exit 4); nothing further is changed."""

    def __init__(self, stage: str, error: KubeError) -> None:
        super().__init__(f"stage {stage}: {error}")
        self.stage = stage
        self.error = error


def read_stage(kube: Kube, stage: Stage) -> dict[str, Any] | None:
    """The stage's Deployment, None if it does not exist; StageUnreachable on API errors."""
    try:
        return kube.get(DEPLOYMENTS, stage.namespace, stage.app)
    except NotFound:
        return None
    except KubeError as exc:
        raise StageUnreachable(stage.name, exc) from exc


def preflight(wave: Wave, change: Change, kubes: Mapping[str, Kube]) -> list[str]:
    """Every reason the wave cannot run, from each stage's Deployment (reads only).

    StageUnreachable when a cluster cannot be read: the caller exits 4 before anything is touched.
    """
    problems: list[str] = []
    readers: dict[str, str] = {}  # Deployment uid -> the stage that reads it
    for s in wave.stages:
        deployment = read_stage(kubes[s.name], s)
        if deployment is None:
            problems.append(f"stage {s.name}: deployment {s.namespace}/{s.app} not found")
            continue
        # One cluster under two names (a DNS alias, a load balancer: the URLs differ) is found here:
        # a uid names one object of one cluster.
        uid = str((deployment.get("metadata") or {}).get("uid") or "")
        if uid and uid in readers:
            problems.append(
                f"stage {s.name}: deployment {s.namespace}/{s.app} is the very object stage {readers[uid]} reads "
                f"(uid {uid}): the two stages are one cluster under two names (a stage twice)"
            )
        readers.setdefault(uid, s.name)
        problems += [f"stage {s.name}: {p}" for p in stage_problems(s, change, deployment)]
    return problems


# ---------------------------------------------------------------------------- the lock


def lock_name(app: str) -> str:
    return f"deliver-wave-{app}"


def _wall(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return 0.0


class WaveLock:
    """A Lease ``deliver-wave-<app>`` in one stage's namespace: one wave per app at a time.

    The holder is ``<wave id>/<run id>``. Another wave's Lease that was renewed within its duration
    refuses this wave (``WaveBusy``); an expired one is taken over, and so is one of the same wave
    (a crashed or killed run of the same command: both converge on the same stages).
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        app: str,
        wid: str,
        clock: Callable[[], float] = time.time,
        identity: str = "",
    ):
        self.kube, self.namespace, self.name = kube, namespace, lock_name(app)
        self.wid = wid
        self.identity = identity or f"{wid}/{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = ""

    def acquire(self) -> None:
        for _ in range(WRITE_ATTEMPTS):
            now = self.clock()
            try:
                lease = self.kube.get(LEASES, self.namespace, self.name)
            except NotFound:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, now),
                }
                try:
                    self.kube.create(LEASES, self.namespace, body)
                    return
                except Conflict:
                    continue
            spec = lease.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            expires = _wall(spec.get("renewTime")) + float(spec.get("leaseDurationSeconds") or 0)
            if holder and holder.split("/")[0] != self.wid and expires > now:
                raise WaveBusy(
                    f"another wave ({holder.split('/')[0]}) is running for {self.namespace}/{self.name[13:]} "
                    f"(Lease {self.namespace}/{self.name}, renewed {max(0, int(now - _wall(spec.get('renewTime'))))}s "
                    f"ago, expires in {int(expires - now)}s unless renewed); wait for it to end"
                )
            acquired = spec.get("acquireTime") if holder == self.identity else micro_time(now)
            try:
                self.kube.replace(LEASES, self.namespace, self.name, dict(lease, spec=self._spec(now, None, acquired)))
                return
            except Conflict:
                continue
        raise WaveBusy(f"Lease {self.namespace}/{self.name} kept changing under us; another wave is starting")

    def _spec(self, now: float, acquired: float | None, acquire_text: Any = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": LOCK_DURATION,
            "acquireTime": acquire_text or micro_time(acquired if acquired is not None else now),
            "renewTime": micro_time(now),
        }

    def renew(self) -> None:
        try:
            lease = self.kube.get(LEASES, self.namespace, self.name)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                self.lost = f"Lease {self.namespace}/{self.name} taken by {spec.get('holderIdentity')}"
                return
            spec = dict(spec, renewTime=micro_time(self.clock()))
            self.kube.replace(LEASES, self.namespace, self.name, dict(lease, spec=spec))
        except KubeError:
            pass  # the next renewal tries again; the Lease lasts LOCK_DURATION

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
            lease = self.kube.get(LEASES, self.namespace, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self.kube.delete(LEASES, self.namespace, self.name)
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


# ---------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class WaveEvent:
    """Something the CLI shows: a stage's new state, or its delivery's status (``status``)."""

    stage: str
    state: str
    message: str
    status: dict[str, Any] | None = None


class _Cancelled(Exception):
    """Another stage of the group failed: stop waiting for this one (it is left as it is)."""


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class WaveRunner:
    """Runs one wave against its clusters (``kubes``: one client per stage)."""

    def __init__(
        self,
        wave: Wave,
        change: Change,
        kubes: Mapping[str, Kube],
        wid: str,
        on_event: Callable[[WaveEvent], None] = lambda _e: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock: WaveLock | WaveLocks | None = None,
        where: Mapping[str, str] | None = None,
    ) -> None:
        self.wave, self.change, self.kubes, self.wid = wave, change, kubes, wid
        self.lock = lock
        self.on_event, self.clock, self.sleep = on_event, clock, sleep
        self.results = {s.name: StageResult(s.name, (where or {}).get(s.name, s.where)) for s in wave.stages}
        self._stop = threading.Event()

    # ---- observing ----

    def views(self) -> dict[str, StageView]:
        """Every stage as its cluster says; a cluster that cannot be read is an ``UNREACHABLE`` view
        (the plan decides whether that stops the wave: it does not stop a rollback of the others)."""
        out: dict[str, StageView] = {}
        for s in self.wave.stages:
            try:
                deployment = read_stage(self.kubes[s.name], s)
            except StageUnreachable as exc:
                out[s.name] = StageView(s, StageState.UNREACHABLE, str(exc.error))
                continue
            if deployment is None:
                raise StateError(f"stage {s.name}: deployment {s.namespace}/{s.app} not found (deleted mid-wave?)")
            out[s.name] = observe(s, self.change, self.wid, deployment, self.clock())
        return out

    def _note(self, stage: str, state: str, message: str, status: dict[str, Any] | None = None) -> None:
        self.on_event(WaveEvent(stage, state, message, status))

    def _result(self, wave_started: float, code: int, reason: str) -> WaveResult:
        return WaveResult(
            code,
            reason,
            self.wave.name,
            self.wid,
            [self.results[s.name] for s in self.wave.stages],
            self.clock() - wave_started,
            wave_started,
        )

    # ---- the loop ----

    def run(self, until: str | None = None, dry_run: bool = False) -> WaveResult:
        started = self.clock()
        for _ in range(4 * len(self.wave.groups) + 8):
            try:
                views = self.views()
            except StateError as exc:
                return self._result(started, EXIT_FAILED, f"{exc}; the wave stops, nothing further is changed")
            self._settle(views)
            p = plan(self.wave, views, until)
            if dry_run:
                for name in p.run:
                    self.results[name].outcome = "not-reached"
                    self.results[name].reason = f"would run now ({views[name].state.value}: {views[name].reason})"
                return self._result(started, EXIT_OK, f"dry run: next {p.reason}" if p.run else p.reason)
            if p.outcome == "passed":
                return self._result(started, EXIT_OK, p.reason)
            if p.outcome == "failed":
                return self._fail(started, p, views)
            if p.outcome == "unreachable":
                return self._result(started, EXIT_API, f"{p.reason}; the wave stops, nothing further is changed")
            if self.lock is not None and self.lock.lost:
                return self._result(started, EXIT_FAILED, f"the wave lost its lock ({self.lock.lost}); it stops")
            codes = self._run_group(p.run, views)
            if EXIT_API in codes.values():
                bad = next(n for n, c in codes.items() if c == EXIT_API)
                return self._result(
                    started, EXIT_API, f"stage {bad}: {self.results[bad].reason}; nothing further is changed"
                )
            if EXIT_TIMEOUT in codes.values():
                bad = next(n for n, c in codes.items() if c == EXIT_TIMEOUT)
                return self._result(
                    started,
                    EXIT_TIMEOUT,
                    f"stage {bad}: {self.results[bad].reason}; run the wave again to go on waiting",
                )
        return self._result(started, EXIT_FAILED, "the wave made no progress (its stages keep changing)")

    def _settle(self, views: Mapping[str, StageView]) -> None:
        """The results of stages this run did not act on, from what the clusters say."""
        for name, v in views.items():
            r = self.results[name]
            r.revision = r.revision or v.revision
            r.phase = str(v.status.get("phase", r.phase))
            if r.started:
                continue
            if v.state is StageState.PASSED:
                r.outcome, r.reason = "passed", v.reason
            elif v.state is StageState.ROLLED_BACK:
                r.outcome, r.reason = "rolled-back", v.reason
            elif v.state is StageState.FAILED:
                r.outcome, r.reason = "failed", v.reason

    # ---- one group ----

    def _run_group(self, names: tuple[str, ...], views: Mapping[str, StageView]) -> dict[str, int]:
        self._stop.clear()
        codes: dict[str, int] = {}
        if len(names) == 1:
            codes[names[0]] = self._run_stage(views[names[0]])
            return codes

        def one(name: str) -> None:
            codes[name] = self._run_stage(views[name])

        threads = [threading.Thread(target=one, args=(n,), name=f"wave-{n}") for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return codes

    def _run_stage(self, view: StageView) -> int:
        stage = view.stage
        r = self.results[stage.name]
        r.started = self.clock()
        kube = self.kubes[stage.name]
        try:
            code = self._deliver(kube, view, r)
        except _Cancelled:
            r.outcome, r.reason = "delivering", "stopped waiting: another stage of its group failed"
            code = EXIT_FAILED
        except KubeError as exc:
            r.outcome, r.reason = "api-error", str(exc)
            code = EXIT_API
        except (DeliverError, ValueError) as exc:  # ValueError: the change no longer fits the Deployment
            r.outcome, r.reason = "failed", str(exc)
            code = EXIT_FAILED
        r.ended = self.clock()
        if code != EXIT_OK and r.outcome != "delivering":
            self._stop.set()
        self._note(stage.name, r.outcome, r.reason)
        return code

    def _deliver(self, kube: Kube, view: StageView, r: StageResult) -> int:
        stage = view.stage
        pin = Pin()
        if view.state is StageState.PENDING:
            pin = self._apply(kube, stage)
            self._note(stage.name, StageState.DELIVERING.value, f"applied {self.change.describe()}")
        else:
            deployment = read_stage(kube, stage) or {}
            pin = pin_of(stage, self.change, deployment, view.marker, self.wid)
        if view.state in (StageState.PENDING, StageState.DELIVERING):
            self._note(stage.name, StageState.DELIVERING.value, "waiting for the delivery")

            def show(status: dict[str, Any]) -> None:
                if self._stop.is_set():
                    raise _Cancelled()
                r.phase = str(status.get("phase", ""))
                self._note(stage.name, StageState.DELIVERING.value, str(status.get("message", "")), status)

            result = wait(
                kube,
                stage.namespace,
                stage.app,
                stage.timeout,
                on_status=show,
                clock=self.clock,
                sleep=self.sleep,
                pin=pin,
            )
            r.revision = result.revision or r.revision
            r.reason = result.reason
            r.phase = str(result.status.get("phase", r.phase))
            if result.code != EXIT_OK:
                r.outcome = {EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout", EXIT_API: "api-error"}.get(
                    result.code, "failed"
                )
                return result.code
            self._mark(kube, stage, passed=self.clock())
        return self._soak(kube, stage, r)

    def _soak(self, kube: Kube, stage: Stage, r: StageResult) -> int:
        deployment = read_stage(kube, stage) or {}
        view = observe(stage, self.change, self.wid, deployment, self.clock())
        if view.state is StageState.SOAKING:
            self._note(stage.name, StageState.SOAKING.value, f"soaking for {int(view.soak_left)}s")
        while view.state is StageState.SOAKING:
            if self._stop.is_set():
                raise _Cancelled()
            self.sleep(min(SOAK_POLL, max(0.05, view.soak_left)))
            deployment = read_stage(kube, stage) or {}
            view = observe(stage, self.change, self.wid, deployment, self.clock())
        if view.state is not StageState.PASSED:
            r.outcome, r.reason = "failed", f"during the soak: {view.reason}"
            return EXIT_FAILED
        r.outcome, r.reason = "passed", view.reason
        r.revision = view.revision or r.revision
        return EXIT_OK

    # ---- writes ----

    def _apply(self, kube: Kube, stage: Stage) -> Pin:
        """The change, the overrides and the marker in one write, at the resourceVersion read."""
        for _ in range(WRITE_ATTEMPTS):
            deployment = read_stage(kube, stage)
            if deployment is None:
                raise StateError(f"deployment {stage.namespace}/{stage.app} disappeared")
            current = deployment["spec"]["template"]
            new = self.change.template_for(stage, current)
            try:
                stable = read_state(deployment).stable_revision
            except StateError:
                stable = ""
            marker = Marker(
                self.wid,
                self.wave.name,
                stage.name,
                revision=templates.revision(new),
                previous=stable or templates.revision(current),
                applied_at=self.clock(),
            )
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/spec/template", "value": new},
            ]
            for key, value in ((MARKER, marker.to_json()), *stage.overrides):
                patch.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value})
            try:
                written = kube.patch(DEPLOYMENTS, stage.namespace, stage.app, patch, content_type=JSON_PATCH)
            except KubeError as exc:
                if exc.status in (409, 422):
                    continue
                raise
            return pin_of(stage, self.change, written, marker, self.wid)
        raise StateError(f"deployment {stage.namespace}/{stage.app} kept changing under the wave")

    def _mark(self, kube: Kube, stage: Stage, passed: float = 0.0, rolled_back: float = 0.0) -> None:
        for _ in range(WRITE_ATTEMPTS):
            deployment = read_stage(kube, stage)
            marker = read_marker(deployment or {})
            if deployment is None or marker is None or marker.id != self.wid:
                return
            if (passed and marker.passed_at) or (rolled_back and marker.rolled_back_at):
                return
            new = Marker(
                **{**marker.__dict__, **({"passed_at": passed} if passed else {"rolled_back_at": rolled_back})}
            )
            body = {
                "metadata": {
                    "resourceVersion": deployment["metadata"]["resourceVersion"],
                    "annotations": {MARKER: new.to_json()},
                }
            }
            try:
                kube.patch(DEPLOYMENTS, stage.namespace, stage.app, body)
                return
            except Conflict:
                continue

    # ---- after a failure ----

    def _fail(self, started: float, p: WavePlan, views: Mapping[str, StageView]) -> WaveResult:
        notes: list[str] = []
        undo = list(p.undo)
        lost = list(p.unreachable)
        for name in p.abort:
            kube, stage = self.kubes[name], self.wave.stage(name)
            try:
                deployment = read_stage(kube, stage)
            except StageUnreachable as exc:
                lost.append(name)
                self.results[name].reason = f"unreachable: {exc.error}"
                continue
            if deployment is None:
                continue
            record = read_state(deployment)
            if views[name].state is StageState.DELIVERING and (
                record.phase.terminal or record.revision != views[name].revision
            ):
                undo.insert(0, name)  # the controller has not taken the change up yet: write the old one back
                continue
            self._abort(kube, stage, deployment)
            if views[name].state is not StageState.FAILED:
                self._mark(kube, stage, rolled_back=self.clock())
                self.results[name].outcome = "abort-requested"
                self.results[name].reason = "its delivery was aborted after another stage failed"
            self._note(name, "abort-requested", "abort requested")
            notes.append(f"{name} aborted")
        for name in undo:
            try:
                ok, why = self._undo(name, views[name])
            except StageUnreachable as exc:
                lost.append(name)
                self.results[name].reason = f"unreachable: {exc.error}"
                continue
            self.results[name].outcome = "rolled-back" if ok else "failed"
            self.results[name].reason = why
            notes.append(f"{name} {'rolled back' if ok else 'NOT rolled back: ' + why}")
        for name in lost:
            self.results[name].outcome = "api-error"
            if not self.results[name].reason.startswith("unreachable"):
                self.results[name].reason = f"unreachable: {views[name].reason}"
            self.results[name].reason += "; not rolled back: run the wave again to finish the rollback"
        if lost:
            notes.append(f"{', '.join(lost)} unreachable, NOT rolled back")
        if self.wave.on_failure is OnFailure.HOLD:
            for name, v in views.items():
                if v.ours and v.state in (StageState.PASSED, StageState.SOAKING):
                    self.results[name].outcome = "held"
                    self.results[name].reason = "kept on the new version (on-failure: hold)"
            held = [n for n, v in views.items() if v.ours and v.state in (StageState.PASSED, StageState.SOAKING)]
            if held:
                notes.append(f"{', '.join(held)} held on the new version")
        for name in p.untouched:
            self.results[name].outcome = "not-reached"
            self.results[name].reason = "untouched: an earlier stage failed"
            if views[name].state is StageState.UNREACHABLE:
                self.results[name].reason += f" (unreachable: {views[name].reason}; never changed by this wave)"
        if p.untouched:
            notes.append(f"{', '.join(p.untouched)} untouched")
        code = EXIT_API if lost else EXIT_FAILED
        return self._result(started, code, p.reason + (f" ({'; '.join(notes)})" if notes else ""))

    @staticmethod
    def _abort(kube: Kube, stage: Stage, deployment: dict[str, Any]) -> None:
        """deliver's abort request (what `deliver abort` writes), written again after a lost race."""
        for _ in range(WRITE_ATTEMPTS):
            try:
                send_request(kube, deployment, "abort")
                return
            except Conflict:
                fresh = read_stage(kube, stage)
                if fresh is None:
                    return
                deployment = fresh

    def _undo(self, name: str, view: StageView) -> tuple[bool, str]:
        """Write the stage's previous template back (deliver delivers it as a change) and wait for it."""
        kube, stage = self.kubes[name], self.wave.stage(name)
        previous = view.marker.previous if view.marker else ""
        if not previous:
            return False, "the marker does not say which revision came before"
        self._note(name, "rolling-back", f"putting revision {previous} back")
        for _ in range(WRITE_ATTEMPTS):
            deployment = read_stage(kube, stage)
            if deployment is None:
                return False, f"deployment {stage.namespace}/{stage.app} not found"
            template = self._template_of(kube, deployment, previous)
            if template is None:
                return False, f"no ReplicaSet or record holds revision {previous} any more"
            marker = read_marker(deployment) or Marker(self.wid)
            marker = Marker(**{**marker.__dict__, "rolled_back_at": marker.rolled_back_at or self.clock()})
            patch = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "add", "path": f"/metadata/annotations/{_escape(MARKER)}", "value": marker.to_json()},
            ]
            try:
                kube.patch(DEPLOYMENTS, stage.namespace, stage.app, patch, content_type=JSON_PATCH)
                break
            except KubeError as exc:
                if exc.status in (409, 422):
                    continue
                return False, str(exc)
        else:
            return False, "the Deployment kept changing under the wave"
        result = wait(
            kube,
            stage.namespace,
            stage.app,
            stage.timeout,
            clock=self.clock,
            sleep=self.sleep,
            pin=Pin(revision=previous),
        )
        if result.code == EXIT_OK:
            self._note(name, "rolled-back", f"revision {previous} delivered again")
            return True, f"put back to revision {previous} after a later stage failed"
        return False, f"revision {previous} written back, its delivery: {result.outcome}: {result.reason}"

    @staticmethod
    def _template_of(kube: Kube, deployment: dict[str, Any], revision: str) -> dict[str, Any] | None:
        """The pod template of ``revision``: from the Deployment's ReplicaSets, else deliver's record."""
        current = deployment["spec"]["template"]
        if templates.revision(current) == revision:
            return templates.without_hash(current)
        uid = deployment["metadata"].get("uid")
        for rs in kube.items(
            REPLICASETS, deployment["metadata"]["namespace"], selector_string(deployment["spec"]["selector"])
        ):
            refs = (rs.get("metadata") or {}).get("ownerReferences") or []
            if not any(ref.get("controller") and ref.get("uid") == uid for ref in refs):
                continue
            template = templates.without_hash(rs["spec"]["template"])
            if templates.revision(template) == revision:
                return template
        try:
            state = read_state(deployment)
        except StateError:
            return None
        for kept in (state.stable_template, state.failed_template):
            if kept and templates.revision(kept) == revision:
                return templates.without_hash(kept)
        return None
