"""Bridge between the engine and the metric analysis: one Analyse action -> one StepVerdict."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from strategies.model import Analyse, DeliverySpec, DeliveryState, StepVerdict, Strategy

from . import templates
from .kube import Kube
from .observe import replicasets


def make_analyser(
    kube: Kube, prometheus_url: str, timeout: float = 10.0, clock: Callable[[], float] = time.time
) -> Callable[..., StepVerdict]:
    from .analysis.providers import make_provider
    from .analysis.runner import Analyser, AnalysisTarget

    runner = Analyser(make_provider("prometheus", url=prometheus_url, timeout=timeout))

    def analyse(spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse) -> StepVerdict:
        meta = deployment["metadata"]
        canary_hash = state.revision
        if spec.strategy in (Strategy.ROLLING, Strategy.RECREATE):
            owned, _ = replicasets(kube, deployment)
            for rs in owned:
                if templates.revision(rs["spec"]["template"]) == state.revision:
                    canary_hash = rs["spec"]["template"]["metadata"]["labels"].get(templates.HASH_LABEL, "")
        canary_service = baseline_service = ""
        if spec.strategy is Strategy.CANARY and spec.router.kind != "replica":
            canary_service, baseline_service = spec.canary_service, spec.stable_service
        elif spec.strategy is Strategy.BLUE_GREEN:
            canary_service, baseline_service = spec.preview_service, spec.active_service
        target = AnalysisTarget(
            namespace=meta["namespace"],
            name=meta["name"],
            canary_hash=canary_hash,
            baseline_hash=state.stable_hash,
            canary_service=canary_service,
            baseline_service=baseline_service,
        )
        now = clock()
        # recreate never runs both versions: judge the new one against the old one's last window
        baseline_end = state.started if spec.strategy is Strategy.RECREATE else None
        result = runner.run(spec.analysis, target, action.start, now, baseline_end=baseline_end)
        return StepVerdict(action.step, result.outcome, result.summary(), now, details=result.to_dict())

    return analyse
