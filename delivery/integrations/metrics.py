"""The controller's HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

* ``/healthz``: 200 while the process is serving (liveness).
* ``/readyz``: 200 once the controller's initial lists of Deployments and ReplicaSets have synced,
  503 before; it does not depend on leadership, so standby replicas are Ready too.
* ``/metrics``: deliveries by phase and per delivery (phase, current step, weight), verdict counts,
  the reconcile duration histogram, reconcile errors, watch restarts and whether this replica leads;
  per delivery and check, the time-to-verdict forecast (``deliver_analysis_forecast_requests`` and
  ``_seconds``) of its newest inconclusive analysis.

Per-delivery numbers come from the reconcile outcomes of this replica, so they are the leader's view;
a replica that loses or has no leadership reports none.

``/metrics`` names every namespace and Deployment deliver manages: tenant names, which not everyone
who can reach the pod may read (issue 24). With ``--metrics-auth kubernetes`` (the default on any
address but loopback) it asks for a bearer token, as kube-rbac-proxy does: the API server
authenticates it (TokenReview) and authorizes ``get`` on the non-resource URL ``/metrics`` for its
user (SubjectAccessReview); 401 without a valid token, 403 without the right. Answers are cached
for a minute per token (by hash). ``/healthz`` and ``/readyz`` say nothing about tenants and stay
open for the kubelet's probes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from delivery.errors import KubeError
from delivery.kube.client import SUBJECTACCESSREVIEWS, TOKENREVIEWS, Kube
from strategies.record import Phase

log = logging.getLogger("deliver.metrics")

Key = tuple[str, str]
PHASES = [p.value for p in Phase] + ["Invalid"]
TERMINAL = {p.value for p in Phase if p.terminal}


class Metrics:
    def __init__(
        self,
        is_leader: Callable[[], bool] = lambda: True,
        watch_restarts: Callable[[], int] = lambda: 0,
        synced: Callable[[], bool] = lambda: False,
        registry: CollectorRegistry | None = None,
        hold_mode: Callable[[], str] = lambda: "paused",
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.hold_mode = hold_mode
        self.is_leader = is_leader
        self.watch_restarts = watch_restarts
        self.synced = synced
        self._lock = threading.Lock()
        self.deliveries: dict[Key, tuple[str, int, int]] = {}  # key -> (phase, step, weight)
        # key -> check -> (more requests, seconds) until a verdict, from the newest verdict's forecast
        self.forecasts: dict[Key, dict[str, tuple[float, float]]] = {}
        self.reconcile_seconds = Histogram(
            "deliver_reconcile_duration_seconds",
            "Time one reconcile pass of one Deployment took.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "deliver_reconcile_errors_total", "Reconcile passes that failed and were retried.", registry=self.registry
        )
        self.verdicts = Counter(
            "deliver_verdicts_total",
            "Analysis verdicts recorded, by outcome.",
            ["namespace", "deployment", "outcome"],
            registry=self.registry,
        )
        # Per delivery: every Prometheus query its analyses made (looks at running windows and step
        # ends), by result (ok | error). A counter: queries per minute is PromQL's job, e.g.
        # 60 * rate(deliver_analysis_queries_total[5m]).
        self.analysis_queries = Counter(
            "deliver_analysis_queries",
            "Metrics queries made by the analyses of each delivery, by result (ok or error).",
            ["namespace", "deployment", "result"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))

    def count_query(self, namespace: str, deployment: str, ok: bool) -> None:
        """The analyser's ``on_query`` callback (``delivery.engine.verdicts.make_analyser``)."""
        self.analysis_queries.labels(namespace, deployment, "ok" if ok else "error").inc()

    def observe(self, key: Key, outcome: Any, seconds: float) -> None:
        """The Controller's ``on_outcome`` callback."""
        self.reconcile_seconds.observe(seconds)
        for v in getattr(outcome, "verdicts", None) or []:
            self.verdicts.labels(key[0], key[1], v).inc()
        phase = getattr(outcome, "phase", "")
        with self._lock:
            if phase:
                self.deliveries[key] = (phase, int(outcome.step), int(outcome.weight))
            elif outcome.requeue_after is None:
                self.deliveries.pop(key, None)  # gone, or no longer managed
            else:
                self.reconcile_errors.inc()
            self._observe_forecast(key, outcome, phase)

    def _observe_forecast(self, key: Key, outcome: Any, phase: str) -> None:
        """The newest verdict's time-to-verdict forecast replaces the last (a decided verdict has none);
        a delivery that ended or is gone has none. Out of reach, or no traffic, is +Inf."""
        if phase in TERMINAL or (not phase and outcome.requeue_after is None):
            self.forecasts.pop(key, None)
            return
        if not getattr(outcome, "verdicts", None):
            return
        from delivery.analysis.forecast import Forecast

        now: dict[str, tuple[float, float]] = {}
        for d in getattr(outcome, "forecasts", None) or []:
            f = Forecast.from_dict(d)
            n, s = f.requests, f.seconds
            now[f.check] = (math.inf if n is None else float(n), math.inf if s is None else s)
        if now:
            self.forecasts[key] = now
        else:
            self.forecasts.pop(key, None)

    def forecast_snapshot(self) -> dict[Key, dict[str, tuple[float, float]]]:
        with self._lock:
            return {k: dict(v) for k, v in self.forecasts.items()}

    def forget_all(self) -> None:
        """Leadership lost: this replica no longer knows the deliveries."""
        with self._lock:
            self.deliveries.clear()
            self.forecasts.clear()

    def snapshot(self) -> dict[Key, tuple[str, int, int]]:
        with self._lock:
            return dict(self.deliveries)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Any]:
        snap = self.m.snapshot()
        by_phase = GaugeMetricFamily("deliver_deliveries", "Managed Deployments by delivery phase.", labels=["phase"])
        counts = {p: 0 for p in PHASES}
        for phase, _, _ in snap.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            by_phase.add_metric([phase], n)
        yield by_phase
        info = GaugeMetricFamily(
            "deliver_delivery_phase",
            "1 for the phase each delivery is in.",
            labels=["namespace", "deployment", "phase"],
        )
        step = GaugeMetricFamily(
            "deliver_delivery_step", "Current step of each delivery (1-based).", labels=["namespace", "deployment"]
        )
        weight = GaugeMetricFamily(
            "deliver_delivery_weight_percent",
            "Traffic share promised to the new version of each delivery.",
            labels=["namespace", "deployment"],
        )
        for (ns, name), (phase, s, w) in sorted(snap.items()):
            info.add_metric([ns, name, phase], 1)
            step.add_metric([ns, name], max(s, -1) + 1)
            weight.add_metric([ns, name], w)
        yield info
        yield step
        yield weight
        restarts = CounterMetricFamily("deliver_watch_restarts", "Watches re-listed after expiry or errors.")
        restarts.add_metric([], self.m.watch_restarts())
        yield restarts
        leader = GaugeMetricFamily("deliver_is_leader", "1 when this replica holds the leader Lease.")
        leader.add_metric([], 1 if self.m.is_leader() else 0)
        yield leader
        synced = GaugeMetricFamily("deliver_informers_synced", "1 once the initial lists have synced.")
        synced.add_metric([], 1 if self.m.synced() else 0)
        yield synced
        mode = GaugeMetricFamily(
            "deliver_hold_mode",
            "1 for the hold mode in force: policy (the API server pauses each template change; unpaused at "
            "rest) or paused (deliver pauses managed Deployments at rest).",
            labels=["mode"],
        )
        current = self.m.hold_mode()
        for name in ("policy", "paused"):
            mode.add_metric([name], 1 if name == current else 0)
        yield mode
        yield from _forecast_gauges(self.m.forecast_snapshot())


def _forecast_gauges(snap: dict[Key, dict[str, tuple[float, float]]]) -> Iterator[Any]:
    """Time to verdict per delivery and check, from the newest inconclusive verdict (docs/analysis.md)."""
    labels = ["namespace", "deployment", "check"]
    requests = GaugeMetricFamily(
        "deliver_analysis_forecast_requests",
        "Further requests (both arms) the check needs for a verdict, forecast at the newest inconclusive "
        "analysis; +Inf when out of reach.",
        labels=labels,
    )
    seconds = GaugeMetricFamily(
        "deliver_analysis_forecast_seconds",
        "The same at the observed request rate, in seconds; +Inf when out of reach or no traffic flows.",
        labels=labels,
    )
    for (ns, name), checks in sorted(snap.items()):
        for check, (n, s) in sorted(checks.items()):
            requests.add_metric([ns, name, check], n)
            seconds.add_metric([ns, name, check], s)
    yield requests
    yield seconds


def parse_addr(addr: str) -> tuple[str, int] | None:
    """':8080' -> ('', 8080); '127.0.0.1:0'; '[::1]:9090'; '' or '0' or 'off' -> None (disabled)."""
    addr = addr.strip()
    if addr in ("", "0", "off", "false"):
        return None
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = "", addr
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{addr!r} is not HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host, number


AUTH_MODES = ("auto", "none", "kubernetes")


def is_loopback(host: str) -> bool:
    """Only this pod/machine can reach ``host`` ('' and 0.0.0.0 listen everywhere)."""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def auth_mode(mode: str, host: str) -> str:
    """``auto``: ``kubernetes`` unless /metrics listens on loopback only."""
    if mode == "auto":
        return "none" if is_loopback(host) else "kubernetes"
    return mode


class KubeAuthorizer:
    """Who may read ``path``: a bearer token the API server authenticates (TokenReview) whose user may
    ``get`` that non-resource URL (SubjectAccessReview). Both requests go through ``Kube``."""

    CACHE_SIZE = 1024

    def __init__(
        self, kube: Kube, path: str = "/metrics", ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube = kube
        self.path = path
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, int, str]] = {}  # sha256(token) -> (until, code, why)

    def check(self, authorization: str | None) -> tuple[int, str]:
        """(200, user) when allowed; (401, why), (403, why) or (503, why: the API server failed)."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 401, "a bearer token is required"
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        try:
            code, why = self._review(token)
        except KubeError as exc:
            log.warning("cannot review a /metrics token", extra={"error": str(exc)})
            return 503, "the API server could not review the token"
        with self._lock:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (now + self.ttl, code, why)
        return code, why

    def _review(self, token: str) -> tuple[int, str]:
        review = self.kube.create(
            TOKENREVIEWS,
            None,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return 401, "the token is not valid"
        user = status.get("user") or {}
        spec: dict[str, Any] = {
            "user": user.get("username", ""),
            "groups": list(user.get("groups") or []),
            "nonResourceAttributes": {"path": self.path, "verb": "get"},
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = user["extra"]
        access = self.kube.create(
            SUBJECTACCESSREVIEWS,
            None,
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        if not (access.get("status") or {}).get("allowed"):
            return 403, f"{spec['user']} may not get {self.path}"
        return 200, str(spec["user"])


class Server:
    """A small threaded HTTP server for the three endpoints; ``auth`` guards ``/metrics``."""

    def __init__(self, metrics: Metrics, host: str, port: int, auth: KubeAuthorizer | None = None) -> None:
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    if auth is not None:
                        code, why = auth.check(self.headers.get("Authorization"))
                        if code != 200:
                            self._send(code, (why + "\n").encode())
                            return
                    self._send(200, m.exposition(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    if m.synced():
                        self._send(200, b"ok\n")
                    else:
                        self._send(503, b"initial list not synced yet\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                return None

        family_host = host or "0.0.0.0"
        if ":" in family_host:
            import socket

            class V6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            self.httpd: ThreadingHTTPServer = V6Server((family_host, port), Handler)
        else:
            self.httpd = ThreadingHTTPServer((family_host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
