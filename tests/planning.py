"""Builders for planner tests: observations and specs without a cluster."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from strategies.observation import Observation, PodHealth, VersionObs
from strategies.record import DeliveryState
from strategies.spec import CanaryStep, DeliverySpec, Strategy

STABLE, NEW = "stablerev1", "newrev0001"


def version(
    revision: str,
    replicas: int,
    ready: int | None = None,
    owned: bool = True,
    pod_hash: str | None = None,
    **health: Any,
) -> VersionObs:
    ready = replicas if ready is None else ready
    if ready < replicas:
        # unless a test says otherwise, its unready pods have not been Ready since before the step
        health.setdefault("oldest_unready_age", 1e9)
    return VersionObs(
        name=f"app-{revision}",
        pod_hash=pod_hash or revision,
        revision=revision,
        owned=owned,
        replicas=replicas,
        ready=ready,
        available=ready,
        health=PodHealth(**{"total": replicas, "ready": ready, **health}),
    )


def obs(
    *versions: VersionObs,
    now: float = 1000.0,
    replicas: int = 5,
    target: str = NEW,
    paused: bool = True,
    native: str = "RollingUpdate",
    **kw: Any,
) -> Observation:
    owned = [v for v in versions if v.owned]
    total = sum(v.replicas for v in owned)
    updated = sum(v.replicas for v in owned if v.revision == target)
    available = sum(v.available for v in owned)
    fields: dict[str, Any] = dict(
        now=now,
        namespace="ns",
        name="app",
        generation=2,
        observed_generation=2,
        replicas=replicas,
        paused=paused,
        target_revision=target,
        native_strategy=native,
        updated_replicas=updated,
        ready_replicas=available,
        available_replicas=available,
        total_replicas=total,
        versions=tuple(versions),
        template={"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}},
    )
    fields.update(kw)
    return Observation(**fields)


def canary_spec(**kw: Any) -> DeliverySpec:
    base = dict(
        strategy=Strategy.CANARY,
        steps=(CanaryStep(20), CanaryStep(50), CanaryStep(100)),
        interval=30.0,
        progress_deadline=120.0,
        stable_service="app-stable",
        canary_service="app-canary",
    )
    base.update(kw)
    return DeliverySpec(**base)


def started(strategy: Strategy, now: float = 1000.0, **kw: Any) -> DeliveryState:
    from strategies.record import Phase

    base = dict(
        phase=Phase.PROGRESSING,
        strategy=strategy.value,
        revision=NEW,
        stable_revision=STABLE,
        stable_hash=STABLE,
        step=0,
        step_started=now,
        started=now,
        analysis_started=now,
    )
    base.update(kw)
    return DeliveryState(**base)


def later(o: Observation, seconds: float) -> Observation:
    return replace(o, now=o.now + seconds)
