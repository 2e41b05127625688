"""A bounded load generator for 127.0.0.1 only (e2e tests and the demo).

Every loop is bounded twice, in requests and in seconds, and refuses any host that is not on the
loopback range. Responses are tallied by the ``x-version`` header the app servers set (a response
without it, e.g. Envoy's own 503, counts as version ``"-"``) and by status class.

    lg = LoadGen("http://127.0.0.1:10000/")
    counts = lg.burst(1000)                        # 1000 requests back to back -> Counts
    with lg.background(rate=200, max_seconds=120):  # paced load in a thread until the block ends
        ...
        lg.snapshot()                               # Counts so far (thread-safe)
"""

from __future__ import annotations

import http.client
import ipaddress
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_REQUESTS = 2_000_000
MAX_SECONDS = 3600.0


@dataclass
class Counts:
    """Responses by version and by (version, status class), plus transport errors."""

    by_version: dict[str, int] = field(default_factory=dict)
    errors_by_version: dict[str, int] = field(default_factory=dict)  # 5xx answers
    transport_errors: int = 0
    total: int = 0

    def add(self, version: str, status: int) -> None:
        self.total += 1
        self.by_version[version] = self.by_version.get(version, 0) + 1
        if status >= 500:
            self.errors_by_version[version] = self.errors_by_version.get(version, 0) + 1

    def share(self, version: str) -> float:
        """Share of answered requests served by ``version`` (0..1)."""
        answered = sum(self.by_version.values())
        return self.by_version.get(version, 0) / answered if answered else 0.0

    def error_rate(self, version: str) -> float:
        n = self.by_version.get(version, 0)
        return self.errors_by_version.get(version, 0) / n if n else 0.0

    def minus(self, earlier: Counts) -> Counts:
        out = Counts(
            transport_errors=self.transport_errors - earlier.transport_errors, total=self.total - earlier.total
        )
        out.by_version = {k: v - earlier.by_version.get(k, 0) for k, v in self.by_version.items()}
        out.errors_by_version = {k: v - earlier.errors_by_version.get(k, 0) for k, v in self.errors_by_version.items()}
        return out

    def copy(self) -> Counts:
        return Counts(dict(self.by_version), dict(self.errors_by_version), self.transport_errors, self.total)


def _check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"loadgen only targets loopback addresses, not {host!r}")


class LoadGen:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"need http://127.0.0.1:PORT/..., got {url!r}")
        _check_loopback(parts.hostname)
        self.host, self.port = parts.hostname, parts.port
        self.path = parts.path or "/"
        self.timeout = timeout
        self._counts = Counts()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _one(self, conn: http.client.HTTPConnection | None) -> tuple[http.client.HTTPConnection | None, str, int]:
        try:
            if conn is None:
                conn = self._connect()
            conn.request("GET", self.path)
            resp = conn.getresponse()
            resp.read()
            version = resp.getheader("x-version") or "-"
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
            return conn, version, resp.status
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            return None, "", -1

    def _record(self, counts: Counts, version: str, status: int) -> None:
        if status < 0:
            counts.transport_errors += 1
        else:
            counts.add(version, status)

    def burst(self, n: int, max_seconds: float = 120.0) -> Counts:
        """``n`` requests back to back on one keep-alive connection (bounded by ``max_seconds``)."""
        n = min(int(n), MAX_REQUESTS)
        deadline = time.monotonic() + min(max_seconds, MAX_SECONDS)
        counts = Counts()
        conn: http.client.HTTPConnection | None = None
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            conn, version, status = self._one(conn)
            self._record(counts, version, status)
            with self._lock:
                self._record(self._counts, version, status)
        if conn is not None:
            conn.close()
        return counts

    def snapshot(self) -> Counts:
        with self._lock:
            return self._counts.copy()

    def _paced(self, rate: float, max_seconds: float, max_requests: int) -> None:
        interval = 1.0 / rate
        start = time.monotonic()
        deadline = start + min(max_seconds, MAX_SECONDS)
        conn: http.client.HTTPConnection | None = None
        sent = 0
        while not self._stop.is_set() and sent < min(max_requests, MAX_REQUESTS):
            now = time.monotonic()
            if now > deadline:
                break
            due = start + sent * interval
            if due > now:
                self._stop.wait(due - now)
                continue
            conn, version, status = self._one(conn)
            sent += 1
            with self._lock:
                self._record(self._counts, version, status)
            if status < 0:
                self._stop.wait(0.05)  # the proxy is away: do not spin
        if conn is not None:
            conn.close()

    @contextmanager
    def background(
        self, rate: float = 200.0, max_seconds: float = 600.0, max_requests: int = 500_000, workers: int = 1
    ) -> Iterator[LoadGen]:
        """Paced load (``rate`` requests/s in total) in ``workers`` threads while the block runs."""
        self._stop.clear()
        threads = [
            threading.Thread(
                target=self._paced,
                args=(rate / workers, max_seconds, max_requests // workers),
                name=f"loadgen-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=10)
