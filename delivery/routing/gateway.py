"""Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1): weights on two backendRefs.

The route is the user's. deliver finds every rule whose ``backendRefs`` name the stable or the
canary Service and, in one JSON patch, sets only the ``weight`` of those two backendRefs (stable
``100 - w``, canary ``w``). Every other rule, match, filter, backend and field is left as it is;
each weight write is guarded by a ``test`` op on the backendRef's name at that index, so a route
edited between read and write fails the whole patch instead of changing the wrong backend (deliver
then re-reads and tries again).

With ``deliver.dev/match`` (``set_weight(w, match)``) deliver also adds, for each rule it manages,
one rule of its own: the same matches (``/`` when the rule has none) each with the header match
added (a cookie is matched as a ``RegularExpression`` on the ``Cookie`` header), the rule's other
fields (filters, timeouts), and one backendRef, the canary Service. Gateway API gives a rule with
more header matches precedence over one with fewer for the same path, so matched requests reach
the canary whatever the weights. deliver's rules are told apart as the rules whose only backendRef
is the canary Service; the same patch adds, replaces or removes them (``reset`` removes them).

At a ``mirror`` step (``set_weight(0, mirror=p)``) each managed rule also gets a ``RequestMirror``
filter to the canary Service (``percent: p`` below 100, GEP-3171); the clients get the stable
Service's answers, the canary's are discarded. deliver's filter is the RequestMirror filter whose
backendRef is the canary Service; the same patch adds, changes or removes it.

Session affinity at weighted steps (``set_weight(w, pin=Affinity(...))``): each weighted backendRef
of a managed rule gets a ``ResponseHeaderModifier`` filter adding ``Set-Cookie: deliver-NAME=<its
revision>; Path=/``, and for each managed rule deliver adds two pin rules, the rule's matches each
with a ``RegularExpression`` match on the ``Cookie`` header for one revision, to that version's
Service alone. A client's first answer carries the cookie of the version that served it, and every
later request goes to that version whatever the weights. deliver's pin rules are the rules whose
only backendRef is the canary Service, or the stable Service with a ``deliver-`` cookie match; its
Set-Cookie filters are the ResponseHeaderModifier filters adding a ``deliver-`` cookie.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from delivery.errors import RoutingError
from delivery.kube.client import Resource
from delivery.routing.base import RouterContext
from delivery.routing.kinds import GatewayApi
from delivery.routing.patches import JSON, cookie_regex, guarded_patch, pair, pointer, read_route, share
from strategies.spec import Affinity, RequestMatch

HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")
PIN_COOKIE = "deliver-"  # deliver's affinity cookie is named deliver-<Deployment>


def _cookie_match(name: str, value: str) -> JSON:
    """A Gateway API header match for the cookie ``name=value`` (a regular expression on ``Cookie``)."""
    return {"type": "RegularExpression", "name": "Cookie", "value": cookie_regex(name, value)}


def _undefaulted(rule: JSON) -> JSON:
    """A rule without the values the API server fills in by default (the HTTPRoute CRD's schema:
    backendRef ``group: ""``, ``kind: Service``, ``weight: 1``; header and query matches ``type:
    Exact``), so a rule deliver wrote compares equal to itself as read back."""
    out = copy.deepcopy(rule)
    for ref in out.get("backendRefs") or []:
        for key, default in (("group", ""), ("kind", "Service"), ("weight", 1)):
            if ref.get(key) == default:
                del ref[key]
    for m in out.get("matches") or []:
        for item in (m.get("headers") or []) + (m.get("queryParams") or []):
            if item.get("type") == "Exact":
                del item["type"]
    return out


@dataclass(frozen=True)
class ManagedRule:
    """One rule of the route that carries deliver's two backends: indexes into the lists."""

    rule: int
    stable: int  # index of the stable backendRef in the rule's backendRefs
    canary: int
    stable_weight: int
    canary_weight: int


class GatewayRouter(GatewayApi):
    what = "HTTPRoute"
    resources = (HTTPROUTES,)

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    # ---- reading ----

    def _load(self) -> JSON:
        c = self.ctx
        return read_route(c.kube, HTTPROUTES, c.namespace, c.route, self.what)

    def is_match_rule(self, rule: JSON) -> bool:
        """One of deliver's own rules (request match or pin): its only backendRef is the canary Service,
        or the stable Service with a match on a ``deliver-`` cookie."""
        refs = rule.get("backendRefs") or []
        if len(refs) != 1:
            return False
        if self._is(refs[0], self.ctx.canary_service):
            return True
        pinned = [
            h
            for m in rule.get("matches") or []
            for h in m.get("headers") or []
            if str(h.get("name", "")).lower() == "cookie" and PIN_COOKIE in str(h.get("value", ""))
        ]
        return self._is(refs[0], self.ctx.stable_service) and bool(pinned)

    def pin_rules(self, route: JSON, pin: Affinity | None) -> list[JSON]:
        """Two rules per managed rule: a client whose cookie names a version goes to that version."""
        if pin is None:
            return []
        rules = (route.get("spec") or {}).get("rules") or []
        out: list[JSON] = []
        for r in self.managed(route):
            rule = rules[r.rule]
            matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
            for index, value in ((r.canary, pin.canary), (r.stable, pin.stable)):
                header = _cookie_match(pin.cookie, value)
                ref = {k: v for k, v in rule["backendRefs"][index].items() if k not in ("weight", "filters")}
                out.append(
                    {
                        "matches": [
                            dict(copy.deepcopy(m), headers=[*(m.get("headers") or []), header]) for m in matches
                        ],
                        "backendRefs": [ref],
                    }
                )
        return out

    def is_cookie_filter(self, f: JSON) -> bool:
        """deliver's Set-Cookie filter on a weighted backendRef (session affinity)."""
        added = (f.get("responseHeaderModifier") or {}).get("add") or []
        return f.get("type") == "ResponseHeaderModifier" and any(
            str(h.get("name", "")).lower() == "set-cookie" and str(h.get("value", "")).startswith(PIN_COOKIE)
            for h in added
        )

    def cookie_ops(self, route: JSON, pin: Affinity | None) -> list[JSON]:
        """JSON patch ops giving each weighted backendRef its Set-Cookie filter (none without ``pin``)."""
        rules = (route.get("spec") or {}).get("rules") or []
        ops: list[JSON] = []
        for r in self.managed(route):
            for index, value in ((r.stable, pin.stable if pin else ""), (r.canary, pin.canary if pin else "")):
                ref = rules[r.rule]["backendRefs"][index]
                filters = ref.get("filters") or []
                have = [j for j, f in enumerate(filters) if self.is_cookie_filter(f)]
                want = None
                if pin is not None:
                    cookie = {"name": "Set-Cookie", "value": f"{pin.cookie}={value}; Path=/"}
                    want = {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [cookie]}}
                base = pointer("spec", "rules", r.rule, "backendRefs", index, "filters")
                ops += _filter_ops(base, filters, have, want, "ResponseHeaderModifier", "filters" in ref)
        return ops

    def match_rules(self, route: JSON, match: RequestMatch | None) -> list[JSON]:
        """deliver's request-match rules for ``route`` (none without ``match``)."""
        if match is None:
            return []
        if match.kind == "header":
            header = {"type": "Exact", "name": match.name, "value": match.value}
        else:
            header = _cookie_match(match.name, match.value)
        rules = (route.get("spec") or {}).get("rules") or []
        out: list[JSON] = []
        for r in self.managed(route):
            rule = rules[r.rule]
            matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
            extra = {k: copy.deepcopy(v) for k, v in rule.items() if k not in ("matches", "backendRefs", "name")}
            if "filters" in extra:
                extra["filters"] = [f for f in extra["filters"] if not self.is_mirror_filter(f)]
                if not extra["filters"]:
                    del extra["filters"]
            canary = {k: v for k, v in rule["backendRefs"][r.canary].items() if k != "weight"}
            out.append(
                dict(
                    extra,
                    matches=[dict(copy.deepcopy(m), headers=[*(m.get("headers") or []), header]) for m in matches],
                    backendRefs=[canary],
                )
            )
        return out

    def is_mirror_filter(self, f: JSON) -> bool:
        """deliver's mirror: a RequestMirror filter to the canary Service."""
        ref = (f.get("requestMirror") or {}).get("backendRef") or {}
        return f.get("type") == "RequestMirror" and self._is(ref, self.ctx.canary_service)

    def mirror_ops(self, route: JSON, mirror: int) -> list[JSON]:
        """JSON patch ops giving each managed rule deliver's RequestMirror filter at ``mirror`` percent
        (0: none of deliver's left); []: already so."""
        rules = (route.get("spec") or {}).get("rules") or []
        ops: list[JSON] = []
        for r in self.managed(route):
            rule = rules[r.rule]
            filters = rule.get("filters") or []
            have = [j for j, f in enumerate(filters) if self.is_mirror_filter(f)]
            want: JSON | None = None
            if mirror > 0:
                canary = rule["backendRefs"][r.canary]
                ref = {k: canary[k] for k in ("name", "namespace", "port") if k in canary}
                want = {"type": "RequestMirror", "requestMirror": {"backendRef": ref}}
                if mirror < 100:
                    want["requestMirror"]["percent"] = int(mirror)
            base = pointer("spec", "rules", r.rule, "filters")
            ops += _filter_ops(base, filters, have, want, "RequestMirror", "filters" in rule)
        return ops

    def match_ops(self, route: JSON, match: RequestMatch | None, pin: Affinity | None = None) -> list[JSON]:
        """JSON patch ops taking deliver's own rules (request matches first, then pins) to what ``match``
        and ``pin`` need ([]: already)."""
        rules = (route.get("spec") or {}).get("rules") or []
        have = [i for i, rule in enumerate(rules) if self.is_match_rule(rule)]
        want = self.match_rules(route, match) + self.pin_rules(route, pin)
        if [_undefaulted(rules[i]) for i in have] == [_undefaulted(rule) for rule in want]:
            return []
        ops: list[JSON] = []
        for i in reversed(have):
            path = pointer("spec", "rules", i)
            ops.append({"op": "test", "path": path + "/backendRefs", "value": rules[i]["backendRefs"]})
            ops.append({"op": "remove", "path": path})
        ops += [{"op": "add", "path": "/spec/rules/-", "value": rule} for rule in want]
        return ops

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
            if self.is_match_rule(rule):
                continue  # deliver's own request-match rule
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

    def patch_ops(
        self,
        route: JSON,
        weight: int,
        match: RequestMatch | None = None,
        mirror: int = 0,
        pin: Affinity | None = None,
    ) -> list[JSON]:
        """The JSON patch that gives the canary ``weight`` percent on every managed rule, the request
        matches ``match`` asks for and the mirror (no-op: [])."""
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
        return ops + self.mirror_ops(route, mirror) + self.cookie_ops(route, pin) + self.match_ops(route, match, pin)

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        c = self.ctx
        guarded_patch(
            c.kube,
            HTTPROUTES,
            c.namespace,
            c.route,
            self.what,
            lambda route: self.patch_ops(route, weight, match, mirror, pin),
            self._load,
        )

    def reset(self) -> None:
        self.set_weight(0)

    def verify_extras(self) -> bool:
        rules = (self._load().get("spec") or {}).get("rules") or []
        return any(
            self.is_match_rule(rule)
            or any(self.is_mirror_filter(f) for f in rule.get("filters") or [])
            or any(self.is_cookie_filter(f) for ref in rule.get("backendRefs") or [] for f in ref.get("filters") or [])
            for rule in rules
        )


def _filter_ops(
    base: str, filters: list[JSON], have: list[int], want: JSON | None, kind: str, keyed: bool
) -> list[JSON]:
    """JSON patch ops that leave exactly ``want`` (or nothing, with None) as deliver's filter in the
    ``filters`` list at ``base``, where deliver's own are at indexes ``have`` and of type ``kind``
    (each removal guarded by a test of its type); ``keyed``: the object has a ``filters`` key. []:
    already so. When only deliver's filters were there and none is wanted, the key goes too."""
    if want is not None and [filters[j] for j in have] == [want]:
        return []
    ops: list[JSON] = []
    emptied = bool(have) and len(have) == len(filters)
    for j in reversed(have):
        ops.append({"op": "test", "path": f"{base}/{j}/type", "value": kind})
        ops.append({"op": "remove", "path": f"{base}/{j}"})
    if emptied and want is None:
        ops.append({"op": "remove", "path": base})
    if want is not None:
        if not keyed or emptied:
            ops.append({"op": "add", "path": base, "value": [want]})
        else:
            ops.append({"op": "add", "path": base + "/-", "value": want})
    return ops
