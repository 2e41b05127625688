"""Per-window analysis against the harness's real Prometheus (issue 11, finding 1): no cluster.

Two real ``e2e.versioned_app`` processes, scraped every second under the labels the built-in
``http`` checks select, serve the same error rate as each other at every moment: first a quiet
period (0.5 % errors) with the canary at 10 % of the traffic, then a bad period (10 % errors in
both) with the canary at 50 %.  ``Analyser.run`` over that span with 5 s windows fetches the
per-window increments by range query and judges them stratified: no fail.  The same span judged
as one window (resolution 1 h, what deliver did before) rolls the healthy canary back: pooled, it
served more of the bad period (Simpson's paradox).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.analysis.checks import parse_checks
from delivery.analysis.providers import make_provider
from delivery.analysis.runner import Analyser, AnalysisTarget
from e2e.services import Prometheus
from e2e.versioned_app import VersionedApp

pytestmark = pytest.mark.e2e

NS = "windows"
TARGET = AnalysisTarget(NS, "web", "canaryhash", "stablehash", "", "")
PHASE = 12.0  # seconds of each traffic period


@pytest.fixture
def arms(run_dir: Path, prometheus: Prometheus) -> Iterator[tuple[VersionedApp, VersionedApp]]:
    canary = VersionedApp("canary", run_dir, seed=3).start()
    stable = VersionedApp("stable", run_dir, seed=4).start()
    try:
        for app, h in ((canary, "canaryhash"), (stable, "stablehash")):
            prometheus.add_target(f"web-{app.name}", app.address, labels={"namespace": NS, "pod_template_hash": h})
        for h in ("canaryhash", "stablehash"):
            prometheus.wait_for_series(f'http_requests_total{{namespace="{NS}",pod_template_hash="{h}"}}', 30)
        yield canary, stable
    finally:
        canary.stop()
        stable.stop()


def test_share_drift_with_a_bad_period_is_judged_per_window(
    prometheus: Prometheus, arms: tuple[VersionedApp, VersionedApp]
) -> None:
    canary, stable = arms
    start = time.time()
    canary.set_traffic(rate=200, error_share=0.005)
    stable.set_traffic(rate=1800, error_share=0.005)
    time.sleep(PHASE)
    canary.set_traffic(rate=1500, error_share=0.10)
    stable.set_traffic(rate=1500, error_share=0.10)
    time.sleep(PHASE)
    canary.set_traffic(rate=0)
    stable.set_traffic(rate=0)
    end = start + 2 * PHASE
    time.sleep(3)  # the last scrapes of the span are in

    provider = make_provider("prometheus", url=prometheus.url, timeout=10)
    try:
        windows = parse_checks(
            {
                "deliver.dev/analysis": "error-rate",
                "deliver.dev/analysis-resolution": "4s",
                "deliver.dev/analysis.error-rate": "min-samples=100",
            }
        )
        per_window = Analyser(provider).run(windows, TARGET, start, end)
        pooled_checks = parse_checks(
            {
                "deliver.dev/analysis": "error-rate",
                "deliver.dev/analysis-resolution": "1h",
                "deliver.dev/analysis.error-rate": "min-samples=100",
            }
        )
        pooled = Analyser(provider).run(pooled_checks, TARGET, start, end)
    finally:
        provider.close()
    print("per window:", per_window.summary())
    print("pooled:    ", pooled.summary())
    (w,) = per_window.checks
    (p,) = pooled.checks
    assert "in 6 windows" in w.message, w.message
    assert w.n_canary > 5000 and w.n_baseline > 5000, w.message
    # the counts the windows add up to are the span's (increase() extrapolates a little)
    assert abs(w.n_canary - p.n_canary) < 0.1 * p.n_canary, (w.message, p.message)
    assert p.outcome == "fail", p.message  # before: a healthy canary rolled back
    assert w.outcome != "fail", w.message  # per window: no evidence against it
