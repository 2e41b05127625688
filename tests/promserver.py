"""A real local HTTP server that answers like Prometheus' query API, for the client's limit and auth tests."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@functools.cache
def series_answer(n: int, kind: str = "vector") -> bytes:
    """A successful answer with ``n`` series, each with the labels of a real per-pod counter."""
    result: list[dict[str, Any]] = []
    for i in range(n):
        metric = {
            "__name__": "http_requests_total",
            "namespace": "shop",
            "pod": f"shop-{i:06d}",
            "code": "200",
            "instance": f"10.0.{i // 250}.{i % 250}:8080",
            "job": "app",
        }
        if kind == "vector":
            result.append({"metric": metric, "value": [1700000000.0, str(i)]})
        else:
            result.append({"metric": metric, "values": [[1700000000.0, str(i)], [1700000060.0, str(i + 1)]]})
    answer = {"status": "success", "data": {"resultType": kind, "result": result}}
    return json.dumps(answer, separators=(",", ":")).encode()  # compact, as Prometheus writes it


# (handler) -> status, headers, body chunks (each written and flushed, then ``delay`` seconds of sleep)
Answer = Callable[["BaseHTTPRequestHandler"], tuple[int, Iterator[bytes]]]


@dataclass
class FakePrometheus:
    """Serves ``answer`` on every POST; records each request's headers and form body."""

    answer: Answer
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append({"headers": dict(self.headers), "body": body.decode(), "path": self.path})
                status, chunks = fake.answer(self)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                # It closes the connection after each answer, so it says so: a client that reused the
                # connection raced its close ("Server disconnected", 38 of 300 two-query runs).
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client stopped reading: what a cap does
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def whole(body: bytes, status: int = 200, chunk: int = 64 * 1024) -> Answer:
    def answer(_: BaseHTTPRequestHandler) -> tuple[int, Iterator[bytes]]:
        return status, (body[i : i + chunk] for i in range(0, len(body), chunk))

    return answer


def drip(every: float, total: float) -> Answer:
    """A valid-looking answer that never ends: one byte every ``every`` seconds for ``total`` seconds."""

    def answer(_: BaseHTTPRequestHandler) -> tuple[int, Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            yield b'{"status":"success","data":{"resultType":"vector","result":['
            end = time.monotonic() + total
            while time.monotonic() < end:
                time.sleep(every)
                yield b" "
            yield b"]}}"

        return 200, chunks()

    return answer
