"""Benchmark: deliver's anytime-valid judges against the anchors' decision rules on synthetic streams.

Seeded synthetic canary/baseline streams at equal traffic, 1-minute windows, 30 windows:

  errors   0.5% vs 0.5% (A/A) and 0.5% vs 1.0%
  latency  lognormal (median 100 ms, sigma 0.5): A/A, whole distribution +20%,
           tail only (p99 +20%, median unchanged: the upper half of the log-latency is stretched)

at 1000 and 200 requests per arm per window.  Latencies are observed the way Prometheus sees them,
as histogram bucket counts (log-spaced buckets, ~5% apart); every rule gets the same buckets.

Rules, all run on the same streams:

  deliver         deliver.analysis.judges (errors_core / latency_core) on the cumulative counts
                  after every window, at the Bonferroni share alpha/2 of a 2-check family
                  (alpha = 0.05, the default); stops at the first pass or fail.
  argo            threshold per window ("measurement"): canary error rate >= 1%, or canary/baseline
                  p99 ratio > 1.10, is a failed measurement; rollback at the 4th (failureLimit 3).
  kayenta         after the 30 windows, Mann-Whitney on the 30 per-window values per arm (error
                  rate; p99) with a Hodges-Lehmann 98% confidence interval; rollback if the interval
                  lies above 0 and the HL shift exceeds 25% (tolerance 0.25) of the baseline median.
  fisher-end      one-sided Fisher exact test (alpha 0.05) once, after 30 windows.
  fisher-every    the same test after every window; rollback at the first p < 0.05.
  For latency the Fisher rules count requests slower than the pooled p99 (nearest bucket bound).

Printed per scenario, traffic and rule: rollback rate with a 95% Wilson interval (the false
rollback rate on A/A), missed regression rate, and median / p90 requests per arm to a decision
(the rollback, deliver's pass, or the end of the 30 windows).  ``--json PATH`` writes the same.

    python -m benchmarks.analysis            # 1000 repetitions (a few minutes on 2 cores)
    python -m benchmarks.analysis --quick    # 200 repetitions

(from the repository root; ``.venv/bin/python benchmarks/analysis.py`` works too once ``make venv``
has installed the project.)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from delivery.analysis.judges import FAIL_CODE, PASS_CODE, errors_core, latency_core

WINDOWS = 30
ALPHA = 0.05  # deliver's family-wise alpha (default)
FAMILY = 2  # error-rate + latency
FIXED_ALPHA = 0.05  # the Fisher rules
MEDIAN, SIGMA = 0.100, 0.5
BOUNDS = np.append(np.geomspace(0.001, 100.0, 241), np.inf)  # seconds, ~4.9% apart
TAIL_K = 1.0 + math.log(1.2) / (stats.norm.ppf(0.99) * SIGMA)

# outcome per repetition: decision window (1-based) and whether it is a rollback
ROLLBACK, PROMOTE, NONE = 2, 1, 0


@dataclass(frozen=True)
class Row:
    scenario: str
    regression: bool
    requests_per_window: int
    rule: str
    reps: int
    rollback_rate: float
    wilson_low: float
    wilson_high: float
    missed_rate: float | None
    promote_rate: float
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


# --------------------------------------------------------------------------- errors


def error_rules(
    rng: np.random.Generator, reps: int, traffic: int, rate_c: float, rate_b: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    xc = rng.binomial(traffic, rate_c, size=(reps, WINDOWS)).astype(np.float64)
    xb = rng.binomial(traffic, rate_b, size=(reps, WINDOWS)).astype(np.float64)
    n = np.full((reps, WINDOWS), float(traffic))
    cxc, cxb, cn = np.cumsum(xc, 1), np.cumsum(xb, 1), np.cumsum(n, 1)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    r = errors_core(cxc, cn, cxb, cn, ALPHA / FAMILY)
    codes = np.select([r["code"] == FAIL_CODE, r["code"] == PASS_CODE], [ROLLBACK, PROMOTE], NONE)
    out["deliver"] = first_decision(codes)

    failed = np.cumsum(xc / n >= 0.01, axis=1) > 3
    out["argo"] = first_decision(np.where(failed, ROLLBACK, NONE))

    kay = hodges_lehmann_reject(xc / n, xb / n)
    out["kayenta"] = (np.full(reps, WINDOWS), np.where(kay, ROLLBACK, NONE))

    p_all = fisher_greater(cxc, cn, cxb, cn)
    out["fisher-end"] = (np.full(reps, WINDOWS), np.where(p_all[:, -1] < FIXED_ALPHA, ROLLBACK, NONE))
    out["fisher-every"] = first_decision(np.where(p_all < FIXED_ALPHA, ROLLBACK, NONE))
    return out


# --------------------------------------------------------------------------- latency


def latency_histograms(rng: np.random.Generator, reps: int, traffic: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-window bucket counts (reps, windows, B) for canary and baseline."""
    B = len(BOUNDS)

    def hist(z: np.ndarray, canary: bool) -> np.ndarray:
        logx = SIGMA * z
        if canary and shape == "shift":
            logx = logx + math.log(1.2)
        elif canary and shape == "tail":
            logx = np.where(z > 0, logx * TAIL_K, logx)
        x = MEDIAN * np.exp(logx)
        b = np.searchsorted(BOUNDS, x, side="left")  # bucket i holds (BOUNDS[i-1], BOUNDS[i]]
        flat = (np.arange(reps * WINDOWS).reshape(reps, WINDOWS, 1) * B + b).ravel()
        return np.bincount(flat, minlength=reps * WINDOWS * B).reshape(reps, WINDOWS, B).astype(np.float64)

    hc = hist(rng.standard_normal((reps, WINDOWS, traffic)), True)
    hb = hist(rng.standard_normal((reps, WINDOWS, traffic)), False)
    return hc, hb


def latency_rules(
    rng: np.random.Generator, reps: int, traffic: int, shape: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    hc, hb = latency_histograms(rng, reps, traffic, shape)
    chc, chb = np.cumsum(hc, axis=1), np.cumsum(hb, axis=1)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    r = latency_core(chc, chb, BOUNDS, ALPHA / FAMILY)
    codes = np.select([r["code"] == FAIL_CODE, r["code"] == PASS_CODE], [ROLLBACK, PROMOTE], NONE)
    out["deliver"] = first_decision(codes)

    p99c, p99b = hist_quantile(hc, 0.99), hist_quantile(hb, 0.99)
    failed = np.cumsum(p99c / p99b > 1.10, axis=1) > 3
    out["argo"] = first_decision(np.where(failed, ROLLBACK, NONE))

    out["kayenta"] = (np.full(reps, WINDOWS), np.where(hodges_lehmann_reject(p99c, p99b), ROLLBACK, NONE))

    # Fisher on requests slower than the pooled p99 bucket bound (same threshold rule as deliver)
    idx = np.maximum(r["tail_index"], 0).astype(int)
    n = chc.sum(axis=-1)
    cc, cb = np.cumsum(chc, axis=-1), np.cumsum(chb, axis=-1)
    xc = n - np.take_along_axis(cc, idx[..., None], -1)[..., 0]
    xb = chb.sum(axis=-1) - np.take_along_axis(cb, idx[..., None], -1)[..., 0]
    p_all = fisher_greater(xc, n, xb, chb.sum(axis=-1))
    out["fisher-end"] = (np.full(reps, WINDOWS), np.where(p_all[:, -1] < FIXED_ALPHA, ROLLBACK, NONE))
    out["fisher-every"] = first_decision(np.where(p_all < FIXED_ALPHA, ROLLBACK, NONE))
    return out


# --------------------------------------------------------------------------- driver

SCENARIOS: dict[
    str, tuple[bool, Callable[[np.random.Generator, int, int], dict[str, tuple[np.ndarray, np.ndarray]]]]
] = {
    "errors A/A 0.5% vs 0.5%": (False, lambda g, r, t: error_rules(g, r, t, 0.005, 0.005)),
    "errors 0.5% -> 1.0%": (True, lambda g, r, t: error_rules(g, r, t, 0.010, 0.005)),
    "latency A/A": (False, lambda g, r, t: latency_rules(g, r, t, "aa")),
    "latency +20% whole": (True, lambda g, r, t: latency_rules(g, r, t, "shift")),
    "latency p99 +20% tail": (True, lambda g, r, t: latency_rules(g, r, t, "tail")),
}
RULES = ("deliver", "argo", "kayenta", "fisher-end", "fisher-every")


def run(reps: int, seed: int, traffics: tuple[int, ...] = (1000, 200), chunk: int = 100) -> list[Row]:
    rows: list[Row] = []
    for traffic in traffics:
        for s_i, (scenario, (regression, fn)) in enumerate(SCENARIOS.items()):
            rng = np.random.default_rng([seed, traffic, s_i])
            parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {rule: [] for rule in RULES}
            step = chunk if "latency" in scenario else reps
            for start in range(0, reps, step):
                res = fn(rng, min(step, reps - start), traffic)
                for rule in RULES:
                    parts[rule].append(res[rule])
            for rule in RULES:
                when = np.concatenate([p[0] for p in parts[rule]])
                what = np.concatenate([p[1] for p in parts[rule]])
                k = int((what == ROLLBACK).sum())
                lo, hi = wilson(k, reps)
                req = when * traffic
                rb = req[what == ROLLBACK]
                rows.append(
                    Row(
                        scenario,
                        regression,
                        traffic,
                        rule,
                        reps,
                        k / reps,
                        lo,
                        hi,
                        (1 - k / reps) if regression else None,
                        float((what == PROMOTE).mean()),
                        float(np.median(req)),
                        float(np.percentile(req, 90)),
                        float(np.median(rb)) if rb.size else None,
                    )
                )
    return rows


def table(rows: list[Row]) -> str:
    head = (
        "| scenario | req/arm/window | rule | rollbacks (95% Wilson) | missed | deliver promoted "
        "| median req/arm to decision | p90 | median req/arm to rollback |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        roll = f"{100 * r.rollback_rate:.1f}% ({100 * r.wilson_low:.1f}-{100 * r.wilson_high:.1f})"
        missed = "" if r.missed_rate is None else f"{100 * r.missed_rate:.1f}%"
        prom = f"{100 * r.promote_rate:.1f}%" if r.rule == "deliver" else ""
        rb = "" if r.median_requests_to_rollback is None else f"{r.median_requests_to_rollback:,.0f}"
        lines.append(
            f"| {r.scenario} | {r.requests_per_window} | {r.rule} | {roll} | {missed} | {prom} "
            f"| {r.median_requests_to_decision:,.0f} | {r.p90_requests_to_decision:,.0f} | {rb} |"
        )
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[str]:
    """The issue's goals for deliver, each with met / MISSED."""
    d = {(r.scenario, r.requests_per_window): r for r in rows if r.rule == "deliver"}
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"[{'met' if ok else 'MISSED'}] {text}")

    for t in (1000, 200):
        for s, (regression, _) in SCENARIOS.items():
            if (s, t) not in d:
                continue
            r = d[(s, t)]
            if not regression:
                check(r.rollback_rate <= 0.01, f"{t}/window {s}: false rollbacks {100 * r.rollback_rate:.2f}% <= 1%")
            elif t == 1000:
                check(r.rollback_rate >= 0.99, f"{t}/window {s}: detection {100 * r.rollback_rate:.1f}% >= 99%")
            elif s.startswith("errors"):
                check(r.rollback_rate >= 0.80, f"{t}/window {s}: detection {100 * r.rollback_rate:.1f}% >= 80%")
    fast = d.get(("errors 0.5% -> 1.0%", 1000))
    if fast is not None:
        n = fast.median_requests_to_decision
        check(n <= 6000, f"1000/window errors 0.5% -> 1.0%: median {n:,.0f} requests/arm to decision <= 6,000")
    return out


def main(argv: list[str] | None = None) -> int:
    global ALPHA
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 1000, --quick 200)")
    ap.add_argument("--quick", action="store_true", help="200 repetitions")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--alpha", type=float, default=ALPHA, help="deliver's family-wise alpha (default 0.05)")
    ap.add_argument("--json", metavar="PATH", help="also write the rows and targets as JSON")
    args = ap.parse_args(argv)
    reps = args.reps or (200 if args.quick else 1000)
    ALPHA = args.alpha
    t0 = time.monotonic()
    rows = run(reps, args.seed)
    elapsed = time.monotonic() - t0
    print(table(rows))
    print()
    goals = targets(rows)
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
                    "targets": goals,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
