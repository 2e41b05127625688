"""A thin, typed Prometheus HTTP API client (``/api/v1/query`` and ``/api/v1/query_range``).

httpx does the I/O with explicit timeouts; tenacity is the only retry layer and retries only what
may succeed on a second try (unreachable server, timeouts, 5xx, 429).  Errors are mapped onto the
project's tree: :class:`MetricsUnavailable` for those, :class:`QueryError` for a rejected query
(400/422 carry Prometheus' own error text, other 4xx too).  NaN and ±Inf samples are returned as
floats (Prometheus encodes them as "NaN", "+Inf", "-Inf"); callers decide what they mean.

What one answer may cost is bounded (every tenant may be hostile, and tenants write PromQL): the
body is streamed and reading stops at ``max_bytes``; an answer with more than ``max_series`` series
is refused (counted while reading, so a 20,000-series answer is dropped after its first thousand);
and ``timeout`` is one wall-clock deadline for the whole query, retries included, not a per-read
timeout a slow-dripping server could renew forever.  Over a cap is :class:`QueryLimitExceeded`.
Credentials come from files (:mod:`delivery.analysis.auth`); a URL with user info is refused, and
every message names the server by :func:`redact_url` only.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from delivery.analysis.auth import USERINFO_HINT, CredentialError, PrometheusAuth, Scrub, has_userinfo, redact_url
from delivery.errors import MetricsUnavailable, QueryError, QueryLimitExceeded

DEFAULT_MAX_SERIES = 1000
DEFAULT_MAX_BYTES = 8 << 20
# each series of a query answer starts with this key; counted while reading, so an answer far over
# the series cap is dropped early (the count of the parsed answer is the exact check)
_SERIES_KEY = re.compile(rb'"metric"\s*:\s*\{')
_TAIL = 64


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str] = field(hash=False)
    timestamp: float
    value: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)


@dataclass(frozen=True)
class Series:
    """One series of a range query: (timestamp, value) points in time order."""

    labels: dict[str, str] = field(hash=False)
    points: tuple[tuple[float, float], ...]


def _value(raw: Any, query: str) -> tuple[float, float]:
    try:
        ts, text = raw
        return float(ts), float(text)  # float() parses "NaN", "+Inf", "-Inf"
    except (TypeError, ValueError) as exc:
        raise MetricsUnavailable(f"malformed sample {raw!r} from Prometheus for {query!r}") from exc


def _short(query: str) -> str:
    q = " ".join(query.split())
    return q if len(q) <= 200 else q[:197] + "..."


class PrometheusClient:
    """Synchronous client for one Prometheus server.

    ``timeout`` is the wall-clock deadline of one query, retries included (also sent to Prometheus
    as the evaluation timeout); ``attempts`` bounds the retries of transient failures, with
    exponential backoff capped at ``backoff_max`` seconds. ``max_series`` and ``max_bytes`` cap one
    answer; ``auth`` says how to authenticate (files, never the URL).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff_max: float = 2.0,
        max_series: int = DEFAULT_MAX_SERIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        auth: PrometheusAuth | None = None,
        headers: dict[str, str] | None = None,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must start with http:// or https://, got {redact_url(url)!r}")
        if has_userinfo(url):
            raise ValueError(f"the Prometheus URL {redact_url(url)} carries credentials: {USERINFO_HINT}")
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be > 0 and attempts >= 1")
        if max_series < 1 or max_bytes < 1024:
            raise ValueError("max_series must be >= 1 and max_bytes >= 1024")
        self.auth = auth or PrometheusAuth(headers=dict(headers or {}))
        self.url = url.rstrip("/")
        self.shown = redact_url(self.url)  # the only form of the URL any message carries
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_max = backoff_max
        self.max_series = max_series
        self.max_bytes = max_bytes
        client_auth = self.auth.httpx_auth()
        self.scrub = Scrub(self.auth, client_auth)
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout),
            headers=dict(self.auth.headers),
            auth=client_auth,
            verify=self.auth.verify() if verify is True else verify,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API

    def query(self, promql: str, at: float | None = None) -> tuple[Sample, ...]:
        """Evaluate an instant query; a scalar result becomes one unlabelled sample."""
        params: dict[str, str] = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._call("/api/v1/query", params, promql)
        rtype, result = data.get("resultType"), data.get("result")
        if rtype == "vector" and isinstance(result, list):
            out = []
            for item in result:
                ts, v = _value(item.get("value"), promql)
                out.append(Sample(dict(item.get("metric") or {}), ts, v))
            return tuple(out)
        if rtype == "scalar":
            ts, v = _value(result, promql)
            return (Sample({}, ts, v),)
        raise QueryError(f"query returned a {rtype} result, an instant vector or scalar was expected: {_short(promql)}")

    def query_range(self, promql: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        """Evaluate a range query over [start, end] every ``step`` seconds."""
        if step <= 0 or end < start:
            raise ValueError("need step > 0 and end >= start")
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
            "timeout": f"{self.timeout:g}s",
        }
        data = self._call("/api/v1/query_range", params, promql)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise QueryError(f"range query returned a {data.get('resultType')} result: {_short(promql)}")
        return tuple(
            Series(
                dict(item.get("metric") or {}),
                tuple(_value(v, promql) for v in item.get("values") or ()),
            )
            for item in data["result"]
        )

    # ------------------------------------------------------------------ transport

    def _call(self, path: str, params: dict[str, str], promql: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.timeout),
            wait=wait_exponential(multiplier=0.2, max=self.backoff_max),
            retry=retry_if_exception_type(MetricsUnavailable),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                try:
                    return self._once(path, params, promql, deadline)
                except (MetricsUnavailable, QueryError) as exc:
                    clean = self.scrub(str(exc))
                    if clean != str(exc):
                        raise type(exc)(clean) from None
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _late(self) -> MetricsUnavailable:
        return MetricsUnavailable(
            f"Prometheus at {self.shown} timed out: no complete answer within {self.timeout:g}s "
            "(one deadline per query, retries included; --prometheus-timeout)"
        )

    def _read(self, resp: httpx.Response, deadline: float) -> bytes:
        """The body, streamed: stops at the byte cap, the series cap or the deadline."""
        body = bytearray()
        series = 0
        tail = b""
        for chunk in resp.iter_bytes():
            if time.monotonic() > deadline:
                raise self._late()
            if len(body) + len(chunk) > self.max_bytes:
                raise QueryLimitExceeded(
                    f"Prometheus' answer is larger than the cap: more than {_size(self.max_bytes)} "
                    "(aggregate the query, e.g. sum by (...), or raise --prometheus-max-bytes)"
                )
            body += chunk
            if resp.status_code < 300:
                window = tail + chunk  # a key cut by the chunk boundary is counted once, here
                series += sum(1 for m in _SERIES_KEY.finditer(window) if m.end() > len(tail))
                tail = window[-_TAIL:]
                if series > self.max_series:
                    raise self._too_many()
        return bytes(body)

    def _too_many(self) -> QueryLimitExceeded:
        return QueryLimitExceeded(
            f"the query returned more than {self.max_series} series, the cap "
            "(aggregate it, e.g. sum by (le) (...), or raise --prometheus-max-series)"
        )

    def _once(self, path: str, params: dict[str, str], promql: str, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        try:
            # POST form: long PromQL does not hit URL length limits; no read may outlast the deadline
            with self._client.stream("POST", path, data=params, timeout=httpx.Timeout(min(self.timeout, left))) as resp:
                raw = self._read(resp, deadline)
        except httpx.TimeoutException:
            raise self._late() from None
        except httpx.TransportError as exc:
            raise MetricsUnavailable(
                f"Prometheus at {self.shown} is unreachable: {type(exc).__name__}: {self.scrub(str(exc))}"
            ) from None
        except CredentialError as exc:
            raise MetricsUnavailable(str(exc)) from None
        text = raw.decode("utf-8", errors="replace")
        body: Any
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        err = ""
        if isinstance(body, dict) and body.get("status") == "error":
            err = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
        code = resp.status_code
        if code in (400, 422):
            raise QueryError(f"Prometheus rejected the query ({err or text[:300]}): {_short(promql)}")
        if code in (401, 403):  # not retried: a wrong password stays wrong
            raise QueryError(
                f"Prometheus at {self.shown} answered {code} ({'unauthorized' if code == 401 else 'forbidden'}): "
                "check the credentials (--prometheus-bearer-token-file, or --prometheus-username and "
                "--prometheus-password-file)"
            )
        if code == 429 or code >= 500:
            raise MetricsUnavailable(f"Prometheus at {self.shown} answered {code}: {err or text[:200]}")
        if code >= 400:
            raise QueryError(f"Prometheus at {self.shown} answered {code} for {path}: {err or text[:200]}")
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            if err:
                raise QueryError(f"Prometheus rejected the query ({err}): {_short(promql)}")
            raise MetricsUnavailable(f"Prometheus at {self.shown} sent an unreadable answer (HTTP {code})")
        data: dict[str, Any] = body["data"]
        result = data.get("result")
        if isinstance(result, list) and len(result) > self.max_series:
            raise self._too_many()
        return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"
