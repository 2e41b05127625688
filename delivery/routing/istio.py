"""Istio ``VirtualService`` (networking.istio.io/v1): weights of two route destinations.

deliver looks at every ``http``, ``tls`` and ``tcp`` route of the user's VirtualService; a route
whose destinations name the stable or the canary Service (``host: app-stable``,
``app-stable.NS``, ``app-stable.NS.svc`` or ``app-stable.NS.svc.<cluster domain>``) is managed and
must carry exactly those two destinations (Istio wants a route's weights to add up to 100, so
deliver does not share a route with a third destination). One JSON patch sets only the two
``weight`` fields (stable ``100 - w``, canary ``w``) of each managed route, each guarded by a
``test`` op on the destination's host; every other route, match, retry, header and field stays.

With ``deliver.dev/match`` (``set_weight(w, match)``) deliver puts, first in ``spec.http`` (Istio
takes the first route that matches), one route of its own per managed http route, named
``deliver-match-<n>``: the route's matches (any request when it has none) each with
``headers: {NAME: {exact: VALUE}}`` added (a cookie: ``cookie: {regex: ...}``), its other fields
(timeouts, retries, rewrites), and one destination, the canary Service, at weight 100. The same
patch adds, replaces or removes them; ``reset`` removes them.

At a ``mirror`` step (``set_weight(0, mirror=p)``) each managed http route gets ``mirror: {host:
<the canary destination's host, port>}`` and ``mirrorPercentage: {value: p}``: Istio sends a copy of
that share of requests to the canary and discards its answers. deliver's mirror is the one whose
host is the canary Service; the same patch sets or removes it.

Session affinity at weighted steps (``pin``): each managed destination gets ``headers: {response:
{add: {set-cookie: deliver-NAME=<its revision>; Path=/}}}`` (a destination with headers of the
user's is refused), and two routes ``deliver-pin-<n>`` after the match routes send a request whose
cookie names a revision to that version's destination alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from delivery.errors import RoutingError
from delivery.kube.client import Resource
from delivery.routing.base import RouterContext
from delivery.routing.kinds import Istio
from delivery.routing.patches import JSON, cookie_regex, guarded_patch, pair, pointer, read_route, share
from strategies.spec import Affinity, RequestMatch

VIRTUALSERVICES = Resource("networking.istio.io", "v1", "virtualservices")
SECTIONS = ("http", "tls", "tcp")
MATCH_ROUTE = "deliver-match-"
PIN_ROUTE = "deliver-pin-"
OURS = (MATCH_ROUTE, PIN_ROUTE)  # the names of deliver's own http routes


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


class IstioRouter(Istio):
    what = "VirtualService"
    resources = (VIRTUALSERVICES,)

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
                if section == "http" and str(route.get("name", "")).startswith(OURS):
                    continue  # deliver's own request-match route
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

    def match_routes(self, vs: JSON, match: RequestMatch | None) -> list[JSON]:
        """deliver's request-match http routes for ``vs`` (none without ``match``)."""
        if match is None:
            return []
        if match.kind == "header":
            header = {match.name: {"exact": match.value}}
        else:
            header = {"cookie": {"regex": cookie_regex(match.name, match.value)}}
        http = (vs.get("spec") or {}).get("http") or []
        out: list[JSON] = []
        for r in self.managed(vs):
            if r.section != "http":
                continue
            route = http[r.index]
            extra = {
                k: copy.deepcopy(v)
                for k, v in route.items()
                if k not in ("name", "match", "route", "mirror", "mirrorPercentage")
            }
            matches = route.get("match") or [{}]
            canary = {k: copy.deepcopy(v) for k, v in route["route"][r.canary].items() if k != "weight"}
            out.append(
                dict(
                    extra,
                    name=f"{MATCH_ROUTE}{len(out)}",
                    match=[dict(copy.deepcopy(m), headers=dict(m.get("headers") or {}, **header)) for m in matches],
                    route=[dict(canary, weight=100)],
                )
            )
        if not out:
            c = self.ctx
            raise RoutingError(f"{self.what} {c.namespace}/{c.route} has no http route to match requests on")
        return out

    def mirror_ops(self, vs: JSON, mirror: int) -> list[JSON]:
        http = (vs.get("spec") or {}).get("http") or []
        ops: list[JSON] = []
        for r in self.managed(vs):
            if r.section != "http":
                continue
            route = http[r.index]
            base = pointer("spec", "http", r.index)
            ours = self._is(str((route.get("mirror") or {}).get("host", "")), self.ctx.canary_service)
            if mirror > 0:
                dest = route["route"][r.canary].get("destination") or {}
                want = {k: copy.deepcopy(dest[k]) for k in ("host", "port") if k in dest}
                percentage = {"value": float(mirror)}
                if route.get("mirror") == want and route.get("mirrorPercentage") == percentage:
                    continue
                if route.get("mirror") and not ours:
                    c = self.ctx
                    raise RoutingError(f"{self.what} {c.namespace}/{c.route} http[{r.index}] mirrors to another host")
                ops.append({"op": "add", "path": base + "/mirror", "value": want})
                ops.append({"op": "add", "path": base + "/mirrorPercentage", "value": percentage})
            elif ours:
                ops.append({"op": "test", "path": base + "/mirror/host", "value": route["mirror"]["host"]})
                ops.append({"op": "remove", "path": base + "/mirror"})
                if "mirrorPercentage" in route:
                    ops.append({"op": "remove", "path": base + "/mirrorPercentage"})
        if mirror > 0 and not ops and not any(r.section == "http" for r in self.managed(vs)):
            c = self.ctx
            raise RoutingError(f"{self.what} {c.namespace}/{c.route} has no http route to mirror")
        return ops

    @staticmethod
    def _cookie_headers(dest: JSON) -> bool:
        """deliver's Set-Cookie response header on a destination (session affinity)."""
        added = ((dest.get("headers") or {}).get("response") or {}).get("add") or {}
        return str(added.get("set-cookie", "")).startswith("deliver-")

    def pin_routes(self, vs: JSON, pin: Affinity | None) -> list[JSON]:
        if pin is None:
            return []
        http = (vs.get("spec") or {}).get("http") or []
        out: list[JSON] = []
        for r in self.managed(vs):
            if r.section != "http":
                continue
            route = http[r.index]
            for index, value in ((r.canary, pin.canary), (r.stable, pin.stable)):
                header = {"cookie": {"regex": cookie_regex(pin.cookie, value)}}
                dest = {k: copy.deepcopy(v) for k, v in route["route"][index].items() if k not in ("weight", "headers")}
                out.append(
                    {
                        "name": f"{PIN_ROUTE}{len(out)}",
                        "match": [
                            dict(copy.deepcopy(m), headers=dict(m.get("headers") or {}, **header))
                            for m in route.get("match") or [{}]
                        ],
                        "route": [dict(dest, weight=100)],
                    }
                )
        return out

    def cookie_ops(self, vs: JSON, pin: Affinity | None) -> list[JSON]:
        http = (vs.get("spec") or {}).get("http") or []
        ops: list[JSON] = []
        for r in self.managed(vs):
            if r.section != "http":
                continue
            for index, value in ((r.stable, pin.stable if pin else ""), (r.canary, pin.canary if pin else "")):
                dest = http[r.index]["route"][index]
                path = pointer("spec", "http", r.index, "route", index, "headers")
                ours = self._cookie_headers(dest)
                if pin is None:
                    if ours:
                        ops.append({"op": "remove", "path": path})
                    continue
                want = {"response": {"add": {"set-cookie": f"{pin.cookie}={value}; Path=/"}}}
                if dest.get("headers") == want:
                    continue
                if dest.get("headers") and not ours:
                    c = self.ctx
                    raise RoutingError(
                        f"{self.what} {c.namespace}/{c.route} http[{r.index}] destination "
                        f"{dest['destination'].get('host')} has headers of its own; no session affinity there"
                    )
                ops.append({"op": "add", "path": path, "value": want})
        return ops

    def match_ops(self, vs: JSON, match: RequestMatch | None, pin: Affinity | None = None) -> list[JSON]:
        http = (vs.get("spec") or {}).get("http") or []
        have = [i for i, route in enumerate(http) if str(route.get("name", "")).startswith(OURS)]
        want = self.match_routes(vs, match) + self.pin_routes(vs, pin)
        if [http[i] for i in have] == want:
            return []
        ops: list[JSON] = []
        for i in reversed(have):
            ops.append({"op": "test", "path": pointer("spec", "http", i, "name"), "value": http[i]["name"]})
            ops.append({"op": "remove", "path": pointer("spec", "http", i)})
        if want and not http:
            ops.append({"op": "add", "path": "/spec/http", "value": []})
        ops += [{"op": "add", "path": pointer("spec", "http", n), "value": route} for n, route in enumerate(want)]
        return ops

    def patch_ops(
        self, vs: JSON, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> list[JSON]:
        stable_w, canary_w = pair(weight)
        ops: list[JSON] = []
        for r in self.managed(vs):
            if (r.stable_weight, r.canary_weight) == (stable_w, canary_w):
                continue
            for index, host, value in ((r.stable, r.stable_host, stable_w), (r.canary, r.canary_host, canary_w)):
                base = pointer("spec", r.section, r.index, "route", index)
                ops.append({"op": "test", "path": base + "/destination/host", "value": host})
                ops.append({"op": "add", "path": base + "/weight", "value": value})
        return ops + self.mirror_ops(vs, mirror) + self.cookie_ops(vs, pin) + self.match_ops(vs, match, pin)

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        c = self.ctx
        guarded_patch(
            c.kube,
            VIRTUALSERVICES,
            c.namespace,
            c.route,
            self.what,
            lambda vs: self.patch_ops(vs, weight, match, mirror, pin),
            self._load,
        )

    def reset(self) -> None:
        self.set_weight(0)

    def verify_extras(self) -> bool:
        http = (self._load().get("spec") or {}).get("http") or []
        return any(
            str(route.get("name", "")).startswith(OURS)
            or any(self._cookie_headers(d) for d in route.get("route") or [])
            or self._is(str((route.get("mirror") or {}).get("host", "")), self.ctx.canary_service)
            for route in http
        )
