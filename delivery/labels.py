"""Label selectors in the API's string form (what ``kube.selector_string`` builds) and as
LabelSelector objects (matchLabels, matchExpressions), matched locally.

The informer cache (delivery/kube/cache.py) answers ``items(res, ns, selector)`` from memory, so it must
select exactly what the API server would: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x,y)``, ``a`` (exists) and ``!a`` (does not exist), joined by commas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) in self.values
        if self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin": a missing key matches, as on the API server
        return labels.get(self.key) not in self.values


def _split(selector: str) -> list[str]:
    """Split on the commas that separate requirements (not those inside ``in (...)``)."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse(selector: str | None) -> tuple[Requirement, ...]:
    """The requirements of a selector string; ValueError for one the API server would refuse."""
    reqs = []
    for part in _split(selector or ""):
        words = part.split()
        if len(words) >= 2 and words[1] in ("in", "notin"):
            inner = part.split(None, 2)[2].strip()
            if not (inner.startswith("(") and inner.endswith(")")):
                raise ValueError(f"invalid label selector requirement: {part!r}")
            values = frozenset(v.strip() for v in inner[1:-1].split(",") if v.strip())
            reqs.append(Requirement(words[0], words[1], values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            reqs.append(Requirement(key.strip(), "!=", frozenset([value.strip()])))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            reqs.append(Requirement(key.strip(), "=", frozenset([value.strip()])))
        elif part.startswith("!"):
            reqs.append(Requirement(part[1:].strip(), "!exists"))
        elif " " not in part:
            reqs.append(Requirement(part, "exists"))
        else:
            raise ValueError(f"invalid label selector requirement: {part!r}")
    return tuple(reqs)


def matches(requirements: tuple[Requirement, ...], labels: dict[str, str] | None) -> bool:
    """An empty selector selects everything."""
    found = labels or {}
    return all(r.matches(found) for r in requirements)


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def from_selector(selector: dict[str, Any]) -> tuple[Requirement, ...]:
    """The requirements of a LabelSelector object (an operator it does not know requires nothing)."""
    reqs = [Requirement(k, "=", frozenset([v])) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = _OPERATORS.get(expr.get("operator", ""))
        if op is not None:
            reqs.append(Requirement(str(expr.get("key", "")), op, frozenset(expr.get("values") or [])))
    return tuple(reqs)


def selects(selector: dict[str, Any], labels: dict[str, str] | None) -> bool:
    """Does a LabelSelector object select these labels? (empty: everything)"""
    return matches(from_selector(selector), labels)
