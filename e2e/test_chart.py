"""The Helm chart installed into the real local control plane, and the controller run as its ServiceAccount.

kwok runs no containers, so the chart's Deployment is installed with 0 replicas; the controller
runs here as a local process with a token for the chart's ServiceAccount (TokenRequest API), i.e.
with exactly the rights the chart grants. It completes a canary; with a verb taken out of the Role,
the action that needs it fails with a clear Forbidden error until the verb is back. `helm test`
runs the chart's test Pod (e2e/podrunner.py plays its kubelet): it fails while nobody leads and
passes once the controller, with the name of the chart's pod, holds the Lease.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from delivery.kube.client import KubeClient as JsonKube
from e2e.binaries import helm_path
from e2e.cluster import BEHAVIOUR_LABEL, REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, canary, deliver, pods_of, set_image, state, wait_for, wait_phase, wait_stable
from e2e.podrunner import RUN_HERE, PodRunner

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "deliver"


def helm(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return subprocess.run([str(helm_path()), *args], capture_output=True, text=True, env=env, timeout=180)


def token_kubeconfig(admin: Path, token: str, namespace: str, path: Path) -> Path:
    """A kubeconfig for the same API server that authenticates with a ServiceAccount token only."""
    cfg = yaml.safe_load(admin.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"])
        if not ca.is_absolute():
            ca = admin.parent / ca
        cluster = {
            "server": cluster["server"],
            "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
        }
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": cluster}],
                "users": [{"name": "deliver-sa", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "deliver-sa",
                        "context": {"cluster": "local", "user": "deliver-sa", "namespace": namespace},
                    }
                ],
                "current-context": "deliver-sa",
            }
        )
    )
    return path


def test_chart_installs_and_the_controller_works_under_its_rbac(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    if not helm_path().exists():
        pytest.fail(f"helm is not built: {helm_path()} (python -m e2e.binaries)")

    # helm install: namespaced mode, the controller Deployment at 0 replicas (no image runs on kwok)
    r = helm(
        cluster.kubeconfig,
        tmp_path / "helm",
        "install",
        "rel",
        str(CHART),
        "-n",
        ns,
        "--set",
        "replicaCount=0",
        "--set",
        "watch.scope=namespaced",
        # the hold policy is cluster-wide: installed here it would hold every other test's Deployments
        # (e2e/test_hold_policy.py installs the same objects for its own module)
        "--set",
        "holdPolicy.install=false",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "STATUS: deployed" in r.stdout
    assert kube.core.read_namespaced_service_account("rel-deliver", ns)
    assert kube.rbac.read_namespaced_role("rel-deliver", ns)
    assert kube.rbac.read_namespaced_role("rel-deliver-leader-election", ns)
    assert kube.rbac.read_namespaced_role_binding("rel-deliver", ns)
    assert kube.core.read_namespaced_service("rel-deliver-metrics", ns).spec.ports[0].port == 8080
    dep = kube.apps.read_namespaced_deployment("rel-deliver", ns)
    assert dep.spec.replicas == 0
    assert dep.spec.template.spec.containers[0].security_context.read_only_root_filesystem is True

    # a token for the chart's ServiceAccount (TokenRequest API)
    tr = kube.core.create_namespaced_service_account_token(
        "rel-deliver",
        ns,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
    )
    sa_config = token_kubeconfig(Path(cluster.kubeconfig), tr.status.token, ns, tmp_path / "sa-kubeconfig")

    # that identity has what the chart grants and nothing else
    from delivery.errors import Forbidden
    from delivery.kube.client import DEPLOYMENTS, Resource
    from delivery.kube.client import KubeClient as DeliverKube

    sa = DeliverKube.connect(str(sa_config))
    sa.items(DEPLOYMENTS, ns)
    with pytest.raises(Forbidden):
        sa.items(Resource("", "v1", "secrets"), ns)
    with pytest.raises(Forbidden):
        sa.items(DEPLOYMENTS, "default")  # namespaced mode: no rights outside its namespace

    # --hold-mode paused: as the chart runs it namespaced (it may not read the cluster-wide policy)
    with ControllerProcess(
        sa_config, ns, log_dir=tmp_path, extra_args=["--leader-elect", "--hold-mode", "paused"]
    ) as ctl:
        # a canary completes under the chart's RBAC
        kube.apps.create_namespaced_deployment(ns, canary("web", "34,67,100"))
        wait_stable(kube, ns, "web", ctl)
        set_image(kube.apps, ns, "web", "example.com/web:v2")
        r = deliver(cluster.kubeconfig, "-n", ns, "gate", "web", "--timeout", "90s")
        assert r.returncode == 0, r.stderr + ctl.log()[-3000:]
        wait_for(
            lambda: {p.spec.containers[0].image for p in pods_of(kube, ns, "web")} == {"example.com/web:v2"},
            60,
            "only v2 pods",
        )
        assert "forbidden" not in ctl.log().lower(), ctl.log()[-3000:]
        assert "became leader" in ctl.log()

        # take "create" on replicasets out of the Role: creating the canary's ReplicaSet fails, clearly
        role = kube.rbac.read_namespaced_role("rel-deliver", ns)
        full = kube.api_client.sanitize_for_serialization(role.rules)
        cut = [
            dict(rule, verbs=[v for v in rule["verbs"] if v != "create"])
            if "replicasets" in rule["resources"]
            else rule
            for rule in full
        ]
        kube.rbac.patch_namespaced_role("rel-deliver", ns, {"rules": cut})
        set_image(kube.apps, ns, "web", "example.com/web:v3")
        expected = (
            f'replicasets.apps is forbidden: User \\"system:serviceaccount:{ns}:rel-deliver\\" '
            f'cannot create resource \\"replicasets\\"'
        )
        wait_for(
            lambda: expected in ctl.log(),
            60,
            "the Forbidden error in the controller log",
            describe=lambda: ctl.log()[-3000:],
        )
        failing = [line for line in ctl.log().splitlines() if expected in line]
        assert '"action": "ScaleNew"' in failing[0] and '"msg": "action failed"' in failing[0]
        s = state(kube, ns, "web")
        assert s["phase"] == "Progressing" and s["step"] == 0  # stuck safely at the first step
        assert {p.spec.containers[0].image for p in pods_of(kube, ns, "web")} == {"example.com/web:v2"}
        assert not [
            rs
            for rs in kube.apps.list_namespaced_replica_set(ns).items
            if rs.spec.template.spec.containers[0].image == "example.com/web:v3"
        ]

        # put the verb back: the controller's retries go through and the delivery completes
        kube.rbac.patch_namespaced_role("rel-deliver", ns, {"rules": full})
        wait_phase(kube, ns, "web", "Succeeded", timeout=90, ctl=ctl)

    r = helm(cluster.kubeconfig, tmp_path / "helm", "uninstall", "rel", "-n", ns)
    assert r.returncode == 0, r.stderr


def test_cluster_scope_chart_watches_every_namespace(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """watch.scope=cluster: a ClusterRole; `deliver run --all-namespaces` delivers in two namespaces."""
    ns, other = namespace, f"{namespace}-b"[:63]
    release = f"cl-{ns[-5:]}"  # ClusterRole names are cluster-wide: one per test run
    kube.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other, labels={"e2e.deliver.dev/test": "true"}))
    )
    home = tmp_path / "helm"
    try:
        r = helm(cluster.kubeconfig, home, "install", release, str(CHART), "-n", ns, "--set", "replicaCount=0",
                 "--set", "holdPolicy.install=false")  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        name = f"{release}-deliver"
        assert kube.rbac.read_cluster_role(name) and kube.rbac.read_cluster_role_binding(name)
        tr = kube.core.create_namespaced_service_account_token(
            name,
            ns,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
        )
        sa_config = token_kubeconfig(Path(cluster.kubeconfig), tr.status.token, ns, tmp_path / "sa-kubeconfig")
        for n in (ns, other):
            kube.apps.create_namespaced_deployment(n, canary("web", "50,100"))
        with ControllerProcess(
            sa_config, None, log_dir=tmp_path, extra_args=["--leader-elect", "--lease-namespace", ns]
        ) as ctl:
            assert "--all-namespaces" in ctl.argv()
            for n in (ns, other):
                wait_stable(kube, n, "web", ctl)
                set_image(kube.apps, n, "web", "example.com/web:v2")
            for n in (ns, other):
                wait_phase(kube, n, "web", "Succeeded", ctl=ctl)
            assert "forbidden" not in ctl.log().lower(), ctl.log()[-3000:]
    finally:
        helm(cluster.kubeconfig, home, "uninstall", release, "-n", ns)
        try:
            kube.core.delete_namespace(other)
        except client.ApiException:
            pass


def test_helm_test_passes_once_a_pod_of_the_release_leads(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, tmp_path: Path
) -> None:
    """`helm test` runs `deliver check-install` as the chart's ServiceAccount.

    kwok plays the chart's one controller pod (Running, no container); the controller runs here with
    that pod's name (POD_NAME, as the downward API gives it) and a token of the ServiceAccount, so
    the Lease's holder is that pod, as in a cluster."""
    ns, home = namespace, tmp_path / "helm"
    run_here = "tests.podLabels." + BEHAVIOUR_LABEL.replace(".", "\\.") + "=" + RUN_HERE
    r = helm(cluster.kubeconfig, home, "install", "rel", str(CHART), "-n", ns, "--set", "replicaCount=1",
             "--set", "watch.scope=namespaced", "--set", "holdPolicy.install=false", "--set", run_here)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        selector = "app.kubernetes.io/instance=rel,app.kubernetes.io/component=controller"
        pod_name = wait_for(
            lambda: next(
                (p.metadata.name for p in kube.core.list_namespaced_pod(ns, label_selector=selector).items
                 if p.status.phase == "Running"),
                None,
            ),
            60,
            "the chart's controller pod Running on kwok",
        )  # fmt: skip

        # nobody leads yet: the test fails and says why
        with PodRunner(jk, Path(cluster.kubeconfig), ns) as runner:
            r = helm(cluster.kubeconfig, home, "test", "rel", "-n", ns, "--timeout", "120s")
            assert r.returncode != 0, r.stdout + r.stderr
            [out] = runner.outputs.values()
            assert f"FAIL leader: no Lease {ns}/deliver-controller" in out, out
            assert f"ok   deployments: may list Deployments in namespace {ns}" in out, out

        tr = kube.core.create_namespaced_service_account_token(
            "rel-deliver",
            ns,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
        )
        sa_config = token_kubeconfig(Path(cluster.kubeconfig), tr.status.token, ns, tmp_path / "sa-kubeconfig")
        with ControllerProcess(
            sa_config, ns, log_dir=tmp_path, extra_args=["--leader-elect", "--hold-mode", "paused"],
            env={"POD_NAME": pod_name},
        ) as ctl:  # fmt: skip
            wait_for(lambda: "became leader" in ctl.log(), 60, "leading", describe=lambda: ctl.log()[-3000:])
            with PodRunner(jk, Path(cluster.kubeconfig), ns) as runner:
                r = helm(cluster.kubeconfig, home, "test", "rel", "-n", ns, "--timeout", "120s")
                assert r.returncode == 0, r.stdout + r.stderr + str(runner.outputs)
                [out] = runner.outputs.values()
                assert f"ok   leader: Lease {ns}/deliver-controller is held and renewed by {pod_name}_" in out, out
                assert "ok   deployments" in out, out
    finally:
        helm(cluster.kubeconfig, home, "uninstall", "rel", "-n", ns)
