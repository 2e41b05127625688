"""Rolling: the Deployment's own rolling update, paused at declared points (percent of pods
updated), checked, resumed. On failure the stable pod template is written back and the Deployment
controller rolls back natively (no removed rollback API).

Steps: 0..len(pause_at)-1 = hold at each point, len(pause_at) = finish the rollout and check it.
"""

from __future__ import annotations

from .actions import Action, Plan, PostEvent, SetPaused
from .evidence import Outcome
from .observation import Observation
from .reasons import EventReason as R
from .record import DeliveryState, Phase
from .spec import DeliverySpec
from .steps import RECHECK, NativePlanner, ceil_share, check_step, rollback, step_passed


class RollingPlanner(NativePlanner):
    def advance(self, spec: DeliverySpec, state: DeliveryState, obs: Observation) -> Plan:
        n = obs.replicas
        new = obs.version(state.revision)
        points = [p for p in spec.pause_at if 0 < p < 100]
        final = state.step >= len(points)
        want = n if final else ceil_share(n, points[state.step])
        updated = new.replicas if new is not None and new.owned else 0
        state = state.replace(weight=int(100 * min(updated, n) / n) if n else 0)
        if new is not None and new.health.problem(spec.max_restarts):
            return rollback(spec, state, obs, self, f"new version unhealthy: {new.health.problem(spec.max_restarts)}")
        if state.phase == Phase.PAUSED:
            return Plan(state, () if obs.paused else (SetPaused(True),), None)
        if not final and updated < want:
            if obs.now - state.step_started > spec.progress_deadline or obs.deadline_exceeded:
                return rollback(
                    spec, state, obs, self, f"only {updated}/{want} pods updated within the progress deadline"
                )
            return Plan(state, (SetPaused(False),) if obs.paused else (), 0.5)
        hold: tuple[Action, ...] = ()
        if not final and not obs.paused:
            hold = (SetPaused(True),)
        if final and obs.paused:
            hold = (SetPaused(False),)
        if final and not obs.rollout_complete:
            checked = check_step(spec, state, obs, self, new, n, state.step)
            if isinstance(checked, Plan) and (
                checked.state.phase is not Phase.PROGRESSING or checked.state.hold is not state.hold
            ):
                # A failure is never dropped: rolled back, or (auto-rollback off) held as failed with
                # the Deployment paused so no more new pods roll out while an operator decides.
                stop: tuple[Action, ...] = (SetPaused(True),) if checked.state.phase is Phase.PAUSED else ()
                return Plan(checked.state, stop + checked.actions, checked.requeue_after)
            return Plan(state, hold, RECHECK)
        checked = check_step(spec, state, obs, self, new, want, state.step)
        if isinstance(checked, Plan):
            keep = checked.state.phase in (Phase.PROGRESSING, Phase.PAUSED)
            return Plan(checked.state, (hold if keep else ()) + checked.actions, checked.requeue_after)
        if checked is not Outcome.PASS:
            return Plan(state, hold, RECHECK)
        if final:
            done = state.replace(
                phase=Phase.SUCCEEDED,
                finished=obs.now,
                weight=100,
                stable_revision=state.revision,
                stable_hash=new.pod_hash if new else state.stable_hash,
                message=f"revision {state.revision} rolled out",
            )
            return Plan(
                done,
                (
                    SetPaused(True),
                    step_passed(state, state.step, "the finished rollout"),
                    PostEvent("Normal", R.DELIVERY_SUCCEEDED, f"revision {state.revision} is the stable version"),
                ),
                None,
            )
        moved = state.replace(step=state.step + 1, step_started=obs.now, extensions=0)  # the span goes on
        nxt = self.advance(spec, moved, obs)
        event = step_passed(state, state.step, f"pause point {points[state.step]}%", "resuming")
        return Plan(nxt.state, (event,) + nxt.actions, nxt.requeue_after)
