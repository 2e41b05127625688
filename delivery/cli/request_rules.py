"""When an operator request (promote, abort, retry, pause, resume) may be sent. Pure: reads only the Deployment.

The CLI refuses a request the controller would ignore, so the operator hears why at once instead of
seeing nothing happen. The phase rules are the planner's own (``strategies.requests.refusal``, the
one rule set); ``check_request`` adds what only the CLI sees (annotations, record, pending request).
"""

from __future__ import annotations

from typing import Any

from strategies import requests as rules
from strategies.model import DeliverySpec, DeliveryState

from .. import spec as specmod
from ..errors import SpecError, StateError
from ..state import read_request, read_state


def shown(verb: str) -> str:
    """A request verb as the operator types it."""
    return rules.shown(verb)


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
    """Why the planner would not act on ``verb`` in this state (None: it would): the planner's own rule."""
    meta = deployment["metadata"]
    try:
        spec: DeliverySpec | None = specmod.parse(deployment)
    except SpecError:
        spec = None
    return rules.refusal(spec, state, verb, f"{meta.get('namespace', '')}/{meta.get('name', '')}")
