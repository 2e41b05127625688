"""The single entry point: ``plan(spec, state, obs)``. Start, supersede, idle, operator requests,
then hand over to the strategy's planner (the ``PLANNERS`` table).

A pure function: the same inputs give the same Plan. The engine persists ``Plan.state`` first (with
resourceVersion) and then performs ``Plan.actions``, all of which are idempotent, so a controller
killed at any instant resumes by planning again from what it reads.
"""

from __future__ import annotations

import dataclasses

from .bluegreen import BlueGreenPlanner
from .canary import CanaryPlanner
from .model import (
    Action,
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
    Strategy,
    VersionObs,
)
from .recreate import RecreatePlanner
from .rolling import RollingPlanner
from .steps import RECHECK, ROUTER_DRAIN, StrategyPlanner, finish_rollback, rollback

PLANNERS: dict[Strategy, StrategyPlanner] = {
    Strategy.CANARY: CanaryPlanner(),
    Strategy.BLUE_GREEN: BlueGreenPlanner(),
    Strategy.ROLLING: RollingPlanner(),
    Strategy.RECREATE: RecreatePlanner(),
}


def planner_for(strategy: Strategy) -> StrategyPlanner:
    return PLANNERS[strategy]


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
