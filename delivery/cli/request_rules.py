"""When an operator request (promote, abort, retry, pause, resume) may be sent. Pure: reads only the Deployment.

The CLI refuses a request the controller would ignore, so the operator hears why at once instead of
seeing nothing happen. The phase rules are the planner's own (``strategies.requests.refusal``, one
rule set, the same words); this module adds what only the CLI checks: annotations, the record, a
request still pending.
"""

from __future__ import annotations

from typing import Any

from delivery import spec as specmod
from delivery.engine.state import read_request, read_state
from delivery.errors import SpecError, StateError
from strategies.requests import refusal


def check_request(deployment: dict[str, Any], verb: str) -> str | None:
    """Why ``verb`` cannot be sent to this Deployment now (None: it can). Pure; reads nothing."""
    meta = deployment["metadata"]
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if not specmod.has_strategy(deployment):
        return specmod.not_managed(name)
    problems = specmod.problems(deployment)
    if problems:
        listed = "; ".join(f"{e.key}: {e.problem}" for e in problems)
        return f"deployment {name} has invalid annotations, so deliver takes no action: {listed}"
    try:
        state = read_state(deployment)
    except StateError as exc:
        return str(exc)
    try:
        spec = specmod.parse(deployment)
    except SpecError:
        spec = None  # an analysis ConfigMap not read here; the phase rules do not need the spec
    refused = refusal(spec, state, verb, name)
    if refused:
        return refused
    verb_pending, rid = read_request(deployment)
    if rid and rid != state.handled_request and verb != "abort":
        return (
            f"a `{verb_pending}` request for {name} has not been taken by the controller yet; "
            "try again when it has (is the controller running?)"
        )
    return None
