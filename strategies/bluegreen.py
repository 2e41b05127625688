"""Blue-green: the new version comes up in full behind the preview Service, is analysed, then the
active Service's selector is switched to it in one patch. The old version stays warm (still at full
size, owned by the Deployment) for ``keep-warm``; switch-back is the same patch reversed. After the
keep-warm window deliver hands its ReplicaSet to the Deployment, whose controller scales the old one
to zero.

Steps: 0 = preview (scale up, hold, analyse), 1 = switched (keep warm), 2+ = finalise.
"""

from __future__ import annotations

from .actions import (
    Action,
    AdoptNew,
    DeleteNew,
    EnsureService,
    Plan,
    PostEvent,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SwitchActive,
)
from .evidence import Outcome
from .observation import Observation, VersionObs
from .reasons import EventReason as R
from .record import DeliveryState, HoldReason, Phase
from .spec import DeliverySpec
from .steps import RECHECK, Promotion, check_step, rollback, settle_adopted, step_passed, unready_for

PREVIEW, SWITCHED = 0, 1


def services(spec: DeliverySpec, stable_hash: str, new_hash: str) -> tuple[Action, ...]:
    """The preview Service on the new version; the active one created on the stable version if
    missing (only SwitchActive moves it)."""
    return (
        EnsureService(spec.preview_service, new_hash),
        EnsureService(spec.active_service, stable_hash, repoint=False),
    )


def preview(spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
    """What keeps the preview step converged: the Deployment paused, the active Service pinned to the
    stable pods, the new version at full size behind the preview Service. Also what holds the preview
    while the switch waits for a hook (``BlueGreenPlanner.holding``, asked by ``strategies/hooks.py``)."""
    held: tuple[Action, ...] = () if obs.paused else (SetPaused(True),)
    return held + (
        SwitchActive(spec.active_service, state.stable_hash),
        ScaleNew(obs.replicas),
        *services(spec, state.stable_hash, state.revision),
    )


class BlueGreenPlanner:
    def native(self) -> bool:
        return False

    def drains(self, spec: DeliverySpec) -> bool:
        return True  # the switched active Service

    def exclusive(self) -> bool:
        return False

    def pinned_services(self, spec: DeliverySpec) -> tuple[str, ...]:
        return (spec.active_service, spec.preview_service)

    def rest_service(self, spec: DeliverySpec) -> str:
        return ""  # no route: the active Service's selector is the switch

    def serving(self, spec: DeliverySpec, state: DeliveryState) -> bool:
        """The preview, not switched yet (its analysis window is running)."""
        return state.phase is Phase.PROGRESSING and state.step == PREVIEW and not state.switched

    def load_ready(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> bool:
        """The preview runs at full size, all Ready."""
        new = obs.deliver_owned(state.revision)
        return obs.replicas > 0 and new is not None and new.ready >= obs.replicas

    def promotes(self, before: DeliveryState, after: DeliveryState) -> bool:
        """The move from the preview to the switch of the active Service."""
        return (
            before.step == PREVIEW
            and not before.switched
            and after.step > PREVIEW
            and after.phase in (Phase.PROGRESSING, Phase.PROMOTING)
        )

    def promotion(self, state: DeliveryState) -> Promotion:
        return Promotion(
            f"preview of revision {state.revision} passed",
            "the switch of the active Service",
            "switching the active Service",
            "switches",
        )

    def holding(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        """The preview, the active Service pinned to the stable pods."""
        return preview(spec, state, obs)

    def undo(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> tuple[Action, ...]:
        return (
            SwitchActive(spec.active_service, state.stable_hash),
            DeleteNew(),
            RevertTemplate(state.stable_revision, state.stable_template),
        )

    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
        n = obs.replicas
        new = obs.deliver_owned(state.revision)
        base: list[Action] = [SetPaused(True)] if not obs.paused else []
        if state.step <= PREVIEW:
            return self._preview_step(spec, state, obs, new, n)

        if state.phase is Phase.PAUSED:
            # failed after the switch with auto-rollback off: held until `deliver promote` or `abort`
            return Plan(state, tuple(base), None)
        if not state.switched:
            # `promote` may arrive before the preview is fully Ready: switch only once it is.
            waiting = self._not_ready_to_switch(spec, state, obs, new, n)
            if waiting is not None:
                return Plan(
                    waiting.state,
                    tuple(base)
                    + (
                        ScaleNew(n),
                        *services(spec, state.stable_hash, state.revision),
                        SwitchActive(spec.active_service, state.stable_hash),
                    )
                    + waiting.actions
                    if waiting.state.phase == state.phase
                    else waiting.actions,
                    waiting.requeue_after,
                )

        if state.step == SWITCHED:
            warm = self._switched_step(spec, state, obs, base, new, n)
            if isinstance(warm, Plan):
                return warm
            state = warm
        return self._finalise(spec, state, obs, base, new)

    def _preview_step(
        self, spec: DeliverySpec, state: DeliveryState, obs: Observation, new: VersionObs | None, n: int
    ) -> Plan:
        """Step 0: the new version at full size behind the preview Service, checked and analysed; once
        it passes, the switch (or, without auto-promote, a wait for `deliver promote`)."""
        # The active Service is pinned to the stable pods before the preview pods exist: they carry
        # the same app labels, and a crash between the two writes must not let them take traffic.
        base = list(preview(spec, state, obs))
        if state.phase == Phase.PAUSED:
            if new is not None and new.health.problem(spec.max_restarts):
                return rollback(
                    spec, state, obs, self, f"new version unhealthy: {new.health.problem(spec.max_restarts)}"
                )
            return Plan(state, tuple(base), None)
        compared = (spec.preview_service, spec.active_service)
        checked = check_step(spec, state, obs, self, new, n, PREVIEW, compared)
        if isinstance(checked, Plan):
            keep = checked.state.phase in (Phase.PROGRESSING, Phase.PAUSED)
            return Plan(checked.state, (tuple(base) if keep else ()) + checked.actions, checked.requeue_after)
        if checked is not Outcome.PASS:
            return Plan(state, tuple(base), RECHECK)
        then = "switching the active Service" if spec.auto_promote else "waiting for `deliver promote`"
        passed = step_passed(state, PREVIEW, f"preview of revision {state.revision}", then)
        if not spec.auto_promote:
            message = (
                f"preview of revision {state.revision} passed; waiting for "
                f"`deliver promote {obs.name}` to switch the active Service"
            )
            return Plan(
                state.replace(phase=Phase.PAUSED, hold=HoldReason.AWAITING_PROMOTION, message=message),
                tuple(base) + (passed, PostEvent("Normal", R.AWAITING_PROMOTION, message)),
                None,
            )
        moved = state.replace(step=SWITCHED, step_started=obs.now)
        nxt = self.advance(spec, moved, obs)
        return Plan(nxt.state, (passed,) + nxt.actions, nxt.requeue_after, nxt.paused)

    def _switched_step(
        self,
        spec: DeliverySpec,
        state: DeliveryState,
        obs: Observation,
        base: list[Action],
        new: VersionObs | None,
        n: int,
    ) -> Plan | DeliveryState:
        """Step 1: the active Service switched to the new version, the old one kept warm. A Plan while
        the old version is kept warm (or to roll back); once keep-warm is over, the state to finalise."""
        actions: list[Action] = base + [
            ScaleNew(n),
            *services(spec, state.stable_hash, state.revision),
            SwitchActive(spec.active_service, state.revision),
        ]
        if not state.switched:
            state = state.replace(
                switched=obs.now,
                step_started=obs.now,
                weight=100,
                message=f"active Service switched to revision {state.revision}",
            )
            actions.append(
                PostEvent(
                    "Normal",
                    R.ACTIVE_SWITCHED,
                    f"active Service {spec.active_service} now selects revision "
                    f"{state.revision}; old version kept warm for {int(spec.keep_warm)}s",
                )
            )
        if new is not None:
            problem = new.health.problem(spec.max_restarts)
            if problem:
                return rollback(spec, state, obs, self, f"new version unhealthy after switch: {problem}")
            if new.ready < n and unready_for(obs, state.switched, new, n) > spec.progress_deadline:
                return rollback(spec, state, obs, self, f"only {new.ready}/{n} new pods Ready after switch")
        if obs.now - state.switched < spec.keep_warm:
            return Plan(state, tuple(actions), min(RECHECK * 5, spec.keep_warm - (obs.now - state.switched)))
        return state.replace(step=SWITCHED + 1, step_started=obs.now)

    def _finalise(
        self, spec: DeliverySpec, state: DeliveryState, obs: Observation, base: list[Action], new: VersionObs | None
    ) -> Plan:
        """Step 2+, finalise: the Deployment takes over the new ReplicaSet and drops the old one; then the
        new version is the stable one."""
        if state.phase != Phase.PROMOTING:
            state = state.replace(phase=Phase.PROMOTING, switched=state.switched or obs.now, weight=100)
        if new is not None:
            return Plan(state, tuple(base) + (SwitchActive(spec.active_service, state.revision), AdoptNew()), RECHECK)
        adopted = obs.version(state.revision)
        if adopted is None:
            return rollback(spec, state, obs, self, "the new ReplicaSet disappeared before promotion")
        settling = settle_adopted(state, obs, adopted)
        if settling is not None:
            return Plan(state, (SwitchActive(spec.active_service, adopted.pod_hash),) + settling, RECHECK)
        done = state.replace(
            phase=Phase.SUCCEEDED,
            finished=obs.now,
            stable_revision=state.revision,
            stable_hash=adopted.pod_hash,
            message=f"revision {state.revision} promoted",
        )
        return Plan(
            done,
            (
                SetPaused(True),
                SwitchActive(spec.active_service, adopted.pod_hash),
                *services(spec, adopted.pod_hash, adopted.pod_hash),
                PostEvent(
                    "Normal",
                    R.DELIVERY_SUCCEEDED,
                    f"revision {state.revision} is the stable version; old version scaled down",
                ),
            ),
            None,
        )

    def _not_ready_to_switch(
        self, spec: DeliverySpec, state: DeliveryState, obs: Observation, new: VersionObs | None, n: int
    ) -> Plan | None:
        """None when the new version is fully Ready (the switch may happen); else wait or roll back."""
        if new is None or not new.owned and new.ready < n or new.health.problem(spec.max_restarts):
            if new is not None and new.health.problem(spec.max_restarts):
                return rollback(
                    spec, state, obs, self, f"new version unhealthy: {new.health.problem(spec.max_restarts)}"
                )
            if unready_for(obs, state.step_started, new, n) > spec.progress_deadline:
                ready = new.ready if new is not None else 0
                return rollback(spec, state, obs, self, f"only {ready}/{n} new pods Ready; not switching")
            return Plan(state, (), RECHECK)
        return None
