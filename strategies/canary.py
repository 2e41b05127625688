"""Canary: deliver's own ReplicaSet takes a growing share of traffic, step by step, each analysed.

Replica ratio (no router): step weight w on a Deployment of N replicas runs ceil(N*w/100) new pods
beside the N stable pods (stable capacity is never reduced). With a weighted router the same pods
receive exactly w percent. Promotion scales the new version to N, shifts all traffic, then hands the
ReplicaSet to the Deployment, whose own controller scales the old version to zero.
"""

from __future__ import annotations

from .model import (
    Action,
    AdoptNew,
    DeleteNew,
    DeliverySpec,
    DeliveryState,
    EnsureService,
    HoldReason,
    Observation,
    Phase,
    Plan,
    PostEvent,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SetWeight,
)
from .reasons import EventReason as R
from .steps import (
    RECHECK,
    ROUTER_DRAIN,
    ceil_share,
    check_step,
    hold_no_replicas,
    rollback,
    settle_adopted,
    step_passed,
    unready_for,
)


class CanaryPlanner:
    def native(self) -> bool:
        return False

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        # Traffic first; behind a router the pods go once it has drained them (steps.undo_actions).
        return (SetWeight(0), DeleteNew(), RevertTemplate(state.stable_revision, state.stable_template))

    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
        steps = spec.steps
        if state.step >= len(steps) or (not steps[state.step].pause and steps[state.step].weight >= 100):
            if state.phase is Phase.PAUSED:
                # the promotion failed with auto-rollback off: held until `deliver promote` or `abort`
                return Plan(state, () if obs.paused else (SetPaused(True),), None)
            return self._promote(spec, state, obs)
        step = steps[state.step]
        weight = step.weight if not step.pause else _previous_weight(spec, state.step)
        want = ceil_share(obs.replicas, weight)
        new = obs.deliver_owned(state.revision)
        converge: list[Action] = [SetPaused(True)] if not obs.paused else []
        ready = new.ready if new is not None else 0
        withdraw = (
            spec.router.kind != "replica" and (ready == 0 or want == 0) and bool(state.weight or obs.router_weight)
        )
        if withdraw:
            # No Ready canary pod (scaled to zero, or back from zero and still starting): the route
            # gives it nothing until one is Ready, and the step's share starts over then. Scaled to
            # zero, the canary pods go only once the route gives them nothing (the next pass).
            converge.append(SetWeight(0))
            state = state.replace(weight=0)
        keep = new.replicas if withdraw and want == 0 and new is not None else want
        converge += [ScaleNew(keep), *services(spec, state.stable_hash, state.revision)]
        if not withdraw and want > 0 and ready >= want and weight > 0:
            converge.append(SetWeight(weight))
        if not withdraw and want > 0 and ready >= want and state.weight != weight and not step.pause:
            # The step's share is served from now on: its hold and its analysis window start here,
            # not when the step began (pods may have taken most of the interval to become Ready).
            state = state.replace(weight=weight, step_started=obs.now, analysis_started=obs.now)

        if step.pause or state.phase == Phase.PAUSED:
            if new is not None:
                problem = new.health.problem(spec.max_restarts)
                if problem:
                    return rollback(spec, state, obs, self, f"new version unhealthy: {problem}")
            if state.phase != Phase.PAUSED:
                message = f"manual promotion at step {state.step + 1}: waiting for `deliver promote {obs.name}`"
                return Plan(
                    state.replace(phase=Phase.PAUSED, hold=HoldReason.AWAITING_PROMOTION, message=message),
                    tuple(converge) + (PostEvent("Normal", R.AWAITING_PROMOTION, message),),
                    None,
                )
            return Plan(state, tuple(converge), None)

        if obs.router_weight is not None and want > 0 and ready >= want and obs.router_weight != weight:
            return Plan(state, tuple(converge), RECHECK)  # the router has not taken the weight yet

        compared = (spec.canary_service, spec.stable_service) if spec.router.kind != "replica" else ("", "")
        checked = check_step(spec, state, obs, self, new, want, state.step, compared)
        if isinstance(checked, Plan):
            return Plan(
                checked.state,
                tuple(converge) + checked.actions
                if checked.state.phase in (Phase.PROGRESSING, Phase.PAUSED)
                else checked.actions,
                checked.requeue_after,
            )
        if checked == "pass":
            moved = state.replace(
                step=state.step + 1,
                step_started=obs.now,
                analysis_started=obs.now,
                extensions=0,
                message=f"step {state.step + 1} ({weight}%) passed",
            )
            nxt = self.advance(spec, moved, obs)
            event = step_passed(state, state.step, f"step {state.step + 1} ({weight}%)", "moving on")
            return Plan(nxt.state, (event,) + nxt.actions, nxt.requeue_after)
        return Plan(state, tuple(converge), RECHECK)

    def _promote(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
        n = obs.replicas
        if state.phase != Phase.PROMOTING:
            state = state.replace(phase=Phase.PROMOTING, message=f"promoting revision {state.revision}")
            head: tuple[Action, ...] = (
                PostEvent("Normal", R.PROMOTING, f"all steps passed; promoting revision {state.revision}"),
            )
        else:
            head = ()
        ours = obs.deliver_owned(state.revision)
        adopted = obs.version(state.revision)
        routed = spec.router.kind != "replica"
        if routed and ours is not None and (ours.ready == 0 or n <= 0) and (state.weight or obs.router_weight):
            # No Ready canary pod (scaled to zero, or back and still starting): the route gives it
            # nothing (its pods go only after that), and the switch to 100 % is made again once its
            # pods are Ready.
            withdrawn = state.replace(weight=0, switched=0.0)
            return Plan(withdrawn, head + (SetWeight(0), ScaleNew(max(n, ours.replicas))), RECHECK)
        if ours is not None and n <= 0:
            held = hold_no_replicas(state, obs, "promotion")
            return Plan(held.state, head + (ScaleNew(n),) + held.actions, held.requeue_after)
        if ours is not None:
            problem = ours.health.problem(spec.max_restarts)
            if problem:
                return rollback(spec, state, obs, self, f"new version unhealthy while promoting: {problem}")
            if ours.ready < n:
                if unready_for(obs, state.step_started, ours, n) > spec.progress_deadline:
                    return rollback(spec, state, obs, self, f"only {ours.ready}/{n} new pods Ready while promoting")
                return Plan(state, head + (ScaleNew(n), *services(spec, state.stable_hash, state.revision)), RECHECK)
            if spec.router.kind != "replica":
                # All traffic to the new pods first; the old pods go (adoption) only after the
                # router confirms 100% and has had ROUTER_DRAIN to apply it.
                if state.weight != 100 or not state.switched:
                    return Plan(state.replace(weight=100, switched=obs.now), head + (SetWeight(100),), RECHECK)
                if obs.router_weight not in (None, 100) or obs.now - state.switched < ROUTER_DRAIN:
                    return Plan(state, head + (SetWeight(100),), max(0.2, ROUTER_DRAIN - (obs.now - state.switched)))
            return Plan(state.replace(weight=100), head + (SetWeight(100), AdoptNew()), RECHECK)
        if adopted is not None and adopted.owned:
            settling = settle_adopted(state, obs, adopted)
            if settling is not None:
                return Plan(state, head + settling, RECHECK)
            done = state.replace(
                phase=Phase.SUCCEEDED,
                finished=obs.now,
                weight=100,
                stable_revision=state.revision,
                stable_hash=adopted.pod_hash,
                message=f"revision {state.revision} promoted",
            )
            return Plan(
                done,
                head
                + (
                    SetPaused(True),
                    *services(spec, adopted.pod_hash, adopted.pod_hash),
                    SetWeight(0),
                    PostEvent("Normal", R.DELIVERY_SUCCEEDED, f"revision {state.revision} is the stable version"),
                ),
                None,
            )
        # Our ReplicaSet is gone before adoption (deleted by hand?): start the promotion over.
        return Plan(state, head + (ScaleNew(n),), RECHECK)


def services(spec: DeliverySpec, stable_hash: str, new_hash: str) -> tuple[Action, ...]:
    """Behind a weighted router: the stable and canary Services the route splits traffic between."""
    if spec.router.kind == "replica":
        return ()
    return (EnsureService(spec.stable_service, stable_hash), EnsureService(spec.canary_service, new_hash))


def _previous_weight(spec: DeliverySpec, index: int) -> int:
    for step in reversed(spec.steps[:index]):
        if not step.pause:
            return step.weight
    return 0
