"""What the routers share to read a route and patch it: the weight math, reading the user's route
(telling a missing route from a missing CRD), JSON pointers and the guarded JSON patch, and the
cookie regular expression of request matches and session affinity.

Every router module imports these from here; no router imports another router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from delivery.errors import Conflict, KubeError, NotFound, RoutingError
from delivery.kube.client import JSON_PATCH, Kube, Resource

JSON = dict[str, Any]
PATCH_ATTEMPTS = 3


# ---------------------------------------------------------------- weights


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


# ---------------------------------------------------------------- reading the route


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


# ---------------------------------------------------------------- JSON patches


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


# ---------------------------------------------------------------- cookies


def literal(text: str) -> str:
    """``text`` inside a regular expression: names and values here are letters, digits and ``. _ ~ -``
    (validated), of which only ``.`` means something to RE2 outside a class."""
    return text.replace(".", r"\.")


def cookie_regex(name: str, value: str) -> str:
    """A regular expression on the ``Cookie`` header that matches when it carries ``name=value``."""
    return rf"^(.*;\s*)?{literal(name)}={literal(value)}(;.*)?$"
