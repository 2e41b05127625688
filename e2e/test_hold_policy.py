"""The policy hold mode on the real control plane (issue 23, docs/hold-modes.md).

deliver's MutatingAdmissionPolicy runs in the real kube-apiserver (v1.37, admissionregistration.k8s.io/v1)
for this module only (``hold_policy``: installed at its start, removed at its end; the other modules run
without it, in the ``paused`` mode, on the same cluster). The tools users run next to deliver read
the live Deployments as they run: ``kubectl rollout status`` (the kubectl built from the same
Kubernetes release), kstatus (sigs.k8s.io/cli-utils, the library Flux and Helm 4 use, e2e/kstatus.py)
and the Helm 4 CLI (built from helm.sh/helm/v4). docs/gitops.md has the table these tests assert.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from delivery import templates
from delivery.kube.client import DEPLOYMENTS
from delivery.kube.client import KubeClient as JsonKube
from e2e.binaries import helm_path
from e2e.cluster import BEHAVIOUR_LABEL
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import (
    CRASHLOOP,
    Kube,
    deployment,
    event_messages,
    images,
    install_hold_policy,
    make_deployment,
    ready_by_hash,
    replica_sets,
    sampler,
    set_image,
    state,
    stays,
    uninstall_hold_policy,
    wait_for,
)
from e2e.kstatus import kstatus
from e2e.podrunner import RUN_HERE, PodRunner

pytestmark = pytest.mark.e2e

STRATEGIES: dict[str, dict[str, str]] = {
    "canary": {"deliver.dev/strategy": "canary", "deliver.dev/steps": "50,100", "deliver.dev/interval": "2s"},
    "blue-green": {"deliver.dev/strategy": "blue-green", "deliver.dev/interval": "2s", "deliver.dev/keep-warm": "2s"},
    "rolling": {"deliver.dev/strategy": "rolling", "deliver.dev/pause-at": "50", "deliver.dev/interval": "2s"},
    "recreate": {"deliver.dev/strategy": "recreate", "deliver.dev/interval": "2s"},
}
ROLLBACK = {"deliver.dev/progress-deadline": "20s"}


@pytest.fixture(scope="module")
def hold_policy(cluster: RunningCluster) -> Iterator[None]:
    jk = JsonKube.connect(str(cluster.kubeconfig))
    uninstall_hold_policy(jk)  # left by a session that was killed
    install_hold_policy(jk)
    time.sleep(2)  # the API server's policy informer picks them up
    try:
        yield
    finally:
        uninstall_hold_policy(jk)


def kubectl(cluster: RunningCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=timeout)


def rollout_status(cluster: RunningCluster, ns: str, name: str = "web", timeout: str = "60s") -> tuple[int, str, float]:
    start = time.monotonic()
    r = kubectl(cluster, "rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={timeout}", timeout=120)
    return r.returncode, (r.stdout + r.stderr).strip(), time.monotonic() - start


def kstatus_of(jk: JsonKube, ns: str, name: str = "web") -> str:
    return kstatus({"d": deployment(jk, ns, name)})["d"][0]


def create(kube: Kube, ns: str, annotations: dict[str, str], name: str = "web", replicas: int = 2) -> None:
    body = make_deployment(name, replicas=replicas, image="example.com/web:v1", annotations=annotations)
    if annotations.get("deliver.dev/strategy") == "recreate":
        body.spec.strategy = client.V1DeploymentStrategy(type="Recreate")
    kube.apps.create_namespaced_deployment(ns, body)


def at_rest(jk: JsonKube, ns: str, name: str = "web", timeout: float = 90) -> dict[str, Any]:
    """Idle/Succeeded, unpaused, every replica updated and available, the status current."""

    def rested() -> dict[str, Any] | None:
        d = deployment(jk, ns, name)
        s = state(jk, ns, name)
        st = d.get("status") or {}
        want = int(d["spec"].get("replicas") or 1)
        ok = (
            s.get("phase") in ("Idle", "Succeeded", "RolledBack")
            and not d["spec"].get("paused")
            and int(st.get("observedGeneration") or 0) >= int(d["metadata"]["generation"])
            and st.get("updatedReplicas") == st.get("availableReplicas") == want
        )
        return d if ok else None

    return wait_for(rested, timeout, f"{name} at rest, unpaused", describe=lambda: state(jk, ns, name))


def owned_replicasets(kube: Kube, ns: str, name: str = "web") -> set[str]:
    return {rs.metadata.name for rs in replica_sets(kube.apps, ns, name) if rs.metadata.owner_references}


# ---------------------------------------------------------------- the policy itself


def test_the_policy_holds_every_kind_of_template_write(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, hold_policy: None, tmp_path: Path
) -> None:
    """No controller runs: only the API server's policy and the Deployment controller. Each way a
    user changes a template is stored paused in the same write, and no ReplicaSet of it appears."""
    ns = namespace
    create(kube, ns, STRATEGIES["canary"])
    kube.apps.create_namespaced_deployment(ns, make_deployment("plain", replicas=1))
    at_rest_plain = wait_for(
        lambda: (deployment(jk, ns, "web").get("status") or {}).get("availableReplicas") == 2, 60, "web available"
    )
    assert at_rest_plain

    manifest = tmp_path / "web.yaml"

    def apply_manifest(image: str, server_side: bool) -> subprocess.CompletedProcess[str]:
        body = client.ApiClient().sanitize_for_serialization(
            make_deployment("web", replicas=2, image=image, annotations=STRATEGIES["canary"])
        )
        manifest.write_text(yaml.safe_dump(body))
        extra = ["--server-side", "--force-conflicts"] if server_side else []
        return kubectl(cluster, "apply", "-n", ns, "-f", str(manifest), *extra)

    writes = {
        "kubectl set image": lambda: kubectl(
            cluster, "set", "image", "deployment/web", "app=example.com/web:v2", "-n", ns
        ),
        "kubectl rollout restart": lambda: kubectl(cluster, "rollout", "restart", "deployment/web", "-n", ns),
        "kubectl apply": lambda: apply_manifest("example.com/web:v3", server_side=False),
        "server-side apply": lambda: apply_manifest("example.com/web:v4", server_side=True),
    }
    for how, write in writes.items():
        before = owned_replicasets(kube, ns)
        target_before = templates.revision(deployment(jk, ns)["spec"]["template"])
        r = write()
        assert r.returncode == 0, (how, r.stderr)
        d = deployment(jk, ns)
        assert templates.revision(d["spec"]["template"]) != target_before, how
        assert d["spec"].get("paused") is True, f"{how}: stored paused in the same write"
        stays(lambda b=before: owned_replicasets(kube, ns) == b, 2, f"{how}: no ReplicaSet of the held template")
        # release it by hand (what deliver does once it decided), so the next write starts at rest
        assert kubectl(cluster, "rollout", "resume", "deployment/web", "-n", ns).returncode == 0
        wait_for(
            lambda: (
                (deployment(jk, ns).get("status") or {}).get("updatedReplicas") == 2
                and (deployment(jk, ns).get("status") or {}).get("availableReplicas") == 2
            ),
            60,
            f"{how}: rolled out once resumed",
        )

    # not held: a scale, and any write to a Deployment deliver does not manage
    assert kubectl(cluster, "scale", "deployment/web", "--replicas=3", "-n", ns).returncode == 0
    assert not deployment(jk, ns)["spec"].get("paused")
    assert kubectl(cluster, "set", "image", "deployment/plain", "app=example.com/app:v2", "-n", ns).returncode == 0
    assert not deployment(jk, ns, "plain")["spec"].get("paused")


# ---------------------------------------------------------------- every strategy, and what tools read


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_policy_mode_delivers_every_strategy_and_tools_read_it_as_plain(
    cluster: RunningCluster,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    hold_policy: None,
    controller: ControllerProcess,
    strategy: str,
) -> None:
    ns = namespace
    create(kube, ns, STRATEGIES[strategy])
    rest = at_rest(jk, ns)
    assert '"mode": "policy"' in controller.log() or '"mode":"policy"' in controller.log().replace(" ", "")
    assert kstatus_of(jk, ns) == "Current"
    code, out, _ = rollout_status(cluster, ns)
    assert code == 0 and "successfully rolled out" in out, out
    assert not rest["spec"].get("paused")

    written = kube.apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.com/web:v2"}]}}}}
    )
    assert written.spec.paused is True, "held by the API server in the write itself"
    # mid-delivery: every tool says it is not rolled out yet
    assert kstatus_of(jk, ns) == "InProgress"
    wait_for(
        lambda: state(jk, ns).get("phase") == "Succeeded", 120, f"{strategy} delivered", describe=lambda: state(jk, ns)
    )
    at_rest(jk, ns)
    code, out, _ = rollout_status(cluster, ns)
    assert code == 0, out
    assert kstatus_of(jk, ns) == "Current"
    assert images(kube, ns, "web") == {"example.com/web:v2"}


def test_a_rolled_back_change_reads_as_failed_and_the_stable_template_written_back_is_at_rest(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, hold_policy: None, controller: ControllerProcess
) -> None:
    ns = namespace
    create(kube, ns, {**STRATEGIES["canary"], **ROLLBACK})
    at_rest(jk, ns)
    stable = deployment(jk, ns)["spec"]["template"]

    set_image(kube.apps, ns, "web", "example.com/web:v2", behaviour=CRASHLOOP)
    wait_for(lambda: state(jk, ns).get("phase") == "RolledBack", 120, "rolled back", describe=lambda: state(jk, ns))
    wait_for(
        lambda: state(jk, ns).get("hold") == "PreviouslyFailed" and deployment(jk, ns)["spec"].get("paused"),
        60,
        "the rejected template held",
    )
    d = deployment(jk, ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/web:v2"
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v1"}, 60, "only v1 runs")
    code, out, took = rollout_status(cluster, ns)
    assert code != 0 and "exceeded its progress deadline" in out and took < 30, (code, out, took)
    assert kstatus_of(jk, ns) == "Failed"
    # a manual resume of the held rejected template would roll it out natively: refused
    r = kubectl(cluster, "rollout", "resume", "deployment/web", "-n", ns)
    assert r.returncode != 0 and "deliver rejected the template of web" in r.stderr, r.stderr
    assert deployment(jk, ns)["spec"]["paused"] is True

    # the stable template written over it (what `helm rollback` does): at rest at once, not delivered
    jk.patch(
        DEPLOYMENTS,
        ns,
        "web",
        [{"op": "replace", "path": "/spec/template", "value": stable}],
        content_type="application/json-patch+json",
    )
    at_rest(jk, ns, timeout=60)
    code, out, _ = rollout_status(cluster, ns)
    assert code == 0, out
    assert kstatus_of(jk, ns) == "Current"
    assert state(jk, ns).get("phase") == "RolledBack", "nothing delivered again"


@pytest.mark.parametrize("strategy", ["rolling", "recreate"])
def test_a_rejected_native_rollout_never_reads_as_rolled_out(
    cluster: RunningCluster,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    hold_policy: None,
    controller: ControllerProcess,
    strategy: str,
) -> None:
    """Rolling and recreate roll back held: the Deployment stays paused on the rejected template,
    its status says rejected from the rollback's first pass, and deliver moves the pods. So a
    `kubectl rollout status` started with the change (the CI idiom) fails, never "successfully
    rolled out", kstatus never says Current on the way, the template never changes back (no field
    of it changes owner), and recreate never runs two versions at once."""
    ns = namespace
    create(kube, ns, {**STRATEGIES[strategy], **ROLLBACK}, replicas=3)
    at_rest(jk, ns)
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))

    def look() -> tuple[str, str]:
        d = deployment(jk, ns)  # one read: what a tool watching the Deployment sees at that moment
        return d["spec"]["template"]["spec"]["containers"][0]["image"], kstatus({"d": d})["d"][0]

    pods, stop_pods = sampler(lambda: ready_by_hash(jk, ns), 0.05)
    looks, stop_looks = sampler(look, 0.05)
    set_image(kube.apps, ns, "web", "example.com/web:v2", behaviour=CRASHLOOP)
    watch = subprocess.Popen(
        ["kubectl", "rollout", "status", "deployment/web", "-n", ns, "--timeout=150s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        wait_for(
            lambda: state(jk, ns).get("hold") == "PreviouslyFailed",
            150,
            "rolled back, the rejected template held",
            describe=lambda: state(jk, ns),
        )
        wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v1"}, 60, "only v1 runs")
        out, _ = watch.communicate(timeout=160)
    finally:
        stop_pods.set()
        stop_looks.set()
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode != 0 and "exceeded its progress deadline" in out, (watch.returncode, out)
    assert "successfully rolled out" not in out, out
    # from the change on: the rejected template, held, and never Current (sampled every 0.05 s; the
    # rollout status watch above saw every update)
    after = looks[next(i for i, lk in enumerate(looks) if lk[0] == "example.com/web:v2") :]
    assert {lk[0] for lk in after} == {"example.com/web:v2"}, "the stable template was never written back"
    assert "Current" not in {lk[1] for lk in after}, after
    d = deployment(jk, ns)
    assert (
        d["spec"]["paused"] is True and d["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/web:v2"
    )
    # the stable template written back would have made v1's ReplicaSet the Deployment's newest
    # revision again (3); held, it keeps the revision it had
    (v1_rs,) = [rs for rs in replica_sets(kube.apps, ns, "web") if rs.spec.replicas]
    assert (v1_rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision") == "1", v1_rs.metadata
    if strategy == "recreate":
        both = [p for p in pods if sum(1 for k in p.values() if k > 0) > 1]
        assert pods and not both, f"two versions Ready at once: {both[:3]}"  # (kwok: a rollback takes ~0.5 s)


# ---------------------------------------------------------------- Helm 4, as a CI pipeline runs it

CHART_YAML = "apiVersion: v2\nname: shop\nversion: 0.1.0\n"
TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    deliver.dev/strategy: canary
    deliver.dev/steps: "50,100"
    deliver.dev/interval: 2s
    deliver.dev/progress-deadline: 20s
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels:
        app: web
        {{- if .Values.crash }}
        %s: crashloop
        {{- end }}
    spec:
      containers:
        - name: app
          image: {{ .Values.image }}
          ports: [{containerPort: 8080}]
"""


def shop_chart(cluster: RunningCluster, ns: str, tmp_path: Path) -> tuple[Path, Callable[..., tuple[int, str, float]]]:
    """The chart "shop" (one managed canary Deployment, web) and the Helm 4 CLI run against the cluster
    as a pipeline runs it: (chart directory, helm(*args) -> (exit code, output, seconds))."""
    chart = tmp_path / "shop"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML)
    (chart / "values.yaml").write_text("image: example.com/web:v1\ncrash: false\n")
    (chart / "templates" / "web.yaml").write_text(TEMPLATE % BEHAVIOUR_LABEL)
    env = dict(
        os.environ,
        KUBECONFIG=str(cluster.kubeconfig),
        HELM_CACHE_HOME=str(tmp_path / "h" / "cache"),
        HELM_CONFIG_HOME=str(tmp_path / "h" / "config"),
        HELM_DATA_HOME=str(tmp_path / "h" / "data"),
    )

    def helm(*args: str) -> tuple[int, str, float]:
        start = time.monotonic()
        r = subprocess.run([str(helm_path()), *args, "-n", ns], capture_output=True, text=True, env=env, timeout=300)
        return r.returncode, r.stdout + r.stderr, time.monotonic() - start

    return chart, helm


def test_helm4_wait_reads_deliver_right(
    cluster: RunningCluster,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    hold_policy: None,
    controller: ControllerProcess,
    tmp_path: Path,
) -> None:
    ns = namespace
    chart, helm = shop_chart(cluster, ns, tmp_path)
    code, out, took = helm("install", "shop", str(chart), "--wait", "--timeout", "90s")
    assert code == 0, out
    at_rest(jk, ns)
    code, out, took = helm("upgrade", "shop", str(chart), "--wait", "--timeout", "90s")
    assert code == 0 and took < 30, (out, took)

    # A template change: Helm 4 does not wait for a paused Deployment (helm.sh/helm/v4 pkg/kube/statuswait.go
    # skips it, as its legacy checker's PausedAsReady does), and the policy pauses it in Helm's own
    # write: `--wait` returns at once, good change or bad. `kubectl rollout status` after it waits for
    # deliver's verdict, and so does `deliver gate`.
    code, out, took = helm(
        "upgrade", "shop", str(chart), "--wait", "--timeout", "120s", "--set", "image=example.com/web:v2"
    )
    assert code == 0 and took < 30, (out, took)
    assert deployment(jk, ns)["spec"]["paused"] is True, "held by the policy in Helm's write"
    code, out, _ = rollout_status(cluster, ns, timeout="120s")
    assert code == 0, out
    # once deliver promoted: its ReplicaSet adopted, every pod of v2 (the record may still say Promoting)
    assert state(jk, ns).get("phase") in ("Promoting", "Succeeded"), state(jk, ns)
    wait_for(lambda: state(jk, ns).get("phase") == "Succeeded", 60, "promoted")
    assert images(kube, ns, "web") == {"example.com/web:v2"}

    code, out, took = helm(
        "upgrade",
        "shop",
        str(chart),
        "--wait",
        "--timeout",
        "120s",
        "--set",
        "image=example.com/web:v3",
        "--set",
        "crash=true",
    )
    assert code == 0 and took < 30, (out, took)
    code, out, took = rollout_status(cluster, ns, timeout="120s")
    assert code != 0 and "exceeded its progress deadline" in out, out
    # marked rejected from the rollback's first pass: rollout status may fail while deliver still
    # rolls back (RollingBack), never later than RolledBack
    assert state(jk, ns).get("phase") in ("RollingBack", "RolledBack")
    wait_for(lambda: state(jk, ns).get("phase") == "RolledBack", 60, "rolled back")
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v2"}, 60, "only v2 runs")
    started = len(event_messages(jk, ns, "DeliveryStarted"))

    # `helm rollback` to the release deliver promoted: the template already running, at rest at once
    code, out, _ = helm("rollback", "shop", "3", "--wait", "--timeout", "60s")
    assert code == 0, out
    at_rest(jk, ns, timeout=60)
    code, out, _ = rollout_status(cluster, ns)
    assert code == 0, out
    assert kstatus_of(jk, ns) == "Current"
    assert len(event_messages(jk, ns, "DeliveryStarted")) == started, "not delivered again"
    assert images(kube, ns, "web") == {"example.com/web:v2"}


def test_helm4_with_deliver_s_gate_hook_fails_a_rolled_back_upgrade_and_rolls_the_release_back(
    cluster: RunningCluster,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    hold_policy: None,
    controller: ControllerProcess,
    tmp_path: Path,
) -> None:
    """The chart carries `deliver helm-hook web` (docs/helm.md): a post-install/post-upgrade Job that
    runs `deliver gate web` as its own ServiceAccount (run by e2e/podrunner.py, since kwok runs no
    containers). Helm waits for it: install and a good upgrade return 0 once deliver has promoted; an
    upgrade deliver rolls back fails, and --rollback-on-failure rolls the release back, a template
    change back to what already runs, at rest at once and not delivered again."""
    ns = namespace
    chart, helm = shop_chart(cluster, ns, tmp_path)
    hook = subprocess.run(
        [
            sys.executable,
            "-m",
            "delivery.cli",
            "helm-hook",
            "web",
            "--timeout",
            "100s",
            "--pin-image",
            "{{ .Values.image }}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = list(yaml.safe_load_all(hook))
    (job,) = [d for d in docs if d["kind"] == "Job"]
    job["spec"]["template"]["metadata"]["labels"][BEHAVIOUR_LABEL] = RUN_HERE
    (chart / "templates" / "deliver-gate.yaml").write_text(yaml.safe_dump_all(docs))

    with PodRunner(jk, cluster.kubeconfig, ns) as runner:
        code, out, _ = helm("install", "shop", str(chart), "--wait", "--timeout", "150s")
        assert code == 0, (out, runner.outputs)
        at_rest(jk, ns)
        assert list(runner.exits.values()) == [0], runner.outputs

        code, out, took = helm(
            "upgrade", "shop", str(chart), "--wait", "--timeout", "150s", "--set", "image=example.com/web:v2"
        )
        assert code == 0, (out, runner.outputs)
        assert state(jk, ns).get("phase") == "Succeeded", "Helm returned once deliver had promoted"
        assert images(kube, ns, "web") == {"example.com/web:v2"}
        started = len(event_messages(jk, ns, "DeliveryStarted"))

        code, out, took = helm(
            "upgrade",
            "shop",
            str(chart),
            "--wait",
            "--rollback-on-failure",
            "--timeout",
            "150s",
            "--set",
            "image=example.com/web:v3",
            "--set",
            "crash=true",
        )
        assert code != 0 and "deliver-gate-web" in out, out
        assert sorted(runner.exits.values()) == [0, 0, 1], runner.outputs
        failed = next(o for n, o in runner.outputs.items() if runner.exits[n] == 1)
        assert "rolled back" in failed, failed
        assert len(event_messages(jk, ns, "DeliveryStarted")) == started + 1
        # Helm's rollback wrote v2's template over the held rejected one: at rest at once
        at_rest(jk, ns, timeout=60)
        code, out, _ = helm("history", "shop", "-o", "json")
        history = json.loads(out)
        assert [h["status"] for h in history][-2:] == ["failed", "deployed"], history
        code, out, _ = rollout_status(cluster, ns)
        assert code == 0, out
        assert kstatus_of(jk, ns) == "Current"
        assert images(kube, ns, "web") == {"example.com/web:v2"}
        assert len(event_messages(jk, ns, "DeliveryStarted")) == started + 1, "the rollback is not delivered again"


# ---------------------------------------------------------------- the policy going away


def test_a_policy_deleted_mid_delivery_loses_nothing(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, hold_policy: None, controller: ControllerProcess
) -> None:
    ns = namespace
    create(kube, ns, {**STRATEGIES["canary"], "deliver.dev/steps": "50,pause,100"})
    at_rest(jk, ns)
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    wait_for(lambda: state(jk, ns).get("hold") == "AwaitingPromotion", 90, "at the manual gate")

    uninstall_hold_policy(jk)
    wait_for(lambda: "hold mode changed" in controller.log(), 30, "the controller saw the policy go")
    assert deployment(jk, ns)["spec"]["paused"] is True
    assert images(kube, ns, "web") == {"example.com/web:v1", "example.com/web:v2"}

    from delivery.engine.state import send_request

    send_request(jk, deployment(jk, ns), "promote")
    wait_for(lambda: state(jk, ns).get("phase") == "Succeeded", 90, "promoted")
    wait_for(lambda: deployment(jk, ns)["spec"].get("paused") is True, 30, "paused at rest in the paused mode")
    assert images(kube, ns, "web") == {"example.com/web:v2"}

    # and back: the policy installed again, the Deployment at rest is unpaused
    install_hold_policy(jk)
    at_rest(jk, ns, timeout=60)
    assert json.loads(json.dumps(state(jk, ns))).get("phase") == "Succeeded"


def test_a_gate_an_abort_and_an_invalid_annotation_read_right(
    cluster: RunningCluster, kube: Kube, jk: JsonKube, namespace: str, hold_policy: None, controller: ControllerProcess
) -> None:
    """The rest of the tool table (docs/gitops.md): at a manual gate nothing reads as rolled out; an
    aborted change reads as failed, like a rolled-back one; an invalid annotation changes nothing, so a
    template change under it stays held."""
    from delivery.engine.state import send_request

    ns = namespace
    create(kube, ns, {**STRATEGIES["canary"], "deliver.dev/steps": "50,pause,100"})
    at_rest(jk, ns)
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    wait_for(lambda: state(jk, ns).get("hold") == "AwaitingPromotion", 90, "at the manual gate")
    code, out, took = rollout_status(cluster, ns, timeout="3s")
    assert code != 0 and "timed out" in out, out  # still waiting for the rollout when its timeout ends
    assert kstatus_of(jk, ns) == "InProgress"

    send_request(jk, deployment(jk, ns), "abort")
    wait_for(
        lambda: state(jk, ns).get("phase") == "Aborted" and state(jk, ns).get("hold") == "PreviouslyFailed",
        90,
        "aborted, the template held",
    )
    code, out, _ = rollout_status(cluster, ns)
    assert code != 0 and "exceeded its progress deadline" in out, out
    assert kstatus_of(jk, ns) == "Failed"
    assert images(kube, ns, "web") == {"example.com/web:v1"}

    # an invalid annotation: deliver takes no action, so a template change stays held, read as not done
    jk.patch(DEPLOYMENTS, ns, "web", {"metadata": {"annotations": {"deliver.dev/steps": "50,20"}}})
    wait_for(lambda: event_messages(jk, ns, "InvalidAnnotation"), 30, "the InvalidAnnotation Event")
    set_image(kube.apps, ns, "web", "example.com/web:v3")
    assert deployment(jk, ns)["spec"]["paused"] is True
    # never Current: the last rejection's mark stays (deliver acts on nothing here), so Failed
    assert kstatus_of(jk, ns) in ("InProgress", "Failed")
    code, out, _ = rollout_status(cluster, ns, timeout="3s")
    assert code != 0, out
    stays(lambda: images(kube, ns, "web") == {"example.com/web:v1"}, 3, "nothing of v3 rolls out")
