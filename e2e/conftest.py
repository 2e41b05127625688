"""pytest fixtures for e2e tests (run with ``pytest e2e``).

Fixtures:
    cluster     (session)  RunningCluster: the local control plane, started once per session
                           (or the one DELIVER_E2E_KUBECONFIG points at, which is left running).
                           Also sets $KUBECONFIG for subprocesses (e.g. the ``deliver`` CLI).
    kube        (session)  e2e.helpers.Kube: .core / .apps / .custom / .rbac ... API objects.
    jk          (session)  delivery.kube.client.Kube: deliver's own JSON client on the same cluster.
    namespace   (function) a fresh namespace name (with its default ServiceAccount), deleted after.
    prometheus  (function) a started e2e.services.Prometheus (1s scrape, file_sd targets).
    envoy       (function) an e2e.services.Envoy, NOT started: call envoy.start(bootstrap).
    run_dir     (function) a per-test directory for services/logs.
    controller  (function) the real controller (e2e.controller.ControllerProcess) watching
                           ``namespace``; its log tail is printed after the test.
    analysed_controller (function) the same, with ``--prometheus-url`` of the ``prometheus`` fixture.
    json_kube   (function) ``jk`` with the HTTPRoute CRD installed.
    stack       (function) a started e2e.dataplane.LocalStack for the demo's app ``shop`` behind its
                           HTTPRoute: Envoy, the app processes, scraped by ``prometheus``.
    kubectl     (session, autouse) the kubectl built from the cluster's Kubernetes release
                           (e2e/binaries.py); its directory goes first on $PATH for the session, so
                           a test or subprocess running ``kubectl`` runs that one, not the machine's.

Builders, readers and waits for the tests are in e2e/helpers.py (the one helper layer).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from delivery.kube.client import KubeClient as JsonKube
from delivery.routing.gateway import HTTPROUTES
from e2e import crds
from e2e.binaries import kubectl_path
from e2e.cluster import REPO_ROOT, Cluster, api_client, reap_stale
from e2e.controller import ControllerProcess
from e2e.dataplane import LocalStack
from e2e.demo import demo_route
from e2e.helpers import Kube, fresh_namespace
from e2e.services import Envoy, Prometheus


@dataclass
class RunningCluster:
    kubeconfig: Path
    cluster: Cluster | None  # None when reusing an external one (DELIVER_E2E_KUBECONFIG)

    @property
    def run_dir(self) -> Path | None:
        return self.cluster.run_dir if self.cluster else None


@pytest.fixture(scope="session", autouse=True)
def kubectl() -> Iterator[Path]:
    """The built kubectl, its directory first on $PATH (when it is built: a test that needs it
    checks ``kubectl.exists()`` and says how to build it)."""
    path = kubectl_path()
    old_path = os.environ.get("PATH", "")
    if path.exists():
        os.environ["PATH"] = f"{path.parent}{os.pathsep}{old_path}"
    try:
        yield path
    finally:
        os.environ["PATH"] = old_path


@pytest.fixture(scope="session")
def cluster() -> Iterator[RunningCluster]:
    external = os.environ.get("DELIVER_E2E_KUBECONFIG")
    old_env = os.environ.get("KUBECONFIG")
    if external:
        os.environ["KUBECONFIG"] = external
        yield RunningCluster(kubeconfig=Path(external), cluster=None)
    else:
        base = REPO_ROOT / "run"
        reap_stale(base)
        c = Cluster(base / f"e2e-{os.getpid()}")
        c.up()
        os.environ["KUBECONFIG"] = str(c.kubeconfig)
        try:
            yield RunningCluster(kubeconfig=c.kubeconfig, cluster=c)
        finally:
            c.down()
    if old_env is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old_env


@pytest.fixture(scope="session")
def kube(cluster: RunningCluster) -> Iterator[Kube]:
    api = api_client(cluster.kubeconfig)
    try:
        yield Kube(api_client=api, kubeconfig=cluster.kubeconfig)
    finally:
        api.close()


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{base}-{uuid.uuid4().hex[:5]}"
    with fresh_namespace(kube, name, keep=bool(os.environ.get("DELIVER_E2E_KEEP_NAMESPACES"))):
        yield name


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def prometheus(run_dir: Path) -> Iterator[Prometheus]:
    prom = Prometheus(run_dir).start()
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture
def envoy(run_dir: Path) -> Iterator[Envoy]:
    proxy = Envoy(run_dir)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def jk(cluster: RunningCluster) -> JsonKube:
    return JsonKube.connect(str(cluster.kubeconfig))


def _controller(ctl: ControllerProcess, tail: int) -> Iterator[ControllerProcess]:
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()
        print("---- controller log (tail) ----")
        print(ctl.log()[-tail:])


@pytest.fixture
def controller(cluster: RunningCluster, namespace: str, run_dir: Path) -> Iterator[ControllerProcess]:
    yield from _controller(ControllerProcess(cluster.kubeconfig, namespace, run_dir), 4000)


@pytest.fixture
def analysed_controller(
    cluster: RunningCluster, namespace: str, run_dir: Path, prometheus: Prometheus
) -> Iterator[ControllerProcess]:
    yield from _controller(
        ControllerProcess(cluster.kubeconfig, namespace, run_dir, prometheus_url=prometheus.url), 6000
    )


@pytest.fixture
def json_kube(cluster: RunningCluster, kube: Kube) -> JsonKube:
    crds.install(kube.api_client, ["httproute"])
    return JsonKube.connect(str(cluster.kubeconfig))


@pytest.fixture
def stack(json_kube: JsonKube, namespace: str, tmp_path: Path, prometheus: Prometheus) -> Iterator[LocalStack]:
    app = "shop"
    json_kube.create(HTTPROUTES, namespace, demo_route(app))
    s = LocalStack(json_kube, namespace, app, tmp_path, f"{app}-stable", f"{app}-canary", prometheus).start()
    yield s
    s.stop()
