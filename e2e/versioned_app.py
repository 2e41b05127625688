"""A stand-in for one version of an app: a real local process exposing per-version HTTP metrics.

kwok pods run nothing, so the requests a version "serves" come from this process instead: one
process per version, started by the test and registered with the harness's Prometheus under that
version's ``pod_template_hash`` (and ``namespace``) as target labels, which is what deliver's
built-in ``http`` checks select on. It exposes, in Prometheus text format at ``/metrics``:

    http_requests_total{code="200"|"500"}              counter
    http_request_duration_seconds_bucket{le="..."}     histogram (+ _sum, _count)

Traffic is synthetic and deterministic-ish: a background loop serves ``rate`` requests per second;
exactly ``error_share`` of them (a running accumulator, not a coin flip) answer 500, and latencies
are drawn from a seeded lognormal (``median`` seconds, ``sigma``). ``GET /`` serves one real request
through the same code. Traffic starts at ``--rate`` (default 0) and is changed over HTTP:

    POST /traffic {"rate": 1000, "error_share": 0.01}    -> the new settings
    GET  /stats                                           -> {"total": .., "errors": .., ...}

Run ``python -m e2e.versioned_app --name v2`` (it prints ``{"port": N}`` once listening), or from a
test use :class:`VersionedApp`, which does that and stops the process (by its pid) afterwards.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK = 0.05  # seconds between bursts of synthetic requests


class Counters:
    """The app's request counters and its traffic settings (thread-safe)."""

    def __init__(
        self, rate: float = 0.0, error_share: float = 0.0, median: float = 0.05, sigma: float = 0.5, seed: int = 1
    ) -> None:
        self.lock = threading.Lock()
        self.rate = rate
        self.error_share = error_share
        self.median = median
        self.sigma = sigma
        self.rng = random.Random(seed)
        self.codes = {"200": 0, "500": 0}
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket; the last is +Inf
        self.seconds = 0.0
        self._pending = 0.0  # fractional requests carried to the next tick
        self._error_acc = 0.0  # fractional errors carried to the next request

    def configure(
        self, rate: float | None = None, error_share: float | None = None, median: float | None = None
    ) -> dict[str, float]:
        with self.lock:
            if rate is not None:
                if not (math.isfinite(rate) and rate >= 0):
                    raise ValueError("rate must be >= 0")
                self.rate = rate
            if error_share is not None:
                if not 0 <= error_share <= 1:
                    raise ValueError("error_share must be in [0, 1]")
                self.error_share = error_share
            if median is not None:
                if not median > 0:
                    raise ValueError("median must be > 0")
                self.median = median
            return {"rate": self.rate, "error_share": self.error_share, "median": self.median}

    def _serve_locked(self) -> int:
        self._error_acc += self.error_share
        code = 200
        if self._error_acc >= 1.0 - 1e-9:
            self._error_acc -= 1.0
            code = 500
        self.codes[str(code)] += 1
        latency = self.rng.lognormvariate(math.log(self.median), self.sigma)
        self.buckets[bisect.bisect_left(BUCKETS, latency)] += 1
        self.seconds += latency
        return code

    def serve(self) -> int:
        """One request: its status code (200 or 500), counted with its latency."""
        with self.lock:
            return self._serve_locked()

    def tick(self, dt: float) -> None:
        with self.lock:
            self._pending += self.rate * dt
            n = int(self._pending)
            self._pending -= n
            for _ in range(n):
                self._serve_locked()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            total = sum(self.codes.values())
            return {
                "total": total,
                "errors": self.codes["500"],
                "rate": self.rate,
                "error_share": self.error_share,
                "median": self.median,
            }

    def exposition(self) -> str:
        with self.lock:
            codes = dict(self.codes)
            buckets = list(self.buckets)
            seconds = self.seconds
        lines = ["# HELP http_requests_total Requests served, by status code.", "# TYPE http_requests_total counter"]
        lines += [f'http_requests_total{{code="{c}"}} {n}' for c, n in sorted(codes.items())]
        lines += [
            "# HELP http_request_duration_seconds Request latency.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip(BUCKETS, buckets, strict=False):
            cumulative += n
            lines.append(f'http_request_duration_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        cumulative += buckets[-1]
        lines.append(f'http_request_duration_seconds_bucket{{le="+Inf"}} {cumulative}')
        lines.append(f"http_request_duration_seconds_sum {seconds:.6f}")
        lines.append(f"http_request_duration_seconds_count {cumulative}")
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server API
        path = self.path.split("?")[0]
        c = self.server.counters
        if path == "/metrics":
            self._send(200, c.exposition(), "text/plain; version=0.0.4")
        elif path == "/stats":
            self._send(200, json.dumps(c.stats()))
        elif path == "/":
            code = c.serve()
            self._send(code, json.dumps({"version": self.server.app_name, "code": code}))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/traffic":
            self._send(404, json.dumps({"error": "not found"}))
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            settings = self.server.counters.configure(
                rate=None if body.get("rate") is None else float(body["rate"]),
                error_share=None if body.get("error_share") is None else float(body["error_share"]),
                median=None if body.get("median") is None else float(body["median"]),
            )
        except (ValueError, TypeError) as exc:
            self._send(400, json.dumps({"error": str(exc)}))
            return
        self._send(200, json.dumps(settings))

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    counters: Counters
    app_name: str


def _load(counters: Counters, stop: threading.Event) -> None:
    last = time.monotonic()
    while not stop.wait(TICK):
        now = time.monotonic()
        counters.tick(now - last)
        last = now


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.versioned_app", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="app", help="version name (reported by GET /)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--rate", type=float, default=0.0, help="synthetic requests per second")
    p.add_argument("--error-share", type=float, default=0.0, help="share of requests answering 500")
    p.add_argument("--median", type=float, default=0.05, help="median latency, seconds")
    p.add_argument("--sigma", type=float, default=0.5, help="lognormal sigma of latency")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    counters = Counters(args.rate, args.error_share, args.median, args.sigma, args.seed)
    server = _Server(("127.0.0.1", args.port), _Handler)
    server.counters = counters
    server.app_name = args.name
    stop = threading.Event()
    threading.Thread(target=_load, args=(counters, stop), daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


class VersionedApp:
    """Start ``python -m e2e.versioned_app`` as a subprocess and talk to it.

    app = VersionedApp("v2", log_dir).start()
    prometheus.add_target("web", app.address, {"namespace": ns, "pod_template_hash": h})
    app.set_traffic(rate=1000, error_share=0.1)
    app.stats()    # {"total": ..., "errors": ...}
    app.stop()
    """

    def __init__(self, name: str, log_dir: Path, seed: int = 1, median: float = 0.05, sigma: float = 0.5) -> None:
        self.name = name
        self.log_path = Path(log_dir) / f"app-{name}.log"
        self.seed, self.median, self.sigma = seed, median, sigma
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 15.0) -> VersionedApp:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "e2e.versioned_app",
                "--name",
                self.name,
                "--seed",
                str(self.seed),
                "--median",
                str(self.median),
                "--sigma",
                str(self.sigma),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        assert self.proc.stdout is not None
        result: dict[str, Any] = {}

        def read() -> None:
            line = self.proc.stdout.readline() if self.proc and self.proc.stdout else b""
            if line:
                result.update(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if "port" not in result:
            self.stop()
            raise RuntimeError(f"versioned app {self.name} did not start; see {self.log_path}")
        self.port = int(result["port"])
        return self

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def set_traffic(
        self, rate: float | None = None, error_share: float | None = None, median: float | None = None
    ) -> dict[str, Any]:
        return self._call("POST", "/traffic", {"rate": rate, "error_share": error_share, "median": median})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> VersionedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
