"""Workers and analyses off the reconcile path (issue 10, defect 3), on the one fake API.

A hung Prometheus (here: an analyser blocked on an Event) must not delay another Deployment's pass,
nor the health checks (and so the crash-loop rollback) of the Deployment being analysed; the work
queue never hands one Deployment to two workers at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from delivery.engine.background import AnalysisPool
from delivery.engine.controller import Controller, Key, WorkQueue
from delivery.engine.reconcile import Outcome, Reconciler
from delivery.kube.client import PODS
from delivery.settings import Settings
from strategies.actions import Analyse
from strategies.evidence import StepVerdict
from strategies.record import DeliveryState
from strategies.spec import DeliverySpec
from tests.fixture import NAME, NS, Fixture

ANALYSIS_WAIT = Settings().passes.analysis_wait  # seconds between passes while an analysis runs
OTHER = "other"
ROLLBACK = ("RollingBack", "RolledBack")


class HungAnalyser:
    """An analyser that blocks (like a Prometheus that never answers) until ``release`` is set."""

    def __init__(self, clock: Any) -> None:
        self.release = threading.Event()
        self.calls: list[Analyse] = []
        self.clock = clock

    def __call__(
        self, spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse
    ) -> StepVerdict:
        self.calls.append(action)
        self.release.wait(30)
        return StepVerdict(action.step, "pass", "fake: error rate ok", self.clock())


def analysed_canary(f: Fixture, **annotations: str) -> None:
    """A canary with an analysis, delivered at rest on web:v1, then changed to web:v2."""
    f.given_deployment(strategy="canary", steps="50,100", analysis="error-rate", **annotations)
    f.given_delivered()
    f.when_template_changes("web:v2")


def crashing_canary(f: Fixture) -> None:
    """A canary (no analysis) whose new version api:v2 crash-loops; one pass has started it."""
    f.given_deployment(strategy="canary", image="api:v1", steps="50,100")
    f.given_delivered()
    f.crashing.add("api:v2")
    f.when_template_changes("api:v2")
    f.when_reconciled()
    f.cluster()
    assert f.record()["phase"] == "Progressing"
    assert f.events("StepPassed") == []


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------------- the queue


def test_a_key_handed_out_is_not_handed_out_again_until_done():
    q = WorkQueue()
    q.add((NS, "a"))
    assert q.get(timeout=0.5) == (NS, "a")
    q.add((NS, "a"), 0.0)  # an event while a worker holds it
    q.add((NS, "b"))
    assert q.get(timeout=0.2) == (NS, "b")
    assert q.get(timeout=0.2) is None  # "a" waits for its worker
    assert len(q) == 1
    q.done((NS, "a"))
    assert q.get(timeout=0.5) == (NS, "a")
    q.done((NS, "a"))
    q.done((NS, "b"))
    assert q.get(timeout=0.1) is None  # nothing re-added: nothing handed out


def test_many_workers_never_reconcile_one_key_twice_at_once():
    q = WorkQueue()
    inside: dict[Key, int] = {}
    most: dict[Key, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    handled = []

    def worker() -> None:
        while not stop.is_set():
            key = q.get(timeout=0.05)
            if key is None:
                continue
            with lock:
                inside[key] = inside.get(key, 0) + 1
                most[key] = max(most.get(key, 0), inside[key])
            q.add(key)  # an event for the same key arrives mid-reconcile
            time.sleep(0.005)
            with lock:
                inside[key] -= 1
                handled.append(key)
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for i in range(40):
        q.add((NS, f"d{i % 3}"))
    assert wait_for(lambda: len(handled) >= 60, 10)
    stop.set()
    for t in threads:
        t.join()
    assert set(most) == {(NS, "d0"), (NS, "d1"), (NS, "d2")}
    assert max(most.values()) == 1, most


# ---------------------------------------------------------------------------- analysis off the path


def test_a_pass_needing_a_verdict_returns_at_once_and_still_rolls_back_a_crash_loop():
    f = Fixture()
    analyser = HungAnalyser(lambda: f.now)
    woken: list[Key] = []
    pool = AnalysisPool(2, on_done=woken.append)
    f.reconciler = Reconciler(f.kube, analyser=analyser, clock=lambda: f.now, pool=pool)
    try:
        analysed_canary(f)
        f.when_settled(until=lambda _: pool.pending((NS, NAME)))
        assert wait_for(lambda: len(analyser.calls) == 1, 5)
        # Passes while the analysis hangs: each returns at once, no second analysis is started.
        for _ in range(3):
            started = time.monotonic()
            outcome = f.when_reconciled()
            f.cluster()
            f.when_time_passes(ANALYSIS_WAIT)
            assert time.monotonic() - started < 1.0
            assert outcome.requeue_after == ANALYSIS_WAIT
            assert f.record()["phase"] == "Progressing"
        assert len(analyser.calls) == 1
        # The canary's pods start crash-looping: the very next pass rolls back, analysis or not.
        f.crashing.add("web:v2")
        for pod in f.kube.find(PODS, NS):
            if pod["spec"]["containers"][0]["image"] == "web:v2":
                f.kube.remove(PODS, pod["metadata"]["name"])
        f.cluster()
        started = time.monotonic()
        f.when_reconciled()
        assert time.monotonic() - started < 1.0
        assert f.record()["phase"] in ROLLBACK
        assert not analyser.release.is_set()
        # The late verdict belongs to a delivery that is over: it is never recorded.
        analyser.release.set()
        assert wait_for(lambda: woken == [(NS, NAME)], 5)
        f.when_settled()
        assert f.record()["phase"] == "RolledBack"
        assert f.events("AnalysisPassed") == []
    finally:
        analyser.release.set()
        pool.shutdown()


def test_a_verdict_from_the_pool_is_recorded_by_the_next_pass():
    f = Fixture()
    analyser = HungAnalyser(lambda: f.now)
    woken: list[Key] = []
    pool = AnalysisPool(1, on_done=woken.append)
    f.reconciler = Reconciler(f.kube, analyser=analyser, clock=lambda: f.now, pool=pool)
    try:
        analysed_canary(f, analysis_every="off")  # the first analysis is the step's end, not a look
        f.when_settled(until=lambda _: pool.pending((NS, NAME)))
        analyser.release.set()
        assert wait_for(lambda: woken == [(NS, NAME)], 5)  # the controller would queue the key now
        outcome = f.when_reconciled()
        assert outcome.verdicts == ["pass"]
        assert [v["outcome"] for v in f.record()["verdicts"]] == ["pass"]
        assert len(f.events("AnalysisPassed")) == 1
        f.when_settled()
        assert f.record()["phase"] == "Succeeded"
        assert f.image() == "web:v2"
        # Each analysed step ran its step-end analysis once (with steps 50,100 the step at 100 % is the
        # promotion); looks at its running window are the interim ones.
        ends = [a.step for a in analyser.calls if not a.interim]
        assert ends == sorted({v["step"] for v in f.record()["verdicts"]})
    finally:
        analyser.release.set()
        pool.shutdown()


def test_a_verdict_lost_with_the_process_is_simply_analysed_again():
    f = Fixture()
    first = HungAnalyser(lambda: f.now)
    pool = AnalysisPool(1)
    f.reconciler = Reconciler(f.kube, analyser=first, clock=lambda: f.now, pool=pool)
    analysed_canary(f)
    f.when_settled(until=lambda _: pool.pending((NS, NAME)))
    # A new process: the pool (and the analysis running in it) is gone; nothing of it was state.
    second = HungAnalyser(lambda: f.now)
    second.release.set()
    fresh = AnalysisPool(1)
    f.reconciler = Reconciler(f.kube, analyser=second, clock=lambda: f.now, pool=fresh)
    try:
        f.when_settled()
        assert f.record()["phase"] == "Succeeded"
        assert len(first.calls) == 1
        # step 1's analysis again, in the new process (besides its looks at the running window)
        assert [a.step for a in second.calls if not a.interim] == [0]
    finally:
        first.release.set()
        pool.shutdown()
        fresh.shutdown()


class InTurnAnalyser:
    """The n-th analysis blocks until ``releases[n]`` is set, then answers ``outcomes[n]``."""

    def __init__(self, clock: Any, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.releases = [threading.Event() for _ in outcomes]
        self.calls: list[Analyse] = []
        self.clock = clock

    def __call__(
        self, spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse
    ) -> StepVerdict:
        n = len(self.calls)
        self.calls.append(action)
        self.releases[n].wait(30)
        return StepVerdict(action.step, self.outcomes[n], f"fake: {self.outcomes[n]}", self.clock())


def test_a_late_verdict_of_a_superseded_version_never_decides_for_the_new_one():
    f = Fixture()
    analyser = InTurnAnalyser(lambda: f.now, ["pass", "fail"])
    woken: list[Key] = []
    pool = AnalysisPool(2, on_done=woken.append)
    f.reconciler = Reconciler(f.kube, analyser=analyser, clock=lambda: f.now, pool=pool)
    try:
        analysed_canary(f, analysis_every="off")  # two analyses in turn: the steps' ends, no looks
        f.when_settled(until=lambda _: len(analyser.calls) == 1)  # v2's analysis hangs
        f.when_template_changes("web:v3")
        f.when_reconciled()  # v3's delivery starts
        # v2's analysis answers "pass" now, after v3's step started and before v3 asks for a verdict.
        analyser.releases[0].set()
        assert wait_for(lambda: woken == [(NS, NAME)], 5)
        f.when_settled(until=lambda _: len(analyser.calls) == 2)  # v3's own analysis (hangs)
        assert analyser.calls[0].new_hash != analyser.calls[1].new_hash
        for _ in range(3):
            f.when_reconciled()
            f.cluster()
            f.when_time_passes(ANALYSIS_WAIT)
        record = f.record()
        assert (record["phase"], record["step"]) == ("Progressing", 0)
        assert record.get("verdicts", []) == [] and f.events("AnalysisPassed") == []
        # v3's own verdict decides.
        analyser.releases[1].set()
        assert wait_for(lambda: len(woken) == 2, 5)
        f.when_settled()
        assert f.record()["phase"] == "RolledBack"
        assert len(f.events("AnalysisFailed")) == 1 and f.events("AnalysisPassed") == []
    finally:
        for release in analyser.releases:
            release.set()
        pool.shutdown()


# ---------------------------------------------------------------------------- the controller


def two_deployments() -> tuple[Fixture, Fixture]:
    """Deployment A (namespace shop) about to be analysed; B (namespace other) crash-looping."""
    a = Fixture()
    b = Fixture(OTHER, a.kube)
    crashing_canary(b)
    setup = HungAnalyser(lambda: a.now)
    pool = AnalysisPool(1)
    a.reconciler = Reconciler(a.kube, analyser=setup, clock=lambda: a.now, pool=pool)
    analysed_canary(a)
    a.when_settled(until=lambda _: pool.pending((NS, NAME)))
    setup.release.set()
    pool.shutdown()  # a restart: the next process starts A's analysis afresh
    b.now = a.now
    return a, b


def run_workers(ctl: Controller) -> list[threading.Thread]:
    threads = [threading.Thread(target=ctl.work, name=f"test-worker-{i}") for i in range(ctl.workers)]
    for t in threads:
        t.start()
    return threads


def test_a_hung_analysis_does_not_delay_a_crash_loop_rollback_in_another_namespace():
    a, b = two_deployments()
    analyser = HungAnalyser(lambda: a.now)
    outcomes: list[tuple[Key, Outcome]] = []
    pool = AnalysisPool(1)
    ctl = Controller(
        a.kube,
        Reconciler(a.kube, analyser=analyser, clock=lambda: a.now, pool=pool),
        on_outcome=lambda key, outcome, _elapsed: outcomes.append((key, outcome)),
        workers=1,
    )
    pool.on_done = ctl.queue.add
    threads = run_workers(ctl)
    try:
        ctl.queue.add((NS, NAME))  # A first: its pass starts the analysis, which hangs
        assert wait_for(lambda: len(analyser.calls) == 1, 5)
        started = time.monotonic()
        ctl.queue.add((OTHER, NAME))
        assert wait_for(lambda: any(k == (OTHER, NAME) and o.phase in ROLLBACK for k, o in outcomes), 3)
        assert time.monotonic() - started < 2.0
        assert not analyser.release.is_set()  # A's analysis still hangs
    finally:
        analyser.release.set()
        ctl.stop.set()
        for t in threads:
            t.join(10)
        pool.shutdown()
    assert b.record()["phase"] in ROLLBACK
    assert a.record()["phase"] not in ROLLBACK


def test_workers_reconcile_other_deployments_while_one_pass_is_slow():
    """Even an analysis run inline (no pool) holds only its own worker."""
    a, b = two_deployments()
    analyser = HungAnalyser(lambda: a.now)
    outcomes: list[tuple[Key, Outcome]] = []
    ctl = Controller(
        a.kube,
        Reconciler(a.kube, analyser=analyser, clock=lambda: a.now),
        on_outcome=lambda key, outcome, _elapsed: outcomes.append((key, outcome)),
        workers=2,
    )
    threads = run_workers(ctl)
    try:
        ctl.queue.add((NS, NAME))
        assert wait_for(lambda: len(analyser.calls) == 1, 5)  # one worker is stuck in A's analysis
        ctl.queue.add((NS, NAME))  # A again: not handed to the free worker while the first holds it
        ctl.queue.add((OTHER, NAME))
        assert wait_for(lambda: any(k == (OTHER, NAME) and o.phase in ROLLBACK for k, o in outcomes), 3)
        assert len(analyser.calls) == 1
        assert ctl.busy.is_set()
    finally:
        analyser.release.set()
        ctl.stop.set()
        for t in threads:
            t.join(10)
    assert b.record()["phase"] in ROLLBACK
    assert not ctl.busy.is_set()


def test_a_key_queued_first_goes_ahead_of_every_key_due_now():
    q = WorkQueue()
    q.add((NS, "progress-1"))
    q.add((NS, "progress-2"))
    q.add((NS, "new-template"), first=True)
    assert [q.get(timeout=0.2) for _ in range(3)] == [(NS, "new-template"), (NS, "progress-1"), (NS, "progress-2")]


def test_a_changed_spec_is_reconciled_before_passes_already_queued():
    """100 templates changed at once: each one's first pass (its new ReplicaSet) must not wait
    behind the passes that deliveries already under way queued meanwhile."""
    f = Fixture()
    controller = Controller(f.kube, f.reconciler)
    d = {
        "metadata": {"namespace": NS, "name": "web", "generation": 1, "annotations": {"deliver.dev/strategy": "canary"}}
    }
    controller._on_deployment("ADDED", d)
    assert controller.queue.get(timeout=0.2) == (NS, "web")
    controller.queue.done((NS, "web"))
    other = {
        "metadata": {"namespace": NS, "name": "api", "generation": 3, "annotations": {"deliver.dev/strategy": "canary"}}
    }
    controller._on_deployment("ADDED", other)  # a delivery under way: a pass queued
    controller._on_deployment("MODIFIED", {**d, "metadata": {**d["metadata"], "generation": 2}})
    assert controller.queue.get(timeout=0.2) == (NS, "web")
    controller._on_deployment("MODIFIED", other)  # same generation: a status or record change
    assert controller.queue.get(timeout=0.2) == (NS, "api")
