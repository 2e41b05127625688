"""Pod template identity: deliver's revision hash and the ReplicaSets it owns."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

HASH_LABEL = "pod-template-hash"
OWNER_LABEL = "deliver.dev/owner"
REVISION_LABEL = "deliver.dev/revision"
HELD_LABEL = "deliver.dev/held-by"  # on the Deployment's stable ReplicaSet while deliver holds it (exact canary)
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the pod-template-hash label removed (what the Deployment declares); a copy."""
    return copy.deepcopy(_without_hash_view(template))


def _without_hash_view(template: dict[str, Any]) -> dict[str, Any]:
    """``without_hash`` for reading only: copies just the dicts on the way to the label."""
    labels = (template.get("metadata") or {}).get("labels")
    if not labels or HASH_LABEL not in labels:
        return template
    meta = dict(template["metadata"], labels={k: v for k, v in labels.items() if k != HASH_LABEL})
    return dict(template, metadata=meta)


def revision(template: dict[str, Any]) -> str:
    """A short, label-safe hash of a pod template, ignoring pod-template-hash."""
    canonical = json.dumps(_without_hash_view(template), sort_keys=True, separators=(",", ":"))
    number = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    out = []
    for _ in range(10):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


def is_revision(text: str) -> bool:
    """Whether ``text`` could be a value of ``revision``."""
    return len(text) == 10 and all(c in _ALPHABET for c in text)


def with_hash(template: dict[str, Any], pod_hash: str) -> dict[str, Any]:
    tpl = copy.deepcopy(template)
    tpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    return tpl


def fronts(selector: dict[str, Any], pod_labels: dict[str, Any]) -> bool:
    """A Service selector (ignoring the pod-template-hash key) that is non-empty and a subset of
    the pod labels: the Service is in front of these pods."""
    rest = {k: v for k, v in selector.items() if k != HASH_LABEL}
    return bool(rest) and all(pod_labels.get(k) == v for k, v in rest.items())
