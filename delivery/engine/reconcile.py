"""One reconcile pass of one Deployment: read, validate, observe, plan, persist, act.

Level-triggered: each pass starts from what the cluster says now, so a pass may be repeated or
interrupted at any point. The record is persisted (with resourceVersion) before any action runs;
every action is idempotent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import strategies
from delivery import spec as specmod
from delivery import templates
from delivery.engine import act, takeover
from delivery.engine.background import AnalysisPool
from delivery.engine.observe import leftovers, observe
from delivery.engine.state import encode_state, read_state, write_state
from delivery.errors import Conflict, DeliverError, Forbidden, KubeError, NotFound, RoutingError, SpecError, StateError
from delivery.integrations import hooks
from delivery.integrations.events import post_event
from delivery.integrations.hooks import HookPool
from delivery.integrations.notify import Notifier
from delivery.kube.client import CONFIGMAPS, DEPLOYMENTS, Kube
from delivery.routing import kinds as routers
from delivery.routing.base import Router, RouterContext, router_for
from delivery.settings import Settings
from strategies.actions import Analyse, CallHook, Plan, PostEvent, RemoveRecord, SetWeight
from strategies.evidence import Outcome as VerdictOutcome  # a verdict's; ``Outcome`` here is a pass's
from strategies.evidence import StepVerdict
from strategies.observation import HoldMode
from strategies.reasons import EventReason
from strategies.record import DeliveryState, Phase
from strategies.release import release
from strategies.spec import DeliverySpec, Strategy

log = logging.getLogger("deliver.reconcile")

WARNED_MAX = 10_000  # warnings remembered for dedupe (the oldest forgotten first)
AnalyserFn = Callable[[DeliverySpec, DeliveryState, dict[str, Any], Analyse], StepVerdict]


@dataclass
class Outcome:
    requeue_after: float | None
    phase: str = ""
    step: int = 0
    weight: int = 0
    verdicts: list[VerdictOutcome] = field(default_factory=list)  # outcomes of the analyses recorded by this pass
    conflicted: bool = False
    analysed: tuple[StepVerdict, ...] = ()  # verdicts not recorded yet: the next pass plans with them
    forecasts: list[dict[str, Any]] = field(default_factory=list)  # the newest recorded verdict's time to verdict


@dataclass(frozen=True)
class _RouteLook:
    """What one pass read from the route: its weight (None: not read, unknown or unreadable), why it
    is broken ("" if not) and whether a request match of deliver.dev/match is left on it."""

    weight: int | None
    problem: str
    extras: bool


@dataclass
class Reconciler:
    kube: Kube
    analyser: AnalyserFn | None = None
    clock: Callable[[], float] = time.time
    # When set, analyses run in this pool, off the reconcile path (see delivery/engine/background.py);
    # when None, a pass runs its analysis inline (tests, one-shot use).
    pool: AnalysisPool | None = None
    # Seconds between looks at an analysed step's running window when deliver.dev/analysis-every is
    # not set (`deliver run` passes twice its --scrape-interval); None: the planner's default.
    analysis_every: float | None = None
    # Who holds a template change until deliver acts (delivery/engine/holdpolicy.py's HoldWatch.mode): in
    # the policy mode a Deployment at rest is unpaused; by default deliver pauses it itself.
    hold_mode: Callable[[], HoldMode] = lambda: HoldMode.PAUSED
    # When set, the Events of each plan are also sent as notifications (delivery/integrations/notify.py).
    notifier: Notifier | None = None
    # Hook calls (delivery/integrations/hooks.py) run here; the default makes them inline (tests, one-shot use).
    hook_pool: HookPool = field(default_factory=lambda: HookPool(workers=0))
    # When a pass is run again (``settings.passes``); how long a hook call may take (``settings.hooks``).
    settings: Settings = field(default_factory=Settings)
    # Warnings about the engine's own I/O already posted, keyed by "namespace/name/uid/reason" -> message
    # (dedupe only; not state: a new process may post one again). Forgotten with the Deployment, and
    # at most WARNED_MAX kept (the oldest forgotten first: such a warning may be posted again).
    _warned: dict[str, str] = field(default_factory=dict)
    # Records refused, keyed like ``_warned`` -> (digest of the record's text, why): an unchanged one
    # is refused again without being parsed (a packed template inflated) or logged again, however
    # often its Deployment's objects change. Forgotten with the Deployment, at most WARNED_MAX kept.
    _rejected: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def configmaps(self, namespace: str) -> Callable[[str], dict[str, str]]:
        def read(name: str) -> dict[str, str]:
            try:
                return dict(self.kube.get(CONFIGMAPS, namespace, name).get("data") or {})
            except NotFound:
                raise SpecError(specmod.PREFIX + "analysis-config", f"ConfigMap {name!r} not found") from None

        return read

    def reconcile(self, namespace: str, name: str) -> Outcome:
        """Plan and act on one Deployment. A write conflict re-reads and re-plans at once; verdicts
        of an analysis run by a pass go to the next pass's plan, which records them (bounded)."""
        outcome = Outcome(0.2)
        analysed: tuple[StepVerdict, ...] = ()
        for _ in range(6):
            outcome = self._pass(namespace, name, analysed)
            if outcome.analysed:
                analysed = outcome.analysed
                continue
            if not outcome.conflicted:
                if analysed:
                    # step verdicts (a failing look is one: the step ends on it); other looks are not
                    outcome.verdicts = [
                        v.outcome for v in analysed if not v.interim or v.outcome is VerdictOutcome.FAIL
                    ]
                    outcome.forecasts = list(analysed[-1].details.get("forecast") or [])
                return outcome
        return outcome

    def _pass(self, namespace: str, name: str, analysed: tuple[StepVerdict, ...] = ()) -> Outcome:
        try:
            deployment = self.kube.get(DEPLOYMENTS, namespace, name)
        except NotFound:
            self._forget(namespace, name)
            return Outcome(None)
        if not specmod.has_strategy(deployment):
            if specmod.has_record(deployment):
                return self._release(deployment)
            self._forget(namespace, name)
            return Outcome(None)
        uid = deployment["metadata"]["uid"]
        spec = self._spec(namespace, deployment)
        if isinstance(spec, Outcome):
            return spec
        state = self._record(deployment)
        if isinstance(state, Outcome):
            return state
        router = self._router(spec, deployment)
        route = self._look_at_route(spec, state, deployment, router)
        obs = observe(self.kube, deployment, self.clock(), route.weight)
        obs = dataclasses.replace(obs, router_problem=route.problem, analysed=analysed, router_extras=route.extras)
        obs = dataclasses.replace(obs, hook_results=self.hook_pool.results((namespace, name), uid))
        obs = dataclasses.replace(obs, hold_mode=self.hold_mode())
        return self._apply(deployment, spec, state, strategies.plan(spec, state, obs), router)

    def _spec(self, namespace: str, deployment: dict[str, Any]) -> DeliverySpec | Outcome:
        """The Deployment's spec (with the controller's default analysis-every), or the Outcome of a
        pass that cannot plan: a ConfigMap unreadable (retried soon) or an invalid annotation (warned)."""
        try:
            spec = specmod.parse(deployment, self.configmaps(namespace))
            # A Service-name annotation may not take over a Service that is neither deliver's nor
            # already in front of this Deployment's pods alone: refused like an invalid annotation.
            takeovers = takeover.service_takeovers(self.kube, spec, deployment)
            if takeovers:
                raise takeovers[0]
        except KubeError as exc:
            # Reading the analysis ConfigMap failed for another reason than NotFound (a timeout, a
            # 5xx, a 403): nothing is known to be wrong with the annotations. Plan nothing, retry soon.
            log.warning("cannot read the spec's ConfigMap", extra=_fields(deployment, error=str(exc)))
            if isinstance(exc, Forbidden):
                self._warn_once(deployment, EventReason.PERMISSION_DENIED, f"reading a ConfigMap failed: {exc}")
            return Outcome(self.settings.passes.spec_retry)
        except SpecError as err:
            message = f"invalid annotation {err.key}: {err.problem}; deliver takes no action"
            if self._warn_once(deployment, EventReason.INVALID_ANNOTATION, message):
                log.warning("invalid annotation", extra=_fields(deployment, key=err.key, problem=err.problem))
            return Outcome(None, phase="Invalid")
        self._warned.pop(_warn_key(deployment, EventReason.INVALID_ANNOTATION), None)
        if spec.analysis_every is None and self.analysis_every is not None:
            spec = dataclasses.replace(spec, analysis_every=self.analysis_every)
        return spec

    def _record(self, deployment: dict[str, Any]) -> DeliveryState | Outcome:
        """deliver's record on the Deployment, or the Outcome of a pass that cannot trust it (warned)."""
        try:
            state = self._read_state(deployment)
        except StateError as exc:
            # A record written by hand (or broken): nothing deliver would do could be trusted. Say so
            # once, act on nothing, and look again calmly; other Deployments are not held up.
            if exc.__cause__ is not _SEEN:
                log.warning("record unreadable", extra=_fields(deployment, error=str(exc)))
            self._warn_once(
                deployment,
                EventReason.RECORD_REJECTED,
                f"{exc}; deliver takes no action on this Deployment until it can read it (restore the record, or "
                f"remove it with `kubectl annotate deployment {deployment['metadata']['name']} {specmod.STATE}-` "
                "so deliver takes the running version as stable)",
            )
            return Outcome(self.settings.passes.record_retry, phase="Invalid")
        unreadable = _warn_key(deployment, EventReason.RECORD_REJECTED)
        if self._warned.get(unreadable, "").startswith(f"{specmod.STATE} is not a valid"):
            self._warned.pop(unreadable)  # readable again (a rejected write is forgotten once one passes)
        return state

    def _look_at_route(
        self, spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], router: Router
    ) -> _RouteLook:
        """What the route says, for the observation: checked while a delivery is open or starting,
        read once at rest behind a weighted canary router."""
        router_weight = None
        # Also before a delivery would start (template != stable): a missing route/CRD/backend must
        # stop it before any Service or ReplicaSet is created, not one pass later.
        starting = bool(state.stable_revision) and templates.revision(deployment["spec"]["template"]) not in (
            state.stable_revision,
            state.failed_revision,
        )
        router_problem = ""
        if not state.phase.terminal or starting:
            try:
                router_weight = router.verify_weight()
            except RoutingError as exc:
                router_problem = str(exc)  # a fact for the planner: it holds or rolls back
        elif router.weighted and spec.strategy is Strategy.CANARY:
            # At rest one read of the route (no validation): a reset lost after the record was
            # written (a failed write, a crash) shows as a weight other than 0 and is issued again.
            try:
                router_weight = router.verify_weight()
            except RoutingError:
                router_weight = None  # a broken route at rest holds nothing; a delivery starting checks it
        router_extras = False
        if router_weight is not None:
            try:  # a request match of deliver.dev/match left on the route (a lost reset) is removed too
                router_extras = router.verify_extras()
            except RoutingError:
                router_extras = False
        return _RouteLook(router_weight, router_problem, router_extras)

    def _release(self, deployment: dict[str, Any]) -> Outcome:
        """The strategy annotation was removed: hand the Deployment back as a plain one, still served.
        What goes, what stays and in which order is the release's planner's (strategies/release.py);
        a route that cannot be reset does not stop it, and a Conflict on its last write (the record
        removed, guarded by resourceVersion) means someone wrote meanwhile: plan again at once."""
        meta = deployment["metadata"]
        left = leftovers(self.kube, deployment)
        ctx = RouterContext(
            self.kube, meta["namespace"], meta["name"], left.router.name, left.stable_service, left.canary_service
        )
        route_error = ""
        try:
            router = router_for(left.router.kind, ctx)
        except RoutingError as exc:  # its module cannot be loaded: the route is not reset, and the Event says so
            route_error, router = str(exc), router_for(routers.NO_ROUTER, ctx)
        actions = release(left, route_error)
        run = act.release_context(self.kube, deployment, router)
        for i in range(len(actions)):  # (planned again below: the same actions, another Event)
            try:
                act.execute(run, actions[i])
            except RoutingError as exc:
                if not isinstance(actions[i], SetWeight):
                    raise
                # the route is the user's; the Services serve the app either way
                log.warning("route not reset at release", extra=_fields(deployment, error=str(exc)))
                actions = release(left, str(exc))
            except Conflict:
                if not isinstance(actions[i], RemoveRecord):
                    raise
                return Outcome(0.0, conflicted=True)
        log.info("released", extra=_fields(deployment))
        return Outcome(None)

    def _router(self, spec: DeliverySpec, deployment: dict[str, Any]) -> Router:
        meta = deployment["metadata"]
        ctx = RouterContext(
            self.kube, meta["namespace"], meta["name"], spec.router.name, spec.stable_service, spec.canary_service
        )
        return router_for(spec.router.kind, ctx)

    def _apply(
        self,
        deployment: dict[str, Any],
        spec: DeliverySpec,
        state: DeliveryState,
        plan: Plan,
        router: Router,
    ) -> Outcome:
        """Persist the plan's record (with the spec.paused it asks for, in one patch), then act."""
        fields = _fields(deployment, strategy=spec.strategy.value)
        passes = self.settings.passes
        actions = list(plan.actions)
        written = self._persist(deployment, state, plan, fields)
        if isinstance(written, Outcome):
            return written
        deployment = written
        analysed: list[StepVerdict] = []
        waiting: list[Analyse] = []  # analyses still running in the pool

        def run_analysis(action: Analyse) -> None:
            if self.pool is None:
                analysed.append(self._run_analysis(spec, plan.state, deployment, action))
                return
            meta, state_then = deployment["metadata"], plan.state
            verdict = self.pool.verdict(
                (meta["namespace"], meta["name"]),
                meta["uid"],
                action,
                lambda: self._run_analysis(spec, state_then, deployment, action),
            )
            if verdict is None:
                waiting.append(action)
            else:
                analysed.append(verdict)

        ctx = act.Context(self.kube, deployment, spec, plan.state, router, run_analysis)
        ctx.notify = self.notifier.event if self.notifier is not None else None
        ctx.call_hook = lambda a: self._call_hook(spec, deployment, plan.state, a)
        for action in actions:
            if isinstance(action, PostEvent):
                log.info(
                    "event",
                    extra=dict(
                        fields, type=action.type, reason=action.reason, detail=action.message, step=plan.state.step
                    ),
                )
            try:
                act.execute(ctx, action)
            except (KubeError, RoutingError) as exc:
                log.warning("action failed", extra=dict(fields, action=type(action).__name__, error=str(exc)))
                if isinstance(exc, Forbidden):
                    self._warn_once(
                        deployment,
                        EventReason.PERMISSION_DENIED,
                        f"{type(action).__name__} failed: {exc}; check deliver's RBAC",
                    )
                if not isinstance(action, PostEvent):
                    self._post_rest(ctx, actions[actions.index(action) + 1 :])
                    # a lost race (409, or 422 from a guarded template write) is retried at once
                    lost_race = isinstance(exc, KubeError) and exc.status in (409, 422)
                    retry = passes.race_retry if lost_race else passes.action_retry
                    return Outcome(retry, plan.state.phase.value, plan.state.step, plan.state.weight)
            except DeliverError as exc:
                log.error("action failed", extra=dict(fields, action=type(action).__name__, error=str(exc)))
                self._warn_once(deployment, EventReason.ACTION_FAILED, f"{type(action).__name__} failed: {exc}")
                self._post_rest(ctx, actions[actions.index(action) + 1 :])
                return Outcome(passes.error_retry, plan.state.phase.value, plan.state.step, plan.state.weight)
        if analysed:
            # Recorded by the next plan (reconcile runs it at once), in its one record write.
            return Outcome(0.0, plan.state.phase.value, plan.state.step, plan.state.weight, analysed=tuple(analysed))
        requeue = self._requeue(plan, router, bool(waiting))
        return Outcome(requeue, plan.state.phase.value, plan.state.step, plan.state.weight)

    def _persist(
        self, deployment: dict[str, Any], state: DeliveryState, plan: Plan, fields: dict[str, Any]
    ) -> dict[str, Any] | Outcome:
        """Write the plan's record and the spec.paused it asks for (one patch), when either changes: the
        Deployment as written (as read when nothing changed), or the Outcome of a pass whose write failed."""
        pause = (
            plan.paused if plan.paused is not None and plan.paused != bool(deployment["spec"].get("paused")) else None
        )
        if encode_state(plan.state) != encode_state(state) or pause is not None:
            try:
                deployment = write_state(self.kube, deployment, plan.state, paused=pause)
            except Conflict:
                log.debug("state write conflicted; planning again", extra=fields)
                return Outcome(0.0, conflicted=True)
            except KubeError as exc:
                if exc.status != 422:
                    raise
                # The API server refuses the record (most often: the Deployment's annotations together
                # past 256 KiB). Nothing is done without it; say so once, and try again calmly.
                log.warning("record write rejected", extra=dict(fields, error=str(exc)))
                self._warn_once(
                    deployment,
                    EventReason.RECORD_REJECTED,
                    f"the API server rejected deliver's record ({specmod.STATE}): {exc}; deliver takes no action "
                    "until it can write it (the annotations of an object may take 256 KiB together: remove "
                    "large annotations, e.g. kubectl's last-applied-configuration by using server-side apply)",
                )
                return Outcome(self.settings.passes.record_retry, state.phase.value, state.step, state.weight)
            self._warned.pop(_warn_key(deployment, EventReason.RECORD_REJECTED), None)
            if plan.state.phase != state.phase or plan.state.step != state.step:
                log.info(
                    "transition",
                    extra=dict(
                        fields,
                        phase=plan.state.phase.value,
                        step=plan.state.step,
                        weight=plan.state.weight,
                        detail=plan.state.message,
                    ),
                )
        return deployment

    def _requeue(self, plan: Plan, router: Router, waiting: bool) -> float | None:
        """When to pass again after a plan was carried out (``waiting``: an analysis still runs in the pool)."""
        passes = self.settings.passes
        requeue = plan.requeue_after
        if waiting:
            # The verdict comes later (the pool requeues this Deployment when it is in); meanwhile
            # each pass still checks health, so a crash-looping new version is rolled back at once.
            requeue = passes.analysis_wait
        if router.weighted and not plan.state.phase.terminal:
            # Routes are not watched: while a delivery is open, look at the route at least this often.
            requeue = min(requeue if requeue is not None else passes.route_recheck, passes.route_recheck)
        return requeue

    def _run_analysis(
        self, spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse
    ) -> StepVerdict:
        now = self.clock()
        if self.analyser is None:
            return StepVerdict(
                action.step,
                VerdictOutcome.INCONCLUSIVE,
                "no metrics provider configured (--prometheus-url)",
                now,
                interim=action.interim,
            )
        try:
            verdict = self.analyser(spec, state, deployment, action)
            # a look at a running window is interim whatever the analyser says: only the plan's
            # action tells a look from a step's end
            return (
                verdict if verdict.interim == action.interim else dataclasses.replace(verdict, interim=action.interim)
            )
        except Exception as exc:  # a broken analysis must never promote
            log.exception("analysis crashed", extra=_fields(deployment))
            return StepVerdict(
                action.step, VerdictOutcome.INCONCLUSIVE, f"analysis error: {exc}", now, interim=action.interim
            )

    def _call_hook(self, spec: DeliverySpec, deployment: dict[str, Any], state: DeliveryState, a: CallHook) -> None:
        url = spec.hooks.url(a.kind)
        if not url:
            return
        meta = deployment["metadata"]
        payload = hooks.body(deployment, state, a)
        secret, timeout, clock = self.hook_pool.secret, spec.hooks.timeout, self.clock
        egress, settings = self.hook_pool.egress, self.settings
        self.hook_pool.call(
            (meta["namespace"], meta["name"]),
            meta["uid"],
            a,
            lambda: hooks.run_call(a, url, payload, timeout, secret, clock, egress, settings),
        )

    def _post_rest(self, ctx: act.Context, rest: list[Any]) -> None:
        """The events a failed action would have been followed by still go out: the transition
        they announce was recorded; the failed step itself is retried on the next pass."""
        for action in rest:
            if isinstance(action, PostEvent):
                act.execute(ctx, action)

    def _read_state(self, deployment: dict[str, Any]) -> DeliveryState:
        """``read_state``, except that a record refused before and unchanged since is refused again
        at the cost of a digest (the StateError's cause is then ``_SEEN``)."""
        key = _warn_key(deployment, EventReason.RECORD_REJECTED)
        known = self._rejected.get(key)
        digest = b""
        if known is not None:
            digest = _digest(deployment)
            if known[0] == digest:
                raise StateError(known[1]) from _SEEN
        try:
            state = read_state(deployment)
        except StateError as exc:
            self._rejected.pop(key, None)
            self._rejected[key] = (digest or _digest(deployment), str(exc))
            while len(self._rejected) > WARNED_MAX:
                self._rejected.pop(next(iter(self._rejected)))
            raise
        self._rejected.pop(key, None)
        return state

    def _warn_once(self, deployment: dict[str, Any], reason: EventReason, message: str) -> bool:
        """A Warning Event, unless the same one was just posted for this Deployment (in-memory dedupe)."""
        key = _warn_key(deployment, reason)
        if self._warned.get(key) == message:
            return False
        post_event(self.kube, deployment, "Warning", reason, message)
        self._warned.pop(key, None)
        self._warned[key] = message  # the newest last: the oldest go first past WARNED_MAX
        while len(self._warned) > WARNED_MAX:
            self._warned.pop(next(iter(self._warned)))
        return True

    def _forget(self, namespace: str, name: str) -> None:
        """The Deployment is gone (or no longer deliver's): drop what this process kept about it."""
        prefix = f"{namespace}/{name}/"
        for key in [k for k in self._warned if k.startswith(prefix)]:
            del self._warned[key]
        for key in [k for k in self._rejected if k.startswith(prefix)]:
            del self._rejected[key]
        self.hook_pool.forget((namespace, name))
        if self.pool is not None:
            self.pool.forget((namespace, name))


# The cause of a StateError for a record refused before and unchanged since (not logged again).
_SEEN = StateError("refused before, unchanged since")


def _digest(deployment: dict[str, Any]) -> bytes:
    """A digest of the Deployment's record text (what ``read_state`` reads)."""
    raw = str(((deployment.get("metadata") or {}).get("annotations") or {}).get(specmod.STATE) or "")
    return hashlib.blake2b(raw.encode(errors="surrogatepass"), digest_size=16).digest()


def _warn_key(deployment: dict[str, Any], reason: EventReason) -> str:
    """Key of a posted warning: namespace/name/uid/reason (a new Deployment of the same name is another)."""
    meta = deployment["metadata"]
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}/{meta.get('uid', '')}/{reason.value}"


def _fields(deployment: dict[str, Any], **more: Any) -> dict[str, Any]:
    meta = deployment.get("metadata") or {}
    return dict({"namespace": meta.get("namespace"), "deployment": meta.get("name")}, **more)


__all__ = ["Reconciler", "Outcome", "Phase"]
