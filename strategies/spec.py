"""What a Deployment declares: its validated ``deliver.dev/*`` annotations (``DeliverySpec``) and
their parts (the strategy, canary steps, the router, request matches, session affinity, hooks).
Pure data; ``delivery/spec.py`` parses the annotations into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Strategy(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blue-green"
    RECREATE = "recreate"


@dataclass(frozen=True)
class CanaryStep:
    """One canary step: the new version's share of traffic (percent), or a manual promotion."""

    weight: int = 0
    pause: bool = False  # a manual promotion: wait for `deliver promote`
    match: bool = False  # only requests matching ``DeliverySpec.match`` reach the new version (weight 0)
    mirror: bool = False  # the new version gets a copy of ``DeliverySpec.mirror_percent`` % of requests (weight 0)

    def describe(self) -> str:
        if self.match:
            return "match (matched requests only)"
        if self.mirror:
            return "mirror (a copy of the traffic)"
        return "pause (manual promotion)" if self.pause else f"{self.weight}%"


@dataclass(frozen=True)
class Affinity:
    """Session affinity at a weighted step: the cookie ``cookie`` carries the version a client got
    first (``stable`` or ``canary``: their revisions), and requests carrying it go to that version."""

    cookie: str
    stable: str
    canary: str


@dataclass(frozen=True)
class RequestMatch:
    """``deliver.dev/match``: requests carrying this header (or cookie) value go to the new version."""

    kind: str  # header | cookie
    name: str
    value: str

    def describe(self) -> str:
        return f"{self.kind} {self.name}={self.value}"


@dataclass(frozen=True)
class RouterRef:
    """A weighted traffic router declared with ``deliver.dev/router: KIND/NAME``."""

    kind: str  # replica | gateway-api | nginx | istio | smi
    name: str = ""


class HookKind(StrEnum):
    """The webhooks a delivery calls (``deliver.dev/hook-KIND``; strategies/hooks.py decides when)."""

    PRE_ROLLOUT = "pre-rollout"  # before the first step: 2xx or no rollout
    CONFIRM_PROMOTION = "confirm-promotion"  # before promotion (canary) or the switch (blue-green): polled until 2xx
    LOAD_TEST = "load-test"  # at the start of each analysed step (canary) or of the preview (blue-green): traffic
    POST_ROLLOUT = "post-rollout"  # once the delivery finished (promoted, rolled back or aborted)


@dataclass(frozen=True)
class Hooks:
    """The hooks of one Deployment: the URL of each kind declared, and how long a call may take."""

    urls: tuple[tuple[HookKind, str], ...] = ()
    timeout: float = 10.0  # seconds per call; a call that takes longer is a failure

    def url(self, kind: HookKind) -> str:
        return next((u for k, u in self.urls if k is kind), "")


@dataclass(frozen=True)
class DeliverySpec:
    """The validated ``deliver.dev/*`` annotations of one Deployment."""

    strategy: Strategy
    steps: tuple[CanaryStep, ...] = ()  # canary
    pause_at: tuple[int, ...] = ()  # rolling: percent of pods updated
    interval: float = 60.0  # seconds each step is held and analysed
    progress_deadline: float = 600.0  # seconds for a step's pods to become Ready
    auto_rollback: bool = True
    auto_promote: bool = True  # blue-green: switch without `deliver promote`
    active_service: str = ""  # blue-green
    preview_service: str = ""  # blue-green
    keep_warm: float = 120.0  # blue-green: seconds old version stays up after switch
    stable_service: str = ""  # canary with a router
    canary_service: str = ""  # canary with a router
    router: RouterRef = RouterRef("replica")
    max_restarts: int = 0  # restarts tolerated per new pod before failing
    hooks: Hooks = Hooks()  # deliver.dev/hook-* (strategies/hooks.py)
    on_inconclusive: str = "pause"  # pause | extend | rollback
    max_extensions: int = 3
    analysis: tuple[Any, ...] = ()  # delivery.analysis.checks.CheckSpec values
    # In-step analysis: seconds between looks at the growing window of an analysed step (None: the
    # engine's default, twice its Prometheus scrape interval; 0: off, the step is judged at its end only)
    analysis_every: float | None = None
    promote_early: bool = False  # a step whose every check passes moves on before its interval ends
    canary_scale: str = "exact"  # canary: exact (stable scaled down as the canary scales up) | surge
    match: RequestMatch | None = None  # canary with a router: requests routed to the new version by header/cookie
    mirror_percent: int = 100  # canary `mirror` step: share of requests copied to the new version
    affinity: bool = False  # canary with gateway-api/istio: a cookie pins each client to the version it first got
    scale_down_delay: float = 0.0  # canary with a router: seconds the old version stays after all traffic moved
    abort_scale_down_delay: float = 0.0  # canary with a router, blue-green: seconds a rolled-back version stays
