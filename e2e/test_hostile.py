"""The hostile-namespace test, short version (issue 24; the full run is `python -m e2e.hostile`,
run by `make chaos`; figures in docs/security.md#the-hostile-namespace-test).

One controller (`--all-namespaces`, egress allowed to 127.0.0.1/32 only) serves a hostile namespace
running every attack at once (record bombs, `1e999`, a 5,000-digit interval, a hook at a denied
"metadata" server on 127.0.0.2, a 150 MiB answer, drip servers for hooks and 10 notification URLs,
PromQL naming the victim) and a victim delivering a good canary (promoted) and a crash-looping one
(rolled back). The same victim rounds run first alone (quiet), then beside the same tenant
Deployments with plain annotations changed as often (churn: the scenario without the attacks).
The scenario is e2e/hostile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delivery.kube.client import KubeClient as JsonKube
from e2e.conftest import RunningCluster
from e2e.helpers import Kube
from e2e.hostile import Hostile, report

pytestmark = pytest.mark.e2e

ROUNDS = 5
# The full run's goal is hostile / quiet ≤ 1.5 for the victim's medians (e2e/hostile.py, 12 rounds,
# no allowance). The short version's medians are of 5 rounds on 2 cores shared with other work, and
# the victim's rollback takes ~0.3 s (a crash-looping canary is rolled back at its first restart),
# where one busy poll of 0.2 s doubles it: so the short version holds a looser 2.0, or at most 1 s
# slower (under one reconcile pass of the victim's 2 s interval). Every other goal is the full run's.
SHORT_RATIO = 2.0
SHORT_SLACK = 1.0


def test_a_hostile_namespace_neither_leaks_nor_delays_the_victim(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, run_dir: Path
) -> None:
    figures = Hostile(cluster.kubeconfig, kube, jk, run_dir).run(ROUNDS)
    print("\n" + report(figures, SHORT_RATIO, SHORT_SLACK))
    assert len(figures.quiet.promote) == len(figures.churn.promote) == len(figures.hostile.promote) == ROUNDS
    # the attacks ran: the hostile namespace got its Warnings, the big answer was (partly) sent,
    # the drip servers were called, the unbound query reached Prometheus bound to its namespace
    assert {"RecordRejected", "InvalidAnnotation"} <= set(figures.warnings), figures.warnings
    assert figures.big_sent_mib > 0 and figures.drip_requests > 0
    assert figures.hostile_queries > 0
    missed = figures.missed(SHORT_RATIO, SHORT_SLACK)
    assert not missed, missed
