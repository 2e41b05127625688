"""A real local HTTP receiver for webhooks (notifications and hooks), in a thread.

    with Receiver() as rx:                 # http://127.0.0.1:PORT
        rx.answer("/pre", 500)             # this path answers 500 (default 200)
        ... rx.url("/pre") ...
        rx.wait_for(lambda r: r.json()["kind"] == "promoted")
        rx.body("/big", b"x" * 2**20, repeat=150)   # a 150 MiB answer (rx.sent["/big"]: bytes it got out)
        rx.drip("/slow", every=0.5, count=12)       # headers at once, then one byte of body every 0.5 s

Every request is kept (path, headers, body, time), whatever was answered. Used by the unit tests of
delivery/integrations/notify.py and hooks.py, and by e2e/test_notifications.py and e2e/test_hooks.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


def namespace_key(secret: bytes, namespace: str) -> bytes:
    """A namespace's signing key, as docs/notifications.md tells a receiver to derive it."""
    return hmac.new(secret, b"deliver-namespace-key/v2\x00" + namespace.encode(), hashlib.sha256).digest()


def verified(key: bytes, headers: dict[str, str], body: bytes, tolerance: float = 300) -> bool:
    """A v2 signature checked as docs/notifications.md shows (``key``: the namespace's key)."""
    h = {k.lower(): v for k, v in headers.items()}
    ts, delivery, namespace = h["x-deliver-timestamp"], h["x-deliver-delivery"], h["x-deliver-namespace"]
    if abs(time.time() - int(ts)) > tolerance:
        return False
    signed = b".".join((b"v2", namespace.encode(), delivery.encode(), ts.encode(), body))
    expected = "v2=" + hmac.new(key, signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, h["x-deliver-signature"])


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Request] = []
        self._answers: dict[str, Callable[[Request], int]] = {}
        self._delays: dict[str, float] = {}
        self._bodies: dict[str, tuple[bytes, int]] = {}
        self._drips: dict[str, tuple[float, int, bytes]] = {}
        self.connections = 0  # TCP connections accepted, whatever was sent on them (a GET, garbage, nothing)
        self.sent: dict[str, int] = {}  # bytes of body written per path before the caller hung up
        self._lock = threading.Condition()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                delay = rx._delays.get(path, 0.0)
                if delay:
                    time.sleep(delay)
                seen = Request(path, {k.lower(): v for k, v in self.headers.items()}, body, time.time(), 0)
                answer = rx._answers.get(path)
                status = answer(seen) if answer is not None else 200
                with rx._lock:
                    rx.requests.append(Request(seen.path, seen.headers, seen.body, seen.at, status))
                    rx._lock.notify_all()
                try:
                    self.send_response(status)
                    if path in rx._drips:
                        every, count, pattern = rx._drips[path]
                        self.send_header("Content-Length", str(count))
                        self.end_headers()
                        for i in range(count):
                            self.wfile.write(pattern[i % len(pattern) : i % len(pattern) + 1])
                            self.wfile.flush()
                            rx._count(path, 1)
                            time.sleep(every)
                        return
                    data, repeat = rx._bodies.get(path, (b"ok", 1))
                    self.send_header("Content-Length", str(len(data) * repeat))
                    self.end_headers()
                    for _ in range(repeat):
                        self.wfile.write(data)
                        rx._count(path, len(data))
                except OSError:
                    pass  # the caller gave up (timeout, or it read all it wanted)

            def log_message(self, fmt: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.verify_request = self._accepted  # type: ignore[method-assign]
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="receiver", daemon=True)

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str = "/") -> str:
        return self.base + path

    def answer(self, path: str, status: int | Callable[[Request], int]) -> None:
        """What ``path`` answers from now on: a status, or a function of the request."""
        self._answers[path] = status if callable(status) else (lambda _r, s=status: s)

    def delay(self, path: str, seconds: float) -> None:
        """``path`` answers only after ``seconds`` (a hook that times out)."""
        self._delays[path] = seconds

    def body(self, path: str, data: bytes, repeat: int = 1) -> None:
        """``path`` answers with ``data`` repeated ``repeat`` times as its body."""
        self._bodies[path] = (data, repeat)

    def drip(self, path: str, every: float, count: int, pattern: bytes = b"x") -> None:
        """``path`` sends its status and headers at once, then ``count`` bytes of body, one every ``every`` s
        (the bytes of ``pattern`` in turn)."""
        self._drips[path] = (every, count, pattern)

    def _accepted(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            self.connections += 1
        return True

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + n

    def at(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, match: Callable[[Request], bool], timeout: float = 10.0) -> Request:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for r in self.requests:
                    if match(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching request in {timeout}s; got {[r.path for r in self.requests]}")
                self._lock.wait(left)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
