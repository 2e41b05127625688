"""Benchmark: what users feel of a bad canary — bad requests it serves before rollback, and seconds.

Issue 17. The streams are benchmarks/analysis.py's (its scenarios, latency generator and Kayenta-
style judge are imported, not copied); the time model is new, because what users feel depends on
*when* each rule may look:

  time       15-second ticks; a "window" is 1 minute (4 ticks) with R requests per arm (1000 or 200,
             as in benchmarks/analysis.py), so R/4 per arm per tick; canary and baseline get equal
             traffic. Prometheus scrapes every 15 s: every rule sees the data up to one tick ago.
  delivery   three analysed canary steps of 5 minutes (20 ticks) each, then promotion; horizon 30
             minutes (an inconclusive step is extended, its window growing, as on-inconclusive: extend).

Rules (rollback is counted at the decision; the engine's reaction, ~1 s, is left out for all):

  deliver continuous   deliver's judges (cores.errors_core / latency_core, alpha 0.05 over a
                       2-check family, as in analysis.py) on the delivery's analysis span (from
                       its first analysed step to now: one e-process per delivery, as the engine's
                       window_start), looked at every 30 s (analysis-every, 2 x the scrape
                       interval) while a step is held: a failing look rolls back at once; the
                       step's end decides pass (next step, the span goes on) / fail / inconclusive
                       (extend).
  deliver end-of-step  the same judges over the same span at each step's end only
                       (analysis-every: off).
  argo                 Argo Rollouts background analysis as its docs describe it: one measurement
                       per window (interval: 1m) of the canary's error rate over that window
                       (failureCondition: >= 1 %; latency: canary/baseline p99 > 1.10, as in
                       analysis.py), kept across steps; the run fails, and the rollout aborts, when
                       failed measurements exceed failureLimit: 3 (the 4th failure).
  kayenta              Kayenta / Spinnaker's NetflixACAJudge as its docs describe it: a judgment at
                       the end of each analysis interval (5 m, the step) over that interval's data
                       points (15-s resolution: 20 per arm), Mann-Whitney with a 98 % Hodges-Lehmann
                       confidence interval of the shift, failing when the interval lies above 0 and
                       the shift exceeds the tolerance (25 % of the baseline median); the first failed
                       judgment rolls back (analysis.hodges_lehmann_reject).

Bad requests: the canary's 5xx answers (error scenarios) or its answers slower than the stable
version's p99 (latency scenarios), served until the rollback (or over the whole horizon when the
regression was missed or promoted). A/A scenarios give the false rollback rate.

    python -m benchmarks.failfast            # 1000 repetitions per scenario
    python -m benchmarks.failfast --quick    # 100 repetitions (< 60 s; part of make test)
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

from benchmarks.analysis import (
    ALPHA,
    BOUNDS,
    FAMILY,
    MEDIAN,
    SIGMA,
    equal_scenarios,
    hist_quantile,
    hodges_lehmann_reject,
    latency_stream,
    wilson,
)
from benchmarks.analysis import WINDOWS as GENERATED_TICKS  # latency_stream draws this many periods
from delivery.analysis.cores import FAIL_CODE, PASS_CODE, errors_core, latency_core

TICK = 15.0  # seconds; also the scrape interval
PER_WINDOW = 4  # ticks in a 1-minute window (Argo's measurement interval)
STEP = 20  # ticks in a 5-minute step (deliver's interval, Kayenta's analysis interval)
STEPS = 3  # analysed steps before promotion
HORIZON = 120  # ticks: 30 minutes
EVERY = 2  # ticks between deliver's looks: 30 s
LAG = 1  # ticks: every rule sees the data up to one scrape ago
ARGO_THRESHOLD_ERRORS, ARGO_THRESHOLD_P99, ARGO_FAILURE_LIMIT = 0.01, 1.10, 3
P99_STABLE = MEDIAN * math.exp(SIGMA * float(stats.norm.ppf(0.99)))  # latency: slower than this is bad
RULES = ("deliver continuous", "deliver end-of-step", "argo", "kayenta")
NEVER = HORIZON + 1


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
    median_bad_requests: float  # served by the canary until the rollback (or over the horizon)
    mean_bad_requests: float
    median_seconds_to_rollback: float | None


# --------------------------------------------------------------------------- streams


@dataclass
class Streams:
    """Per-tick observations of one scenario, ``reps`` repetitions: what each rule judges."""

    bad: np.ndarray  # (reps, HORIZON) the canary's bad requests per tick
    errors: tuple[np.ndarray, np.ndarray, int] | None = None  # canary errors, baseline errors, requests/tick
    latency: tuple[np.ndarray, np.ndarray] | None = None  # (reps, HORIZON, B) bucket counts per tick
    before: np.ndarray | None = None  # latency: (reps, PER_WINDOW, B) the baseline's minute before tick 0


def error_streams(rng: np.random.Generator, reps: int, per_tick: int, rate_c: float, rate_b: float) -> Streams:
    xc = rng.binomial(per_tick, rate_c, size=(reps, HORIZON)).astype(np.float64)
    xb = rng.binomial(per_tick, rate_b, size=(reps, HORIZON)).astype(np.float64)
    return Streams(bad=xc, errors=(xc, xb, per_tick))


def latency_streams(rng: np.random.Generator, reps: int, per_tick: int, shape: str) -> Streams:
    ticks = HORIZON + PER_WINDOW  # and the baseline's minute before the delivery
    parts = [latency_stream(rng, reps, per_tick, shape) for _ in range(math.ceil(ticks / GENERATED_TICKS))]
    hc = np.concatenate([p[0] for p in parts], axis=1)[:, PER_WINDOW:ticks]
    hb = np.concatenate([p[1] for p in parts], axis=1)[:, :ticks]
    slow = BOUNDS > P99_STABLE  # buckets wholly above the stable p99 (bounds are ~5 % apart)
    return Streams(bad=hc[..., slow].sum(axis=-1), latency=(hc, hb[:, PER_WINDOW:]), before=hb[:, :PER_WINDOW])


def _rates(name: str) -> tuple[float, float]:
    """(canary, baseline) error rates of an error scenario named like analysis.py's "errors 0.5% -> 1.0%"."""
    if "A/A" in name:
        return 0.005, 0.005
    canary = float(name.split("->")[1].strip().rstrip("%")) / 100
    return canary, 0.005


SCENARIOS = equal_scenarios()
# analysis.py's equal-share scenarios, and the demo's bad canary (30 % errors) and a 5 % one in between
SCENARIO_NAMES = (
    *(name for name in SCENARIOS if name.startswith("errors")),
    "errors 0.5% -> 5%",
    "errors 0.5% -> 30%",
    *(name for name in SCENARIOS if name.startswith("latency")),
)
REGRESSION = {name: SCENARIOS[name].regression if name in SCENARIOS else True for name in SCENARIO_NAMES}
LATENCY_SHAPE = {"latency A/A": "aa", "latency +20% whole": "shift", "latency p99 +20% tail": "tail"}


def streams(name: str, rng: np.random.Generator, reps: int, per_tick: int) -> Streams:
    if name.startswith("errors"):
        return error_streams(rng, reps, per_tick, *_rates(name))
    return latency_streams(rng, reps, per_tick, LATENCY_SHAPE[name])


# --------------------------------------------------------------------------- judges over windows


def _window(cum: np.ndarray, start: np.ndarray, end: int) -> np.ndarray:
    """Sums over ticks [start, end) per repetition, from cumulative sums with a leading zero."""
    idx = np.arange(cum.shape[0])
    out: np.ndarray = cum[idx, end] - cum[idx, np.minimum(start, end)]
    return out


MAX_WINDOWS = HORIZON // PER_WINDOW + 1


def _windows(cum: np.ndarray, start: np.ndarray, end: int) -> np.ndarray:
    """Per-window sums over [start, end) as the engine cuts them (delivery/analysis/runner.py:
    windows of PER_WINDOW ticks anchored at the start, the last one partial), padded with empty
    windows to MAX_WINDOWS: (reps, MAX_WINDOWS, ...) from cumulative sums with a leading zero."""
    reps = cum.shape[0]
    lo = start[:, None] + PER_WINDOW * np.arange(MAX_WINDOWS)[None, :]  # (reps, windows)
    hi = np.minimum(lo + PER_WINDOW, end)
    lo = np.minimum(lo, end)
    rows = np.arange(reps)[:, None]
    out: np.ndarray = cum[rows, hi] - cum[rows, lo]
    return out


def deliver_codes(s: Streams) -> Callable[[np.ndarray, int], np.ndarray]:
    """code(start ticks per rep, end tick) of deliver's judge on the window [start, end), cut into
    1-minute windows and judged stratified as the engine does."""
    if s.errors is not None:
        xc, xb, per_tick = s.errors
        cxc = np.concatenate([np.zeros((xc.shape[0], 1)), np.cumsum(xc, 1)], 1)
        cxb = np.concatenate([np.zeros((xb.shape[0], 1)), np.cumsum(xb, 1)], 1)
        cn = np.broadcast_to(np.arange(HORIZON + 1, dtype=np.float64) * per_tick, cxc.shape)

        def judge_errors(start: np.ndarray, end: int) -> np.ndarray:
            n = _windows(cn, start, end)
            r = errors_core(
                _windows(cxc, start, end),
                n,
                _windows(cxb, start, end),
                n,
                ALPHA / FAMILY,
                pass_alpha=ALPHA,
                windows=True,
                with_bound=False,
            )
            return np.asarray(r["code"])

        return judge_errors
    assert s.latency is not None
    hc, hb = s.latency
    zero = np.zeros((hc.shape[0], 1, hc.shape[2]))
    chc, chb = np.concatenate([zero, np.cumsum(hc, 1)], 1), np.concatenate([zero, np.cumsum(hb, 1)], 1)

    # the baseline's minute before each step's window seeds its latency thresholds (the engine's
    # prior query): ticks [start - PER_WINDOW, start), the minute before the delivery for start 0
    assert s.before is not None
    chb_ext = np.concatenate([zero, np.cumsum(np.concatenate([s.before, hb], 1), 1)], 1)

    def judge_latency(start: np.ndarray, end: int) -> np.ndarray:
        rows = np.arange(hc.shape[0])
        prior = chb_ext[rows, start + PER_WINDOW] - chb_ext[rows, start]
        r = latency_core(
            _windows(chc, start, end),
            _windows(chb, start, end),
            BOUNDS,
            ALPHA / FAMILY,
            pass_alpha=ALPHA,
            windows=True,
            with_bound=False,
            prior=prior,
        )
        return np.asarray(r["code"])

    return judge_latency


def run_deliver(s: Streams, continuous: bool) -> np.ndarray:
    """Tick of the rollback per repetition (NEVER: none within the horizon)."""
    code = deliver_codes(s)
    reps = s.bad.shape[0]
    start = np.zeros(reps, dtype=int)  # the delivery's analysis span starts here, at its first step
    step_start = np.zeros(reps, dtype=int)  # the step's (or its extension's) hold started here
    step_end = np.full(reps, STEP)
    passed = np.zeros(reps, dtype=int)
    rollback = np.full(reps, NEVER)
    open_ = np.ones(reps, dtype=bool)  # neither rolled back nor promoted
    for t in range(1, HORIZON + 1):
        at_end = open_ & (step_end == t)
        looking = open_ & ~at_end & continuous & (t % EVERY == 0) & ((t - step_start) >= EVERY)
        judged = at_end | looking
        if not judged.any():
            continue
        c = code(start, t - LAG)
        failed = judged & (c == FAIL_CODE)
        rollback[failed] = t
        open_ &= ~failed
        ends = at_end & ~failed
        ok = ends & (c == PASS_CODE)
        passed[ok] += 1  # the span goes on: one e-process over the whole delivery, as the engine
        step_start[ends] = t
        step_end[ends] = t + STEP  # the next step, or the same step extended (inconclusive)
        open_ &= passed < STEPS  # promoted
    return rollback


def run_argo(s: Streams) -> np.ndarray:
    ends = np.arange(PER_WINDOW, HORIZON + 1, PER_WINDOW)  # a measurement at each window's end
    spans = [(max(int(e) - LAG - PER_WINDOW, 0), int(e) - LAG) for e in ends]  # over that window, as scraped
    if s.errors is not None:
        xc, _xb, per_tick = s.errors
        counts = np.stack([xc[:, lo:hi].sum(1) for lo, hi in spans], 1)
        requests = np.array([(hi - lo) * per_tick for lo, hi in spans], dtype=np.float64)
        failed = counts / requests >= ARGO_THRESHOLD_ERRORS
    else:
        assert s.latency is not None
        hc, hb = s.latency
        wc = np.stack([hc[:, lo:hi].sum(1) for lo, hi in spans], 1)
        wb = np.stack([hb[:, lo:hi].sum(1) for lo, hi in spans], 1)
        failed = hist_quantile(wc, 0.99) / hist_quantile(wb, 0.99) > ARGO_THRESHOLD_P99
    over = np.cumsum(failed, axis=1) > ARGO_FAILURE_LIMIT
    first = np.where(over.any(1), over.argmax(1), -1)
    return np.where(first >= 0, ends[np.maximum(first, 0)], NEVER)


def run_kayenta(s: Streams) -> np.ndarray:
    reps = s.bad.shape[0]
    rollback = np.full(reps, NEVER)
    for end in range(STEP, HORIZON + 1, STEP):
        lo, hi = max(end - LAG - STEP, 0), end - LAG  # the interval's data points (15-s resolution)
        if s.errors is not None:
            xc, xb, per_tick = s.errors
            reject = hodges_lehmann_reject(xc[:, lo:hi] / per_tick, xb[:, lo:hi] / per_tick)
        else:
            assert s.latency is not None
            hc, hb = s.latency
            reject = hodges_lehmann_reject(hist_quantile(hc[:, lo:hi], 0.99), hist_quantile(hb[:, lo:hi], 0.99))
        rollback = np.where((rollback == NEVER) & reject, end, rollback)
    return rollback


def decide(s: Streams) -> dict[str, np.ndarray]:
    return {
        "deliver continuous": run_deliver(s, continuous=True),
        "deliver end-of-step": run_deliver(s, continuous=False),
        "argo": run_argo(s),
        "kayenta": run_kayenta(s),
    }


# --------------------------------------------------------------------------- information bound


@dataclass(frozen=True)
class Bound:
    """The fewest bad requests a test with <= 1 % false rollbacks can be expected to serve."""

    scenario: str
    requests_per_window: int
    ratio: float  # the canary's error rate / the baseline's
    threshold: float  # log LR at which the oracle rolls back (1 % of A/A runs cross it in the horizon)
    mean_bad_requests: float  # the oracle's, under the regression
    floor_bad_requests: float  # the first look that has any data: LAG + 1 ticks of the canary's errors


def oracle_bounds(reps: int, seed: int, traffics: tuple[int, ...] = (1000, 200)) -> list[Bound]:
    """An oracle that knows the true rate ratio r: the likelihood ratio of r against 1 of the
    canary's share of all errors (given each tick's errors, as deliver's test; equal traffic), looked
    at every tick (every scrape: no look can see more), one test over the whole 30-minute horizon
    (no fresh start per step), rolling back when it crosses the threshold that exactly 1 % of
    healthy canaries cross within the horizon (calibrated on simulated A/A runs).  The one-sided
    likelihood-ratio test of the true effect is the fastest to reach a given evidence on average
    (Wald), so no rule with <= 1 % false rollbacks can be expected to serve clearly fewer bad
    requests on these data than this oracle."""
    out = []
    for traffic in traffics:
        per_tick = traffic // PER_WINDOW
        rng = np.random.default_rng([seed, traffic, 1717])
        n = max(4 * reps, 20000)
        null = error_streams(rng, n, per_tick, 0.005, 0.005).errors
        assert null is not None
        for name in SCENARIO_NAMES:
            if not name.startswith("errors") or not REGRESSION[name]:
                continue
            rate_c, rate_b = _rates(name)
            r = rate_c / rate_b

            def loglik(xc: np.ndarray, xb: np.ndarray, r: float = r) -> np.ndarray:
                # data through tick k is seen at the look of tick k + 1 + LAG; the last look is HORIZON
                cum = np.cumsum(xc * math.log(r) - (xc + xb) * math.log((1 + r) / 2), axis=1)
                return np.asarray(cum[:, : HORIZON - LAG])

            threshold = float(np.quantile(loglik(null[0], null[1]).max(axis=1), 0.99))
            bad = error_streams(rng, n, per_tick, rate_c, rate_b).errors
            assert bad is not None
            crossed = loglik(bad[0], bad[1]) >= threshold
            k = np.where(crossed.any(axis=1), crossed.argmax(axis=1), HORIZON)  # last tick of data seen
            tick = np.minimum(k + 1 + LAG, HORIZON)  # the rollback's tick: the canary served ticks [0, tick)
            cum_bad = np.concatenate([np.zeros((n, 1)), np.cumsum(bad[0], axis=1)], axis=1)
            served = cum_bad[np.arange(n), tick]
            floor = (LAG + 1) * per_tick * rate_c
            out.append(Bound(name, traffic, r, threshold, float(served.mean()), floor))
    return out


# --------------------------------------------------------------------------- driver


def run(
    reps: int, seed: int, traffics: tuple[int, ...] = (1000, 200), chunk: int = 100, aa_reps: int | None = None
) -> list[Row]:
    """``aa_reps``: repetitions of the A/A scenarios (default ``reps``): a false rollback rate near
    1 % needs thousands of runs to tell 1 % from 1.5 %."""
    rows: list[Row] = []
    for traffic in traffics:
        per_tick = traffic // PER_WINDOW
        for s_i, name in enumerate(SCENARIO_NAMES):
            rng = np.random.default_rng([seed, traffic, s_i, 17])
            n_reps = reps if REGRESSION[name] or aa_reps is None else aa_reps
            when: dict[str, list[np.ndarray]] = {r: [] for r in RULES}
            bad: dict[str, list[np.ndarray]] = {r: [] for r in RULES}
            for first in range(0, n_reps, chunk):
                s = streams(name, rng, min(chunk, n_reps - first), per_tick)
                cum_bad = np.concatenate([np.zeros((s.bad.shape[0], 1)), np.cumsum(s.bad, 1)], 1)
                for rule, tick in decide(s).items():
                    served = np.minimum(tick, HORIZON)  # ticks the canary served before the rollback
                    when[rule].append(tick)
                    bad[rule].append(cum_bad[np.arange(len(tick)), served])
            for rule in RULES:
                tick = np.concatenate(when[rule])
                b = np.concatenate(bad[rule])
                rolled = tick <= HORIZON
                k = int(rolled.sum())
                lo, hi = wilson(k, n_reps)
                rows.append(
                    Row(
                        name,
                        REGRESSION[name],
                        traffic,
                        rule,
                        n_reps,
                        k / n_reps,
                        lo,
                        hi,
                        float(np.median(b)),
                        float(np.mean(b)),
                        float(np.median(tick[rolled]) * TICK) if k else None,
                    )
                )
    return rows


def table(rows: list[Row]) -> str:
    head = (
        "| scenario | req/arm/window | rule | rollbacks (95% Wilson) | bad requests served (median / mean) "
        "| median seconds to rollback |"
    )
    lines = [head, "|" + "---|" * 6]
    for r in rows:
        roll = f"{100 * r.rollback_rate:.1f}% ({100 * r.wilson_low:.1f}-{100 * r.wilson_high:.1f})"
        secs = "" if r.median_seconds_to_rollback is None else f"{r.median_seconds_to_rollback:.0f}"
        bad = f"{r.median_bad_requests:,.0f} / {r.mean_bad_requests:,.0f}" if r.regression else ""
        lines.append(f"| {r.scenario} | {r.requests_per_window} | {r.rule} | {roll} | {bad} | {secs} |")
    return "\n".join(lines)


def targets(rows: list[Row], bounds: list[Bound] | None = None) -> list[str]:
    """The issue's goals, each with met / MISSED: continuous serves >= 5x fewer bad requests than
    Argo-style on the error regressions; its false rollbacks <= 1 %.  A missed ratio says what the
    information bound allows (the oracle of :func:`oracle_bounds`)."""
    by = {(r.scenario, r.requests_per_window, r.rule): r for r in rows}
    bound = {(b.scenario, b.requests_per_window): b for b in bounds or ()}
    out = []
    for (scenario, traffic, rule), r in sorted(by.items()):
        if rule != "deliver continuous":
            continue
        if not r.regression:
            ok = r.rollback_rate <= 0.01
            out.append(
                f"[{'met' if ok else 'MISSED'}] {traffic}/window {scenario}: deliver continuous false rollbacks "
                f"{100 * r.rollback_rate:.2f}% (95% {100 * r.wilson_low:.1f}-{100 * r.wilson_high:.1f}%, "
                f"{r.reps} runs) <= 1%"
                + (
                    ""
                    if ok
                    else f" (the judges promise <= alpha/k = {100 * ALPHA / FAMILY:g}% per check and delivery; "
                    "<= 1% needs a smaller deliver.dev/analysis-alpha, docs/failfast.md)"
                )
            )
        elif scenario.startswith("errors"):
            argo = by[(scenario, traffic, "argo")]
            ratio = argo.mean_bad_requests / max(r.mean_bad_requests, 1e-9)
            # Argo's threshold also rolls back healthy canaries: say how often, beside its bad requests
            aa = by.get(("errors A/A 0.5% vs 0.5%", traffic, "argo"))
            noisy = f"; argo rolls back {100 * aa.rollback_rate:.0f}% of healthy canaries here" if aa else ""
            why = ""
            b = bound.get((scenario, traffic))
            if b is not None and ratio < 5:
                best = argo.mean_bad_requests / max(b.mean_bad_requests, 1e-9)
                why = (
                    f"; information bound: an oracle that knows the effect, looking at every scrape with "
                    f"<= 1% false rollbacks, serves {b.mean_bad_requests:,.1f}, at most {best:.1f}x fewer than argo"
                    + (": 5x is not reachable on these data" if best < 5 else "")
                )
            out.append(
                f"[{'met' if ratio >= 5 else 'MISSED'}] {traffic}/window {scenario}: deliver continuous serves "
                f"{ratio:.2f}x fewer bad requests than argo (mean {r.mean_bad_requests:,.1f} vs "
                f"{argo.mean_bad_requests:,.1f}) >= 5x{noisy}{why}"
            )
    return out


def bounds_table(bounds: list[Bound]) -> str:
    lines = [
        "Information bound of the error regressions (oracle: knows the rate ratio, looks at every scrape, "
        "1% false rollbacks in 30 minutes):",
        "| scenario | req/arm/window | rate ratio | oracle: bad requests served (mean) | floor: first look with data |",
        "|---|---|---|---|---|",
    ]
    for b in bounds:
        lines.append(
            f"| {b.scenario} | {b.requests_per_window} | {b.ratio:g} | {b.mean_bad_requests:,.1f} "
            f"| {b.floor_bad_requests:,.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 1000, --quick 100)")
    ap.add_argument("--quick", action="store_true", help="100 repetitions (under a minute)")
    ap.add_argument(
        "--aa-reps",
        type=int,
        default=None,
        help="repetitions of the A/A scenarios (default 5 x --reps; --quick: --reps)",
    )
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--json", metavar="PATH", help="also write the rows and targets as JSON")
    args = ap.parse_args(argv)
    reps = args.reps or (100 if args.quick else 1000)
    aa_reps = args.aa_reps or (reps if args.quick else 5 * reps)
    if reps < 1:
        ap.error("--reps must be at least 1")
    t0 = time.monotonic()
    rows = run(reps, args.seed, aa_reps=aa_reps)
    bounds = oracle_bounds(reps, args.seed)
    elapsed = time.monotonic() - t0
    print(table(rows))
    print()
    print(bounds_table(bounds))
    print()
    goals = targets(rows, bounds)
    print("\n".join(goals))
    print(f"\n{reps} repetitions per scenario ({aa_reps} of each A/A), seed {args.seed}, {elapsed:.0f}s")
    if args.json:
        payload = {
            "reps": reps,
            "seed": args.seed,
            "rows": [asdict(r) for r in rows],
            "bounds": [asdict(b) for b in bounds],
            "targets": goals,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
