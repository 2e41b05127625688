"""When an operator request (promote, abort, retry, pause, resume) may be sent. Pure: reads only the Deployment.

The CLI refuses a request the controller would ignore, so the operator hears why at once instead of
seeing nothing happen. The phase rules (``_refusal``) restate what the planner does with a request
(``strategies/common.py``, ``_operator_request``); they are kept apart here so that they can be
replaced by the planner's own pure rule once ``strategies`` exports one, leaving ``check_request``
(annotations, record, pending request) as it is.
"""

from __future__ import annotations

from typing import Any

from strategies.model import DeliveryState

from .. import spec as specmod
from ..errors import SpecError, StateError
from ..state import read_request, read_state

# verb -> phases in which the planners act on it
ALLOWED: dict[str, tuple[str, ...]] = {
    "promote": ("Progressing", "Paused"),
    "promote-full": ("Progressing", "Paused"),
    "abort": ("Progressing", "Paused", "Promoting"),
    "retry": ("RolledBack", "Aborted"),
    "pause": ("Progressing",),
    "resume": ("Paused",),
}


def shown(verb: str) -> str:
    """A request verb as the operator types it."""
    return "promote --full" if verb == "promote-full" else verb


def check_request(deployment: dict[str, Any], verb: str) -> str | None:
    """Why ``verb`` cannot be sent to this Deployment now (None: it can). Pure; reads nothing."""
    meta = deployment["metadata"]
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if not specmod.has_strategy(deployment):
        return f"deployment {name} is not managed by deliver (no {specmod.STRATEGY} annotation)"
    problems = specmod.problems(deployment)
    if problems:
        listed = "; ".join(f"{e.key}: {e.problem}" for e in problems)
        return f"deployment {name} has invalid annotations, so deliver takes no action: {listed}"
    try:
        state = read_state(deployment)
    except StateError as exc:
        return str(exc)
    refusal = _refusal(deployment, state, verb)
    if refusal:
        return refusal
    verb_pending, rid = read_request(deployment)
    if rid and rid != state.handled_request and verb != "abort":
        return (
            f"a `{verb_pending}` request for {name} has not been taken by the controller yet; "
            "try again when it has (is the controller running?)"
        )
    return None


def _refusal(deployment: dict[str, Any], state: DeliveryState, verb: str) -> str | None:
    """Why the planner would not act on ``verb`` in this state (None: it would). The seam to the planner's rule."""
    meta = deployment["metadata"]
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    phase = state.phase.value
    allowed = ALLOWED[verb]
    if phase not in allowed:
        hint = ""
        if verb in ("promote", "promote-full", "abort", "pause") and state.phase.terminal:
            hint = " (no delivery in progress)"
        return f"{name} is {phase}{hint}; `{shown(verb)}` needs one of: {', '.join(allowed)}"
    if verb == "retry" and not state.failed_template:
        return f"{name} is {phase} but has no failed revision to retry"
    if verb == "resume":
        try:
            steps = specmod.parse(deployment).steps
        except SpecError:
            steps = ()
        if 0 <= state.step < len(steps) and steps[state.step].pause:
            return (
                f"{name} is waiting for a manual promotion (step {state.step + 1}); "
                f"`deliver promote {meta.get('name', '')}` passes it"
            )
    return None
