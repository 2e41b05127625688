"""Benchmark: is the time-to-verdict forecast calibrated?  Forecast vs actual requests to decision.

For seeded synthetic canaries the forecast (delivery/analysis/forecast.py) is made at an early look,
from what the analysis had seen by then, exactly as the engine makes it; then the judge runs on the
rest of the same stream until it decides.  Compared: the forecast's further requests with the
further requests the judge actually needed (both arms together).

Scenarios, each a stream of windows (the latency streams come from ``benchmarks/analysis.py``'s
generator, imported):

  errors   base rate 0.5 % or 2 %, canary share 50 % or 20 % (of 2,000 requests per window; also 400
           per window without ``--quick``); a healthy canary (same rate: the forecast of a *pass*) or
           one worse by exactly the check's max-effect (+50 %: the forecast of a *fail*)
  latency  ``benchmarks.analysis.latency_stream`` at 1,000 requests per arm per window: A/A (a
           pass) and its p99 tail regression, with the check's max-effect set to that regression's
           true exceedance ratio at the pooled p99 (a fail)

Looks: after window 1 (``--quick``), and also after window 5.  Judges at alpha 0.025 (the default
0.05 over the two built-in checks), the built-in checks' defaults otherwise.

Printed: the calibration table (forecast bucket: runs, median forecast, median actual, their
ratio, share of runs decided within 1x and within 2x the forecast, and still undecided at the
horizon), the same per scenario, and met/MISSED for the calibration goal:

  GOAL  median actual / forecast in [0.67, 1.5] in every bucket with >= 20 runs, and >= 80 % of
        all runs decided within 2x their forecast

    python -m benchmarks.forecast            # 1000 repetitions, two looks, two traffic levels
    python -m benchmarks.forecast --quick    # 200 repetitions, one look (< 30 s)
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial

import numpy as np
from scipy import optimize, stats

from benchmarks.analysis import ALPHA, BOUNDS, FAMILY, TAIL_K, WINDOWS, latency_stream
from delivery.analysis.checks import CheckSpec, parse_checks
from delivery.analysis.cores import INC_CODE, errors_core, latency_core
from delivery.analysis.forecast import Observed, errors_path, latency_path, smallest
from delivery.analysis.judges import FAIL, PASS
from strategies.evidence import Outcome

CHECK_ALPHA = ALPHA / FAMILY
ERRORS, LATENCY = parse_checks({"deliver.dev/analysis": "error-rate,latency"})
ERROR_WINDOWS = 240  # horizon of the errors streams (the latency generator's is WINDOWS)
BUCKETS = (0, 5_000, 10_000, 20_000, 50_000, 100_000, math.inf)
GOAL_RATIO = (0.67, 1.5)
GOAL_WITHIN_2X = 0.80


@dataclass(frozen=True)
class Runs:
    """One scenario at one look: per run the forecast and the actual further requests (inf: undecided)."""

    scenario: str
    verdict: Outcome  # the verdict forecast: pass (healthy canary) or fail (regression at max-effect)
    look: int
    forecast: np.ndarray
    actual: np.ndarray
    censored_at: np.ndarray  # further requests to the horizon (an undecided run's actual is beyond it)
    window: float  # requests between two analyses: a decision can only come at one

    def on_grid(self) -> np.ndarray:
        return np.full(self.forecast.shape, self.window)


def tail_effect() -> float:
    """The true exceedance ratio - 1 of benchmarks.analysis's p99 tail regression at the pooled p99."""
    z = optimize.brentq(lambda t: 0.5 * (stats.norm.sf(t) + stats.norm.sf(t / TAIL_K)) - 0.01, 1.0, 4.0)
    return float(stats.norm.sf(z / TAIL_K) / stats.norm.sf(z) - 1.0)


_ERRORS_SEEN: dict[tuple[CheckSpec, int, int, int, int, Outcome], float] = {}


def forecast_errors(spec: CheckSpec, nc: int, nb: int, xc: int, xb: int, verdict: Outcome, hint: int) -> float:
    """The forecast (to 1 %: fewer judge calls; ``hint`` starts the search near the answer), cached."""
    key = (spec, nc, nb, xc, xb, verdict)
    if key not in _ERRORS_SEEN:
        reaches, _ = errors_path(spec, Observed(nc, nb, 60.0, xc, xb), CHECK_ALPHA, verdict)
        n = smallest(reaches, start=hint, precision=0.01)
        _ERRORS_SEEN[key] = math.inf if n is None else float(n)
    return _ERRORS_SEEN[key]


@cache
def forecast_latency(spec: CheckSpec, nc: int, nb: int, verdict: Outcome) -> float:
    reaches, _ = latency_path(spec, Observed(nc, nb, 60.0), CHECK_ALPHA, verdict)
    n = smallest(reaches)
    return math.inf if n is None else float(n)


def first_decision(codes: np.ndarray, after: int) -> np.ndarray:
    """Index of the first window >= ``after`` (0-based) with a decision; -1 if none."""
    hit = codes[:, after:] != INC_CODE
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + after, -1)


def errors_scenario(
    rng: np.random.Generator,
    reps: int,
    per_window: int,
    share: float,
    rate: float,
    verdict: Outcome,
    looks: tuple[int, ...],
) -> list[Runs]:
    spec = ERRORS
    factor = 1.0 + spec.max_effect if verdict == FAIL else 1.0
    nc_w = round(per_window * share)
    nb_w = per_window - nc_w
    xc = np.cumsum(rng.binomial(nc_w, rate * factor, (reps, ERROR_WINDOWS)), axis=1)
    xb = np.cumsum(rng.binomial(nb_w, rate, (reps, ERROR_WINDOWS)), axis=1)
    w = np.arange(1, ERROR_WINDOWS + 1)
    nc, nb = np.broadcast_to(nc_w * w, xc.shape), np.broadcast_to(nb_w * w, xb.shape)
    r = errors_core(
        xc, nc, xb, nb, CHECK_ALPHA, spec.direction, spec.max_effect, spec.min_samples, spec.negligible_rate
    )
    canary = "healthy" if verdict == PASS else f"+{spec.max_effect:.0%}"
    name = f"errors {100 * rate:g}% {canary}, share {share:.0%}, {per_window}/window"
    out = []
    for look in looks:
        undecided = (r["code"][:, :look] == INC_CODE).all(axis=1)
        first = first_decision(r["code"], look)
        fc: list[float] = []
        act: list[float] = []
        hint = 1
        for i in np.flatnonzero(undecided):
            x = (int(xc[i, look - 1]), int(xb[i, look - 1]))
            fc.append(forecast_errors(spec, nc_w * look, nb_w * look, *x, verdict, hint))
            hint = int(fc[-1]) if math.isfinite(fc[-1]) and fc[-1] > 0 else 1
            act.append(math.inf if first[i] < 0 else float((first[i] + 1 - look) * per_window))
        out.append(
            Runs(
                name,
                verdict,
                look,
                np.array(fc),
                np.array(act),
                np.full(len(fc), (ERROR_WINDOWS - look) * per_window),
                float(per_window),
            )
        )
    return out


def latency_scenario(
    rng: np.random.Generator, reps: int, per_arm: int, verdict: Outcome, looks: tuple[int, ...]
) -> list[Runs]:
    effect = tail_effect()
    spec = replace(LATENCY, max_effect=effect) if verdict == FAIL else LATENCY
    codes = []
    for start in range(0, reps, 100):
        hc, hb = latency_stream(rng, min(100, reps - start), per_arm, "tail" if verdict == FAIL else "aa")
        r = latency_core(
            np.cumsum(hc, 1),
            np.cumsum(hb, 1),
            BOUNDS,
            CHECK_ALPHA,
            spec.direction,
            spec.max_effect,
            spec.min_samples,
            spec.quantile,
        )
        codes.append(r["code"])
    code = np.concatenate(codes)
    what = "A/A" if verdict == PASS else f"p99 tail (+{effect:.0%} exceedances = max-effect)"
    name = f"latency {what}, {2 * per_arm}/window"
    out = []
    for look in looks:
        undecided = (code[:, :look] == INC_CODE).all(axis=1)
        first = first_decision(code, look)[undecided]
        f = forecast_latency(spec, per_arm * look, per_arm * look, verdict)
        act = np.where(first < 0, np.inf, (first + 1 - look) * 2.0 * per_arm)
        out.append(
            Runs(
                name,
                verdict,
                look,
                np.full(act.shape, f),
                act,
                np.full(act.shape, (WINDOWS - look) * 2 * per_arm),
                2.0 * per_arm,
            )
        )
    return out


Scenario = Callable[[np.random.Generator, int, tuple[int, ...]], list[Runs]]


def scenarios(quick: bool) -> list[Scenario]:
    out: list[Scenario] = []
    for per_window in (2000,) if quick else (2000, 400):
        for rate in (0.005, 0.02):
            for share in (0.5, 0.2):
                for verdict in (PASS, FAIL):
                    out.append(partial(_errors, per_window, share, rate, verdict))
    for verdict in (PASS, FAIL):
        out.append(partial(_latency, verdict))
    return out


def _errors(
    per_window: int, share: float, rate: float, verdict: Outcome, g: np.random.Generator, n: int, looks: tuple[int, ...]
) -> list[Runs]:
    return errors_scenario(g, n, per_window, share, rate, verdict, looks)


def _latency(verdict: Outcome, g: np.random.Generator, n: int, looks: tuple[int, ...]) -> list[Runs]:
    return latency_scenario(g, n, 1000, verdict, looks)


# --------------------------------------------------------------------------- the table


def summary(
    forecast: np.ndarray, actual: np.ndarray, censored: np.ndarray, window: np.ndarray
) -> tuple[int, float, float, float, float, float, float]:
    """runs, median forecast, median actual, ratio, within 1x, within 2x, undecided (of finite forecasts).

    Decisions come only at analyses, one per ``window`` requests: a forecast of f counts as the
    first analysis at or after f (at least the next one), for the ratio and for "within"."""
    ok = np.isfinite(forecast)
    f, a, c, w = forecast[ok], actual[ok], censored[ok], window[ok]
    n = int(f.size)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan

    def grid(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.maximum(w, np.ceil(x / w) * w))

    med_f = float(np.median(f))
    med_a = float(np.median(a))  # inf when over half are undecided: shown as "> horizon"
    ratio = float(np.median(a / grid(f)))
    within1 = float(np.mean(a <= grid(f)))
    within2 = float(np.mean(a <= grid(2 * f)))
    undecided = float(np.mean(~np.isfinite(a) & (c > 0)))
    return n, med_f, med_a, ratio, within1, within2, undecided


def fmt_row(label: str, s: tuple[int, float, float, float, float, float, float]) -> str:
    n, f, a, ratio, w1, w2, und = s
    if n == 0:
        return f"| {label} | 0 | | | | | | |"
    med_a = "> horizon" if math.isinf(a) else f"{a:,.0f}"
    ratio_t = "> horizon" if math.isinf(ratio) else f"{ratio:.2f}"
    return f"| {label} | {n} | {f:,.0f} | {med_a} | {ratio_t} | {100 * w1:.0f}% | {100 * w2:.0f}% | {100 * und:.1f}% |"


HEAD = (
    "| {what} | runs | median forecast | median actual | median actual/forecast "
    "| decided within 1x | within 2x | undecided at horizon |\n"
    "|---|---|---|---|---|---|---|---|"
)


def bucket_label(lo: float, hi: float) -> str:
    return f"{lo:,.0f}+" if math.isinf(hi) else f"{lo:,.0f}-{hi:,.0f}"


def report(all_runs: list[Runs]) -> tuple[str, list[str]]:
    f = np.concatenate([r.forecast for r in all_runs])
    a = np.concatenate([r.actual for r in all_runs])
    c = np.concatenate([r.censored_at for r in all_runs])
    w = np.concatenate([r.on_grid() for r in all_runs])
    lines = ["Calibration by forecast bucket (further requests, both arms):", "", HEAD.format(what="forecast bucket")]
    bucket_rows = []
    for lo, hi in zip(BUCKETS, BUCKETS[1:], strict=False):
        sel = (f >= lo) & (f < hi)
        s = summary(f[sel], a[sel], c[sel], w[sel])
        bucket_rows.append(s)
        lines.append(fmt_row(bucket_label(lo, hi), s))
    total = summary(f, a, c, w)
    lines.append(fmt_row("all", total))
    lines += ["", "By scenario and look:", "", HEAD.format(what="scenario (verdict, look)")]
    for r in all_runs:
        lines.append(
            fmt_row(
                f"{r.scenario} ({r.verdict}, after window {r.look})",
                summary(r.forecast, r.actual, r.censored_at, r.on_grid()),
            )
        )
    out_of_reach = int((~np.isfinite(f)).sum())
    if out_of_reach:
        lines.append(f"\n{out_of_reach} runs forecast out of reach (not in the table)")
    goals = []
    worst = [s[3] for s in bucket_rows if s[0] >= 20]
    ok_ratio = all(GOAL_RATIO[0] <= x <= GOAL_RATIO[1] for x in worst)
    shown = ", ".join("> horizon" if math.isinf(x) else f"{x:.2f}" for x in worst)
    goals.append(
        f"[{'met' if ok_ratio else 'MISSED'}] median actual/forecast in [{GOAL_RATIO[0]}, {GOAL_RATIO[1]}] "
        f"in every bucket with >= 20 runs ({shown})"
    )
    ok_2x = total[5] >= GOAL_WITHIN_2X
    goals.append(
        f"[{'met' if ok_2x else 'MISSED'}] {100 * total[5]:.0f}% of runs decided within 2x their forecast "
        f">= {100 * GOAL_WITHIN_2X:.0f}%"
    )
    return "\n".join(lines), goals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 repetitions, one look, 2,000 requests per window")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 1000, --quick 200)")
    ap.add_argument("--seed", type=int, default=20261130)
    args = ap.parse_args(argv)
    reps = args.reps or (200 if args.quick else 1000)
    looks = (1,) if args.quick else (1, 5)
    t0 = time.monotonic()
    runs: list[Runs] = []
    for i, scenario in enumerate(scenarios(args.quick)):
        runs += scenario(np.random.default_rng([args.seed, i]), reps, looks)
    text, goals = report(runs)
    print(text)
    print()
    print("\n".join(goals))
    print(
        f"\n{reps} repetitions per scenario, looks after window {', '.join(map(str, looks))}, "
        f"check alpha {CHECK_ALPHA:g}, seed {args.seed}, {time.monotonic() - t0:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
