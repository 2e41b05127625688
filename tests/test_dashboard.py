"""``deliver dashboard`` without a cluster: rendering, live updates and operator requests on the one fake API."""

from __future__ import annotations

import copy
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from delivery import cli, output
from delivery.cli.request_rules import check_request
from delivery.dashboard import Dashboard, serve
from delivery.dashboard.data import collect
from delivery.dashboard.render import charts_html, detail_html, list_html, page
from delivery.dashboard.server import DashboardServer, stop
from delivery.errors import Forbidden, KubeError
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS
from delivery.spec import REQUEST
from tests.fakekube import FakeKube
from tests.test_gate import TPL_A, TPL_B, A, B, deployment, st


def put_versions(kube: FakeKube) -> None:
    """The stable ReplicaSet (2 ready pods) and deliver's new one (1 pod, not ready, 3 restarts)."""
    for name, tpl, owner, pods in (
        ("web-a", TPL_A, True, [(True, 0), (True, 0)]),
        ("web-b", TPL_B, False, [(False, 3)]),
    ):
        rs = {
            "metadata": {"name": name, "namespace": "ns", "uid": f"rs-{name}", "labels": {"app": "web"}},
            "spec": {
                "replicas": len(pods),
                "selector": {"matchLabels": {"app": "web"}},
                "template": copy.deepcopy(tpl),
            },
        }
        if owner:
            rs["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": "web", "uid": "u1", "controller": True}]
        else:
            rs["metadata"]["labels"]["deliver.dev/owner"] = "web"
        kube.put(REPLICASETS, rs)
        for i, (ready, restarts) in enumerate(pods):
            kube.put(
                PODS,
                {
                    "metadata": {
                        "name": f"{name}-{i}",
                        "namespace": "ns",
                        "labels": {"app": "web"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": name, "uid": f"rs-{name}"}],
                    },
                    "spec": tpl["spec"],
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                        "containerStatuses": [{"name": "app", "restartCount": restarts}],
                    },
                },
            )


VERDICT = {
    "step": 0,
    "outcome": "pass",
    "summary": "error-rate pass",
    "at": 1000.0,
    "details": {
        "outcome": "pass",
        "window": [900.0, 1000.0],
        "checks": [
            {"name": "error-rate", "outcome": "pass", "e": 25.5, "n": [120, 118], "critical": True, "msg": "ok"}
        ],
    },
}


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing", step=1, weight=50, started=900.0, verdicts=[VERDICT])))
    put_versions(fake)
    return fake


# ---------------------------------------------------------------- rendering


def test_list_shows_every_delivery_with_the_status_colours(kube: FakeKube) -> None:
    other = deployment(TPL_A, st("RolledBack", failedRevision=B))
    other["metadata"].update(name="api<x>", uid="u2")
    kube.put(DEPLOYMENTS, other)
    plain = deployment(TPL_A)
    plain["metadata"].update(name="plain", uid="u3", annotations={})
    kube.put(DEPLOYMENTS, plain)
    snap = collect(kube, "ns", now=960.0)
    html = list_html(snap, "ns/web")
    assert [d.key for d in snap.deliveries] == ["ns/api<x>", "ns/web"]  # not the unannotated one
    assert "plain" not in html
    assert "api&lt;x&gt;" in html and "api<x>" not in html  # escaped
    assert f'class="phase c-{output.PHASE_STYLE["Progressing"]}">Progressing' in html
    assert f'class="phase c-{output.PHASE_STYLE["RolledBack"]}">RolledBack' in html
    assert '<td class="step">2</td><td class="weight">50%</td>' in html
    assert "<td>60s</td>" in html  # age: started 60 s before


def test_detail_shows_ladder_pods_per_version_and_verdict_numbers(kube: FakeKube) -> None:
    snap = collect(kube, "ns")
    d = snap.find("ns/web")
    assert d is not None
    assert [(r.label, r.where) for r in d.ladder] == [("20%", "done"), ("50%", "current"), ("100%", "todo")]
    assert [(v.role, v.revision, v.ready, v.not_ready, v.restarts) for v in d.versions] == [
        ("new", B, 0, 1, 3),
        ("stable", A, 2, 0, 0),
    ]
    html = detail_html(snap, "ns/web", read_only=False)
    assert '<li class="rung current">2. 50%</li>' in html
    assert "e-value 25.5" in html and "samples canary 120 baseline 118" in html
    assert 'data-verb="promote"' in html and 'data-verb="abort"' in html
    assert 'data-verb="promote"' not in detail_html(snap, "ns/web", read_only=True)


def test_chart_has_one_point_per_analysed_window() -> None:
    verdicts = []
    for i, e in enumerate((1.5, 4.0, 30.0)):
        v = copy.deepcopy(VERDICT)
        v["details"]["window"] = [900.0, 1000.0 + 60 * i]
        v["details"]["checks"][0]["e"] = e
        verdicts.append(v)
    svg = charts_html(verdicts)
    assert svg.count("<circle") == 3 and "3 analysed windows" in svg
    assert "<title>1.47712 (pass)</title>" in svg  # log10(30)
    assert "threshold" not in svg  # the record does not say where it fails
    assert 'class="chart rates"' not in svg  # nor the rates
    verdicts[-1]["details"]["checks"][0].update(outcome="fail", e=1e12, msg="e=1e12 >= 40, 10% vs 1%")
    assert "threshold" not in charts_html(verdicts)  # the message's text is not read
    verdicts[-1]["details"]["checks"][0]["fail_at"] = 40
    assert 'class="threshold"' in charts_html(verdicts) and "fails at e ≥ 40" in charts_html(verdicts)


def test_chart_draws_every_look_point_and_the_rates_with_their_bound() -> None:
    # the record's look points of this delivery (strategies.evidence.LookPoint.to_list) and step verdicts
    looks = {"error-rate": [[1000.0 + 30 * i, 0, "inconclusive", 2.0**i, 0.01 * i, 0.005, 1.5] for i in range(1, 6)]}
    final = copy.deepcopy(VERDICT)
    final.update(outcome="fail", at=1150.0)  # the fifth look failed: it is also the step's verdict
    final["details"]["window"] = [900.0, 1150.0]
    final["details"]["checks"][0].update(outcome="inconclusive", e=32.0, fail_at=40, rate=[0.05, 0.005], bound=1.5)
    earlier = copy.deepcopy(VERDICT)  # a step verdict before the looks
    earlier["details"]["checks"][0].update(rate=[0.004, 0.005], bound=0.2)
    html = charts_html([earlier, final], looks)
    evidence, rates = html.split('<figure class="chart rates"')
    assert evidence.count("<circle") == 6 and "6 analysed windows" in evidence  # 5 looks + the earlier verdict
    assert "fails at e ≥ 40" in evidence
    assert rates.count("<circle") == 6 and rates.count('class="bound"') == 6
    assert "canary 1% vs baseline 0.5%, effect bound +150% (canary ≤ 1.25%)" in rates
    assert "canary 0.4% vs baseline 0.5%, effect bound +20% (canary ≤ 0.6%)" in rates
    assert rates.count('class="baseline"') == 7  # its line and a tick at each window


def test_detail_charts_the_records_look_points(kube: FakeKube) -> None:
    d = kube.get(DEPLOYMENTS, "ns", "web")
    record = json.loads(d["metadata"]["annotations"]["deliver.dev/state"])
    record["looks"] = {"error-rate": [[1010.0 + i, 0, "pass", 3.0, 0.01, 0.01, 0.3] for i in range(4)]}
    d["metadata"]["annotations"]["deliver.dev/state"] = json.dumps(record)
    kube.put(DEPLOYMENTS, d)
    html = detail_html(collect(kube, "ns"), "ns/web", read_only=True)
    assert "5 analysed windows" in html  # the verdict and four looks


def test_all_namespaces_and_a_request_outside_the_namespace(kube: FakeKube) -> None:
    other = deployment(TPL_B, st("Paused", hold="Operator"))
    other["metadata"].update(namespace="prod", uid="u9")
    kube.put(DEPLOYMENTS, other)
    assert [d.key for d in collect(kube, None).deliveries] == ["ns/web", "prod/web"]
    assert [d.key for d in collect(kube, "ns").deliveries] == ["ns/web"]
    status, message = Dashboard(kube, "ns", check_request).request("prod", "web", "resume")
    assert status == 400 and "namespace ns only" in message
    status, message = Dashboard(kube, None, check_request).request("prod", "web", "resume")
    assert status == 200, message


def test_forbidden_and_unreachable_are_shown(kube: FakeKube) -> None:
    kube.fail_next(Forbidden("GET deployments: 403 Forbidden: nope", status=403), verb="list")
    snap = collect(kube, "ns")
    assert snap.forbidden and "Forbidden" in snap.error
    html = page(snap, "", "t", read_only=False)
    assert "Cannot read the cluster." in html and "Forbidden: your kubeconfig" in html
    kube.fail_next(KubeError("GET deployments: API server unreachable: refused"), verb="list")
    snap = collect(kube, "ns")
    assert not snap.forbidden and "API server unreachable" in snap.error


def test_invalid_annotations_are_shown(kube: FakeKube) -> None:
    bad = deployment(TPL_B, st("Progressing"), annotations={"deliver.dev/steps": "50,20"})
    kube.put(DEPLOYMENTS, bad)
    snap = collect(kube, "ns")
    assert "Invalid" in list_html(snap, "")
    assert "invalid annotation, deliver takes no action: deliver.dev/steps" in detail_html(snap, "ns/web", False)


# ---------------------------------------------------------------- the server


@pytest.fixture
def server(kube: FakeKube) -> Iterator[DashboardServer]:
    srv = serve(Dashboard(kube, "ns", check_request, interval=0.05), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    stop(srv)


def call(
    srv: DashboardServer, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def page_headers(srv: DashboardServer) -> dict[str, str]:
    port = srv.server_address[1]
    return {
        "Content-Type": "application/json",
        "X-Deliver-Token": srv.dashboard.token,
        "Origin": f"http://127.0.0.1:{port}",
    }


def pending(kube: FakeKube) -> str:
    raw = kube.objects[("deployments", "ns", "web")]["metadata"]["annotations"].get(REQUEST)
    return str(json.loads(raw)["verb"]) if raw else ""


def test_page_and_static_files_are_served(server: DashboardServer) -> None:
    status, html = call(server, "GET", "/?d=ns/web")
    assert status == 200 and server.dashboard.token in html and '<li class="rung current">2. 50%</li>' in html
    assert call(server, "GET", "/static/dashboard.js")[0] == 200
    assert call(server, "GET", "/static/../server.py")[0] == 404


def test_a_button_writes_the_same_request_as_the_verb(server: DashboardServer, kube: FakeKube) -> None:
    status, text = call(
        server, "POST", "/api/request", {"namespace": "ns", "name": "web", "verb": "pause"}, page_headers(server)
    )
    assert status == 200, text
    assert json.loads(text)["message"].startswith("pause requested for ns/web (request ")
    assert pending(kube) == "pause"


def test_a_refused_request_says_what_the_cli_says_and_changes_nothing(server: DashboardServer, kube: FakeKube) -> None:
    before = copy.deepcopy(kube.objects)
    dep = kube.get(DEPLOYMENTS, "ns", "web")
    status, text = call(
        server, "POST", "/api/request", {"namespace": "ns", "name": "web", "verb": "resume"}, page_headers(server)
    )
    assert status == 409 and json.loads(text)["message"] == check_request(dep, "resume")
    assert kube.objects == before


@pytest.mark.parametrize(
    "change",
    [
        {"X-Deliver-Token": "wrong"},
        {"X-Deliver-Token": ""},
        {"Origin": "http://evil.example"},
        {"Content-Type": "text/plain"},
        {"Host": "evil.example:80"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_posts_not_from_the_page_are_refused(server: DashboardServer, kube: FakeKube, change: dict[str, str]) -> None:
    before = copy.deepcopy(kube.objects)
    headers = dict(page_headers(server), **change)
    status, _ = call(server, "POST", "/api/request", {"namespace": "ns", "name": "web", "verb": "pause"}, headers)
    assert status == 403
    assert kube.objects == before


def test_read_only_hides_buttons_and_refuses_requests(kube: FakeKube) -> None:
    srv = serve(Dashboard(kube, "ns", check_request, read_only=True), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        _, html = call(srv, "GET", "/?d=ns/web")
        assert "data-verb" not in html and "read-only" in html
        status, text = call(
            srv, "POST", "/api/request", {"namespace": "ns", "name": "web", "verb": "pause"}, page_headers(srv)
        )
        assert status == 403 and "read-only" in text and pending(kube) == ""
    finally:
        stop(srv)


def test_a_forbidden_write_is_reported(server: DashboardServer, kube: FakeKube) -> None:
    kube.fail_next(Forbidden("PATCH deployments/web: 403 Forbidden: no", status=403), verb="patch")
    status, text = call(
        server, "POST", "/api/request", {"namespace": "ns", "name": "web", "verb": "pause"}, page_headers(server)
    )
    assert status == 403 and "Forbidden: your kubeconfig's identity may not update deployment ns/web" in text


def test_events_push_a_change(server: DashboardServer, kube: FakeKube) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/events?d=ns%2Fweb")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"

    def next_message() -> dict[str, str]:
        while True:
            line = resp.readline().decode()
            if line.startswith("data: "):
                return dict(json.loads(line[6:]))

    first = next_message()
    assert '<td class="weight">50%</td>' in first["list"]
    # the controller moves on: its record says step 3 at 100 %
    kube.put(DEPLOYMENTS, deployment(TPL_B, st("Progressing", step=2, weight=100, started=900.0)))
    for _ in range(50):
        m = next_message()
        if "list" in m and '<td class="weight">100%</td>' in m["list"]:
            break
    else:
        pytest.fail("the change was not pushed")
    assert '<li class="rung current">3. 100%</li>' in m["detail"]
    conn.close()


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize("args", [["--port", "http"], ["--port", "70000"], ["--bogus"]])
def test_bad_flags_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli.main, ["dashboard", *args])
    assert result.exit_code == 2, result.output
