"""The single entry point: ``plan(spec, state, obs)``. Start, supersede, idle, operator requests,
then hand over to the strategy's planner (the ``PLANNERS`` table).

A pure function: the same inputs give the same Plan. The engine persists ``Plan.state`` first (with
resourceVersion) and then performs ``Plan.actions``, all of which are idempotent, so a controller
killed at any instant resumes by planning again from what it reads.
"""

from __future__ import annotations

import dataclasses

from .actions import (
    REJECTED_MARK,
    Action,
    AdoptNew,
    ApplyTemplate,
    DeleteNew,
    DeleteReplicaSet,
    EnsureService,
    HoldStable,
    MarkRejected,
    Plan,
    PostEvent,
    ReleaseStable,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SetWeight,
    UnpinService,
)
from .bluegreen import BlueGreenPlanner
from .canary import CanaryPlanner
from .evidence import Outcome, StepVerdict, with_look
from .hooks import advance as advance_with_hooks
from .hooks import finished as after_delivery
from .observation import HoldMode, Observation, ServiceObs, VersionObs
from .reasons import EventReason as R
from .record import DeliveryState, HoldReason, Phase
from .recreate import RecreatePlanner
from .requests import refusal
from .rolling import RollingPlanner
from .spec import DeliverySpec, Strategy
from .steps import (
    RECHECK,
    StrategyPlanner,
    drain_time,
    finish_rollback,
    record_looks,
    resume_with_replicas,
    rollback,
)

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
    """The next record and the actions that converge on it, for one Deployment."""
    state, told = _record_analysed(_forget_failure(state), obs)
    decided = after_delivery(spec, state, obs, _decide(spec, state, obs))
    actions = _unpin(spec, state, obs, decided) + told + _release_held(decided.actions, obs) + _stale(decided, obs)
    if obs.router_problem:
        # The route is gone or broken: no traffic reaches the new version through it anyway.
        actions = tuple(a for a in actions if not isinstance(a, SetWeight))
    actions = _at_rest(decided, obs, actions)
    if (
        obs.rejected_marked
        and not decided.state.phase.terminal
        and decided.state.phase is not Phase.ROLLING_BACK
        and not any(isinstance(a, MarkRejected) for a in actions)
    ):
        actions = (MarkRejected(""),) + actions  # a new delivery: the last one's rejection is not its own
    # A pause is written in the same patch as the record, so the Deployment controller is held by
    # the very write that records the decision. (An unpause stays an action: it must wait for the
    # actions before it, e.g. the template revert of a native rollback.)
    paused = True if any(isinstance(a, SetPaused) and a.paused for a in actions) else None
    actions = tuple(a for a in actions if not (isinstance(a, SetPaused) and a.paused))
    record = decided.state
    if not record.hold.fits(record.phase):
        record = record.replace(hold=HoldReason.NONE)
    record = _forget_failure(record)
    if record.running is not None and (record.running.step != record.step or record.phase.terminal):
        record = record.replace(running=None)  # the evidence of a window no longer running
    return Plan(record, _leftover_replicasets(actions, record, obs), decided.requeue_after, paused)


def _at_rest(decided: Plan, obs: Observation, actions: tuple[Action, ...]) -> tuple[Action, ...]:
    """A Deployment at rest on its stable template in the ``policy`` hold mode is unpaused, so Helm,
    kubectl, kstatus and Argo CD read it as any plain Deployment: the API server pauses the next
    template change in the same write (HoldMode.POLICY). In the ``paused`` mode the planners' pause
    stays. A plan that writes a template (a retry, a revert) keeps the pause: that template waits."""
    record = decided.state
    if obs.hold_mode is not HoldMode.POLICY or not record.phase.terminal:
        return actions
    if not record.stable_revision or obs.target_revision != record.stable_revision:
        return actions  # e.g. a revision that failed before, held until `deliver retry`
    if any(isinstance(a, (ApplyTemplate, RevertTemplate)) for a in actions):
        return actions
    kept = tuple(a for a in actions if not isinstance(a, SetPaused))
    return kept + ((SetPaused(False),) if obs.paused else ())


def services_in_use(spec: DeliverySpec) -> tuple[str, ...]:
    """The Services the declared strategy pins to one version's pods."""
    return planner_for(spec.strategy).pinned_services(spec)


def _unpin(spec: DeliverySpec, state: DeliveryState, obs: Observation, decided: Plan) -> tuple[Action, ...]:
    """A pin that outlived its purpose goes first: a Service pinned to one pod-template-hash that the
    declared strategy does not pin (blue-green's active Service after a change to rolling), or, at
    rest, pinned to a hash no ReplicaSet has any more (a Deployment deleted and applied again)."""
    if state.strategy and state.strategy != spec.strategy.value and not state.phase.terminal:
        return ()  # the old strategy's delivery is being undone: its pins are part of that
    in_use = services_in_use(spec)
    at_rest = state.phase.terminal and decided.state.phase.terminal
    hashes = {v.pod_hash for v in obs.versions}

    def stale(svc: ServiceObs) -> bool:
        if not svc.pod_hash:
            return False
        if svc.name not in in_use:
            return True
        return at_rest and svc.pod_hash not in hashes

    repointed = {a.name for a in decided.actions if isinstance(a, EnsureService)}
    return tuple(UnpinService(svc.name) for svc in obs.services if stale(svc) and svc.name not in repointed)


def _release_held(actions: tuple[Action, ...], obs: Observation) -> tuple[Action, ...]:
    """A stable ReplicaSet held for an exact canary share (``HoldStable``) goes back to the Deployment
    whenever a plan does not hold it any more (promotion, rollback, abort, supersede, a hold, at
    rest), derived from what is observed so a lost release is issued again: first, so stable capacity
    comes back before anything else; after the adoption when promoting, so the Deployment controller
    sees the new ReplicaSet saturated and scales the old one down instead of back up."""
    if not any(v.held for v in obs.versions) or any(isinstance(a, (HoldStable, ReleaseStable)) for a in actions):
        return actions
    if any(isinstance(a, AdoptNew) for a in actions):
        return actions + (ReleaseStable(),)
    return (ReleaseStable(),) + actions


def _stale(decided: Plan, obs: Observation) -> tuple[Action, ...]:
    """Mid-delivery, a ReplicaSet of deliver's that is neither the revision being delivered nor the
    stable one (a superseded canary or preview) goes, derived from what is observed on every pass: a
    delete lost to a crash or a failed write is issued again, so a superseded version never keeps
    serving beside the newest one."""
    state = decided.state
    if state.phase.terminal or state.phase is Phase.ROLLING_BACK:
        return ()  # at rest `_idle` removes them; a rollback's undo does
    if any(isinstance(a, DeleteNew) for a in decided.actions):
        return ()
    if any(not v.owned and v.revision != state.revision for v in obs.versions):
        return (DeleteNew(keep_revision=state.revision),)
    return ()


def _leftover_replicasets(actions: tuple[Action, ...], state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
    """Re-delivering an earlier revision (`deliver undo`, a git revert, a re-apply): the Deployment
    still keeps that revision's old, empty ReplicaSet in its history (an older delivery's, adopted,
    holds the very name deliver's ReplicaSet of it takes). The Deployment controller takes the oldest
    ReplicaSet with its template as its "new" one, so that empty one would win over deliver's at
    adoption and promotion would never settle: before deliver's ReplicaSet of the revision is first
    created (``ScaleNew`` while none is observed), each such ReplicaSet goes."""
    at = next((i for i, a in enumerate(actions) if isinstance(a, ScaleNew)), None)
    if at is None or obs.target_revision != state.revision or obs.deliver_owned(state.revision) is not None:
        return actions  # (a stale template is not scaled: delivery/engine/act.py)
    leftovers = tuple(
        DeleteReplicaSet(v.name)
        for v in obs.versions
        if v.owned and not v.held and v.revision == state.revision and not v.replicas and not v.status_replicas
    )
    return actions[:at] + leftovers + actions[at:]


def _forget_failure(state: DeliveryState) -> DeliveryState:
    """A failure is of a revision against the stable version of its time; once a delivery succeeded
    that comparison is stale, and the failed revision may be delivered again like any other."""
    if state.phase is Phase.SUCCEEDED and (state.failed_revision or state.failed_template is not None):
        return state.replace(failed_revision="", failed_template=None)
    return state


# the Event that announces a recorded verdict, by its outcome
ANALYSIS_REASONS = {
    Outcome.PASS: R.ANALYSIS_PASSED,
    Outcome.FAIL: R.ANALYSIS_FAILED,
    Outcome.INCONCLUSIVE: R.ANALYSIS_INCONCLUSIVE,
}


def _record_analysed(state: DeliveryState, obs: Observation) -> tuple[DeliveryState, tuple[Action, ...]]:
    """Verdicts of analyses run since the record was read go into the record, and are announced."""
    # by (step, at, outcome): a record short of room keeps verdicts without their details
    recorded = {(v.step, v.at, v.outcome) for v in state.verdicts}
    looks = tuple(v for v in obs.analysed if v.interim)
    new = tuple(v for v in obs.analysed if not v.interim and (v.step, v.at, v.outcome) not in recorded)
    state, looked = record_looks(state, looks)
    told = looked + tuple(
        PostEvent(
            "Normal" if v.outcome is Outcome.PASS else "Warning",
            ANALYSIS_REASONS[v.outcome],
            f"step {v.step + 1}: {v.summary}",
        )
        for v in new
    )
    state, warned = _out_of_reach(state, new)
    told += warned
    charted = state.looks
    for v in new:
        if v.at >= state.started:  # a point of this delivery's evidence (the dashboard's chart)
            charted = with_look(charted, v)
    return (state.replace(verdicts=state.verdicts + new, looks=charted) if new else state), told


def _out_of_reach(state: DeliveryState, new: tuple[StepVerdict, ...]) -> tuple[DeliveryState, tuple[PostEvent, ...]]:
    """One Warning per delivery, with its first verdict whose forecast says a step's analysis window
    cannot carry the requests a verdict needs (the engine's forecast says why: ``out_of_reach``).

    The record keeps when it was posted (``out_of_reach_warned``): the verdicts it keeps are bounded
    (the newest 20, fewer when short of room), so they cannot tell whether this delivery warned.
    Earlier verdicts that say so count too: a record written before ``out_of_reach_warned`` existed."""
    warned = state.out_of_reach_warned
    if (warned and warned >= state.started) or any(v.out_of_reach for v in state.verdicts if v.at >= state.started):
        return state, ()
    for v in new:
        if v.out_of_reach:
            told = PostEvent("Warning", R.VERDICT_OUT_OF_REACH, f"step {v.step + 1}: {v.out_of_reach}")
            return state.replace(out_of_reach_warned=v.at), (told,)
    return state, ()


def _decide(spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
    planner = planner_for(spec.strategy)
    in_progress = not state.phase.terminal

    if state.strategy and state.strategy != spec.strategy.value and (in_progress or state.phase == Phase.ROLLING_BACK):
        # The strategy annotation changed mid-delivery: undo what the *old* strategy did (its
        # ReplicaSet, Service switch or router weight), then the next pass starts over.
        old = dataclasses.replace(spec, strategy=Strategy(state.strategy))
        old_planner = planner_for(old.strategy)
        if state.phase == Phase.ROLLING_BACK:
            return finish_rollback(old, state, obs, old_planner)
        return _strategy_changed(spec, old, state, obs, old_planner)

    request = obs.request if obs.request_id and obs.request_id != state.handled_request else ""
    if obs.router_problem and in_progress and state.phase != Phase.ROLLING_BACK:
        return _router_down(spec, state, obs, planner, request)
    if not obs.router_problem and state.router_down_since:
        # the router works again
        hold = HoldReason.NONE if state.hold is HoldReason.ROUTER_UNAVAILABLE else state.hold
        state = state.replace(router_down_since=0.0, router_problem="", hold=hold)
    if request:
        handled = state.replace(handled_request=obs.request_id)
        answered = _operator_request(spec, handled, obs, planner, request)
        if answered is not None:
            return answered
        state = handled

    if in_progress:
        if state.phase == Phase.ROLLING_BACK:
            return finish_rollback(spec, state, obs, planner)  # the stable version is being restored
        state = resume_with_replicas(state, obs)
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
        return advance_with_hooks(spec, state, obs, planner)

    if state.retrying:
        state, reissue = _follow_retry(state, obs)
        if reissue is not None:
            return reissue
    return _idle(spec, state, obs, planner)


def _follow_retry(state: DeliveryState, obs: Observation) -> tuple[DeliveryState, Plan | None]:
    """A ``deliver retry`` in flight: write the failed revision's template again until it is observed.

    Once the Deployment's template is the retried revision, the failure is forgotten and the delivery
    starts like any other. A template the user wrote meanwhile (neither the stable nor the retried
    revision) wins: the retry is dropped and that template is delivered."""
    if obs.target_revision == state.retrying:
        return state.replace(retrying="", failed_revision="", failed_template=None), None
    if obs.target_revision == state.stable_revision and state.failed_template:
        return state, Plan(state, (ApplyTemplate(state.failed_template),), 0.5)
    return state.replace(retrying=""), None


def _strategy_changed(
    spec: DeliverySpec, old: DeliverySpec, state: DeliveryState, obs: Observation, old_planner: StrategyPlanner
) -> Plan:
    """The strategy annotation changed mid-delivery: the old strategy's delivery is aborted and the
    stable template written back (the new strategy starts from the stable version). The user's
    revision does not vanish silently: the record says Aborted for it, a Warning says why and how to
    deliver it with the new strategy, and its template stays in the record for `deliver retry`. It is
    not remembered as failed (nothing was wrong with it): applying its template again delivers it."""
    reason = (
        f"deliver.dev/strategy changed from {old.strategy.value} to {spec.strategy.value} during the delivery; "
        f"the Deployment's template is reverted to the stable revision {state.stable_revision}. To deliver "
        f"revision {state.revision} with {spec.strategy.value}, apply its template again or run "
        f"`deliver retry {obs.name}`"
    )
    aborted = rollback(old, state, obs, old_planner, reason, Phase.ABORTED, remember_failure=False)
    kept = aborted.state.replace(failed_template=obs.template or None)
    return Plan(kept, aborted.actions, aborted.requeue_after, aborted.paused)


def _idle(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan:
    stable = current_stable(obs)
    if stable is None:
        if not obs.owned_versions() or not obs.rollout_complete:
            # First rollout of a new Deployment (or a native rollout deliver did not start): let the
            # Deployment controller finish it; there is nothing to compare against yet.
            # In the policy mode a template changed during the first rollout was paused by the API
            # server; with no stable version to compare against it rolls out natively as well.
            # Never a template deliver rejected, nor, once a stable version is known, any other: a
            # Deployment scaled to zero and back has no active ReplicaSet for a moment, and the paused
            # Deployment controller brings its ReplicaSet back by itself (found by the crash-point
            # explorer: unpausing there rolled the held rejected template out natively).
            first = not state.stable_revision
            ours = obs.target_revision != state.failed_revision and (
                first or obs.target_revision == state.stable_revision
            )
            if obs.paused and ours and (not obs.owned_versions() or obs.hold_mode is HoldMode.POLICY):
                return Plan(state, (SetPaused(False),), RECHECK)
            if not first:
                return Plan(state, (), RECHECK)
            return Plan(state.replace(message="waiting for the initial rollout to finish"), (), RECHECK)
        return Plan(state, (), None)  # scaled to zero: nothing runs, nothing to deliver against

    if obs.target_revision == stable.revision:
        actions, requeue, state = _settle(spec, state, obs, stable, pause=True)
        new_state = state
        if state.hold is HoldReason.PREVIOUSLY_FAILED and obs.hold_mode is HoldMode.POLICY:
            # The stable template was written over the held rejected one (`helm rollback`, a git
            # revert): at rest at once; the failure stays remembered, its template is let go.
            new_state = state.replace(hold=HoldReason.NONE, failed_template=None, message="")
        if obs.rejected_marked:
            actions.append(MarkRejected(""))
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
        actions, requeue, state = _settle(spec, state, obs, stable, pause=True)
        if state.hold is not HoldReason.PREVIOUSLY_FAILED:
            actions.append(PostEvent("Warning", R.REVISION_PREVIOUSLY_FAILED, message))
        if obs.hold_mode is HoldMode.POLICY and not obs.rejected_marked:
            actions.append(
                MarkRejected(f"{REJECTED_MARK} revision {state.failed_revision}: {state.message or message}")
            )
        kept = state.message if state.hold is HoldReason.PREVIOUSLY_FAILED else message
        return Plan(state.replace(message=kept, hold=HoldReason.PREVIOUSLY_FAILED), tuple(actions), requeue)

    if obs.router_problem:
        # A missing route, CRD or backend stops a delivery before any Service or ReplicaSet exists.
        return _router_warning(spec, state, obs, "", 30.0)
    return _start(spec, state, obs, planner, stable)


def _settle(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, stable: VersionObs, pause: bool
) -> tuple[list[Action], float | None, DeliveryState]:
    """At rest on the stable version: paused (the paused hold mode; the policy mode unpauses in
    ``_at_rest``), the route reset, deliver's leftover pods gone once drained."""
    actions: list[Action] = []
    if pause and not obs.paused:
        actions.append(SetPaused(True))
    requeue: float | None = None
    rerouted = _route_at_rest(spec, obs, stable)
    if any(isinstance(a, SetWeight) for a in rerouted):
        # the route is reset only now: the drain counts from here
        state = state.replace(switched=obs.now)
    actions += rerouted
    if any(not v.owned for v in obs.versions):
        # Behind a weighted router the canary pods stay a moment after the weight went to 0,
        # so the gateway/mesh has applied it before they disappear (drain).
        # After a rollback or abort, an abort-scale-down-delay keeps them longer (drain_time).
        since = max(state.finished, state.switched)
        keep = drain_time(spec, state)
        drained = spec.router.kind == "replica" or (
            obs.router_weight in (None, 0) and not obs.router_extras and obs.now - since >= keep
        )
        if drained:
            actions.append(DeleteNew())
        else:
            requeue = max(0.2, min(RECHECK * 5, keep - (obs.now - since)))
    return actions, requeue, state


def _route_at_rest(spec: DeliverySpec, obs: Observation, stable: VersionObs) -> tuple[Action, ...]:
    """At rest behind a weighted router, all traffic goes to the strategy's Service at rest (canary:
    NAME-stable) and it selects the stable version's pods. Derived from what is observed on every
    pass, so a route reset or a repin lost to a failed write or a crash after the record said
    Succeeded (or RolledBack) is issued again."""
    service = planner_for(spec.strategy).rest_service(spec)
    if not service:
        return ()
    actions: list[Action] = []
    pinned = next((svc.pod_hash for svc in obs.services if svc.name == service), "")
    if pinned and pinned != stable.pod_hash:
        actions.append(EnsureService(service, stable.pod_hash))
    if obs.router_weight not in (None, 0) or obs.router_extras:
        actions.append(SetWeight(0))
    return tuple(actions)


def _router_warning(spec: DeliverySpec, state: DeliveryState, obs: Observation, holding: str, wait: float) -> Plan:
    """Hold: record since when the router is broken, and warn once per distinct problem."""
    message = f"router {spec.router.kind}/{spec.router.name}: {obs.router_problem}; deliver takes no action{holding}"
    held = state.replace(router_down_since=state.router_down_since or obs.now, router_problem=obs.router_problem)
    if held.phase is Phase.PROGRESSING:
        held = held.replace(hold=HoldReason.ROUTER_UNAVAILABLE)
    told = () if state.router_problem == obs.router_problem else (PostEvent("Warning", R.ROUTER_UNAVAILABLE, message),)
    return Plan(held, told, wait)


def _router_down(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner, request: str
) -> Plan:
    """Mid-delivery the router broke (route or CRD gone, API errors): hold the step. An operator's
    abort, or a router still broken after the progress deadline (counted from the record, so a new
    leader keeps it; never while an operator holds the delivery), rolls back. Other requests wait."""
    if request == "abort":
        answered = _operator_request(spec, state.replace(handled_request=obs.request_id), obs, planner, request)
        if answered is not None:
            return answered
    since = state.router_down_since or obs.now
    if state.phase == Phase.PAUSED or obs.now - since <= spec.progress_deadline:
        holding = f"; holding step {state.step + 1} (rolled back if still broken after the progress deadline)"
        return _router_warning(spec, state, obs, holding, 5.0)
    return rollback(spec, state, obs, planner, f"traffic router unavailable: {obs.router_problem}")


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
    first = advance_with_hooks(spec, started, obs, planner)
    event = PostEvent(
        "Normal",
        R.DELIVERY_STARTED,
        f"{spec.strategy.value} delivery of revision {obs.target_revision} started (stable {stable.revision})",
    )
    return Plan(first.state, (event,) + first.actions, first.requeue_after)


def _supersede(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan | None:
    """The template changed again mid-delivery: drop the half-delivered revision, start the newest."""
    event = PostEvent(
        "Normal",
        R.DELIVERY_SUPERSEDED,
        f"revision {state.revision} superseded by {obs.target_revision} before it finished",
    )
    # The newest revision starts cleanly: whatever held the old one (an operator's pause, a failure
    # with auto-rollback off, an inconclusive analysis, a manual promotion) was about that revision.
    restarted = state.replace(
        revision=obs.target_revision,
        phase=Phase.PROGRESSING,
        hold=HoldReason.NONE,
        message=f"delivering revision {obs.target_revision} ({spec.strategy.value}); superseded {state.revision}",
        step=0,
        step_started=obs.now,
        analysis_started=obs.now,
        extensions=0,
        weight=0,
        switched=0.0,
    )
    if planner.native():
        # The Deployment controller already follows the newest template; restart the plan on it.
        nxt = advance_with_hooks(spec, restarted, obs, planner)
        return Plan(nxt.state, (event,) + nxt.actions, nxt.requeue_after)
    adopted = obs.version(state.revision)
    pinned: tuple[Action, ...] = ()
    if adopted is not None and adopted.owned and adopted.revision != state.stable_revision:
        # The superseded revision was already handed to the Deployment (Promoting: it settles and
        # the old stable is being scaled to zero): it is the stable version now, and what the
        # Services (and route) of the newest delivery fall back to; pinning the old stable's hash
        # would select no pod.
        promoted = dict(
            stable_revision=adopted.revision,
            stable_hash=adopted.pod_hash,
            stable_template=adopted.template or state.stable_template,
        )
        state, restarted = state.replace(**promoted), restarted.replace(**promoted)
        service = planner.rest_service(spec)
        if service:
            # before the route goes back to 100/0, its Service at rest (NAME-stable) selects the promoted pods
            pinned = (EnsureService(service, adopted.pod_hash),)
    undo = tuple(a for a in planner.undo(spec, state, obs) if not isinstance(a, RevertTemplate))
    return Plan(restarted, (event,) + pinned + undo, 0.5)


def _operator_request(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner, request: str
) -> Plan | None:
    """The plan an operator request leads to, or None when it does not apply (it is then dropped)."""
    if refusal(spec, state, request) is not None:
        return None
    if request == "abort":
        adopted = obs.version(state.revision)
        if not planner.native() and adopted is not None and adopted.owned:
            message = (
                f"abort refused: revision {state.revision} is already handed to the Deployment "
                f"and replacing the old version; run `deliver undo {obs.name}` once it finishes"
            )
            return Plan(state.replace(message=message), (PostEvent("Warning", R.ABORT_REFUSED, message),), RECHECK)
        return rollback(spec, state, obs, planner, "aborted by an operator", Phase.ABORTED)
    if request == "retry" and state.failed_template:
        # The failed revision stays in the record until its template is seen on the Deployment
        # (``_follow_retry``): a template write that fails, or a crash right after this record is
        # written, is re-issued on the next pass instead of losing the retry. (A revision aborted by a
        # strategy change keeps its template without being remembered as failed: it is the record's.)
        revision = state.failed_revision or state.revision
        retrying = state.replace(retrying=revision, hold=HoldReason.NONE, message=f"retrying revision {revision}")
        return Plan(
            retrying,
            (
                ApplyTemplate(state.failed_template),
                PostEvent("Normal", R.DELIVERY_RETRIED, f"retrying revision {revision}"),
            ),
            0.5,
        )
    if request == "pause":
        return Plan(
            state.replace(phase=Phase.PAUSED, hold=HoldReason.OPERATOR, message="paused by an operator"),
            (PostEvent("Normal", R.DELIVERY_PAUSED, "paused by an operator"),),
            None,
        )
    if request == "resume":
        return Plan(
            state.replace(phase=Phase.PROGRESSING, step_started=obs.now, message="resumed by an operator"),
            (PostEvent("Normal", R.DELIVERY_RESUMED, "resumed by an operator"),),
            0.5,
        )
    if request in ("promote", "promote-full"):
        moved = state.replace(
            phase=Phase.PROGRESSING,
            step_started=obs.now,
            analysis_started=obs.now,
            extensions=0,
            hold=HoldReason.NONE,  # e.g. AwaitingConfirmation: the operator confirmed
            message=f"{request} by an operator",
        )
        if request == "promote-full":
            moved = moved.replace(step=10_000)
        else:
            moved = moved.replace(step=state.step + 1)
        nxt = planner.advance(spec, moved, obs)
        return Plan(
            nxt.state,
            (PostEvent("Normal", R.DELIVERY_PROMOTED, f"{request} by an operator"),) + nxt.actions,
            nxt.requeue_after,
        )
    return None
