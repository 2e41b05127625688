"""`deliver gate` for CI on the real local control plane.

The commands of docs/Jenkinsfile are run exactly as written (read from the file), for a good
version (exit 0, clean JUnit) and a bad one (a crash-looping pod template: exit 1, JUnit with the
failed verdict); the gate times out with exit 3; a rejected credential gives exit 4.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from e2e.binaries import KUBE_VERSION, kubectl_path
from e2e.cluster import BEHAVIOUR_LABEL, REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import CRASHLOOP, Kube, canary, deliver, pods_of, set_image, wait_for, wait_phase, wait_stable
from tests.xunit_schema import problems

pytestmark = pytest.mark.e2e

JENKINSFILE = REPO_ROOT / "docs" / "Jenkinsfile"


def jenkins_commands() -> list[str]:
    """The shell steps of the Jenkinsfile's delivery stage, in order, exactly as written."""
    return re.findall(r"^\s*sh '([^']*)'\s*$", JENKINSFILE.read_text(), flags=re.M)


def manifest(bad: bool = False) -> str:
    """k8s/web.yaml as the application's repository would hold it (@IMAGE@ filled in by the pipeline)."""
    labels = {"app": "web"}
    if bad:
        labels[BEHAVIOUR_LABEL] = CRASHLOOP
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "deliver.dev/strategy": "canary",
                "deliver.dev/steps": "34,67,100",
                "deliver.dev/interval": "2s",
            },
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": "@IMAGE@"}]},
            },
        },
    }
    return yaml.safe_dump(doc)


def pipeline_path() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), str(kubectl_path().parent), os.environ.get("PATH", "")])


def run_pipeline(
    workspace: Path, kubeconfig: Path, namespace: str, image: str
) -> list[subprocess.CompletedProcess[str]]:
    """What Jenkins does: each `sh` step in the workspace with the stage's environment; stop at the first failure.
    `deliver` is the venv's; `kubectl` the one built from the cluster's release (e2e/binaries.py)."""
    env = dict(os.environ, APP="web", NAMESPACE=namespace, IMAGE=image, KUBECONFIG=str(kubeconfig))
    env["PATH"] = pipeline_path()
    env.pop("NO_COLOR", None)
    results = []
    for command in jenkins_commands():
        r = subprocess.run(
            ["bash", "-c", command], cwd=workspace, env=env, capture_output=True, text=True, timeout=1000
        )
        results.append(r)
        if r.returncode != 0:
            break
    return results


def junit_cases(path: Path) -> dict[str, tuple[str, str]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kind, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind, message = child.tag, child.get("message", "")
        cases[case.get("name", "")] = (kind, message)
    return cases


def test_jenkinsfile_commands_gate_good_and_bad_versions(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path, kubectl: Path
) -> None:
    commands = jenkins_commands()
    assert [c.split()[0] for c in commands] == ["deliver", "sed", "deliver"]
    assert "deliver gate" in commands[-1] and "--junit deliver-report.xml" in commands[-1]
    if not kubectl.exists():
        pytest.fail(f"kubectl is not built: {kubectl} (python -m e2e.binaries --only kubectl, or make install)")
    # the Jenkinsfile's `kubectl` is the one of the cluster's release, not whatever the machine has
    assert shutil.which("kubectl", path=pipeline_path()) == str(kubectl)
    client_version = subprocess.run(
        ["kubectl", "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PATH=pipeline_path()),
    )
    assert json.loads(client_version.stdout)["clientVersion"]["gitVersion"] == KUBE_VERSION, client_version
    workspace = tmp_path / "workspace"
    (workspace / "k8s").mkdir(parents=True)
    report = workspace / "deliver-report.xml"

    with ControllerProcess(cluster.kubeconfig, namespace, log_dir=tmp_path) as ctl:
        # first build: creates the Deployment; nothing to compare against yet, the gate passes
        (workspace / "k8s" / "web.yaml").write_text(manifest())
        results = run_pipeline(workspace, cluster.kubeconfig, namespace, "example.com/web:v1")
        assert [r.returncode for r in results] == [0, 0, 0], [(r.stdout, r.stderr) for r in results]

        # a good version: the canary runs all its steps, the gate exits 0, every test case passes
        results = run_pipeline(workspace, cluster.kubeconfig, namespace, "example.com/web:v2")
        assert [r.returncode for r in results] == [0, 0, 0], [(r.stdout, r.stderr) for r in results]
        assert "promoted (exit 0)" in results[-1].stderr
        assert problems(report.read_text()) == []  # valid for Jenkins' xUnit plugin (junit-10.xsd)
        cases = junit_cases(report)
        assert cases["step 1: 34%"][0] == "passed" and cases["step 2: 67%"][0] == "passed"
        assert all(kind == "passed" for kind, _ in cases.values()), cases
        good_names = set(cases)
        assert {p.spec.containers[0].image for p in pods_of(kube, namespace, "web")} == {"example.com/web:v2"}

        # a bad version (its pods crash-loop): rolled back, the gate exits 1, JUnit says why
        (workspace / "k8s" / "web.yaml").write_text(manifest(bad=True))
        results = run_pipeline(workspace, cluster.kubeconfig, namespace, "example.com/web:v3")
        assert [r.returncode for r in results] == [0, 0, 1], [(r.stdout, r.stderr) for r in results]
        assert "RolledBack" in results[-1].stderr and "CrashLoopBackOff" in results[-1].stderr
        assert problems(report.read_text()) == []
        cases = junit_cases(report)
        assert cases["step 1: 34%"][0] == "failure" and "CrashLoopBackOff" in cases["step 1: 34%"][1]
        assert cases["step 2: 67%"][0] == "skipped"
        # one failing case for the rolled-back delivery; the same case names as the good build's
        root = ET.parse(report).getroot()
        assert root.get("failures") == "1" and set(cases) <= good_names, cases
        wait_for(
            lambda: {p.spec.containers[0].image for p in pods_of(kube, namespace, "web")} == {"example.com/web:v2"},
            60,
            "only v2 pods after the rollback",
        )
        assert "Traceback" not in ctl.log()


def test_gate_times_out_with_3(cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path) -> None:
    with ControllerProcess(cluster.kubeconfig, namespace, log_dir=tmp_path) as ctl:
        kube.apps.create_namespaced_deployment(namespace, canary("web", "34,pause,100"))
        wait_stable(kube, namespace, "web", ctl)
        set_image(kube.apps, namespace, "web", "example.com/web:v2")
        report = tmp_path / "r.xml"
        r = deliver(cluster.kubeconfig, "-n", namespace, "gate", "web", "--timeout", "6s", "--junit", str(report))
        assert r.returncode == 3, r.stderr
        assert "timed out" in r.stderr and "deliver promote web" in r.stderr  # says what it waits for
        assert problems(report.read_text()) == []
        cases = junit_cases(report)
        assert cases["step 2: manual promotion"][0] == "error"  # where the gate stopped waiting
        assert cases["step 3: promote to 100%"][0] == "skipped"
        wait_phase(kube, namespace, "web", "Paused", step=1, ctl=ctl)  # the gate changed nothing

        # the delivery goes on; a second gate after `promote` passes
        assert deliver(cluster.kubeconfig, "-n", namespace, "promote", "web").returncode == 0
        r = deliver(cluster.kubeconfig, "-n", namespace, "gate", "web", "--timeout", "60s", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert '"result": "promoted"' in r.stdout


def test_gate_api_and_auth_errors_exit_4(cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path) -> None:
    kube.apps.create_namespaced_deployment(namespace, canary("web", "50,100"))
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    user = config["users"][0]["user"]
    for key in ("client-certificate", "client-key", "client-certificate-data", "client-key-data"):
        user.pop(key, None)
    user["token"] = "not-a-valid-token"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    r = deliver(bad, "-n", namespace, "gate", "web", "--timeout", "30s")
    assert r.returncode == 4, r.stderr
    assert "401" in r.stderr or "Unauthorized" in r.stderr
    # a usage error is 2
    assert deliver(cluster.kubeconfig, "-n", namespace, "gate", "web", "--timeout", "whenever").returncode == 2
    assert deliver(cluster.kubeconfig, "gate").returncode == 2
    # nobody listening at all: 4
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    down = tmp_path / "down-kubeconfig"
    down.write_text(yaml.safe_dump(config))
    r = deliver(down, "-n", namespace, "gate", "web", "--timeout", "3s", timeout=120)
    assert r.returncode == 4, r.stderr
