"""Bridge between the engine and the metric analysis: one Analyse action -> one StepVerdict."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strategies.model import Analyse, DeliverySpec, DeliveryState, StepVerdict

from .kube import Kube

if TYPE_CHECKING:
    from .analysis.runner import AnalysisResult

log = logging.getLogger("deliver.verdicts")


def make_analyser(
    kube: Kube, prometheus_url: str, timeout: float = 10.0, clock: Callable[[], float] = time.time
) -> Callable[..., StepVerdict]:
    """The engine's analyser: Prometheus at ``prometheus_url``. (``kube`` is no longer read: the
    plan names the pods and Services to compare.)"""
    from .analysis.providers import make_provider
    from .analysis.runner import Analyser, AnalysisTarget

    provider = make_provider("prometheus", url=prometheus_url, timeout=timeout)

    def analyse(spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse) -> StepVerdict:
        """What to compare comes from the plan (the Analyse action); this only measures."""
        meta = deployment["metadata"]
        target = AnalysisTarget(
            namespace=meta["namespace"],
            name=meta["name"],
            canary_hash=action.new_hash or state.revision,
            baseline_hash=action.stable_hash or state.stable_hash,
            canary_service=action.new_service,
            baseline_service=action.stable_service,
        )
        now = clock()
        # one Analyser per analysis: a run keeps its window and counts, and the pool runs several at once
        runner = Analyser(provider)
        result = runner.run(spec.analysis, target, action.start, now, baseline_end=action.baseline_end)
        summary, details = result.summary(), result.to_dict()
        if result.outcome == "inconclusive":
            summary, details = with_forecast(spec, runner.counts, result, now - action.start, summary, details)
        return StepVerdict(action.step, result.outcome, summary, now, details=details)

    return analyse


def with_forecast(
    spec: DeliverySpec,
    counts: dict[str, tuple[float, float, float, float]],
    result: AnalysisResult,
    seconds: float,
    summary: str,
    details: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """An inconclusive verdict's summary and details with the time-to-verdict forecast: the summary
    ends with the check that decides last ("verdict in ~4,800 more requests (~6 min at 13 req/s)"),
    the details keep each critical check's numbers ("forecast") and, when a step's whole analysis
    window cannot carry the requests a verdict needs at the observed rate, why ("outOfReach")."""
    from .analysis.forecast import binding, forecast_analysis, out_of_reach

    try:
        forecasts = forecast_analysis(spec.analysis, result.checks, counts, seconds)
    except Exception as exc:  # a forecast is never worth losing the verdict for
        log.warning("forecast failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return summary, details
    last = binding(forecasts)
    if last is None:
        return summary, details
    details = dict(details, forecast=[f.to_dict() for f in forecasts])
    # with on-inconclusive: extend the window grows by an interval per extension (the step restarts,
    # its analysis window does not)
    steps = 1 + (spec.max_extensions if spec.on_inconclusive == "extend" else 0)
    observed = float(sum(c.n_canary + c.n_baseline for c in result.checks if c.name == last.check))
    warning = out_of_reach(last, observed, spec.interval * steps)
    if warning:
        details["outOfReach"] = warning
    return f"{summary}; {last.check}: {last.text()}", details
