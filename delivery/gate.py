"""``deliver gate``: wait for the delivery of the Deployment's current template and say how it ended.

The revision to gate is fixed at the first read: the pod template the Deployment declares when the
gate starts (the one the CI pipeline just applied). The gate then follows the rollout record until
that revision is promoted (exit 0), rolled back / aborted / refused (exit 1), the timeout passes
(exit 3) or the API keeps failing or denies access (exit 4). Waiting uses a watch on the
Deployment, not a polling loop; if watching is forbidden it falls back to reading every 2 seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strategies.model import DeliverySpec, DeliveryState, HoldReason, Phase

from . import spec as specmod
from . import templates
from .errors import Forbidden, Gone, KubeError, NotFound, SpecError, StateError, Unauthorized
from .kube import DEPLOYMENTS, Kube
from .state import read_request, read_state

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_API = 0, 1, 2, 3, 4

# A delivery that ended this recently, and whose template was already put back, is the one a gate
# started right after the change reports (see choose_revision).
RECENT = 120.0

# How long the API may keep failing (5xx, unreachable) before the gate gives up with exit 4.
API_PATIENCE = 30.0


@dataclass
class GateResult:
    code: int
    reason: str
    namespace: str
    name: str
    revision: str = ""  # the revision that was gated
    status: dict[str, Any] = field(default_factory=dict)  # the last status read (see status_dict)
    duration: float = 0.0
    spec: DeliverySpec | None = None

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "promoted", EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout", EXIT_API: "api-error"}.get(
            self.code, "error"
        )


def status_dict(deployment: dict[str, Any]) -> dict[str, Any]:
    """Everything ``deliver status`` shows about one Deployment, as plain data."""
    meta = deployment["metadata"]
    problems = [f"{e.key}: {e.problem}" for e in specmod.problems(deployment)]
    try:
        state = read_state(deployment).to_dict()
    except StateError as exc:
        state = {"phase": "Unknown", "message": str(exc)}
    state.pop("failedTemplate", None)
    state.pop("handledRequest", None)
    status = deployment.get("status") or {}
    spec = deployment.get("spec") or {}
    verb, rid = read_request(deployment)
    pending = verb if rid and rid != (_handled(deployment) or "") else ""
    out: dict[str, Any] = {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "strategy": (meta.get("annotations") or {}).get(specmod.STRATEGY, ""),
        "valid": not problems,
        "problems": problems,
        "replicas": spec.get("replicas", 1) if spec.get("replicas") is not None else 1,
        "ready": int(status.get("readyReplicas") or 0),
        "paused": bool(spec.get("paused")),
        "target": templates.revision(spec.get("template") or {}),
        "pendingRequest": pending,
    }
    state.pop("strategy", None)  # the record's copy; the annotation is what is declared now
    out.update(state)
    out.setdefault("phase", Phase.IDLE.value)
    return out


def _handled(deployment: dict[str, Any]) -> str:
    try:
        return read_state(deployment).handled_request
    except StateError:
        return ""


def decide(want: str, deployment: dict[str, Any]) -> tuple[int | None, str]:
    """(exit code or None to keep waiting, reason) for the delivery of revision ``want``."""
    meta = deployment.get("metadata") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if not specmod.has_strategy(deployment):
        return EXIT_FAILED, f"deployment {name} is not managed by deliver (no {specmod.STRATEGY} annotation)"
    problems = specmod.problems(deployment)
    if problems:
        listed = "; ".join(f"{e.key}: {e.problem}" for e in problems)
        return EXIT_FAILED, f"invalid annotations, deliver takes no action: {listed}"
    try:
        state = read_state(deployment)
    except StateError as exc:
        return EXIT_FAILED, str(exc)
    target = templates.revision((deployment.get("spec") or {}).get("template") or {})
    verb, rid = read_request(deployment)
    if rid and rid != state.handled_request:
        return None, f"waiting for the controller to take the `{verb}` request"
    phase = state.phase
    if state.revision == want or (phase == Phase.IDLE and state.stable_revision == want):
        if phase == Phase.SUCCEEDED:
            return EXIT_OK, f"revision {want} promoted"
        if phase == Phase.IDLE:
            if state.stable_revision == want and target == want:
                return EXIT_OK, f"nothing to deliver: revision {want} is the stable version"
            return None, state.message or "waiting for the controller"
        if phase in (Phase.ROLLED_BACK, Phase.ABORTED):
            hint = ""
            if state.failed_revision == want and target == want and state.hold is not HoldReason.PREVIOUSLY_FAILED:
                hint = f" (run `deliver retry {meta.get('name', '')}` to deliver it again)"
            return EXIT_FAILED, f"{phase.value}: {state.message}{hint}"
        if phase == Phase.PAUSED and _failed_while_paused(state):
            # deliver.dev/auto-rollback: "false": the delivery failed and waits for an operator's
            # abort or promote; for CI that is a failure (the new version did not pass)
            return EXIT_FAILED, f"failed, automatic rollback is off, waiting for an operator: {state.message}"
        return None, f"{phase.value} step {state.step + 1} weight {state.weight}%: {state.message}"
    if state.failed_revision == want and phase.terminal:
        return EXIT_FAILED, f"revision {want} was rolled back: {state.message}"
    if phase.terminal and state.stable_revision == want and target == want:
        return EXIT_OK, f"nothing to deliver: revision {want} is the stable version"
    if target != want:
        return EXIT_FAILED, (
            f"the Deployment's template changed to revision {target} while the gate "
            f"waited for revision {want} (superseded)"
        )
    return None, f"waiting for the controller to start delivering revision {want}"


def choose_revision(deployment: dict[str, Any], now: float, recent: float = RECENT) -> str:
    """The revision the gate follows: normally the template the Deployment declares now.

    A delivery that failed fast may already have written the stable template back before the gate
    started (a crash-looping canary is rolled back in well under a second). Then the template *is*
    the stable version, and the delivery to report is the one in the record: still rolling back,
    or rolled back / aborted less than ``recent`` seconds ago.
    """
    target = templates.revision((deployment.get("spec") or {}).get("template") or {})
    try:
        state = read_state(deployment)
    except StateError:
        return target
    if not state.revision or state.revision == target or target != state.stable_revision:
        return target
    if not state.phase.terminal:
        return state.revision
    if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED) and now - state.finished <= recent:
        return state.revision
    return target


def _failed_while_paused(state: DeliveryState) -> bool:
    """Paused because the step failed (auto-rollback off), not awaiting promotion or on an inconclusive analysis."""
    if state.hold is HoldReason.FAILED:  # strategies.steps.rollback with auto_rollback off
        return True
    for v in reversed(state.verdicts):
        if v.step == state.step and v.at >= state.step_started:
            return v.outcome == "fail"
    return False


def spec_of(deployment: dict[str, Any]) -> DeliverySpec | None:
    try:
        return specmod.parse(deployment)
    except (SpecError, Exception):  # the report works without the spec
        return None


class _Waiter:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        timeout: float,
        on_status: Callable[[dict[str, Any]], None],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.wall = wall
        self.on_status, self.clock, self.sleep = on_status, clock, sleep
        self.started = clock()
        self.deadline = self.started + timeout
        self.want = ""
        self.last: dict[str, Any] = {}
        self.spec: DeliverySpec | None = None
        self.failing_since: float | None = None
        self.poll = False

    def result(self, code: int, reason: str) -> GateResult:
        return GateResult(
            code, reason, self.namespace, self.name, self.want, self.last, self.clock() - self.started, self.spec
        )

    def see(self, deployment: dict[str, Any]) -> GateResult | None:
        if not self.want:
            self.want = choose_revision(deployment, self.wall())
        if self.spec is None:
            self.spec = spec_of(deployment)
        self.last = status_dict(deployment)
        self.on_status(self.last)
        code, reason = decide(self.want, deployment)
        return None if code is None else self.result(code, reason)

    def api_trouble(self, exc: KubeError) -> GateResult | None:
        if isinstance(exc, (Unauthorized, Forbidden)):
            return self.result(EXIT_API, str(exc))
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        if now - self.failing_since > API_PATIENCE:
            return self.result(EXIT_API, f"the API kept failing for {int(now - self.failing_since)}s: {exc}")
        self.sleep(1.0)
        return None

    def run(self) -> GateResult:
        while True:
            if self.clock() >= self.deadline and self.want:
                return self.result(EXIT_TIMEOUT, self._timeout_reason())
            try:
                deployment = self.kube.get(DEPLOYMENTS, self.namespace, self.name)
            except NotFound:
                return self.result(EXIT_FAILED, f"deployment {self.namespace}/{self.name} not found")
            except KubeError as exc:
                stop = self.api_trouble(exc)
                if stop is not None:
                    return stop
                if self.clock() >= self.deadline:
                    if not self.want:  # never reached the API at all
                        return self.result(EXIT_API, f"cannot read deployment {self.namespace}/{self.name}: {exc}")
                    return self.result(EXIT_TIMEOUT, self._timeout_reason())
                continue
            self.failing_since = None
            done = self.see(deployment)
            if done is not None:
                return done
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return self.result(EXIT_TIMEOUT, self._timeout_reason())
            if self.poll:
                self.sleep(min(2.0, remaining))
                continue
            try:
                done = self._watch(deployment["metadata"]["resourceVersion"], remaining)
            except Gone:
                continue
            except Forbidden:
                self.poll = True  # get is allowed, watch is not: read every 2 seconds instead
                continue
            except KubeError as exc:
                stop = self.api_trouble(exc)
                if stop is not None:
                    return stop
                continue
            if done is not None:
                return done

    def _watch(self, rv: str, remaining: float) -> GateResult | None:
        seconds = max(1, min(30, math.ceil(remaining)))
        for event in self.kube.watch(DEPLOYMENTS, self.namespace, rv, seconds):
            obj = event.get("object") or {}
            if (obj.get("metadata") or {}).get("name") != self.name or event.get("type") == "BOOKMARK":
                if self.clock() >= self.deadline:
                    return None
                continue
            if event.get("type") == "DELETED":
                return self.result(EXIT_FAILED, f"deployment {self.namespace}/{self.name} was deleted")
            done = self.see(obj)
            if done is not None:
                return done
            if self.clock() >= self.deadline:
                return None
        return None

    def _timeout_reason(self) -> str:
        phase = self.last.get("phase", "")
        message = self.last.get("message", "")
        waited = int(self.clock() - self.started)
        return (
            f"timed out after {waited}s waiting for revision {self.want}; "
            f"phase {phase}{': ' + message if message else ''}"
        )


def wait(
    kube: Kube,
    namespace: str,
    name: str,
    timeout: float,
    on_status: Callable[[dict[str, Any]], None] = lambda _s: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GateResult:
    """Follow the delivery of the Deployment's current template until it ends or ``timeout`` passes."""
    return _Waiter(kube, namespace, name, timeout, on_status, clock, sleep).run()
