"""Canary: deliver's own ReplicaSet takes a growing share of traffic, step by step, each analysed.

Replica shares (``deliver.dev/canary-scale``): the Deployment's (or its HPA's) replica count N is the
total. ``exact`` (the default) runs the new version's share of N as new pods and scales the stable
ReplicaSet down by as many (held from the Deployment controller, ``HoldStable``) once they are Ready,
never leaving fewer pods available than the Deployment's ``maxUnavailable`` and a PodDisruptionBudget
allow; ``surge`` runs ceil(N*w/100) new pods beside all N stable pods. With a weighted router the new
pods receive exactly w percent of traffic either way. Promotion scales the new version to N, shifts
all traffic, then hands the ReplicaSet to the Deployment, whose own controller scales the old version
to zero. A rollback gives the stable ReplicaSet back first and keeps the canary's pods until the
stable version is back at full capacity.
"""

from __future__ import annotations

import math

from .actions import (
    Action,
    AdoptNew,
    DeleteNew,
    EnsureService,
    HoldStable,
    Plan,
    PostEvent,
    ReleaseStable,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SetWeight,
)
from .evidence import Outcome
from .observation import Disruption, Observation, VersionObs
from .reasons import EventReason as R
from .record import DeliveryState, HoldReason, Phase
from .spec import CanaryStep, DeliverySpec
from .steps import (
    PROMOTION,
    RECHECK,
    ROUTER_DRAIN,
    Promotion,
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

    def drains(self, spec: DeliverySpec) -> bool:
        return spec.router.kind != "replica"  # behind a weighted router

    def exclusive(self) -> bool:
        return False

    def pinned_services(self, spec: DeliverySpec) -> tuple[str, ...]:
        """Behind a weighted router: the stable and canary Services the route splits between."""
        return () if spec.router.kind == "replica" else (spec.stable_service, spec.canary_service)

    def rest_service(self, spec: DeliverySpec) -> str:
        """Behind a weighted router: NAME-stable, the route at 100/0."""
        return "" if spec.router.kind == "replica" else spec.stable_service

    def serving(self, spec: DeliverySpec, state: DeliveryState) -> bool:
        """A step that serves its share now (its analysis window is running)."""
        if state.phase is not Phase.PROGRESSING or not 0 <= state.step < len(spec.steps):
            return False
        step = spec.steps[state.step]
        return not step.pause and step.weight < 100 and state.weight == step.weight

    def load_ready(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> bool:
        return True  # a step serves its share once its weight is set

    def promotes(self, before: DeliveryState, after: DeliveryState) -> bool:
        """All steps passed: Progressing -> Promoting."""
        return after.phase is Phase.PROMOTING

    def promotion(self, state: DeliveryState) -> Promotion:
        return PROMOTION

    def holding(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        return ()  # the last writes of the step stand as they are

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        # Traffic first; behind a router the pods go once it has drained them (steps.undo_actions).
        # A stable version scaled down for an exact share gets its capacity back before the canary's
        # pods go (the plan releases a held ReplicaSet first; its Deployment scales it back up).
        if _restoring_stable(spec, state, obs):
            return (SetWeight(0), RevertTemplate(state.stable_revision, state.stable_template))
        return (SetWeight(0), DeleteNew(), RevertTemplate(state.stable_revision, state.stable_template))

    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
        steps = spec.steps
        if state.step >= len(steps) or (not steps[state.step].pause and steps[state.step].weight >= 100):
            if state.phase is Phase.PAUSED:
                # the promotion failed with auto-rollback off: held until `deliver promote` or `abort`
                return Plan(state, () if obs.paused else (SetPaused(True),), None)
            return self._promote(spec, state, obs)
        step = steps[state.step]
        shown = step if not step.pause else _previous_step(spec, state.step)  # what a pause keeps serving
        weight = shown.weight if shown is not None else 0
        matching = shown is not None and shown.match  # a `match` step: matched requests only, one new pod
        mirroring = shown is not None and shown.mirror  # a `mirror` step: pods for the copies, stable keeps N
        if mirroring:
            want = ceil_share(obs.replicas, spec.mirror_percent)
        elif matching:
            want = min(1, obs.replicas)
        else:
            want = canary_pods(obs.replicas, weight, spec.canary_scale)
        new = obs.deliver_owned(state.revision)
        converge: list[Action] = [SetPaused(True)] if not obs.paused else []
        ready = new.ready if new is not None else 0
        routed = bool(state.weight or obs.router_weight or obs.router_extras)
        withdraw = spec.router.kind != "replica" and (ready == 0 or want == 0) and routed
        if withdraw:
            # No Ready canary pod (scaled to zero, or back from zero and still starting): the route
            # gives it nothing until one is Ready, and the step's share starts over then. Scaled to
            # zero, the canary pods go only once the route gives them nothing (the next pass).
            converge.append(SetWeight(0))
            state = state.replace(weight=0)
        keep = new.replicas if withdraw and want == 0 and new is not None else want
        converge += [ScaleNew(keep), *services(spec, state.stable_hash, state.revision)]
        held = hold_stable(spec, state, obs, 0 if mirroring else want, new)
        converge += held
        if not withdraw and want > 0 and ready >= want and (weight > 0 or matching or mirroring):
            mirror = spec.mirror_percent if mirroring else 0
            pin = spec.affinity and weight > 0  # weighted steps: each client stays on the version it got
            converge.append(SetWeight(weight, match=spec.match is not None, mirror=mirror, pin=pin))
        settled = not held or held[0].replicas <= stable_goal(obs.replicas, want)
        if not withdraw and want > 0 and ready >= want and settled and state.weight != weight and not step.pause:
            # The step's share is served from now on: its hold starts here, not when the step began
            # (pods may have taken most of the interval to become Ready). The analysis span starts
            # with the first share served and runs over the whole delivery (one e-process: the
            # judges are stratified per window, so later steps' shares continue it; docs/failfast.md).
            span = obs.now if state.weight == 0 else state.analysis_started
            state = state.replace(weight=weight, step_started=obs.now, analysis_started=span)

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
        if checked is Outcome.PASS:
            moved = state.replace(
                step=state.step + 1,
                step_started=obs.now,  # the analysis span goes on: one e-process per delivery
                extensions=0,
                message=f"step {state.step + 1} ({step.describe()}) passed",
            )
            nxt = self.advance(spec, moved, obs)
            event = step_passed(state, state.step, f"step {state.step + 1} ({step.describe()})", "moving on")
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
                return Plan(
                    state,
                    head + (ScaleNew(n), *services(spec, state.stable_hash, state.revision), *_keep_held(obs, state)),
                    RECHECK,
                )
            if spec.router.kind != "replica":
                # All traffic to the new pods first; the old pods go (adoption) only after the
                # router confirms 100% and has had ROUTER_DRAIN to apply it.
                if state.weight != 100 or not state.switched:
                    return Plan(
                        state.replace(weight=100, switched=obs.now),
                        head + (SetWeight(100), *_keep_held(obs, state)),
                        RECHECK,
                    )
                # scale-down-delay: the old pods stay that long after the switch (an abort meanwhile
                # switches traffic back at once); they go with the adoption.
                keep = max(ROUTER_DRAIN, spec.scale_down_delay)
                if obs.router_weight not in (None, 100) or obs.now - state.switched < keep:
                    return Plan(
                        state,
                        head + (SetWeight(100), *_keep_held(obs, state)),
                        max(0.2, min(RECHECK * 5, keep - (obs.now - state.switched))),
                    )
            return Plan(state.replace(weight=100), head + (SetWeight(100), AdoptNew(), *_release(obs)), RECHECK)
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


def _previous_step(spec: DeliverySpec, index: int) -> CanaryStep | None:
    """The step a manual-promotion pause keeps serving: the last one before it (None: none)."""
    for step in reversed(spec.steps[:index]):
        if not step.pause:
            return step
    return None


# ---------------------------------------------------------------- replica shares (canary-scale)


def _scaled(value: str, total: int, round_up: bool) -> int:
    """An int-or-percent value ("2", "25%") of ``total``, as Kubernetes scales it; unreadable: 0."""
    text = value.strip()
    try:
        if text.endswith("%"):
            exact = total * int(text[:-1]) / 100
            return math.ceil(exact) if round_up else math.floor(exact)
        return int(text)
    except ValueError:
        return 0


def min_available(total: int, disruption: Disruption) -> int:
    """Pods (stable and canary together) that must stay available while the stable is scaled down:
    the Deployment's ``maxUnavailable`` (rounded down, as its controller does; 1 when it and
    ``maxSurge`` are both 0; none for Recreate) and a PodDisruptionBudget's ``minAvailable`` /
    ``maxUnavailable`` (rounded up, as the disruption controller does). Unreadable PDBs: all."""
    if disruption.unknown:
        return total
    unavailable = 0
    if disruption.strategy == "RollingUpdate":
        unavailable = _scaled(disruption.max_unavailable, total, round_up=False)
        if unavailable == 0 and _scaled(disruption.max_surge, total, round_up=True) == 0:
            unavailable = 1
    floor = total - unavailable
    if disruption.pdb_min_available:
        floor = max(floor, _scaled(disruption.pdb_min_available, total, round_up=True))
    if disruption.pdb_max_unavailable:
        floor = max(floor, total - _scaled(disruption.pdb_max_unavailable, total, round_up=True))
    return max(0, min(total, floor))


def canary_pods(total: int, weight: int, mode: str = "exact") -> int:
    """New pods for a step of ``weight`` percent on ``total`` replicas.

    ``surge``: ceil(total*w/100) (at least one). ``exact``: the nearest whole share of ``total`` (a
    tie goes to the fewer canary pods), at least one and, below 100 %, at most ``total - 1`` so a
    stable pod stays; 100 %: all of them."""
    if mode == "surge":
        return ceil_share(total, weight)
    if weight <= 0 or total <= 0:
        return 0
    if weight >= 100:
        return total
    nearest = math.ceil(total * weight / 100 - 0.5)
    return max(1, min(nearest, total - 1))


def stable_goal(total: int, canary: int) -> int:
    """Stable pods beside ``canary`` new ones in an exact step: the rest of ``total``, at least one
    (one replica in all: one pod of each, the nearest share a canary below 100 % can have)."""
    return max(1, total - canary)


def stable_pods(total: int, canary: int, stable: VersionObs, new: VersionObs | None, disruption: Disruption) -> int:
    """The stable ReplicaSet's replicas now, on the way to ``stable_goal``.

    Never fewer than the pods that keep ``min_available`` pods available beside the canary's Ready
    ones (scaled back up at once when canary pods stop being Ready); scaled down only by as many pods
    as are available beyond ``min_available`` (the canary's Ready pods count: they serve the same
    app), so capacity never drops below what the user allows."""
    floor = min_available(total, disruption)
    canary_ready = min(new.replicas, new.ready) if new is not None else 0
    cover = min(total, max(stable_goal(total, canary), floor - canary_ready))
    if cover >= stable.replicas:
        return cover
    available = min(stable.replicas, stable.available) + canary_ready
    removable = max(0, available - floor)
    return max(cover, stable.replicas - removable)


def hold_stable(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, canary: int, new: VersionObs | None
) -> tuple[HoldStable, ...]:
    """The HoldStable of an exact step (none: the Deployment keeps its stable ReplicaSet at N)."""
    stable = obs.version(state.stable_revision)
    if spec.canary_scale != "exact" or obs.replicas <= 0 or canary <= 0 or stable is None or not stable.owned:
        return ()
    target = stable_pods(obs.replicas, canary, stable, new, obs.disruption)
    if target >= obs.replicas and not stable.held:
        return ()
    return (HoldStable(target),)


def _keep_held(obs: Observation, state: DeliveryState) -> tuple[Action, ...]:
    """While promoting: a held stable ReplicaSet stays as it is until the new one is adopted."""
    stable = obs.version(state.stable_revision)
    return (HoldStable(stable.replicas),) if stable is not None and stable.held else ()


def _release(obs: Observation) -> tuple[Action, ...]:
    return (ReleaseStable(),) if any(v.held for v in obs.versions) else ()


def _restoring_stable(spec: DeliverySpec, state: DeliveryState, obs: Observation) -> bool:
    """Undoing an exact canary: is the stable version still short of its capacity (so the canary's
    pods stay)? Bounded by the progress deadline, so a stable that cannot come back does not keep
    the failed version's pods forever."""
    stable = obs.version(state.stable_revision)
    if stable is None or obs.replicas <= 0:
        return False
    if stable.held:
        return True
    if spec.canary_scale != "exact" or stable.ready >= obs.replicas:
        return False
    return obs.now - state.finished < spec.progress_deadline
