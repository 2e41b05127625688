"""SMI ``TrafficSplit`` (split.smi-spec.io/v1alpha2), for Linkerd and Open Service Mesh users.

The TrafficSplit is the user's: ``spec.service`` is the root Service clients call and
``spec.backends`` lists ``{service, weight}``. deliver needs one backend for the stable and one
for the canary Service and, in one JSON patch guarded by ``test`` ops on the backends' names, sets
only their two weights (stable ``100 - w``, canary ``w``). Other backends keep their weights
(SMI weights are relative, so they keep their share against deliver's 100); every other field stays.
"""

from __future__ import annotations

from delivery.errors import RoutingError
from delivery.kube.client import Resource
from delivery.routing.base import RouterContext
from delivery.routing.kinds import Capability, Smi, able, either
from delivery.routing.patches import JSON, guarded_patch, pair, pointer, read_route, share
from strategies.spec import Affinity, RequestMatch

TRAFFICSPLITS = Resource("split.smi-spec.io", "v1alpha2", "trafficsplits")


class SmiRouter(Smi):
    what = "TrafficSplit"
    resources = (TRAFFICSPLITS,)

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    def _load(self) -> JSON:
        c = self.ctx
        return read_route(c.kube, TRAFFICSPLITS, c.namespace, c.route, self.what)

    def _indexes(self, ts: JSON) -> tuple[int, int, list[JSON]]:
        c = self.ctx
        backends = list((ts.get("spec") or {}).get("backends") or [])
        names = [str(b.get("service", "")) for b in backends]
        stable = [i for i, n in enumerate(names) if n == c.stable_service]
        canary = [i for i, n in enumerate(names) if n == c.canary_service]
        if len(stable) != 1 or len(canary) != 1:
            raise RoutingError(
                f"{self.what} {c.namespace}/{c.route} needs exactly one backend for Service "
                f"{c.stable_service} and one for {c.canary_service} (has: {', '.join(names) or 'none'})"
            )
        return stable[0], canary[0], backends

    def validate(self) -> None:
        self._indexes(self._load())

    def verify_weight(self) -> int | None:
        s, k, backends = self._indexes(self._load())
        return share(int(backends[s].get("weight") or 0), int(backends[k].get("weight") or 0))

    def patch_ops(self, ts: JSON, weight: int) -> list[JSON]:
        s, k, backends = self._indexes(ts)
        stable_w, canary_w = pair(weight)
        if (int(backends[s].get("weight") or 0), int(backends[k].get("weight") or 0)) == (stable_w, canary_w):
            return []
        ops: list[JSON] = []
        for index, service, value in ((s, self.ctx.stable_service, stable_w), (k, self.ctx.canary_service, canary_w)):
            base = pointer("spec", "backends", index)
            ops.append({"op": "test", "path": base + "/service", "value": service})
            ops.append({"op": "add", "path": base + "/weight", "value": value})
        return ops

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        c = self.ctx
        if pin is not None:
            raise RoutingError(
                f"deliver has no session affinity through {self.what} (needs {either(able(Capability.PIN))})"
            )
        if mirror:
            raise RoutingError(
                f"an SMI TrafficSplit cannot mirror requests (a `mirror` step needs {either(able(Capability.MIRROR))})"
            )
        if match is not None:
            raise RoutingError(
                f"an SMI TrafficSplit has no request matches (deliver.dev/match needs {either(able(Capability.MATCH))})"
            )
        guarded_patch(
            c.kube, TRAFFICSPLITS, c.namespace, c.route, self.what, lambda ts: self.patch_ops(ts, weight), self._load
        )

    def reset(self) -> None:
        self.set_weight(0)

    def verify_extras(self) -> bool:
        return False
