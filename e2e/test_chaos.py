"""Chaos, short version (issue 10; the full run is `make chaos`, figures in docs/chaos.md).

On the real local control plane, with the real controller process: 5 SIGKILLs at seeded random
instants across the four strategies (every other delivery also aborted by an operator), one
kube-apiserver restart mid-delivery, one Prometheus that hangs mid-analysis, and 100 generated
invalid annotation sets. Each test prints its figures; any stuck delivery, double promotion, lost
operator request, write after an invalid set, or Ready pods below the capacity floor fails it, and
so does a fault that was not injected or not shown to have happened (the restart and the hang each
prove theirs: ``Trial.unproven``; the judging is unit-tested in tests/test_chaos_judging.py).
The runner is e2e/chaos.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delivery.kube.client import KubeClient as JsonKube
from e2e.chaos import Chaos, Figures
from e2e.conftest import RunningCluster
from e2e.helpers import Kube
from e2e.services import Prometheus

pytestmark = pytest.mark.e2e

SEED = 10


def chaos(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, run_dir: Path, prometheus_port: int | None = None
) -> Chaos:
    return Chaos(cluster.kubeconfig, kube, jk, run_dir, SEED, cluster=cluster.cluster, prometheus_port=prometheus_port)


def judged(figures: Figures, proven: bool = False) -> None:
    """Print the figures and fail on any violation; a trial whose fault could not be injected, or
    (``proven``) whose fault is not shown to have happened, is one (Trial.unproven)."""
    print("\n" + figures.table())
    for t in figures.trials:
        if t.evidence:
            print(f"{t.kind} {t.strategy}: " + "; ".join(t.evidence))
    assert figures.trials
    bad = figures.violations()
    assert not bad, "\n".join(f"{t.unproven or 'wrong'}: {t}" for t in bad)
    if proven:
        assert all(t.injected is True and t.observed is not False for t in figures.trials), figures.trials


def test_controller_killed_at_random_instants_across_the_strategies(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, run_dir: Path
) -> None:
    c = chaos(cluster, kube, jk, run_dir)
    c.kills(5)
    assert sum(t.faults for t in c.figures.trials) == 5
    assert {t.strategy for t in c.figures.trials} == {"canary", "blue-green", "rolling", "recreate"}
    # Ready pods are sampled all along each delivery (the capacity floor): the probe sees a drop, as
    # Recreate's by-design gap (every old pod stopped before a new one starts) shows
    assert all(t.fewest is not None for t in c.figures.trials)
    (recreate,) = [t for t in c.figures.trials if t.strategy == "recreate"]
    assert recreate.floor == 0 and recreate.fewest is not None and recreate.fewest < 3, recreate
    judged(c.figures)


def test_apiserver_restarted_mid_delivery(cluster: RunningCluster, kube: Kube, jk: JsonKube, run_dir: Path) -> None:
    if cluster.cluster is None:
        pytest.skip("restarting kube-apiserver needs the cluster this session started (DELIVER_E2E_KUBECONFIG is set)")
    c = chaos(cluster, kube, jk, run_dir)
    c.apiserver_restarts(1)
    judged(c.figures, proven=True)  # a request failed while it was down, and its pid changed


def test_prometheus_hangs_mid_analysis(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, run_dir: Path, prometheus: Prometheus
) -> None:
    c = chaos(cluster, kube, jk, run_dir, prometheus_port=prometheus.port)
    c.prometheus("hang")
    judged(c.figures, proven=True)  # our probe timed out, and deliver's own queries were held


def test_invalid_annotation_sets_write_nothing(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, run_dir: Path
) -> None:
    c = chaos(cluster, kube, jk, run_dir)
    c.invalid_annotations(100)
    (trial,) = c.figures.trials
    assert trial.faults == 100
    # a Warning per set, except where its message is the one just posted (deliver de-duplicates
    # consecutive identical warnings of a Deployment): a few of 100
    assert trial.warned >= 90, f"only {trial.warned} of 100 invalid sets got a Warning Event"
    judged(c.figures)
