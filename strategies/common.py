"""The part of planning every strategy shares: start, supersede, operator requests, rollback.

``plan(spec, state, obs)`` is the single entry point. It is a pure function: the same inputs give
the same Plan. The engine persists ``Plan.state`` first (with resourceVersion) and then performs
``Plan.actions``, all of which are idempotent, so a controller killed at any instant resumes by
planning again from what it reads.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

from .model import (
    Action,
    AdoptNew,
    Analyse,
    ApplyTemplate,
    DeleteNew,
    DeliverySpec,
    DeliveryState,
    Emit,
    Observation,
    Phase,
    Plan,
    RevertTemplate,
    SetPaused,
    SetWeight,
    Strategy,
    SwitchActive,
    Verdict,
    VersionObs,
)

RECHECK = 2.0  # seconds between passes while something is moving
ROUTER_DRAIN = 5.0  # seconds pods keep running after a router moved traffic away from them


class StrategyPlanner(Protocol):
    """One strategy: how to move a started delivery forward, and what undoes it."""

    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan: ...

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]: ...

    def native(self) -> bool:
        """True when the Deployment controller itself replaces pods (rolling, recreate)."""
        ...


def planner_for(strategy: Strategy) -> StrategyPlanner:
    from . import bluegreen, canary, recreate, rolling

    return {
        Strategy.CANARY: canary.CanaryPlanner(),
        Strategy.BLUE_GREEN: bluegreen.BlueGreenPlanner(),
        Strategy.ROLLING: rolling.RollingPlanner(),
        Strategy.RECREATE: recreate.RecreatePlanner(),
    }[strategy]


def ceil_share(replicas: int, percent: int) -> int:
    """Pods needed to carry ``percent`` of ``replicas`` (at least one for any share above zero)."""
    if percent <= 0 or replicas <= 0:
        return 0
    return max(1, math.ceil(replicas * percent / 100))


def current_stable(obs: Observation) -> VersionObs | None:
    """The version the Deployment runs when no delivery is in progress: its one active ReplicaSet."""
    active = obs.active_owned()
    if len(active) == 1:
        return active[0]
    return None


def plan(spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
    planner = planner_for(spec.strategy)
    in_progress = not state.phase.terminal

    if state.strategy and state.strategy != spec.strategy.value and (in_progress or state.phase == Phase.ROLLING_BACK):
        # The strategy annotation changed mid-delivery: undo what the *old* strategy did (its
        # ReplicaSet, Service switch or router weight), then the next pass starts over.
        old = dataclasses.replace(spec, strategy=Strategy(state.strategy))
        old_planner = planner_for(old.strategy)
        if state.phase == Phase.ROLLING_BACK:
            return finish_rollback(old, state, obs, old_planner)
        return rollback(
            old, state, obs, old_planner, "strategy changed during the delivery", Phase.ABORTED, remember_failure=False
        )

    request = obs.request if obs.request_id and obs.request_id != state.handled_request else ""
    if request:
        handled = state.replace(handled_request=obs.request_id)
        answered = _operator_request(spec, handled, obs, planner, request)
        if answered is not None:
            return answered
        state = handled

    if in_progress:
        if state.phase == Phase.ROLLING_BACK:
            return finish_rollback(spec, state, obs, planner)  # the stable version is being restored
        if obs.target_revision != state.revision:
            if obs.target_revision == state.stable_revision:
                # The user put the stable template back: the delivery is moot.
                return rollback(
                    spec,
                    state,
                    obs,
                    planner,
                    "template reverted to the stable version",
                    Phase.ABORTED,
                    remember_failure=False,
                )
            superseded = _supersede(spec, state, obs, planner)
            if superseded is not None:
                return superseded
        return planner.advance(spec, state, obs)

    return _idle(spec, state, obs, planner)


def _idle(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan:
    stable = current_stable(obs)
    if stable is None:
        if not obs.owned_versions() or not obs.rollout_complete:
            # First rollout of a new Deployment (or a native rollout deliver did not start): let the
            # Deployment controller finish it; there is nothing to compare against yet.
            if obs.paused and not obs.owned_versions():
                return Plan(state, (SetPaused(False),), RECHECK)
            return Plan(state.replace(message="waiting for the initial rollout to finish"), (), RECHECK)
        return Plan(state, (), None)  # scaled to zero: nothing runs, nothing to deliver against

    if obs.target_revision == stable.revision:
        actions: list[Action] = []
        if not obs.paused:
            actions.append(SetPaused(True))
        requeue: float | None = None
        if any(not v.owned for v in obs.versions):
            # Behind a weighted router the canary pods stay a moment after the weight went to 0,
            # so the gateway/mesh has applied it before they disappear (drain).
            drained = spec.router.kind == "replica" or obs.now - state.finished >= ROUTER_DRAIN
            if drained:
                actions.append(DeleteNew())
            else:
                requeue = ROUTER_DRAIN - (obs.now - state.finished)
        new_state = state
        if state.phase == Phase.IDLE and (state.stable_revision, state.stable_hash) != (
            stable.revision,
            stable.pod_hash,
        ):
            new_state = state.replace(
                revision=stable.revision, stable_revision=stable.revision, stable_hash=stable.pod_hash, message=""
            )
        return Plan(new_state, tuple(actions), requeue)

    if obs.target_revision == state.failed_revision:
        message = (
            f"revision {state.failed_revision} was rolled back before; run `deliver retry {obs.name}` to try it again"
        )
        actions = [] if obs.paused else [SetPaused(True)]
        if state.message != message:
            actions.append(Emit("Warning", "RevisionPreviouslyFailed", message))
        return Plan(state.replace(message=message), tuple(actions), None)

    return _start(spec, state, obs, planner, stable)


def _start(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner, stable: VersionObs
) -> Plan:
    started = DeliveryState(
        phase=Phase.PROGRESSING,
        strategy=spec.strategy.value,
        revision=obs.target_revision,
        stable_revision=stable.revision,
        stable_hash=stable.pod_hash,
        step=0,
        step_started=obs.now,
        started=obs.now,
        analysis_started=obs.now,
        handled_request=state.handled_request,
        failed_revision=state.failed_revision,
        failed_template=state.failed_template,
        stable_template=stable.template or None,
        message=f"delivering revision {obs.target_revision} ({spec.strategy.value})",
    )
    first = planner.advance(spec, started, obs)
    event = Emit(
        "Normal",
        "DeliveryStarted",
        f"{spec.strategy.value} delivery of revision {obs.target_revision} started (stable {stable.revision})",
    )
    return Plan(first.state, (event,) + first.actions, first.requeue_after)


def _supersede(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan | None:
    """The template changed again mid-delivery: drop the half-delivered revision, start the newest."""
    event = Emit(
        "Normal",
        "DeliverySuperseded",
        f"revision {state.revision} superseded by {obs.target_revision} before it finished",
    )
    if planner.native():
        # The Deployment controller already follows the newest template; restart the plan on it.
        restarted = state.replace(
            revision=obs.target_revision, step=0, step_started=obs.now, analysis_started=obs.now, extensions=0, weight=0
        )
        nxt = planner.advance(spec, restarted, obs)
        return Plan(nxt.state, (event,) + nxt.actions, nxt.requeue_after)
    undo = tuple(a for a in planner.undo(spec, state, obs) if not isinstance(a, RevertTemplate))
    restarted = state.replace(
        revision=obs.target_revision,
        step=0,
        step_started=obs.now,
        analysis_started=obs.now,
        extensions=0,
        weight=0,
        switched=0.0,
        phase=Phase.PROGRESSING,
    )
    return Plan(restarted, (event,) + undo, 0.5)


def _operator_request(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner, request: str
) -> Plan | None:
    if request == "abort":
        if state.phase.terminal or state.phase == Phase.ROLLING_BACK:
            return None
        adopted = obs.version(state.revision)
        if not planner.native() and adopted is not None and adopted.owned:
            message = (
                f"abort refused: revision {state.revision} is already handed to the Deployment "
                f"and replacing the old version; run `deliver undo {obs.name}` once it finishes"
            )
            return Plan(state.replace(message=message), (Emit("Warning", "AbortRefused", message),), RECHECK)
        return rollback(spec, state, obs, planner, "aborted by an operator", Phase.ABORTED)
    if request == "retry":
        if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED) and state.failed_template:
            return Plan(
                state.replace(
                    failed_revision="", failed_template=None, message=f"retrying revision {state.failed_revision}"
                ),
                (
                    ApplyTemplate(state.failed_template),
                    Emit("Normal", "DeliveryRetried", f"retrying revision {state.failed_revision}"),
                ),
                0.5,
            )
        return None
    if request == "pause":
        if state.phase == Phase.PROGRESSING:
            return Plan(
                state.replace(phase=Phase.PAUSED, message="paused by an operator"),
                (Emit("Normal", "DeliveryPaused", "paused by an operator"),),
                None,
            )
        return None
    if request == "resume":
        if state.phase == Phase.PAUSED:
            return Plan(
                state.replace(phase=Phase.PROGRESSING, step_started=obs.now, message="resumed by an operator"),
                (Emit("Normal", "DeliveryResumed", "resumed by an operator"),),
                0.5,
            )
        return None
    if request in ("promote", "promote-full"):
        if state.phase not in (Phase.PROGRESSING, Phase.PAUSED):
            return None
        moved = state.replace(
            phase=Phase.PROGRESSING,
            step_started=obs.now,
            analysis_started=obs.now,
            extensions=0,
            message=f"{request} by an operator",
        )
        if request == "promote-full":
            moved = moved.replace(step=10_000)
        else:
            moved = moved.replace(step=state.step + 1)
        nxt = planner.advance(spec, moved, obs)
        return Plan(
            nxt.state,
            (Emit("Normal", "DeliveryPromoted", f"{request} by an operator"),) + nxt.actions,
            nxt.requeue_after,
        )
    return None


def rollback(
    spec: DeliverySpec,
    state: DeliveryState,
    obs: Observation,
    planner: StrategyPlanner,
    reason: str,
    phase: Phase = Phase.ROLLED_BACK,
    remember_failure: bool = True,
) -> Plan:
    """Stop the delivery and put the stable version back in charge, or pause if rollback is off.

    The record goes to RollingBack; ``finish_rollback`` re-issues the undo on every pass until the
    stable version is fully back, and only then records RolledBack/Aborted, so an undo step that
    fails (API error, RBAC) is retried instead of forgotten.
    """
    if phase == Phase.ROLLED_BACK and not spec.auto_rollback:
        message = (
            f"failed: {reason}; automatic rollback is off: "
            f"`deliver abort {obs.name}` rolls back, `deliver promote {obs.name}` continues"
        )
        if state.phase == Phase.PAUSED and state.message == message:
            return Plan(state, (), None)
        return Plan(
            state.replace(phase=Phase.PAUSED, message=message), (Emit("Warning", "DeliveryFailed", message),), None
        )
    failed_template = obs.template if remember_failure and obs.template else None
    verb = "aborted" if phase == Phase.ABORTED else "rolled back"
    message = f"revision {state.revision} {verb}: {reason}"
    new_state = state.replace(
        phase=Phase.ROLLING_BACK,
        message=message,
        finished=obs.now,
        weight=0,
        step=-2 if phase == Phase.ABORTED else -1,
        failed_revision=state.revision if remember_failure else "",
        failed_template=failed_template,
    )
    reason_code = "DeliveryAborted" if phase == Phase.ABORTED else "DeliveryRolledBack"
    # Undo first (traffic back to stable before anything else), then tell people.
    return Plan(new_state, _undo(spec, new_state, obs, planner) + (Emit("Warning", reason_code, message),), RECHECK)


def _drains(spec: DeliverySpec) -> bool:
    """Do pods keep running for ROUTER_DRAIN after traffic moved away from them?"""
    return spec.router.kind != "replica" or spec.strategy is Strategy.BLUE_GREEN


def _undo(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> tuple[Action, ...]:
    actions = planner.undo(spec, state, obs)
    if _drains(spec) and obs.now - state.finished < ROUTER_DRAIN:
        actions = tuple(a for a in actions if not isinstance(a, DeleteNew))
    return actions


def finish_rollback(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan:
    """RollingBack: repeat the (idempotent) undo until the stable version is fully back."""
    if planner.native():
        done = obs.target_revision == state.stable_revision and obs.rollout_complete
    else:
        done = (
            obs.target_revision == state.stable_revision
            and not any(not v.owned for v in obs.versions)
            and obs.router_weight in (None, 0)
        )
    if done:
        final = Phase.ABORTED if state.step == -2 else Phase.ROLLED_BACK
        return Plan(
            state.replace(phase=final, finished=obs.now),
            (
                SetPaused(True),
                Emit("Normal", "StableRestored", f"stable revision {state.stable_revision} fully serving again"),
            ),
            None,
        )
    actions = _undo(spec, state, obs, planner)
    if planner.native() and obs.target_revision == state.stable_revision:
        actions = tuple(a for a in actions if not isinstance(a, RevertTemplate))
    if not planner.native() and not obs.paused:
        actions = (SetPaused(True),) + actions
    wait = RECHECK
    if _drains(spec) and obs.now - state.finished < ROUTER_DRAIN:
        wait = max(0.2, ROUTER_DRAIN - (obs.now - state.finished))
    return Plan(state, actions, wait)


class NativePlanner:
    """Base of the strategies where the Deployment controller replaces the pods (rolling, recreate):
    undo = write the stable template back and let the Deployment controller roll back."""

    def native(self) -> bool:
        return True

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        return (RevertTemplate(state.stable_revision, state.stable_template), SetPaused(False))


ADOPTION_GRACE = 10.0  # seconds the paused Deployment controller gets to settle an adopted ReplicaSet


def settle_adopted(state: DeliveryState, obs: Observation, adopted: VersionObs) -> tuple[Action, ...] | None:
    """After AdoptNew: None once only the new version runs, all available; else what to do meanwhile.

    Normally the paused Deployment controller sees a saturated new ReplicaSet and scales the old one
    to zero at once. If replicas changed meanwhile (an HPA) it is not saturated and the controller
    only scales proportionally; then deliver unpauses the Deployment: its template is the new
    version's, so the native rollout finishes the job within maxUnavailable, and success pauses it
    again.
    """
    old_left = [v for v in obs.active_owned() if v.revision != state.revision]
    if not old_left and adopted.available >= obs.replicas:
        return None
    stuck = adopted.replicas != obs.replicas or obs.now - state.step_started > ADOPTION_GRACE
    return (SetPaused(False),) if stuck and obs.paused else ()


def step_verdict(state: DeliveryState, step: int) -> Verdict | None:
    """The verdict recorded for this step since it (re)started, if any."""
    for v in reversed(state.verdicts):
        if v.step == step and v.at >= state.step_started:
            return v
    return None


def gate(
    spec: DeliverySpec,
    state: DeliveryState,
    obs: Observation,
    planner: StrategyPlanner,
    version: VersionObs | None,
    expected: int,
    step: int,
) -> Plan | str | None:
    """Health and analysis gate for one step whose new pods should number ``expected``.

    Returns a Plan to return as is (waiting, analysing, failing), the string "pass" when the step
    is done and the delivery may move on, or None if the caller should keep converging.
    """
    health = version.health if version is not None else None
    if health is not None:
        problem = health.problem(spec.max_restarts)
        if problem:
            return rollback(spec, state, obs, planner, f"new version unhealthy: {problem}")
    ready = version.ready if version is not None else 0
    waited = obs.now - state.step_started
    if ready < expected:
        if waited > spec.progress_deadline or obs.deadline_exceeded:
            return rollback(
                spec,
                state,
                obs,
                planner,
                f"only {ready}/{expected} new pods Ready after {int(waited)}s "
                f"(progress deadline {int(spec.progress_deadline)}s)",
            )
        return Plan(state, (), RECHECK)
    if waited < spec.interval:
        return Plan(state, (), min(RECHECK * 5, max(0.5, spec.interval - waited)))
    verdict = step_verdict(state, step)
    if verdict is None:
        if not spec.analysis:
            summary = f"health ok: {ready}/{expected} new pods Ready, {health.restarts if health else 0} restarts"
            return Plan(
                state.replace(verdicts=state.verdicts + (Verdict(step, "pass", summary, obs.now),)),
                (Emit("Normal", "StepPassed", f"step {step + 1}: {summary}"),),
                0.1,
            )
        return Plan(state, (Analyse(step, state.analysis_started or state.step_started),), 0.1)
    if verdict.outcome == "pass":
        return "pass"
    if verdict.outcome == "fail":
        return rollback(spec, state, obs, planner, f"analysis failed: {verdict.summary}")
    # inconclusive
    if spec.on_inconclusive == "rollback":
        return rollback(spec, state, obs, planner, f"analysis inconclusive: {verdict.summary}")
    if spec.on_inconclusive == "extend" and state.extensions < spec.max_extensions:
        return Plan(
            state.replace(
                step_started=obs.now,
                extensions=state.extensions + 1,
                message=f"step {step + 1} extended: {verdict.summary}",
            ),
            (
                Emit(
                    "Normal",
                    "StepExtended",
                    f"step {step + 1} extended ({state.extensions + 1}/{spec.max_extensions}): "
                    f"analysis inconclusive: {verdict.summary}",
                ),
            ),
            RECHECK,
        )
    if state.phase == Phase.PAUSED:
        return Plan(state, (), None)
    message = (
        f"step {step + 1} inconclusive, waiting for `deliver promote {obs.name}` or "
        f"`deliver abort {obs.name}`: {verdict.summary}"
    )
    return Plan(
        state.replace(phase=Phase.PAUSED, message=message), (Emit("Warning", "AnalysisInconclusive", message),), None
    )


__all__ = [
    "plan",
    "rollback",
    "gate",
    "ceil_share",
    "current_stable",
    "finish_rollback",
    "step_verdict",
    "RECHECK",
    "AdoptNew",
    "DeleteNew",
    "SetWeight",
    "SwitchActive",
]
