"""The thin Prometheus client against an httpx.MockTransport (no server)."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import pytest

from delivery.analysis.prometheus import PrometheusClient
from delivery.analysis.providers import (
    MetricProvider,
    PrometheusProvider,
    make_provider,
    provider_names,
    register_provider,
)
from delivery.errors import MetricsUnavailable, QueryError

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, attempts: int = 3) -> tuple[PrometheusClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def wrapped(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    return PrometheusClient(
        "http://prom:9090/", attempts=attempts, backoff_max=0.01, transport=httpx.MockTransport(wrapped)
    ), seen


def ok(data: dict) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "data": data})


def form(req: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(req.content.decode()))


def test_instant_vector_is_typed_and_sends_time_and_timeout() -> None:
    c, seen = client(
        lambda r: ok({"resultType": "vector", "result": [{"metric": {"le": "0.1"}, "value": [1700000000.5, "42"]}]})
    )
    (s,) = c.query("sum(x)", at=1700000000.0)
    assert s.labels == {"le": "0.1"} and s.timestamp == 1700000000.5 and s.value == 42.0 and s.finite
    req = seen[0]
    assert req.url.path == "/api/v1/query" and req.method == "POST"
    assert form(req) == {"query": "sum(x)", "time": "1700000000.000", "timeout": "10s"}


def test_nan_and_inf_samples_are_floats_not_errors() -> None:
    c, _ = client(
        lambda r: ok(
            {
                "resultType": "vector",
                "result": [
                    {"metric": {"a": "1"}, "value": [1, "NaN"]},
                    {"metric": {"a": "2"}, "value": [1, "+Inf"]},
                    {"metric": {"a": "3"}, "value": [1, "-Inf"]},
                ],
            }
        )
    )
    a, b, d = c.query("x")
    assert math.isnan(a.value) and b.value == math.inf and d.value == -math.inf
    assert not (a.finite or b.finite or d.finite)


def test_empty_result_is_an_empty_tuple() -> None:
    c, _ = client(lambda r: ok({"resultType": "vector", "result": []}))
    assert c.query("x") == ()


def test_scalar_result() -> None:
    c, _ = client(lambda r: ok({"resultType": "scalar", "result": [1, "3"]}))
    (s,) = c.query("scalar(x)")
    assert s.labels == {} and s.value == 3.0


def test_range_query() -> None:
    c, seen = client(
        lambda r: ok({"resultType": "matrix", "result": [{"metric": {"pod": "a"}, "values": [[10, "1"], [20, "2"]]}]})
    )
    (series,) = c.query_range("x", 0, 20, 10)
    assert series.labels == {"pod": "a"} and series.points == ((10.0, 1.0), (20.0, 2.0))
    assert seen[0].url.path == "/api/v1/query_range"
    assert form(seen[0])["step"] == "10"


@pytest.mark.parametrize("status", [400, 422])
def test_bad_promql_raises_query_error_with_prometheus_text_and_no_retry(status: int) -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error at char 5: unexpected "}"'}
    c, seen = client(lambda r: httpx.Response(status, json=body))
    with pytest.raises(QueryError, match="parse error at char 5") as info:
        c.query("sum(}")
    assert "sum(}" in str(info.value)
    assert len(seen) == 1


def test_other_4xx_is_query_error() -> None:
    c, seen = client(lambda r: httpx.Response(403, text="forbidden"))
    with pytest.raises(QueryError, match="403"):
        c.query("x")
    assert len(seen) == 1


def test_5xx_is_retried_then_metrics_unavailable() -> None:
    c, seen = client(
        lambda r: httpx.Response(503, json={"status": "error", "errorType": "timeout", "error": "query timed out"})
    )
    with pytest.raises(MetricsUnavailable, match="503"):
        c.query("x")
    assert len(seen) == 3


def test_transient_failure_then_success() -> None:
    answers = [httpx.Response(502, text="bad gateway"), ok({"resultType": "vector", "result": []})]
    c, seen = client(lambda r: answers.pop(0))
    assert c.query("x") == ()
    assert len(seen) == 2


def test_unreachable_and_timeout_are_metrics_unavailable() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    c, seen = client(refuse, attempts=2)
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        c.query("x")
    assert len(seen) == 2

    def slow(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=req)

    c, _ = client(slow, attempts=1)
    with pytest.raises(MetricsUnavailable, match="timed out"):
        c.query("x")


def test_real_refused_port_is_metrics_unavailable() -> None:
    c = PrometheusClient("http://127.0.0.1:9", attempts=1, timeout=2)
    with pytest.raises(MetricsUnavailable):
        c.query("x")


def test_garbage_answers() -> None:
    c, _ = client(lambda r: httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(MetricsUnavailable, match="unreadable"):
        c.query("x")
    c, _ = client(lambda r: ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, "many"]}]}))
    with pytest.raises(MetricsUnavailable, match="malformed"):
        c.query("x")
    c, _ = client(lambda r: ok({"resultType": "matrix", "result": []}))
    with pytest.raises(QueryError, match="matrix"):
        c.query("x[5m]")


def test_bad_construction() -> None:
    with pytest.raises(ValueError):
        PrometheusClient("prom:9090")
    with pytest.raises(ValueError):
        PrometheusClient("http://prom", timeout=0)


def test_factory() -> None:
    p = make_provider("prometheus", url="http://prom:9090", timeout=3)
    assert isinstance(p, PrometheusProvider) and p.client.timeout == 3
    p.close()
    with pytest.raises(ValueError, match="unknown metric provider"):
        make_provider("graphite")

    class Fake(MetricProvider):
        name = "fake"

        def instant(self, query, at):  # type: ignore[no-untyped-def]
            return ()

        def range(self, query, start, end, step):  # type: ignore[no-untyped-def]
            return ()

    register_provider("fake", lambda **kw: Fake())
    assert "fake" in provider_names()
    assert isinstance(make_provider("fake"), Fake)
