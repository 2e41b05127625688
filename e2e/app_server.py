"""A tiny HTTP app standing in for one version's pods ("stable" or "canary") in e2e and the demo.

Kubernetes pods in e2e are fake (kwok), so a real local process plays each Service's version:

    python -m e2e.app_server --name canary --port 18002 [--fail-rate 0.3] [--latency-ms 50]

Every request (any path but the ones below) answers ``<name>\\n`` with header ``x-version: <name>``,
after ``latency-ms`` of delay, and with status 500 for a ``fail-rate`` share of requests (chosen by
a seeded generator, so a run is repeatable). Its behaviour can be changed while it runs:

    POST /-/control  {"fail_rate": 0.3, "latency_ms": 0}   -> the new settings
    GET  /-/control                                        -> the current settings
    GET  /metrics     app_requests_total{version,code}, app_request_duration_seconds histogram
    GET  /-/healthy   200 ok

It binds 127.0.0.1 only. ``AppProcess`` starts/stops one as a subprocess and changes its behaviour.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Behaviour:
    fail_rate: float = 0.0
    latency_ms: float = 0.0


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    codes: dict[int, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    duration_sum: float = 0.0

    def record(self, code: int, seconds: float) -> None:
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            self.duration_sum += seconds
            for i, le in enumerate(BUCKETS):
                if seconds <= le:
                    self.buckets[i] += 1
            self.buckets[-1] += 1

    def exposition(self, name: str) -> str:
        with self.lock:
            lines = ["# TYPE app_requests_total counter"]
            for code, n in sorted(self.codes.items()):
                lines.append(f'app_requests_total{{version="{name}",code="{code}"}} {n}')
            lines.append("# TYPE app_request_duration_seconds histogram")
            for le, n in zip([*map(str, BUCKETS), "+Inf"], self.buckets, strict=True):
                lines.append(f'app_request_duration_seconds_bucket{{version="{name}",le="{le}"}} {n}')
            lines.append(f'app_request_duration_seconds_sum{{version="{name}"}} {self.duration_sum}')
            lines.append(f'app_request_duration_seconds_count{{version="{name}"}} {self.buckets[-1]}')
        return "\n".join(lines) + "\n"


class App(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, port: int, behaviour: Behaviour, seed: int = 1) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.name = name
        self.behaviour = behaviour
        self.stats = Stats()
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()

    def fails(self) -> bool:
        with self.rng_lock:
            return self.rng.random() < self.behaviour.fail_rate


class Handler(BaseHTTPRequestHandler):
    server: App
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without NODELAY, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-version", self.server.name)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server API
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.stats.exposition(self.server.name), "text/plain; version=0.0.4")
        elif path == "/-/control":
            self._send(200, json.dumps(asdict(self.server.behaviour)), "application/json")
        elif path == "/-/healthy":
            self._send(200, "ok\n")
        else:
            self._serve()

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/-/control":
            self._serve()
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            change = json.loads(self.rfile.read(length) or b"{}")
            b = self.server.behaviour
            b.fail_rate = min(1.0, max(0.0, float(change.get("fail_rate", b.fail_rate))))
            b.latency_ms = max(0.0, float(change.get("latency_ms", b.latency_ms)))
        except (ValueError, TypeError) as exc:
            self._send(400, f"bad control body: {exc}\n")
            return
        self._send(200, json.dumps(asdict(self.server.behaviour)), "application/json")

    def _serve(self) -> None:
        started = time.monotonic()
        b = self.server.behaviour
        if b.latency_ms:
            time.sleep(b.latency_ms / 1000)
        code = 500 if self.server.fails() else 200
        self._send(code, f"{self.server.name}\n" if code == 200 else f"{self.server.name} failed\n")
        self.server.stats.record(code, time.monotonic() - started)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.app_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    app = App(a.name, a.port, Behaviour(a.fail_rate, a.latency_ms), a.seed)
    print(f"app {a.name} on 127.0.0.1:{a.port}", flush=True)
    try:
        app.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------- running one as a process
class AppProcess:
    """One app server as a subprocess (started in its own session, stopped by its pid only)."""

    def __init__(
        self, name: str, log_dir: Path, port: int = 0, fail_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        from e2e import _proc

        self.name = name
        self.port = port or _proc.free_port()
        self.log = Path(log_dir) / f"app-{name}.log"
        self.fail_rate, self.latency_ms = fail_rate, latency_ms
        self.proc: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> AppProcess:
        from e2e import _proc
        from e2e.cluster import REPO_ROOT

        self.proc = _proc.start(
            f"app-{self.name}",
            [
                sys.executable,
                "-m",
                "e2e.app_server",
                "--name",
                self.name,
                "--port",
                str(self.port),
                "--fail-rate",
                str(self.fail_rate),
                "--latency-ms",
                str(self.latency_ms),
            ],
            self.log,
            cwd=REPO_ROOT,
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://{self.address}/-/healthy", timeout=1) as r:
                return r.status == 200

        _proc.wait_until(healthy, timeout, self.proc, f"app {self.name} on {self.address}")
        return self

    def control(self, fail_rate: float | None = None, latency_ms: float | None = None) -> dict[str, float]:
        """Change the behaviour of the running app; returns the settings now in force."""
        body: dict[str, float] = {}
        if fail_rate is not None:
            body["fail_rate"] = fail_rate
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        req = urllib.request.Request(
            f"http://{self.address}/-/control",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return dict(json.loads(r.read()))

    def stop(self) -> None:
        from e2e import _proc

        if self.proc is not None:
            _proc.stop(self.proc)
            self.proc = None

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
