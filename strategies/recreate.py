"""Recreate: never two versions at once. The Deployment (spec.strategy.type Recreate, checked at
validation) stops every old pod before it starts a new one; deliver unpauses it, verifies the new
version within the progress deadline (health, then analysis), and on failure writes the stable
template back so the Deployment controller stops the new pods and restores the old version.
"""

from __future__ import annotations

from .actions import Action, Plan, PostEvent, SetPaused
from .evidence import Outcome
from .observation import Observation
from .reasons import EventReason as R
from .record import DeliveryState, Phase
from .spec import DeliverySpec
from .steps import NativePlanner, check_step, rollback, step_passed


class RecreatePlanner(NativePlanner):
    def exclusive(self) -> bool:
        return True  # never two versions at once

    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
        n = obs.replicas
        new = obs.version(state.revision)
        if state.step > 0:
            return self._finish(state, obs, new.pod_hash if new else state.stable_hash)
        if state.phase == Phase.PAUSED:
            if new is not None and new.health.problem(spec.max_restarts):
                return rollback(
                    spec, state, obs, self, f"new version unhealthy: {new.health.problem(spec.max_restarts)}"
                )
            return Plan(state, (), None)
        unpause: tuple[Action, ...] = (SetPaused(False),) if obs.paused else ()
        state = state.replace(weight=100 if new is not None and new.ready else 0)
        # never two versions at once: the new one is judged against the old one's last window
        ours = new if new is not None and new.owned else None
        checked = check_step(spec, state, obs, self, ours, n, 0, baseline_end=state.started)
        if isinstance(checked, Plan):
            keep = checked.state.phase in (Phase.PROGRESSING, Phase.PAUSED)
            return Plan(checked.state, (unpause if keep else ()) + checked.actions, checked.requeue_after)
        if checked is Outcome.PASS:
            done = self._finish(state, obs, new.pod_hash if new else state.stable_hash)
            return Plan(done.state, (step_passed(state, 0, "the new version"),) + done.actions, done.requeue_after)
        return Plan(state, unpause, 2.0)

    def _finish(self, state: DeliveryState, obs: Observation, pod_hash: str) -> Plan:
        done = state.replace(
            phase=Phase.SUCCEEDED,
            finished=obs.now,
            weight=100,
            step=1,
            stable_revision=state.revision,
            stable_hash=pod_hash,
            message=f"revision {state.revision} recreated and verified",
        )
        return Plan(
            done,
            (
                SetPaused(True),
                PostEvent("Normal", R.DELIVERY_SUCCEEDED, f"revision {state.revision} is the stable version"),
            ),
            None,
        )
