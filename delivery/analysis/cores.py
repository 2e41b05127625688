"""The vectorised cores: each judge's decision on numpy arrays, for one stream or thousands at once.

The cores (:func:`errors_core`, :func:`latency_core`) run the anytime-valid tests of
:mod:`delivery.analysis.evalues` and turn them into an outcome code per stream.  With
``windows=True`` the last axis (the one before the buckets, for latency) holds the windows,
otherwise every element is one window.  They **trust their caller** on the data (counts finite,
non-negative, bad <= total per window): a stream that breaks this is marked in the ``invalid``
column and judged inconclusive, never raised on.  The judges (:mod:`delivery.analysis.judges`)
validate everything before calling them; the benchmarks call them directly.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from delivery.analysis.evalues import Array, Columns, floats, stratified_test

# outcome codes of the vectorised cores
INC_CODE, PASS_CODE, FAIL_CODE = 0, 1, 2


def _as_windows(windows: bool, *arrays: ArrayLike) -> list[Array]:
    arrs = np.broadcast_arrays(*(floats(a) for a in arrays))
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
    hc, hb = np.broadcast_arrays(floats(hc), floats(hb))
    bounds = floats(bounds)
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
        else np.broadcast_to(floats(prior), hc.shape[:-2] + hc.shape[-1:])
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
