"""Hostile tenants (issue 24): whoever edits a Deployment controls its ``deliver.dev/`` annotations and
its record. Every size and number read from them is bounded; bad input is no action, a Warning Event,
and other Deployments go on."""

from __future__ import annotations

import base64
import json
import tracemalloc
import zlib

import pytest

from delivery import yamlfile
from delivery.engine.state import read_state
from delivery.errors import StateError
from delivery.kube.client import DEPLOYMENTS, EVENTS
from strategies.record import DeliveryState
from tests.fixture import NAME, STATE, Fixture


def _bomb(size: int = 140 * 1024 * 1024) -> str:
    """A record whose packed stable template inflates to ``size`` bytes (zeros compress ~1000:1)."""
    packed = base64.b64encode(zlib.compress(b"0" * size, 9)).decode()
    return json.dumps({"phase": "Idle", "stableTemplatePacked": packed})


BOMB = _bomb()


def _deployment(record: str) -> dict[str, object]:
    return {"metadata": {"name": NAME, "namespace": "shop", "annotations": {STATE: record}}}


def test_a_packed_template_bomb_is_refused_in_little_memory() -> None:
    assert len(BOMB) < 200 * 1024  # fits the annotations of one object
    tracemalloc.start()
    try:
        with pytest.raises(StateError, match="stableTemplatePacked"):
            read_state(_deployment(BOMB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_a_record_over_its_size_cap_is_refused_before_it_is_parsed() -> None:
    record = json.dumps({"phase": "Idle", "message": "x" * (600 * 1024)})
    with pytest.raises(StateError, match="bytes"):
        read_state(_deployment(record))


@pytest.mark.parametrize(
    "record",
    [
        '{"phase": "Idle", "stableTemplatePacked": "not base64 at all!"}',
        json.dumps({"phase": "Idle", "stableTemplatePacked": base64.b64encode(b"not zlib").decode()}),
        json.dumps({"phase": "Idle", "failedTemplatePacked": base64.b64encode(zlib.compress(b"[1,2]")).decode()}),
        json.dumps({"phase": "Idle", "stableTemplate": "a string"}),
        '{"phase": "Idle", "looks": [1]}',
        '{"phase": "Idle", "looks": {"a": [[1]]}}',
        '{"phase": "Idle", "verdicts": [{"step": 0}]}',
        '{"phase": "Idle", "step": 1e999}',
        '{"phase": "Idle", "started": "1e999"}',
        '{"phase": "Idle", "started": NaN}',
        '{"phase": "Idle", "weight": -Infinity}',
        '{"phase": "Idle", "step": "' + "9" * 5000 + '"}',
        '{"phase": "Idle", "step": 10000000000000}',
        '{"phase": "Idle", "verdicts": [{"step": 0, "outcome": "pass", "at": Infinity}]}',
        '{"phase": "Idle", "hooks": 5}',
        '{"phase": "Idle", "hold": 5}',
        "[1, 2]",
        "[" * 100_000,
        '"just a string"',
    ],
)
def test_a_malformed_record_is_a_state_error(record: str) -> None:
    with pytest.raises(StateError):
        read_state(_deployment(record))


def test_a_record_deliver_wrote_still_reads() -> None:
    big = {"spec": {"containers": [{"name": "app", "image": "web:v1", "env": [{"name": "X", "value": "y" * 200_000}]}]}}
    state = DeliveryState(stable_template=big, started=1_767_225_600.0)
    encoded = json.dumps(state.to_dict(), separators=(",", ":"))
    assert "stableTemplatePacked" in encoded  # packed to fit the budget
    assert read_state(_deployment(encoded)).stable_template == big


def test_a_bomb_in_one_record_is_a_warning_no_action_and_others_go_on() -> None:
    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3)
    f.given_delivered()
    f.when_annotated(state=BOMB)
    f.when_template_changes("web:v2")
    before = f.deployment()
    f.kube.writes.clear()
    outcome = f.when_reconciled()  # no exception
    assert outcome.requeue_after is not None
    assert all(w.plural == EVENTS.plural for w in f.kube.writes), f.kube.writes
    [warning] = f.events("RecordRejected", "Warning")
    assert STATE in warning["message"] and "deliver takes no action" in warning["message"]
    after = f.kube.obj(DEPLOYMENTS, NAME, f.ns)
    assert after["spec"] == before["spec"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    f.when_reconciled()
    assert len(f.events("RecordRejected", "Warning")) == 1  # said once

    other = Fixture(ns="other", kube=f.kube)  # another namespace on the same API: unaffected
    other.given_deployment("canary", "web:v1", replicas=3)
    other.given_delivered()
    other.when_template_changes("web:v2")
    other.when_reconciled()
    assert other.record()["phase"] == "Progressing"


# ---- item 8: a number of 5,000 digits (or any other) in any numeric annotation is a SpecError naming its key

HUGE = "9" * 5000
CANARY_ROUTED = {"strategy": "canary", "router": "gateway-api/web", "steps": "mirror,50,100", "analysis": "error-rate"}
NUMERIC: list[tuple[dict[str, str], str]] = [
    ({"strategy": "canary", "steps": f"20,{HUGE}"}, "steps"),
    ({"strategy": "canary", "steps": f"{HUGE}%"}, "steps"),
    ({"strategy": "rolling", "pause-at": HUGE}, "pause-at"),
    ({"strategy": "canary", "interval": f"{HUGE}s"}, "interval"),
    ({"strategy": "canary", "interval": f"{HUGE}h{HUGE}m"}, "interval"),
    ({"strategy": "canary", "progress-deadline": f"{HUGE}ms"}, "progress-deadline"),
    ({"strategy": "blue-green", "keep-warm": f"{HUGE}m"}, "keep-warm"),
    ({"strategy": "canary", "max-restarts": HUGE}, "max-restarts"),
    ({"strategy": "canary", "max-extensions": HUGE}, "max-extensions"),
    ({**CANARY_ROUTED, "mirror-percent": HUGE}, "mirror-percent"),
    ({"strategy": "canary", "hook-timeout": f"{HUGE}s"}, "hook-timeout"),
    ({**CANARY_ROUTED, "scale-down-delay": f"{HUGE}s"}, "scale-down-delay"),
    ({**CANARY_ROUTED, "abort-scale-down-delay": f"{HUGE}s"}, "abort-scale-down-delay"),
    ({**CANARY_ROUTED, "analysis-every": f"{HUGE}s"}, "analysis-every"),
    ({"strategy": "canary", "analysis": "error-rate", "analysis-resolution": HUGE}, "analysis-resolution"),
    ({"strategy": "canary", "analysis": "error-rate", "analysis-resolution": f"{HUGE}m"}, "analysis-resolution"),
    ({"strategy": "canary", "analysis": "error-rate", "analysis-alpha": "0." + HUGE}, "analysis-alpha"),
    ({"strategy": "canary", "analysis": "error-rate", "analysis.error-rate": f"min-samples={HUGE}"}, "analysis"),
    ({"strategy": "canary", "analysis": "error-rate", "analysis.error-rate": f"max-effect=0.{HUGE}"}, "analysis"),
    ({"strategy": "canary", "analysis": "latency", "analysis.latency": f"quantile=0.{HUGE}"}, "analysis"),
]


@pytest.mark.parametrize(("annotations", "key"), NUMERIC, ids=[k + str(i) for i, (_, k) in enumerate(NUMERIC)])
def test_a_huge_number_in_an_annotation_is_a_spec_error_naming_its_key(annotations: dict[str, str], key: str) -> None:
    from delivery import spec
    from delivery.errors import SpecError

    deployment = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "annotations": {f"deliver.dev/{k}": v for k, v in annotations.items()},
        },
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "strategy": {"type": "RollingUpdate"}, "template": {}},
    }
    with pytest.raises(SpecError) as err:
        spec.parse(deployment)
    assert err.value.key.startswith(f"deliver.dev/{key}"), err.value
    assert len(str(err.value)) < 400, "the message shows a short form of the value"
    found = spec.problems(deployment)  # deliver lint / status list it too, without raising
    assert any(e.key.startswith(f"deliver.dev/{key}") for e in found)


def test_a_deeply_nested_or_huge_request_annotation_is_no_request() -> None:
    from delivery.engine.state import read_request
    from delivery.spec import REQUEST

    for raw in ("[" * 100_000, json.dumps({"verb": "promote", "id": "x" * 300_000})):
        assert read_request({"metadata": {"annotations": {REQUEST: raw}}}) == ("", "")


# ---- the dashboard: one bad Deployment shows an error, the others render; the poller never dies

BAD_RECORDS: dict[str, dict[str, object]] = {
    "started-inf": {"phase": "Progressing", "started": "1e999"},
    "at-nan": {"phase": "Progressing", "verdicts": [{"step": 0, "outcome": "pass", "at": float("nan")}]},
    "checks-not-objects": {
        "phase": "Progressing",
        "verdicts": [{"step": 0, "outcome": "pass", "at": 1.0, "details": {"checks": [1, "x", None]}}],
    },
    "window-garbage": {
        "phase": "Progressing",
        "verdicts": [
            {"step": 0, "outcome": "pass", "at": 1.0, "details": {"window": "x", "checks": [{"name": "a", "e": 2}]}}
        ],
    },
    "n-garbage": {
        "phase": "Progressing",
        "verdicts": [{"step": 0, "outcome": "pass", "at": 1.0, "details": {"checks": [{"name": "a", "n": 5}]}}],
    },
    "forecast-garbage": {
        "phase": "Progressing",
        "verdicts": [{"step": 0, "outcome": "pass", "at": 1.0, "details": {"forecast": [1, {"x": 1}]}}],
    },
    "looks-inf": {"phase": "Progressing", "looks": {"a": [[1.0, 0, "pass", 1e308, 1e308, 0.0, float("inf")]]}},
}


def _dashboard_kube() -> object:
    from tests.fakekube import FakeKube
    from tests.test_gate import TPL_B, deployment, st

    kube = FakeKube()
    good = deployment(TPL_B, st("Progressing", step=1, weight=50, started=900.0))
    kube.put(DEPLOYMENTS, good)
    for i, (name, record) in enumerate(BAD_RECORDS.items()):
        d = deployment(TPL_B)
        d["metadata"].update(name=name, uid=f"bad-{i}")
        d["metadata"]["annotations"][STATE] = json.dumps(record)
        kube.put(DEPLOYMENTS, d)
    return kube


def test_a_bad_record_breaks_neither_the_list_nor_the_details_of_others() -> None:
    from delivery.dashboard.data import collect
    from delivery.dashboard.render import detail_html, list_html, page

    snap = collect(_dashboard_kube(), "ns", now=960.0)  # type: ignore[arg-type]
    assert len(snap.deliveries) == 1 + len(BAD_RECORDS)
    html = list_html(snap, "ns/web")
    assert '<td class="step">2</td><td class="weight">50%</td>' in html and "<td>60s</td>" in html
    for name in BAD_RECORDS:
        assert f"ns/{name}" in html
        detail = detail_html(snap, f"ns/{name}", read_only=False)
        assert name in detail
    assert "ns/web" in page(snap, "ns/started-inf", "t", read_only=False)


def test_a_deployment_that_cannot_be_collected_is_an_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from delivery.dashboard import data
    from delivery.dashboard.render import detail_html, list_html

    real = data.status_dict

    def status_dict(deployment: dict[str, object]) -> dict[str, object]:
        if deployment["metadata"]["name"] == "n-garbage":  # type: ignore[index]
            raise RuntimeError("boom")
        return real(deployment)  # type: ignore[arg-type]

    monkeypatch.setattr(data, "status_dict", status_dict)
    snap = data.collect(_dashboard_kube(), "ns", now=960.0)  # type: ignore[arg-type]
    html = list_html(snap, "")
    assert "ns/web" in html and "ns/n-garbage" in html and "cannot be shown" in html
    assert "cannot be shown" in detail_html(snap, "ns/n-garbage", read_only=True)


def test_the_dashboard_poller_survives_a_failing_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from delivery.dashboard import server

    calls: list[int] = []

    def collect(kube: object, namespace: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in collect")
        return server.Snapshot(time.time(), "namespace ns")

    monkeypatch.setattr(server, "collect", collect)
    dash = server.Dashboard(kube=None, namespace="ns", check=lambda d, v: None, interval=0.01)  # type: ignore[arg-type]
    thread = threading.Thread(target=dash.poll, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread.is_alive() and len(calls) >= 3
    finally:
        dash.stopping.set()
        thread.join(2)


# ---- item 15: what the engine keeps in memory per Deployment is forgotten with it, and capped


def _hook_result(action: object) -> object:
    from strategies.observation import HookResult

    a = action
    return HookResult(a.kind, a.revision, a.delivery, a.token, True, "HTTP 200", 1.0)  # type: ignore[attr-defined]


def test_the_hook_pool_forgets_a_deleted_deployment_and_keeps_at_most_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from delivery.integrations import hooks
    from strategies.actions import CallHook
    from strategies.spec import HookKind

    monkeypatch.setattr(hooks, "DEPLOYMENTS_KEPT", 10)
    pool = hooks.HookPool(workers=0)
    action = CallHook(HookKind.PRE_ROLLOUT, "r1", 1.0)
    pool.call(("ns", "gone"), "u-gone", action, lambda: _hook_result(action))  # type: ignore[arg-type,return-value]
    assert pool.results(("ns", "gone"), "u-gone")
    pool.forget(("ns", "gone"))
    assert pool.results(("ns", "gone"), "u-gone") == ()
    for i in range(50):
        pool.call(("ns", f"d{i}"), f"u{i}", action, lambda: _hook_result(action))  # type: ignore[arg-type,return-value]
    assert len(pool._calls) == 10
    assert pool.results(("ns", "d0"), "u0") == () and pool.results(("ns", "d49"), "u49")


def test_the_reconciler_forgets_the_warnings_of_a_deleted_deployment_and_keeps_at_most_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from delivery.engine import reconcile
    from strategies.reasons import EventReason

    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3, steps="50,20")  # invalid: warned
    f.when_reconciled()
    assert f.events("InvalidAnnotation") and f.reconciler._warned
    f.kube.delete(DEPLOYMENTS, f.ns, NAME)
    f.when_reconciled()
    assert not f.reconciler._warned

    monkeypatch.setattr(reconcile, "WARNED_MAX", 5)
    for i in range(20):
        d = {"metadata": {"name": f"d{i}", "namespace": f.ns, "uid": f"u{i}"}}
        f.reconciler._warn_once(d, EventReason.INVALID_ANNOTATION, "bad")
    assert len(f.reconciler._warned) == 5
    newest = {"metadata": {"name": "d19", "namespace": f.ns, "uid": "u19"}}
    assert not f.reconciler._warn_once(newest, EventReason.INVALID_ANNOTATION, "bad")  # still remembered


# ---- item 14: wave files, manifests and kubeconfigs are read bounded; one API server is one cluster

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


def test_a_yaml_alias_bomb_is_refused_at_once() -> None:
    import time

    from delivery.errors import WaveFileError
    from delivery.wave.file import parse

    started = time.monotonic()
    with pytest.raises(WaveFileError, match="alias"):
        parse("wave: w\nstages: [{name: a, namespace: n, app: x}]\n" + LAUGHS)
    with pytest.raises(WaveFileError, match="bytes"):
        parse("wave: w\nstages: [{name: a, namespace: n, app: x}]\n# " + "x" * (5 * 1024 * 1024))
    assert time.monotonic() - started < 5


def test_deliver_wave_refuses_a_manifest_alias_bomb_with_exit_2(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from click.testing import CliRunner

    from delivery import cli
    from tests.test_wave import kubeconfig

    tmp = Path(str(tmp_path))
    kc = kubeconfig(tmp)
    wave = tmp / "wave.yaml"
    wave.write_text("wave: w\nstages: [{name: a, context: staging, namespace: n, app: x}]\n")
    bomb = tmp / "bomb.yaml"
    bomb.write_text("kind: Deployment\nmetadata: {name: x}\n" + LAUGHS)
    r = CliRunner().invoke(cli.main, ["--kubeconfig", str(kc), "wave", str(wave), "--lint", "--manifest", str(bomb)])
    assert r.exit_code == 2 and "alias" in r.output, r.output


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://127.0.0.1:6443", "https://localhost:6443/"),
        ("https://API.Example.com:6443", "https://api.example.com:6443"),
        ("https://api.example.com", "https://api.example.com:443/"),
        ("HTTPS://api.example.com/", "https://api.example.com"),
        ("https://[::1]:6443", "https://127.0.0.1:6443"),
    ],
)
def test_two_spellings_of_one_api_server_are_a_stage_twice(
    tmp_path: pytest.TempPathFactory, one: str, other: str
) -> None:
    from pathlib import Path

    import yaml

    from delivery.errors import WaveFileError
    from delivery.wave.file import parse, resolve_clusters

    path = Path(str(tmp_path)) / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "a", "cluster": {"server": one}}, {"name": "b", "cluster": {"server": other}}],
                "contexts": [{"name": "a", "context": {"cluster": "a"}}, {"name": "b", "context": {"cluster": "b"}}],
            }
        )
    )
    w = parse(
        "wave: w\nstages: [{name: a, context: a, namespace: n, app: x}, {name: b, context: b, namespace: n, app: x}]"
    )
    with pytest.raises(WaveFileError, match="a stage twice"):
        resolve_clusters(w, str(path))


def test_two_names_of_one_cluster_are_a_stage_twice_at_run_time() -> None:
    from delivery.wave.clusters import preflight
    from delivery.wave.file import Change, parse
    from tests.fakekube import FakeKube
    from tests.test_gate import TPL_A, A, deployment, st

    one = FakeKube()  # one API server, reached as https://api.internal and as https://10.0.0.1 (say)
    one.put(DEPLOYMENTS, deployment(TPL_A, st("Idle", A, A)))
    other = FakeKube()
    other_dep = deployment(TPL_A, st("Idle", A, A))
    other_dep["metadata"]["uid"] = "u-elsewhere"
    other.put(DEPLOYMENTS, other_dep)
    w = parse(
        "wave: w\nstages: [{name: a, context: a, namespace: ns, app: web},"
        " {name: b, context: b, namespace: ns, app: web}, {name: c, context: c, namespace: ns, app: web}]"
    )
    problems = preflight(w, Change(images=(("", "web:v2"),)), {"a": one, "b": one, "c": other})
    assert [p for p in problems if "a stage twice" in p] == [
        "stage b: deployment ns/web is the very object stage a reads (uid u1): the two stages are one cluster "
        "under two names (a stage twice)"
    ], problems


def test_a_rejected_record_is_not_inflated_nor_logged_again_while_it_is_unchanged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # e2e/hostile.py: a tenant changing a bombed Deployment's template every 2 s made the controller
    # pass over it ~13 times a second (its ReplicaSets' and pods' events), each pass inflating the
    # packed template up to PACKED_MAX again (3 ms) and logging a warning: 840 lines a minute.
    import delivery.engine.reconcile as reconcile

    reads: list[object] = []

    def counting(deployment: dict[str, object]) -> DeliveryState:
        reads.append(deployment)
        return read_state(deployment)  # type: ignore[arg-type]

    monkeypatch.setattr(reconcile, "read_state", counting)
    f = Fixture()
    f.given_deployment("canary", "web:v1", replicas=3)
    f.given_delivered()
    f.when_annotated(state=BOMB)
    f.when_template_changes("web:v2")
    reads.clear()
    with caplog.at_level("WARNING", logger="deliver.reconcile"):
        for _ in range(5):
            f.when_reconciled()
    assert len(reads) == 1
    assert sum(r.getMessage() == "record unreadable" for r in caplog.records) == 1
    assert len(f.events("RecordRejected", "Warning")) == 1
    # another record is read again (and so is one made readable)
    f.when_annotated(state=json.dumps({"phase": "Idle", "started": "1e999"}))
    f.when_reconciled()
    assert len(reads) == 2
    f.when_annotated(state=json.dumps({"phase": "Idle"}))
    f.when_reconciled()
    assert len(reads) == 3


@pytest.mark.parametrize(
    "forecast",
    [[{"fail": "x"}], [{"rate": "nan?"}], ["not a dict"], {"a": 1}, [{"fail": 10**400}], [{"pass": float("inf")}]],
)
def test_deliver_status_survives_a_garbage_forecast_in_the_record(forecast: object) -> None:
    from delivery.cli.view import forecast_lines

    s = {"phase": "Progressing", "verdicts": [{"details": {"forecast": forecast}}]}
    assert all(line.startswith("  time to verdict") for line in forecast_lines(s))  # and nothing raised


def test_the_analysis_pool_forgets_a_deleted_deployment() -> None:
    import threading

    from delivery.engine.background import AnalysisPool
    from strategies.actions import Analyse
    from strategies.evidence import StepVerdict

    release = threading.Event()
    pool = AnalysisPool(workers=1)
    f = Fixture()
    f.reconciler.pool = pool
    f.given_deployment("canary", "web:v1", replicas=3)
    key = (f.ns, NAME)

    def run() -> StepVerdict:
        release.wait(5)
        return StepVerdict(step=0, outcome="pass", summary="ok", at=0.0)

    assert pool.verdict(key, "uid", Analyse(step=0, start=0.0), run) is None  # asked: one job kept for the key
    assert len(pool) == 1
    f.kube.delete(DEPLOYMENTS, f.ns, NAME)
    f.when_reconciled()
    release.set()
    assert len(pool) == 0, "the job of a deleted Deployment is dropped"
    pool.shutdown()


def test_lint_reads_stdin_bounded() -> None:
    import io
    import sys

    from delivery.cli.lint import read_manifest
    from delivery.yamlfile import YAML_MAX

    class Endless(io.TextIOBase):
        served = 0

        def read(self, size: int | None = -1) -> str:
            if size is None or size < 0:
                raise MemoryError("read whole")
            self.served += size
            return "#" * size

    old = sys.stdin
    sys.stdin = Endless()
    try:
        docs, finding = read_manifest("-")
    finally:
        sys.stdin = old
    assert docs == [] and finding is not None and f"more than {YAML_MAX} bytes" in str(finding["problems"])


@pytest.mark.parametrize("number", ["9" * 5000, "0x" + "f" * 4000, "-" + "1" * 71])
def test_a_yaml_number_python_cannot_print_is_refused_by_the_loader(number: str) -> None:
    """Over 4,300 digits, str() of an int raises ValueError: it escaped ``except yaml.YAMLError``."""
    with pytest.raises(yamlfile.Refused, match="more than 70 digits"):
        yamlfile.load(f"replicas: {number}\n")
    assert yamlfile.load(f"replicas: {'1' * 19}\n") == {"replicas": int("1" * 19)}
