"""A stand-in gateway implementation: HTTPRoute on the API server -> weights in a real Envoy.

It knows nothing of deliver. Like a Gateway API implementation it list+watches one HTTPRoute and
programs its proxy with the route's backend weights: the rule that carries the mapped backends
becomes Envoy ``weighted_clusters`` (one Envoy cluster per Service name, so Envoy's metrics carry
``envoy_cluster_name="<Service name>"``; Prometheus adds ``namespace="<route's namespace>"`` as a
target label when it scrapes this Envoy, as deliver binds every query to the Deployment's
namespace). Since e2e pods are fake, each Service name is mapped to a
real local process (``e2e.app_server``) standing in for that Service's pods.

A rule's ``RequestMirror`` filter to a mapped backend becomes its route's
``request_mirror_policies`` (with its ``percent``); a backendRef's ``ResponseHeaderModifier``
``add`` becomes its weighted cluster's ``response_headers_to_add`` (session affinity's
Set-Cookie). Rules with ``matches`` become Envoy routes with the same path and header matches
(``Exact`` and ``RegularExpression`` headers), ordered as Gateway API orders rules (an exact path
first, then the longer prefix, then more header matches, then the earlier rule), so a rule that
adds a header match to the weighted rule's path wins for requests that carry it; Envoy takes the
first route that matches.

Envoy reads its routes from a file-based RDS source that is replaced atomically (write + rename,
see ``e2e.services.Envoy.set_weights``); each update is confirmed from Envoy's admin config dump
before it is recorded in ``history``, so a test knows when the proxy really uses a weight.

    plane = DataPlane(kube, "shop", "web", envoy, {"web-stable": "127.0.0.1:18001",
                                                   "web-canary": "127.0.0.1:18002"})
    plane.start()              # Envoy started as a splitter, first weights applied, watch running
    plane.wait_for({"web-stable": 80, "web-canary": 20})
    plane.stop()               # stops the watch thread and Envoy

Standalone: ``python -m e2e.dataplane --kubeconfig K -n NS --route web
--backend web-stable=127.0.0.1:18001 --backend web-canary=127.0.0.1:18002 --run-dir DIR``.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from delivery.errors import DeliverError, Gone, NotFound
from delivery.kube.client import Kube, KubeClient
from delivery.routing.gateway import HTTPROUTES
from e2e.services import Envoy

log = logging.getLogger("e2e.dataplane")


@dataclass(frozen=True)
class Applied:
    """One weight update that Envoy confirmed."""

    seen_at: float  # time.time() when the watch delivered the route change
    at: float  # time.time() when Envoy reported the new route version
    weights: dict[str, int]
    resource_version: str
    took: float  # seconds from seeing the route event to Envoy using it


def weights_of(route: dict[str, Any], backends: list[str], namespace: str) -> dict[str, int] | None:
    """Weights of ``backends`` in the first rule that references any of them (None: no such rule).

    A backendRef without ``weight`` counts 1 (the Gateway API default); a mapped backend the rule
    does not list gets 0.
    """
    for rule in (route.get("spec") or {}).get("rules") or []:
        found: dict[str, int] = {}
        for ref in rule.get("backendRefs") or []:
            if (ref.get("kind") or "Service") != "Service" or (ref.get("namespace") or namespace) != namespace:
                continue
            if ref.get("name") in backends:
                found[ref["name"]] = found.get(ref["name"], 0) + int(ref.get("weight", 1))
        if found:
            return {b: found.get(b, 0) for b in backends}
    return None


def _envoy_match(match: dict[str, Any]) -> dict[str, Any]:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
    out: dict[str, Any] = (
        {"path": value}
        if kind == "Exact"
        else {"safe_regex": {"regex": value}}
        if kind == "RegularExpression"
        else {"prefix": value}
    )
    headers = []
    for h in match.get("headers") or []:
        if h.get("type") == "RegularExpression":
            string_match: dict[str, Any] = {"safe_regex": {"regex": h["value"]}}
        else:
            string_match = {"exact": h["value"]}
        headers.append({"name": str(h["name"]).lower(), "string_match": string_match})
    if headers:
        out["headers"] = headers
    return out


def envoy_routes(route: dict[str, Any], backends: list[str], namespace: str) -> list[dict[str, Any]] | None:
    """Envoy routes for the rules of ``route`` that reference mapped backends, in Gateway API's
    precedence order (None: no such rule). A rule's unmapped backends are left out."""
    entries: list[tuple[tuple[int, int, int, int], dict[str, Any]]] = []
    for order, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        action = _rule_action(rule, backends, namespace)
        if action is None:
            continue
        for match in rule.get("matches") or [{}]:
            em = _envoy_match(match)
            key = ("path" in em, len(em.get("prefix", em.get("path", ""))), len(em.get("headers", [])), -order)
            entries.append((key, {"match": em, "route": action}))
    if not entries:
        return None
    return [r for _, r in sorted(entries, key=lambda e: e[0], reverse=True)]


def _rule_backends(
    rule: dict[str, Any], backends: list[str], namespace: str
) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    """A rule's mapped backends: their summed weights, and the response headers their filters add."""
    found: dict[str, int] = {}
    added: dict[str, list[dict[str, Any]]] = {}
    for ref in rule.get("backendRefs") or []:
        if (ref.get("kind") or "Service") != "Service" or (ref.get("namespace") or namespace) != namespace:
            continue
        if ref.get("name") in backends:
            found[ref["name"]] = found.get(ref["name"], 0) + int(ref.get("weight", 1))
            for f in ref.get("filters") or []:
                for h in (f.get("responseHeaderModifier") or {}).get("add") or []:
                    added.setdefault(ref["name"], []).append(
                        {"header": {"key": h["name"], "value": h["value"]}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
                    )
    return found, added


def _rule_action(rule: dict[str, Any], backends: list[str], namespace: str) -> dict[str, Any] | None:
    """The Envoy route action of one rule (its clusters and mirrors), None if it sends nothing to a backend."""
    found, added = _rule_backends(rule, backends, namespace)
    if not found or sum(found.values()) <= 0:
        return None
    if len(found) == 1:
        action: dict[str, Any] = {"cluster": next(iter(found))}
    else:
        clusters = []
        for b in backends:
            entry: dict[str, Any] = {"name": b, "weight": found.get(b, 0)}
            if added.get(b):
                entry["response_headers_to_add"] = added[b]
            clusters.append(entry)
        action = {"weighted_clusters": {"clusters": clusters}}
    mirrors = []
    for f in rule.get("filters") or []:
        ref = (f.get("requestMirror") or {}).get("backendRef") or {}
        if f.get("type") == "RequestMirror" and ref.get("name") in backends:
            percent = int((f.get("requestMirror") or {}).get("percent", 100))
            fraction = {"default_value": {"numerator": percent, "denominator": "HUNDRED"}}
            mirrors.append({"cluster": ref["name"], "runtime_fraction": fraction})
    if mirrors:
        action["request_mirror_policies"] = mirrors
    return action


class DataPlane:
    def __init__(self, kube: Kube, namespace: str, route: str, envoy: Envoy, backends: dict[str, str]) -> None:
        self.kube, self.namespace, self.route = kube, namespace, route
        self.envoy = envoy
        self.backends = dict(backends)
        self.history: list[Applied] = []
        self.current: dict[str, int] = {}
        self.routes: list[dict[str, Any]] = []  # what Envoy routes by now, when rules with matches are in play
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        # called in the watch thread right after Envoy confirms a new weight (e.g. to cut traffic periods)
        self.listeners: list[Callable[[Applied], None]] = []

    # ---- lifecycle ----

    def start(self, initial: dict[str, int] | None = None) -> DataPlane:
        """Start Envoy (all traffic on the first backend until the route says otherwise) and the watch."""
        first = initial or {name: (100 if i == 0 else 0) for i, name in enumerate(self.backends)}
        if not self.envoy.running():
            self.envoy.start_splitter(self.backends, first)
        self.current = dict(first)
        self._thread = threading.Thread(target=self._run, name="dataplane", daemon=True)
        self._thread.start()
        return self

    def stop(self, stop_envoy: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if stop_envoy:
            self.envoy.stop()

    @property
    def url(self) -> str:
        return self.envoy.url + "/"

    # ---- the loop ----

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                listing = self.kube.list(HTTPROUTES, self.namespace)
                for obj in listing.get("items") or []:
                    self._on(obj)
                rv = listing["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    for event in self.kube.watch(HTTPROUTES, self.namespace, rv, timeout_seconds=5):
                        obj = event.get("object") or {}
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._on(obj)
                        if self._stop.is_set():
                            return
                backoff = 0.2
            except Gone:
                continue
            except (DeliverError, ValueError, OSError) as exc:
                if not isinstance(exc, NotFound):
                    self.errors.append(str(exc))
                    log.warning("dataplane watch failed: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _on(self, route: dict[str, Any]) -> None:
        if (route.get("metadata") or {}).get("name") != self.route:
            return
        seen, seen_wall = time.monotonic(), time.time()
        weights = weights_of(route, list(self.backends), self.namespace)
        routes = envoy_routes(route, list(self.backends), self.namespace) or []
        matched = len(routes) > 1 or any(
            "headers" in r["match"] or "request_mirror_policies" in r["route"] or "response_headers_to_add" in str(r)
            for r in routes
        )
        if weights is None or (weights == self.current and (routes if matched else []) == self.routes):
            return
        if sum(weights.values()) <= 0:
            self.errors.append(f"route {self.route} gives every backend weight 0; keeping {self.current}")
            return
        if matched or self.routes:
            self.envoy.set_routes(routes)  # returns once Envoy's config dump shows the new version
        else:
            self.envoy.set_weights(weights)  # returns once Envoy's config dump shows the new version
        applied = Applied(
            seen_wall,
            time.time(),
            dict(weights),
            str(route["metadata"].get("resourceVersion", "")),
            time.monotonic() - seen,
        )
        with self._changed:
            self.current = dict(weights)
            self.routes = routes if matched else []
            self.history.append(applied)
            self._changed.notify_all()
        for listener in self.listeners:
            listener(applied)
        log.info("envoy weights %s (route rv %s, %.3fs)", weights, applied.resource_version, applied.took)

    # ---- waiting ----

    def wait_routes(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> None:
        """Block until the routes Envoy uses (``routes``; [] when only weights are in play) satisfy ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.routes):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"envoy routes still {self.routes} (errors: {self.errors[-3:]})")
                self._changed.wait(min(left, 0.5))

    def wait_for(self, weights: dict[str, int], timeout: float = 30.0) -> Applied | None:
        """Block until Envoy routes by ``weights``; returns that update (None if it was the start state)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.current != weights:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"envoy weights still {self.current}, wanted {weights} (errors: {self.errors[-3:]})"
                    )
                self._changed.wait(min(left, 0.5))
            for applied in reversed(self.history):
                if applied.weights == weights:
                    return applied
        return None


class LocalStack:
    """The two app processes standing in for the stable/canary Services, Envoy, and the route watch.

    ``prometheus`` (optional, an ``e2e.services.Prometheus``) gets Envoy's admin
    ``/stats/prometheus`` and both apps' ``/metrics`` as scrape targets.
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        route: str,
        run_dir: Path,
        stable_service: str,
        canary_service: str,
        prometheus: Any = None,
    ) -> None:
        from e2e.app_server import AppProcess

        self.kube, self.namespace, self.route = kube, namespace, route
        self.run_dir = Path(run_dir)
        self.stable_service, self.canary_service = stable_service, canary_service
        self.stable = AppProcess("stable", self.run_dir)
        self.canary = AppProcess("canary", self.run_dir)
        self.envoy = Envoy(self.run_dir, "envoy-dataplane")
        self.prometheus = prometheus
        self.plane: DataPlane | None = None

    def start(self) -> LocalStack:
        try:
            self.stable.start()
            self.canary.start()
            self.plane = DataPlane(
                self.kube,
                self.namespace,
                self.route,
                self.envoy,
                {self.stable_service: self.stable.address, self.canary_service: self.canary.address},
            ).start()
            if self.prometheus is not None:
                # the Service's namespace as a target label: deliver binds every query to it
                self.prometheus.add_target(
                    "envoy", self.envoy.admin_address, {"namespace": self.namespace}, metrics_path="/stats/prometheus"
                )
                self.prometheus.add_target("app", self.stable.address, {"version": "stable"})
                self.prometheus.add_target("app", self.canary.address, {"version": "canary"})
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        return self.envoy.url + "/"

    def weights(self, canary: int) -> dict[str, int]:
        """The Envoy weights that mean ``canary`` percent on the canary Service."""
        return {self.stable_service: 100 - canary, self.canary_service: canary}

    def envoy_counts(self) -> dict[str, tuple[int, int]]:
        """Envoy's own (requests, 5xx) per cluster, from its admin stats."""
        out: dict[str, tuple[int, int]] = {}
        text = self.envoy.stats()
        for name in (self.stable_service, self.canary_service):
            total = errors = 0
            for line in text.splitlines():
                if f'envoy_cluster_name="{name}"' not in line or line.startswith("#"):
                    continue
                if line.startswith("envoy_cluster_upstream_rq_total{"):
                    total = int(float(line.rsplit(" ", 1)[1]))
                elif line.startswith("envoy_cluster_upstream_rq_xx{") and 'envoy_response_code_class="5"' in line:
                    errors = int(float(line.rsplit(" ", 1)[1]))
            out[name] = (total, errors)
        return out

    def stop(self) -> None:
        if self.plane is not None:
            self.plane.stop()
        else:
            self.envoy.stop()
        self.stable.stop()
        self.canary.stop()


def versions(url: str, n: int, headers: dict[str, str] | None = None) -> dict[str, int]:
    """``n`` GETs of ``url`` on one keep-alive connection with ``headers``: answers per ``x-version``
    (``-``: no such header, ``error``: a transport error or a status >= 500)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
    seen: dict[str, int] = {}
    try:
        for _ in range(n):
            try:
                conn.request("GET", parts.path or "/", headers=headers or {})
                resp = conn.getresponse()
                resp.read()
                version = resp.getheader("x-version") or "-" if resp.status < 500 else "error"
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
                version = "error"
            seen[version] = seen.get(version, 0) + 1
    finally:
        conn.close()
    return seen


class CookieClient:
    """One HTTP client with a cookie jar (name=value pairs from ``Set-Cookie``), on one keep-alive
    connection: what a browser does with a session cookie."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)

    def get(self) -> str:
        """One GET; the version that answered (``x-version``), ``error`` on a failure."""
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        try:
            self.conn.request("GET", self.path, headers=headers)
            resp = self.conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            return "error"
        for value in resp.msg.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0].strip()
        return (resp.getheader("x-version") or "-") if resp.status < 500 else "error"

    def close(self) -> None:
        self.conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.dataplane", description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("-n", "--namespace", required=True)
    p.add_argument("--route", required=True, help="HTTPRoute name")
    p.add_argument("--backend", action="append", required=True, metavar="SERVICE=127.0.0.1:PORT")
    p.add_argument("--run-dir", type=Path, required=True, help="where Envoy's config, pid and log go")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    backends = dict(b.split("=", 1) for b in a.backend)
    plane = DataPlane(
        KubeClient.connect(a.kubeconfig), a.namespace, a.route, Envoy(a.run_dir, "dataplane-envoy"), backends
    ).start()
    print(f"envoy listening on {plane.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
