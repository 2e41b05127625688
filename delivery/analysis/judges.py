"""Statistical judges: canary vs baseline on raw observations (no Prometheus needed).

Both judges reduce to one test: given ``n`` "bad" events (errors, or requests slower than a
threshold) of which ``x`` happened in the canary, under the null hypothesis "the canary is no
worse" ``x`` is at most Binomial(n, p0) with ``p0 = N_canary / (N_canary + N_baseline)`` (the traffic
share).  The evidence against the null is a mixture likelihood ratio (an e-value)

    E = ∫ L(p) π(p) dp / L(p0),   π = Beta(c·p0, c·(1-p0)) truncated to the bad side of p0,

which is a non-negative supermartingale under the null as events accumulate, so by Ville's
inequality P(E ever ≥ 1/α) ≤ α: the judge may be re-run on a growing cumulative window as often
as wanted without inflating false rollbacks ("anytime-valid").  Inverting the same mixture gives
an anytime-valid confidence sequence for the rate ratio θ = (canary rate)/(baseline rate); a check
passes only with enough data per arm AND the bound on the bad effect within ``max_effect``.

All functions here are vectorised over numpy arrays (the benchmark runs thousands of streams at
once through exactly the same code); the ``judge_*`` wrappers validate scalar inputs and return
a :class:`Judgement`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
# outcome codes of the vectorised cores
INC_CODE, PASS_CODE, FAIL_CODE = 0, 1, 2
_CODE_NAMES = {INC_CODE: INCONCLUSIVE, PASS_CODE: PASS, FAIL_CODE: FAIL}

# Concentration of the mixing prior around p0: c ≈ 10 puts most prior mass on rate ratios
# between about 0.3x and 3x, where canary regressions that matter live.
CONCENTRATION = 10.0

Array = NDArray[np.float64]
# a vectorised judge's columns: float64 statistics, bool decisions, int outcome codes
Columns = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class Judgement:
    """A judge's answer for one check."""

    outcome: str  # "pass" | "fail" | "inconclusive"
    statistic: float | None  # errors: canary share of bad events; latency: that of the deciding sub-test
    p_value: float | None  # min(1, 1/e): a valid p-value bound at this look
    e_value: float | None
    effect: float | None  # relative change canary vs baseline (rate ratio - 1)
    effect_bound: float | None  # anytime-valid upper bound on the bad effect
    n_canary: int
    n_baseline: int
    message: str


# --------------------------------------------------------------------------- vectorised cores


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


def log_e_value(x: ArrayLike, n: ArrayLike, p0: ArrayLike, direction: str, conc: float = CONCENTRATION) -> Array:
    """log of the one-sided (or two-sided for "either") beta-mixture e-value for x ~ Bin(n, p<=p0)."""
    x, n, p0 = _f(x), _f(n), _f(p0)
    a, b = conc * p0, conc * (1.0 - p0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ll0 = special.xlogy(x, p0) + special.xlog1py(n - x, -p0)
        base = special.betaln(a + x, b + n - x) - special.betaln(a, b) - ll0

        def upper() -> Array:
            return _f(base + np.log(special.betaincc(a + x, b + n - x, p0)) - np.log(special.betaincc(a, b, p0)))

        def lower() -> Array:
            return _f(base + np.log(special.betainc(a + x, b + n - x, p0)) - np.log(special.betainc(a, b, p0)))

        if direction == "increase":
            out = upper()
        elif direction == "decrease":
            out = lower()
        elif direction == "either":
            out = np.logaddexp(upper(), lower()) - math.log(2.0)
        else:
            raise ValueError(f"direction {direction!r}")
    return np.where(n > 0, np.nan_to_num(out, nan=-np.inf, posinf=np.inf), 0.0)


def _bisect(f: Any, lo: Array, hi: Array, iters: int = 60) -> tuple[Array, Array]:
    """Vectorised bisection for a sign change of f between lo (f>=0) and hi (f<0)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = f(mid) >= 0
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return lo, hi


def proportion_bounds(
    x: ArrayLike, n: ArrayLike, p0: ArrayLike, alpha: ArrayLike, conc: float = CONCENTRATION
) -> tuple[Array, Array]:
    """Anytime-valid (1-alpha) confidence sequence [lo, hi] for a binomial proportion.

    The set of p not rejected by the (untruncated) beta-mixture e-value centred on p0:
    {p : x·log p + (n-x)·log(1-p) >= log M(x, n) - log(1/alpha)}.
    """
    x, n, p0, alpha = _f(x), _f(n), _f(p0), _f(alpha)
    a, b = conc * p0, conc * (1.0 - p0)
    with np.errstate(divide="ignore", invalid="ignore"):
        thr = special.betaln(a + x, b + n - x) - special.betaln(a, b) + np.log(alpha)
        phat = np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.5)

        def g(p: Array) -> Array:
            return _f(special.xlogy(x, p) + special.xlog1py(n - x, -p) - thr)

        _, hi = _bisect(g, phat.copy(), np.ones_like(phat))  # outside points: conservative
        _, lo = _bisect(g, phat.copy(), np.zeros_like(phat))
        hi = np.where(g(np.ones_like(phat)) >= 0, 1.0, hi)
        lo = np.where(g(np.zeros_like(phat)) >= 0, 0.0, lo)
    hi = np.where(n > 0, hi, 1.0)
    lo = np.where(n > 0, lo, 0.0)
    return lo, hi


def _ratio(p: Array, nc: Array, nb: Array) -> Array:
    """Rate ratio canary/baseline for a canary share p of the bad events."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p >= 1.0, np.inf, p / (1.0 - p) * (nb / nc))


def conditional_test(
    xc: ArrayLike,
    nc: ArrayLike,
    xb: ArrayLike,
    nb: ArrayLike,
    alpha: float,
    direction: str,
) -> Columns:
    """The shared anytime-valid two-sample test on counts of bad events (vectorised).

    xc of nc canary observations and xb of nb baseline observations were bad.  Returns arrays:
    ``log_e``, ``share`` (xc/(xc+xb)), ``effect`` (rate ratio - 1), ``bound`` (upper confidence
    bound of the bad effect), ``reject`` (log_e >= log 1/alpha).
    """
    xc, nc, xb, nb = _f(xc), _f(nc), _f(xb), _f(nb)
    n = xc + xb
    with np.errstate(divide="ignore", invalid="ignore"):
        p0 = np.where((nc > 0) & (nb > 0), nc / (nc + nb), 0.5)
        log_e = log_e_value(xc, n, p0, direction)
        lo, hi = proportion_bounds(xc, n, p0, alpha)
        share = np.where(n > 0, xc / np.where(n > 0, n, 1.0), np.nan)
        effect = np.where(n > 0, _ratio(share, nc, nb) - 1.0, np.nan)
        up, down = _ratio(hi, nc, nb) - 1.0, 1.0 - _ratio(lo, nc, nb)
    bound = {"increase": up, "decrease": down, "either": np.maximum(up, down)}[direction]
    return {
        "log_e": log_e,
        "share": share,
        "effect": effect,
        "bound": bound,
        "reject": log_e >= math.log(1.0 / alpha),
    }


def errors_core(
    xc: ArrayLike,
    nc: ArrayLike,
    xb: ArrayLike,
    nb: ArrayLike,
    alpha: float,
    direction: str = "increase",
    max_effect: float = 0.5,
    min_samples: int = 1000,
    negligible_rate: float = 0.001,
) -> Columns:
    """Vectorised error-count judge on cumulative counts; adds ``code`` (0 inc, 1 pass, 2 fail)."""
    nc_, nb_ = _f(nc), _f(nb)
    r = conditional_test(xc, nc, xb, nb, alpha, direction)
    enough = (nc_ >= min_samples) & (nb_ >= min_samples)
    bounded = r["bound"] <= max_effect
    if negligible_rate > 0 and direction == "increase":
        # the canary's own error rate is surely negligible: prior mean at the negligible rate
        r0 = negligible_rate
        x = _f(xc)
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = 0.5, 0.5 / r0
            thr = special.betaln(a + x, b + nc_ - x) - special.betaln(a, b) + math.log(alpha)
            ok = special.xlogy(x, r0) + special.xlog1py(nc_ - x, -r0) < thr  # r0 itself is excluded
        ok &= x / np.where(nc_ > 0, nc_, 1.0) < r0
        r["negligible"] = ok
        bounded = bounded | ok
    code = np.where(r["reject"], FAIL_CODE, np.where(enough & bounded, PASS_CODE, INC_CODE))
    code = np.where((nc_ > 0) & (nb_ > 0), code, INC_CODE)
    r["code"] = code
    return r


def pooled_threshold_index(hc: Array, hb: Array, bounds: Array, q: float) -> Array:
    """Index of the bucket bound nearest to the pooled q-quantile (label-blind, so the null holds).

    hc, hb: per-bucket counts (..., B); bounds: (B,) ascending upper bounds (last may be +Inf).
    Returns -1 where no finite bound splits the pooled data.
    """
    pooled = np.cumsum(hc + hb, axis=-1)
    total = pooled[..., -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = pooled / np.where(total > 0, total, 1.0)
    usable = (frac > 0) & (frac < 1) & np.isfinite(bounds)
    dist = np.where(usable, np.abs(frac - q), np.inf)
    idx = np.argmin(dist, axis=-1)
    return np.where(np.isfinite(np.min(dist, axis=-1)), idx, -1)


def latency_core(
    hc: ArrayLike,
    hb: ArrayLike,
    bounds: ArrayLike,
    alpha: float,
    direction: str = "increase",
    max_effect: float = 0.5,
    min_samples: int = 1000,
    quantile: float = 0.99,
) -> Columns:
    """Vectorised latency judge on per-bucket histogram counts (..., B).

    Two anytime-valid exceedance tests, each at alpha/2: of the pooled median (a shift of the
    whole distribution) and of the pooled ``quantile`` (a tail-only regression).  Fails when either
    rejects; passes with enough data and both effect bounds within ``max_effect``.
    """
    hc, hb, bounds = _f(hc), _f(hb), _f(bounds)
    nc, nb = hc.sum(axis=-1), hb.sum(axis=-1)
    cc, cb = np.cumsum(hc, axis=-1), np.cumsum(hb, axis=-1)
    out: Columns = {"n_canary": nc, "n_baseline": nb}
    codes = []
    for tag, q in (("median", 0.5), ("tail", quantile)):
        idx = pooled_threshold_index(hc, hb, bounds, q)
        safe = np.maximum(idx, 0)[..., None]
        xc = nc - np.take_along_axis(cc, safe, axis=-1)[..., 0]
        xb = nb - np.take_along_axis(cb, safe, axis=-1)[..., 0]
        r = conditional_test(xc, nc, xb, nb, alpha / 2.0, direction)
        ok = idx >= 0
        code = np.where(
            ok & r["reject"],
            FAIL_CODE,
            np.where(ok & (nc >= min_samples) & (nb >= min_samples) & (r["bound"] <= max_effect), PASS_CODE, INC_CODE),
        )
        code = np.where((nc > 0) & (nb > 0), code, INC_CODE)
        codes.append(code)
        for k, v in r.items():
            out[f"{tag}_{k}"] = v
        out[f"{tag}_index"] = idx
        out[f"{tag}_xc"], out[f"{tag}_xb"] = xc, xb
        out[f"{tag}_code"] = code
    med, tail = codes
    out["code"] = np.where(
        (med == FAIL_CODE) | (tail == FAIL_CODE),
        FAIL_CODE,
        np.where((med == PASS_CODE) & (tail == PASS_CODE), PASS_CODE, INC_CODE),
    )
    return out


# --------------------------------------------------------------------------- scalar wrappers


def _num(v: float | NDArray[Any]) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt_e(log_e: float) -> str:
    if log_e > 700:
        return "e>1e300"
    return f"e={math.exp(log_e):.3g}"


def _counts(name: str, values: ArrayLike) -> tuple[float | None, str]:
    """Sum per-window counts; (None, problem) if any value is NaN/Inf/negative."""
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.size == 0:
        return None, f"no observations for {name}"
    if not np.all(np.isfinite(arr)):
        return None, f"{name} contains NaN or Inf"
    if np.any(arr < 0):
        return None, f"{name} contains negative counts"
    return float(np.rint(arr).sum()), ""


def _inconclusive(message: str, nc: float = 0, nb: float = 0) -> Judgement:
    return Judgement(INCONCLUSIVE, None, None, None, None, None, int(nc), int(nb), message)


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
) -> Judgement:
    """Judge error counts: scalars (cumulative) or per-window sequences, summed.

    ``alpha`` is this check's share of the family-wise false-rollback rate.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if direction not in ("increase", "decrease", "either"):
        raise ValueError(f"direction must be increase, decrease or either, not {direction!r}")
    vals: list[float] = []
    for label, v in (
        ("canary total", canary_total),
        ("canary errors", canary_errors),
        ("baseline total", baseline_total),
        ("baseline errors", baseline_errors),
    ):
        s, problem = _counts(label, v)
        if s is None:
            return _inconclusive(problem)
        vals.append(s)
    nc, xc, nb, xb = vals
    if xc > nc or xb > nb:
        return _inconclusive("more errors than requests (inconsistent metrics)", nc, nb)
    if nc == 0 or nb == 0:
        arm = "canary" if nc == 0 else "baseline"
        if nc == 0 and nb == 0:
            arm = "canary and baseline"
        return _inconclusive(f"no requests from {arm}", nc, nb)
    r = errors_core(xc, nc, xb, nb, alpha, direction, max_effect, min_samples, negligible_rate)
    code = int(r["code"])
    log_e = float(r["log_e"])
    e = math.exp(min(log_e, 700.0))
    rates = f"{100 * xc / nc:.3g}% vs {100 * xb / nb:.3g}%"
    sizes = f"n={int(nc)}/{int(nb)}"
    bound = float(r["bound"])
    bound_txt = f"bound {bound:+.0%}" if math.isfinite(bound) else "bound unknown"
    if code == FAIL_CODE:
        msg = f"{_fmt_e(log_e)} >= {1 / alpha:.3g}, {rates}, {sizes}"
    elif code == PASS_CODE:
        why = (
            f"effect {bound_txt} <= {max_effect:+.0%}"
            if bound <= max_effect
            else f"canary rate surely < {100 * negligible_rate:.3g}%"
        )
        msg = f"{_fmt_e(log_e)}, {rates}, {why}, {sizes}"
    else:
        if nc < min_samples or nb < min_samples:
            why = f"too little data (need {min_samples}/arm)"
        else:
            why = f"effect {bound_txt} not yet within {max_effect:+.0%}"
        msg = f"{_fmt_e(log_e)}, {rates}, {why}, {sizes}"
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


def _histogram(name: str, counts: ArrayLike, bounds: Array, cumulative: bool) -> tuple[Array | None, str]:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim == 2:  # per-window histograms: sum the windows
        arr = arr.sum(axis=0)
    if arr.ndim != 1 or arr.shape[0] != bounds.shape[0]:
        return None, f"{name} has {arr.shape} buckets but there are {bounds.shape[0]} bounds"
    if not np.all(np.isfinite(arr)):
        return None, f"{name} contains NaN or Inf"
    if np.any(arr < 0):
        return None, f"{name} contains negative counts"
    if cumulative:
        # increase() on each le series separately can break monotonicity slightly
        arr = np.diff(np.maximum.accumulate(arr), prepend=0.0)
    return np.rint(arr), ""


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
) -> Judgement:
    """Judge latency: raw samples (``bounds=None``) or histogram bucket counts with upper ``bounds``.

    Bucket counts are per bucket, or Prometheus-style cumulative (``le``) with ``cumulative=True``;
    a 2-D array is a list of per-window histograms, summed.  With samples the thresholds are the
    exact pooled quantiles; with buckets they are the bucket bounds nearest to them.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if direction not in ("increase", "decrease", "either"):
        raise ValueError(f"direction must be increase, decrease or either, not {direction!r}")
    if not 0.5 <= quantile < 1:
        raise ValueError("quantile must be in [0.5, 1)")
    if bounds is None:
        c = np.asarray(canary, dtype=np.float64).ravel()
        b = np.asarray(baseline, dtype=np.float64).ravel()
        for label, arr in (("canary samples", c), ("baseline samples", b)):
            if not np.all(np.isfinite(arr)):
                return _inconclusive(f"{label} contain NaN or Inf", c.size, b.size)
        if c.size == 0 or b.size == 0:
            return _inconclusive(f"no latency samples from {'canary' if c.size == 0 else 'baseline'}", c.size, b.size)
        pooled = np.concatenate([c, b])
        edges = np.unique(np.quantile(pooled, [0.5, quantile], method="lower"))
        edges = np.append(edges, np.inf)
        hc = np.histogram(c, bins=np.concatenate([[-np.inf], edges]))[0].astype(np.float64)
        hb = np.histogram(b, bins=np.concatenate([[-np.inf], edges]))[0].astype(np.float64)
        bnd = edges
    else:
        bnd = np.asarray(bounds, dtype=np.float64)
        if bnd.ndim != 1 or bnd.size == 0 or np.any(np.isnan(bnd)) or np.any(np.diff(bnd) <= 0):
            return _inconclusive("histogram bounds must be strictly ascending numbers")
        hc_, problem = _histogram("canary buckets", canary, bnd, cumulative)
        if hc_ is None:
            return _inconclusive(problem)
        hb_, problem = _histogram("baseline buckets", baseline, bnd, cumulative)
        if hb_ is None:
            return _inconclusive(problem)
        hc, hb = hc_, hb_
        if not np.isinf(bnd[-1]):  # observations above the last bound are not in the histogram
            bnd = np.append(bnd, np.inf)
            hc, hb = np.append(hc, 0.0), np.append(hb, 0.0)
    nc, nb = float(hc.sum()), float(hb.sum())
    if nc == 0 or nb == 0:
        arm = "canary and baseline" if nc == nb == 0 else ("canary" if nc == 0 else "baseline")
        return _inconclusive(f"no latency observations from {arm}", nc, nb)
    r = latency_core(hc, hb, bnd, alpha, direction, max_effect, min_samples, quantile)
    code = int(r["code"])
    parts = []
    for tag in ("median", "tail"):
        idx = int(r[f"{tag}_index"])
        label = "p50" if tag == "median" else f"p{100 * quantile:g}"
        if idx < 0:
            parts.append(f"{label}: no bucket bound splits the data")
            continue
        bound = float(r[f"{tag}_bound"])
        parts.append(
            f">{bnd[idx]:.4g} ({label}): {int(r[f'{tag}_xc'])} vs {int(r[f'{tag}_xb'])} slow, "
            f"{_fmt_e(float(r[f'{tag}_log_e']))}, "
            f"effect {float(r[f'{tag}_effect']):+.0%} (bound {bound:+.0%})"
            if math.isfinite(bound) and math.isfinite(float(r[f"{tag}_effect"]))
            else f">{bnd[idx]:.4g} ({label}): {int(r[f'{tag}_xc'])} vs {int(r[f'{tag}_xb'])} slow, "
            f"{_fmt_e(float(r[f'{tag}_log_e']))}"
        )
    # report the sub-test with the most evidence against the canary
    tag = "median" if float(r["median_log_e"]) >= float(r["tail_log_e"]) else "tail"
    if code != FAIL_CODE:
        # otherwise the one whose effect bound is furthest from passing
        bm, bt = float(r["median_bound"]), float(r["tail_bound"])
        tag = "median" if (bm if not math.isnan(bm) else np.inf) > (bt if not math.isnan(bt) else np.inf) else "tail"
        if code == INC_CODE and int(r["tail_index"]) < 0:
            tag = "tail"
    log_e = float(r[f"{tag}_log_e"])
    e = math.exp(min(log_e, 700.0))
    extra = ""
    if code == INC_CODE and (nc < min_samples or nb < min_samples):
        extra = f"; too little data (need {min_samples}/arm)"
    msg = "; ".join(parts) + f"; n={int(nc)}/{int(nb)}" + extra
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
