"""Statistical judges: canary vs baseline on raw observations (no Prometheus needed).

The public entry points, :func:`judge_errors` and :func:`judge_latency`: each validates its raw
inputs (:mod:`delivery.analysis.inputs`: a bad parameter raises ValueError naming it, a bad datum
gives an inconclusive :class:`Judgement` naming it), runs the vectorised core on them
(:mod:`delivery.analysis.cores`, on the anytime-valid tests of :mod:`delivery.analysis.evalues`)
and answers a :class:`Judgement` with a message for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delivery.analysis.cores import FAIL_CODE, INC_CODE, PASS_CODE, errors_core, latency_core
from delivery.analysis.evalues import Array
from delivery.analysis.inputs import check_parameters, count_windows, histogram_windows, sample_windows
from strategies.evidence import Outcome

PASS, FAIL, INCONCLUSIVE = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE  # the verdict's own outcomes
_CODE_NAMES = {INC_CODE: INCONCLUSIVE, PASS_CODE: PASS, FAIL_CODE: FAIL}


@dataclass(frozen=True)
class Judgement:
    """A judge's answer for one check."""

    outcome: Outcome
    statistic: float | None  # errors: canary share of bad events; latency: that of the deciding sub-test
    p_value: float | None  # min(1, 1/e): a valid p-value bound at this look
    e_value: float | None
    effect: float | None  # relative change canary vs baseline (rate ratio - 1)
    effect_bound: float | None  # anytime-valid upper bound on the bad effect
    n_canary: int
    n_baseline: int
    message: str


def _num(v: float | NDArray[Any]) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt_e(log_e: float) -> str:
    if log_e > 700:
        return "e>1e300"
    return f"e={math.exp(log_e):.3g}"


def _inconclusive(message: str, nc: float = 0, nb: float = 0) -> Judgement:
    return Judgement(INCONCLUSIVE, None, None, None, None, None, int(nc), int(nb), message)


def _sizes(nc: float, nb: float, windows: int) -> str:
    text = f"n={int(nc)}/{int(nb)}"
    return text if windows == 1 else f"{text} in {windows} windows"


def judge_errors(
    canary_total: ArrayLike,
    canary_errors: ArrayLike,
    baseline_total: ArrayLike,
    baseline_errors: ArrayLike,
    *,
    alpha: float = 0.05,
    direction: str = "increase",
    max_effect: float = 0.5,
    min_samples: int = 1000,
    negligible_rate: float = 0.001,
    pass_alpha: float | None = None,
) -> Judgement:
    """Judge error counts: scalars (one window) or per-window sequences of equal length, judged
    stratified (each window against its own traffic share).

    ``alpha`` is this check's share of the family-wise false-rollback rate; ``pass_alpha`` (default
    ``alpha``) the level of the pass test (the confidence of "within max_effect").
    """
    check_parameters(
        alpha=alpha,
        direction=direction,
        max_effect=max_effect,
        min_samples=min_samples,
        pass_alpha=pass_alpha,
        negligible_rate=negligible_rate,
    )
    series: list[Array] = []
    labels = ("canary total", "canary errors", "baseline total", "baseline errors")
    for label, v in zip(labels, (canary_total, canary_errors, baseline_total, baseline_errors), strict=True):
        arr, problem = count_windows(label, v)
        if arr is None:
            return _inconclusive(problem)
        series.append(arr)
    sizes = {label: arr.size for label, arr in zip(labels, series, strict=True)}
    if len(set(sizes.values())) > 1:
        return _inconclusive(
            "per-window sequences of different lengths: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
        )
    tc, ec, tb, eb = series
    nc, nb = float(tc.sum()), float(tb.sum())
    for arm, total, errs in (("canary", tc, ec), ("baseline", tb, eb)):
        over = np.flatnonzero(errs > total)
        if over.size:
            w = int(over[0])
            where = "" if total.size == 1 else f" in window {w + 1}"
            return _inconclusive(
                f"more errors than requests: {arm} errors {int(errs[w])} > {arm} total {int(total[w])}{where}", nc, nb
            )
    if nc == 0 or nb == 0:
        arm = "canary" if nc == 0 else "baseline"
        if nc == 0 and nb == 0:
            arm = "canary and baseline"
        return _inconclusive(f"no requests from {arm}", nc, nb)
    r = errors_core(
        ec,
        tc,
        eb,
        tb,
        alpha,
        direction,
        max_effect,
        int(min_samples),
        negligible_rate,
        pass_alpha=pass_alpha,
        windows=True,
    )
    pa = alpha if pass_alpha is None else pass_alpha
    xc, xb = float(ec.sum()), float(eb.sum())
    code = int(r["code"])
    log_e = float(r["log_e"])
    e = math.exp(min(log_e, 700.0))
    rates = f"{100 * xc / nc:.3g}% vs {100 * xb / nb:.3g}%"
    sizes_txt = _sizes(nc, nb, tc.size)
    bound = float(r["bound"])
    bound_txt = f"bound {bound:+.0%}" if math.isfinite(bound) else "not bounded yet"
    if code == FAIL_CODE:
        msg = f"{_fmt_e(log_e)} >= {1 / alpha:.3g}, {rates}, {sizes_txt}"
    elif code == PASS_CODE:
        why = (
            f"effect {bound_txt} <= {max_effect:+.0%}"
            if bool(r["bounded"])
            else f"canary rate surely < {100 * negligible_rate:.3g}%"
        )
        msg = f"{_fmt_e(log_e)}, {rates}, {why}, {sizes_txt}"
    else:
        if nc < min_samples or nb < min_samples:
            why = f"too little data (need {int(min_samples)}/arm)"
        else:
            why = f"effect {bound_txt} not yet within {max_effect:+.0%} at {1 - pa:.3g}"
        msg = f"{_fmt_e(log_e)}, {rates}, {why}, {sizes_txt}"
    return Judgement(
        _CODE_NAMES[code],
        _num(r["share"]),
        min(1.0, 1.0 / e) if e > 0 else 1.0,
        _num(e),
        _num(r["effect"]),
        _num(bound),
        int(nc),
        int(nb),
        msg,
    )


def judge_latency(
    canary: ArrayLike,
    baseline: ArrayLike,
    bounds: ArrayLike | None = None,
    *,
    cumulative: bool = False,
    alpha: float = 0.05,
    direction: str = "increase",
    max_effect: float = 0.5,
    min_samples: int = 1000,
    quantile: float = 0.99,
    pass_alpha: float | None = None,
    prior: ArrayLike | None = None,
) -> Judgement:
    """Judge latency: raw samples (``bounds=None``) or histogram bucket counts with upper ``bounds``.

    Samples: one array (one window), or a list of per-window arrays / a 2-D array (one row per
    window).  Bucket counts are per bucket, or Prometheus-style cumulative (``le``) with
    ``cumulative=True``; a 2-D array is a list of per-window histograms.  Windows are judged
    stratified; both arms need the same number of windows.  Windows are a stream that may be
    judged again as it grows, so each window is judged against the pooled quantiles of the data
    before it: ``prior`` (samples, or one histogram like a window's: e.g. the baseline's window
    before the span; never tested) and the earlier windows; the first window, with no prior, against
    its own (:func:`latency_core`).  With samples the thresholds are the exact quantiles; with
    buckets they are the bucket bounds nearest to them.
    """
    check_parameters(
        alpha=alpha,
        direction=direction,
        max_effect=max_effect,
        min_samples=min_samples,
        pass_alpha=pass_alpha,
        quantile=quantile,
    )
    h = (
        _sample_histograms(canary, baseline, prior, quantile)
        if bounds is None
        else _bucket_histograms(canary, baseline, bounds, prior, cumulative)
    )
    if isinstance(h, Judgement):
        return h
    hc, hb, bnd, seed = h.canary, h.baseline, h.bounds, h.prior
    nc, nb = float(hc.sum()), float(hb.sum())
    if nc == 0 or nb == 0:
        arm = "canary and baseline" if nc == nb == 0 else ("canary" if nc == 0 else "baseline")
        return _inconclusive(f"no latency observations from {arm}", nc, nb)
    r = latency_core(
        hc,
        hb,
        bnd,
        alpha,
        direction,
        max_effect,
        int(min_samples),
        quantile,
        pass_alpha=pass_alpha,
        windows=True,
        prior=seed,
    )
    code = int(r["code"])
    parts = _latency_parts(r, bnd, quantile)
    tag = _reported(r, code)
    log_e = float(r[f"{tag}_log_e"])
    e = math.exp(min(log_e, 700.0))
    extra = ""
    if code == INC_CODE and (nc < min_samples or nb < min_samples):
        extra = f"; too little data (need {int(min_samples)}/arm)"
    msg = "; ".join(parts) + f"; {_sizes(nc, nb, hc.shape[0])}" + extra
    return Judgement(
        _CODE_NAMES[code],
        _num(r[f"{tag}_share"]),
        min(1.0, 1.0 / e) if e > 0 else 1.0,
        _num(e),
        _num(r[f"{tag}_effect"]),
        _num(r[f"{tag}_bound"]),
        int(nc),
        int(nb),
        msg,
    )


@dataclass(frozen=True)
class _Histograms:
    """Both arms as per-window histograms over common upper ``bounds`` (the last one +inf)."""

    canary: Array
    baseline: Array
    bounds: Array
    prior: Array | None


def _sample_histograms(
    canary: ArrayLike, baseline: ArrayLike, prior: ArrayLike | None, quantile: float
) -> _Histograms | Judgement:
    """Raw samples binned at the pooled quantiles (one window, no prior) or at every value."""
    cw, problem = sample_windows("canary samples", canary)
    if cw is None:
        return _inconclusive(problem)
    bw, problem = sample_windows("baseline samples", baseline)
    if bw is None:
        return _inconclusive(problem)
    nc_, nb_ = sum(w.size for w in cw), sum(w.size for w in bw)
    if len(cw) != len(bw):
        return _inconclusive(
            f"per-window sequences of different lengths: canary {len(cw)} windows, baseline {len(bw)}", nc_, nb_
        )
    if nc_ == 0 or nb_ == 0:
        return _inconclusive(f"no latency samples from {'canary' if nc_ == 0 else 'baseline'}", nc_, nb_)
    pw: Array = np.zeros(0)
    if prior is not None:
        pwins, problem = sample_windows("prior samples", prior)
        if pwins is None:
            return _inconclusive(problem)
        pw = np.concatenate(pwins) if pwins else pw
    pooled = np.concatenate([*cw, *bw, pw])
    if len(cw) == 1 and pw.size == 0:  # the exact pooled quantiles
        edges = np.unique(np.quantile(pooled, [0.5, quantile], method="lower"))
    else:  # every value a bound: each window's threshold is the exact quantile of the data before it
        edges = np.unique(pooled)
    edges = np.append(edges[np.isfinite(edges)], np.inf)
    bins = np.concatenate([[-np.inf], edges])
    hc = np.array([np.histogram(w, bins=bins)[0] for w in cw], dtype=np.float64)
    hb = np.array([np.histogram(w, bins=bins)[0] for w in bw], dtype=np.float64)
    seed: Array | None = np.histogram(pw, bins=bins)[0].astype(np.float64) if pw.size else None
    return _Histograms(hc, hb, edges, seed)


def _bucket_histograms(
    canary: ArrayLike, baseline: ArrayLike, bounds: ArrayLike, prior: ArrayLike | None, cumulative: bool
) -> _Histograms | Judgement:
    """Bucket counts checked against strictly ascending ``bounds``; a +inf bucket added if missing."""
    try:
        bnd = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return _inconclusive("histogram bounds must be strictly ascending numbers")
    if bnd.ndim != 1 or bnd.size == 0 or np.any(np.isnan(bnd)) or np.any(np.diff(bnd) <= 0):
        return _inconclusive("histogram bounds must be strictly ascending numbers")
    hc, problem = histogram_windows("canary buckets", canary, bnd, cumulative)
    if hc is None:
        return _inconclusive(problem)
    hb, problem = histogram_windows("baseline buckets", baseline, bnd, cumulative)
    if hb is None:
        return _inconclusive(problem)
    if hc.shape[0] != hb.shape[0]:
        return _inconclusive(
            f"per-window sequences of different lengths: canary {hc.shape[0]} windows, baseline {hb.shape[0]}",
            hc.sum(),
            hb.sum(),
        )
    seed = None
    if prior is not None:
        ph, problem = histogram_windows("prior buckets", prior, bnd, cumulative)
        if ph is None:
            return _inconclusive(problem)
        seed = ph.sum(axis=0)
    if not np.isinf(bnd[-1]):  # observations above the last bound are not in the histogram
        bnd = np.append(bnd, np.inf)
        hc = np.concatenate([hc, np.zeros((hc.shape[0], 1))], axis=1)
        hb = np.concatenate([hb, np.zeros((hb.shape[0], 1))], axis=1)
        seed = None if seed is None else np.append(seed, 0.0)
    return _Histograms(hc, hb, bnd, seed)


def _latency_parts(r: Any, bnd: Array, quantile: float) -> list[str]:
    """One phrase per sub-test (median, tail): the threshold, slow counts, evidence and effect."""
    parts = []
    for tag in ("median", "tail"):
        idx = int(r[f"{tag}_index"])
        label = "p50" if tag == "median" else f"p{100 * quantile:g}"
        if idx < 0:
            parts.append(f"{label}: no bucket bound splits the data")
            continue
        bound = float(r[f"{tag}_bound"])
        head = (
            f">{bnd[idx]:.4g} ({label}): {int(r[f'{tag}_xc'])} vs {int(r[f'{tag}_xb'])} slow, "
            f"{_fmt_e(float(r[f'{tag}_log_e']))}"
        )
        effect = float(r[f"{tag}_effect"])
        if math.isfinite(bound) and math.isfinite(effect):
            head += f", effect {effect:+.0%} (bound {bound:+.0%})"
        parts.append(head)
    return parts


def _reported(r: Any, code: int) -> str:
    """The sub-test a judgement reports: the most evidence against the canary on a fail; otherwise
    the one whose effect bound is furthest from passing (the tail when no bound splits it)."""
    tag = "median" if float(r["median_log_e"]) >= float(r["tail_log_e"]) else "tail"
    if code != FAIL_CODE:
        bm, bt = float(r["median_bound"]), float(r["tail_bound"])
        tag = "median" if (bm if not math.isnan(bm) else np.inf) > (bt if not math.isnan(bt) else np.inf) else "tail"
        if code == INC_CODE and int(r["tail_index"]) < 0:
            tag = "tail"
    return tag
