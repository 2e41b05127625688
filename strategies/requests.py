"""Operator requests (``deliver promote|abort|retry|pause|resume``): when one applies.

One rule set for both sides: the planner ignores a request ``refusal`` refuses, and the CLI calls it
to refuse the request before sending it (with the same words). Pure: reads only the spec and the
record, both of which the CLI gets from the Deployment.
"""

from __future__ import annotations

from .record import DeliveryState, HoldReason, Phase
from .spec import DeliverySpec

# the phases each request applies in
ALLOWED: dict[str, tuple[Phase, ...]] = {
    "promote": (Phase.PROGRESSING, Phase.PAUSED),
    "promote-full": (Phase.PROGRESSING, Phase.PAUSED),
    "abort": (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING),
    "retry": (Phase.ROLLED_BACK, Phase.ABORTED),
    "pause": (Phase.PROGRESSING,),
    "resume": (Phase.PAUSED,),
}
VERBS = tuple(ALLOWED)


def shown(verb: str) -> str:
    """How a request is typed on the command line."""
    return "promote --full" if verb == "promote-full" else verb


def awaiting_promotion(spec: DeliverySpec | None, state: DeliveryState) -> bool:
    """Held at a manual promotion (a canary ``pause`` step, or blue-green without auto-promote)."""
    if state.hold is HoldReason.AWAITING_PROMOTION:
        return True
    steps = spec.steps if spec is not None else ()
    return state.phase is Phase.PAUSED and 0 <= state.step < len(steps) and steps[state.step].pause


def refusal(spec: DeliverySpec | None, state: DeliveryState, verb: str, target: str = "the Deployment") -> str | None:
    """Why request ``verb`` does not apply to a delivery in ``state`` (None: it applies).

    ``target`` names the Deployment in the answer (``namespace/name``); its last part is the app
    name used in the hint for ``deliver promote``. An unknown verb is refused.
    """
    if verb not in ALLOWED:
        return f"unknown request {verb!r}; one of: {', '.join(VERBS)}"
    allowed = ALLOWED[verb]
    if verb == "retry" and state.phase in (Phase.SUCCEEDED, Phase.IDLE):
        stable = state.stable_revision or state.revision
        why = " (a success forgets earlier failures)" if state.phase is Phase.SUCCEEDED else ""
        return (
            f"{target} is {state.phase.value}: revision {stable} is the stable version and no failed revision is "
            f"kept{why}; to deliver a revision again, apply its template"
        )
    if state.phase not in allowed:
        hint = " (no delivery in progress)" if verb != "retry" and verb != "resume" and state.phase.terminal else ""
        names = ", ".join(p.value for p in allowed)
        return f"{target} is {state.phase.value}{hint}; `{shown(verb)}` needs one of: {names}"
    if verb == "retry" and not state.failed_template:
        return f"{target} is {state.phase.value} but has no failed revision to retry"
    if verb == "resume" and awaiting_promotion(spec, state):
        app = target.rpartition("/")[2]
        return f"{target} is waiting for a manual promotion (step {state.step + 1}); `deliver promote {app}` passes it"
    return None


__all__ = ["ALLOWED", "VERBS", "awaiting_promotion", "refusal", "shown"]
