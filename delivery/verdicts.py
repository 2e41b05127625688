"""Bridge between the engine and the metric analysis: one Analyse action -> one StepVerdict."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from strategies.model import Analyse, DeliverySpec, DeliveryState, StepVerdict

from .kube import Kube


def make_analyser(
    kube: Kube, prometheus_url: str, timeout: float = 10.0, clock: Callable[[], float] = time.time
) -> Callable[..., StepVerdict]:
    """The engine's analyser: Prometheus at ``prometheus_url``. (``kube`` is no longer read: the
    plan names the pods and Services to compare.)"""
    from .analysis.providers import make_provider
    from .analysis.runner import Analyser, AnalysisTarget

    runner = Analyser(make_provider("prometheus", url=prometheus_url, timeout=timeout))

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
        result = runner.run(spec.analysis, target, action.start, now, baseline_end=action.baseline_end)
        return StepVerdict(action.step, result.outcome, result.summary(), now, details=result.to_dict())

    return analyse
