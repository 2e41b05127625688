"""Benchmark: deliver's anytime-valid judges against the anchors' decision rules on synthetic streams.

Seeded synthetic canary/baseline streams, 1-minute windows, 30 windows:

  errors   0.5% vs 0.5% (A/A) and 0.5% vs 1.0%
  latency  lognormal (median 100 ms, sigma 0.5): A/A, whole distribution +20%,
           tail only (p99 +20%, median unchanged: the upper half of the log-latency is stretched)

at equal traffic, 1000 and 200 requests per arm per window; at unequal shares (canary 10 %, 20 %,
50 % of 1000 requests per window in total): errors A/A and 0.5% -> 1.0%; and under share drift x
time-varying rates (issue 11): the canary's share ramps from 5 % to 50 % over the 30 windows (pods
becoming Ready, a router weight reached gradually) of 2000 requests per window while the error
rate peaks from 0.2 % to 2 % and back (a peak hour; latency: the median rises 2x at the peak), the
same in both arms (A/A), plus a doubled error rate under the same drift.  Latencies are observed
the way Prometheus sees them, as histogram bucket counts (log-spaced buckets, ~5% apart); every
rule gets the same buckets.

Rules, all run on the same streams:

  deliver         delivery.analysis.cores (errors_core / latency_core) on the per-window counts
                  (stratified) after every window; fails at the Bonferroni share alpha/2 of a
                  2-check family (alpha = 0.05, the default), passes at alpha (a promotion needs
                  every check to pass); stops at the first pass or fail.
  deliver-pooled  the same judges on the cumulative counts as one window: what deliver did before
                  issue 11 (one traffic share for the whole span); drift scenarios only.
  argo            threshold per window ("measurement"): canary error rate >= 1%, or canary/baseline
                  p99 ratio > 1.10, is a failed measurement; rollback at the 4th (failureLimit 3).
  kayenta         after the 30 windows, Mann-Whitney on the 30 per-window values per arm (error
                  rate; p99) with a Hodges-Lehmann 98% confidence interval; rollback if the interval
                  lies above 0 and the HL shift exceeds 25% (tolerance 0.25) of the baseline median.
  fisher-end      one-sided Fisher exact test (alpha 0.05) once, after 30 windows.
  fisher-every    the same test after every window; rollback at the first p < 0.05.
  For latency the Fisher rules count requests slower than the pooled p99 (nearest bucket bound).

Printed per scenario, traffic and rule: rollback rate with a 95% Wilson interval (the false
rollback rate on A/A), missed regression rate, deliver's promotion rate, mean windows and median /
p90 canary requests to a decision (the rollback, deliver's pass, or the end of the 30 windows);
then the information bounds of the unequal-share rows (the test that knows the true effect) and
the targets, met / MISSED.  ``--json PATH`` writes the same.

    python -m benchmarks.analysis            # 1000 repetitions (a few minutes on 2 cores)
    python -m benchmarks.analysis --quick    # 200 repetitions, 1000-request and drift rows only

(from the repository root; ``.venv/bin/python benchmarks/analysis.py`` works too once ``make venv``
has installed the project.)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from delivery.analysis.cores import FAIL_CODE, PASS_CODE, errors_core, latency_core, pooled_threshold_index

WINDOWS = 30
ALPHA = 0.05  # deliver's family-wise alpha (default)
FAMILY = 2  # error-rate + latency
FIXED_ALPHA = 0.05  # the Fisher rules
MAX_EFFECT = 0.5  # deliver's default max-effect
MEDIAN, SIGMA = 0.100, 0.5
BOUNDS = np.append(np.geomspace(0.001, 100.0, 241), np.inf)  # seconds, ~4.9% apart
TAIL_K = 1.0 + math.log(1.2) / (stats.norm.ppf(0.99) * SIGMA)

# outcome per repetition: decision window (1-based) and whether it is a rollback
ROLLBACK, PROMOTE, NONE = 2, 1, 0
Outcomes = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Scenario:
    """One synthetic stream family: per-window requests and rates of each arm."""

    name: str
    group: str  # "equal" | "share" | "drift"
    traffic: str  # how the table names the traffic
    regression: bool
    kind: str  # "errors" | "latency"
    canary: np.ndarray  # (WINDOWS,) canary requests per window
    baseline: np.ndarray  # (WINDOWS,) baseline requests per window
    rate_c: np.ndarray  # errors: per-window error rates; latency: per-window median multipliers
    rate_b: np.ndarray
    shape: str = "aa"  # latency: "aa" | "shift" | "tail" (canary only)


@dataclass(frozen=True)
class Row:
    scenario: str
    group: str
    regression: bool
    traffic: str
    rule: str
    reps: int
    rollback_rate: float
    wilson_low: float
    wilson_high: float
    missed_rate: float | None
    promote_rate: float
    mean_windows_to_decision: float
    median_requests_to_decision: float
    p90_requests_to_decision: float
    median_requests_to_rollback: float | None


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def first_decision(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """codes (reps, windows) with 0 none / 1 promote / 2 rollback -> (window index 1-based, outcome)."""
    hit = codes != NONE
    any_hit = hit.any(axis=1)
    idx = np.where(any_hit, hit.argmax(axis=1), WINDOWS - 1)
    out = np.where(any_hit, codes[np.arange(codes.shape[0]), idx], NONE)
    return idx + 1, out


def hodges_lehmann_reject(
    canary: np.ndarray, baseline: np.ndarray, tol: float = 0.25, conf: float = 0.98
) -> np.ndarray:
    """Kayenta-style: Mann-Whitney HL CI of the shift (canary - baseline) over per-window values."""
    m, n = canary.shape[1], baseline.shape[1]
    diffs = np.sort((canary[:, :, None] - baseline[:, None, :]).reshape(canary.shape[0], -1), axis=1)
    z = stats.norm.ppf(1 - (1 - conf) / 2)
    k = int(math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12)))
    k = max(k, 1)
    low, high = diffs[:, k - 1], diffs[:, m * n - k]
    hl = np.median(diffs, axis=1)
    ref = np.abs(np.median(baseline, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref > 0, hl / ref, np.where(hl > 0, np.inf, 0.0))
    del high
    return (low > 0) & (rel > tol)


def fisher_greater(xc: np.ndarray, nc: np.ndarray, xb: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-value for 'canary has more bad events' (vectorised)."""
    return np.asarray(stats.hypergeom.sf(xc - 1, nc + nb, xc + xb, nc))


def hist_quantile(h: np.ndarray, q: float) -> np.ndarray:
    """Prometheus histogram_quantile on per-bucket counts (..., B) with BOUNDS (linear in bucket)."""
    cum = np.cumsum(h, axis=-1)
    total = cum[..., -1]
    target = q * total
    idx = np.argmax(cum >= target[..., None], axis=-1)
    idx = np.minimum(idx, len(BOUNDS) - 2)  # never interpolate into +Inf
    upper = BOUNDS[idx]
    lower = np.where(idx > 0, BOUNDS[np.maximum(idx - 1, 0)], 0.0)
    below = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0.0)
    inb = np.take_along_axis(h, idx[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(inb > 0, (target - below) / inb, 0.0)
    return np.where(total > 0, lower + (upper - lower) * frac, np.nan)


def codes_of(code: np.ndarray) -> np.ndarray:
    return np.select([code == FAIL_CODE, code == PASS_CODE], [ROLLBACK, PROMOTE], NONE)


def prefixes(a: np.ndarray) -> np.ndarray:
    """(reps, W, ...) -> (reps, looks, W, ...): look t sees windows 1..t, the later ones empty."""
    mask = np.tril(np.ones((WINDOWS, WINDOWS)))
    extra = (1,) * (a.ndim - 2)
    return np.asarray(a[:, None, ...] * mask.reshape(1, WINDOWS, WINDOWS, *extra))


def deliver_errors(xc: np.ndarray, nc: np.ndarray, xb: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """deliver's decision after each window (reps, W): the stratified judge on windows 1..t."""
    pxc, pnc, pxb, pnb = (prefixes(a) for a in (xc, nc, xb, nb))
    r = errors_core(pxc, pnc, pxb, pnb, ALPHA / FAMILY, pass_alpha=ALPHA, windows=True, with_bound=False)
    return codes_of(r["code"])


def pooled_errors(xc: np.ndarray, nc: np.ndarray, xb: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """The same judge on the cumulative counts as one window (deliver before issue 11)."""
    cxc, cnc, cxb, cnb = (np.cumsum(a, axis=1) for a in (xc, nc, xb, nb))
    return codes_of(errors_core(cxc, cnc, cxb, cnb, ALPHA / FAMILY, pass_alpha=ALPHA, with_bound=False)["code"])


def deliver_latency(hc: np.ndarray, hb: np.ndarray) -> np.ndarray:
    r = latency_core(
        prefixes(hc), prefixes(hb), BOUNDS, ALPHA / FAMILY, pass_alpha=ALPHA, windows=True, with_bound=False
    )
    return codes_of(r["code"])


def pooled_latency(hc: np.ndarray, hb: np.ndarray) -> np.ndarray:
    r = latency_core(np.cumsum(hc, 1), np.cumsum(hb, 1), BOUNDS, ALPHA / FAMILY, pass_alpha=ALPHA, with_bound=False)
    return codes_of(r["code"])


# --------------------------------------------------------------------------- errors


def error_rules(rng: np.random.Generator, reps: int, sc: Scenario) -> Outcomes:
    nc = np.broadcast_to(sc.canary, (reps, WINDOWS)).astype(np.float64)
    nb = np.broadcast_to(sc.baseline, (reps, WINDOWS)).astype(np.float64)
    xc = rng.binomial(nc.astype(np.int64), sc.rate_c).astype(np.float64)
    xb = rng.binomial(nb.astype(np.int64), sc.rate_b).astype(np.float64)
    cxc, cxb, cnc, cnb = np.cumsum(xc, 1), np.cumsum(xb, 1), np.cumsum(nc, 1), np.cumsum(nb, 1)
    out: Outcomes = {"deliver": first_decision(deliver_errors(xc, nc, xb, nb))}
    if sc.group == "drift":
        out["deliver-pooled"] = first_decision(pooled_errors(xc, nc, xb, nb))

    failed = np.cumsum(xc / nc >= 0.01, axis=1) > 3
    out["argo"] = first_decision(np.where(failed, ROLLBACK, NONE))

    kay = hodges_lehmann_reject(xc / nc, xb / nb)
    out["kayenta"] = (np.full(reps, WINDOWS), np.where(kay, ROLLBACK, NONE))

    p_all = fisher_greater(cxc, cnc, cxb, cnb)
    out["fisher-end"] = (np.full(reps, WINDOWS), np.where(p_all[:, -1] < FIXED_ALPHA, ROLLBACK, NONE))
    out["fisher-every"] = first_decision(np.where(p_all < FIXED_ALPHA, ROLLBACK, NONE))
    return out


# --------------------------------------------------------------------------- latency


def latency_histograms(rng: np.random.Generator, reps: int, sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Per-window bucket counts (reps, windows, B) for canary and baseline."""
    B = len(BOUNDS)

    def hist(counts: np.ndarray, medians: np.ndarray, canary: bool) -> np.ndarray:
        top = int(counts.max())
        z = rng.standard_normal((reps, WINDOWS, top))
        logx = SIGMA * z
        if canary and sc.shape == "shift":
            logx = logx + math.log(1.2)
        elif canary and sc.shape == "tail":
            logx = np.where(z > 0, logx * TAIL_K, logx)
        x = MEDIAN * medians[None, :, None] * np.exp(logx)
        b = np.searchsorted(BOUNDS, x, side="left")  # bucket i holds (BOUNDS[i-1], BOUNDS[i]]
        b = np.where(np.arange(top)[None, None, :] < counts[None, :, None], b, B)  # beyond the window's requests
        flat = (np.arange(reps * WINDOWS).reshape(reps, WINDOWS, 1) * (B + 1) + b).ravel()
        h = np.bincount(flat, minlength=reps * WINDOWS * (B + 1)).reshape(reps, WINDOWS, B + 1)
        return np.asarray(h[..., :B], dtype=np.float64)

    return hist(sc.canary, sc.rate_c, True), hist(sc.baseline, sc.rate_b, False)


def latency_rules(rng: np.random.Generator, reps: int, sc: Scenario) -> Outcomes:
    hc, hb = latency_histograms(rng, reps, sc)
    chc, chb = np.cumsum(hc, axis=1), np.cumsum(hb, axis=1)
    out: Outcomes = {"deliver": first_decision(deliver_latency(hc, hb))}
    if sc.group == "drift":
        out["deliver-pooled"] = first_decision(pooled_latency(hc, hb))

    p99c, p99b = hist_quantile(hc, 0.99), hist_quantile(hb, 0.99)
    failed = np.cumsum(p99c / p99b > 1.10, axis=1) > 3
    out["argo"] = first_decision(np.where(failed, ROLLBACK, NONE))

    out["kayenta"] = (np.full(reps, WINDOWS), np.where(hodges_lehmann_reject(p99c, p99b), ROLLBACK, NONE))

    # Fisher on requests slower than the pooled p99 bucket bound (cumulative, as deliver's threshold)
    idx = np.maximum(pooled_threshold_index(chc, chb, BOUNDS, 0.99), 0).astype(int)
    n = chc.sum(axis=-1)
    cc, cb = np.cumsum(chc, axis=-1), np.cumsum(chb, axis=-1)
    xc = n - np.take_along_axis(cc, idx[..., None], -1)[..., 0]
    xb = chb.sum(axis=-1) - np.take_along_axis(cb, idx[..., None], -1)[..., 0]
    p_all = fisher_greater(xc, n, xb, chb.sum(axis=-1))
    out["fisher-end"] = (np.full(reps, WINDOWS), np.where(p_all[:, -1] < FIXED_ALPHA, ROLLBACK, NONE))
    out["fisher-every"] = first_decision(np.where(p_all < FIXED_ALPHA, ROLLBACK, NONE))
    return out


# --------------------------------------------------------------------------- scenarios


def _const(v: float) -> np.ndarray:
    return np.full(WINDOWS, float(v))


DRIFT_SHARE = np.linspace(0.05, 0.5, WINDOWS)  # the canary's share ramps up
DRIFT_TOTAL = 2000.0
DRIFT_PEAK = np.sin(np.linspace(0.0, math.pi, WINDOWS)) ** 2  # 0 -> 1 (peak hour) -> 0
DRIFT_RATE = 0.002 + 0.018 * DRIFT_PEAK  # error rate 0.2 % -> 2 % -> 0.2 %
DRIFT_MEDIAN = 1.0 + DRIFT_PEAK  # latency median 100 ms -> 200 ms -> 100 ms


def scenarios(quick: bool = False) -> list[Scenario]:
    out: list[Scenario] = []
    for t in (1000,) if quick else (1000, 200):
        n = _const(t)
        tr = str(t)
        out += [
            Scenario("errors A/A 0.5% vs 0.5%", "equal", tr, False, "errors", n, n, _const(0.005), _const(0.005)),
            Scenario("errors 0.5% -> 1.0%", "equal", tr, True, "errors", n, n, _const(0.010), _const(0.005)),
            Scenario("latency A/A", "equal", tr, False, "latency", n, n, _const(1), _const(1)),
            Scenario("latency +20% whole", "equal", tr, True, "latency", n, n, _const(1), _const(1), "shift"),
            Scenario("latency p99 +20% tail", "equal", tr, True, "latency", n, n, _const(1), _const(1), "tail"),
        ]
    for share in (0.1, 0.2, 0.5):
        c, b = _const(1000 * share), _const(1000 * (1 - share))
        tr = f"{share:.0%} of 1000"
        out += [
            Scenario("errors A/A 0.5% vs 0.5%", "share", tr, False, "errors", c, b, _const(0.005), _const(0.005)),
            Scenario("errors 0.5% -> 1.0%", "share", tr, True, "errors", c, b, _const(0.010), _const(0.005)),
        ]
    c = np.rint(DRIFT_TOTAL * DRIFT_SHARE)
    b = DRIFT_TOTAL - c
    tr = "5->50% of 2000"
    out += [
        Scenario("drift errors A/A (0.2%->2%->0.2%)", "drift", tr, False, "errors", c, b, DRIFT_RATE, DRIFT_RATE),
        Scenario("drift errors 2x", "drift", tr, True, "errors", c, b, 2 * DRIFT_RATE, DRIFT_RATE),
        Scenario(
            "drift latency A/A (median 1x->2x->1x)", "drift", tr, False, "latency", c, b, DRIFT_MEDIAN, DRIFT_MEDIAN
        ),
    ]
    return out


def equal_scenarios(traffic: int = 1000) -> dict[str, Scenario]:
    """The equal-share scenarios by name, at ``traffic`` requests per arm per window (for the other
    benchmarks, which draw the same streams)."""
    return {sc.name: sc for sc in scenarios() if sc.group == "equal" and sc.traffic == str(traffic)}


def latency_stream(rng: np.random.Generator, reps: int, traffic: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """``latency_histograms`` at a constant ``traffic`` per arm per window, canary ``shape`` "aa",
    "shift" or "tail", stable rates (for the other benchmarks)."""
    n = _const(traffic)
    sc = Scenario(
        f"latency {shape}", "equal", str(traffic), shape != "aa", "latency", n, n, _const(1), _const(1), shape
    )
    return latency_histograms(rng, reps, sc)


def run(reps: int, seed: int, quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    for s_i, sc in enumerate(scenarios(quick)):
        rng = np.random.default_rng([seed, s_i])
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        step = 20 if sc.kind == "latency" else 200
        for start in range(0, reps, step):
            fn = latency_rules if sc.kind == "latency" else error_rules
            for rule, res in fn(rng, min(step, reps - start), sc).items():
                parts.setdefault(rule, []).append(res)
        cum_canary = np.cumsum(sc.canary)
        for rule, got in parts.items():
            when = np.concatenate([p[0] for p in got])
            what = np.concatenate([p[1] for p in got])
            k = int((what == ROLLBACK).sum())
            lo, hi = wilson(k, reps)
            req = cum_canary[when - 1]
            rb = req[what == ROLLBACK]
            rows.append(
                Row(
                    sc.name,
                    sc.group,
                    sc.regression,
                    sc.traffic,
                    rule,
                    reps,
                    k / reps,
                    lo,
                    hi,
                    (1 - k / reps) if sc.regression else None,
                    float((what == PROMOTE).mean()),
                    float(when.mean()),
                    float(np.median(req)),
                    float(np.percentile(req, 90)),
                    float(np.median(rb)) if rb.size else None,
                )
            )
    return rows


# --------------------------------------------------------------------------- information bounds


def _loglik(r: float, xc: np.ndarray, xb: np.ndarray, share: float) -> np.ndarray:
    """Running stratified log-likelihood ratio of rate ratio r against 1 (reps, W)."""
    m = xc + xb
    return np.asarray(np.cumsum(xc * math.log(r) - m * math.log1p(share * (r - 1.0)), axis=1))


@dataclass(frozen=True)
class Bound:
    share: float
    oracle_detection: float  # anytime-valid test that knows r = 2 (Ville threshold 1/(alpha/2))
    fixed_detection: float  # the most powerful fixed-horizon test at 30 windows, level alpha/2
    fixed_detection_1pct: float  # the same with at most 1 % false rollbacks (the target's limit)
    oracle_promotion: float  # anytime-valid pass test that knows r = 1, H: r >= 1.5, level alpha
    fixed_promotion: float  # the most powerful fixed-horizon pass test at 30 windows


def information_bounds(reps: int, seed: int) -> list[Bound]:
    """What the data of the unequal-share rows can support at all (Neyman-Pearson, simulated)."""
    out = []
    for share in (0.1, 0.2, 0.5):
        rng = np.random.default_rng([seed, 99, int(share * 100)])
        nc, nb = int(1000 * share), int(1000 * (1 - share))
        n = max(reps, 4000)

        def draw(
            r: float, g: np.random.Generator = rng, k: int = n, c: int = nc, b: int = nb
        ) -> tuple[np.ndarray, np.ndarray]:
            xc = g.binomial(c, 0.005 * r, (k, WINDOWS)).astype(np.float64)
            return xc, g.binomial(b, 0.005, (k, WINDOWS)).astype(np.float64)

        a_fail, a_pass = ALPHA / FAMILY, ALPHA
        bad, healthy, edge = draw(2.0), draw(1.0), draw(1.0 + MAX_EFFECT)
        l_bad, l_null = _loglik(2.0, *bad, share), _loglik(2.0, *healthy, share)
        oracle_det = float((l_bad >= math.log(1 / a_fail)).any(axis=1).mean())
        fixed_det = float((l_bad[:, -1] > np.quantile(l_null[:, -1], 1 - a_fail)).mean())
        fixed_det_1 = float((l_bad[:, -1] > np.quantile(l_null[:, -1], 0.99)).mean())
        r1 = 1.0 + MAX_EFFECT
        # pass: LR of r = 1 against r = 1.5, on healthy data and on data at the edge r = 1.5
        p_healthy = -_loglik(r1, *healthy, share)
        p_edge = -_loglik(r1, *edge, share)
        oracle_prom = float((p_healthy >= math.log(1 / a_pass)).any(axis=1).mean())
        fixed_prom = float((p_healthy[:, -1] > np.quantile(p_edge[:, -1], 1 - a_pass)).mean())
        out.append(Bound(share, oracle_det, fixed_det, fixed_det_1, oracle_prom, fixed_prom))
    return out


# --------------------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    head = (
        "| scenario | traffic/window | rule | rollbacks (95% Wilson) | missed | deliver promoted "
        "| mean windows to decision | median canary req to decision | p90 | median canary req to rollback |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        roll = f"{100 * r.rollback_rate:.1f}% ({100 * r.wilson_low:.1f}-{100 * r.wilson_high:.1f})"
        missed = "" if r.missed_rate is None else f"{100 * r.missed_rate:.1f}%"
        prom = f"{100 * r.promote_rate:.1f}%" if r.rule.startswith("deliver") else ""
        rb = "" if r.median_requests_to_rollback is None else f"{r.median_requests_to_rollback:,.0f}"
        lines.append(
            f"| {r.scenario} | {r.traffic} | {r.rule} | {roll} | {missed} | {prom} | {r.mean_windows_to_decision:.1f} "
            f"| {r.median_requests_to_decision:,.0f} | {r.p90_requests_to_decision:,.0f} | {rb} |"
        )
    return "\n".join(lines)


def bounds_table(bounds: list[Bound]) -> str:
    lines = [
        "| canary share | detection: knows r=2, anytime | detection: fixed 30 windows "
        "| detection: fixed 30 windows, <= 1% false | promotion: knows r=1, anytime | promotion: fixed 30 windows |",
        "|---|---|---|---|---|---|",
    ]
    for b in bounds:
        lines.append(
            f"| {b.share:.0%} | {100 * b.oracle_detection:.1f}% | {100 * b.fixed_detection:.1f}% "
            f"| {100 * b.fixed_detection_1pct:.1f}% "
            f"| {100 * b.oracle_promotion:.1f}% | {100 * b.fixed_promotion:.1f}% |"
        )
    return "\n".join(lines)


def targets(rows: list[Row], bounds: list[Bound]) -> list[str]:
    """The issues' goals for deliver, each with met / MISSED (and the bound when the data cannot)."""
    d = {(r.scenario, r.traffic): r for r in rows if r.rule == "deliver"}
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"[{'met' if ok else 'MISSED'}] {text}")

    for (s, t), r in d.items():
        if not r.regression:
            check(r.rollback_rate <= 0.01, f"{t}/window {s}: false rollbacks {100 * r.rollback_rate:.2f}% <= 1%")
        elif r.group == "equal" and t == "1000":
            check(r.rollback_rate >= 0.99, f"{t}/window {s}: detection {100 * r.rollback_rate:.1f}% >= 99%")
        elif r.group == "equal" and s.startswith("errors"):
            check(r.rollback_rate >= 0.80, f"{t}/window {s}: detection {100 * r.rollback_rate:.1f}% >= 80%")
    fast = d.get(("errors 0.5% -> 1.0%", "1000"))
    if fast is not None:
        n = fast.median_requests_to_decision
        check(n <= 6000, f"1000/window errors 0.5% -> 1.0%: median {n:,.0f} requests/arm to decision <= 6,000")
    b20 = next((b for b in bounds if b.share == 0.2), None)
    det, aa = d.get(("errors 0.5% -> 1.0%", "20% of 1000")), d.get(("errors A/A 0.5% vs 0.5%", "20% of 1000"))
    if det is not None and b20 is not None:
        check(
            det.rollback_rate >= 0.97,
            f"20% share errors 0.5% -> 1.0%: detection {100 * det.rollback_rate:.1f}% >= 97% within 30 windows "
            f"(information bound: {100 * b20.oracle_detection:.1f}% for an anytime-valid test that knows the "
            f"effect at alpha/2; {100 * b20.fixed_detection_1pct:.1f}% for the best fixed 30-window test with "
            f"<= 1% false rollbacks)",
        )
    if aa is not None and b20 is not None:
        check(
            aa.promote_rate >= 0.60,
            f"20% share errors A/A: healthy canaries promoted {100 * aa.promote_rate:.1f}% >= 60% within 30 windows "
            f"(information bound: {100 * b20.oracle_promotion:.1f}% anytime-valid knowing r = 1, "
            f"{100 * b20.fixed_promotion:.1f}% for a fixed 30-window test, at alpha)",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    global ALPHA
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 1000, --quick 200)")
    ap.add_argument("--quick", action="store_true", help="200 repetitions; 1000-request, share and drift rows")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--alpha", type=float, default=ALPHA, help="deliver's family-wise alpha (default 0.05)")
    ap.add_argument("--json", metavar="PATH", help="also write the rows and targets as JSON")
    args = ap.parse_args(argv)
    reps = args.reps or (200 if args.quick else 1000)
    ALPHA = args.alpha
    t0 = time.monotonic()
    rows = run(reps, args.seed, args.quick)
    bounds = information_bounds(reps, args.seed)
    elapsed = time.monotonic() - t0
    print(table(rows))
    print()
    print("Information bounds of the unequal-share rows (what any test can reach on these data):")
    print(bounds_table(bounds))
    print()
    goals = targets(rows, bounds)
    print("\n".join(goals))
    print(f"\n{reps} repetitions per scenario, seed {args.seed}, deliver alpha {ALPHA:g}, {elapsed:.0f}s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "reps": reps,
                    "seed": args.seed,
                    "alpha": ALPHA,
                    "seconds": round(elapsed, 1),
                    "rows": [asdict(r) for r in rows],
                    "bounds": [asdict(b) for b in bounds],
                    "targets": goals,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
