"""The analysis entry point the engine calls: run declared checks for a target over a window.

``Analyser.run`` cuts [start, end] into windows of the check's resolution (``{window}`` = the
resolution, default 60 s), anchored at ``start`` so a growing span keeps its earlier windows, and
fetches per-window increments for each arm and series: one range query over the whole windows
(step = resolution) and one instant query for the last, partial window.  Each check is judged
stratified (every window against its own traffic share) and fails at its Bonferroni share alpha/k
of the family-wise false-rollback rate; a pass needs every critical check to pass, so each pass
test runs at the family's alpha.  It never raises: any provider or data problem makes that check
inconclusive with the reason in its message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from delivery.analysis.checks import DEFAULT_ALPHA, CheckSpec, render_query
from delivery.analysis.judges import FAIL, INCONCLUSIVE, PASS, Judgement, judge_errors, judge_latency
from delivery.analysis.prometheus import Sample, Series
from delivery.analysis.promql import confine
from delivery.analysis.providers import MetricProvider
from delivery.errors import AnalysisError, DeliverError
from strategies.evidence import CheckEvidence, Outcome

OUTCOMES = (PASS, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class AnalysisTarget:
    namespace: str
    name: str  # Deployment name
    canary_hash: str  # pod-template-hash of the new version's pods
    baseline_hash: str  # pod-template-hash of the stable version's pods
    canary_service: str  # Service selecting only canary pods ("" when none)
    baseline_service: str

    def placeholders(self, arm: str, window: str) -> dict[str, str]:
        canary = arm == "canary"
        return {
            "namespace": self.namespace,
            "name": self.name,
            "canary_hash": self.canary_hash,
            "baseline_hash": self.baseline_hash,
            "canary_service": self.canary_service,
            "baseline_service": self.baseline_service,
            "hash": self.canary_hash if canary else self.baseline_hash,
            "service": self.canary_service if canary else self.baseline_service,
            "window": window,
        }

    def query(self, template: str, arm: str, window: str) -> str:
        """The PromQL sent for one arm: placeholders substituted, every series selector bound to
        this namespace (QueryError, so an inconclusive check, for a query that would leave it)."""
        return confine(render_query(template, self.placeholders(arm, window)), self.namespace)


def _r(v: float | None, digits: int = 4) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: Outcome
    statistic: float | None
    p_value: float | None
    e_value: float | None
    effect: float | None
    n_canary: int
    n_baseline: int
    critical: bool
    message: str
    # the numbers the dashboard charts: canary and baseline rate over the span (errors checks: the
    # share of requests that failed), the judge's anytime-valid bound on the effect, and the e-value
    # at which the check fails (1 / its Bonferroni share of alpha)
    rates: tuple[float, float] | None = None
    effect_bound: float | None = None
    fail_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "outcome": self.outcome}
        for key, v in (
            ("stat", self.statistic),
            ("p", self.p_value),
            ("e", self.e_value),
            ("effect", self.effect),
            ("bound", self.effect_bound),
            ("fail_at", self.fail_at),
        ):
            rv = _r(v)
            if rv is not None:
                d[key] = rv
        if self.rates is not None:
            rc, rb = _r(self.rates[0]), _r(self.rates[1])
            if rc is not None and rb is not None:
                d["rate"] = [rc, rb]
        d["n"] = [self.n_canary, self.n_baseline]
        d["critical"] = self.critical
        d["msg"] = self.message
        return d

    def evidence(self) -> CheckEvidence:
        """What the planners read of this check (``StepVerdict.checks``), with the numbers rounded as
        ``to_dict`` rounds them."""
        rc, rb = (_r(self.rates[0]), _r(self.rates[1])) if self.rates is not None else (None, None)
        if rc is None or rb is None:
            rc = rb = None
        return CheckEvidence(
            self.name, self.outcome, self.n_canary, self.n_baseline, _r(self.e_value), rc, rb, _r(self.effect_bound)
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        n = d.get("n") or [0, 0]
        rate = d.get("rate")
        return cls(
            name=str(d["name"]),
            outcome=Outcome(d["outcome"]),
            statistic=d.get("stat"),
            p_value=d.get("p"),
            e_value=d.get("e"),
            effect=d.get("effect"),
            n_canary=int(n[0]),
            n_baseline=int(n[1]),
            critical=bool(d.get("critical", True)),
            message=str(d.get("msg", "")),
            rates=(float(rate[0]), float(rate[1])) if rate else None,
            effect_bound=d.get("bound"),
            fail_at=d.get("fail_at"),
        )

    @classmethod
    def from_judgement(
        cls,
        name: str,
        critical: bool,
        v: Judgement,
        rates: tuple[float, float] | None = None,
        fail_at: float | None = None,
    ) -> CheckResult:
        return cls(
            name,
            v.outcome,
            v.statistic,
            v.p_value,
            v.e_value,
            v.effect,
            v.n_canary,
            v.n_baseline,
            critical,
            v.message,
            rates,
            v.effect_bound,
            fail_at,
        )


def combine(checks: Sequence[CheckResult]) -> Outcome:
    """Overall outcome: fail if a critical check fails; inconclusive if a critical one is; else pass.

    Non-critical checks are reported but never decide.  No critical check at all is inconclusive:
    an analysis that judged nothing is never a pass.
    """
    critical = [c for c in checks if c.critical]
    if not critical:
        return INCONCLUSIVE
    if any(c.outcome == FAIL for c in critical):
        return FAIL
    if any(c.outcome != PASS for c in critical):
        return INCONCLUSIVE
    return PASS


@dataclass(frozen=True)
class AnalysisResult:
    outcome: Outcome
    checks: tuple[CheckResult, ...]
    window_start: float
    window_end: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "window": [round(self.window_start, 3), round(self.window_end, 3)],
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AnalysisResult:
        w = d.get("window") or [0.0, 0.0]
        return cls(
            outcome=Outcome(d["outcome"]),
            checks=tuple(CheckResult.from_dict(c) for c in d.get("checks") or ()),
            window_start=float(w[0]),
            window_end=float(w[1]),
        )

    def summary(self) -> str:
        if not self.checks:
            return f"{self.outcome}: no checks"
        return "; ".join(f"{c.name} {c.outcome} ({c.message})" for c in self.checks)


# --------------------------------------------------------------------------- query helpers


def _finite(samples: Sequence[Sample], what: str) -> None:
    bad = [s for s in samples if not s.finite]
    if bad:
        raise AnalysisError(f"{what} returned {bad[0].value} (NaN/Inf) for {bad[0].labels or 'the result'}")


def _cumulative_buckets(series: Sequence[tuple[dict[str, str], np.ndarray]], what: str) -> dict[float, np.ndarray]:
    """le -> per-window cumulative counts (summed over series with the same le)."""
    out: dict[float, np.ndarray] = {}
    for labels, values in series:
        le = labels.get("le")
        if le is None:
            raise AnalysisError(f"{what} returned a series without an 'le' label; aggregate with sum by (le)")
        try:
            bound = float(le)
        except ValueError:
            raise AnalysisError(f"{what} returned le={le!r}, not a number") from None
        out[bound] = out.get(bound, 0.0) + _integral(values)
    return out


# A last partial window shorter than this is left out (Prometheus has no two samples in it yet).
MIN_PARTIAL_WINDOW = 1.0


def promql_duration(seconds: float) -> str:
    """A PromQL duration: whole seconds as ``60s``, otherwise milliseconds (``1500ms``)."""
    ms = int(round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class Windows:
    """The analysed span cut into windows: ``full`` windows of ``resolution`` seconds from
    ``start``, then a partial one of ``tail`` seconds (0: none) ending at ``end``."""

    start: float
    end: float
    resolution: float
    full: int
    tail: float

    @classmethod
    def cut(cls, start: float, end: float, resolution: float) -> Windows:
        span = end - start
        full = int(math.floor(span / resolution + 1e-9))
        tail = span - full * resolution
        if tail < MIN_PARTIAL_WINDOW and full > 0:
            tail = 0.0
        return cls(start, end, resolution, full, tail)

    @property
    def count(self) -> int:
        return self.full + (1 if self.tail > 0 else 0)

    def index(self, ts: float, offset: float) -> int | None:
        """Window of a range-query point at ``ts`` (shifted by ``offset``), None if off the grid."""
        i = int(round((ts - offset - self.start) / self.resolution)) - 1
        return i if 0 <= i < self.full else None


def _integral(values: np.ndarray) -> np.ndarray:
    """Whole per-window counts from increase()'s extrapolated increments: round the running total
    and take differences, so rounding never adds up across windows (and stays >= 0)."""
    run = np.rint(np.maximum.accumulate(np.cumsum(np.maximum(values, 0.0))))
    return np.diff(run, prepend=0.0)


class Analyser:
    """Runs checks against a metric provider."""

    def __init__(self, provider: MetricProvider) -> None:
        self.provider = provider
        self._baseline_end: float | None = None
        # (canary total, canary errors, baseline total, baseline errors) each errors check judged in
        # the last run, for the time-to-verdict forecast (delivery/analysis/forecast.py)
        self.counts: dict[str, tuple[float, float, float, float]] = {}

    def run(
        self,
        checks: Sequence[CheckSpec],
        target: AnalysisTarget,
        start: float,
        end: float,
        baseline_end: float | None = None,
    ) -> AnalysisResult:
        """Judge canary over [start, end] against baseline over the same window, or, when the two
        versions never run together (recreate), against the equally long window ending at
        ``baseline_end``."""
        self._baseline_end = baseline_end
        self.counts = {}
        results: list[CheckResult] = []
        k = max(1, len(checks))
        alpha = min((c.alpha for c in checks), default=DEFAULT_ALPHA)
        for spec in checks:
            try:
                judgement = self._check(spec, target, start, end, alpha / k, alpha)
            except DeliverError as exc:  # MetricsUnavailable, QueryError, AnalysisError, ...
                judgement = Judgement(INCONCLUSIVE, None, None, None, None, None, 0, 0, str(exc))
            except Exception as exc:  # never let a check crash the engine; never a pass
                judgement = Judgement(
                    INCONCLUSIVE, None, None, None, None, None, 0, 0, f"internal error: {type(exc).__name__}: {exc}"
                )
            results.append(
                CheckResult.from_judgement(
                    spec.name, spec.critical, judgement, rates=self._rates(spec.name), fail_at=k / alpha
                )
            )
        return AnalysisResult(combine(results), tuple(results), float(start), float(end))

    def _rates(self, name: str) -> tuple[float, float] | None:
        """(canary, baseline) error rate over the span of an errors check judged in this run."""
        counts = self.counts.get(name)
        if counts is None or counts[0] <= 0 or counts[2] <= 0:
            return None
        nc, xc, nb, xb = counts
        return xc / nc, xb / nb

    # ------------------------------------------------------------------

    def _windows(
        self, spec: CheckSpec, key: str, arm: str, target: AnalysisTarget, grid: Windows
    ) -> list[tuple[dict[str, str], np.ndarray]] | None:
        """Per-window increments of one query for one arm: (labels, values per window) per series,
        or None when the query returned no series at all."""
        if key not in spec.queries:
            raise AnalysisError(f"check {spec.name} has no {key!r} query (ConfigMap not loaded?)")
        what = f"{spec.name} {arm} {key}"
        offset = (self._baseline_end - grid.end) if arm == "baseline" and self._baseline_end is not None else 0.0
        out: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], np.ndarray]] = {}

        def slot(labels: dict[str, str]) -> np.ndarray:
            k = tuple(sorted(labels.items()))
            if k not in out:
                out[k] = (labels, np.zeros(grid.count))
            return out[k][1]

        if grid.full:
            promql = target.query(spec.queries[key], arm, promql_duration(grid.resolution))
            first = grid.start + grid.resolution + offset
            last = grid.start + grid.full * grid.resolution + offset
            series: tuple[Series, ...] = self.provider.range(promql, first, last, grid.resolution)
            for s in series:
                values = slot(s.labels)
                for ts, v in s.points:
                    if not math.isfinite(v):
                        raise AnalysisError(f"{what} returned {v} (NaN/Inf) for {s.labels or 'the result'}")
                    i = grid.index(ts, offset)
                    if i is not None:
                        values[i] += v
        if grid.tail > 0:
            promql = target.query(spec.queries[key], arm, promql_duration(grid.tail))
            samples = self.provider.instant(promql, grid.end + offset)
            _finite(samples, what)
            for smp in samples:
                slot(smp.labels)[grid.count - 1] += smp.value
        if not out:
            return None
        return list(out.values())

    def _prior_buckets(
        self, spec: CheckSpec, target: AnalysisTarget, grid: Windows, common: Sequence[float]
    ) -> np.ndarray | None:
        """The baseline's histogram (cumulative, over ``common`` bounds) in the window of one
        resolution before the span: it seeds the latency thresholds of the span's first window, so
        no window's threshold depends on its own data (cores.latency_core).  None when it cannot
        be had (no data, a query error): the first window then uses its own pooled quantiles."""
        offset = (self._baseline_end - grid.end) if self._baseline_end is not None else 0.0
        try:
            promql = target.query(spec.queries["buckets"], "baseline", promql_duration(grid.resolution))
            samples = self.provider.instant(promql, grid.start + offset)
        except DeliverError:
            return None
        by_le: dict[float, float] = {}
        for smp in samples:
            le = smp.labels.get("le")
            if le is None or not smp.finite:
                return None
            try:
                bound = float(le)
            except ValueError:
                return None
            by_le[bound] = by_le.get(bound, 0.0) + max(smp.value, 0.0)
        if not by_le or any(b not in by_le for b in common):
            return None
        return np.array([by_le[b] for b in common])

    def _check(
        self, spec: CheckSpec, target: AnalysisTarget, start: float, end: float, alpha: float, family_alpha: float
    ) -> Judgement:
        """Judge one check: fail at ``alpha`` (its Bonferroni share), pass at ``family_alpha``."""
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise AnalysisError(f"empty analysis window [{start}, {end}]")
        grid = Windows.cut(start, end, spec.resolution)
        if spec.kind == "errors":
            arms: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for arm in ("canary", "baseline"):
                totals = self._windows(spec, "total", arm, target, grid)
                if totals is None:
                    raise AnalysisError(
                        f"no data: the {arm} total query returned no series (no traffic or wrong labels)"
                    )
                errs = self._windows(spec, "errors", arm, target, grid)  # no error series yet: no errors
                total = _integral(np.sum([v for _, v in totals], axis=0))
                bad = _integral(np.sum([v for _, v in errs], axis=0)) if errs else np.zeros(grid.count)
                # increase() extrapolates; errors can come out a hair above total
                arms[arm] = (total, np.minimum(bad, total))
            (nc, xc), (nb, xb) = arms["canary"], arms["baseline"]
            # the forecast (delivery/analysis/forecast.py) reads the totals of the span
            self.counts[spec.name] = (float(nc.sum()), float(xc.sum()), float(nb.sum()), float(xb.sum()))
            return judge_errors(
                nc,
                xc,
                nb,
                xb,
                alpha=alpha,
                direction=spec.direction,
                max_effect=spec.max_effect,
                min_samples=spec.min_samples,
                negligible_rate=spec.negligible_rate,
                pass_alpha=family_alpha,
            )
        if spec.kind == "latency":
            hist: dict[str, dict[float, np.ndarray]] = {}
            for arm in ("canary", "baseline"):
                series = self._windows(spec, "buckets", arm, target, grid)
                if not series:
                    raise AnalysisError(f"no data: the {arm} histogram query returned no series")
                hist[arm] = _cumulative_buckets(series, f"{spec.name} {arm} buckets")
            common = sorted(set(hist["canary"]) & set(hist["baseline"]))
            if not common:
                raise AnalysisError("canary and baseline histograms share no bucket bound")
            bounds = np.array(common)
            c = np.stack([hist["canary"][b] for b in common], axis=1)  # (windows, buckets), cumulative
            b_ = np.stack([hist["baseline"][b] for b in common], axis=1)
            return judge_latency(
                c,
                b_,
                bounds,
                prior=self._prior_buckets(spec, target, grid, common),
                cumulative=True,
                alpha=alpha,
                direction=spec.direction,
                max_effect=spec.max_effect,
                min_samples=spec.min_samples,
                quantile=spec.quantile,
                pass_alpha=family_alpha,
            )
        raise AnalysisError(f"check {spec.name} has unknown kind {spec.kind!r}")
