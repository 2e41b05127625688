"""The rollout record on the cluster: annotation ``deliver.dev/state`` on the Deployment.

Written with the resourceVersion the engine read (optimistic concurrency): a concurrent writer makes
the write fail with Conflict and the engine plans again from fresh data. Operator requests
(promote, abort, ...) travel the same way in ``deliver.dev/request``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from delivery.errors import StateError
from delivery.kube.client import DEPLOYMENTS, Kube
from delivery.spec import REQUEST, STATE
from strategies.codec import RECORD_BUDGET
from strategies.record import DeliveryState
from strategies.requests import VERBS

REQUESTS = VERBS  # the operator requests (their rules: strategies.requests.refusal)


ANNOTATIONS_LIMIT = 256 * 1024  # bytes the API server allows for all annotations of an object together
# bytes of a record read (deliver writes at most RECORD_BUDGET): more is refused unparsed
RECORD_MAX = ANNOTATIONS_LIMIT
REQUEST_MAX = 4096  # bytes of an operator request (deliver writes ~80): more is no request


def read_state(deployment: dict[str, Any]) -> DeliveryState:
    """The record of the Deployment (empty when it has none). Anyone who may edit the Deployment may
    have written it: one over ``RECORD_MAX`` bytes, not JSON, or not a record (see
    ``DeliveryState.from_dict`` and its caps) raises StateError, and the caller takes no action."""
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(STATE)
    if not raw:
        return DeliveryState()
    text = str(raw)
    if len(text) > RECORD_MAX or len(text.encode()) > RECORD_MAX:
        raise StateError(f"{STATE} is not a valid deliver record: more than {RECORD_MAX} bytes")
    try:
        return DeliveryState.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise StateError(f"{STATE} is not a valid deliver record: {exc}") from None


# Written first, in this order: readers without a JSON library read these without going through a
# large template (Argo CD's Lua sandbox has no string library, gitops/argocd/json.lua).
RECORD_HEAD = ("phase", "hold", "message", "strategy", "revision", "stableRevision", "step", "weight", "handledRequest")


def encode_state(state: DeliveryState, budget: int = RECORD_BUDGET) -> str:
    """The record as compact JSON: ``RECORD_HEAD`` first, then every other key sorted (deterministic)."""
    d = state.to_dict(budget)
    head = {k: d[k] for k in RECORD_HEAD if k in d}
    # derived, for those readers: is there a failed template to `deliver retry` (it may be large)?
    head["retryable"] = bool(d.get("failedTemplate") or d.get("failedTemplatePacked"))
    rest = {k: v for k, v in d.items() if k not in head}
    text = json.dumps(head, separators=(",", ":"))
    if rest:
        text = text[:-1] + "," + json.dumps(rest, sort_keys=True, separators=(",", ":"))[1:]
    return text


def record_budget(deployment: dict[str, Any]) -> int:
    """Bytes the record may take beside the Deployment's other annotations (kubectl's
    last-applied-configuration holds a whole manifest), at most ``RECORD_BUDGET``."""
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    others = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items() if k != STATE)
    return max(1024, min(RECORD_BUDGET, ANNOTATIONS_LIMIT - others - len(STATE) - 256))


def write_state(
    kube: Kube, deployment: dict[str, Any], state: DeliveryState, paused: bool | None = None
) -> dict[str, Any]:
    """Persist the record (and optionally spec.paused in the same patch) at the resourceVersion read."""
    meta = deployment["metadata"]
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "annotations": {STATE: encode_state(state, record_budget(deployment))},
        }
    }
    if paused is not None:
        patch["spec"] = {"paused": paused}
    return kube.patch(DEPLOYMENTS, meta["namespace"], meta["name"], patch)


def read_request(deployment: dict[str, Any]) -> tuple[str, str]:
    """(verb, id) of the pending operator request, or ("", "")."""
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REQUEST)
    if not raw or len(str(raw)) > REQUEST_MAX:
        return "", ""
    try:
        data = json.loads(str(raw))
        verb, rid = str(data["verb"]), str(data["id"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return "", ""
    return (verb, rid) if verb in REQUESTS else ("", "")


def send_request(kube: Kube, deployment: dict[str, Any], verb: str) -> str:
    """Record an operator request on the Deployment (optimistic concurrency); returns its id."""
    if verb not in REQUESTS:
        raise StateError(f"unknown request {verb!r}")
    rid = uuid.uuid4().hex[:12]
    meta = deployment["metadata"]
    value = json.dumps({"verb": verb, "id": rid, "at": round(time.time(), 3)})
    kube.patch(
        DEPLOYMENTS,
        meta["namespace"],
        meta["name"],
        {"metadata": {"resourceVersion": meta["resourceVersion"], "annotations": {REQUEST: value}}},
    )
    return rid
