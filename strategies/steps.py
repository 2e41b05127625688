"""Building blocks every strategy planner uses: the step check, rollback, settling an adopted
ReplicaSet, shares of replicas. Imported by the per-strategy planners; imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .actions import (
    REJECTED_MARK,
    Action,
    Analyse,
    DeleteNew,
    DisownNew,
    HoldStable,
    MarkRejected,
    Plan,
    PostEvent,
    ReleaseStable,
    RevertTemplate,
    SetPaused,
)
from .evidence import Outcome, StepVerdict, with_look
from .observation import HoldMode, Observation, VersionObs
from .reasons import EventReason as R
from .record import DeliveryState, HoldReason, Phase
from .spec import DeliverySpec

RECHECK = 2.0  # seconds between passes while something is moving
ROUTER_DRAIN = 5.0  # seconds pods keep running after a router moved traffic away from them


@dataclass(frozen=True)
class Promotion:
    """How a strategy's promotion point reads in the confirm-promotion hook's messages."""

    reached: str  # what passed before it: "all steps passed"
    gated: str  # what waits for the hook: "promotion"
    doing: str  # what happens once the hook answered 2xx: "promoting"
    promote: str  # what `deliver promote` does meanwhile: "promotes"


PROMOTION = Promotion("all steps passed", "promotion", "promoting", "promotes")


class StrategyPlanner(Protocol):
    """One strategy: how to move a started delivery forward, what undoes it, and what the code every
    strategy shares (``plan.py``, ``hooks.py``) asks of it instead of testing which strategy it is:
    the Services it pins and its route at rest, where each hook attaches and where its promotion is.
    """

    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan: ...

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]: ...

    def native(self) -> bool:
        """True when the Deployment controller itself replaces pods (rolling, recreate)."""
        ...

    def pinned_services(self, spec: DeliverySpec) -> tuple[str, ...]:
        """The Services this strategy pins to one version's pods (by pod-template-hash); a pin on any
        other Service is stale (``plan._unpin``)."""
        ...

    def rest_service(self, spec: DeliverySpec) -> str:
        """The Service the route sends all traffic to when its weight is 0, pinned to the stable
        version's pods: at rest (repinned and the route reset on every pass), and as soon as a
        superseded delivery's promoted version is the stable one. "" when the strategy keeps no
        route at rest."""
        ...

    def serving(self, spec: DeliverySpec, state: DeliveryState) -> bool:
        """The current step serves the new version to be judged: where the load-test hook attaches
        (called once per step start, and the step not left before it answered)."""
        ...

    def load_ready(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> bool:
        """A step that ``serving`` names has something to send the load to now."""
        ...

    def promotes(self, before: DeliveryState, after: DeliveryState) -> bool:
        """Whether moving on from ``before`` (Progressing) to ``after`` is the promotion: where the
        confirm-promotion hook attaches (it waits until the hook answers 2xx)."""
        ...

    def promotion(self, state: DeliveryState) -> Promotion:
        """How that promotion reads in messages."""
        ...

    def holding(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        """What keeps converging while a hook holds the step (load-test, confirm-promotion)."""
        ...

    def drains(self, spec: DeliverySpec) -> bool:
        """Whether its pods keep running for ROUTER_DRAIN after traffic moved away from them (a
        weighted router or a switched Service must have applied the move before they go)."""
        ...

    def exclusive(self) -> bool:
        """Never two versions at once (recreate): a held rollback starts the stable version only
        once every pod of the rejected one is gone (``held_undo``)."""
        ...


def ceil_share(replicas: int, percent: int) -> int:
    """Pods needed to carry ``percent`` of ``replicas`` (at least one for any share above zero)."""
    if percent <= 0 or replicas <= 0:
        return 0
    return max(1, math.ceil(replicas * percent / 100))


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
        if state.phase == Phase.PAUSED and state.hold is HoldReason.FAILED:
            return Plan(state, (), None)  # already held as failed, already told
        return Plan(
            state.replace(phase=Phase.PAUSED, hold=HoldReason.FAILED, message=message),
            (PostEvent("Warning", R.DELIVERY_FAILED, message),),
            None,
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
    reason_code = R.DELIVERY_ABORTED if phase == Phase.ABORTED else R.DELIVERY_ROLLED_BACK
    # Undo first (traffic back to stable before anything else), then tell people.
    return Plan(
        new_state, undo_actions(spec, new_state, obs, planner) + (PostEvent("Warning", reason_code, message),), RECHECK
    )


def drain_time(spec: DeliverySpec, state: DeliveryState) -> float:
    """Seconds deliver's pods stay after traffic moved away from them: ROUTER_DRAIN, or after a
    rollback or abort the longer ``abort-scale-down-delay`` (the record says RolledBack/Aborted
    meanwhile; the pods go at rest)."""
    if state.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.ABORTED):
        return max(ROUTER_DRAIN, spec.abort_scale_down_delay)
    return ROUTER_DRAIN


def keeps_rejected(state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> bool:
    """In the policy hold mode a rollback (or abort) of a failed revision leaves the Deployment's
    template as it is, the rejected one, held (paused) while the stable ReplicaSet serves: the template
    is the user's as applied (no field of it changes owner, so Helm's server-side apply meets no
    conflict) and it reads as a failed rollout (docs/hold-modes.md). Canary and blue-green simply
    leave the template; rolling and recreate, whose new pods the Deployment controller made, roll
    back held (``held_undo``)."""
    return obs.hold_mode is HoldMode.POLICY and bool(state.failed_revision) and state.failed_revision == state.revision


def held_undo(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner
) -> tuple[Action, ...]:
    """The rollback of rolling/recreate in the policy hold mode, without ever writing the stable
    template back (which would read as a rollout that succeeded): the Deployment stays paused on the
    rejected template, its status says rejected from the first pass, and deliver moves the pods.

    The rejected ReplicaSet is taken from the Deployment (``DisownNew``). With the stable one still
    active, the paused Deployment controller then scales it back to spec.replicas by itself (its one
    active ReplicaSet) while the rejected pods keep serving until deliver removes them. With the
    stable one at zero (recreate; a rolling update at 100 %), the controller would scale its newest
    ReplicaSet up, so deliver first holds the stable one and the history (``HoldStable``), then scales
    the stable one up itself: recreate only once every rejected pod is gone (never two versions at
    once), rolling at once. Repeated every pass from what is observed, until ``held_undone``."""
    n = obs.replicas
    recreate = planner.exclusive()
    head: tuple[Action, ...] = () if obs.paused else (SetPaused(True),)
    stable = next((v for v in obs.versions if v.owned and v.revision == state.stable_revision), None)
    theirs = [v for v in obs.versions if v.owned and not v.held and v.revision == state.revision]
    ours = obs.deliver_owned(state.revision)
    if stable is None:
        return head  # nothing to restore from: held, rejected, until an operator decides
    if theirs:
        if stable.replicas > 0 and not stable.held:
            return head + (DisownNew(state.revision),)
        return head + (HoldStable(0 if recreate else n), DisownNew(state.revision, 0 if recreate else None))
    if stable.held:
        if recreate and ours is not None and (ours.replicas or ours.health.total or ours.health.terminating):
            return head + (HoldStable(0), DisownNew(state.revision, 0))  # the rejected pods go first
        if stable.available < n:
            return head + (HoldStable(n),)
        return head + (ReleaseStable(), DisownNew(state.revision, 0))
    if ours is None or not ours.replicas:
        return head
    if stable.available < n and obs.now - state.finished < spec.progress_deadline:
        return head  # the rejected pods serve until the stable version is back in full (bounded)
    return head + (DisownNew(state.revision, 0),)


def held_undone(state: DeliveryState, obs: Observation) -> bool:
    """The held rollback is over: the stable ReplicaSet is the Deployment's again, fully available,
    and no ReplicaSet of the rejected revision has replicas."""
    stable = next((v for v in obs.versions if v.owned and v.revision == state.stable_revision), None)
    return (
        stable is not None
        and not stable.held
        and stable.available >= obs.replicas
        and not any(v.revision == state.revision and v.replicas for v in obs.versions)
    )


def undo_actions(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner
) -> tuple[Action, ...]:
    kept = keeps_rejected(state, obs, planner)
    # kept: the status says rejected from the rollback's first pass, before any pod moves
    mark: tuple[Action, ...] = ()
    if kept and not obs.rejected_marked:
        mark = (MarkRejected(f"{REJECTED_MARK} revision {state.revision}: {state.message}"),)
    if kept and planner.native():
        return mark + held_undo(spec, state, obs, planner)
    actions = mark + planner.undo(spec, state, obs)
    if kept:
        actions = tuple(a for a in actions if not isinstance(a, RevertTemplate))
    if planner.drains(spec) and obs.now - state.finished < drain_time(spec, state):
        actions = tuple(a for a in actions if not isinstance(a, DeleteNew))
    return actions


def finish_rollback(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan:
    """RollingBack: repeat the (idempotent) undo until the stable version is fully back."""
    if planner.native() and keeps_rejected(state, obs, planner):
        done = held_undone(state, obs)
    elif planner.native():
        done = obs.target_revision == state.stable_revision and obs.rollout_complete
    else:
        restored = obs.target_revision == state.stable_revision or (
            keeps_rejected(state, obs, planner) and obs.target_revision == state.revision
        )
        done = (
            restored
            and (spec.abort_scale_down_delay > 0 or not any(not v.owned for v in obs.versions))
            and obs.router_weight in (None, 0)
            and not obs.router_extras  # a request match of deliver.dev/match left on the route
        )
    if done:
        final = Phase.ABORTED if state.step == -2 else Phase.ROLLED_BACK
        return Plan(
            state.replace(phase=final, finished=obs.now),
            (
                SetPaused(True),
                PostEvent("Normal", R.STABLE_RESTORED, f"stable revision {state.stable_revision} fully serving again"),
            ),
            None,
        )
    actions = undo_actions(spec, state, obs, planner)
    if planner.native() and obs.target_revision == state.stable_revision:
        actions = tuple(a for a in actions if not isinstance(a, RevertTemplate))
    if not planner.native() and not obs.paused:
        actions = (SetPaused(True),) + actions
    wait = RECHECK
    if planner.drains(spec) and obs.now - state.finished < ROUTER_DRAIN:
        wait = max(0.2, ROUTER_DRAIN - (obs.now - state.finished))  # (an abort-scale-down-delay runs at rest)
    return Plan(state, actions, wait)


class NativePlanner:
    """Base of the strategies where the Deployment controller replaces the pods (rolling, recreate):
    undo = write the stable template back and let the Deployment controller roll back. They pin no
    Service, keep no route, and have no step a load-test or a confirm-promotion hook attaches to
    (the schema refuses those hooks on them)."""

    def native(self) -> bool:
        return True

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        return (RevertTemplate(state.stable_revision, state.stable_template), SetPaused(False))

    def pinned_services(self, spec: DeliverySpec) -> tuple[str, ...]:
        return ()

    def rest_service(self, spec: DeliverySpec) -> str:
        return ""

    def serving(self, spec: DeliverySpec, state: DeliveryState) -> bool:
        return False

    def load_ready(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> bool:
        return True

    def promotes(self, before: DeliveryState, after: DeliveryState) -> bool:
        return after.phase is Phase.PROMOTING  # never: the Deployment controller promotes

    def promotion(self, state: DeliveryState) -> Promotion:
        return PROMOTION

    def holding(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        return ()

    def drains(self, spec: DeliverySpec) -> bool:
        return spec.router.kind != "replica"

    def exclusive(self) -> bool:
        return False


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


def unready_for(obs: Observation, since: float, version: VersionObs | None, expected: int) -> float:
    """Seconds a needed pod has kept the step waiting, for the progress deadline.

    While some of the ``expected`` pods do not exist yet, counted from ``since`` (the step's start).
    Once they all exist, how long the longest-unready one has been unready (a pod never Ready counts
    from its creation), never more than the step has run: a 2-second readiness blip 900 s into a long
    step is 2 seconds, not 900."""
    waited = obs.now - since
    if version is None or version.health.total < expected:
        return waited
    return max(0.0, min(waited, version.health.oldest_unready_age))


def hold_no_replicas(state: DeliveryState, obs: Observation, what: str) -> Plan:
    """The Deployment wants zero replicas (KEDA, ``kubectl scale``): no pods, no evidence. Never pass
    or promote on that; hold (no deadline runs) until replicas come back (``resume_with_replicas``)."""
    if state.hold is HoldReason.NO_REPLICAS:
        return Plan(state, (), None)  # already held, already told; a scale-up changes the Deployment
    message = (
        f"{what} held: the Deployment is scaled to zero, no pods of revision {state.revision} to check; "
        f"goes on when it has replicas again (`deliver abort {obs.name}` rolls back)"
    )
    return Plan(
        state.replace(hold=HoldReason.NO_REPLICAS, message=message),
        (PostEvent("Normal", R.DELIVERY_HELD, message),),
        None,
    )


def resume_with_replicas(state: DeliveryState, obs: Observation) -> DeliveryState:
    """Replicas are back after a NO_REPLICAS hold: the step starts over (its hold, progress deadline
    and analysis window count from now, on real pods)."""
    if state.hold is not HoldReason.NO_REPLICAS or obs.replicas <= 0:
        return state
    return state.replace(
        hold=HoldReason.NONE,
        step_started=obs.now,
        analysis_started=obs.now,
        message=f"replicas are back ({obs.replicas}); step {state.step + 1} starts over",
    )


def step_verdict(state: DeliveryState, step: int) -> StepVerdict | None:
    """The verdict recorded for this step since it (re)started, if any."""
    for v in reversed(state.verdicts):
        if v.step == step and v.at >= state.step_started:
            return v
    return None


def step_passed(state: DeliveryState, step: int, what: str, then: str = "") -> PostEvent:
    """The one StepPassed Event of a step whose check passed (``check_step``), with its verdict's summary."""
    verdict = step_verdict(state, step)
    detail = f": {verdict.summary}" if verdict is not None else ""
    return PostEvent("Normal", R.STEP_PASSED, f"{what} passed{detail}" + (f"; {then}" if then else ""))


DEFAULT_ANALYSIS_EVERY = 30.0  # seconds between in-step looks when the engine names none (2 x a 15 s scrape)
PROMOTE_EARLY_HOLD = 60.0  # promote-early: the least a step is held (never more than its interval)


def analysis_every(spec: DeliverySpec) -> float:
    """Seconds between looks at the running window of an analysed step (0: judged at its end only)."""
    if not spec.analysis:
        return 0.0
    return DEFAULT_ANALYSIS_EVERY if spec.analysis_every is None else spec.analysis_every


def window_start(state: DeliveryState) -> float:
    """Start of the delivery's analysis span: the start of its first analysed step (canary: when its
    first share was served). Every look and step end judges [span start, now], so the delivery's
    looks are looks at one e-process and it spends the fail side's alpha/k once, not once per step
    (docs/failfast.md). A new delivery (start, supersede), an operator's promote and replicas back
    after a scale to zero start a new span."""
    return state.analysis_started or state.step_started


def running_verdict(state: DeliveryState, step: int) -> StepVerdict | None:
    """The newest look at the running window of ``step``, if it is of the window running now."""
    look = state.running
    if look is None or look.step != step or look.at < window_start(state):
        return None
    return look


def record_looks(state: DeliveryState, looks: tuple[StepVerdict, ...]) -> tuple[DeliveryState, tuple[Action, ...]]:
    """Looks at the running window (interim verdicts) into the record: the newest of the current step's
    window is kept in ``running``; a failing one is also the step's verdict (the step ends on it).

    An Event tells the evidence: ``AnalysisFailed`` for a failing look; ``AnalysisRunning`` for the
    first look of a window, when the outcome changes, and each time the canary's requests grew tenfold
    (so a long step posts a handful, not one per look). Looks of another step or window, or of a
    delivery no longer progressing, are dropped."""
    told: list[Action] = []
    for look in sorted(looks, key=lambda v: v.at):
        previous = running_verdict(state, look.step)
        if (
            state.phase is not Phase.PROGRESSING
            or look.step != state.step
            or look.at < window_start(state)
            or (previous is not None and previous.at >= look.at)
        ):
            continue
        state = state.replace(running=look, looks=with_look(state.looks, look))
        if look.outcome is Outcome.FAIL:
            state = state.replace(verdicts=state.verdicts + (look,))
            told.append(PostEvent("Warning", R.ANALYSIS_FAILED, f"step {look.step + 1}: {look.summary}"))
        elif (
            previous is None
            or previous.outcome != look.outcome
            or _decade(canary_requests(look)) > _decade(canary_requests(previous))
        ):
            told.append(PostEvent("Normal", R.ANALYSIS_RUNNING, f"step {look.step + 1}: {look.summary}"))
    return state, tuple(told)


def canary_requests(verdict: StepVerdict) -> int:
    """The new version's observations a verdict rests on (the largest of its checks'; 0: unknown)."""
    return max((c.n_canary for c in verdict.checks), default=0)


def _decade(n: int) -> int:
    return len(str(n)) if n > 0 else 0


def look_in_step(
    spec: DeliverySpec,
    state: DeliveryState,
    obs: Observation,
    step: int,
    waited: float,
    analyse: Callable[[bool], Analyse],
) -> Plan:
    """A step still held (``waited`` < its interval): look at its growing window every
    ``analysis_every``. The judges are anytime-valid, so looking often costs no false rollbacks.

    The engine runs a look off the reconcile path and hands its verdict back as an observation;
    ``plan`` keeps the newest in ``DeliveryState.running`` and records a failing one as the step's
    verdict, so the next ``check_step`` rolls back at once. A passing look only ends the step with
    ``promote-early`` and once the step was held ``PROMOTE_EARLY_HOLD`` (then it is recorded as the
    step's verdict); otherwise the step is held for its whole interval and judged at its end.
    Health is checked before this on every pass, whether a look is running or not."""
    wait = min(RECHECK * 5, max(0.5, spec.interval - waited))
    every = analysis_every(spec)
    if every <= 0 or every >= spec.interval:
        return Plan(state, (), wait)
    last = running_verdict(state, step)
    if (
        last is not None
        and last.outcome is Outcome.PASS
        and spec.promote_early
        and last.at - state.step_started >= min(spec.interval, PROMOTE_EARLY_HOLD)
    ):
        return Plan(state.replace(verdicts=state.verdicts + (last,)), (), 0.1)
    since = obs.now - (last.at if last is not None else max(window_start(state), state.step_started))
    if since < every:
        return Plan(state, (), min(wait, max(0.5, every - since)))
    return Plan(state, (analyse(True),), 0.1)


def check_step(
    spec: DeliverySpec,
    state: DeliveryState,
    obs: Observation,
    planner: StrategyPlanner,
    version: VersionObs | None,
    expected: int,
    step: int,
    services: tuple[str, str] = ("", ""),
    baseline_end: float | None = None,
) -> Plan | Literal[Outcome.PASS] | None:
    """Check one step whose new pods should number ``expected``: their health, then the analysis.

    ``services`` (new, stable) and ``baseline_end`` say what the analysis compares.
    Returns a Plan to return as is (waiting, analysing, failing), ``Outcome.PASS`` when the step
    is done and the delivery may move on (the caller then posts ``step_passed``), or None if the
    caller should keep converging.
    """
    if expected <= 0:
        return hold_no_replicas(state, obs, f"step {step + 1}")
    unfit = _check_pods(spec, state, obs, planner, version, expected)
    if unfit is not None:
        return unfit
    health = version.health if version is not None else None
    ready = version.ready if version is not None else 0
    waited = obs.now - state.step_started
    verdict = step_verdict(state, step)

    def analyse(interim: bool) -> Analyse:
        return Analyse(
            step,
            window_start(state),
            new_hash=version.pod_hash if version is not None else state.revision,
            stable_hash=state.stable_hash,
            new_service=services[0],
            stable_service=services[1],
            baseline_end=baseline_end,
            interim=interim,
        )

    if waited < spec.interval:
        if verdict is not None and verdict.interim:
            # A look at the running window decided before the step's end (see look_in_step).
            if verdict.outcome is Outcome.FAIL:
                return rollback(
                    spec, state, obs, planner, f"analysis failed {int(waited)}s into the step: {verdict.summary}"
                )
            if verdict.outcome is Outcome.PASS:
                return Outcome.PASS
        return look_in_step(spec, state, obs, step, waited, analyse)
    if verdict is None:
        if not spec.analysis:
            # Recorded only: the planner announces the passed step (one StepPassed) when it moves on.
            summary = f"health ok: {ready}/{expected} new pods Ready, {health.restarts if health else 0} restarts"
            return Plan(
                state.replace(verdicts=state.verdicts + (StepVerdict(step, Outcome.PASS, summary, obs.now),)), (), 0.1
            )
        return Plan(state, (analyse(False),), 0.1)
    if verdict.outcome is Outcome.PASS:
        return Outcome.PASS
    if verdict.outcome is Outcome.FAIL:
        return rollback(spec, state, obs, planner, f"analysis failed: {verdict.summary}")
    return _on_inconclusive(spec, state, obs, planner, step, verdict)


def _check_pods(
    spec: DeliverySpec,
    state: DeliveryState,
    obs: Observation,
    planner: StrategyPlanner,
    version: VersionObs | None,
    expected: int,
) -> Plan | None:
    """Check the step's new pods before its analysis: a Plan to roll back (unhealthy, or a needed pod
    unready past the progress deadline) or to wait for them; None: healthy, and ``expected`` of them Ready."""
    health = version.health if version is not None else None
    if health is not None:
        problem = health.problem(spec.max_restarts)
        if problem:
            return rollback(spec, state, obs, planner, f"new version unhealthy: {problem}")
    ready = version.ready if version is not None else 0
    if ready < expected:
        unready = unready_for(obs, state.step_started, version, expected)
        if unready > spec.progress_deadline or obs.deadline_exceeded:
            return rollback(
                spec,
                state,
                obs,
                planner,
                f"only {ready}/{expected} new pods Ready, a needed pod unready for {int(unready)}s "
                f"(progress deadline {int(spec.progress_deadline)}s)",
            )
        return Plan(state, (), RECHECK)
    return None


def _on_inconclusive(
    spec: DeliverySpec,
    state: DeliveryState,
    obs: Observation,
    planner: StrategyPlanner,
    step: int,
    verdict: StepVerdict,
) -> Plan:
    """A step whose analysis was inconclusive, as ``deliver.dev/on-inconclusive`` says: roll back,
    extend the step (up to ``deliver.dev/max-extensions`` times), or hold it for an operator."""
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
                PostEvent(
                    "Normal",
                    R.STEP_EXTENDED,
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
        state.replace(phase=Phase.PAUSED, hold=HoldReason.INCONCLUSIVE, message=message),
        (PostEvent("Warning", R.ANALYSIS_INCONCLUSIVE, message),),
        None,
    )
