"""Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1): weights on two backendRefs.

The route is the user's. deliver finds every rule whose ``backendRefs`` name the stable or the
canary Service and, in one JSON patch, sets only the ``weight`` of those two backendRefs (stable
``100 - w``, canary ``w``). Every other rule, match, filter, backend and field is left as it is;
each weight write is guarded by a ``test`` op on the backendRef's name at that index, so a route
edited between read and write fails the whole patch instead of changing the wrong backend (deliver
then re-reads and tries again).

This module also holds the few helpers the CRD-based routers share (reading a route and telling a
missing route from a missing CRD, the weight math, guarded JSON patches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict, KubeError, NotFound, RoutingError
from ..kube import HTTPROUTES, JSON_PATCH, Kube, Resource
from .base import RouterContext

JSON = dict[str, Any]
PATCH_ATTEMPTS = 3


# ---------------------------------------------------------------- shared helpers


def clamp(weight: int) -> int:
    """A canary weight as a whole percentage in 0..100."""
    return max(0, min(100, int(weight)))


def pair(weight: int) -> tuple[int, int]:
    """(stable, canary) weights for a canary share of ``weight`` percent; they always sum to 100."""
    w = clamp(weight)
    return 100 - w, w


def share(stable: int, canary: int) -> int:
    """The canary's share in percent of the two weights (0 when both are 0: nothing goes to it)."""
    total = stable + canary
    if total <= 0:
        return 0
    return round(100 * canary / total)


def api_serves(kube: Kube, res: Resource) -> bool:
    """Does the API server serve ``res`` (is its CRD installed)? Asks the group/version discovery path."""
    if not res.group:
        return True
    try:
        found = kube.request("GET", f"/apis/{res.group}/{res.version}")
    except NotFound:
        return False
    return any(r.get("name") == res.plural for r in found.get("resources") or [])


def read_route(kube: Kube, res: Resource, namespace: str, name: str, what: str) -> JSON:
    """GET the user's route; RoutingError that says whether the route or its CRD is missing."""
    try:
        return kube.get(res, namespace, name)
    except NotFound:
        try:
            served = api_serves(kube, res)
        except KubeError as exc:
            raise RoutingError(f"{what} {namespace}/{name} not found ({exc})") from None
        if not served:
            raise RoutingError(
                f"the {what} API {res.group}/{res.version} is not installed on this cluster "
                f"(no CRD serves {res.plural}.{res.group})"
            ) from None
        raise RoutingError(f"{what} {namespace}/{name} not found") from None
    except KubeError as exc:
        raise RoutingError(f"cannot read {what} {namespace}/{name}: {exc}") from None


def escape(token: str | int) -> str:
    """One JSON-pointer reference token (RFC 6901)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    return "".join("/" + escape(t) for t in tokens)


def guarded_patch(
    kube: Kube,
    res: Resource,
    namespace: str,
    name: str,
    what: str,
    build: Callable[[JSON], list[JSON]],
    load: Callable[[], JSON],
) -> JSON:
    """Apply the JSON patch ``build(route)`` (with its ``test`` guards), re-reading on a lost race.

    A failed ``test`` op (the route changed under us) is answered 422/409/500 by API servers of
    different versions; each is retried from a fresh read, at most PATCH_ATTEMPTS times.
    """
    route = load()
    last: Exception | None = None
    for attempt in range(PATCH_ATTEMPTS):
        ops = build(route)
        if not ops:
            return route
        try:
            return kube.patch(res, namespace, name, ops, content_type=JSON_PATCH)
        except NotFound:
            raise RoutingError(f"{what} {namespace}/{name} disappeared") from None
        except (Conflict, KubeError) as exc:
            if exc.status not in (409, 422, 500):
                raise RoutingError(f"cannot patch {what} {namespace}/{name}: {exc}") from None
            last = exc
            if attempt + 1 < PATCH_ATTEMPTS:
                route = load()
    raise RoutingError(f"{what} {namespace}/{name} kept changing while its weights were patched: {last}")


# ---------------------------------------------------------------- HTTPRoute


@dataclass(frozen=True)
class ManagedRule:
    """One rule of the route that carries deliver's two backends: indexes into the lists."""

    rule: int
    stable: int  # index of the stable backendRef in the rule's backendRefs
    canary: int
    stable_weight: int
    canary_weight: int


class GatewayRouter:
    kind = "gateway-api"
    what = "HTTPRoute"

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    # ---- reading ----

    def _load(self) -> JSON:
        c = self.ctx
        return read_route(c.kube, HTTPROUTES, c.namespace, c.route, self.what)

    def _is(self, ref: JSON, service: str) -> bool:
        return (
            ref.get("name") == service
            and (ref.get("kind") or "Service") == "Service"
            and (ref.get("group") or "") == ""
            and (ref.get("namespace") or self.ctx.namespace) == self.ctx.namespace
        )

    def managed(self, route: JSON) -> list[ManagedRule]:
        """The rules deliver manages; RoutingError when a rule or the route lacks its backends."""
        c = self.ctx
        found: list[ManagedRule] = []
        for i, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            refs = rule.get("backendRefs") or []
            stable = [j for j, r in enumerate(refs) if self._is(r, c.stable_service)]
            canary = [j for j, r in enumerate(refs) if self._is(r, c.canary_service)]
            if not stable and not canary:
                continue
            if len(stable) != 1 or len(canary) != 1:
                have = ", ".join(str(r.get("name")) for r in refs) or "none"
                raise RoutingError(
                    f"{self.what} {c.namespace}/{c.route} rule {i} must have exactly one backendRef to "
                    f"Service {c.stable_service} and one to {c.canary_service} (has: {have})"
                )
            s, k = refs[stable[0]], refs[canary[0]]
            found.append(ManagedRule(i, stable[0], canary[0], int(s.get("weight", 1)), int(k.get("weight", 1))))
        if not found:
            raise RoutingError(
                f"{self.what} {c.namespace}/{c.route} has no rule with backendRefs to Services "
                f"{c.stable_service} and {c.canary_service}"
            )
        return found

    # ---- Router ----

    def validate(self) -> None:
        self.managed(self._load())

    def verify_weight(self) -> int | None:
        rules = self.managed(self._load())
        # Rules only disagree after a hand edit; the lowest share never claims more than is true.
        return min(share(r.stable_weight, r.canary_weight) for r in rules)

    def patch_ops(self, route: JSON, weight: int) -> list[JSON]:
        """The JSON patch that gives the canary ``weight`` percent on every managed rule (no-op: [])."""
        stable_w, canary_w = pair(weight)
        ops: list[JSON] = []
        for r in self.managed(route):
            if (r.stable_weight, r.canary_weight) == (stable_w, canary_w):
                continue
            for index, service, value in (
                (r.stable, self.ctx.stable_service, stable_w),
                (r.canary, self.ctx.canary_service, canary_w),
            ):
                base = pointer("spec", "rules", r.rule, "backendRefs", index)
                ops.append({"op": "test", "path": base + "/name", "value": service})
                ops.append({"op": "add", "path": base + "/weight", "value": value})
        return ops

    def set_weight(self, weight: int) -> None:
        c = self.ctx
        guarded_patch(
            c.kube, HTTPROUTES, c.namespace, c.route, self.what, lambda route: self.patch_ops(route, weight), self._load
        )

    def reset(self) -> None:
        self.set_weight(0)
