"""The CLI without a cluster: verbs against a fake API, lint, undo's choice, output rules."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from delivery import cli, templates
from delivery.cli import gate as gate_cli
from delivery.cli import requests
from delivery.cli.context import Globals
from delivery.cli.params import Duration
from delivery.cli.request_rules import check_request
from delivery.cli.undo import previous_revision
from delivery.gate import GateResult
from delivery.kube.client import DEPLOYMENTS, REPLICASETS
from delivery.spec import REQUEST
from tests.fakekube import FakeKube
from tests.test_gate import TPL_A, TPL_B, A, B, deployment, st


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    monkeypatch.setattr(Globals, "kube", lambda self: fake)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return fake


def invoke(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=stdin, catch_exceptions=False)


def request_of(kube: FakeKube) -> dict[str, Any] | None:
    raw = kube.objects[("deployments", "ns", "web")]["metadata"]["annotations"].get(REQUEST)
    return json.loads(raw) if raw else None


# ---------------------------------------------------------------- operator verbs


@pytest.mark.parametrize(
    "args, phase, verb",
    [
        (["promote", "web"], "Paused", "promote"),
        (["promote", "web", "--full"], "Progressing", "promote-full"),
        (["abort", "web"], "Promoting", "abort"),
        (["pause", "web"], "Progressing", "pause"),
        (["resume", "web"], "Paused", "resume"),
    ],
)
def test_verb_writes_a_request(kube: FakeKube, args: list[str], phase: str, verb: str) -> None:
    hold = {"hold": "Operator"} if phase == "Paused" else {}  # paused by `deliver pause`: resume applies
    kube.put(DEPLOYMENTS, deployment(TPL_B, st(phase, **hold)))
    result = invoke(*args, "-n", "ns")
    assert result.exit_code == 0, result.output
    assert request_of(kube)["verb"] == verb


def test_retry_needs_a_failed_template(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_A, st("RolledBack", failedRevision=B)))
    result = invoke("-n", "ns", "retry", "web")
    assert result.exit_code == 1 and "no failed revision" in result.output
    kube.put(DEPLOYMENTS, deployment(TPL_A, st("RolledBack", failedRevision=B, failedTemplate=TPL_B)))
    assert invoke("-n", "ns", "retry", "web").exit_code == 0
    assert request_of(kube)["verb"] == "retry"


@pytest.mark.parametrize(
    "args, phase, expect",
    [
        (["promote", "web"], "Succeeded", "no delivery in progress"),
        (["abort", "web"], "Idle", "no delivery in progress"),
        (["abort", "web"], "RollingBack", "needs one of"),
        (["pause", "web"], "Paused", "needs one of: Progressing"),
        (["resume", "web"], "Progressing", "needs one of: Paused"),
        (["retry", "web"], "Progressing", "needs one of: RolledBack, Aborted"),
    ],
)
def test_verb_in_a_wrong_state_changes_nothing(kube: FakeKube, args: list[str], phase: str, expect: str) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st(phase)))
    before = copy.deepcopy(kube.objects)
    result = invoke(*args, "-n", "ns")
    assert result.exit_code == 1
    assert expect in result.output
    assert kube.objects == before


def test_verb_on_an_unannotated_deployment(kube: FakeKube) -> None:
    d = deployment(TPL_B)
    d["metadata"]["annotations"] = {}
    kube.put(DEPLOYMENTS, d)
    before = copy.deepcopy(kube.objects)
    for verb in ("promote", "abort", "retry", "pause", "resume", "undo", "status"):
        result = invoke(verb, "web", "-n", "ns")
        assert result.exit_code == 1, verb
        assert "not managed by deliver" in result.output
    assert kube.objects == before


def test_verb_on_a_missing_deployment(kube: FakeKube) -> None:
    result = invoke("promote", "nope", "-n", "ns")
    assert result.exit_code == 1 and "not found" in result.output


def test_verb_with_invalid_annotations_is_refused(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing"), {"deliver.dev/interval": "soon"}))
    result = invoke("promote", "web", "-n", "ns")
    assert result.exit_code == 1 and "deliver.dev/interval" in result.output
    assert request_of(kube) is None


def test_resume_is_refused_where_the_planner_would_ignore_it(kube: FakeKube) -> None:
    # blue-green preview without auto-promote: held for a promotion the planner alone knows about
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Paused", hold="AwaitingPromotion")))
    result = invoke("resume", "web", "-n", "ns")
    assert result.exit_code == 1 and "deliver promote web" in result.output
    assert request_of(kube) is None


def test_resume_at_a_manual_promotion_step_points_to_promote(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Paused", step=1), {"deliver.dev/steps": "20,pause,100"}))
    result = invoke("resume", "web", "-n", "ns")
    assert result.exit_code == 1 and "deliver promote web" in result.output
    assert "waiting for a manual promotion (step 2)" in result.output


def test_pending_request_blocks_promote_but_not_abort(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Paused"), request={"verb": "promote", "id": "x1", "at": 1}))
    result = invoke("promote", "web", "-n", "ns")
    assert result.exit_code == 1 and "not been taken" in result.output
    assert invoke("abort", "web", "-n", "ns").exit_code == 0
    assert request_of(kube)["verb"] == "abort"


def test_check_request_is_pure_and_names_the_allowed_phases() -> None:
    d = deployment(TPL_B, st("Paused"))
    before = copy.deepcopy(d)
    assert check_request(d, "promote") is None and check_request(d, "abort") is None
    assert check_request(d, "pause") == "ns/web is Paused; `pause` needs one of: Progressing"
    done = deployment(TPL_B, st("Succeeded", B, B))
    assert check_request(done, "promote-full") == (
        "ns/web is Succeeded (no delivery in progress); `promote --full` needs one of: Progressing, Paused"
    )
    assert d == before


def test_api_errors_exit_4(kube: FakeKube) -> None:
    from delivery.errors import Forbidden

    kube.fail_next = [Forbidden("deployments is forbidden", status=403)]
    result = invoke("status", "web", "-n", "ns")
    assert result.exit_code == 4 and "forbidden" in result.output


def test_promote_wait_times_out_with_3(kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Paused")))
    monkeypatch.setattr(requests.time, "sleep", lambda s: None)
    result = invoke("promote", "web", "-n", "ns", "--wait", "--timeout", "10ms")
    assert result.exit_code == 3


# ---------------------------------------------------------------- status / get / output


def test_status_formats(kube: FakeKube) -> None:
    kube.put(
        DEPLOYMENTS,
        deployment(
            TPL_B,
            st(
                "Progressing",
                step=1,
                weight=50,
                message="step 2",
                verdicts=[{"step": 0, "outcome": "pass", "summary": "ok", "at": 1}],
            ),
        ),
    )
    text = invoke("status", "web", "-n", "ns")
    assert text.exit_code == 0
    assert "phase=Progressing" in text.stdout and "step=2" in text.stdout and "weight=50%" in text.stdout
    assert "\x1b[" not in text.stdout  # not a terminal: no colour
    data = json.loads(invoke("status", "web", "-n", "ns", "-o", "json").stdout)
    assert data["phase"] == "Progressing" and data["target"] == B and data["valid"] is True
    assert yaml.safe_load(invoke("-o", "yaml", "-n", "ns", "status", "web").stdout)["weight"] == 50


def test_get_lists_only_managed(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing", step=0, weight=20, started=1)))
    other = deployment(TPL_A)
    other["metadata"].update(name="plain", annotations={})
    kube.put(DEPLOYMENTS, other)
    out = invoke("get", "-n", "ns").stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["NAME", "STRATEGY", "PHASE", "STEP"]
    assert len(lines) == 2 and lines[1].split()[:3] == ["web", "canary", "Progressing"]
    items = json.loads(invoke("get", "-n", "ns", "-o", "json").stdout)["items"]
    assert [i["name"] for i in items] == ["web"]
    wide = invoke("get", "-A").stdout.splitlines()
    assert wide[0].startswith("NAMESPACE") and wide[1].startswith("ns")


def test_messages_go_to_stderr_machine_output_to_stdout(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Paused")))
    result = invoke("promote", "web", "-n", "ns", "-o", "json")
    assert "requested" in result.stderr
    assert json.loads(result.stdout)["request"] == "promote"


def test_no_color_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from delivery import output

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert output.color_wanted(False, Tty()) is True  # type: ignore[arg-type]
    assert output.color_wanted(True, Tty()) is False  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.color_wanted(False, Tty()) is False  # type: ignore[arg-type]


def test_event_printer_one_line_per_event() -> None:
    import io

    from delivery import output

    buf = io.StringIO()
    p = output.EventPrinter(stream=buf, clock=lambda: 0)
    base = {"namespace": "ns", "name": "web", "phase": "Progressing", "step": 0, "weight": 20, "verdicts": []}
    p.update(base)
    p.update(base)  # nothing changed: nothing printed
    p.update(dict(base, step=1, weight=50, verdicts=[{"step": 0, "outcome": "pass", "summary": "ok"}]))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert "step=2 weight=50%" in lines[1] and "verdict step 1: pass: ok" in lines[2]


def test_usage_errors_exit_2(kube: FakeKube) -> None:
    assert invoke("gate").exit_code == 2
    assert invoke("gate", "web", "--timeout", "soon").exit_code == 2
    assert invoke("status", "web", "-o", "xml").exit_code == 2
    assert invoke("frobnicate").exit_code == 2


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        (" 2m ", 120.0),
        ("200h", 720000.0),
    ],
)
def test_duration_converts_the_kubernetes_form(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize(
    "text", ["soon", "", "-5", "5x", "1e3", "nan", "inf", "1.2.3", "m", "1000h", "30", "0.5", "1.5m", "-5s"]
)
def test_duration_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(click.BadParameter, match="not a duration|out of range"):
        Duration().convert(text, None, None)


def test_a_bare_number_or_a_fraction_is_told_what_to_write() -> None:
    """One grammar everywhere (issue 25): the Kubernetes one; kubectl refuses --timeout=30 too."""
    with pytest.raises(click.BadParameter, match=r"add a unit, e\.g\. 30s"):
        Duration().convert("30", None, None)
    with pytest.raises(click.BadParameter, match="no fractions, use a smaller unit"):
        Duration().convert("0.5", None, None)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["gate", "web", "--timeout", "soon"], "--timeout"),
        (["status", "web", "--watch", "--timeout", "5x"], "--timeout"),
        (["promote", "web", "--wait", "--timeout", "never"], "--timeout"),
        (["abort", "web", "--timeout", "-1s"], "--timeout"),
        (["run", "--shutdown-grace", "forever"], "--shutdown-grace"),
    ],
)
def test_bad_durations_are_usage_errors(kube: FakeKube, args: list[str], flag: str) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Paused")))
    before = copy.deepcopy(kube.objects)
    result = invoke(*args, "-n", "ns")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output and "is not a duration" in result.output
    assert kube.objects == before


def test_gate_gets_the_timeout_in_seconds(kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []

    def wait(_kube: Any, namespace: str, name: str, timeout: float, **_: Any) -> GateResult:
        seen.append(timeout)
        return GateResult(0, "promoted", namespace, name, revision=B)

    monkeypatch.setattr(gate_cli, "wait", wait)
    result = invoke("gate", "web", "-n", "ns", "--timeout", "1h30m", "-o", "json")
    assert result.exit_code == 0, result.output
    assert seen == [5400.0]
    assert json.loads(result.stdout)["result"] == "promoted"
    assert invoke("gate", "web", "-n", "ns").exit_code == 0 and seen[-1] == 900.0  # default 15m


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_undo_to_revision_must_be_a_revision_number(kube: FakeKube, value: str) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Succeeded", B, B)))
    kube.put(REPLICASETS, rs("web-aaaaa", TPL_A, 1))
    before = copy.deepcopy(kube.objects)
    result = invoke("undo", "web", "-n", "ns", "--to-revision", value)
    assert result.exit_code == 2 and "Invalid value for '--to-revision'" in result.output
    assert kube.objects == before


def test_run_names_the_bad_metrics_address(kube: FakeKube) -> None:
    result = CliRunner().invoke(cli.main, ["run", "--metrics-addr", "somewhere:port"])
    assert result.exit_code == 2 and "Invalid value for '--metrics-addr'" in result.output
    assert "is not HOST:PORT" in result.output


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "delivery.cli", "lint", "--no-such-flag", "x.yaml"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "No such option '--no-such-flag'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "delivery.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "promote" in done.stdout


def test_flags_work_before_and_after_the_verb(kube: FakeKube, tmp_path: Path) -> None:
    d = deployment(TPL_B, st("Paused"))
    d["metadata"]["namespace"] = "prod"
    kube.put(DEPLOYMENTS, d)
    assert invoke("-n", "prod", "status", "web").exit_code == 0
    assert invoke("status", "web", "--namespace", "prod").exit_code == 0
    assert invoke("status", "web").exit_code == 1  # default namespace has no such Deployment


# ---------------------------------------------------------------- undo


def rs(name: str, template: dict[str, Any], revision: int, owner: str = "u1") -> dict[str, Any]:
    tpl = templates.with_hash(template, name[-5:])
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": dict(tpl["metadata"]["labels"]),  # a ReplicaSet carries its pods' labels
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "uid": owner, "controller": True}],
        },
        "spec": {"replicas": 0, "template": tpl},
    }


def test_previous_revision_picks_newest_other_template() -> None:
    tpl_c = copy.deepcopy(TPL_B)
    tpl_c["spec"]["containers"][0]["image"] = "web:v3"
    d = deployment(TPL_B, st("Succeeded", B, B))
    sets = [
        rs("web-aaaaa", TPL_A, 1),
        rs("web-bbbbb", TPL_B, 3),
        rs("web-ccccc", tpl_c, 2),
        rs("x-ddddd", tpl_c, 9, owner="someone-else"),
    ]
    chosen, why = previous_revision(d, sets)
    assert chosen["metadata"]["name"] == "web-ccccc" and why == "revision 2"
    # a revision deliver rolled back is skipped
    d = deployment(TPL_B, st("Succeeded", B, B, failedRevision=templates.revision(tpl_c)))
    assert previous_revision(d, sets)[0]["metadata"]["name"] == "web-aaaaa"
    assert previous_revision(d, sets, to_revision=2)[0] is None  # the failed one: retry, not undo
    assert previous_revision(d, sets, to_revision=1)[0]["metadata"]["name"] == "web-aaaaa"
    assert previous_revision(d, sets, to_revision=3)[0] is None
    assert previous_revision(d, [rs("web-bbbbb", TPL_B, 3)])[0] is None


def test_undo_writes_the_previous_template(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Succeeded", B, B)))
    kube.put(REPLICASETS, rs("web-aaaaa", TPL_A, 1))
    kube.put(REPLICASETS, rs("web-bbbbb", TPL_B, 2))
    result = invoke("undo", "web", "-n", "ns")
    assert result.exit_code == 0, result.output
    template = kube.objects[("deployments", "ns", "web")]["spec"]["template"]
    assert templates.revision(template) == A
    assert "pod-template-hash" not in template["metadata"]["labels"]


def test_undo_refused_during_a_delivery(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing")))
    kube.put(REPLICASETS, rs("web-aaaaa", TPL_A, 1))
    before = copy.deepcopy(kube.objects)
    result = invoke("undo", "web", "-n", "ns")
    assert result.exit_code == 1 and "deliver abort web" in result.output
    assert kube.objects == before


# ---------------------------------------------------------------- lint


GOOD = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: good
  annotations:
    deliver.dev/strategy: canary
    deliver.dev/steps: "20,pause,50,100"
spec:
  selector: {matchLabels: {app: good}}
  template:
    metadata: {labels: {app: good}}
    spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: good}
"""


def manifest(annotations: dict[str, Any], name: str = "app", strategy_type: str | None = None) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    if strategy_type:
        doc["spec"]["strategy"] = {"type": strategy_type}
    return yaml.safe_dump(doc)


def test_lint_good_manifest(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = invoke("lint", str(path))
    assert result.exit_code == 0 and result.stdout == ""
    assert "1 annotated Deployment(s) checked, 0 invalid" in result.stderr


@pytest.mark.parametrize(
    "annotations, key",
    [
        ({"deliver.dev/strategy": "yolo"}, "deliver.dev/strategy"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/steps": "50,20"}, "deliver.dev/steps"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/steps": "0,100"}, "deliver.dev/steps"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/steps": "pause,pause,100"}, "deliver.dev/steps"),
        ({"deliver.dev/strategy": "rolling", "deliver.dev/steps": "20,100"}, "deliver.dev/steps"),
        ({"deliver.dev/strategy": "rolling", "deliver.dev/pause-at": "50,100"}, "deliver.dev/pause-at"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/interval": "soon"}, "deliver.dev/interval"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/interval": "0s"}, "deliver.dev/interval"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/progress-deadline": "1s"}, "deliver.dev/progress-deadline"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/auto-rollback": "maybe"}, "deliver.dev/auto-rollback"),
        ({"deliver.dev/strategy": "blue-green", "deliver.dev/auto-promote": "2"}, "deliver.dev/auto-promote"),
        ({"deliver.dev/strategy": "blue-green", "deliver.dev/keep-warm": "forever"}, "deliver.dev/keep-warm"),
        (
            {"deliver.dev/strategy": "blue-green", "deliver.dev/active-service": "Bad_Name"},
            "deliver.dev/active-service",
        ),
        ({"deliver.dev/strategy": "blue-green", "deliver.dev/preview-service": "app"}, "deliver.dev/preview-service"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/router": "linkerd/x"}, "deliver.dev/router"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/router": "nginx"}, "deliver.dev/router"),
        ({"deliver.dev/strategy": "rolling", "deliver.dev/router": "nginx/web"}, "deliver.dev/router"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/max-restarts": "-1"}, "deliver.dev/max-restarts"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/on-inconclusive": "shrug"}, "deliver.dev/on-inconclusive"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/max-extensions": "x"}, "deliver.dev/max-extensions"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/colour": "blue"}, "deliver.dev/colour"),
        ({"deliver.dev/strategy": "recreate"}, "deliver.dev/strategy"),  # needs spec.strategy.type Recreate
        ({"deliver.dev/strategy": "canary", "deliver.dev/max-restarts": 3}, "deliver.dev/max-restarts"),
        ({"deliver.dev/strategy": "canary", "deliver.dev/analysis": "Error_Rate"}, "deliver.dev/analysis"),
        (
            {
                "deliver.dev/strategy": "canary",
                "deliver.dev/analysis": "error-rate",
                "deliver.dev/analysis-alpha": "0.9",
            },
            "deliver.dev/analysis-alpha",
        ),
        (
            {
                "deliver.dev/strategy": "canary",
                "deliver.dev/analysis": "error-rate",
                "deliver.dev/analysis-metrics": "grpc",
            },
            "deliver.dev/analysis-metrics",
        ),
        (
            {
                "deliver.dev/strategy": "canary",
                "deliver.dev/analysis": "error-rate",
                "deliver.dev/analysis.error-rate": "colour=blue",
            },
            "deliver.dev/analysis.error-rate",
        ),
        ({"deliver.dev/strategy": "canary", "deliver.dev/analysis": "queue-depth"}, "deliver.dev/analysis"),
    ],
)
def test_lint_catches_each_invalid_annotation(tmp_path: Path, annotations: dict[str, Any], key: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD + "---\n" + manifest(annotations))
    result = invoke("lint", str(path), "-o", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    bad = [r for r in data["results"] if not r["valid"]]
    assert [r["name"] for r in bad] == ["app"]
    assert key in [p["key"] for p in bad[0]["problems"]]


def test_lint_recreate_with_recreate_type_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(manifest({"deliver.dev/strategy": "recreate"}, strategy_type="Recreate"))
    assert invoke("lint", str(path)).exit_code == 0


def test_lint_reads_stdin_lists_and_reports_yaml_errors(tmp_path: Path) -> None:
    listed = yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(manifest({"deliver.dev/strategy": "nope"}))]}
    )
    result = invoke("lint", "-", stdin=listed)
    assert result.exit_code == 1 and "deliver.dev/strategy" in result.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Deployment\n  bad: [indent\n")
    result = invoke("lint", str(broken))
    assert result.exit_code == 1 and "not valid YAML" in result.stdout
    assert invoke("lint", str(tmp_path / "missing.yaml")).exit_code == 2


def test_lint_warns_about_ignored_annotations(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(manifest({"deliver.dev/steps": "20,100"}))
    result = invoke("lint", str(path))
    assert result.exit_code == 0 and "no deliver.dev/strategy" in result.stderr


# ---------------------------------------------------------------- run flags


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--leader-elect", "--lease-duration", "5s", "--renew-deadline", "10s"],
        ["run", "--metrics-addr", "somewhere:port"],
        ["run", "--retry-period", "often"],
        ["run", "--workers", "0"],
        ["run", "--workers", "-2"],
        ["run", "--workers", "many"],
        ["run", "--workers", "1000"],
        ["run", "--egress-deny-cidr", "10.96.0.0/33"],
        ["run", "--egress-allow-cidr", "everything"],
        ["run", "--egress-allow-host", "https://hooks.example.com/x"],
        ["run", "--hook-calls-per-namespace", "0"],
        ["run", "--notify-senders", "0"],
    ],
)
def test_run_rejects_bad_flags_with_2(kube: FakeKube, args: list[str]) -> None:
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("args, workers", [([], 16), (["--workers", "7"], 7)])
def test_run_starts_the_workers_asked_for(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch, args: list[str], workers: int
) -> None:
    from delivery.engine.controller import Controller

    seen: list[tuple[int, Any]] = []

    def instead_of_running(self: Controller) -> None:
        seen.append((self.workers, self.reconciler.pool))
        raise RuntimeError("stop here")  # before run() would exit the process

    monkeypatch.setattr(Controller, "run", instead_of_running)
    monkeypatch.setattr("signal.signal", lambda *_args: None)  # keep pytest's handlers
    monkeypatch.setattr("delivery.logs.setup", lambda **_kwargs: None)  # and its logging
    result = CliRunner().invoke(cli.main, ["run", "--metrics-addr", "0", *args])
    assert isinstance(result.exception, RuntimeError), result.output
    [(count, pool)] = seen
    assert count == workers and pool is not None
    pool.shutdown()


def test_run_hands_the_egress_policy_and_fairness_limits_to_hooks_and_notifications(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delivery.engine.controller import Controller

    seen: list[Any] = []

    def instead_of_running(self: Controller) -> None:
        seen.append((self.reconciler.hook_pool, self.reconciler.notifier))
        raise RuntimeError("stop here")

    monkeypatch.setattr(Controller, "run", instead_of_running)
    monkeypatch.setattr("signal.signal", lambda *_args: None)
    monkeypatch.setattr("delivery.logs.setup", lambda **_kwargs: None)
    args = [
        "--egress-allow-host=*.ci.svc",
        "--egress-allow-cidr=127.0.0.0/8",
        "--egress-deny-cidr=10.96.0.0/12",
        "--egress-deny-cidr=10.244.0.0/16",
        "--no-egress-public",
        "--hook-calls-per-namespace=3",
        "--notify-senders=6",
        "--notify-queue-per-namespace=20",
    ]
    result = CliRunner().invoke(cli.main, ["run", "--metrics-addr", "0", *args])
    assert isinstance(result.exception, RuntimeError), result.output
    [(hook_pool, notifier)] = seen
    policy = hook_pool.egress
    assert policy is notifier.egress and policy.allow_hosts == ("*.ci.svc",) and not policy.public
    assert [str(n) for n in policy.deny_cidrs] == ["10.96.0.0/12", "10.244.0.0/16"]
    assert [str(n) for n in policy.allow_cidrs] == ["127.0.0.0/8"]
    assert hook_pool._limiter.limit == 3 and len(notifier._threads) == 6 and notifier.per_namespace == 20
    hook_pool.shutdown()
    notifier.stop()


def test_live_view_renders_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from delivery import output

    status = {
        "namespace": "ns",
        "name": "web",
        "phase": "Paused",
        "strategy": "canary",
        "step": 1,
        "weight": 34,
        "ready": 3,
        "replicas": 3,
        "revision": "r2",
        "stableRevision": "r1",
        "message": "manual promotion at step 2: waiting for `deliver promote web`",
        "problems": [],
        "verdicts": [{"step": 0, "outcome": "pass", "summary": "health ok"}],
    }
    buf = io.StringIO()
    Console(file=buf, width=100, no_color=True).print(output.render_rich(status))
    text = buf.getvalue()
    assert "ns/web  Paused" in text and "34%" in text and "manual promotion" in text and "pass: health ok" in text
    view = output.progress_view(False, False, stream=buf)
    assert isinstance(view, output.EventPrinter)  # not a terminal: plain lines


# ---------------------------------------------------------------- issue 10 defect 7: gate pins the revision it gates


def rolled_back_an_hour_ago() -> dict[str, Any]:
    state = st("RolledBack", B, A, finished=1.0, failedRevision=B, failedTemplate=TPL_B, message="crash loop")
    return deployment(TPL_A, state)


@pytest.mark.parametrize("pin", [[], ["--revision", B], ["--image", "web:v2"], ["--manifest", "MANIFEST"]])
def test_gate_started_late_fails_for_a_rolled_back_change(kube: FakeKube, tmp_path: Any, pin: list[str]) -> None:
    kube.put(DEPLOYMENTS, rolled_back_an_hour_ago())
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        json.dumps({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": TPL_B}})  # JSON is YAML
    )
    args = [str(manifest) if a == "MANIFEST" else a for a in pin]
    result = invoke("gate", "web", "-n", "ns", "-o", "json", *args)
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["revision"] == B and "crash loop" in out["reason"]


def test_gate_pinned_to_a_revert_is_nothing_to_deliver(kube: FakeKube) -> None:
    kube.put(DEPLOYMENTS, rolled_back_an_hour_ago())
    assert invoke("gate", "web", "-n", "ns", "--revision", A).exit_code == 0
    assert invoke("gate", "web", "-n", "ns", "--image", "web:v1").exit_code == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--revision", "abc"], "not a template revision"),
        (["--revision", "AAAAAAAAAA"], "not a template revision"),
        (["--image", ""], "not an image reference"),
        (["--image", "web: v2"], "not an image reference"),
        (["--manifest", "/nonexistent/web.yaml"], "--manifest"),
        (["--manifest", "NOT_A_DEPLOYMENT"], "no Deployment named web"),
        (["--revision", B, "--image", "web:v2"], "at most one"),
    ],
)
def test_gate_bad_pins_are_usage_errors(kube: FakeKube, tmp_path: Any, args: list[str], words: str) -> None:
    kube.put(DEPLOYMENTS, rolled_back_an_hour_ago())
    other = tmp_path / "svc.yaml"
    other.write_text("kind: Service\nmetadata: {name: web}\n")
    args = [str(other) if a == "NOT_A_DEPLOYMENT" else a for a in args]
    result = invoke("gate", "web", "-n", "ns", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output
