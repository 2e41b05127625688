"""A real local HTTP receiver for webhooks (notifications and hooks), in a thread.

    with Receiver() as rx:                 # http://127.0.0.1:PORT
        rx.answer("/pre", 500)             # this path answers 500 (default 200)
        ... rx.url("/pre") ...
        rx.wait_for(lambda r: r.json()["kind"] == "promoted")

Every request is kept (path, headers, body, time), whatever was answered. Used by the unit tests of
delivery/notify.py and delivery/hooks.py and by e2e/test_notifications.py and e2e/test_hooks.py.
"""

from __future__ import annotations

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


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Request] = []
        self._answers: dict[str, Callable[[Request], int]] = {}
        self._delays: dict[str, float] = {}
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
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the caller gave up (timeout)

            def log_message(self, fmt: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
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
