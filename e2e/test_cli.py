"""The deliver CLI against the real local control plane with the real controller running.

promote / pause / resume / abort / retry / undo through the CLI, refusals that change nothing,
get/status output, and `deliver lint` agreeing with what the controller refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from e2e.cluster import REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import (
    Kube,
    canary,
    deliver,
    image,
    images,
    make_deployment,
    phase,
    set_image,
    state,
    stays,
    wait_for,
    wait_phase,
    wait_stable,
)

pytestmark = pytest.mark.e2e

# ---------------------------------------------------------------------- operator verbs


def written_by_users(kube: Kube, ns: str, name: str) -> tuple[object, object]:
    """What an operator request or a user's write changes on a Deployment: the request annotation
    (``deliver.dev/request``) and the generation (any spec change)."""
    meta = kube.apps.read_namespaced_deployment(name, ns).metadata
    return meta.generation, (meta.annotations or {}).get("deliver.dev/request")


def test_manual_gate_promote_pause_resume(
    cluster: RunningCluster, kube: Kube, namespace: str, controller: ControllerProcess
) -> None:
    k, ns = cluster.kubeconfig, namespace
    # Given a canary with a manual promotion after the first step, delivered once
    kube.apps.create_namespaced_deployment(ns, canary("web", "34,pause,67,100", interval="8s"))
    wait_stable(kube, ns, "web", controller)

    # When a new image arrives, the delivery stops at the manual promotion
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    wait_phase(kube, ns, "web", "Paused", step=1, ctl=controller)

    # resume does not pass a manual promotion, pause needs a running delivery: both refused, nothing changed
    before = kube.apps.read_namespaced_deployment("web", ns).metadata.resource_version
    r = deliver(k, "-n", ns, "resume", "web")
    assert r.returncode == 1 and "manual promotion" in r.stderr and "deliver promote web" in r.stderr
    r = deliver(k, "-n", ns, "pause", "web")
    assert r.returncode == 1 and "Paused" in r.stderr
    assert kube.apps.read_namespaced_deployment("web", ns).metadata.resource_version == before

    # promote passes the gate; the controller takes the request (--wait)
    r = deliver(k, "-n", ns, "promote", "web", "--wait", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["request"] == "promote"
    s = wait_phase(kube, ns, "web", "Progressing", step=2, ctl=controller)

    # pause holds the delivery at its step (interval 8s would have moved it on)
    r = deliver(k, "pause", "web", "-n", ns, "--wait")
    assert r.returncode == 0, r.stderr
    wait_phase(kube, ns, "web", "Paused", step=2, ctl=controller)
    stays(
        lambda: state(kube, ns, "web")["phase"] == "Paused" and state(kube, ns, "web")["step"] == 2,
        6,
        "paused at step 3",
    )
    status = json.loads(deliver(k, "-n", ns, "status", "web", "-o", "json").stdout)
    assert status["phase"] == "Paused" and "paused by an operator" in status["message"]

    # resume continues to the end
    r = deliver(k, "-n", ns, "resume", "web")
    assert r.returncode == 0, r.stderr
    wait_phase(kube, ns, "web", "Succeeded", ctl=controller)
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v2"}, 60, "only v2 pods")
    assert s["revision"] == state(kube, ns, "web")["stableRevision"]

    # a verb with no delivery in progress: exit 1, nothing changed
    # (what a request would change; the Deployment controller and deliver may still write the status
    # and the record of a rollout that just finished, so the resourceVersion is not compared here)
    before = written_by_users(kube, ns, "web")
    for verb in (["promote", "web"], ["abort", "web"], ["resume", "web"], ["retry", "web"]):
        r = deliver(k, "-n", ns, *verb)
        assert r.returncode == 1, (verb, r.stderr)
    assert written_by_users(kube, ns, "web") == before


def test_abort_retry_undo(cluster: RunningCluster, kube: Kube, namespace: str, controller: ControllerProcess) -> None:
    k, ns = cluster.kubeconfig, namespace
    kube.apps.create_namespaced_deployment(ns, canary("web", "34,pause,100"))
    wait_stable(kube, ns, "web", controller)
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    wait_phase(kube, ns, "web", "Paused", step=1, ctl=controller)
    assert deliver(k, "-n", ns, "promote", "web", "--full").returncode == 0
    wait_phase(kube, ns, "web", "Succeeded", ctl=controller)
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v2"}, 60, "v2 everywhere")

    # abort at the manual promotion: all traffic back on v2 at once, the canary's pods go away
    set_image(kube.apps, ns, "web", "example.com/web:v3")
    wait_phase(kube, ns, "web", "Paused", step=1, ctl=controller)
    assert "example.com/web:v3" in images(kube, ns, "web")
    r = deliver(k, "-n", ns, "abort", "web", "--wait")
    assert r.returncode == 0, r.stderr
    s = wait_phase(kube, ns, "web", "Aborted", ctl=controller)
    assert "aborted by an operator" in s["message"]
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v2"}, 60, "only v2 pods after abort")
    assert image(kube, ns, "web") == "example.com/web:v2"

    # retry delivers the aborted revision again
    r = deliver(k, "-n", ns, "retry", "web")
    assert r.returncode == 0, r.stderr
    wait_phase(kube, ns, "web", "Paused", step=1, ctl=controller)
    assert image(kube, ns, "web") == "example.com/web:v3"
    assert deliver(k, "-n", ns, "promote", "web", "--full").returncode == 0
    wait_phase(kube, ns, "web", "Succeeded", ctl=controller)
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v3"}, 60, "only v3 pods")

    # undo during a delivery is refused (abort is the verb for that)...
    set_image(kube.apps, ns, "web", "example.com/web:v4")
    wait_phase(kube, ns, "web", "Paused", step=1, ctl=controller)
    r = deliver(k, "-n", ns, "undo", "web")
    assert r.returncode == 1 and "deliver abort web" in r.stderr
    assert deliver(k, "-n", ns, "abort", "web", "--wait").returncode == 0
    wait_phase(kube, ns, "web", "Aborted", ctl=controller)

    # ...and afterwards goes back to the previous stable revision (v2), delivered like any change,
    # skipping v4, which deliver rolled back
    r = deliver(k, "-n", ns, "undo", "web", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert image(kube, ns, "web") == "example.com/web:v2"
    wait_phase(kube, ns, "web", "Paused", step=1, ctl=controller)  # the canary's manual promotion again
    assert deliver(k, "-n", ns, "promote", "web", "--full").returncode == 0
    wait_phase(kube, ns, "web", "Succeeded", ctl=controller)
    wait_for(lambda: images(kube, ns, "web") == {"example.com/web:v2"}, 60, "back on v2")


def test_status_get_and_unmanaged(
    cluster: RunningCluster, kube: Kube, namespace: str, controller: ControllerProcess
) -> None:
    k, ns = cluster.kubeconfig, namespace
    kube.apps.create_namespaced_deployment(ns, canary("web", "50,100"))
    kube.apps.create_namespaced_deployment(ns, make_deployment("plain", replicas=1))
    wait_stable(kube, ns, "web", controller)

    table = deliver(k, "-n", ns, "get")
    assert table.returncode == 0
    rows = [line.split() for line in table.stdout.strip().splitlines()]
    assert rows[0][:3] == ["NAME", "STRATEGY", "PHASE"] and [r[0] for r in rows[1:]] == ["web"]
    items = yaml.safe_load(deliver(k, "-n", ns, "get", "-o", "yaml").stdout)["items"]
    assert [(i["name"], i["strategy"], i["phase"]) for i in items] == [("web", "canary", "Idle")]
    text = deliver(k, "status", "web", "-n", ns)
    assert text.returncode == 0 and f"{ns}/web  strategy=canary  phase=Idle" in text.stdout

    # the same CLI as a kubectl plugin (kubectl-deliver on PATH)
    bindir = Path(sys.executable).parent
    if (bindir / "kubectl-deliver").exists() and shutil.which("kubectl"):
        env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", KUBECONFIG=str(k))
        plugin = subprocess.run(
            ["kubectl", "deliver", "get", "-n", ns], capture_output=True, text=True, env=env, timeout=60
        )
        assert plugin.returncode == 0, plugin.stderr
        assert plugin.stdout == table.stdout

    # a Deployment without deliver.dev/strategy: every verb says so, exit 1, nothing changes
    before = kube.apps.read_namespaced_deployment("plain", ns).metadata.resource_version
    for verb in ("status", "promote", "abort", "retry", "undo", "pause", "resume"):
        r = deliver(k, "-n", ns, verb, "plain")
        assert r.returncode == 1 and "not managed by deliver" in r.stderr, (verb, r.stderr)
    r = deliver(k, "-n", ns, "gate", "plain", "--timeout", "10s")
    assert r.returncode == 1 and "not managed" in r.stderr
    assert kube.apps.read_namespaced_deployment("plain", ns).metadata.resource_version == before
    r = deliver(k, "-n", ns, "status", "nothere")
    assert r.returncode == 1 and "not found" in r.stderr

    # status --watch without a terminal prints one line per event and stops at --timeout (exit 3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delivery.cli",
            "--kubeconfig",
            str(k),
            "-n",
            ns,
            "status",
            "web",
            "--watch",
            "--timeout",
            "30s",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    lines: list[str] = []

    def read_lines() -> None:
        for line in proc.stdout or []:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    # the watch has read the Deployment (its first line) before the change, so it sees every event after it
    wait_for(lambda: lines, 30, "the first line of `status --watch`", describe=lambda: proc.poll())
    set_image(kube.apps, ns, "web", "example.com/web:v2")
    wait_phase(kube, ns, "web", "Succeeded", ctl=controller)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 3, err
    assert any("phase=Progressing" in line for line in lines)
    assert any("phase=Succeeded" in line for line in lines)
    assert any("verdict step 1: pass" in line for line in lines)
    assert not any("\x1b[" in line for line in lines)


# ---------------------------------------------------------------------- lint agrees with the engine

INVALID: dict[str, dict[str, str]] = {
    "bad-strategy": {"deliver.dev/strategy": "big-bang"},
    "bad-steps": {"deliver.dev/strategy": "canary", "deliver.dev/steps": "50,20,100"},
    "bad-interval": {"deliver.dev/strategy": "canary", "deliver.dev/interval": "soon"},
    "bad-deadline": {"deliver.dev/strategy": "canary", "deliver.dev/progress-deadline": "1s"},
    "bad-rollback": {"deliver.dev/strategy": "canary", "deliver.dev/auto-rollback": "maybe"},
    "bad-router": {"deliver.dev/strategy": "canary", "deliver.dev/router": "linkerd/web"},
    "bad-restarts": {"deliver.dev/strategy": "canary", "deliver.dev/max-restarts": "many"},
    "bad-inconclusive": {"deliver.dev/strategy": "canary", "deliver.dev/on-inconclusive": "shrug"},
    "bad-pause-at": {"deliver.dev/strategy": "rolling", "deliver.dev/pause-at": "50,100"},
    "bad-keep-warm": {"deliver.dev/strategy": "blue-green", "deliver.dev/keep-warm": "always"},
    "bad-preview": {"deliver.dev/strategy": "blue-green", "deliver.dev/preview-service": "bad-preview"},
    "bad-unknown": {"deliver.dev/strategy": "canary", "deliver.dev/colour": "blue"},
    "bad-recreate": {"deliver.dev/strategy": "recreate"},
    "bad-analysis": {"deliver.dev/strategy": "canary", "deliver.dev/analysis-colour": "x"},
    "bad-check-name": {"deliver.dev/strategy": "canary", "deliver.dev/analysis": "Error_Rate"},
    "bad-alpha": {
        "deliver.dev/strategy": "canary",
        "deliver.dev/analysis": "error-rate",
        "deliver.dev/analysis-alpha": "0.9",
    },
    "bad-metrics": {
        "deliver.dev/strategy": "canary",
        "deliver.dev/analysis": "error-rate",
        "deliver.dev/analysis-metrics": "grpc",
    },
    "bad-option": {
        "deliver.dev/strategy": "canary",
        "deliver.dev/analysis": "error-rate",
        "deliver.dev/analysis.error-rate": "colour=blue",
    },
    "bad-custom": {"deliver.dev/strategy": "canary", "deliver.dev/analysis": "queue-depth"},
}
EXPECTED_KEY = {
    "bad-strategy": "deliver.dev/strategy",
    "bad-steps": "deliver.dev/steps",
    "bad-interval": "deliver.dev/interval",
    "bad-deadline": "deliver.dev/progress-deadline",
    "bad-rollback": "deliver.dev/auto-rollback",
    "bad-router": "deliver.dev/router",
    "bad-restarts": "deliver.dev/max-restarts",
    "bad-inconclusive": "deliver.dev/on-inconclusive",
    "bad-pause-at": "deliver.dev/pause-at",
    "bad-keep-warm": "deliver.dev/keep-warm",
    "bad-preview": "deliver.dev/preview-service",
    "bad-unknown": "deliver.dev/colour",
    "bad-recreate": "deliver.dev/strategy",
    "bad-analysis": "deliver.dev/analysis-colour",
    "bad-check-name": "deliver.dev/analysis",
    "bad-alpha": "deliver.dev/analysis-alpha",
    "bad-metrics": "deliver.dev/analysis-metrics",
    "bad-option": "deliver.dev/analysis.error-rate",
    "bad-custom": "deliver.dev/analysis",
}


def test_lint_catches_each_annotation_the_engine_rejects(
    cluster: RunningCluster, kube: Kube, namespace: str, controller: ControllerProcess, tmp_path: Path
) -> None:
    k, ns = cluster.kubeconfig, namespace
    docs = []
    for name, invalid in INVALID.items():
        dep = make_deployment(name, replicas=1, annotations=invalid)
        body = kube.api_client.sanitize_for_serialization(dep)
        docs.append(body)
        kube.apps.create_namespaced_deployment(ns, body)
    manifest = tmp_path / "all.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))

    # the controller refuses each one with a Warning event naming the key...
    def refused() -> dict[str, str] | None:
        found: dict[str, str] = {}
        for ev in kube.core.list_namespaced_event(ns).items:
            if ev.reason == "InvalidAnnotation":
                found[ev.involved_object.name] = ev.message
        return found if set(found) == set(INVALID) else None

    events = wait_for(
        refused, 60, "an InvalidAnnotation event for every Deployment", describe=lambda: controller.log()[-3000:]
    )
    for name, key in EXPECTED_KEY.items():
        assert key in events[name], (name, events[name])
        assert phase(kube, ns, name) == "Idle"  # and changes nothing

    # ...and `deliver lint` on the same manifests, offline, flags the same key for each
    r = deliver("/nonexistent/kubeconfig", "lint", str(manifest), "-o", "json")
    assert r.returncode == 1, r.stderr
    results = {x["name"]: [p["key"] for p in x["problems"]] for x in json.loads(r.stdout)["results"]}
    for name, key in EXPECTED_KEY.items():
        assert key in results[name], (name, results[name])
    # the engine's own message for the first problem is among lint's
    for name in INVALID:
        assert EXPECTED_KEY[name] in events[name]

    # status and gate report the invalid annotation too
    r = deliver(k, "-n", ns, "status", "bad-steps")
    assert r.returncode == 0 and "invalid: deliver.dev/steps" in r.stdout
    r = deliver(k, "-n", ns, "gate", "bad-steps", "--timeout", "10s")
    assert r.returncode == 1 and "deliver.dev/steps" in r.stderr


# ---------------------------------------------------------------------- kubectl's --as / --as-group


def test_as_and_as_group_act_with_the_impersonated_rights(cluster: RunningCluster, kube: Kube, namespace: str) -> None:
    """The API server authorizes the CLI's requests as --as/--as-group (the test's admin may impersonate)."""
    k, ns = cluster.kubeconfig, namespace
    kube.apps.create_namespaced_deployment(ns, canary("web", "50,100"))
    ci = f"system:serviceaccount:{ns}:ci"  # no ServiceAccount needed: impersonation names a user

    # a user without rights: Forbidden, exit 4, as that user
    r = deliver(k, "-n", ns, "get", "--as", ci)
    assert r.returncode == 4 and "403" in r.stderr and ci in r.stderr, r.stderr
    assert deliver(k, "-n", ns, "get").returncode == 0  # the caller's own rights are untouched

    # rights for a group, then for the user: each one works only when given
    reader = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}
    kube.rbac.create_namespaced_role(ns, {"metadata": {"name": "read-deployments"}, "rules": [reader]})
    subject = {"kind": "Group", "name": "deploy-readers", "apiGroup": "rbac.authorization.k8s.io"}
    role_ref = {"kind": "Role", "name": "read-deployments", "apiGroup": "rbac.authorization.k8s.io"}
    kube.rbac.create_namespaced_role_binding(
        ns, {"metadata": {"name": "readers"}, "subjects": [subject], "roleRef": role_ref}
    )
    as_reader = ("-n", ns, "get", "--as", ci, "--as-group", "other", "--as-group", "deploy-readers")
    wait_for(lambda: deliver(k, *as_reader).returncode == 0, 30, "the group's RoleBinding to apply")
    assert "web" in deliver(k, *as_reader).stdout
    r = deliver(k, "-n", ns, "status", "web", "--as", ci)
    assert r.returncode == 4, r.stderr  # not as a member of the group: still no right
    user = {"kind": "User", "name": ci, "apiGroup": "rbac.authorization.k8s.io"}
    kube.rbac.create_namespaced_role_binding(ns, {"metadata": {"name": "ci"}, "subjects": [user], "roleRef": role_ref})
    wait_for(lambda: deliver(k, "-n", ns, "status", "web", "--as", ci).returncode == 0, 30, "the RoleBinding")
