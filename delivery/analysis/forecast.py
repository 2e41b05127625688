"""Time to verdict: how many more requests (and minutes) an analysis needs before it can decide.

The forecast asks the judges themselves, through their public functions only
(:func:`~delivery.analysis.judges.judge_errors`, :func:`~delivery.analysis.judges.judge_latency`),
so it stays right when their internals change.  For one check it follows the *expected path*: the
counts observed so far plus those the analysis would see next if traffic kept the observed canary
share and base rate, and

* ``fail``: the canary were worse by exactly the check's ``max-effect`` (the smallest regression the
  check is configured to care about), or
* ``pass``: the canary were exactly as good as the baseline;

and finds by bisection the smallest number of further requests (both arms together) at which the
judge, fed those expected counts, returns that verdict.  The base rate is the maximum-likelihood
estimate under each hypothesis (pooled for ``pass``; the baseline rate given a canary ``1 + max-effect``
times worse for ``fail``), shrunk by half an event so that no errors yet is not a rate of zero.
The evidence so far counts: a canary that already looks worse is forecast to fail sooner and to pass
later.  Latency checks count exceedances of the pooled quantiles, whose pooled rates are known by
construction (0.5 for the median sub-test, ``1 - quantile`` for the tail, split between the arms by
the hypothesis); the runner keeps no exceedance counts, so their path starts from the expected
counts of the requests observed so far.

A verdict is reached when the slower of the two is: ``Forecast.requests`` is the larger; ``None``
means it cannot be reached (no traffic from an arm, or more than :data:`LIMIT` further requests).
Minutes follow from the observed request rate; at a rate of zero there are none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from delivery.analysis.checks import DEFAULT_ALPHA, CheckSpec
from delivery.analysis.judges import FAIL, INCONCLUSIVE, PASS, judge_errors, judge_latency
from delivery.analysis.runner import CheckResult
from strategies.evidence import Outcome

LIMIT = 10**9  # further requests beyond which a verdict counts as out of reach
_INF = float("inf")
# Three latency buckets on the expected path: below the median, median..tail quantile, above the tail.
_BOUNDS = (1.0, 2.0, _INF)


@dataclass(frozen=True)
class Observed:
    """What one check saw so far in the current analysis window."""

    canary_requests: float
    baseline_requests: float
    seconds: float  # length of the window the requests came in
    canary_errors: float = 0.0  # errors checks only
    baseline_errors: float = 0.0

    @property
    def requests(self) -> float:
        return self.canary_requests + self.baseline_requests

    @property
    def rate(self) -> float:
        """Requests per second (both arms); 0 when the window is empty."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Forecast:
    """Further requests (both arms) until one check can decide, on the expected path."""

    check: str
    fail_requests: int | None  # until a canary worse by max_effect fails; None: out of reach
    pass_requests: int | None  # until a canary as good as the baseline passes; None: out of reach
    rate: float  # observed requests per second, both arms
    max_effect: float
    alpha: float  # the check's share of the family-wise alpha
    reason: str = ""  # why a number is None

    @property
    def requests(self) -> int | None:
        """Further requests until a verdict either way (the slower of pass and fail); None: out of reach."""
        if self.fail_requests is None or self.pass_requests is None:
            return None
        return max(self.fail_requests, self.pass_requests)

    @property
    def seconds(self) -> float | None:
        """``requests`` at the observed rate; None when out of reach or no traffic flows."""
        n = self.requests
        if n is None or self.rate <= 0:
            return None
        return n / self.rate

    def text(self) -> str:
        """E.g. ``verdict in ~4,800 more requests (~6 min at 13 req/s)``."""
        n = self.requests
        if n is None:
            return f"no verdict in reach: {self.reason}" if self.reason else "no verdict in reach"
        if n == 0:
            return "verdict due now (the data so far are noisier than expected)"
        s = self.seconds
        when = f" (~{duration(s)} at {rate_text(self.rate)} req/s)" if s is not None else " (no traffic now)"
        return f"verdict in ~{round_requests(n):,} more requests{when}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"check": self.check, FAIL.value: self.fail_requests, PASS.value: self.pass_requests}
        d["rate"] = float(f"{self.rate:.4g}")
        d["effect"], d["alpha"] = float(f"{self.max_effect:.4g}"), float(f"{self.alpha:.4g}")
        if self.reason:
            d["why"] = self.reason[:120]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Forecast:
        def n(v: Any) -> int | None:
            return None if v is None else int(v)

        return cls(
            str(d.get("check", "")),
            n(d.get(FAIL.value)),
            n(d.get(PASS.value)),
            float(d.get("rate") or 0.0),
            float(d.get("effect") or 0.0),
            float(d.get("alpha") or 0.0),
            str(d.get("why", "")),
        )


def round_requests(n: int) -> int:
    """Two significant digits: a forecast is not more precise than that."""
    if n < 100:
        return n
    digits = int(math.floor(math.log10(n))) - 1
    return int(round(n, -digits))


def rate_text(rate: float) -> str:
    return f"{rate:.2g}" if rate < 10 else f"{rate:,.0f}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_alpha(checks: Sequence[CheckSpec]) -> float:
    """Each check's share of the family-wise alpha, as the runner judges them (Bonferroni, alpha/k)."""
    alpha = min((c.alpha for c in checks), default=DEFAULT_ALPHA)
    return alpha / max(1, len(checks))


def smallest(reaches: Callable[[int], bool], limit: int = LIMIT, start: int = 1, precision: float = 0.0) -> int | None:
    """The smallest n in [0, limit] with ``reaches(n)``, by doubling from ``start`` then bisection; None if none.

    ``reaches`` should be monotone (False then True); if it is not, the answer is still an n with
    ``reaches(n)`` and ``not reaches(n - 1)``.  ``precision`` > 0 stops the bisection once the
    bracket is within that fraction of the answer (fewer judge calls; an n with ``reaches(n)``).
    """
    if reaches(0):
        return 0
    lo, hi = 0, max(1, min(start, limit))  # reaches(lo) is False
    if reaches(hi):
        while hi > 1 and reaches(hi // 2):  # a generous start: come down to a bracket
            hi //= 2
        lo = hi // 2 if hi > 1 else 0
    else:
        while True:
            lo = hi
            if hi >= limit:
                return None
            hi = min(limit, hi * 2)
            if reaches(hi):
                break
    while hi - lo > 1 and hi - lo > precision * hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _split(total: float, share: float) -> tuple[int, int]:
    canary = round(total * share)
    return canary, round(total) - canary


def errors_path(spec: CheckSpec, obs: Observed, alpha: float, verdict: Outcome) -> tuple[Callable[[int], bool], str]:
    """Whether the judge returns ``verdict`` after n further requests on the expected path: the counts
    observed so far plus the expected counts of n more requests at the observed canary share."""
    factor = 1.0
    if verdict == FAIL:
        factor = max(0.0, 1.0 - spec.max_effect) if spec.direction == "decrease" else 1.0 + spec.max_effect
    share = obs.canary_requests / obs.requests
    bad = obs.canary_errors + obs.baseline_errors
    # the base rate's maximum-likelihood estimate under the hypothesis (canary = factor x baseline)
    base = (bad + 0.5) / (obs.baseline_requests + factor * obs.canary_requests + 1.0)
    canary_rate = min(1.0, base * factor)
    why = f"{100 * base:.3g}% base rate, {100 * share:.0f}% canary share"
    nc0, xc0 = round(obs.canary_requests), round(obs.canary_errors)
    nb0, xb0 = round(obs.baseline_requests), round(obs.baseline_errors)

    def reaches(n: int) -> bool:
        dc, db = _split(n, share)
        j = judge_errors(
            nc0 + dc,
            min(nc0 + dc, xc0 + round(dc * canary_rate)),
            nb0 + db,
            min(nb0 + db, xb0 + round(db * base)),
            alpha=alpha,
            direction=spec.direction,
            max_effect=spec.max_effect,
            min_samples=spec.min_samples,
            negligible_rate=spec.negligible_rate,
        )
        return j.outcome == verdict

    return reaches, why


def latency_path(spec: CheckSpec, obs: Observed, alpha: float, verdict: Outcome) -> tuple[Callable[[int], bool], str]:
    """The same for a latency check: exceedances of the tail quantile ``max-effect`` more frequent."""
    factor = 1.0
    if verdict == FAIL:
        factor = max(0.0, 1.0 - spec.max_effect) if spec.direction == "decrease" else 1.0 + spec.max_effect
    share = obs.canary_requests / obs.requests
    # the threshold is the pooled quantile: both arms together exceed it 1 - quantile of the time
    tail = (1.0 - spec.quantile) / (1.0 + share * (factor - 1.0))
    canary_tail = min(0.5, tail * factor)

    def buckets(n: int, tail_rate: float) -> list[int]:
        above = round(n * tail_rate)
        low = round(n * 0.5)
        return [low, n - low - above, above]

    def reaches(n: int) -> bool:
        nc, nb = _split(obs.requests + n, share)
        j = judge_latency(
            buckets(nc, canary_tail),
            buckets(nb, tail),
            list(_BOUNDS),
            alpha=alpha,
            direction=spec.direction,
            max_effect=spec.max_effect,
            min_samples=spec.min_samples,
            quantile=spec.quantile,
        )
        return j.outcome == verdict

    return reaches, f"{100 * share:.0f}% canary share"


def forecast_check(spec: CheckSpec, obs: Observed, alpha: float, limit: int = LIMIT) -> Forecast:
    """The forecast for one check from what it observed so far (pure; a few dozen judge calls)."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if obs.canary_requests <= 0 or obs.baseline_requests <= 0:
        arm = "canary" if obs.canary_requests <= 0 else "baseline"
        return Forecast(spec.name, None, None, obs.rate, spec.max_effect, alpha, f"no {arm} traffic yet")
    path = errors_path if spec.kind == "errors" else latency_path
    found: dict[Outcome, int | None] = {}
    why = ""
    for verdict in (FAIL, PASS):
        reaches, why = path(spec, obs, alpha, verdict)
        found[verdict] = smallest(reaches, limit)
    reason = ""
    if found[FAIL] is None or found[PASS] is None:
        missing = " and ".join(v for v in (PASS, FAIL) if found[v] is None)
        reason = f"{missing} beyond {limit:,} more requests at {why}"
    return Forecast(spec.name, found[FAIL], found[PASS], obs.rate, spec.max_effect, alpha, reason)


def forecast_analysis(
    checks: Sequence[CheckSpec],
    results: Sequence[CheckResult],
    counts: Mapping[str, tuple[float, float, float, float]],
    seconds: float,
) -> list[Forecast]:
    """Forecasts of the critical, still inconclusive checks of one analysis (non-critical ones never decide).

    ``results`` are the checks' results (their request counts); ``counts`` the (canary total, canary
    errors, baseline total, baseline errors) of each errors check; ``seconds`` the window's length.
    An errors check without counts (its queries failed) gets no forecast.
    """
    alpha = check_alpha(checks)
    by_name = {r.name: r for r in results}
    out: list[Forecast] = []
    for spec in checks:
        result = by_name.get(spec.name)
        if not spec.critical or result is None or result.outcome != INCONCLUSIVE:
            continue  # a check that decided needs no forecast
        if spec.kind == "errors":
            if spec.name not in counts:
                continue
            nc, xc, nb, xb = counts[spec.name]
            obs = Observed(nc, nb, seconds, xc, xb)
        else:
            obs = Observed(result.n_canary, result.n_baseline, seconds)
        out.append(forecast_check(spec, obs, alpha))
    return out


def binding(forecasts: Sequence[Forecast]) -> Forecast | None:
    """The forecast of the check that decides last (an out-of-reach one first); None if none."""
    if not forecasts:
        return None
    return max(forecasts, key=lambda f: _INF if f.requests is None else float(f.requests))


def out_of_reach(forecast: Forecast, observed_requests: float, window_seconds: float) -> str:
    """A warning when a step's whole analysis window cannot carry the requests a verdict needs; "" if it can.

    ``observed_requests`` came in so far; the verdict needs ``observed_requests + forecast.requests``
    in all, and at the observed rate a window of ``window_seconds`` carries ``rate * window_seconds``.
    """
    carried = forecast.rate * window_seconds
    more = forecast.requests
    needed = None if more is None else observed_requests + more
    if needed is not None and carried >= needed:
        return ""
    if needed is None:
        needs = f"check {forecast.check} has no verdict in reach ({forecast.reason or 'beyond the limit'})"
    else:
        needs = (
            f"check {forecast.check} needs ~{round_requests(int(needed)):,} requests for a verdict (pass for a "
            f"healthy canary, fail at {forecast.max_effect:+.0%}, alpha {forecast.alpha:.3g})"
        )
    return (
        f"{needs} but a step's analysis window "
        f"of {duration(window_seconds)} carries ~{round_requests(int(carried)):,} at "
        f"{rate_text(forecast.rate)} req/s: its steps will end inconclusive; lengthen "
        "deliver.dev/interval, send more traffic to the canary or raise max-effect"
    )


__all__ = [
    "Forecast",
    "Observed",
    "binding",
    "check_alpha",
    "forecast_analysis",
    "forecast_check",
    "out_of_reach",
    "smallest",
]
