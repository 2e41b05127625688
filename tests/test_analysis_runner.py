"""Analyser.run against fake providers: wiring, family-wise alpha, never raising, serialisation."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from delivery.analysis.checks import parse_checks
from delivery.analysis.prometheus import Sample, Series
from delivery.analysis.providers import MetricProvider, PrometheusProvider
from delivery.analysis.runner import Analyser, AnalysisResult, AnalysisTarget, CheckResult, combine
from delivery.errors import MetricsUnavailable, QueryError

TARGET = AnalysisTarget("shop", "web", "canaryhash", "basehash", "web-canary", "web-stable")


def _window_seconds(query: str) -> float:
    m = re.search(r"\[(\d+)(ms|s)\]", query)
    assert m, f"no [window] in {query}"
    return int(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


class Fake(MetricProvider):
    """Answers by which arm (hash/service) and which series the rendered PromQL asks for.

    ``answer`` gives the counts over the whole analysed span (``span`` seconds, traffic at a steady
    rate): an instant query over a ``[w]`` window gets w/span of them, a range query w/span at each
    step (the per-window increments increase() would give)."""

    def __init__(self, answer: Callable[[str, str, str], tuple[Sample, ...]], span: float = 600.0) -> None:
        self.answer = answer
        self.span = span
        self.queries: list[tuple[str, float]] = []
        self.ranges: list[tuple[str, float, float, float]] = []

    def _ask(self, query: str) -> tuple[Sample, ...]:
        arm = "canary" if ("canaryhash" in query or "web-canary" in query) else "baseline"
        kind = "buckets" if "_bucket" in query else ("errors" if ('code=~"5' in query or "rq_xx" in query) else "total")
        return self.answer(arm, kind, query)

    def instant(self, query: str, at: float) -> tuple[Sample, ...]:
        self.queries.append((query, at))
        f = _window_seconds(query) / self.span
        return tuple(Sample(s.labels, at, s.value * f) for s in self._ask(query))

    def range(self, query: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        self.queries.append((query, end))
        self.ranges.append((query, start, end, step))
        f = _window_seconds(query) / self.span
        times = np.arange(start, end + step / 2, step)
        return tuple(Series(s.labels, tuple((float(t), s.value * f) for t in times)) for s in self._ask(query))


def counts(data: dict[str, dict[str, float | None]]) -> Callable[[str, str, str], tuple[Sample, ...]]:
    def answer(arm: str, kind: str, query: str) -> tuple[Sample, ...]:
        v = data[arm].get(kind)
        return () if v is None else (Sample({}, 0.0, float(v)),)

    return answer


def hist(canary: dict[str, float], baseline: dict[str, float]) -> Callable[[str, str, str], tuple[Sample, ...]]:
    def answer(arm: str, kind: str, query: str) -> tuple[Sample, ...]:
        h = canary if arm == "canary" else baseline
        return tuple(Sample({"le": le}, 0.0, v) for le, v in h.items())

    return answer


ERRORS = parse_checks({"deliver.dev/analysis": "error-rate"})


def test_error_regression_fails_and_queries_are_rendered() -> None:
    fake = Fake(counts({"canary": {"total": 4000, "errors": 48}, "baseline": {"total": 4000, "errors": 20}}), span=93.0)
    r = Analyser(fake).run(ERRORS, TARGET, 1000.0, 1093.0)
    assert r.outcome == "fail"
    (c,) = r.checks
    assert c.outcome == "fail" and c.n_canary == 4000 and c.e_value is not None and c.e_value >= 20
    # one whole 60 s window by a range query (step 60 s), the last 33 s by an instant query at the end
    q, first, last, step = fake.ranges[0]
    assert (first, last, step) == (1060.0, 1060.0, 60.0) and "[60s]" in q
    assert 'namespace="shop"' in q and 'pod_template_hash="canaryhash"' in q
    q, at = next((q, at) for q, at in fake.queries if "[33s]" in q)
    assert at == 1093.0
    assert any('pod_template_hash="basehash"' in q for q, _ in fake.queries)
    assert r.summary().startswith("error-rate fail (e=")


def test_missing_error_series_means_zero_errors() -> None:
    fake = Fake(counts({"canary": {"total": 50_000, "errors": None}, "baseline": {"total": 50_000, "errors": None}}))
    r = Analyser(fake).run(ERRORS, TARGET, 0, 600)
    assert r.outcome == "pass"


def test_missing_totals_is_inconclusive_no_data() -> None:
    fake = Fake(counts({"canary": {"total": None}, "baseline": {"total": 5000, "errors": 1}}))
    r = Analyser(fake).run(ERRORS, TARGET, 0, 600)
    assert r.outcome == "inconclusive"
    assert "no data" in r.checks[0].message and "canary" in r.checks[0].message


def test_nan_sample_is_inconclusive_with_message() -> None:
    fake = Fake(counts({"canary": {"total": math.nan, "errors": 0}, "baseline": {"total": 5000, "errors": 1}}))
    r = Analyser(fake).run(ERRORS, TARGET, 0, 600)
    assert r.outcome == "inconclusive" and "NaN" in r.checks[0].message


@pytest.mark.parametrize(
    "exc", [MetricsUnavailable("Prometheus at http://p is unreachable"), QueryError("bad"), RuntimeError("boom")]
)
def test_provider_errors_are_inconclusive_never_raised(exc: Exception) -> None:
    def answer(arm: str, kind: str, query: str) -> tuple[Sample, ...]:
        raise exc

    r = Analyser(Fake(answer)).run(parse_checks({"deliver.dev/analysis": "error-rate,latency"}), TARGET, 0, 600)
    assert r.outcome == "inconclusive"
    assert all(c.outcome == "inconclusive" and str(exc) in c.message for c in r.checks)


def test_prometheus_down_end_to_end_is_inconclusive() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    provider = PrometheusProvider(
        "http://prom:9090", attempts=2, backoff_max=0.01, transport=httpx.MockTransport(refuse)
    )
    r = Analyser(provider).run(ERRORS, TARGET, 0, 600)
    assert r.outcome == "inconclusive" and "unreachable" in r.checks[0].message


def test_unsafe_target_value_is_refused_not_interpolated() -> None:
    fake = Fake(counts({"canary": {"total": 1}, "baseline": {"total": 1}}))
    bad = AnalysisTarget("shop", "web", 'x"} or vector(1) #', "basehash", "", "")
    r = Analyser(fake).run(ERRORS, bad, 0, 600)
    assert r.outcome == "inconclusive" and "refusing" in r.checks[0].message
    assert fake.queries == []


def test_envoy_template_needs_services() -> None:
    checks = parse_checks({"deliver.dev/analysis": "error-rate", "deliver.dev/analysis-metrics": "envoy"})
    fake = Fake(counts({"canary": {"total": 4000, "errors": 48}, "baseline": {"total": 4000, "errors": 20}}))
    r = Analyser(fake).run(checks, TARGET, 0, 600)
    assert r.outcome == "fail"
    assert any('envoy_cluster_name="web-canary"' in q for q, _ in fake.queries)
    r = Analyser(fake).run(checks, AnalysisTarget("shop", "web", "a", "b", "", ""), 0, 600)
    assert r.outcome == "inconclusive" and "{service}" in r.checks[0].message


def test_bad_window_is_inconclusive() -> None:
    r = Analyser(Fake(counts({}))).run(ERRORS, TARGET, 600, 600)
    assert r.outcome == "inconclusive" and "window" in r.checks[0].message


def _cum(per_bucket: list[float], les: list[str]) -> dict[str, float]:
    out, acc = {}, 0.0
    for le, v in zip(les, per_bucket, strict=True):
        acc += v
        out[le] = acc
    return out


LES = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"]
LATENCY = parse_checks({"deliver.dev/analysis": "latency"})


def test_latency_tail_regression_fails_from_buckets() -> None:
    base = _cum([2000, 3000, 4400, 500, 90, 10], LES)
    canary = _cum([2000, 3000, 4000, 700, 250, 50], LES)
    r = Analyser(Fake(hist(canary, base))).run(LATENCY, TARGET, 0, 600)
    assert r.outcome == "fail", r.summary()


def test_latency_aa_from_buckets_passes() -> None:
    h = _cum([20000, 30000, 44000, 5000, 900, 100], LES)
    r = Analyser(Fake(hist(h, dict(h)))).run(LATENCY, TARGET, 0, 600)
    assert r.outcome == "pass", r.summary()


def test_latency_uses_common_bucket_bounds_only() -> None:
    base = _cum([2000, 3000, 4400, 500, 90, 10], LES)
    canary = dict(base)
    canary["0.3"] = base["0.25"] + 100  # a bound only the canary has
    r = Analyser(Fake(hist(canary, base))).run(LATENCY, TARGET, 0, 600)
    assert r.checks[0].outcome != "fail"
    assert "0.3" not in r.checks[0].message


def test_latency_thresholds_are_seeded_by_the_baselines_window_before_the_span() -> None:
    # the span [600, 660] is one (first) window; the baseline's minute before it seeds the
    # thresholds, so the first window's are not picked from its own data (cores.latency_core)
    base = _cum([2000, 3000, 4400, 500, 90, 10], LES)
    canary = _cum([2000, 3000, 4000, 700, 250, 50], LES)
    fake = Fake(hist(canary, base), span=60.0)
    r = Analyser(fake).run(LATENCY, TARGET, 600, 660)
    prior = [(q, at) for q, at in fake.queries if at == 600 and "basehash" in q]
    assert len(prior) == 1 and _window_seconds(prior[0][0]) == 60, fake.queries
    assert r.outcome == "fail", r.summary()


def test_latency_without_a_prior_window_judges_the_first_window_by_its_own_data() -> None:
    class NoPrior(Fake):
        def instant(self, query: str, at: float) -> tuple[Sample, ...]:
            if at == 600:
                raise QueryError("no data before the span")
            return super().instant(query, at)

    base = _cum([2000, 3000, 4400, 500, 90, 10], LES)
    canary = _cum([2000, 3000, 4000, 700, 250, 50], LES)
    r = Analyser(NoPrior(hist(canary, base), span=60.0)).run(LATENCY, TARGET, 600, 660)
    assert r.outcome == "fail", r.summary()


def test_latency_series_without_le_is_inconclusive() -> None:
    def answer(arm: str, kind: str, query: str) -> tuple[Sample, ...]:
        return (Sample({"pod": "x"}, 0, 5.0),)

    r = Analyser(Fake(answer)).run(LATENCY, TARGET, 0, 600)
    assert r.outcome == "inconclusive" and "le" in r.checks[0].message


def test_family_wise_alpha_is_split_across_checks() -> None:
    # e ≈ 25: above 1/0.05 = 20 (one check) but below 2/0.05 = 40 (two checks)
    data = {"canary": {"total": 4000, "errors": 43}, "baseline": {"total": 4000, "errors": 20}}
    one = Analyser(Fake(counts(data))).run(ERRORS, TARGET, 0, 600).checks[0]
    assert one.e_value is not None and 20 <= one.e_value < 40, one.e_value
    assert one.outcome == "fail"
    two = parse_checks({"deliver.dev/analysis": "error-rate,latency", "deliver.dev/analysis.latency": "critical=false"})

    def answer(arm: str, kind: str, query: str) -> tuple[Sample, ...]:
        return counts(data)(arm, kind, query) if kind != "buckets" else ()

    r = Analyser(Fake(answer)).run(two, TARGET, 0, 600)
    assert r.checks[0].outcome == "inconclusive"


def _cr(outcome: str, critical: bool = True) -> CheckResult:
    return CheckResult("c", outcome, None, None, None, None, 0, 0, critical, "")


def test_combine() -> None:
    assert combine([_cr("pass"), _cr("pass")]) == "pass"
    assert combine([_cr("pass"), _cr("inconclusive")]) == "inconclusive"
    assert combine([_cr("fail"), _cr("inconclusive")]) == "fail"
    assert combine([_cr("pass"), _cr("fail", critical=False)]) == "pass"
    assert combine([_cr("pass"), _cr("inconclusive", critical=False)]) == "pass"
    assert combine([_cr("pass", critical=False)]) == "inconclusive"
    assert combine([]) == "inconclusive"


def test_result_round_trips_through_compact_json() -> None:
    fake = Fake(counts({"canary": {"total": 4000, "errors": 48}, "baseline": {"total": 4000, "errors": 20}}))
    r = Analyser(fake).run(parse_checks({"deliver.dev/analysis": "error-rate,latency"}), TARGET, 1000.25, 1600.5)
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False, separators=(",", ":"))
    assert len(text) < 1000
    back = AnalysisResult.from_dict(json.loads(text))
    assert back.to_dict() == d
    assert back.outcome == r.outcome and back.window_start == 1000.25 and back.checks[0].n_canary == 4000


def test_each_check_records_its_rates_bound_and_fail_threshold() -> None:
    data = {"canary": {"total": 4000, "errors": 48}, "baseline": {"total": 4000, "errors": 20}}
    two = parse_checks({"deliver.dev/analysis": "error-rate,latency"})

    def answer(arm: str, kind: str, query: str) -> tuple[Sample, ...]:
        return counts(data)(arm, kind, query) if kind != "buckets" else ()

    r = Analyser(Fake(answer)).run(two, TARGET, 0, 600)
    errors, latency = r.checks
    assert errors.rates is not None
    assert errors.rates[0] == pytest.approx(48 / 4000, rel=0.02) and errors.rates[1] == pytest.approx(
        20 / 4000, rel=0.05
    )
    assert errors.fail_at == pytest.approx(2 / 0.05)  # two checks: each fails at alpha/2
    assert errors.effect_bound is not None and errors.effect_bound > 0
    d = errors.to_dict()
    assert d["rate"] == [pytest.approx(errors.rates[0], rel=1e-3), pytest.approx(errors.rates[1], rel=1e-3)]
    assert d["fail_at"] == 40 and d["bound"] == pytest.approx(errors.effect_bound, rel=1e-3)
    # a check that judged nothing has no rates and no bound, but still says where it would fail
    assert latency.outcome == "inconclusive" and latency.rates is None and latency.effect_bound is None
    assert "rate" not in latency.to_dict() and "bound" not in latency.to_dict() and latency.to_dict()["fail_at"] == 40
    assert CheckResult.from_dict(d).to_dict() == d
