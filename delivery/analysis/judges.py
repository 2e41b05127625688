"""Statistical judges: canary vs baseline on raw observations (no Prometheus needed).

Both judges reduce to one test on "bad" events (errors, or requests slower than a threshold),
counted per **window** (a stretch of time, e.g. one minute).  In window ``w`` the canary served
``s_w`` of the requests (its traffic share *in that window*); if the canary's rate of bad events is
``r`` times the baseline's (``r`` the rate ratio, the same in every window), then, given the
window's ``m_w`` bad events, the canary's count ``x_w`` is Binomial(m_w, q_w(r)) with

    q_w(r) = s_w·r / (s_w·r + 1 - s_w).

The baseline's own rate may change from window to window (peak hours) and so may the share (pods
becoming Ready, a router weight moving): conditioning each window on its own share and its own
total removes both, so a healthy canary cannot look worse through pooling (Simpson's paradox).
The likelihood ratio of ``r`` against ``r = 1`` is the product over windows

    L(r) = Π_w r^{x_w} / (1 - s_w + s_w·r)^{m_w},

which, for any fixed ``r`` >= 1, is a non-negative supermartingale while the canary is no worse
(window after window).  Mixing over ``log r`` with a fixed prior gives the e-process of the
**fail** test, E = Σ_k π_k L(r_k); by Ville's inequality P(E ever >= 1/α) <= α, so the judge may
be re-run on a growing span as often as wanted ("anytime-valid").  The **pass** test is the
mirror image: H "r >= 1 + max_effect" is rejected when Σ_k π'_k L(r'_k) / L(1 + max_effect) >=
1/α_pass with alternatives r'_k below the tolerated effect (centred on a healthy canary, r = 1).
Its inversion over the tested ratio is an anytime-valid upper confidence bound on the bad effect
(the test statistic grows with the tested ratio because log L is concave in log r).  Binomial
conditioning is conservative when the true conditional law is hypergeometric (convex order).

The vectorised cores (:func:`stratified_test`, :func:`errors_core`, :func:`latency_core`) take
numpy arrays; with ``windows=True`` the last axis (the one before the buckets, for latency) holds
the windows, otherwise every element is one window.  They **trust their caller** on the data
(counts finite, non-negative, bad <= total per window): a stream that breaks this is marked in the
``invalid`` column and judged inconclusive, never raised on.  The ``judge_*`` wrappers validate
everything: a bad parameter raises ValueError naming it, a bad datum gives an inconclusive
:class:`Judgement` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from strategies.evidence import Outcome

PASS, FAIL, INCONCLUSIVE = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE  # the verdict's own outcomes
# outcome codes of the vectorised cores
INC_CODE, PASS_CODE, FAIL_CODE = 0, 1, 2
_CODE_NAMES = {INC_CODE: INCONCLUSIVE, PASS_CODE: PASS, FAIL_CODE: FAIL}
DIRECTIONS = ("increase", "decrease", "either")

# Concentration of the single-window beta mixtures (log_e_value, proportion_bounds, the
# negligible-rate test): c ≈ 10 puts most prior mass on rate ratios between about 0.3x and 3x.
CONCENTRATION = 10.0

# The fail test's mixture over the log rate ratio: half-normal (sd 0.7) on log r > 0, on a grid
# from +5 % to 10x: most weight on the modest regressions that are hard to see, enough on large
# ones.  Tried against it on the benchmark: a normal centred on a doubled rate (sd 0.5) detects
# ~0.5 point more at a 20 % share but rolls back 1.2-1.5 % of healthy canaries (the target is
# <= 1 %); wider or more distant priors lose detection.  Either way the test stays within ~4
# points of one that knows the true ratio (benchmarks/analysis.py prints that bound).
#
# A second component (issue 17) spends a quarter of the evidence on large regressions: a normal
# on log r centred on a tenfold rate (sd 1.0, grid 2x .. 1000x).  A mixture of e-processes is an
# e-process, so this is the same as running a large-effect test at alpha/4 beside the modest-effect
# one at 3 alpha/4: a canary failing 5 % instead of 0.5 % is caught at the first look far more
# often (benchmarks/failfast.py: 5.7-6x fewer bad requests than Argo-style instead of 5.0x), at
# the price of ~1 point of detection of a doubled rate at a 20 % share (benchmarks/analysis.py).
FAIL_WIDTH = 0.7
FAIL_LARGE_WEIGHT, FAIL_LARGE_CENTRE, FAIL_LARGE_WIDTH = 0.25, 10.0, 1.0
_SMALL_OFFSETS = np.linspace(math.log(1.05), math.log(10.0), 40)
_LARGE_OFFSETS = np.linspace(math.log(2.0), math.log(1000.0), 30)
_SMALL_LOG_W = -0.5 * (_SMALL_OFFSETS / FAIL_WIDTH) ** 2
_LARGE_LOG_W = -0.5 * ((_LARGE_OFFSETS - math.log(FAIL_LARGE_CENTRE)) / FAIL_LARGE_WIDTH) ** 2
_FAIL_OFFSETS = np.concatenate([_SMALL_OFFSETS, _LARGE_OFFSETS])
_FAIL_LOG_W = np.concatenate(
    [
        math.log1p(-FAIL_LARGE_WEIGHT) + _SMALL_LOG_W - special.logsumexp(_SMALL_LOG_W),
        math.log(FAIL_LARGE_WEIGHT) + _LARGE_LOG_W - special.logsumexp(_LARGE_LOG_W),
    ]
)
# The pass test's alternatives, as multiples u of the tolerated log ratio below the tested one:
# u = 1 is a canary exactly as good as the baseline; a normal weight (sd 0.35) around it.
_PASS_UNITS = np.linspace(0.2, 2.0, 19)
_PASS_LOG_W = -0.5 * ((_PASS_UNITS - 1.0) / 0.35) ** 2
_PASS_LOG_W = _PASS_LOG_W - special.logsumexp(_PASS_LOG_W)
# Search range of the confidence bound on log r (ratios 1e-6 .. 1e6).
_LOG_RATIO_LIMIT = math.log(1e6)
# Counts above this are refused as data: beyond 2**53 a float64 no longer holds every integer.
MAX_COUNT = 1e15

Array = NDArray[np.float64]
# a vectorised judge's columns: float64 statistics, bool decisions, int outcome codes
Columns = dict[str, NDArray[Any]]


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


# --------------------------------------------------------------------------- single-window mixtures


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
    """The single-window beta-mixture test on cumulative counts (the judges before issue 11; kept for
    callers of the public API, the judges now use :func:`stratified_test`), vectorised.

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


# --------------------------------------------------------------------------- the stratified test


def _log_shares(nc: Array, nb: Array) -> tuple[Array, Array]:
    """log s and log(1 - s) per window (a window without requests gets s = 1/2: it has no events)."""
    tot = nc + nb
    s = np.where(tot > 0, nc / np.where(tot > 0, tot, 1.0), 0.5)
    with np.errstate(divide="ignore"):
        return np.log(s), np.log1p(-s)


def stratified_loglik(theta: ArrayLike, xc: Array, m: Array, log_s: Array, log_1s: Array) -> Array:
    """log L(e^θ) = Σ_w x_w·θ - m_w·log(1 - s_w + s_w·e^θ), summed over the windows (last axis).

    ``theta`` is (..., K) (broadcast against the data's leading axes) or (K,); returns (..., K).
    """
    th = _f(theta)[..., None, :]
    term = xc[..., None] * th - m[..., None] * np.logaddexp(log_1s[..., None], log_s[..., None] + th)
    return _f(term.sum(axis=-2))


def _pass_log_e(theta0: Array, toward: int, offsets: Array, xc: Array, m: Array, ls: Array, l1s: Array) -> Array:
    """log e-value against H "log r >= θ0" (toward = -1: alternatives below) or "<= θ0" (toward = +1)."""
    alts = theta0[..., None] + toward * offsets
    num = special.logsumexp(_PASS_LOG_W + stratified_loglik(alts, xc, m, ls, l1s), axis=-1)
    return _f(num - stratified_loglik(theta0[..., None], xc, m, ls, l1s)[..., 0])


def _bound(toward: int, offsets: Array, level: float, xc: Array, m: Array, ls: Array, l1s: Array) -> Array:
    """The confidence bound on log r: inf{θ0 : pass e-value of "log r >= θ0" >= 1/α} (toward -1),
    or sup{θ0 : that of "log r <= θ0" >= 1/α} (toward +1).  The e-value is monotone in θ0
    (log L is concave), so bisection finds it; ±inf when no tested ratio is excluded."""
    shape = xc.shape[:-1]
    lim = _LOG_RATIO_LIMIT
    lo, hi = np.full(shape, -lim), np.full(shape, lim)

    def rejected(t: Array) -> NDArray[np.bool_]:
        return _pass_log_e(t, toward, offsets, xc, m, ls, l1s) >= level

    # toward -1: rejected(θ0) is non-decreasing in θ0; find the smallest rejected θ0
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        r = rejected(mid)
        if toward < 0:
            hi, lo = np.where(r, mid, hi), np.where(r, lo, mid)
        else:
            lo, hi = np.where(r, mid, lo), np.where(r, hi, mid)
    if toward < 0:
        out = np.where(rejected(np.full(shape, lim)), hi, np.inf)
        return _f(np.where(rejected(np.full(shape, -lim)), -lim, out))
    out = np.where(rejected(np.full(shape, -lim)), lo, -np.inf)
    return _f(np.where(rejected(np.full(shape, lim)), lim, out))


def stratified_test(
    xc: ArrayLike,
    nc: ArrayLike,
    xb: ArrayLike,
    nb: ArrayLike,
    alpha: float,
    direction: str = "increase",
    max_effect: float = 0.5,
    pass_alpha: float | None = None,
    with_bound: bool = True,
) -> Columns:
    """The shared anytime-valid two-sample test on per-window counts of bad events (vectorised).

    Arrays (..., W): in each window xc of nc canary and xb of nb baseline observations were bad.
    Returns (...) arrays: ``log_e`` (fail e-process), ``reject`` (log_e >= log 1/alpha),
    ``pass_log_e`` (e-process against "the bad effect exceeds max_effect"), ``bounded`` (that one
    >= log 1/pass_alpha), ``share`` (canary share of all bad events), ``effect`` (Mantel-Haenszel
    rate ratio - 1) and, with ``with_bound``, ``bound`` (anytime-valid upper bound of the bad
    effect at level pass_alpha; NaN without it).
    """
    xc, nc, xb, nb = np.broadcast_arrays(_f(xc), _f(nc), _f(xb), _f(nb))
    pa = alpha if pass_alpha is None else pass_alpha
    m = xc + xb
    ls, l1s = _log_shares(nc, nb)
    shape = xc.shape[:-1]
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    ups, downs = direction in ("increase", "either"), direction in ("decrease", "either")
    log_up = log_down = ok_up = ok_down = np.full(shape, np.inf)
    if ups:
        log_up = special.logsumexp(_FAIL_LOG_W + stratified_loglik(_FAIL_OFFSETS, xc, m, ls, l1s), axis=-1)
    if downs:
        log_down = special.logsumexp(_FAIL_LOG_W + stratified_loglik(-_FAIL_OFFSETS, xc, m, ls, l1s), axis=-1)
    if direction == "either":
        log_e = np.logaddexp(log_up, log_down) - math.log(2.0)
    else:
        log_e = log_up if ups else log_down
    level = math.log(1.0 / pa)
    # pass: the bad effect is within max_effect with confidence 1 - pass_alpha
    up_t = math.log1p(max_effect)
    up_off = down_off = up_t * _PASS_UNITS
    if ups:
        ok_up = _pass_log_e(np.full(shape, up_t), -1, up_off, xc, m, ls, l1s)
    if downs and max_effect < 1:
        down_t = math.log1p(-max_effect)
        down_off = -down_t * _PASS_UNITS
        ok_down = _pass_log_e(np.full(shape, down_t), +1, down_off, xc, m, ls, l1s)
    # (a decrease can never exceed 100 %: with max_effect >= 1 it is always within)
    pass_log_e = np.minimum(ok_up, ok_down)
    out: Columns = {"log_e": _f(log_e), "reject": log_e >= math.log(1.0 / alpha)}
    out["pass_log_e"] = _f(pass_log_e)
    out["bounded"] = pass_log_e >= level
    with np.errstate(divide="ignore", invalid="ignore"):
        tot = nc + nb
        big = np.where(tot > 0, tot, 1.0)
        num, den = (xc * nb / big).sum(axis=-1), (xb * nc / big).sum(axis=-1)
        out["effect"] = _f(
            np.where(den > 0, num / np.where(den > 0, den, 1.0) - 1.0, np.where(num > 0, np.inf, np.nan))
        )
        x_all, m_all = xc.sum(axis=-1), m.sum(axis=-1)
        out["share"] = _f(np.where(m_all > 0, x_all / np.where(m_all > 0, m_all, 1.0), np.nan))
    if with_bound:
        up = np.expm1(_bound(-1, up_off, level, xc, m, ls, l1s)) if ups else np.full(shape, -np.inf)
        down = np.full(shape, -np.inf)
        if downs:  # 1 - r: at most 100 %
            down = -np.expm1(_bound(+1, down_off, level, xc, m, ls, l1s))
        out["bound"] = _f(np.maximum(up, down))
    else:
        out["bound"] = np.full(shape, np.nan)
    return out


def _as_windows(windows: bool, *arrays: ArrayLike) -> list[Array]:
    arrs = np.broadcast_arrays(*(_f(a) for a in arrays))
    return [a if windows else a[..., None] for a in arrs]


def _invalid_counts(*pairs: tuple[Array, Array]) -> NDArray[np.bool_]:
    """Streams (...) whose windows hold a non-finite or negative count, or more bad than total."""
    bad = np.zeros(pairs[0][0].shape[:-1], dtype=bool)
    for x, n in pairs:
        with np.errstate(invalid="ignore"):
            w = ~np.isfinite(x) | ~np.isfinite(n) | (x < 0) | (n < 0) | (x > n)
        bad |= w.any(axis=-1)
    return bad


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
    *,
    pass_alpha: float | None = None,
    windows: bool = False,
    with_bound: bool = True,
) -> Columns:
    """Vectorised error-count judge; adds ``code`` (0 inc, 1 pass, 2 fail) and ``invalid``.

    ``windows=True``: the last axis holds the windows of one stream (judged stratified);
    otherwise every element is one window (cumulative counts).  Trusts its caller on the
    parameters; data that break the count rules make that stream's code inconclusive.
    """
    xc_, nc_, xb_, nb_ = _as_windows(windows, xc, nc, xb, nb)
    invalid = _invalid_counts((xc_, nc_), (xb_, nb_))
    clean = [np.where(invalid[..., None], 0.0, a) for a in (xc_, nc_, xb_, nb_)]
    xc_, nc_, xb_, nb_ = clean
    r = stratified_test(xc_, nc_, xb_, nb_, alpha, direction, max_effect, pass_alpha, with_bound)
    pa = alpha if pass_alpha is None else pass_alpha
    tc, tb = nc_.sum(axis=-1), nb_.sum(axis=-1)
    enough = (tc >= min_samples) & (tb >= min_samples)
    bounded = r["bounded"]
    if negligible_rate > 0 and direction == "increase":
        # the canary's own error rate is surely negligible: prior mean at the negligible rate
        r0 = negligible_rate
        x = xc_.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = 0.5, 0.5 / r0
            thr = special.betaln(a + x, b + tc - x) - special.betaln(a, b) + math.log(pa)
            ok = special.xlogy(x, r0) + special.xlog1py(tc - x, -r0) < thr  # r0 itself is excluded
        ok &= x / np.where(tc > 0, tc, 1.0) < r0
        r["negligible"] = ok
        bounded = bounded | ok
    code = np.where(r["reject"], FAIL_CODE, np.where(enough & bounded, PASS_CODE, INC_CODE))
    code = np.where((tc > 0) & (tb > 0) & ~invalid, code, INC_CODE)
    r["code"] = code
    r["invalid"] = invalid
    r["n_canary"], r["n_baseline"] = tc, tb
    r["xc"], r["xb"] = xc_.sum(axis=-1), xb_.sum(axis=-1)
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
    *,
    pass_alpha: float | None = None,
    windows: bool = False,
    with_bound: bool = True,
    prior: ArrayLike | None = None,
) -> Columns:
    """Vectorised latency judge on per-bucket histogram counts: (..., B), or (..., W, B) per window
    with ``windows=True``; ``prior`` (..., B): bucket counts from before the span (the baseline's
    window before it) that seed the thresholds and are not tested.

    Two anytime-valid exceedance tests, each failing at alpha/2: of the pooled median (a shift of
    the whole distribution) and of the pooled ``quantile`` (a tail-only regression); exceedances
    are counted per window and judged stratified.  Fails when either rejects; passes with enough
    data and both effects bounded within ``max_effect`` (each at pass_alpha: a pass needs both, so
    no split is needed).

    Thresholds are label-blind (both arms pooled).  A sequence of windows (``windows=True``) is a
    stream looked at again and again as it grows, so each window's threshold comes from the data
    **before** it only (``prior`` and the earlier windows): a window's threshold never changes once
    the window exists, so the product over windows stays one e-process across looks (a threshold
    re-picked from all the data at every look would make each look a different test, and Ville's
    bound would no longer cover the sequence of looks).  The first window, when ``prior`` holds
    no data, is judged against its own pooled quantiles: valid at any one look, and fixed once the
    window is complete, but looks inside it re-pick them (give ``prior`` to avoid that).  One
    window (``windows=False``) is judged against ``prior`` or else its own pooled quantiles.
    """
    hc, hb = np.broadcast_arrays(_f(hc), _f(hb))
    bounds = _f(bounds)
    if not windows:
        hc, hb = hc[..., None, :], hb[..., None, :]
    with np.errstate(invalid="ignore"):
        invalid = (~np.isfinite(hc) | ~np.isfinite(hb) | (hc < 0) | (hb < 0)).any(axis=(-1, -2))
    hc = np.where(invalid[..., None, None], 0.0, hc)
    hb = np.where(invalid[..., None, None], 0.0, hb)
    ncw, nbw = hc.sum(axis=-1), hb.sum(axis=-1)  # (..., W)
    nc, nb = ncw.sum(axis=-1), nbw.sum(axis=-1)
    cc, cb = np.cumsum(hc, axis=-1), np.cumsum(hb, axis=-1)
    out: Columns = {"n_canary": nc, "n_baseline": nb, "invalid": invalid}
    codes = []
    # each window's thresholds from the data before it (predictable): prior + earlier windows
    seed = (
        np.zeros(hc.shape[:-2] + hc.shape[-1:])
        if prior is None
        else np.broadcast_to(_f(prior), hc.shape[:-2] + hc.shape[-1:])
    )
    seed = np.where(np.isfinite(seed) & (seed > 0), seed, 0.0)
    past_c = np.cumsum(hc, axis=-2) - hc + seed[..., None, :]
    past_b = np.cumsum(hb, axis=-2) - hb
    # the first window with nothing before it: its own pooled data
    first = (past_c[..., :1, :].sum(axis=-1) + past_b[..., :1, :].sum(axis=-1)) <= 0
    past_c[..., :1, :] = np.where(first[..., None], hc[..., :1, :], past_c[..., :1, :])
    past_b[..., :1, :] = np.where(first[..., None], hb[..., :1, :], past_b[..., :1, :])
    for tag, q in (("median", 0.5), ("tail", quantile)):
        idx_w = pooled_threshold_index(past_c, past_b, bounds, q)  # (..., W); -1: no threshold yet
        tested = idx_w >= 0
        safe = np.maximum(idx_w, 0)[..., None]
        xc = np.where(tested, ncw - np.take_along_axis(cc, safe, axis=-1)[..., 0], 0.0)
        xb = np.where(tested, nbw - np.take_along_axis(cb, safe, axis=-1)[..., 0], 0.0)
        pa = alpha if pass_alpha is None else pass_alpha
        r = stratified_test(xc, ncw, xb, nbw, alpha / 2.0, direction, max_effect, pa, with_bound)
        ok = tested.any(axis=-1)
        idx = idx_w[..., -1]  # the newest window's threshold (reported)
        code = np.where(
            ok & r["reject"],
            FAIL_CODE,
            np.where(ok & (nc >= min_samples) & (nb >= min_samples) & r["bounded"], PASS_CODE, INC_CODE),
        )
        code = np.where((nc > 0) & (nb > 0) & ~invalid, code, INC_CODE)
        codes.append(code)
        for k, v in r.items():
            out[f"{tag}_{k}"] = v
        out[f"{tag}_index"] = idx
        out[f"{tag}_xc"], out[f"{tag}_xb"] = xc.sum(axis=-1), xb.sum(axis=-1)
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


def _real(name: str, value: object) -> float:
    """A parameter as a finite float, or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return v


def check_parameters(
    *,
    alpha: float,
    direction: str,
    max_effect: float,
    min_samples: float,
    pass_alpha: float | None = None,
    negligible_rate: float | None = None,
    quantile: float | None = None,
) -> None:
    """Raise ValueError naming the first bad parameter of a judge (the rules of docs/analysis.md)."""
    if not 0 < _real("alpha", alpha) < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    if pass_alpha is not None and not 0 < _real("pass_alpha", pass_alpha) < 1:
        raise ValueError(f"pass_alpha must be in (0, 1), not {pass_alpha!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if not _real("max_effect", max_effect) > 0:
        raise ValueError(f"max_effect must be > 0, not {max_effect!r}")
    ms = _real("min_samples", min_samples)
    if ms < 0 or ms != math.floor(ms):
        raise ValueError(f"min_samples must be a whole number >= 0, not {min_samples!r}")
    if negligible_rate is not None and not 0 <= _real("negligible_rate", negligible_rate) < 1:
        raise ValueError(f"negligible_rate must be in [0, 1), not {negligible_rate!r}")
    if quantile is not None and not 0.5 <= _real("quantile", quantile) < 1:
        raise ValueError(f"quantile must be in [0.5, 1), not {quantile!r}")


def _counts(name: str, values: ArrayLike) -> tuple[Array | None, str]:
    """Per-window counts of one series as a 1-D array (a scalar is one window), rounded to whole
    numbers; (None, problem naming the series) for anything that is not a count."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except OverflowError:
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    except (TypeError, ValueError):
        return None, f"{name} is not a number or a sequence of per-window numbers"
    if arr.ndim != 1:
        return None, f"{name} must be a number or a 1-D sequence of per-window counts, not shape {arr.shape}"
    if arr.size == 0:
        return None, f"no observations for {name}"
    if not np.all(np.isfinite(arr)):
        return None, f"{name} contains NaN or Inf"
    if np.any(arr < 0):
        return None, f"{name} contains negative counts"
    if np.any(arr > MAX_COUNT):
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    return np.rint(arr), ""


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
        arr, problem = _counts(label, v)
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


def _histograms(name: str, counts: ArrayLike, bounds: Array, cumulative: bool) -> tuple[Array | None, str]:
    """Bucket counts as (W, B) per-window histograms; a 1-D array is one window."""
    try:
        arr = np.asarray(counts, dtype=np.float64)
    except OverflowError:
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    except (TypeError, ValueError):
        return None, f"{name} is not an array of bucket counts (per window: all windows the same buckets)"
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != bounds.shape[0] or arr.shape[0] == 0:
        return (
            None,
            f"{name} has shape {arr.shape} but there are {bounds.shape[0]} bounds (buckets, or windows x buckets)",
        )
    if not np.all(np.isfinite(arr)):
        return None, f"{name} contains NaN or Inf"
    if np.any(arr < 0):
        return None, f"{name} contains negative counts"
    if np.any(arr > MAX_COUNT):
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    if cumulative:
        # increase() on each le series separately can break monotonicity slightly
        arr = np.diff(np.maximum.accumulate(arr, axis=1), axis=1, prepend=0.0)
    return np.rint(arr), ""


def _sample_windows(name: str, values: ArrayLike | Sequence[ArrayLike]) -> tuple[list[Array] | None, str]:
    """Raw latency samples: one 1-D array (one window), a 2-D array or a list of 1-D arrays (windows)."""
    try:
        if isinstance(values, list | tuple) and values and all(np.ndim(v) == 1 for v in values):
            wins = [np.asarray(v, dtype=np.float64) for v in values]
        else:
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim > 2:
                return None, f"{name} must be samples or per-window samples, not shape {arr.shape}"
            wins = list(arr) if arr.ndim == 2 else [np.atleast_1d(arr)]
    except OverflowError:
        return None, f"{name} contain a value too large to judge"
    except (TypeError, ValueError):
        return None, f"{name} are not numbers"
    for w in wins:
        if not np.all(np.isfinite(w)):
            return None, f"{name} contain NaN or Inf"
        if np.any(w < 0):
            return None, f"{name} contain negative latencies"
    return wins, ""


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
    if bounds is None:
        cw, problem = _sample_windows("canary samples", canary)
        if cw is None:
            return _inconclusive(problem)
        bw, problem = _sample_windows("baseline samples", baseline)
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
            pwins, problem = _sample_windows("prior samples", prior)
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
        bnd = edges
    else:
        try:
            bnd = np.asarray(bounds, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            return _inconclusive("histogram bounds must be strictly ascending numbers")
        if bnd.ndim != 1 or bnd.size == 0 or np.any(np.isnan(bnd)) or np.any(np.diff(bnd) <= 0):
            return _inconclusive("histogram bounds must be strictly ascending numbers")
        hc_, problem = _histograms("canary buckets", canary, bnd, cumulative)
        if hc_ is None:
            return _inconclusive(problem)
        hb_, problem = _histograms("baseline buckets", baseline, bnd, cumulative)
        if hb_ is None:
            return _inconclusive(problem)
        if hc_.shape[0] != hb_.shape[0]:
            return _inconclusive(
                f"per-window sequences of different lengths: canary {hc_.shape[0]} windows, baseline {hb_.shape[0]}",
                hc_.sum(),
                hb_.sum(),
            )
        hc, hb = hc_, hb_
        seed = None
        if prior is not None:
            ph, problem = _histograms("prior buckets", prior, bnd, cumulative)
            if ph is None:
                return _inconclusive(problem)
            seed = ph.sum(axis=0)
        if not np.isinf(bnd[-1]):  # observations above the last bound are not in the histogram
            bnd = np.append(bnd, np.inf)
            hc = np.concatenate([hc, np.zeros((hc.shape[0], 1))], axis=1)
            hb = np.concatenate([hb, np.zeros((hb.shape[0], 1))], axis=1)
            seed = None if seed is None else np.append(seed, 0.0)
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
