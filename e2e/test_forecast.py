"""Time to verdict end to end: the real controller forecasts, from the harness's real Prometheus,
how long a verdict will take, and warns when a step cannot carry it.

The scenario of ``e2e/test_analysis.py`` (imported: the same versioned app processes, 6,000 req/s,
a third of them to the canary, 1 % errors in both), but the error-rate check asks for a million
requests per arm before it may pass: a 20 s step carries ~120,000 requests, the pass needs ~3
million (about 8 minutes at 6,000 req/s). So the step's analysis is inconclusive, its verdict
carries the forecast (summary, details), a ``VerdictOutOfReach`` Warning is posted once, the
delivery pauses (default ``on-inconclusive: pause``) and ``deliver status`` shows the time to verdict.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import e2e.test_analysis as scenario
from delivery.kube.client import KubeClient as JsonKube
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, deliver, describe, events, phase, wait_for
from e2e.services import Prometheus
from e2e.test_analysis import apps, deliver_v2, step_verdicts  # noqa: F401 - apps is a fixture
from e2e.versioned_app import VersionedApp

pytestmark = pytest.mark.e2e

NEEDS = 1_000_000  # requests per arm before the error-rate check may pass


def test_out_of_reach_verdict_is_forecast_warned_and_shown(
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    prometheus: Prometheus,
    apps: list[VersionedApp],  # noqa: F811 - the fixture imported above
    analysed_controller: ControllerProcess,
    run_dir: Path,
    cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    annotations = dict(scenario.ANNOTATIONS, **{"deliver.dev/analysis.error-rate": f"min-samples={NEEDS}"})
    monkeypatch.setattr(scenario, "ANNOTATIONS", annotations)
    deliver_v2(kube, jk, namespace, prometheus, apps, run_dir, canary_errors=scenario.BASE_ERRORS)

    wait_for(
        lambda: phase(jk, namespace) == "Paused", 90, "the inconclusive step pauses", describe=describe(jk, namespace)
    )
    verdicts = step_verdicts(jk, namespace)
    assert verdicts and verdicts[-1]["outcome"] == "inconclusive", describe(jk, namespace)()
    v = verdicts[-1]
    print(f"[forecast] {v['summary']}")
    print(f"[forecast] details {v.get('details')}")
    m = re.search(r"error-rate: verdict in ~([\d,]+) more requests \(~.+ at ([\d,.]+) req/s\)", v["summary"])
    assert m, v["summary"]
    more, rate = int(m.group(1).replace(",", "")), float(m.group(2).replace(",", ""))
    # the pass needs NEEDS per arm; a third of the traffic is the canary's
    assert 2_000_000 <= more <= 3.5 * NEEDS, v["summary"]
    assert 2000 <= rate <= 12000, v["summary"]  # ~6,000 req/s (increase() extrapolates a little)
    fc = {f["check"]: f for f in v["details"]["forecast"]}
    assert fc["error-rate"]["pass"] == max(fc["error-rate"]["pass"], fc["error-rate"]["fail"])
    assert "check error-rate needs" in v["outOfReach"]

    warned = wait_for(lambda: events(jk, namespace, "VerdictOutOfReach"), 15, "the VerdictOutOfReach Warning")
    assert len(warned) == 1, warned
    assert warned[0]["type"] == "Warning" and "step's analysis window of 20 s" in warned[0]["message"], warned

    out = deliver(cluster.kubeconfig, "-n", namespace, "status", scenario.NAME, timeout=60)
    assert "time to verdict (error-rate, at the last analysis): verdict in ~" in out.stdout, out.stdout + out.stderr
