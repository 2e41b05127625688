"""Caps on what one Prometheus answer may cost: bytes read, series, and one wall-clock deadline per
query. Against a real local HTTP server (tests/promserver.py), since the point is what is read off
the socket. Over a cap is an inconclusive check naming the cap, never a pass, never a crash."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest

from delivery.analysis.checks import CheckSpec
from delivery.analysis.prometheus import PrometheusClient
from delivery.analysis.providers import PrometheusProvider
from delivery.analysis.runner import Analyser, AnalysisTarget
from delivery.errors import MetricsUnavailable, QueryError, QueryLimitExceeded
from tests.promserver import FakePrometheus, drip, series_answer, whole


@pytest.fixture
def server() -> Iterator[FakePrometheus]:
    fake = FakePrometheus(whole(series_answer(20_000)))
    yield fake
    fake.close()


def test_20k_series_answer_is_refused_naming_the_series_cap_at_bounded_cost(server: FakePrometheus) -> None:
    c = PrometheusClient(server.url, attempts=1, max_series=1000)
    tracemalloc.start()
    cpu = time.process_time()
    try:
        with pytest.raises(QueryLimitExceeded, match=r"more than 1000 series") as err:
            c.query("http_requests_total")
        spent = time.process_time() - cpu
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(err.value, QueryError)  # never retried: asking again costs as much
    assert "--prometheus-max-series" in str(err.value)  # says what to do
    assert len(server.requests) == 1
    # without the cap the same answer peaked at 26.5 MiB and 0.36 s CPU (3.5 MiB of JSON)
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert spent < 0.2


def test_range_answer_over_the_series_cap_is_refused(server: FakePrometheus) -> None:
    server.answer = whole(series_answer(1500, kind="matrix"))
    c = PrometheusClient(server.url, attempts=1, max_series=1000)
    with pytest.raises(QueryLimitExceeded, match="1000 series"):
        c.query_range("x", 1700000000, 1700000060, 60)


def test_answer_over_the_byte_cap_stops_reading_and_names_the_cap(server: FakePrometheus) -> None:
    c = PrometheusClient(server.url, attempts=1, max_bytes=1 << 20, max_series=50_000)  # 3.5 MiB answer
    with pytest.raises(QueryLimitExceeded, match=r"more than 1 MiB") as err:
        c.query("http_requests_total")
    assert "--prometheus-max-bytes" in str(err.value)


def test_under_the_caps_the_answer_is_read_whole(server: FakePrometheus) -> None:
    server.answer = whole(series_answer(300))
    c = PrometheusClient(server.url, attempts=1, max_series=300, max_bytes=1 << 20)
    assert len(c.query("x")) == 300


def test_one_wall_clock_deadline_per_query_not_per_read(server: FakePrometheus) -> None:
    # a byte every 0.2 s keeps every read under a 1 s read timeout for 6 s
    server.answer = drip(0.2, 6.0)
    c = PrometheusClient(server.url, attempts=3, timeout=1.0, backoff_max=0.01)
    t0 = time.monotonic()
    with pytest.raises(MetricsUnavailable, match=r"no complete answer within 1s"):
        c.query("x")
    assert time.monotonic() - t0 < 2.0  # the retries share the deadline too


def test_a_capped_answer_makes_the_check_inconclusive_naming_the_cap(server: FakePrometheus) -> None:
    provider = PrometheusProvider(server.url, attempts=1, max_series=1000)
    spec = CheckSpec("errors", "errors", None, {"total": "sum(x)", "errors": "sum(y)"}, resolution=60.0)
    target = AnalysisTarget("shop", "shop", "abc", "def", "", "")
    result = Analyser(provider).run([spec], target, 1700000000.0, 1700000090.0)
    assert result.outcome == "inconclusive"
    assert "1000 series" in result.checks[0].message
