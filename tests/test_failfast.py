"""Fail fast (issue 17): an analysed step's growing window is looked at every ``analysis-every``.

A failing look ends the step at once (rolled back, or held with auto-rollback off); a passing look
waits for the step's interval unless ``promote-early`` (and the minimum hold is over); a look that
cannot be made (Prometheus down, hung) is never a pass and never delays a health rollback. The
engine runs the looks; the planner decides from their verdicts (Given/When/Then on the fake API).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from delivery import spec as specmod
from delivery.analysis.checks import parse_checks
from delivery.analysis.prometheus import Sample
from delivery.analysis.providers import MetricProvider
from delivery.cli.view import render_status
from delivery.engine.background import AnalysisPool
from delivery.engine.reconcile import Reconciler
from delivery.engine.verdicts import counting, run_checks
from delivery.errors import MetricsUnavailable, SpecError
from delivery.gate import status_dict
from delivery.integrations.metrics import Metrics
from delivery.kube.client import PODS
from strategies.actions import Analyse
from strategies.evidence import CheckEvidence, Outcome, StepVerdict
from strategies.record import DeliveryState
from strategies.spec import DeliverySpec
from strategies.steps import DEFAULT_ANALYSIS_EVERY, PROMOTE_EARLY_HOLD
from tests.fixture import NAME, NS, Fixture

INTERVAL = 300.0  # a 5-minute step


class Scripted:
    """An analyser answering ``outcome(action)`` with the numbers a real verdict carries; records calls."""

    def __init__(self, f: Fixture, outcome: Any) -> None:
        self.f = f
        self.outcome = outcome
        self.calls: list[Analyse] = []

    def __call__(
        self, spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse
    ) -> StepVerdict:
        self.calls.append(action)
        result = self.outcome(action)
        if isinstance(result, Exception):
            raise result
        n = int(self.f.now - action.start) * 10
        details = {"checks": [{"name": "error-rate", "outcome": result, "e": 3.1e5, "n": [n, n], "critical": True}]}
        checks = (CheckEvidence("error-rate", Outcome(result), n, n, 3.1e5),)
        summary = f"error-rate {result} (fake, n={n})"
        return StepVerdict(action.step, result, summary, self.f.now, details=details, checks=checks)

    def looks(self) -> list[Analyse]:
        return [a for a in self.calls if a.interim]


def analysed(f: Fixture, outcome: Any, **annotations: str) -> Scripted:
    """A canary 20,100 with a 5-minute analysed step, at rest on web:v1, then changed to web:v2."""
    analyser = Scripted(f, outcome)
    f.reconciler = Reconciler(f.kube, analyser=analyser, clock=lambda: f.now)
    ann = {"steps": "20,100", "interval": "5m", "analysis": "error-rate", "analysis_every": "30s"}
    ann.update(annotations)
    f.given_deployment(strategy="canary", **ann)
    f.given_delivered()
    f.when_template_changes("web:v2")
    return analyser


def step_started(f: Fixture) -> float:
    return float(f.record()["stepStarted"])


def ended(f: Fixture) -> bool:
    return f.record().get("phase") in ("RolledBack", "Paused", "Succeeded")


def test_a_failing_look_mid_step_rolls_back_long_before_the_step_ends():
    f = Fixture()
    analyser = analysed(f, lambda a: "fail")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=lambda f: f.record().get("phase") in ("RollingBack", "RolledBack"))
    # rolled back at the first look (30 s into the 5-minute step), not at the step's end
    assert f.now - served_from <= DEFAULT_ANALYSIS_EVERY + 5
    f.when_settled()
    record = f.record()
    assert record["phase"] == "RolledBack"
    assert "analysis failed 30s into the step" in record["message"]
    [verdict] = record["verdicts"]
    assert verdict["outcome"] == "fail" and verdict["interim"] is True
    assert len(analyser.looks()) == 1 and all(a.interim for a in analyser.calls)
    assert f.reasons().count("AnalysisFailed") == 1 and "DeliveryRolledBack" in f.reasons()
    assert f.serving() == {"web:v1": 3}
    assert "running" not in record  # the running window's evidence goes with the window


def test_a_failing_look_holds_the_delivery_when_auto_rollback_is_off():
    f = Fixture()
    analysed(f, lambda a: "fail", auto_rollback="false")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=ended)
    record = f.record()
    assert (record["phase"], record["hold"]) == ("Paused", "Failed")
    assert f.now - served_from <= DEFAULT_ANALYSIS_EVERY + 5
    assert f.events("DeliveryFailed")


def test_a_passing_look_still_waits_for_the_interval():
    f = Fixture()
    analyser = analysed(f, lambda a: "pass")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=lambda f: f.record().get("step") == 1)
    assert f.now - served_from >= INTERVAL
    # looks every 30 s while the step was held (bounded: at most one per analysis-every), then its end
    looks = [a for a in analyser.looks() if a.step == 0]
    assert INTERVAL / 30 - 2 <= len(looks) <= INTERVAL / 30
    assert [a.interim for a in analyser.calls if a.step == 0][-1] is False
    running = f.events("AnalysisRunning")
    assert 1 <= len(running) <= 4, [e["message"] for e in running]  # first look, then each tenfold growth
    assert len(f.events("StepPassed")) == 1


def test_promote_early_moves_on_once_every_check_passes_and_the_minimum_hold_is_over():
    f = Fixture()
    analysed(f, lambda a: "pass", promote_early="true")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=lambda f: f.record().get("step") == 1)
    assert PROMOTE_EARLY_HOLD <= f.now - served_from <= PROMOTE_EARLY_HOLD + DEFAULT_ANALYSIS_EVERY + 5
    [passed] = f.events("StepPassed")
    assert "error-rate pass (fake, n=600)" in passed["message"]  # the passing look at 60 s is the step's verdict
    f.when_settled()
    assert f.record()["phase"] == "Succeeded"


def test_an_inconclusive_look_is_not_a_pass_even_with_promote_early():
    f = Fixture()
    analysed(f, lambda a: "inconclusive" if a.interim else "pass", promote_early="true")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=lambda f: f.record().get("step") == 1)
    assert f.now - served_from >= INTERVAL


def test_prometheus_failing_during_looks_is_never_a_pass():
    f = Fixture()
    down = MetricsUnavailable("connection refused")
    analyser = analysed(f, lambda a: down, promote_early="true", on_inconclusive="pause")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=ended)
    record = f.record()
    assert (record["phase"], record["hold"]) == ("Paused", "Inconclusive")
    assert f.now - served_from >= INTERVAL  # not promoted early on errors; held at the step's end
    assert analyser.looks() and f.events("StepPassed") == []
    assert f.serving() == {"web:v1": 2, "web:v2": 1}  # held at the 20 % step: exact shares of 3


def test_analysis_every_off_judges_the_step_at_its_end_only():
    f = Fixture()
    analyser = analysed(f, lambda a: "fail", analysis_every="off")
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    served_from = step_started(f)
    f.when_settled(until=lambda f: f.record().get("phase") in ("RollingBack", "RolledBack"))
    assert f.now - served_from >= INTERVAL
    assert analyser.looks() == []


def test_a_crash_loop_during_a_hung_look_is_rolled_back_within_one_pass():
    f = Fixture()
    release = threading.Event()

    def hung(spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse) -> StepVerdict:
        release.wait(30)  # Prometheus never answers
        return StepVerdict(action.step, "pass", "late", f.now)

    pool = AnalysisPool(1)
    f.reconciler = Reconciler(f.kube, analyser=hung, clock=lambda: f.now, pool=pool)
    try:
        f.given_deployment(strategy="canary", steps="20,100", interval="5m", analysis="error-rate")
        f.given_delivered()
        f.when_template_changes("web:v2")
        f.when_settled(until=lambda _: pool.pending((NS, NAME)))  # the first look hangs
        assert f.record()["phase"] == "Progressing"
        f.crashing.add("web:v2")
        [canary] = f.delivers_replicasets()
        for pod in f.kube.find(PODS, NS):  # its pods start crash-looping (the kubelet replaces them)
            if pod["metadata"]["ownerReferences"][0]["uid"] == canary["metadata"]["uid"]:
                f.kube.remove(PODS, pod["metadata"]["name"], NS)
        f.cluster()
        f.when_reconciled()
        assert f.record()["phase"] in ("RollingBack", "RolledBack")
        assert "unhealthy" in f.record()["message"]
    finally:
        release.set()
        pool.shutdown()


# ------------------------------------------------------------------ what people see


def test_status_shows_the_running_windows_latest_evidence():
    f = Fixture()
    analysed(f, lambda a: "inconclusive" if a.interim else "pass")
    f.when_settled(until=lambda f: bool(f.record().get("running")))
    text = render_status(status_dict(f.deployment()))
    assert "step 1 now: error-rate inconclusive (fake, n=300)" in text, text


def test_the_look_says_its_evidence_and_counts_its_queries():
    """run_checks on a provider answering like Prometheus: the look's one line of evidence, and one
    counted query per arm and series (ok or error)."""

    class Fake(MetricProvider):
        def __init__(self, fail: bool = False) -> None:
            self.fail = fail

        def instant(self, query: str, at: float) -> tuple[Sample, ...]:
            if self.fail:
                raise MetricsUnavailable("prometheus down")
            errors = "5.." in query
            canary = "v2hash" in query
            value = (300.0 if canary else 5.0) if errors else 1000.0
            return (Sample({}, at, value),)

        def range(self, query: str, start: float, end: float, step: float) -> tuple[Any, ...]:
            return ()

    checks = parse_checks({"deliver.dev/analysis": "error-rate"})
    spec = DeliverySpec(strategy=specmod.Strategy.CANARY, analysis=checks)
    state = DeliveryState(revision="r2", stable_hash="v1hash")
    meta = {"namespace": NS, "name": NAME}
    counted: list[tuple[str, str, bool]] = []
    look = Analyse(0, 1000.0, new_hash="v2hash", stable_hash="v1hash", interim=True)
    verdict = run_checks(counting(Fake(), NS, NAME, lambda *q: counted.append(q)), spec, state, meta, look, 1042.0)
    assert verdict.interim and verdict.outcome == "fail"
    assert verdict.summary.startswith("running window (42s): error-rate fail: e=")
    assert "(fail at 20) after 1000 canary requests" in verdict.summary
    # the evidence the planners decide on is typed, the numbers as the details carry them
    (check,) = verdict.checks
    (detail,) = verdict.details["checks"]
    assert (check.name, check.outcome, check.n_canary, check.n_baseline) == ("error-rate", Outcome.FAIL, 1000, 1000)
    assert (check.e_value, check.effect_bound) == (detail["e"], detail.get("bound"))
    assert counted == [(NS, NAME, True)] * 4  # total and errors, canary and baseline
    counted.clear()
    down = run_checks(
        counting(Fake(fail=True), NS, NAME, lambda *q: counted.append(q)), spec, state, meta, look, 1042.0
    )
    assert down.outcome == "inconclusive" and counted == [(NS, NAME, False)]


def test_metrics_count_queries_per_delivery():
    m = Metrics()
    m.count_query(NS, NAME, True)
    m.count_query(NS, NAME, True)
    m.count_query(NS, NAME, False)
    text = m.exposition().decode()
    assert f'deliver_analysis_queries_total{{deployment="{NAME}",namespace="{NS}",result="ok"}} 2.0' in text
    assert f'deliver_analysis_queries_total{{deployment="{NAME}",namespace="{NS}",result="error"}} 1.0' in text


# ------------------------------------------------------------------ the annotations


def _deployment(**annotations: str) -> dict[str, Any]:
    ann = {"deliver.dev/strategy": "canary", "deliver.dev/analysis": "error-rate"}
    ann.update({f"deliver.dev/{k}": v for k, v in annotations.items()})
    return {
        "metadata": {"name": "web", "namespace": NS, "annotations": ann},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}}},
    }


@pytest.mark.parametrize(("value", "seconds"), [("30s", 30.0), ("1s", 1.0), ("2m", 120.0), ("off", 0.0), ("OFF", 0.0)])
def test_analysis_every_accepts_a_duration_of_a_second_or_more_or_off(value: str, seconds: float) -> None:
    assert specmod.parse(_deployment(**{"analysis-every": value})).analysis_every == seconds


@pytest.mark.parametrize("value", ["500ms", "0s", "abc", "", "-5s", "30"])
def test_analysis_every_refuses_anything_else(value: str) -> None:
    problems = specmod.problems(_deployment(**{"analysis-every": value}))
    assert [p.key for p in problems] == ["deliver.dev/analysis-every"], problems
    with pytest.raises(SpecError):
        specmod.parse(_deployment(**{"analysis-every": value}))


def test_promote_early_is_a_boolean_and_both_keys_need_checks() -> None:
    assert specmod.parse(_deployment(**{"promote-early": "true"})).promote_early is True
    assert specmod.parse(_deployment()).promote_early is False
    assert specmod.parse(_deployment()).analysis_every is None  # the engine's default
    assert [p.key for p in specmod.problems(_deployment(**{"promote-early": "soon"}))] == ["deliver.dev/promote-early"]
    bare = _deployment(**{"analysis-every": "30s"})
    del bare["metadata"]["annotations"]["deliver.dev/analysis"]
    assert [p.key for p in specmod.problems(bare)] == ["deliver.dev/analysis-every"]


def test_the_engine_default_is_twice_the_scrape_interval_unless_annotated():
    f = Fixture()
    analyser = analysed(f, lambda a: "pass")
    f.when_annotated(analysis_every=None)
    f.reconciler.analysis_every = 2 * 5.0  # `deliver run --scrape-interval 5s`
    f.when_settled(until=lambda f: f.record().get("weight") == 20)
    f.when_settled(until=lambda f: len(analyser.looks()) >= 3)
    assert f.now - step_started(f) <= 3 * 10.0 + 15  # (not 3 x 30 s)


# ------------------------------------------------------------------ the benchmark's time model


def test_the_benchmarks_rules_decide_when_their_documents_say():
    """benchmarks/failfast.py on a canary failing every request: deliver's first look (30 s), Argo's
    4th failed one-minute measurement (failureLimit 3: 4 min), the step's end and Kayenta's first
    interval (5 min); on identical healthy streams nobody rolls back."""
    import numpy as np

    from benchmarks import failfast as bench

    rng = np.random.default_rng(1)
    broken = bench.error_streams(rng, 20, 250, 1.0, 0.005)
    seconds = {rule: set((tick * bench.TICK).tolist()) for rule, tick in bench.decide(broken).items()}
    assert seconds == {
        "deliver continuous": {30.0},
        "deliver end-of-step": {300.0},
        "argo": {240.0},
        "kayenta": {300.0},
    }
    healthy = bench.error_streams(rng, 20, 250, 0.0, 0.0)
    assert all((tick == bench.NEVER).all() for tick in bench.decide(healthy).values())


@pytest.mark.parametrize(
    ("annotations", "key"),
    [
        ({"analysis-every": "500ms"}, "deliver.dev/analysis-every"),
        ({"promote-early": "maybe"}, "deliver.dev/promote-early"),
    ],
)
def test_deliver_lint_refuses_bad_in_step_keys(tmp_path: Any, annotations: dict[str, str], key: str) -> None:
    import json

    from tests.test_cli import invoke, manifest

    ann = {"deliver.dev/strategy": "canary", "deliver.dev/analysis": "error-rate"}
    ann.update({f"deliver.dev/{k}": v for k, v in annotations.items()})
    path = tmp_path / "m.yaml"
    path.write_text(manifest(ann))
    result = invoke("lint", str(path), "-o", "json")
    assert result.exit_code == 1
    [bad] = [r for r in json.loads(result.stdout)["results"] if not r["valid"]]
    assert [p["key"] for p in bad["problems"]] == [key]
    good = {k: v for k, v in ann.items()} | {"deliver.dev/analysis-every": "20s", "deliver.dev/promote-early": "true"}
    path.write_text(manifest(good))
    assert invoke("lint", str(path)).exit_code == 0


# ------------------------------------------------------------------ the planner alone (pure)


def test_the_planner_asks_for_a_look_every_analysis_every_and_acts_only_on_its_window() -> None:
    from dataclasses import replace as dreplace

    from strategies import plan
    from strategies.record import Phase
    from strategies.spec import Strategy
    from tests.planning import NEW, STABLE, canary_spec, obs, started, version

    spec = canary_spec(analysis=("error-rate",), interval=300.0, analysis_every=30.0)
    s = started(Strategy.CANARY, weight=20)  # the step's window started at 1000
    at = obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1010)
    early = plan(spec, s, at)
    assert not any(isinstance(a, Analyse) for a in early.actions) and early.requeue_after == 10.0
    due = plan(spec, s, dreplace(at, now=1031))
    assert [a for a in due.actions if isinstance(a, Analyse)] == [
        Analyse(0, 1000.0, new_hash=NEW, stable_hash=STABLE, interim=True)
    ]
    # a look of an earlier window (before this step's share was served) is dropped
    stale = StepVerdict(0, "fail", "old window", 990.0, interim=True)
    kept = plan(spec, s, dreplace(at, now=1031, analysed=(stale,)))
    assert kept.state.phase is Phase.PROGRESSING and kept.state.running is None
    # this window's failing look: recorded as the step's verdict, and the same plan rolls back
    look = StepVerdict(0, "fail", "running window (31s): error-rate fail", 1031.0, interim=True)
    rolled = plan(spec, s, dreplace(at, now=1032, analysed=(look,)))
    assert rolled.state.verdicts == (look,) and rolled.state.phase is Phase.ROLLING_BACK
    assert "32s into the step" in rolled.state.message and rolled.state.running is None
    # a passing look: no new look before analysis-every has passed since it, and no early pass
    ok = StepVerdict(0, "pass", "running window (31s): error-rate pass", 1031.0, interim=True)
    held = plan(spec, s, dreplace(at, now=1032, analysed=(ok,)))
    assert held.state.running == ok and held.state.verdicts == () and held.state.step == 0
    assert not any(isinstance(a, Analyse) for a in held.actions)
    assert plan(spec, held.state, dreplace(at, now=1062)).actions[-1] == Analyse(
        0, 1000.0, new_hash=NEW, stable_hash=STABLE, interim=True
    )


def test_only_step_verdicts_count_in_the_verdict_metric():
    f = Fixture()
    analysed(f, lambda a: "inconclusive" if a.interim else "pass")
    f.when_settled(until=lambda f: f.record().get("step") == 1)
    counted = [v for o in f.outcomes for v in o.verdicts]
    assert counted == ["pass"]  # the step's end; its looks are not verdicts of the step


def test_the_information_bound_is_no_better_than_the_first_look_and_is_named_in_a_missed_goal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The oracle of benchmarks/failfast.py (knows the effect, looks at every scrape, 1 % false
    rollbacks) cannot beat the first look that has data, reaches it for a canary failing 30 %, and
    a missed bad-requests goal says what the bound allows."""
    from benchmarks import failfast as bench

    monkeypatch.setattr(bench, "SCENARIO_NAMES", tuple(n for n in bench.SCENARIO_NAMES if n.startswith("errors")))
    bounds = {(b.scenario, b.requests_per_window): b for b in bench.oracle_bounds(200, 3, traffics=(1000,))}
    for b in bounds.values():
        assert b.mean_bad_requests >= 0.9 * b.floor_bad_requests
    worst = bounds[("errors 0.5% -> 30%", 1000)]
    assert worst.mean_bad_requests == pytest.approx(worst.floor_bad_requests, rel=0.05)
    modest = bounds[("errors 0.5% -> 1.0%", 1000)]
    assert modest.mean_bad_requests > 5 * modest.floor_bad_requests  # a doubled rate takes minutes
    rows = bench.run(20, 3, traffics=(1000,))
    goals = [g for g in bench.targets(rows, list(bounds.values())) if "0.5% -> 1.0%" in g]
    assert goals and goals[0].startswith("[MISSED]") and "information bound" in goals[0]


# ------------------------------------------------------------------ one analysis span per delivery


def test_the_analysis_span_starts_at_the_deliverys_first_analysed_step_and_goes_on_over_its_steps() -> None:
    """After a step change the Analyse action's start is still the start of the first analysed
    step (when its share was served), so every look and step end of the delivery are looks at one
    e-process: the fail side spends alpha/k once per delivery, not once per step."""
    from dataclasses import replace as dreplace

    from strategies import plan
    from strategies.spec import Strategy
    from tests.planning import NEW, STABLE, canary_spec, obs, started, version

    spec = canary_spec(analysis=("error-rate",), interval=300.0, analysis_every=30.0)
    s = started(Strategy.CANARY)  # step 0 began at 1000; its pods are Ready at 1025
    served = plan(spec, s, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1025))
    assert served.state.analysis_started == 1025.0 and served.state.weight == 20
    passed = served.state.replace(verdicts=(StepVerdict(0, "pass", "error-rate pass", 1326.0),))
    moved = plan(spec, passed, obs(version(STABLE, 5), version(NEW, 1, owned=False), now=1326))
    assert moved.state.step == 1 and moved.state.analysis_started == 1025.0
    at = obs(version(STABLE, 3), version(NEW, 3, owned=False), now=1330)
    second = plan(spec, moved.state, at)  # step 1's share (50 %) is served from 1330
    assert second.state.weight == 50 and second.state.step_started == 1330.0
    assert second.state.analysis_started == 1025.0
    # the first look of step 1 comes analysis-every after its share was served, over the whole span
    assert not any(isinstance(a, Analyse) for a in plan(spec, second.state, dreplace(at, now=1345)).actions)
    look = [a for a in plan(spec, second.state, dreplace(at, now=1361)).actions if isinstance(a, Analyse)]
    assert [(a.step, a.start, a.interim) for a in look] == [(1, 1025.0, True)]
    end = [a for a in plan(spec, second.state, dreplace(at, now=1631)).actions if isinstance(a, Analyse)]
    assert [(a.step, a.start, a.interim) for a in end] == [(1, 1025.0, False)]
    # a new delivery (superseding this one) starts a new span
    newer = obs(version(STABLE, 3), version(NEW, 3, owned=False), now=1640, target="v9")
    assert plan(spec, second.state, newer).state.analysis_started == 1640.0


def test_rolling_pause_points_share_one_analysis_span() -> None:
    from strategies import plan
    from strategies.spec import DeliverySpec, Strategy
    from tests.planning import NEW, STABLE, obs, started, version

    spec = DeliverySpec(strategy=Strategy.ROLLING, pause_at=(20, 60), interval=300.0, analysis=("error-rate",))
    s = started(Strategy.ROLLING).replace(verdicts=(StepVerdict(0, "pass", "error-rate pass", 1301.0),))
    moved = plan(spec, s, obs(version(STABLE, 4), version(NEW, 1), now=1301, native="RollingUpdate"))
    assert moved.state.step == 1 and moved.state.step_started == 1301.0
    assert moved.state.analysis_started == 1000.0


def test_healthy_canaries_over_three_steps_are_rolled_back_at_most_alpha_over_k_per_delivery() -> None:
    """benchmarks/failfast.py's deliver rules judge the delivery's span from its first step (as the
    engine's window_start), and healthy canaries looked at every 30 s over three 5-minute steps at
    1000 requests/window are rolled back in at most half of alpha/k = 2.5 % of deliveries: 1.0 % on
    these streams (with a fresh e-process per step, as before: 1.77 %)."""
    import numpy as np

    from benchmarks import failfast as bench

    rng = np.random.default_rng([20261130, 17])
    healthy = bench.error_streams(rng, 3000, 250, 0.005, 0.005)
    judge = bench.deliver_codes(healthy)
    starts: set[int] = set()

    def spy(start: Any, end: int) -> Any:
        starts.update(np.unique(start).tolist())
        return judge(start, end)

    original = bench.deliver_codes
    bench.deliver_codes = lambda s: spy  # type: ignore[assignment]
    try:
        tick = bench.run_deliver(healthy, continuous=True)
    finally:
        bench.deliver_codes = original
    assert starts == {0}  # every look and step end: the span from the first step
    rate = float((tick <= bench.HORIZON).mean())
    assert rate <= bench.ALPHA / bench.FAMILY / 2, rate
