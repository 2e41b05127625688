"""Strict inputs (issue 11, finding 3): every bad parameter raises ValueError naming it, every bad
datum gives an inconclusive judgement naming it; property tests over the public API."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery.analysis.checks import parse_checks
from delivery.analysis.cores import FAIL_CODE, INC_CODE, errors_core, latency_core
from delivery.analysis.judges import judge_errors, judge_latency
from delivery.errors import SpecError

OK_ERRORS = (5000, 10, 5000, 10)
BOUNDS = [0.1, 0.5, math.inf]


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("alpha", 0.0),
        ("alpha", 1.0),
        ("alpha", -0.1),
        ("alpha", math.nan),
        ("alpha", math.inf),
        ("alpha", "0.05"),
        ("pass_alpha", 0.0),
        ("pass_alpha", math.nan),
        ("max_effect", math.nan),
        ("max_effect", math.inf),
        ("max_effect", -1.0),
        ("max_effect", 0.0),
        ("min_samples", math.nan),
        ("min_samples", -1),
        ("min_samples", 2.5),
        ("min_samples", math.inf),
        ("negligible_rate", math.nan),
        ("negligible_rate", -0.1),
        ("negligible_rate", 2.0),
        ("negligible_rate", 1.0),
        ("direction", "up"),
    ],
)
def test_bad_error_parameters_raise_naming_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        judge_errors(*OK_ERRORS, **{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("alpha", 0.0),
        ("alpha", math.nan),
        ("max_effect", -1.0),
        ("max_effect", math.nan),
        ("min_samples", -1),
        ("quantile", 1.0),
        ("quantile", 0.4),
        ("quantile", math.nan),
        ("direction", "sideways"),
    ],
)
def test_bad_latency_parameters_raise_naming_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        judge_latency([10, 10, 10], [10, 10, 10], BOUNDS, **{name: value})


def test_huge_integer_parameter_is_a_value_error_not_overflow() -> None:
    with pytest.raises(ValueError, match="min_samples"):
        judge_errors(*OK_ERRORS, min_samples=10**400)


# ----------------------------------------------------------------------------- data


def test_sequences_of_different_lengths_are_refused_not_summed() -> None:
    v = judge_errors([2000] * 3, [9], [2000] * 3, [3] * 3)
    assert v.outcome == "inconclusive"
    assert "different lengths" in v.message and "canary errors 1" in v.message and "canary total 3" in v.message


def test_a_window_with_more_errors_than_requests_is_refused_even_when_the_sums_look_fine() -> None:
    # sums: 30 errors of 2000 requests; window 2 alone has 25 errors of 10 requests
    v = judge_errors([1990, 10], [5, 25], [2000, 2000], [5, 5])
    assert v.outcome == "inconclusive"
    assert "window 2" in v.message and "canary errors 25 > canary total 10" in v.message


@pytest.mark.parametrize("huge", [10**400, 1e300, 2e15])
def test_huge_counts_are_inconclusive_not_overflow(huge: float) -> None:
    v = judge_errors(huge, 10, 5000, 10)
    assert v.outcome == "inconclusive"
    assert "canary total" in v.message and "too large" in v.message


def test_large_but_plausible_counts_are_judged() -> None:
    v = judge_errors(10**12, 10**9, 10**12, 10**9)
    assert v.outcome == "pass"


def test_negative_raw_latencies_are_inconclusive() -> None:
    v = judge_latency([0.1, -0.2, 0.3], [0.1, 0.2, 0.3])
    assert v.outcome == "inconclusive" and "canary samples" in v.message and "negative" in v.message


def test_per_window_latency_samples_of_different_window_counts_are_refused() -> None:
    v = judge_latency([[0.1, 0.2], [0.3]], [[0.1, 0.2]])
    assert v.outcome == "inconclusive" and "different lengths" in v.message


def test_per_window_histograms_of_different_window_counts_are_refused() -> None:
    v = judge_latency([[5, 5, 5], [5, 5, 5]], [[5, 5, 5]], BOUNDS)
    assert v.outcome == "inconclusive" and "different lengths" in v.message


def test_non_numeric_data_is_inconclusive_naming_the_series() -> None:
    v = judge_errors(5000, "ten", 5000, 10)
    assert v.outcome == "inconclusive" and "canary errors" in v.message


# ----------------------------------------------------------------------------- cores


def test_errors_core_marks_errors_above_total_invalid_instead_of_failing() -> None:
    r = errors_core(np.array([50.0, 50.0]), np.array([10.0, 5000.0]), 10.0, 5000.0, 0.025)
    assert list(r["invalid"]) == [True, False]
    assert int(r["code"][0]) == INC_CODE
    assert int(r["code"][1]) == FAIL_CODE  # 1% vs 0.2%: a real regression is still judged


def test_latency_core_marks_negative_or_nan_buckets_invalid() -> None:
    r = latency_core(np.array([[-5.0, 10, 10], [10, 10, 10]]), np.array([10.0, 10, 10]), BOUNDS, 0.025)
    assert list(r["invalid"]) == [True, False]
    assert int(r["code"][0]) == INC_CODE


# ----------------------------------------------------------------------------- annotations


def test_annotation_refuses_a_negligible_rate_that_is_not_negligible() -> None:
    base = {"deliver.dev/analysis": "error-rate"}
    for bad in ("1.0", "0.5", "0.11"):
        with pytest.raises(SpecError) as exc:
            parse_checks({**base, "deliver.dev/analysis.error-rate": f"negligible-rate={bad}"})
        assert "deliver.dev/analysis.error-rate" in str(exc.value)
    (spec,) = parse_checks({**base, "deliver.dev/analysis.error-rate": "negligible-rate=0.1"})
    assert spec.negligible_rate == 0.1


# ----------------------------------------------------------------------------- properties

_counts = st.integers(min_value=0, max_value=10**7)
_window = st.tuples(_counts, _counts, _counts, _counts)


def _errors_args(windows: list[tuple[int, int, int, int]]) -> tuple[list[int], list[int], list[int], list[int]]:
    """(canary total, canary errors, baseline total, baseline errors) with errors <= total."""
    tc = [w[0] for w in windows]
    ec = [min(w[1], w[0]) for w in windows]
    tb = [w[2] for w in windows]
    eb = [min(w[3], w[2]) for w in windows]
    return tc, ec, tb, eb


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(st.lists(_window, min_size=1, max_size=8))
def test_property_valid_counts_always_give_a_judgement(windows: list[tuple[int, int, int, int]]) -> None:
    v = judge_errors(*_errors_args(windows), alpha=0.025)
    assert v.outcome in ("pass", "fail", "inconclusive")
    assert v.n_canary == sum(w[0] for w in windows) and v.n_baseline == sum(w[2] for w in windows)
    if v.e_value is not None:
        assert v.e_value >= 0 and v.p_value is not None and 0 <= v.p_value <= 1
    if v.outcome == "fail":
        assert v.e_value is not None and v.e_value >= 40
    if v.outcome == "pass":
        assert v.n_canary >= 1000 and v.n_baseline >= 1000


@PROPS
@given(st.lists(_window, min_size=1, max_size=6), st.integers(min_value=0, max_value=5))
def test_property_one_window_with_errors_above_total_is_always_refused(
    windows: list[tuple[int, int, int, int]], which: int
) -> None:
    tc, ec, tb, eb = _errors_args(windows)
    i = which % len(windows)
    ec[i] = tc[i] + 1
    v = judge_errors(tc, ec, tb, eb)
    assert v.outcome == "inconclusive" and "more errors than requests" in v.message


@PROPS
@given(st.lists(_window, min_size=1, max_size=6), st.integers(min_value=1, max_value=3))
def test_property_sequences_of_unequal_length_are_always_refused(
    windows: list[tuple[int, int, int, int]], extra: int
) -> None:
    tc, ec, tb, eb = _errors_args(windows)
    v = judge_errors(tc, ec, tb + [1000] * extra, eb + [0] * extra)
    assert v.outcome == "inconclusive" and "different lengths" in v.message


@PROPS
@given(
    st.lists(_window, min_size=1, max_size=4),
    st.sampled_from(["canary total", "canary errors", "baseline total", "baseline errors"]),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e16]),
)
def test_property_any_bad_datum_is_inconclusive_and_named(
    windows: list[tuple[int, int, int, int]], series: str, bad: float
) -> None:
    args: list[list[float]] = [list(map(float, a)) for a in _errors_args(windows)]
    index = ["canary total", "canary errors", "baseline total", "baseline errors"].index(series)
    args[index][0] = bad
    v = judge_errors(*args)
    assert v.outcome == "inconclusive"
    assert series in v.message


@PROPS
@given(
    st.sampled_from(["alpha", "max_effect", "min_samples", "negligible_rate", "pass_alpha"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**30), max_value=10**30)),
)
def test_property_a_parameter_is_accepted_or_refused_naming_it(name: str, value: float) -> None:
    try:
        v = judge_errors(*OK_ERRORS, **{name: value})
    except ValueError as exc:
        assert name in str(exc)
    else:
        assert v.outcome in ("pass", "fail", "inconclusive")
        f = float(value)
        assert math.isfinite(f)
        if name in ("alpha", "pass_alpha"):
            assert 0 < f < 1
        elif name == "max_effect":
            assert f > 0
        elif name == "min_samples":
            assert f >= 0 and f == int(f)
        else:
            assert 0 <= f < 1


@PROPS
@given(
    st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=50),
    st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=50),
)
def test_property_raw_latency_samples_always_give_a_judgement(canary: list[float], baseline: list[float]) -> None:
    v = judge_latency(canary, baseline, min_samples=1)
    assert v.outcome in ("pass", "fail", "inconclusive")
    assert (v.n_canary, v.n_baseline) == (len(canary), len(baseline))


@PROPS
@given(st.lists(st.tuples(_counts, _counts), min_size=1, max_size=5), st.floats(min_value=0.01, max_value=0.99))
def test_property_identical_arms_never_fail(windows: list[tuple[int, int]], share: float) -> None:
    """Each window's canary errors at exactly its share of the window's errors: no evidence of harm."""
    tc, ec, tb, eb = [], [], [], []
    for total, errs in windows:
        errs = min(errs, total)
        c_total = round(total * share)
        tc.append(c_total)
        tb.append(total - c_total)
        c_err = min(math.floor(errs * share), c_total)
        ec.append(c_err)
        eb.append(min(errs - c_err, total - c_total))
    v = judge_errors(tc, ec, tb, eb, alpha=0.025)
    assert v.outcome != "fail"
