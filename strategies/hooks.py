"""Hooks: when a delivery calls the Deployment's webhooks (``deliver.dev/hook-*``) and what their
answers decide. Pure, like every planner: the engine makes the calls off the reconcile path
(``CallHook``) and hands their answers back as facts of a later observation (``HookResult``).

* ``pre-rollout``: before the first step nothing is rolled out; the delivery waits (Progressing, step
  1) until the hook answers. 2xx: the first step starts. Anything else (non-2xx, a timeout, an
  unreachable URL): no rollout, the delivery is rolled back (the template goes back to the stable
  one, the revision is remembered as failed) with a Warning ``HookFailed``.
* ``load-test``: called when each canary step starts serving its share, or when a blue-green
  preview is fully Ready (its analysis compares the preview Service with the active one); again after
  an extension, so a quiet service gets enough requests for a verdict. The step is not left before it
  answered 2xx; a failure is an inconclusive verdict for the step (``on-inconclusive`` decides).
* ``confirm-promotion``: when all canary steps passed, or a blue-green preview passed, promotion (the
  blue-green switch of the active Service) waits for it: called, and called again every
  ``CONFIRM_POLL`` seconds, until it answers 2xx (an external approval). Meanwhile the canary keeps
  its share, the preview its pods (the active Service still selects the stable ones), both their
  health checks; the record's hold is ``AwaitingConfirmation``. ``deliver promote`` promotes,
  ``deliver abort`` rolls back.
* ``post-rollout``: once the delivery ended (Succeeded, RolledBack or Aborted), called once; its
  answer is an Event, it changes nothing.

A hook that times out or errors is never a pass. What passed is kept in the record
(``DeliveryState.hooks``), so a new leader does not call a passed gate again.

Where a hook attaches is the strategy's answer, asked of its planner (``StrategyPlanner``: ``serving``
and ``load_ready`` for load-test, ``promotes`` and ``promotion`` for confirm-promotion, ``holding``
for what a hold keeps converging); this module tests no strategy and imports no planner.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .actions import CallHook, Plan, PostEvent, SetPaused
from .evidence import Outcome, StepVerdict
from .observation import HookResult, Observation
from .reasons import EventReason as R
from .record import DeliveryState, HoldReason, Phase
from .spec import DeliverySpec, HookKind
from .steps import RECHECK, StrategyPlanner, rollback

CONFIRM_POLL = 5.0  # seconds between calls of a confirm-promotion hook that has not answered 2xx
ENDED = (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED)


def origin(url: str) -> str:
    """What Events show of a hook's URL: scheme://host[:port]/path (no query: it may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _entry(kind: HookKind, revision: str, token: str = "") -> str:
    return f"{kind.value}/{revision}" + (f"/{token}" if token else "")


def _newest(obs: Observation, kind: HookKind, state: DeliveryState, token: str | None = None) -> HookResult | None:
    found = [
        r
        for r in obs.hook_results
        if r.kind is kind
        and r.revision == state.revision
        and r.delivery == _delivery(state)
        and (token is None or r.token == token)
    ]
    return max(found, key=lambda r: r.at) if found else None


def _delivery(state: DeliveryState) -> float:
    """Which delivery a call belongs to: its start as the record keeps it (to the millisecond)."""
    return round(state.started, 3)


def _call(kind: HookKind, state: DeliveryState, token: str = "") -> CallHook:
    return CallHook(kind, state.revision, _delivery(state), token, state.step)


def advance(spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner) -> Plan:
    """``planner.advance`` with the Deployment's hooks around it (no hooks: exactly that)."""
    if state.hold is HoldReason.AWAITING_CONFIRMATION:
        state = state.replace(hold=HoldReason.NONE)  # set again below while promotion still waits
    if not spec.hooks.urls:
        return planner.advance(spec, state, obs)
    gated = _pre_rollout(spec, state, obs, planner)
    if isinstance(gated, Plan):
        return gated
    state, told = gated
    state, more = _load_test_answered(spec, state, obs, planner)
    nxt = planner.advance(spec, state, obs)
    nxt = _hold_for_load_test(spec, state, obs, planner, nxt)
    nxt = _confirm_promotion(spec, state, obs, planner, nxt)
    nxt = _call_load_test(spec, obs, planner, nxt)
    return Plan(nxt.state, told + more + nxt.actions, nxt.requeue_after, nxt.paused)


def _pre_rollout(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner
) -> Plan | tuple[DeliveryState, tuple[PostEvent, ...]]:
    url = spec.hooks.url(HookKind.PRE_ROLLOUT)
    passed = _entry(HookKind.PRE_ROLLOUT, state.revision)
    # Only before anything of the delivery serves: a hook declared mid-delivery stops nothing.
    if not url or passed in state.hooks or state.step != 0 or state.weight != 0:
        return state, ()
    if state.phase is not Phase.PROGRESSING:
        return Plan(state, (), None)  # paused by an operator before the hook answered
    result = _newest(obs, HookKind.PRE_ROLLOUT, state)
    if result is None:
        message = f"waiting for the pre-rollout hook ({origin(url)}) before step 1 of revision {state.revision}"
        hold = () if obs.paused else (SetPaused(True),)
        return Plan(state.replace(message=message), hold + (_call(HookKind.PRE_ROLLOUT, state),), RECHECK)
    if not result.ok:
        told = PostEvent(
            "Warning",
            R.HOOK_FAILED,
            f"pre-rollout hook {origin(url)} failed: {result.detail}; revision {state.revision} is not rolled out",
        )
        failed = rollback(spec, state, obs, planner, f"pre-rollout hook failed: {result.detail}")
        return Plan(failed.state, (told,) + failed.actions, failed.requeue_after, failed.paused)
    started = state.replace(
        hooks=state.hooks + (passed,),
        step_started=obs.now,
        analysis_started=obs.now,
        message=f"pre-rollout hook passed; delivering revision {state.revision} ({spec.strategy.value})",
    )
    return started, (PostEvent("Normal", R.HOOK_PASSED, f"pre-rollout hook {origin(url)}: {result.detail}"),)


def _serving(spec: DeliverySpec, state: DeliveryState, planner: StrategyPlanner) -> bool:
    """A step that serves the new version now (a canary step at its share, a blue-green preview not
    switched yet): its analysis window is running."""
    return state.phase is Phase.PROGRESSING and planner.serving(spec, state)


def _left(state: DeliveryState, nxt: Plan) -> bool:
    """Whether ``nxt`` leaves the current step: to the next one, to promotion, or to a manual
    promotion (a blue-green preview without auto-promote pauses at its own step)."""
    manual = nxt.state.phase is Phase.PAUSED and nxt.state.hold is HoldReason.AWAITING_PROMOTION
    if manual and nxt.state.step == state.step:
        return True
    return nxt.state.step > state.step and nxt.state.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING)


def _load_token(state: DeliveryState) -> str:
    return f"{state.step}@{state.step_started:.3f}"


def _load_test_answered(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner
) -> tuple[DeliveryState, tuple[PostEvent, ...]]:
    """The load-test call of the current step answered: 2xx is kept in the record; anything else is
    an inconclusive verdict for the step (no evidence is never a pass)."""
    url = spec.hooks.url(HookKind.LOAD_TEST)
    if not url or not _serving(spec, state, planner):
        return state, ()
    token = _load_token(state)
    entry = _entry(HookKind.LOAD_TEST, state.revision, token)
    if entry in state.hooks or entry + ":failed" in state.hooks:
        return state, ()
    result = _newest(obs, HookKind.LOAD_TEST, state, token)
    if result is None:
        return state, ()
    if result.ok:
        return state.replace(hooks=state.hooks + (entry,)), ()
    summary = f"load-test hook failed: {result.detail}"
    verdict = StepVerdict(state.step, Outcome.INCONCLUSIVE, summary, obs.now, {"hook": HookKind.LOAD_TEST.value})
    told = PostEvent("Warning", R.HOOK_FAILED, f"step {state.step + 1}: load-test hook {origin(url)}: {result.detail}")
    return state.replace(hooks=state.hooks + (entry + ":failed",), verdicts=state.verdicts + (verdict,)), (told,)


def _hold_for_load_test(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner, nxt: Plan
) -> Plan:
    """A step whose checks passed is not left before its load-test call answered 2xx."""
    url = spec.hooks.url(HookKind.LOAD_TEST)
    if not url or not _serving(spec, state, planner):
        return nxt
    token = _load_token(state)
    if not _left(state, nxt) or _entry(HookKind.LOAD_TEST, state.revision, token) in state.hooks:
        return nxt
    message = f"step {state.step + 1} passed its checks; waiting for the load-test hook ({origin(url)}) to answer"
    call = _call(HookKind.LOAD_TEST, state, token)
    return Plan(state.replace(message=message), planner.holding(spec, state, obs) + (call,), RECHECK)


def _call_load_test(spec: DeliverySpec, obs: Observation, planner: StrategyPlanner, nxt: Plan) -> Plan:
    """Call the load-test hook for the step that serves its share now (once per step start; a
    blue-green preview once it is all Ready: ``load_ready``)."""
    url = spec.hooks.url(HookKind.LOAD_TEST)
    if not url or not _serving(spec, nxt.state, planner) or not planner.load_ready(spec, nxt.state, obs):
        return nxt
    token = _load_token(nxt.state)
    entry = _entry(HookKind.LOAD_TEST, nxt.state.revision, token)
    if entry in nxt.state.hooks or entry + ":failed" in nxt.state.hooks:
        return nxt
    call = _call(HookKind.LOAD_TEST, nxt.state, token)
    if call in nxt.actions:
        return nxt
    return Plan(nxt.state, nxt.actions + (call,), nxt.requeue_after, nxt.paused)


def _confirm_promotion(
    spec: DeliverySpec, state: DeliveryState, obs: Observation, planner: StrategyPlanner, nxt: Plan
) -> Plan:
    """Promotion (canary: Progressing -> Promoting; blue-green: the switch of the active Service)
    waits until the confirm-promotion hook answers 2xx."""
    url = spec.hooks.url(HookKind.CONFIRM_PROMOTION)
    if not url or state.phase is not Phase.PROGRESSING or not planner.promotes(state, nxt.state):
        return nxt
    words = planner.promotion(state)
    result = _newest(obs, HookKind.CONFIRM_PROMOTION, state)
    if result is not None and result.ok:
        told = PostEvent(
            "Normal", R.HOOK_PASSED, f"confirm-promotion hook {origin(url)}: {result.detail}; {words.doing}"
        )
        return Plan(nxt.state, (told,) + nxt.actions, nxt.requeue_after, nxt.paused)
    message = (
        f"{words.reached}; {words.gated} waits for the confirm-promotion hook ({origin(url)}) to answer 2xx "
        f"(`deliver promote {obs.name}` {words.promote} now, `deliver abort {obs.name}` rolls back)"
    )
    held = state.replace(message=message, hold=HoldReason.AWAITING_CONFIRMATION)
    told_once = () if state.message == message else (PostEvent("Normal", R.AWAITING_CONFIRMATION, message),)
    keep = planner.holding(spec, state, obs)
    if result is None:
        return Plan(held, keep + told_once + (_call(HookKind.CONFIRM_PROMOTION, state, "0"),), RECHECK)
    waited = obs.now - result.at
    if waited >= CONFIRM_POLL:
        again = _call(HookKind.CONFIRM_PROMOTION, state, f"{result.at:.3f}")
        return Plan(held, keep + told_once + (again,), RECHECK)
    return Plan(held, keep + told_once, max(0.5, CONFIRM_POLL - waited))


def finished(spec: DeliverySpec, before: DeliveryState, obs: Observation, decided: Plan) -> Plan:
    """The post-rollout hook: due when a delivery ends, called once, its answer an Event."""
    url = spec.hooks.url(HookKind.POST_ROLLOUT)
    state = decided.state
    if not url or state.phase not in ENDED:
        return decided
    due = _entry(HookKind.POST_ROLLOUT, state.revision) + ":due"
    if not before.phase.terminal and due not in state.hooks:
        state = state.replace(hooks=state.hooks + (due,))
    if due not in state.hooks:
        return decided
    result = _newest(obs, HookKind.POST_ROLLOUT, state)
    if result is None:
        wait = RECHECK if decided.requeue_after is None else min(decided.requeue_after, RECHECK)
        return Plan(state, decided.actions + (_call(HookKind.POST_ROLLOUT, state),), wait, decided.paused)
    done = tuple(h for h in state.hooks if h != due) + (due.replace(":due", ":done"),)
    told = PostEvent(
        "Normal" if result.ok else "Warning",
        R.HOOK_PASSED if result.ok else R.HOOK_FAILED,
        f"post-rollout hook {origin(url)} ({state.phase.value} revision {state.revision}): {result.detail}",
    )
    return Plan(state.replace(hooks=done), decided.actions + (told,), decided.requeue_after, decided.paused)


__all__ = ["CONFIRM_POLL", "advance", "finished", "origin"]
