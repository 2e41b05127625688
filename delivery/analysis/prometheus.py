"""A thin, typed Prometheus HTTP API client (``/api/v1/query`` and ``/api/v1/query_range``).

httpx does the I/O with explicit timeouts; tenacity is the only retry layer and retries only what
may succeed on a second try (unreachable server, timeouts, 5xx, 429).  Errors are mapped onto the
project's tree: :class:`MetricsUnavailable` for those, :class:`QueryError` for a rejected query
(400/422 carry Prometheus' own error text, other 4xx too).  NaN and ±Inf samples are returned as
floats (Prometheus encodes them as "NaN", "+Inf", "-Inf"); callers decide what they mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from delivery.errors import MetricsUnavailable, QueryError


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

    ``timeout`` bounds each HTTP attempt (connect, read, write, pool) and is also sent to
    Prometheus as the query evaluation timeout; ``attempts`` bounds the retries of transient
    failures, with exponential backoff capped at ``backoff_max`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff_max: float = 2.0,
        headers: dict[str, str] | None = None,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must start with http:// or https://, got {url!r}")
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be > 0 and attempts >= 1")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_max = backoff_max
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout),
            headers=headers,
            verify=verify,
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
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=self.backoff_max),
            retry=retry_if_exception_type(MetricsUnavailable),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._once(path, params, promql)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, path: str, params: dict[str, str], promql: str) -> dict[str, Any]:
        try:
            # POST form: long PromQL does not hit URL length limits
            resp = self._client.post(path, data=params)
        except httpx.TimeoutException as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} timed out after {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} is unreachable: {exc}") from exc
        body: Any
        try:
            body = resp.json()
        except ValueError:
            body = None
        err = ""
        if isinstance(body, dict) and body.get("status") == "error":
            err = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
        code = resp.status_code
        if code in (400, 422):
            raise QueryError(f"Prometheus rejected the query ({err or resp.text[:300]}): {_short(promql)}")
        if code == 429 or code >= 500:
            raise MetricsUnavailable(f"Prometheus at {self.url} answered {code}: {err or resp.text[:200]}")
        if code >= 400:
            raise QueryError(f"Prometheus at {self.url} answered {code} for {path}: {err or resp.text[:200]}")
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            if err:
                raise QueryError(f"Prometheus rejected the query ({err}): {_short(promql)}")
            raise MetricsUnavailable(f"Prometheus at {self.url} sent an unreadable answer (HTTP {code})")
        data: dict[str, Any] = body["data"]
        return data
