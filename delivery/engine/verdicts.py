"""Bridge between the engine and the metric analysis: one Analyse action -> one StepVerdict."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from delivery.kube.client import Kube
from delivery.settings import Settings
from strategies.actions import Analyse
from strategies.evidence import Outcome, StepVerdict
from strategies.record import DeliveryState
from strategies.spec import DeliverySpec

if TYPE_CHECKING:
    from delivery.analysis.prometheus import Sample, Series
    from delivery.analysis.providers import MetricProvider
    from delivery.analysis.runner import AnalysisResult

# (namespace, deployment, ok): one metrics query made for that delivery's analysis (ok: it answered)
QueryCounter = Callable[[str, str, bool], None]

log = logging.getLogger("deliver.verdicts")


def make_analyser(
    kube: Kube,
    prometheus_url: str,
    clock: Callable[[], float] = time.time,
    on_query: QueryCounter | None = None,
    settings: Settings = Settings(),
    **options: Any,
) -> Callable[..., StepVerdict]:
    """The engine's analyser: Prometheus at ``prometheus_url``. (``kube`` is no longer read: the
    plan names the pods and Services to compare.) ``on_query`` is told of every query, per delivery
    (the controller counts them in ``/metrics``). A query's deadline is ``settings.analysis``'s.
    ``options`` go to the client: ``auth`` (a PrometheusAuth), ``max_series``, ``max_bytes``. A bad
    URL or option raises ValueError."""
    from delivery.analysis.providers import make_provider

    provider = make_provider("prometheus", url=prometheus_url, timeout=settings.analysis.prometheus_timeout, **options)

    def analyse(spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse) -> StepVerdict:
        """What to compare comes from the plan (the Analyse action); this only measures."""
        meta = deployment["metadata"]
        counted = provider if on_query is None else counting(provider, meta["namespace"], meta["name"], on_query)
        return run_checks(counted, spec, state, meta, action, clock())

    return analyse


def run_checks(
    provider: MetricProvider,
    spec: DeliverySpec,
    state: DeliveryState,
    meta: dict[str, Any],
    action: Analyse,
    now: float,
) -> StepVerdict:
    """The declared checks over the action's window [start, now] as one StepVerdict. A look at the
    running window (``action.interim``) says its evidence in one line (see ``evidence``)."""
    from delivery.analysis.runner import Analyser, AnalysisTarget

    target = AnalysisTarget(
        namespace=meta["namespace"],
        name=meta["name"],
        canary_hash=action.new_hash or state.revision,
        baseline_hash=action.stable_hash or state.stable_hash,
        canary_service=action.new_service,
        baseline_service=action.stable_service,
    )
    # One Analyser per analysis: they run concurrently on the pool's threads (looks and step ends of
    # several deliveries), and an Analyser keeps the window it is judging while it runs.
    runner = Analyser(provider)
    result = runner.run(spec.analysis, target, action.start, now, baseline_end=action.baseline_end)
    summary = result.summary()
    if action.interim:
        summary = f"running window ({int(now - action.start)}s): {evidence(spec.analysis, result)}"
    checks = tuple(c.evidence() for c in result.checks)  # what the planners decide on
    verdict = StepVerdict(
        action.step, result.outcome, summary, now, details=result.to_dict(), interim=action.interim, checks=checks
    )
    if verdict.outcome is Outcome.INCONCLUSIVE:
        verdict = with_forecast(spec, runner.counts, result, now - action.start, verdict)
    return verdict


def evidence(checks: Sequence[Any], result: AnalysisResult) -> str:
    """The evidence of each check in one line, e.g. ``error-rate inconclusive: e=3.1 (fail at 40)
    after 812 canary requests``. "fail at" is the e-value at which the check fails: 1/(alpha/k), the
    check's Bonferroni share of the family-wise alpha (as ``delivery.analysis.runner`` judges it)."""
    alphas = [float(getattr(c, "alpha", 0.05)) for c in checks] or [0.05]
    fail_at = len(alphas) / min(alphas)
    parts = []
    for c in result.checks:
        if c.e_value is None or not math.isfinite(c.e_value):
            parts.append(f"{c.name} {c.outcome} ({c.message})")
            continue
        parts.append(
            f"{c.name} {c.outcome}: e={c.e_value:.2g} (fail at {fail_at:g}) after {c.n_canary} canary requests"
            + ("" if c.critical else " (not critical)")
        )
    return "; ".join(parts) or f"{result.outcome}: no checks"


def counting(provider: MetricProvider, namespace: str, name: str, on_query: QueryCounter) -> MetricProvider:
    """``provider``, telling ``on_query`` of each query it makes for this delivery."""
    from delivery.analysis.providers import MetricProvider

    class Counted(MetricProvider):
        name = provider.name

        def instant(self, query: str, at: float) -> tuple[Sample, ...]:
            try:
                samples = provider.instant(query, at)
            except Exception:
                on_query(namespace, name, False)
                raise
            on_query(namespace, name, True)
            return samples

        def range(self, query: str, start: float, end: float, step: float) -> tuple[Series, ...]:
            try:
                series = provider.range(query, start, end, step)
            except Exception:
                on_query(namespace, name, False)
                raise
            on_query(namespace, name, True)
            return series

    return Counted()


def with_forecast(
    spec: DeliverySpec,
    counts: dict[str, tuple[float, float, float, float]],
    result: AnalysisResult,
    seconds: float,
    verdict: StepVerdict,
) -> StepVerdict:
    """An inconclusive verdict with the time-to-verdict forecast: its summary ends with the check that
    decides last ("verdict in ~4,800 more requests (~6 min at 13 req/s)"), its details keep each
    critical check's numbers ("forecast") and, when a step's whole analysis window cannot carry the
    requests a verdict needs at the observed rate, ``out_of_reach`` says why (the planner warns once
    per delivery on it: a typed field, kept in the record whatever its size)."""
    from delivery.analysis.forecast import binding, forecast_analysis, out_of_reach

    try:
        forecasts = forecast_analysis(spec.analysis, result.checks, counts, seconds)
    except Exception as exc:  # a forecast is never worth losing the verdict for
        log.warning("forecast failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return verdict
    last = binding(forecasts)
    if last is None:
        return verdict
    # with on-inconclusive: extend the window grows by an interval per extension (the step restarts,
    # its analysis window does not)
    steps = 1 + (spec.max_extensions if spec.on_inconclusive == "extend" else 0)
    observed = float(sum(c.n_canary + c.n_baseline for c in result.checks if c.name == last.check))
    return dataclasses.replace(
        verdict,
        summary=f"{verdict.summary}; {last.check}: {last.text()}",
        details=dict(verdict.details, forecast=[f.to_dict() for f in forecasts]),
        out_of_reach=out_of_reach(last, observed, spec.interval * steps),
    )
