"""Istio ``VirtualService`` (networking.istio.io/v1): weights of two route destinations.

deliver looks at every ``http``, ``tls`` and ``tcp`` route of the user's VirtualService; a route
whose destinations name the stable or the canary Service (``host: app-stable``,
``app-stable.NS``, ``app-stable.NS.svc`` or ``app-stable.NS.svc.<cluster domain>``) is managed and
must carry exactly those two destinations (Istio wants a route's weights to add up to 100, so
deliver does not share a route with a third destination). One JSON patch sets only the two
``weight`` fields (stable ``100 - w``, canary ``w``) of each managed route, each guarded by a
``test`` op on the destination's host; every other route, match, retry, header and field stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RoutingError
from ..kube import VIRTUALSERVICES
from .base import RouterContext
from .gateway import JSON, guarded_patch, pair, pointer, read_route, share

SECTIONS = ("http", "tls", "tcp")


@dataclass(frozen=True)
class ManagedRoute:
    section: str  # http | tls | tcp
    index: int  # index of the route in spec.<section>
    stable: int  # index of the stable destination in its ``route`` list
    canary: int
    stable_host: str
    canary_host: str
    stable_weight: int
    canary_weight: int


class IstioRouter:
    kind = "istio"
    what = "VirtualService"

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    def _load(self) -> JSON:
        c = self.ctx
        return read_route(c.kube, VIRTUALSERVICES, c.namespace, c.route, self.what)

    def _is(self, host: str, service: str) -> bool:
        if host == service:
            return True
        ns = self.ctx.namespace
        return host in (f"{service}.{ns}", f"{service}.{ns}.svc") or host.startswith(f"{service}.{ns}.svc.")

    def managed(self, vs: JSON) -> list[ManagedRoute]:
        c = self.ctx
        spec = vs.get("spec") or {}
        found: list[ManagedRoute] = []
        for section in SECTIONS:
            for i, route in enumerate(spec.get(section) or []):
                dests = route.get("route") or []
                hosts = [str((d.get("destination") or {}).get("host", "")) for d in dests]
                stable = [j for j, h in enumerate(hosts) if self._is(h, c.stable_service)]
                canary = [j for j, h in enumerate(hosts) if self._is(h, c.canary_service)]
                if not stable and not canary:
                    continue
                where = f"{self.what} {c.namespace}/{c.route} {section}[{i}]"
                if len(stable) != 1 or len(canary) != 1 or len(dests) != 2:
                    raise RoutingError(
                        f"{where} must route to exactly two destinations, Service {c.stable_service} "
                        f"and {c.canary_service} (has: {', '.join(hosts) or 'none'})"
                    )
                s, k = dests[stable[0]], dests[canary[0]]
                # Istio: an omitted weight means 100 when the route has a single destination and is
                # invalid otherwise; count it as 0 so verify never over-reports the canary's share.
                found.append(
                    ManagedRoute(
                        section,
                        i,
                        stable[0],
                        canary[0],
                        hosts[stable[0]],
                        hosts[canary[0]],
                        int(s.get("weight", 0)),
                        int(k.get("weight", 0)),
                    )
                )
        if not found:
            raise RoutingError(
                f"{self.what} {c.namespace}/{c.route} has no route with destinations "
                f"{c.stable_service} and {c.canary_service}"
            )
        return found

    def validate(self) -> None:
        self.managed(self._load())

    def verify_weight(self) -> int | None:
        return min(share(r.stable_weight, r.canary_weight) for r in self.managed(self._load()))

    def patch_ops(self, vs: JSON, weight: int) -> list[JSON]:
        stable_w, canary_w = pair(weight)
        ops: list[JSON] = []
        for r in self.managed(vs):
            if (r.stable_weight, r.canary_weight) == (stable_w, canary_w):
                continue
            for index, host, value in ((r.stable, r.stable_host, stable_w), (r.canary, r.canary_host, canary_w)):
                base = pointer("spec", r.section, r.index, "route", index)
                ops.append({"op": "test", "path": base + "/destination/host", "value": host})
                ops.append({"op": "add", "path": base + "/weight", "value": value})
        return ops

    def set_weight(self, weight: int) -> None:
        c = self.ctx
        guarded_patch(
            c.kube, VIRTUALSERVICES, c.namespace, c.route, self.what, lambda vs: self.patch_ops(vs, weight), self._load
        )

    def reset(self) -> None:
        self.set_weight(0)
