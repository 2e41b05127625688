"""The analysis entry point the engine calls: run declared checks for a target over a window.

``Analyser.run`` queries cumulative canary and baseline observations over [start, end] (one
instant query per arm and series at ``end`` with ``{window}`` = end - start), judges each check at
its Bonferroni share alpha/k of the family-wise false-rollback rate, and never raises: any
provider or data problem makes that check inconclusive with the reason in its message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from delivery.analysis.checks import DEFAULT_ALPHA, CheckSpec, render_query
from delivery.analysis.judges import FAIL, INCONCLUSIVE, PASS, Judgement, judge_errors, judge_latency
from delivery.analysis.prometheus import Sample
from delivery.analysis.providers import MetricProvider
from delivery.errors import AnalysisError, DeliverError

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


def _r(v: float | None, digits: int = 4) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: str  # "pass" | "fail" | "inconclusive"
    statistic: float | None
    p_value: float | None
    e_value: float | None
    effect: float | None
    n_canary: int
    n_baseline: int
    critical: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "outcome": self.outcome}
        for key, v in (("stat", self.statistic), ("p", self.p_value), ("e", self.e_value), ("effect", self.effect)):
            rv = _r(v)
            if rv is not None:
                d[key] = rv
        d["n"] = [self.n_canary, self.n_baseline]
        d["critical"] = self.critical
        d["msg"] = self.message
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        n = d.get("n") or [0, 0]
        return cls(
            name=str(d["name"]),
            outcome=str(d["outcome"]),
            statistic=d.get("stat"),
            p_value=d.get("p"),
            e_value=d.get("e"),
            effect=d.get("effect"),
            n_canary=int(n[0]),
            n_baseline=int(n[1]),
            critical=bool(d.get("critical", True)),
            message=str(d.get("msg", "")),
        )

    @classmethod
    def from_judgement(cls, name: str, critical: bool, v: Judgement) -> CheckResult:
        return cls(
            name, v.outcome, v.statistic, v.p_value, v.e_value, v.effect, v.n_canary, v.n_baseline, critical, v.message
        )


def combine(checks: Sequence[CheckResult]) -> str:
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
    outcome: str
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
            outcome=str(d["outcome"]),
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


def _total(samples: Sequence[Sample], what: str) -> float | None:
    """Sum of an instant vector; None when empty."""
    if not samples:
        return None
    _finite(samples, what)
    return float(sum(s.value for s in samples))


def _cumulative_buckets(samples: Sequence[Sample], what: str) -> dict[float, float]:
    """le -> cumulative count (summed over series with the same le)."""
    _finite(samples, what)
    out: dict[float, float] = {}
    for s in samples:
        le = s.labels.get("le")
        if le is None:
            raise AnalysisError(f"{what} returned a series without an 'le' label; aggregate with sum by (le)")
        try:
            bound = float(le)
        except ValueError:
            raise AnalysisError(f"{what} returned le={le!r}, not a number") from None
        out[bound] = out.get(bound, 0.0) + s.value
    return out


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
                judgement = self._check(spec, target, start, end, alpha / k)
            except DeliverError as exc:  # MetricsUnavailable, QueryError, AnalysisError, ...
                judgement = Judgement(INCONCLUSIVE, None, None, None, None, None, 0, 0, str(exc))
            except Exception as exc:  # never let a check crash the engine; never a pass
                judgement = Judgement(
                    INCONCLUSIVE, None, None, None, None, None, 0, 0, f"internal error: {type(exc).__name__}: {exc}"
                )
            results.append(CheckResult.from_judgement(spec.name, spec.critical, judgement))
        return AnalysisResult(combine(results), tuple(results), float(start), float(end))

    # ------------------------------------------------------------------

    def _query(
        self, spec: CheckSpec, key: str, arm: str, target: AnalysisTarget, end: float, window: str
    ) -> tuple[Sample, ...]:
        if key not in spec.queries:
            raise AnalysisError(f"check {spec.name} has no {key!r} query (ConfigMap not loaded?)")
        promql = render_query(spec.queries[key], target.placeholders(arm, window))
        at = self._baseline_end if arm == "baseline" and self._baseline_end is not None else end
        return self.provider.instant(promql, at)

    def _check(self, spec: CheckSpec, target: AnalysisTarget, start: float, end: float, alpha: float) -> Judgement:
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise AnalysisError(f"empty analysis window [{start}, {end}]")
        window = f"{max(1, int(math.ceil(end - start)))}s"
        if spec.kind == "errors":
            arms: dict[str, tuple[float, float]] = {}
            for arm in ("canary", "baseline"):
                what = f"{spec.name} {arm} total"
                total = _total(self._query(spec, "total", arm, target, end, window), what)
                if total is None:
                    raise AnalysisError(
                        f"no data: the {arm} total query returned no series (no traffic or wrong labels)"
                    )
                errs = _total(self._query(spec, "errors", arm, target, end, window), f"{spec.name} {arm} errors")
                arms[arm] = (total, errs or 0.0)  # no error series yet means no errors
            (nc, xc), (nb, xb) = arms["canary"], arms["baseline"]
            # increase() extrapolates; errors can come out a hair above total
            xc, xb = min(xc, nc), min(xb, nb)
            self.counts[spec.name] = (nc, xc, nb, xb)
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
            )
        if spec.kind == "latency":
            hist: dict[str, dict[float, float]] = {}
            for arm in ("canary", "baseline"):
                what = f"{spec.name} {arm} buckets"
                hist[arm] = _cumulative_buckets(self._query(spec, "buckets", arm, target, end, window), what)
                if not hist[arm]:
                    raise AnalysisError(f"no data: the {arm} histogram query returned no series")
            common = sorted(set(hist["canary"]) & set(hist["baseline"]))
            if not common:
                raise AnalysisError("canary and baseline histograms share no bucket bound")
            bounds = np.array(common)
            c = np.array([hist["canary"][b] for b in common])
            b_ = np.array([hist["baseline"][b] for b in common])
            return judge_latency(
                c,
                b_,
                bounds,
                cumulative=True,
                alpha=alpha,
                direction=spec.direction,
                max_effect=spec.max_effect,
                min_samples=spec.min_samples,
                quantile=spec.quantile,
            )
        raise AnalysisError(f"check {spec.name} has unknown kind {spec.kind!r}")
