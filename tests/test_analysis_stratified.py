"""Stratified judges (issue 11, finding 1): per-window counts, each window against its own traffic
share, fetched from Prometheus as per-window increments; Simpson's paradox no longer rolls back a
healthy canary."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from delivery.analysis.checks import parse_checks
from delivery.analysis.cores import FAIL_CODE, PASS_CODE, errors_core
from delivery.analysis.judges import judge_errors, judge_latency
from delivery.analysis.providers import PrometheusProvider
from delivery.analysis.runner import Analyser, AnalysisTarget, Windows, promql_duration

TARGET = AnalysisTarget("shop", "web", "canaryhash", "basehash", "web-canary", "web-stable")

# Two windows, the same error rate in both arms in each window, but the canary's share grows
# (10 % -> 50 %) while the error rate rises (0.2 % -> 5 %): pooled, the canary looks 67 % worse.
SIMPSON = {
    "canary": {"total": [1000, 10000], "errors": [2, 500]},
    "baseline": {"total": [9000, 10000], "errors": [18, 500]},
}


def test_simpson_pooled_counts_fail_a_healthy_canary_per_window_counts_do_not() -> None:
    c, b = SIMPSON["canary"], SIMPSON["baseline"]
    pooled = judge_errors(sum(c["total"]), sum(c["errors"]), sum(b["total"]), sum(b["errors"]), alpha=0.025)
    assert pooled.outcome == "fail"  # what deliver did before: 4.56 % vs 2.73 % pooled
    v = judge_errors(c["total"], c["errors"], b["total"], b["errors"], alpha=0.025)
    assert v.outcome != "fail"
    assert v.effect == pytest.approx(0.0)
    assert "in 2 windows" in v.message


def test_a_real_regression_is_still_caught_under_share_drift() -> None:
    c, b = SIMPSON["canary"], SIMPSON["baseline"]
    worse = [2 * e for e in c["errors"]]
    v = judge_errors(c["total"], worse, b["total"], b["errors"], alpha=0.025)
    assert v.outcome == "fail" and v.effect == pytest.approx(1.0)


def test_latency_is_stratified_too() -> None:
    # window 1: slow period (peak), canary 50 % of requests; window 2: fast period, canary 10 %
    rng = np.random.default_rng(3)
    slow = [0.3 * np.exp(0.3 * rng.standard_normal(n)) for n in (10000, 10000)]
    fast = [0.1 * np.exp(0.3 * rng.standard_normal(n)) for n in (1000, 9000)]
    canary, baseline = [slow[0], fast[0]], [slow[1], fast[1]]
    pooled = judge_latency(np.concatenate(canary), np.concatenate(baseline), alpha=0.025)
    assert pooled.outcome == "fail"  # pooled, the canary served more of the slow hour: "slower"
    assert judge_latency(canary, baseline, alpha=0.025).outcome != "fail"


def _drift_streams(reps: int, rng: np.random.Generator, ratio: float = 1.0) -> tuple[np.ndarray, ...]:
    windows = 30
    share = np.linspace(0.05, 0.5, windows)  # pods becoming Ready / a router weight ramping up
    rate = 0.002 + 0.018 * np.sin(np.linspace(0, math.pi, windows)) ** 2  # a peak hour in the middle
    total = 2000.0
    nc = np.rint(total * share) * np.ones((reps, 1))
    nb = total - nc
    xc = rng.binomial(nc.astype(int), np.minimum(rate * ratio, 1.0)).astype(float)
    xb = rng.binomial(nb.astype(int), rate).astype(float)
    return xc, nc, xb, nb


def _prefixes(a: np.ndarray) -> np.ndarray:
    """(reps, W) -> (reps, looks, W): look t sees windows 1..t, later ones are empty."""
    w = a.shape[1]
    mask = np.tril(np.ones((w, w)))
    return a[:, None, :] * mask[None, :, :]


def test_anytime_validity_under_share_drift_and_time_varying_rates() -> None:
    rng = np.random.default_rng(17)
    alpha = 0.05
    xc, nc, xb, nb = _drift_streams(800, rng)
    r = errors_core(*(_prefixes(a) for a in (xc, nc, xb, nb)), alpha, windows=True, with_bound=False)
    stratified = (r["code"] == FAIL_CODE).any(axis=1).mean()
    assert stratified <= alpha
    # the cumulative (pooled) judge on the same streams rolls back far more healthy canaries
    pooled = errors_core(*(np.cumsum(a, axis=1) for a in (xc, nc, xb, nb)), alpha, with_bound=False)
    assert (pooled["code"] == FAIL_CODE).any(axis=1).mean() > 4 * alpha


def test_regression_under_drift_is_detected() -> None:
    rng = np.random.default_rng(18)
    xc, nc, xb, nb = _drift_streams(300, rng, ratio=2.0)
    r = errors_core(xc, nc, xb, nb, 0.025, windows=True, with_bound=False)
    assert (r["code"] == FAIL_CODE).mean() > 0.95


def test_pass_and_bound_agree_and_the_bound_is_monotone_in_data() -> None:
    few = judge_errors([5000] * 2, [25] * 2, [5000] * 2, [25] * 2, alpha=0.025)
    many = judge_errors([50000] * 2, [250] * 2, [50000] * 2, [250] * 2, alpha=0.025)
    assert few.effect_bound is not None and many.effect_bound is not None
    assert many.effect_bound < few.effect_bound
    assert (many.outcome == "pass") == (many.effect_bound <= 0.5)
    assert (few.outcome == "pass") == (few.effect_bound <= 0.5)


def test_errors_core_windows_axis_versus_elementwise() -> None:
    xc, nc, xb, nb = (np.array([[10.0, 30.0]]), np.array([[1000.0, 1000.0]]), np.array([[5.0, 15.0]]), 1000.0)
    per_window = errors_core(xc, nc, xb, nb, 0.025, windows=True)
    assert per_window["code"].shape == (1,)
    elementwise = errors_core(xc, nc, xb, nb, 0.025)
    assert elementwise["code"].shape == (1, 2)
    assert set(elementwise) >= {"log_e", "bound", "effect", "share", "code", "invalid"}
    assert int(per_window["code"][0]) in (FAIL_CODE, PASS_CODE, 0)


# ----------------------------------------------------------------------------- windows


def test_windows_are_anchored_at_the_start_with_a_partial_last_one() -> None:
    w = Windows.cut(1000.0, 1150.0, 60.0)
    assert (w.full, w.tail, w.count) == (2, 30.0, 3)
    assert w.index(1060.0, 0.0) == 0 and w.index(1120.0, 0.0) == 1 and w.index(1180.0, 0.0) is None
    assert Windows.cut(0.0, 120.0, 60.0).count == 2  # no empty partial window
    assert Windows.cut(0.0, 120.4, 60.0).tail == 0.0  # a sliver shorter than a second is left out
    assert Windows.cut(0.0, 20.0, 60.0).count == 1  # a short span is one (partial) window


def test_promql_durations() -> None:
    assert promql_duration(60) == "60s"
    assert promql_duration(33.5) == "33500ms"
    assert promql_duration(0.25) == "250ms"


def test_resolution_annotation() -> None:
    from delivery.analysis.checks import parse_resolution
    from delivery.errors import SpecError

    assert parse_resolution("90s") == 90.0 and parse_resolution("2m") == 120.0 and parse_resolution("1h") == 3600.0
    # the one grammar of every duration (issue 25): 1m30s, which this key refused before, and no bare 90
    assert parse_resolution("1m30s") == 90.0
    for bad in ("0s", "2h", "1.5m", "-5s", "soon", "90"):
        with pytest.raises(SpecError):
            parse_resolution(bad)
    (spec,) = parse_checks({"deliver.dev/analysis": "error-rate", "deliver.dev/analysis-resolution": "30s"})
    assert spec.resolution == 30.0


# ----------------------------------------------------------------------------- from Prometheus

T0 = 1_700_000_000.0


def _prometheus(data: dict[str, dict[str, list[float]]], seen: list[dict[str, str]]) -> PrometheusProvider:
    """A Prometheus answering range queries with the per-window increments in ``data`` (windows of
    60 s from T0) and instant queries over the last partial window with ``data[arm]['tail_'+kind]``."""

    def handle(req: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(req.content.decode()))
        seen.append({"path": req.url.path, **form})
        q = form["query"]
        arm = "canary" if "canaryhash" in q else "baseline"
        kind = "errors" if 'code=~"5' in q else "total"
        series = data[arm].get(kind)
        if req.url.path == "/api/v1/query_range":
            start, end, step = float(form["start"]), float(form["end"]), float(form["step"])
            values = []
            t = start
            while t <= end + 1e-6:
                i = int(round((t - T0) / 60.0)) - 1
                if series is not None and 0 <= i < len(series) and not (isinstance(series[i], str)):
                    values.append([t, str(series[i])])
                elif series is not None and 0 <= i < len(series):
                    values.append([t, series[i]])
                t += step
            result = [{"metric": {}, "values": values}] if series is not None else []
            return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": result}})
        tail = data[arm].get("tail_" + kind)
        result = [] if tail is None else [{"metric": {}, "value": [float(form["time"]), str(tail)]}]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})

    return PrometheusProvider("http://prom:9090", attempts=1, transport=httpx.MockTransport(handle))


def _simpson_windows() -> dict[str, dict[str, list[float]]]:
    # the SIMPSON counts spread over 10 windows of 60 s: 5 at the low share, 5 at the high share
    c, b = SIMPSON["canary"], SIMPSON["baseline"]
    return {
        arm: {key: [v[0] / 5] * 5 + [v[1] / 5] * 5 for key, v in d.items()}
        for arm, d in (("canary", c), ("baseline", b))
    }


def test_runner_fetches_per_window_increments_and_judges_them_stratified() -> None:
    seen: list[dict[str, str]] = []
    provider = _prometheus(_simpson_windows(), seen)
    checks = parse_checks({"deliver.dev/analysis": "error-rate"})
    r = Analyser(provider).run(checks, TARGET, T0, T0 + 600)
    (c,) = r.checks
    assert c.outcome != "fail", c.message
    assert "in 10 windows" in c.message and (c.n_canary, c.n_baseline) == (11000, 19000)
    ranges = [s for s in seen if s["path"] == "/api/v1/query_range"]
    assert len(ranges) == 4  # total and errors, per arm
    assert all(s["step"] == "60" and "[60s]" in s["query"] for s in ranges)
    assert {(float(s["start"]), float(s["end"])) for s in ranges} == {(T0 + 60, T0 + 600)}
    assert not [s for s in seen if s["path"] == "/api/v1/query"]  # no partial window


def test_one_window_as_long_as_the_span_reproduces_the_pooled_false_rollback() -> None:
    """The same data judged as one cumulative window (resolution = the span) fail: the old behaviour."""
    seen: list[dict[str, str]] = []
    data = {arm: {f"tail_{k}": float(sum(v)) for k, v in d.items()} for arm, d in _simpson_windows().items()}
    provider = _prometheus(data, seen)
    checks = parse_checks({"deliver.dev/analysis": "error-rate", "deliver.dev/analysis-resolution": "1h"})
    r = Analyser(provider).run(checks, TARGET, T0, T0 + 600)
    assert r.checks[0].outcome == "fail"
    assert [s["path"] for s in seen] == ["/api/v1/query"] * 4 and "[600s]" in seen[0]["query"]


def test_partial_last_window_comes_from_an_instant_query() -> None:
    seen: list[dict[str, str]] = []
    data = _simpson_windows()
    for arm in data:
        data[arm]["tail_total"], data[arm]["tail_errors"] = 100.0, 0.0
    r = Analyser(_prometheus(data, seen)).run(
        parse_checks({"deliver.dev/analysis": "error-rate"}), TARGET, T0, T0 + 630
    )
    assert "in 11 windows" in r.checks[0].message and r.checks[0].n_canary == 11100
    instants = [s for s in seen if s["path"] == "/api/v1/query"]
    assert len(instants) == 4 and all("[30s]" in s["query"] and float(s["time"]) == T0 + 630 for s in instants)


def test_recreate_baseline_windows_are_shifted_to_the_baseline_end() -> None:
    seen: list[dict[str, str]] = []
    data = _simpson_windows()
    r = Analyser(_prometheus(data, seen)).run(
        parse_checks({"deliver.dev/analysis": "error-rate"}), TARGET, T0 + 1000, T0 + 1600, baseline_end=T0 + 600
    )
    base = [s for s in seen if "basehash" in s["query"]]
    assert {(float(s["start"]), float(s["end"])) for s in base} == {(T0 + 60, T0 + 600)}
    canary = [s for s in seen if "canaryhash" in s["query"]]
    assert {(float(s["start"]), float(s["end"])) for s in canary} == {(T0 + 1060, T0 + 1600)}
    assert r.checks[0].n_baseline == 19000


def test_nan_in_a_window_is_inconclusive_naming_the_series() -> None:
    data = _simpson_windows()
    data["baseline"]["errors"][3] = "NaN"  # type: ignore[call-overload]
    r = Analyser(_prometheus(data, [])).run(parse_checks({"deliver.dev/analysis": "error-rate"}), TARGET, T0, T0 + 600)
    assert r.outcome == "inconclusive" and "error-rate baseline errors" in r.checks[0].message


def test_missing_windows_count_as_no_traffic_and_fractional_increments_keep_their_sum() -> None:
    data = {
        "canary": {"total": [250.4] * 4, "errors": [0.4] * 4},
        "baseline": {"total": [1000.6] * 4, "errors": [1.6] * 4},
    }
    r = Analyser(_prometheus(data, [])).run(parse_checks({"deliver.dev/analysis": "error-rate"}), TARGET, T0, T0 + 600)
    c = r.checks[0]
    assert (c.n_canary, c.n_baseline) == (1002, 4002)  # rounded running totals, not 4 x round(250.4)
    assert "0.2% vs 0.15%" in c.message  # 2 errors of 1002, 6 of 4002 (not 4 x round(0.4) = 0)


def test_pass_test_is_anytime_valid_for_a_canary_at_the_tolerated_edge() -> None:
    """A canary exactly max_effect worse (r = 1.5) under share drift, checked after every window:
    the rate of ever passing stays below the pass level."""
    rng = np.random.default_rng(19)
    alpha = 0.05
    xc, nc, xb, nb = _drift_streams(600, rng, ratio=1.5)
    r = errors_core(
        *(_prefixes(a) for a in (xc, nc, xb, nb)),
        0.025,
        pass_alpha=alpha,
        negligible_rate=0.0,
        min_samples=0,
        windows=True,
        with_bound=False,
    )
    ever = (r["code"] == PASS_CODE).any(axis=1).mean()
    assert ever <= alpha
    # while a healthy canary on the same traffic passes most of the time
    xc, nc, xb, nb = _drift_streams(200, rng, ratio=1.0)
    healthy = errors_core(xc, nc, xb, nb, 0.025, pass_alpha=alpha, negligible_rate=0.0, windows=True)
    assert (healthy["code"] == PASS_CODE).mean() > 0.5


def _drifting_latency(rng: np.random.Generator, reps: int, windows: int, n: int, drift: float) -> np.ndarray:
    """(reps, windows, buckets) histograms of n lognormal latencies per window whose median grows
    ``drift``-fold over the windows (the same in both arms: A/A)."""
    bounds = np.append(np.geomspace(0.001, 100.0, 241), np.inf)
    x = 0.1 * np.geomspace(1.0, drift, windows)[None, :, None] * np.exp(0.5 * rng.standard_normal((reps, windows, n)))
    b = np.searchsorted(bounds, x, side="left")
    flat = (np.arange(reps * windows).reshape(reps, windows, 1) * bounds.size + b).ravel()
    h = np.bincount(flat, minlength=reps * windows * bounds.size).reshape(reps, windows, bounds.size)
    return np.asarray(h, dtype=np.float64)


def test_latency_thresholds_do_not_move_between_looks_so_looking_after_every_window_keeps_the_level() -> None:
    # A healthy canary whose latency drifts with the baseline's (the median grows 8x over 30
    # windows), judged after every window.  With thresholds re-picked from all the data at every
    # look (before), each look was a different test and the tail sub-test rejected in ~50 % of the
    # runs at a level of 40 %; with each window's threshold from the windows before it, the looks
    # form one e-process and Ville's bound holds (~20 %).  (A large alpha makes the bound
    # measurable in few runs; at 2.5 % the mixtures are too conservative to show it.)
    from delivery.analysis.cores import latency_core

    bounds = np.append(np.geomspace(0.001, 100.0, 241), np.inf)
    rng = np.random.default_rng(1)
    reps, windows, alpha = 600, 30, 0.8
    hc, hb = (_drifting_latency(rng, reps, windows, 30, 8.0) for _ in range(2))
    rejected = {"median": np.zeros(reps, dtype=bool), "tail": np.zeros(reps, dtype=bool)}
    for w in range(1, windows + 1):
        r = latency_core(hc[:, :w], hb[:, :w], bounds, alpha, windows=True, with_bound=False)
        for tag, seen in rejected.items():
            seen |= r[f"{tag}_code"] == FAIL_CODE
    for tag, seen in rejected.items():
        assert seen.mean() <= alpha / 2, f"{tag}: {seen.mean():.3f} of healthy canaries rejected at level {alpha / 2}"


def test_the_first_window_is_judged_against_the_prior_when_there_is_one() -> None:
    rng = np.random.default_rng(5)
    one = [0.1 * np.exp(0.5 * rng.standard_normal(3000)) for _ in range(2)]
    # no prior: the first window against its own pooled quantiles
    assert judge_latency([one[0] * 1.3], [one[1]], alpha=0.05, min_samples=100).outcome == "fail"
    # a prior from a period ten times slower puts both thresholds above every request: no evidence
    slow = 1.0 * np.exp(0.5 * rng.standard_normal(3000))
    seeded = judge_latency([one[0] * 1.3], [one[1]], alpha=0.05, min_samples=100, prior=slow)
    assert seeded.outcome == "inconclusive", seeded.message
    # the later windows are judged against the prior and the windows before them
    two = [0.1 * np.exp(0.5 * rng.standard_normal(3000)) for _ in range(2)]
    later = judge_latency([one[0], two[0] * 1.3], [one[1], two[1]], alpha=0.05, min_samples=100, prior=slow)
    assert later.outcome == "fail", later.message
