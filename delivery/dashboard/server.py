"""The dashboard's HTTP server (standard library ``ThreadingHTTPServer``): the page, live updates, requests.

One poller thread reads the cluster every ``interval`` seconds (``data.collect``) and wakes the
event streams; each stream (``GET /events``) renders its fragments and pushes them as server-sent
events when they changed. ``POST /api/request`` sends an operator request exactly as the CLI verbs
do: the CLI's rules (``check``, handed in by the CLI: ``request_rules.check_request``) and the
engine's ``state.send_request``. A POST must come from the page itself: same origin, the Host this
server is bound to, JSON, and the per-server token the page carries (CSRF).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from delivery.dashboard.data import Snapshot, collect, denied
from delivery.dashboard.render import VERBS, detail_html, error_html, list_html, page
from delivery.engine.state import send_request
from delivery.errors import Conflict, Forbidden, KubeError, NotFound, Unauthorized
from delivery.kube.client import DEPLOYMENTS, Kube
from strategies.requests import shown

log = logging.getLogger("deliver.dashboard")
Check = Callable[[dict[str, Any], str], "str | None"]  # why a request may not be sent now (None: it may)
ATTEMPTS = 5  # writes lost to a concurrent change before giving up (as the CLI)
HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle event stream
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}


class Dashboard:
    """The dashboard's state: the client, the newest snapshot, the token, the request rules."""

    def __init__(
        self, kube: Kube, namespace: str | None, check: Check, read_only: bool = False, interval: float = 0.5
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.check = check
        self.read_only = read_only
        self.interval = interval
        self.token = secrets.token_urlsafe(24)
        self.snapshot = Snapshot(time.time(), "", error="not read yet")
        self.version = 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()

    def refresh(self) -> Snapshot:
        snap = collect(self.kube, self.namespace)
        with self.changed:
            self.snapshot = snap
            self.version += 1
            self.changed.notify_all()
        return snap

    def poll(self) -> None:
        while not self.stopping.is_set():
            try:
                self.refresh()
            except Exception as exc:  # the poller must outlive any one bad read: the page says what failed
                log.exception("dashboard read failed")
                with self.changed:
                    self.snapshot = Snapshot(
                        time.time(), self.snapshot.scope, error=f"reading the cluster failed: {exc}"
                    )
                    self.version += 1
                    self.changed.notify_all()
            self.stopping.wait(self.interval)

    def wait_change(self, seen: int, timeout: float) -> tuple[int, Snapshot]:
        with self.changed:
            self.changed.wait_for(lambda: self.version != seen or self.stopping.is_set(), timeout)
            return self.version, self.snapshot

    def fragments(self, snap: Snapshot, selected: str) -> dict[str, str]:
        return {
            "error": error_html(snap),
            "list": list_html(snap, selected),
            "detail": detail_html(snap, selected, self.read_only),
        }

    def request(self, namespace: str, name: str, verb: str) -> tuple[int, str]:
        """Send ``verb`` for namespace/name as ``deliver VERB`` does: (HTTP status, message)."""
        if self.read_only:
            return HTTPStatus.FORBIDDEN, "the dashboard is read-only (--read-only)"
        if verb not in VERBS:
            return HTTPStatus.BAD_REQUEST, f"unknown request {verb!r}"
        if self.namespace is not None and namespace != self.namespace:
            return HTTPStatus.BAD_REQUEST, f"this dashboard shows namespace {self.namespace} only"
        for _ in range(ATTEMPTS):
            try:
                deployment = self.kube.get(DEPLOYMENTS, namespace, name)
            except NotFound:
                return HTTPStatus.NOT_FOUND, f"deployment {namespace}/{name} not found"
            except (Forbidden, Unauthorized) as exc:
                return HTTPStatus.FORBIDDEN, denied(exc, f"read deployment {namespace}/{name}")
            except KubeError as exc:
                return HTTPStatus.BAD_GATEWAY, str(exc)
            problem = self.check(deployment, verb)
            if problem:
                return HTTPStatus.CONFLICT, problem
            try:
                rid = send_request(self.kube, deployment, verb)
            except Conflict:
                continue
            except (Forbidden, Unauthorized) as exc:
                return HTTPStatus.FORBIDDEN, denied(exc, f"update deployment {namespace}/{name}")
            except KubeError as exc:
                return HTTPStatus.BAD_GATEWAY, str(exc)
            return HTTPStatus.OK, f"{shown(verb)} requested for {namespace}/{name} (request {rid})"
        return HTTPStatus.SERVICE_UNAVAILABLE, "the Deployment kept changing under us; try again"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints its own lines
        return

    @property
    def dash(self) -> Dashboard:
        return self.server.dashboard

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _host_ok(self) -> bool:
        return (self.headers.get("Host") or "") in self.server.hosts

    def do_GET(self) -> None:  # http.server API
        if not self._host_ok():
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"unexpected Host header\n", "text/plain")
            return
        url = urlsplit(self.path)
        selected = (parse_qs(url.query).get("d") or [""])[0]
        if url.path == "/":
            html = page(self.dash.snapshot, selected, self.dash.token, self.dash.read_only)
            self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8")
        elif url.path == "/events":
            self._events(selected)
        elif url.path.startswith("/static/") and url.path[len("/static/") :] in STATIC:
            name = url.path[len("/static/") :]
            body = resources.files(__package__).joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, STATIC[name])
        elif url.path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _events(self, selected: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        last: dict[str, str] = {}
        seen = -1
        try:
            while not self.dash.stopping.is_set():
                version, snap = self.dash.wait_change(seen, HEARTBEAT)
                if version == seen:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                seen = version
                frags = self.dash.fragments(snap, selected)
                changed = {k: v for k, v in frags.items() if last.get(k) != v}
                message = dict(changed, at=str(snap.at))
                self.wfile.write(f"data: {json.dumps(message)}\n\n".encode())
                self.wfile.flush()
                last = frags
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return
        self.close_connection = True

    def do_POST(self) -> None:  # http.server API
        url = urlsplit(self.path)
        if url.path != "/api/request":
            self._json(HTTPStatus.NOT_FOUND, {"message": "not found"})
            return
        problem = self._not_from_page()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 65536)) if length else b""
        if problem:
            self._json(HTTPStatus.FORBIDDEN, {"message": problem})
            return
        try:
            body = json.loads(raw or b"{}")
            namespace, name, verb = str(body["namespace"]), str(body["name"]), str(body["verb"])
        except (ValueError, KeyError, TypeError):
            self._json(HTTPStatus.BAD_REQUEST, {"message": "expected JSON {namespace, name, verb}"})
            return
        status, message = self.dash.request(namespace, name, verb)
        self._json(status, {"ok": status == HTTPStatus.OK, "message": message})
        if status == HTTPStatus.OK:
            threading.Thread(target=self.dash.refresh, daemon=True).start()

    def _not_from_page(self) -> str:
        """Why this POST is not the page's own (CSRF), or ""."""
        if self.dash.read_only:
            return "the dashboard is read-only (--read-only)"
        if not self._host_ok():
            return "unexpected Host header"
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self.server.hosts}:
            return f"cross-origin request refused (Origin {origin})"
        if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin"):
            return "cross-site request refused"
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return "requests must be JSON"
        if not secrets.compare_digest(self.headers.get("X-Deliver-Token") or "", self.dash.token):
            return "missing or wrong dashboard token (reload the page)"
        return ""


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dashboard: Dashboard) -> None:
        super().__init__(address, Handler)
        self.dashboard = dashboard
        host, port = self.server_address[0], self.server_address[1]
        host = host.decode() if isinstance(host, bytes) else str(host)
        names = {host} | ({"localhost", "127.0.0.1"} if host in ("127.0.0.1", "localhost") else set())
        if ":" in host:
            names = {f"[{host}]"} | ({"[::1]", "localhost"} if host == "::1" else set())
        self.hosts = {f"{n}:{port}" for n in names}

    @property
    def url(self) -> str:
        return f"http://{sorted(self.hosts)[0]}/" if self.hosts else ""


def serve(dashboard: Dashboard, address: str = "127.0.0.1", port: int = 0) -> DashboardServer:
    """Bind the server and start the poller; the caller runs ``serve_forever`` (and ``stop``)."""
    server = DashboardServer((address, port), dashboard)
    dashboard.refresh()
    threading.Thread(target=dashboard.poll, name="dashboard-poll", daemon=True).start()
    return server


def stop(server: DashboardServer) -> None:
    server.dashboard.stopping.set()
    with server.dashboard.changed:
        server.dashboard.changed.notify_all()
    server.shutdown()
    server.server_close()
