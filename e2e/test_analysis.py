"""Metric analysis end to end: the real controller judges a canary from the harness's real
Prometheus, which scrapes real local processes exposing each version's request counters.

kwok pods serve nothing, so each version's traffic comes from an ``e2e.versioned_app`` process
registered with Prometheus under that version's ``pod_template_hash`` and ``namespace`` target
labels: exactly what deliver's built-in ``http`` checks select (``http_requests_total{code}``,
``http_request_duration_seconds_bucket``). The stable version serves 4000 req/s, the canary
2000 req/s (the share two canary pods get beside four stable ones), both at 1% errors and the same
latency (lognormal, median 50 ms) unless the test says otherwise.

Given a canary delivery with ``error-rate`` and ``latency`` analysis on its one analysed step
(50 %, held 20 s), then:

* a healthy canary (same error rate, same latency) passes both checks and is promoted;
* a canary answering 10% errors, whose pods are all Ready the whole time (so health gating alone
  would promote it), fails the error-rate check and is rolled back: the verdict is recorded with
  its numbers and the Deployment's template is the stable one again;
* Prometheus stopped in the middle of the step makes the analysis inconclusive, and the delivery
  pauses (default ``on-inconclusive: pause``) instead of promoting.

Why these numbers pass or fail (``judge_errors`` at α/2 = 0.025 per check, run offline): a full
step is ~40,000 canary vs ~88,000 baseline requests; 1% vs 1% bounds the rate ratio at +23%, and
even if the canary served only 8 s of the 20 s step (16,000 vs 88,000) at +34%, within the +50%
that passes (min-samples 5000 per arm); 10% vs 1% gives an e-value beyond 1e100 (≥ 40 fails).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from delivery import templates
from delivery.kube.client import KubeClient as JsonKube
from e2e.controller import ControllerProcess
from e2e.helpers import (
    Kube,
    deliver,
    deliver_replicasets,
    deployment,
    describe,
    events,
    image,
    is_ready,
    make_deployment,
    phase,
    pods_of_hash,
    ready_by_hash,
    restarts,
    set_image,
    stable_rs,
    state,
    stays,
    wait_for,
)
from e2e.services import Prometheus
from e2e.versioned_app import VersionedApp

pytestmark = pytest.mark.e2e

NAME = "web"
N = 4  # stable replicas; step 50 % runs ceil(4 * 0.5) = 2 canary pods beside them
CANARY_PODS = 2
INTERVAL = 20.0  # seconds each step is held and then analysed
STABLE_RATE = 4000.0  # requests/s of the stable version (four pods)
CANARY_RATE = 2000.0  # requests/s of the canary (two pods: a third of all requests)
BASE_ERRORS = 0.01  # 1% of requests answer 500 in both versions when healthy
BAD_ERRORS = 0.10  # the erroring canary
MIN_SAMPLES = 5000  # requests per arm before a pass is possible

ANNOTATIONS = {
    "deliver.dev/strategy": "canary",
    "deliver.dev/steps": "50,100",
    "deliver.dev/canary-scale": "surge",  # the rates below assume all N stable pods beside the canary
    "deliver.dev/interval": f"{int(INTERVAL)}s",
    "deliver.dev/progress-deadline": "60s",
    "deliver.dev/analysis": "error-rate,latency",
    "deliver.dev/analysis.error-rate": f"min-samples={MIN_SAMPLES}",
    "deliver.dev/analysis.latency": f"min-samples={MIN_SAMPLES}, quantile=0.95",
}


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def apps(run_dir: Path) -> Iterator[list[VersionedApp]]:
    """Versioned app processes started by the test; all stopped (by pid) afterwards."""
    started: list[VersionedApp] = []
    yield started
    for app in started:
        try:
            print(f"app {app.name}: {app.stats()}")
        except Exception:  # only for the log
            pass
        app.stop()


# ---------------------------------------------------------------- reading the verdicts
def step_verdicts(jk: JsonKube, ns: str, step: int = 0) -> list[dict[str, Any]]:
    return [v for v in state(jk, ns).get("verdicts", []) if v.get("step") == step]


def check(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    checks = {c["name"]: c for c in verdict.get("details", {}).get("checks", [])}
    assert name in checks, f"no {name} check in verdict {verdict}"
    return checks[name]


def error_rates(chk: dict[str, Any]) -> tuple[float, float]:
    """(canary %, baseline %) from an error-rate check's message, e.g. "... 10% vs 1%, ..."."""
    m = re.search(r"([\d.]+)% vs ([\d.]+)%", chk["msg"])
    assert m, f"no rates in {chk['msg']!r}"
    return float(m.group(1)), float(m.group(2))


def deliver_status(cluster: Any, ns: str) -> str:
    out = deliver(cluster.kubeconfig, "-n", ns, "status", NAME, timeout=60)
    return out.stdout + out.stderr


# ---------------------------------------------------------------- the scenario
@dataclass
class Delivery:
    stable_hash: str
    canary_hash: str
    stable_revision: str
    stable: VersionedApp
    canary: VersionedApp
    traffic_started: float  # when the canary started taking its share


def register(prometheus: Prometheus, app: VersionedApp, ns: str, pod_hash: str) -> None:
    prometheus.add_target(f"{NAME}-{app.name}", app.address, labels={"namespace": ns, "pod_template_hash": pod_hash})


def wait_scraped(prometheus: Prometheus, ns: str, pod_hash: str) -> None:
    prometheus.wait_for_series(f'http_requests_total{{namespace="{ns}",pod_template_hash="{pod_hash}"}}', timeout=30)


def deliver_v2(
    kube: Kube,
    jk: JsonKube,
    ns: str,
    prometheus: Prometheus,
    apps: list[VersionedApp],
    run_dir: Path,
    canary_errors: float,
) -> Delivery:
    """v1 running and serving traffic, then the template changes to v2 and the canary serves its
    share with ``canary_errors`` of its requests failing."""
    kube.apps.create_namespaced_deployment(
        ns, make_deployment(NAME, replicas=N, image="example.com/web:v1", annotations=ANNOTATIONS)
    )
    wait_for(
        lambda: (
            deployment(jk, ns)["spec"].get("paused")
            and state(jk, ns).get("stableHash")
            and ready_by_hash(jk, ns).get(state(jk, ns)["stableHash"]) == N
        ),
        90,
        "v1 rolled out and held by deliver",
        describe=describe(jk, ns),
    )
    st = state(jk, ns)
    rs = stable_rs(jk, ns)
    assert rs is not None
    stable_hash = rs["spec"]["template"]["metadata"]["labels"][templates.HASH_LABEL]
    assert st["stableHash"] == stable_hash

    # The stable version serves traffic from before the change, as a running service does.
    stable = VersionedApp("v1", run_dir, seed=11).start()
    apps.append(stable)
    register(prometheus, stable, ns, stable_hash)

    # deliver's canary pods will carry pod-template-hash = deliver's revision of the new template:
    # register the canary's process under it up front (idle), so it is scraped from the start.
    dep = deployment(jk, ns)
    tpl = json.loads(json.dumps(dep["spec"]["template"]))
    tpl["spec"]["containers"][0]["image"] = "example.com/web:v2"
    predicted = templates.revision(tpl)
    canary = VersionedApp("v2", run_dir, seed=22).start()
    apps.append(canary)
    register(prometheus, canary, ns, predicted)
    wait_scraped(prometheus, ns, stable_hash)
    wait_scraped(prometheus, ns, predicted)
    stable.set_traffic(rate=STABLE_RATE, error_share=BASE_ERRORS)
    # a couple of scrapes of the stable version under load before the change
    prometheus.wait_for_series(
        f'increase(http_requests_total{{namespace="{ns}",pod_template_hash="{stable_hash}"}}[1m]) > 0', timeout=30
    )

    set_image(kube.apps, ns, NAME, "example.com/web:v2")
    ours = wait_for(lambda: deliver_replicasets(jk, ns), 30, "deliver's canary ReplicaSet", describe=describe(jk, ns))
    canary_hash = ours[0]["spec"]["template"]["metadata"]["labels"][templates.HASH_LABEL]
    assert canary_hash == templates.revision(deployment(jk, ns)["spec"]["template"]) == state(jk, ns)["revision"]
    if canary_hash != predicted:  # (would mean the template read back differs from the patched one)
        prometheus.remove_target(f"{NAME}-{canary.name}", canary.address)
        register(prometheus, canary, ns, canary_hash)
        wait_scraped(prometheus, ns, canary_hash)
    # The canary's pods come up (kwok) and it takes its share of the requests.
    wait_for(
        lambda: sum(is_ready(p) for p in pods_of_hash(jk, ns, canary_hash)) == CANARY_PODS,
        30,
        "canary pods Ready",
        describe=describe(jk, ns),
    )
    canary.set_traffic(rate=CANARY_RATE, error_share=canary_errors)
    return Delivery(stable_hash, canary_hash, st["stableRevision"], stable, canary, time.time())


def sample_canary_pods(
    jk: JsonKube, ns: str, canary_hash: str
) -> tuple[list[tuple[float, int, int, int]], threading.Event]:
    """(time, canary pods, Ready canary pods, restarts) every 0.2 s until the event is set."""
    samples: list[tuple[float, int, int, int]] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                pods = pods_of_hash(jk, ns, canary_hash)
                samples.append((time.time(), len(pods), sum(is_ready(p) for p in pods), sum(restarts(p) for p in pods)))
            except Exception:  # a transient API error is not a sample
                pass
            stop.wait(0.2)

    threading.Thread(target=run, daemon=True).start()
    return samples, stop


def report(label: str, verdict: dict[str, Any], d: Delivery) -> None:
    print(f"[{label}] verdict {verdict['outcome']}: {verdict['summary']}")
    print(f"[{label}] details {json.dumps(verdict.get('details'))}")
    print(f"[{label}] apps: stable {d.stable.stats()}, canary {d.canary.stats()}")


# ---------------------------------------------------------------- tests
def test_healthy_canary_is_promoted_by_metric_analysis(
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    prometheus: Prometheus,
    apps: list[VersionedApp],
    analysed_controller: ControllerProcess,
    run_dir: Path,
) -> None:
    t0 = time.monotonic()
    d = deliver_v2(kube, jk, namespace, prometheus, apps, run_dir, canary_errors=BASE_ERRORS)

    wait_for(
        lambda: phase(jk, namespace) in ("Succeeded", "RolledBack", "Paused"),
        90,
        "a decision",
        describe=describe(jk, namespace),
    )
    verdicts = step_verdicts(jk, namespace)
    assert verdicts, describe(jk, namespace)()
    v = verdicts[-1]
    report("healthy", v, d)
    assert phase(jk, namespace) == "Succeeded", describe(jk, namespace)()
    assert v["outcome"] == "pass"
    errors, latency = check(v, "error-rate"), check(v, "latency")
    assert errors["outcome"] == "pass" and latency["outcome"] == "pass", v
    n_canary, n_baseline = errors["n"]
    assert n_canary >= MIN_SAMPLES and n_baseline >= MIN_SAMPLES, errors
    canary_pct, baseline_pct = error_rates(errors)
    assert abs(canary_pct - 1.0) < 0.2 and abs(baseline_pct - 1.0) < 0.2, errors
    # Prometheus' counts are the processes' own (increase() may extrapolate a little)
    assert n_canary <= d.canary.stats()["total"] * 1.1

    # promoted: the Deployment now runs the canary's ReplicaSet, all N pods Ready
    wait_for(
        lambda: ready_by_hash(jk, namespace) == {d.canary_hash: N},
        60,
        "only v2 pods, all Ready",
        describe=describe(jk, namespace),
    )
    rs = stable_rs(jk, namespace)
    assert rs is not None and rs["spec"]["template"]["metadata"]["labels"][templates.HASH_LABEL] == d.canary_hash
    assert image(jk, namespace) == "example.com/web:v2"
    assert state(jk, namespace)["stableHash"] == d.canary_hash
    wait_for(
        lambda: events(jk, namespace, "AnalysisPassed") and events(jk, namespace, "DeliverySucceeded"),
        15,
        "AnalysisPassed and DeliverySucceeded events",
    )
    print(f"[healthy] promoted {time.monotonic() - t0:.1f}s after the Deployment was created")


def test_erroring_canary_with_ready_pods_is_rolled_back_by_metrics(
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    prometheus: Prometheus,
    apps: list[VersionedApp],
    analysed_controller: ControllerProcess,
    run_dir: Path,
    cluster: Any,
) -> None:
    t0 = time.monotonic()
    d = deliver_v2(kube, jk, namespace, prometheus, apps, run_dir, canary_errors=BAD_ERRORS)
    samples, stop = sample_canary_pods(jk, namespace, d.canary_hash)
    try:
        wait_for(
            lambda: phase(jk, namespace) in ("Succeeded", "RolledBack", "Paused"),
            90,
            "a decision",
            describe=describe(jk, namespace),
        )
    finally:
        stop.set()
    verdicts = step_verdicts(jk, namespace)
    assert verdicts, describe(jk, namespace)()
    v = verdicts[-1]
    report("erroring", v, d)
    st = state(jk, namespace)
    assert st["phase"] == "RolledBack", describe(jk, namespace)()

    # the recorded verdict: fail, with its numbers
    assert v["outcome"] == "fail"
    errors = check(v, "error-rate")
    assert errors["outcome"] == "fail", errors
    assert errors["e"] >= 40, errors  # e-value >= 1 / (0.05 / 2 checks)
    assert errors["p"] <= 0.025, errors
    assert errors["effect"] > 4, errors  # ~ +900%: 10% vs 1%
    canary_pct, baseline_pct = error_rates(errors)
    assert abs(canary_pct - 10.0) < 1.0 and abs(baseline_pct - 1.0) < 0.2, errors
    assert all(n > 0 for n in errors["n"]), errors
    assert check(v, "latency")["outcome"] != "fail", v  # same latency: the errors decided it
    assert "analysis failed" in st["message"], st["message"]
    assert st["failedRevision"] == d.canary_hash

    # the canary's pods were Ready (no restarts) from the moment they came up until the verdict:
    # health gating alone would have passed this step
    before = [s for s in samples if s[0] <= v["at"]]
    assert len(before) >= 20, samples[:5]
    assert all(n == CANARY_PODS and ready == CANARY_PODS and r == 0 for _, n, ready, r in before), before
    print(
        f"[erroring] canary pods {CANARY_PODS}/{CANARY_PODS} Ready in all {len(before)} samples over "
        f"{before[-1][0] - before[0][0]:.1f}s before the verdict"
    )

    # rolled back: the template is the stable one again, deliver's ReplicaSet is gone
    # (the record is written before the undo actions run, so the template follows a moment later)
    wait_for(
        lambda: image(jk, namespace) == "example.com/web:v1",
        30,
        "template back to v1",
        describe=describe(jk, namespace),
    )
    assert templates.revision(deployment(jk, namespace)["spec"]["template"]) == d.stable_revision
    rs = stable_rs(jk, namespace)
    assert rs is not None and rs["spec"]["template"]["metadata"]["labels"][templates.HASH_LABEL] == d.stable_hash
    wait_for(lambda: not deliver_replicasets(jk, namespace), 30, "deliver's ReplicaSet deleted")
    wait_for(
        lambda: ready_by_hash(jk, namespace) == {d.stable_hash: N},
        60,
        "only stable pods, all Ready",
        describe=describe(jk, namespace),
    )
    wait_for(
        lambda: events(jk, namespace, "AnalysisFailed") and events(jk, namespace, "DeliveryRolledBack"),
        15,
        "AnalysisFailed and DeliveryRolledBack events",
    )
    assert not events(jk, namespace, "Promoting")

    # and `deliver status` shows the verdict with its numbers
    out = deliver_status(cluster, namespace)
    assert "error-rate" in out and "fail" in out, out
    print(f"[erroring] rolled back {time.monotonic() - t0:.1f}s after the Deployment was created")
    print(f"[erroring] deliver status:\n{out}")


def test_prometheus_down_mid_analysis_is_inconclusive_and_never_promotes(
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    prometheus: Prometheus,
    apps: list[VersionedApp],
    analysed_controller: ControllerProcess,
    run_dir: Path,
) -> None:
    t0 = time.monotonic()
    d = deliver_v2(kube, jk, namespace, prometheus, apps, run_dir, canary_errors=BASE_ERRORS)
    step_started = float(state(jk, namespace)["stepStarted"])
    # half-way through the analysed step, with the canary serving, Prometheus goes away
    wait_for(lambda: time.time() >= step_started + INTERVAL / 2, INTERVAL, "half the step")
    assert phase(jk, namespace) == "Progressing" and not step_verdicts(jk, namespace), describe(jk, namespace)()
    prometheus.stop()
    stopped_at = time.time()

    wait_for(
        lambda: phase(jk, namespace) in ("Succeeded", "RolledBack", "Paused", "Promoting"),
        90,
        "a decision",
        describe=describe(jk, namespace),
    )
    verdicts = step_verdicts(jk, namespace)
    assert verdicts, describe(jk, namespace)()
    v = verdicts[-1]
    report("prometheus-down", v, d)
    assert phase(jk, namespace) == "Paused", describe(jk, namespace)()
    assert v["outcome"] == "inconclusive" and v["at"] > stopped_at
    for name in ("error-rate", "latency"):
        chk = check(v, name)
        assert chk["outcome"] == "inconclusive", chk
        assert re.search(r"unreachable|connect|refused|unavailable", chk["msg"], re.I), chk
    assert "inconclusive" in state(jk, namespace)["message"]
    wait_for(lambda: events(jk, namespace, "AnalysisInconclusive"), 15, "an AnalysisInconclusive event")

    # never promoted: it holds at the step (canary beside the full stable version, template v2)
    def held() -> bool:
        st = state(jk, namespace)
        rs = stable_rs(jk, namespace)
        return (
            st["phase"] == "Paused"
            and rs is not None
            and rs["spec"]["template"]["metadata"]["labels"][templates.HASH_LABEL] == d.stable_hash
            and [r["spec"]["replicas"] for r in deliver_replicasets(jk, namespace)] == [CANARY_PODS]
            and ready_by_hash(jk, namespace) == {d.stable_hash: N, d.canary_hash: CANARY_PODS}
            and image(jk, namespace) == "example.com/web:v2"
        )

    stays(held, 10, "the delivery paused at step 1, not promoted")
    assert not events(jk, namespace, "Promoting") and not events(jk, namespace, "DeliverySucceeded")
    print(f"[prometheus-down] paused {time.monotonic() - t0:.1f}s after the Deployment was created")


# ---------------------------------------------------------------- a hung Prometheus (issue 10, defect 3)
class HungServer:
    """A real local TCP server that accepts connections and never answers: a Prometheus that hangs
    (each query then takes deliver's full timeout, 10 s, three attempts)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[Any] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, name="hung-prometheus", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HungServer:
        self.thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            self.held.append(conn)  # read nothing, answer nothing, keep it open

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


CRASHING_CANARY = {
    "deliver.dev/strategy": "canary",
    "deliver.dev/steps": "50,100",
    "deliver.dev/canary-scale": "surge",  # the rates below assume all N stable pods beside the canary
    "deliver.dev/interval": "5s",
    "deliver.dev/progress-deadline": "60s",
}


def test_hung_prometheus_delays_no_crash_loop_rollback_in_another_namespace(
    cluster: Any, kube: Kube, jk: JsonKube, namespace: str, run_dir: Path
) -> None:
    """A canary analysing against a Prometheus that never answers (namespace A) must not delay the
    health rollback of a crash-looping canary in namespace B: B's rollback with A's analysis hanging
    takes about as long as B's rollback before anything was analysing."""
    from kubernetes import client

    from e2e.helpers import CRASHLOOP

    other = f"{namespace[:50]}-b"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    wait_for(lambda: kube.core.read_namespaced_service_account("default", other), 30, "ServiceAccount in B")
    hung = HungServer().start()
    ctl = ControllerProcess(cluster.kubeconfig, None, run_dir, prometheus_url=hung.url)
    ctl.start()
    try:
        annotations = dict(ANNOTATIONS, **{"deliver.dev/interval": "3s", "deliver.dev/progress-deadline": "600s"})
        kube.apps.create_namespaced_deployment(
            namespace, make_deployment(NAME, replicas=N, image="example.com/web:v1", annotations=annotations)
        )
        kube.apps.create_namespaced_deployment(
            other, make_deployment(NAME, replicas=N, image="example.com/web:v1", annotations=CRASHING_CANARY)
        )
        for ns in (namespace, other):
            wait_for(
                lambda ns=ns: (
                    state(jk, ns).get("stableHash") and ready_by_hash(jk, ns).get(state(jk, ns)["stableHash"]) == N
                ),
                90,
                f"v1 held by deliver in {ns}",
                describe=describe(jk, ns),
            )

        def rolled_back_after(version: str) -> float:
            started = time.monotonic()
            set_image(kube.apps, other, NAME, f"example.com/web:{version}", behaviour=CRASHLOOP)
            wait_for(
                lambda: phase(jk, other) == "RolledBack" and image(jk, other) == "example.com/web:v1",
                240,
                f"B's crash-looping {version} rolled back",
                describe=describe(jk, other),
            )
            return time.monotonic() - started

        baseline = rolled_back_after("v2")  # nothing analysing: as with a healthy Prometheus

        # A's canary comes up healthy and its analysis starts, against the Prometheus that hangs.
        set_image(kube.apps, namespace, NAME, "example.com/web:v2")
        wait_for(lambda: hung.accepted > 0, 90, "A's analysis querying Prometheus", describe=describe(jk, namespace))
        analysing_since = time.monotonic()

        with_hung = rolled_back_after("v3")
        print(f"[hung-prometheus] B rolled back in {baseline:.1f}s before, {with_hung:.1f}s with A's analysis hanging")
        assert with_hung <= max(2 * baseline, baseline + 15), (baseline, with_hung)
        # A's analysis is still hanging (no verdict yet): the two really overlapped.
        assert phase(jk, namespace) == "Progressing" and not step_verdicts(jk, namespace), describe(jk, namespace)()
        assert time.monotonic() - analysing_since < 60
    finally:
        ctl.stop()
        print("---- controller log (tail) ----")
        print(ctl.log()[-6000:])
        hung.stop()
        kube.core.delete_namespace(other)
