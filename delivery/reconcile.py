"""One reconcile pass of one Deployment: read, validate, observe, plan, persist, act.

Level-triggered: each pass starts from what the cluster says now, so a pass may be repeated or
interrupted at any point. The record is persisted (with resourceVersion) before any action runs;
every action is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import strategies
import strategies.plan
import strategies.steps
from strategies.model import Analyse, DeliverySpec, DeliveryState, Emit, Phase, Plan, SetPaused, Verdict

from . import act, templates
from . import spec as specmod
from .errors import Conflict, DeliverError, Forbidden, KubeError, NotFound, RoutingError, SpecError
from .events import emit
from .kube import CONFIGMAPS, DEPLOYMENTS, REPLICASETS, SERVICES, Kube
from .observe import observe, replicasets
from .routing import Router, RouterContext, router_for
from .state import encode_state, read_state, write_state

log = logging.getLogger("deliver.reconcile")

ROUTE_RECHECK = 5.0  # seconds between route checks while a delivery behind a router is open
AnalyserFn = Callable[[DeliverySpec, DeliveryState, dict[str, Any], Analyse], Verdict]


@dataclass
class Outcome:
    requeue_after: float | None
    phase: str = ""
    step: int = 0
    weight: int = 0
    verdicts: list[str] = field(default_factory=list)
    conflicted: bool = False


@dataclass
class Reconciler:
    kube: Kube
    analyser: AnalyserFn | None = None
    clock: Callable[[], float] = time.time
    # Warnings already emitted, keyed by "uid/reason" -> message (dedupe only; not state).
    _warned: dict[str, str] = field(default_factory=dict)
    # uid -> when its router was first seen broken during the current delivery (hold timer only).
    _router_broken: dict[str, float] = field(default_factory=dict)

    def configmaps(self, namespace: str) -> Callable[[str], dict[str, str]]:
        def read(name: str) -> dict[str, str]:
            try:
                return dict(self.kube.get(CONFIGMAPS, namespace, name).get("data") or {})
            except NotFound:
                raise SpecError(specmod.PREFIX + "analysis-config", f"ConfigMap {name!r} not found") from None

        return read

    def reconcile(self, namespace: str, name: str) -> Outcome:
        """Plan and act on one Deployment; a write conflict re-reads and re-plans at once (bounded)."""
        outcome = Outcome(0.2)
        for _ in range(4):
            outcome = self._pass(namespace, name)
            if not outcome.conflicted:
                return outcome
        return outcome

    def _pass(self, namespace: str, name: str) -> Outcome:
        try:
            deployment = self.kube.get(DEPLOYMENTS, namespace, name)
        except NotFound:
            return Outcome(None)
        if not specmod.has_strategy(deployment):
            if specmod.has_record(deployment):
                return self._release(deployment)
            return Outcome(None)
        uid = deployment["metadata"]["uid"]
        try:
            spec = specmod.parse(deployment, self.configmaps(namespace))
        except SpecError as err:
            message = f"invalid annotation {err.key}: {err.problem}; deliver takes no action"
            if self._warn_once(deployment, "InvalidAnnotation", message):
                log.warning("invalid annotation", extra=_fields(deployment, key=err.key, problem=err.problem))
            return Outcome(None, phase="Invalid")
        self._warned.pop(f"{uid}/InvalidAnnotation", None)
        state = read_state(deployment)
        router = self._router(spec, deployment)
        router_weight = None
        # Also before a delivery would start (template != stable): a missing route/CRD/backend must
        # stop it before any Service or ReplicaSet is created, not one pass later.
        starting = bool(state.stable_revision) and templates.revision(deployment["spec"]["template"]) not in (
            state.stable_revision,
            state.failed_revision,
        )
        routing_error: RoutingError | None = None
        if not state.phase.terminal or starting:
            try:
                router_weight = router.verify_weight()
            except RoutingError as exc:
                if state.phase.terminal:
                    return self._routing_problem(deployment, spec, state, exc)
                routing_error = exc
        obs = observe(self.kube, deployment, self.clock(), router_weight)
        if routing_error is None:
            self._router_broken.pop(uid, None)
            self._warned.pop(f"{uid}/RouterUnavailable", None)  # a later outage warns again
        else:
            # Mid-delivery the router broke (route or CRD gone, API errors): hold the step; an
            # operator's abort, a rollback already under way, or a router still broken for longer
            # than the progress deadline (never while an operator holds the delivery) rolls back.
            since = self._router_broken.setdefault(uid, obs.now)
            aborting = obs.request == "abort" and obs.request_id != state.handled_request
            if state.phase == Phase.ROLLING_BACK:
                return self._apply(
                    deployment, spec, state, strategies.plan(spec, state, obs), router, tolerate_routing=True
                )
            if not aborting and (state.phase == Phase.PAUSED or obs.now - since <= spec.progress_deadline):
                return self._routing_problem(deployment, spec, state, routing_error, requeue=5.0)
            plan = strategies.steps.rollback(
                spec,
                state.replace(handled_request=obs.request_id or state.handled_request),
                obs,
                strategies.plan.planner_for(spec.strategy),
                "aborted by an operator" if aborting else f"traffic router unavailable: {routing_error}",
                Phase.ABORTED if aborting else Phase.ROLLED_BACK,
            )
            return self._apply(deployment, spec, state, plan, router, tolerate_routing=True)
        plan = strategies.plan(spec, state, obs)
        return self._apply(deployment, spec, state, plan, router)

    def _release(self, deployment: dict[str, Any]) -> Outcome:
        """The strategy annotation was removed: hand the Deployment back as a plain one.

        Services are unpinned, deliver's own ReplicaSets go, the Deployment is unpaused (so the
        native controller rolls out whatever the template says) and the record is removed, in that
        order. (A weighted route is the user's object; its weights are left as they are.)
        """
        meta = deployment["metadata"]
        ns = meta["namespace"]
        # Services first: deliver's own go, a user's Service that deliver pinned to one
        # pod-template-hash (blue-green's active one) is unpinned so it selects the app again.
        app = deployment["spec"]["selector"].get("matchLabels") or {}
        for svc in self.kube.items(SERVICES, ns):
            selector = (svc.get("spec") or {}).get("selector") or {}
            if templates.HASH_LABEL not in selector:
                continue
            if any(app.get(k) != v for k, v in selector.items() if k != templates.HASH_LABEL):
                continue
            name = svc["metadata"]["name"]
            if (svc["metadata"].get("labels") or {}).get(templates.OWNER_LABEL) == meta["name"]:
                self.kube.delete(SERVICES, ns, name)
            else:
                self.kube.patch(SERVICES, ns, name, {"spec": {"selector": {templates.HASH_LABEL: None}}})
        _, ours = replicasets(self.kube, deployment)
        for rs in ours:
            self.kube.delete(REPLICASETS, ns, rs["metadata"]["name"])
        try:
            self.kube.patch(
                DEPLOYMENTS,
                meta["namespace"],
                meta["name"],
                {
                    "metadata": {
                        "resourceVersion": meta["resourceVersion"],
                        "annotations": {specmod.STATE: None, specmod.REQUEST: None},
                    },
                    "spec": {"paused": False},
                },
            )
        except Conflict:
            return Outcome(0.0, conflicted=True)
        emit(
            self.kube,
            deployment,
            "Normal",
            "Released",
            "deliver.dev/strategy removed: deliver no longer holds this Deployment",
        )
        log.info("released", extra=_fields(deployment))
        return Outcome(None)

    def _router(self, spec: DeliverySpec, deployment: dict[str, Any]) -> Router:
        meta = deployment["metadata"]
        ctx = RouterContext(
            self.kube, meta["namespace"], meta["name"], spec.router.name, spec.stable_service, spec.canary_service
        )
        return router_for(spec.router.kind, ctx)

    def _routing_problem(
        self,
        deployment: dict[str, Any],
        spec: DeliverySpec,
        state: DeliveryState,
        exc: RoutingError,
        requeue: float = 30.0,
    ) -> Outcome:
        holding = (
            ""
            if state.phase.terminal
            else (f"; holding step {state.step + 1} (rolled back if still broken after the progress deadline)")
        )
        message = f"router {spec.router.kind}/{spec.router.name}: {exc}; deliver takes no action{holding}"
        self._warn_once(deployment, "RouterUnavailable", message)
        return Outcome(requeue, phase=state.phase.value)

    def _apply(
        self,
        deployment: dict[str, Any],
        spec: DeliverySpec,
        state: DeliveryState,
        plan: Plan,
        router: Router,
        tolerate_routing: bool = False,
    ) -> Outcome:
        fields = _fields(deployment, strategy=spec.strategy.value)
        actions = list(plan.actions)
        if encode_state(plan.state) != encode_state(state):
            # Persist the record first; a pause rides in the same patch so the Deployment
            # controller is held in the very write that records the decision.
            # Only a pause rides along: an unpause must wait for the actions before it (e.g. the
            # template revert of a native rollback), or the old template would roll out first.
            paused = next((a for a in actions if isinstance(a, SetPaused) and a.paused), None)
            try:
                deployment = write_state(self.kube, deployment, plan.state, paused=paused.paused if paused else None)
            except Conflict:
                log.debug("state write conflicted; planning again", extra=fields)
                return Outcome(0.0, conflicted=True)
            if paused is not None:
                actions.remove(paused)
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
        analysed: list[Verdict] = []

        def run_analysis(action: Analyse) -> None:
            verdict = self._run_analysis(spec, plan.state, deployment, action)
            analysed.append(verdict)

        ctx = act.Context(self.kube, deployment, spec, plan.state, router, run_analysis)
        for action in actions:
            if isinstance(action, Emit):
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
                        deployment, "PermissionDenied", f"{type(action).__name__} failed: {exc}; check deliver's RBAC"
                    )
                if isinstance(exc, RoutingError) and tolerate_routing:
                    continue  # the route is gone: no traffic reaches the canary through it anyway
                if not isinstance(action, Emit):
                    self._emit_rest(ctx, actions[actions.index(action) + 1 :])
                    # a lost race (409, or 422 from a guarded template write) is retried at once
                    retry = 0.2 if isinstance(exc, KubeError) and exc.status in (409, 422) else 2.0
                    return Outcome(retry, plan.state.phase.value, plan.state.step, plan.state.weight)
            except DeliverError as exc:
                log.error("action failed", extra=dict(fields, action=type(action).__name__, error=str(exc)))
                self._warn_once(deployment, "ActionFailed", f"{type(action).__name__} failed: {exc}")
                self._emit_rest(ctx, actions[actions.index(action) + 1 :])
                return Outcome(5.0, plan.state.phase.value, plan.state.step, plan.state.weight)
        if analysed:
            self._record_verdicts(ctx.deployment, analysed)
            return Outcome(
                0.0, plan.state.phase.value, plan.state.step, plan.state.weight, [v.outcome for v in analysed]
            )
        requeue = plan.requeue_after
        if router.kind != "replica" and not plan.state.phase.terminal:
            # Routes are not watched: while a delivery is open, look at the route at least this often.
            requeue = min(requeue if requeue is not None else ROUTE_RECHECK, ROUTE_RECHECK)
        return Outcome(requeue, plan.state.phase.value, plan.state.step, plan.state.weight)

    def _run_analysis(
        self, spec: DeliverySpec, state: DeliveryState, deployment: dict[str, Any], action: Analyse
    ) -> Verdict:
        now = self.clock()
        if self.analyser is None:
            return Verdict(action.step, "inconclusive", "no metrics provider configured (--prometheus-url)", now)
        try:
            return self.analyser(spec, state, deployment, action)
        except Exception as exc:  # noqa: BLE001 - a broken analysis must never promote
            log.exception("analysis crashed", extra=_fields(deployment))
            return Verdict(action.step, "inconclusive", f"analysis error: {exc}", now)

    def _emit_rest(self, ctx: act.Context, rest: list[Any]) -> None:
        """The events a failed action would have been followed by still go out: the transition
        they announce was recorded; the failed step itself is retried on the next pass."""
        for action in rest:
            if isinstance(action, Emit):
                act.execute(ctx, action)

    def _warn_once(self, deployment: dict[str, Any], reason: str, message: str) -> bool:
        """A Warning Event, unless the same one was just emitted for this Deployment (in-memory dedupe)."""
        key = deployment["metadata"]["uid"] + "/" + reason
        if self._warned.get(key) == message:
            return False
        emit(self.kube, deployment, "Warning", reason, message)
        self._warned[key] = message
        return True

    def _record_verdicts(self, deployment: dict[str, Any], verdicts: list[Verdict]) -> None:
        meta = deployment["metadata"]
        for _ in range(5):
            fresh = self.kube.get(DEPLOYMENTS, meta["namespace"], meta["name"])
            current = read_state(fresh)
            updated = current.replace(verdicts=current.verdicts + tuple(verdicts))
            try:
                write_state(self.kube, fresh, updated)
            except Conflict:
                continue
            for v in verdicts:
                type_ = "Warning" if v.outcome != "pass" else "Normal"
                reason = {"pass": "AnalysisPassed", "fail": "AnalysisFailed"}.get(v.outcome, "AnalysisInconclusive")
                emit(self.kube, fresh, type_, reason, f"step {v.step + 1}: {v.summary}")
                log.info("verdict", extra=_fields(fresh, step=v.step, outcome=v.outcome, summary=v.summary))
            return
        log.warning("could not record verdicts after 5 conflicts", extra=_fields(deployment))


def _fields(deployment: dict[str, Any], **more: Any) -> dict[str, Any]:
    meta = deployment.get("metadata") or {}
    return dict({"namespace": meta.get("namespace"), "deployment": meta.get("name")}, **more)


__all__ = ["Reconciler", "Outcome", "Phase"]
