"""deliver wave: the wave file, its validation, observing a stage, the plan, and runs against fake clusters."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from delivery import cli, junit, templates
from delivery.errors import KubeError, WaveBusy, WaveFileError
from delivery.kube.client import DEPLOYMENTS, LEASES, REPLICASETS
from delivery.kube.lease import micro_time
from delivery.spec import STATE
from delivery.wave.file import (
    Change,
    OnFailure,
    Stage,
    Wave,
    parse,
    parse_image,
    resolve_clusters,
    stage_problems,
    wave_id,
)
from delivery.wave.lock import WaveLock, WaveLocks
from delivery.wave.marker import MARKER, Marker
from delivery.wave.observe import StageState, StageView, observe
from delivery.wave.plan import plan
from delivery.wave.report import WaveEvent, junit_suite
from delivery.wave.runner import WaveRunner
from tests.fakekube import FakeKube
from tests.test_gate import TPL_A, A, Clock, deployment, st

TPL_V2 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v2"}]}}
V2 = templates.revision(TPL_V2)

WAVE = """
wave: web-release
on-failure: rollback
timeout: 10m
soak: 30s
stages:
  - name: staging
    context: staging
    namespace: shop
    app: web
    overrides: {steps: "50,100", interval: 5s}
    soak: 0s
  - name: eu-1
    context: eu-1
    namespace: shop
    app: web
  - parallel:
      - {name: us-1, context: us-1, namespace: shop, app: web, timeout: 20m}
      - {name: us-2, context: us-2, namespace: shop, app: web}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(WaveFileError) as info:
        parse(text)
    return info.value.problems


# ---------------------------------------------------------------- the file


def test_parse_stages_groups_and_defaults() -> None:
    w = parse(WAVE)
    assert w.name == "web-release" and w.on_failure is OnFailure.ROLLBACK
    assert [[s.name for s in g] for g in w.groups] == [["staging"], ["eu-1"], ["us-1", "us-2"]]
    staging, eu = w.stage("staging"), w.stage("eu-1")
    assert staging.overrides == (("deliver.dev/interval", "5s"), ("deliver.dev/steps", "50,100"))
    assert (staging.soak, eu.soak) == (0.0, 30.0)  # the wave's soak is every stage's default
    assert (eu.timeout, w.stage("us-1").timeout) == (600.0, 1200.0)
    assert parse("wave: w\nstages: [{name: a, namespace: n, app: x}]").on_failure is OnFailure.ROLLBACK


@pytest.mark.parametrize(
    "text, expected",
    [
        ("wave: w\nstages: []", "stages: a non-empty list"),
        ("wave: w\non-failure: retry\nstages: [{name: a, namespace: n, app: x}]", "not rollback or hold"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, soak: soon}]", "stages[0].soak (stage a)"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, clutser: c}]", "unknown field"),
        ("wave: w\nstages: [{name: a, namespace: n}]", "stages[0].app (stage a): missing"),
        ("wave: w\nstages: [{name: A!, namespace: n, app: x}]", "not a name"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x}, {name: a, namespace: m, app: x}]", "named 2 times"),
        (
            "wave: w\nstages: [{name: a, context: c, namespace: n, app: x}, "
            "{name: b, context: c, namespace: n, app: x}]",
            "a stage twice",
        ),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: {colour: red}}]", "not a deliver.dev/*"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: {state: '{}'}}]", "not a deliver.dev/*"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: {strategy: canary}}]", "Deployment's own"),
        ("wave: w\nstages: [{parallel: [], name: x}]", "`parallel` takes"),
        ("stages: [{name: a, namespace: n, app: x}]", "wave: missing"),
        ("- just a list", "a mapping"),
    ],
)
def test_invalid_wave_files_are_refused_with_the_reason(text: str, expected: str) -> None:
    found = problems_of(text)
    assert any(expected in p for p in found), found


def test_every_problem_is_listed_at_once() -> None:
    found = problems_of("wave: w\non-failure: x\nstages: [{name: a, namespace: n}, {name: a, namespace: n, app: y}]")
    assert len(found) == 3, found


def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "a", "cluster": {"server": "https://a:6443"}},
                    {"name": "b", "cluster": {"server": "https://b:6443"}},
                ],
                "contexts": [
                    {"name": "staging", "context": {"cluster": "a", "user": "u"}},
                    {"name": "eu-1", "context": {"cluster": "b", "user": "u"}},
                    {"name": "eu-1-again", "context": {"cluster": "b", "user": "u"}},
                ],
                "current-context": "staging",
            }
        )
    )
    return path


def test_contexts_are_checked_offline(tmp_path: Path) -> None:
    kc = kubeconfig(tmp_path)
    ok = parse("wave: w\nstages: [{name: a, context: staging, namespace: n, app: x}, {name: b, namespace: m, app: x}]")
    refs = resolve_clusters(ok, str(kc))
    assert refs["a"].server == "https://a:6443" and refs["b"].context == "staging"  # current context
    bad = parse(
        "wave: w\nstages: [{name: a, context: nope, namespace: n, app: x}, {name: b, kubeconfig: missing, "
        "namespace: n, app: x}]"
    )
    with pytest.raises(WaveFileError) as info:
        resolve_clusters(bad, str(kc))
    assert any("unknown context 'nope'" in p and "eu-1, eu-1-again, staging" in p for p in info.value.problems)
    assert any("stage b: cannot read kubeconfig" in p for p in info.value.problems)


def test_two_contexts_of_one_server_are_a_stage_twice(tmp_path: Path) -> None:
    w = parse(
        "wave: w\nstages: [{name: a, context: eu-1, namespace: n, app: x}, {name: b, context: eu-1-again, "
        "namespace: n, app: x}]"
    )
    with pytest.raises(WaveFileError) as info:
        resolve_clusters(w, str(kubeconfig(tmp_path)))
    assert "is stage a already (a stage twice)" in info.value.problems[0]


# ---------------------------------------------------------------- the change


def test_image_flags() -> None:
    assert parse_image("web:v2") == ("", "web:v2")
    assert parse_image("app=registry:5000/web:v2") == ("app", "registry:5000/web:v2")
    for bad in ("", "app=", "Bad_Name=x", "a b"):
        with pytest.raises(ValueError):
            parse_image(bad)


def test_the_change_applied_to_a_template() -> None:
    stage = Stage("a", "ns", "web")
    two = copy.deepcopy(TPL_A)
    two["spec"]["containers"].append({"name": "proxy", "image": "envoy:1"})
    assert Change((("", "web:v2"),)).template_for(stage, TPL_A) == TPL_V2
    assert Change((("proxy", "envoy:2"),)).template_for(stage, two)["spec"]["containers"][1]["image"] == "envoy:2"
    with pytest.raises(ValueError, match="say which"):
        Change((("", "web:v2"),)).template_for(stage, two)
    with pytest.raises(ValueError, match="no container named 'db'"):
        Change((("db", "pg:16"),)).template_for(stage, TPL_A)
    manifest = yaml.safe_dump({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": TPL_V2}})
    assert Change(manifest=manifest).template_for(stage, TPL_A) == TPL_V2
    with pytest.raises(ValueError, match="no Deployment api"):
        Change(manifest=manifest).template_for(Stage("a", "ns", "api"), TPL_A)


def test_wave_id_names_the_wave_and_the_change() -> None:
    w = parse(WAVE)
    v2, v3 = Change((("", "web:v2"),)), Change((("", "web:v3"),))
    assert wave_id(w, v2) == wave_id(parse(WAVE), Change((("", "web:v2"),)))
    assert wave_id(w, v2) != wave_id(w, v3)
    assert wave_id(w, v2) != wave_id(parse(WAVE.replace("soak: 30s", "soak: 31s")), v2)


def test_stage_problems_before_anything_is_touched() -> None:
    stage = Stage("a", "ns", "web", overrides=(("deliver.dev/pause-at", "50"),))
    plain = deployment(TPL_A)
    del plain["metadata"]["annotations"]["deliver.dev/strategy"]
    assert "not managed by deliver" in stage_problems(stage, Change((("", "x:1"),)), plain)[0]
    found = stage_problems(stage, Change((("db", "x:1"),)), deployment(TPL_A))
    assert any("pause-at" in p and "from the stage's overrides" in p for p in found)
    assert any("no container named 'db'" in p for p in found)
    assert stage_problems(Stage("a", "ns", "web"), Change((("", "x:1"),)), deployment(TPL_A)) == []


# ---------------------------------------------------------------- observing a stage

CHANGE = Change((("", "web:v2"),))
WID = "w1"


def marked(template: dict[str, Any], state: dict[str, Any] | None, **marker: Any) -> dict[str, Any]:
    d = deployment(template, state)
    m = Marker(WID, "web-release", "a", revision=V2, previous=A, **marker)
    d["metadata"]["annotations"][MARKER] = m.to_json()
    return d


@pytest.mark.parametrize(
    "dep, expected",
    [
        (deployment(TPL_A, st("Idle", A, A)), StageState.PENDING),
        (deployment(TPL_V2, st("Succeeded", V2, V2)), StageState.PASSED),  # already there, by someone else
        (deployment(TPL_V2, st("Progressing", V2, A)), StageState.PENDING),  # someone else's delivery of it
        (marked(TPL_V2, st("Progressing", V2, A), applied_at=10), StageState.DELIVERING),
        (marked(TPL_V2, st("Succeeded", V2, V2), applied_at=10, passed_at=90), StageState.SOAKING),
        (marked(TPL_V2, st("Succeeded", V2, V2), applied_at=10, passed_at=10), StageState.PASSED),
        (marked(TPL_A, st("RolledBack", V2, A, failedRevision=V2), applied_at=10), StageState.FAILED),
        (marked(TPL_A, st("Succeeded", A, A), applied_at=10, rolled_back_at=50), StageState.ROLLED_BACK),
    ],
)
def test_observe(dep: dict[str, Any], expected: StageState) -> None:
    stage = Stage("a", "ns", "web", soak=60)
    view = observe(stage, CHANGE, WID, dep, now=100)
    assert view.state is expected, view.reason
    if expected is StageState.SOAKING:
        assert view.soak_left == pytest.approx(50)


def test_observe_a_failed_delivery_held_for_an_operator() -> None:
    dep = marked(TPL_V2, st("Paused", V2, A, hold="Failed", message="step failed"), applied_at=1)
    view = observe(Stage("a", "ns", "web"), CHANGE, WID, dep, now=5)
    assert view.state is StageState.FAILED and view.held


# ---------------------------------------------------------------- the plan


def views(w: Wave, **states: StageState | tuple[StageState, bool]) -> dict[str, StageView]:
    out = {}
    for s in w.stages:
        given = states.get(s.name.replace("-", "_"), StageState.PENDING)
        state, held = given if isinstance(given, tuple) else (given, False)
        ours = state is not StageState.PENDING
        out[s.name] = StageView(s, state, state.value, ours=ours, held=held)
    return out


def test_plan_runs_the_first_group_not_passed() -> None:
    w = parse(WAVE)
    assert plan(w, views(w)).run == ("staging",)
    assert plan(w, views(w, staging=StageState.DELIVERING)).run == ("staging",)
    assert plan(w, views(w, staging=StageState.PASSED)).run == ("eu-1",)
    p = plan(w, views(w, staging=StageState.PASSED, eu_1=StageState.PASSED, us_2=StageState.PASSED))
    assert p.run == ("us-1",)
    done = {n: StageState.PASSED for n in ("staging", "eu_1", "us_1", "us_2")}
    assert plan(w, views(w, **done)).outcome == "passed"
    p = plan(w, views(w, staging=StageState.PASSED), until="staging")
    assert p.outcome == "passed" and p.untouched == ("eu-1", "us-1", "us-2")
    assert plan(w, views(w, staging=StageState.PASSED), until="eu-1").run == ("eu-1",)


def test_plan_after_a_failure_rolls_back_the_earlier_stages_latest_first() -> None:
    w = parse(WAVE)
    p = plan(w, views(w, staging=StageState.PASSED, eu_1=StageState.SOAKING, us_1=StageState.FAILED))
    assert p.outcome == "failed" and p.failed == ("us-1",) and "stage us-1 failed" in p.reason
    assert p.undo == ("eu-1", "staging") and p.untouched == ("us-2",)
    # a delivery of the failed group still going on is aborted; a failed one held for an operator too
    p = plan(
        w,
        views(
            w,
            staging=StageState.PASSED,
            eu_1=StageState.PASSED,
            us_1=(StageState.FAILED, True),
            us_2=StageState.DELIVERING,
        ),
    )
    assert p.abort == ("us-1", "us-2") and p.undo == ("eu-1", "staging")


def test_plan_on_failure_hold_keeps_the_earlier_stages() -> None:
    w = parse(WAVE.replace("on-failure: rollback", "on-failure: hold"))
    p = plan(w, views(w, staging=StageState.PASSED, eu_1=StageState.FAILED))
    assert p.outcome == "failed" and p.undo == () and p.abort == ()
    assert p.untouched == ("us-1", "us-2")


def test_plan_of_a_wave_that_was_rolled_back_stays_failed() -> None:
    w = parse(WAVE)
    p = plan(w, views(w, staging=StageState.ROLLED_BACK, eu_1=StageState.FAILED))
    assert p.outcome == "failed" and p.undo == () and p.failed == ("eu-1",)


def test_plan_never_undoes_a_stage_the_wave_did_not_deliver() -> None:
    w = parse(WAVE)
    v = views(w, eu_1=StageState.FAILED)
    v["staging"] = StageView(w.stage("staging"), StageState.PASSED, "already delivered", ours=False)
    assert plan(w, v).undo == ()


# ---------------------------------------------------------------- runs against fake clusters

THREE = """
wave: w
on-failure: {mode}
timeout: 5m
stages:
  - {{name: staging, context: staging, namespace: ns, app: web}}
  - {{name: eu-1, context: eu-1, namespace: ns, app: web}}
  - {{name: us-1, context: us-1, namespace: ns, app: web}}
"""


def controller(kube: FakeKube, clock: Clock, bad: set[str]) -> None:
    """deliver's controller, played in the fake's watch: the current template is delivered (Succeeded)
    unless its image is in ``bad`` (RolledBack, the stable template written back)."""

    def play(k: FakeKube) -> dict[str, Any] | None:
        clock.t += 1
        d = k.get(DEPLOYMENTS, "ns", "web")
        rec = json.loads(d["metadata"]["annotations"].get(STATE) or "{}")
        target = templates.revision(d["spec"]["template"])
        if rec.get("revision") == target or rec.get("failedRevision") == target:
            return None
        stable = rec.get("stableRevision", "")
        if d["spec"]["template"]["spec"]["containers"][0]["image"] in bad:
            new = st("RolledBack", target, stable, failedRevision=target, message="new version unhealthy")
        else:
            new = st("Succeeded", target, target, started=clock.t - 1, finished=clock.t)
        k.patch(DEPLOYMENTS, "ns", "web", {"metadata": {"annotations": {STATE: json.dumps(new)}}})
        return {"type": "MODIFIED", "object": k.get(DEPLOYMENTS, "ns", "web")}

    kube.watch_events = [[play] for _ in range(200)]


def clusters(clock: Clock, bad: dict[str, set[str]] | None = None) -> dict[str, FakeKube]:
    out = {}
    for name in ("staging", "eu-1", "us-1"):
        k = FakeKube(clock=clock)
        k.put(DEPLOYMENTS, deployment(TPL_A, st("Idle", A, A)))
        rs = {
            "metadata": {
                "name": "web-1",
                "labels": {"app": "web"},
                "ownerReferences": [{"uid": "u1", "controller": True, "kind": "Deployment", "name": "web"}],
            },
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": copy.deepcopy(TPL_A)},
        }
        k.put(REPLICASETS, rs)
        controller(k, clock, (bad or {}).get(name, set()))
        out[name] = k
    return out


def image_of(k: FakeKube) -> str:
    return str(k.get(DEPLOYMENTS, "ns", "web")["spec"]["template"]["spec"]["containers"][0]["image"])


def test_run_delivers_stage_by_stage_and_again_changes_nothing() -> None:
    clock = Clock()
    kubes = clusters(clock)
    w = parse(THREE.format(mode="rollback"))
    events: list[tuple[str, str]] = []
    runner = WaveRunner(w, CHANGE, kubes, "w1", lambda e: events.append((e.stage, e.state)), clock, clock.sleep)
    result = runner.run()
    assert result.code == 0, result.reason
    assert [s.outcome for s in result.stages] == ["passed"] * 3
    assert all(image_of(k) == "web:v2" for k in kubes.values())
    applied = [n for n, state in events if state == "Delivering"]
    assert list(dict.fromkeys(applied)) == ["staging", "eu-1", "us-1"]
    marks = [json.loads(k.get(DEPLOYMENTS, "ns", "web")["metadata"]["annotations"][MARKER]) for k in kubes.values()]
    assert all(m["passedAt"] <= n["appliedAt"] for m, n in zip(marks, marks[1:], strict=False))
    writes = {n: len(k.writes) for n, k in kubes.items()}
    again = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert again.code == 0 and {n: len(k.writes) for n, k in kubes.items()} == writes


def test_run_stops_at_the_failed_stage_and_rolls_back_the_earlier_one() -> None:
    clock = Clock()
    kubes = clusters(clock, bad={"eu-1": {"web:v2"}})
    w = parse(THREE.format(mode="rollback"))
    result = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 1 and "stage eu-1 failed" in result.reason
    assert [s.outcome for s in result.stages] == ["rolled-back", "failed", "not-reached"]
    assert image_of(kubes["staging"]) == "web:v1"  # put back, and delivered again
    assert kubes["us-1"].writes == []  # untouched
    suite = junit_suite(result)
    assert [c.result for c in suite.cases] == ["passed", "failed", "skipped"]
    xml = ET.fromstring(junit.to_xml(suite))
    assert xml.get("tests") == "3" and xml.get("failures") == "1"
    # again: still failed, and nothing is written anywhere
    writes = {n: len(k.writes) for n, k in kubes.items()}
    again = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert again.code == 1 and {n: len(k.writes) for n, k in kubes.items()} == writes


def test_run_on_failure_hold_keeps_the_earlier_stage() -> None:
    clock = Clock()
    kubes = clusters(clock, bad={"eu-1": {"web:v2"}})
    result = WaveRunner(parse(THREE.format(mode="hold")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 1 and [s.outcome for s in result.stages] == ["held", "failed", "not-reached"]
    assert image_of(kubes["staging"]) == "web:v2" and kubes["us-1"].writes == []


def test_an_unreachable_stage_stops_the_wave_with_4_and_changes_nothing_further() -> None:
    clock = Clock()
    kubes = clusters(clock)
    w = parse(THREE.format(mode="rollback"))
    kubes["us-1"].fail_next(*[KubeError("API server unreachable")] * 50, verb="get")
    result = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 4 and "stage us-1" in result.reason
    assert all(k.writes == [] for k in kubes.values())


def test_a_cluster_lost_mid_wave_stops_it_with_4_before_the_next_stage() -> None:
    clock = Clock()
    kubes = clusters(clock)
    staging_controller = kubes["staging"].watch_events[0][0]

    def then_lose_us(k: FakeKube) -> dict[str, Any] | None:
        event = staging_controller(k)
        if event is not None:  # staging delivered: now us-1's API server is gone
            kubes["us-1"].fail_next(*[KubeError("API server unreachable")] * 50, verb="get")
        return event

    kubes["staging"].watch_events = [[then_lose_us] for _ in range(50)]
    result = WaveRunner(parse(THREE.format(mode="rollback")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 4 and "stage us-1" in result.reason and "nothing further" in result.reason
    assert image_of(kubes["staging"]) == "web:v2" and result.stages[0].outcome == "passed"
    assert kubes["eu-1"].writes == [] and kubes["us-1"].writes == []


def test_a_rollback_needs_only_the_stages_the_wave_changed() -> None:
    # staging passes, eu-1 fails, and us-1 (never reached) cannot be read any more: staging is still
    # put back; us-1 is reported unreachable and untouched, and the wave fails with 1, not 4.
    clock = Clock()
    kubes = clusters(clock, bad={"eu-1": {"web:v2"}})
    eu_controller = kubes["eu-1"].watch_events[0][0]

    def then_lose_us(k: FakeKube) -> dict[str, Any] | None:
        event = eu_controller(k)
        if event is not None:  # eu-1 rolled back by its controller: now us-1's API server is gone
            kubes["us-1"].fail_next(*[KubeError("API server unreachable")] * 500, verb="get")
        return event

    kubes["eu-1"].watch_events = [[then_lose_us] for _ in range(50)]
    result = WaveRunner(parse(THREE.format(mode="rollback")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 1 and "stage eu-1 failed" in result.reason, result.reason
    assert image_of(kubes["staging"]) == "web:v1"  # put back although us-1 cannot be read
    assert [s.outcome for s in result.stages] == ["rolled-back", "failed", "not-reached"]
    assert "unreachable" in result.stages[2].reason and kubes["us-1"].writes == []


def test_a_stage_to_roll_back_that_cannot_be_read_is_4_and_the_others_are_still_put_back() -> None:
    # staging and eu-1 passed, us-1 failed; then staging's API server is gone: eu-1 is put back,
    # staging cannot be, and the wave says so with 4 (run it again to finish the rollback).
    clock = Clock()
    kubes = clusters(clock, bad={"us-1": {"web:v2"}})
    us_controller = kubes["us-1"].watch_events[0][0]

    def then_lose_staging(k: FakeKube) -> dict[str, Any] | None:
        event = us_controller(k)
        if event is not None:
            kubes["staging"].fail_next(*[KubeError("API server unreachable")] * 500, verb="get")
        return event

    kubes["us-1"].watch_events = [[then_lose_staging] for _ in range(50)]
    result = WaveRunner(parse(THREE.format(mode="rollback")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 4 and "staging" in result.reason, result.reason
    kubes["staging"]._failures.clear()  # its API server back, to look
    assert image_of(kubes["eu-1"]) == "web:v1" and image_of(kubes["staging"]) == "web:v2"
    assert [s.outcome for s in result.stages][1:] == ["rolled-back", "failed"]
    assert "unreachable" in result.stages[0].reason


def test_a_stage_timing_out_is_3_and_a_second_run_goes_on() -> None:
    clock = Clock()
    kubes = clusters(clock)
    kubes["eu-1"].watch_events = [[lambda k: clock.sleep(30)] for _ in range(30)]  # its controller is away
    w = parse(THREE.format(mode="rollback").replace("timeout: 5m", "timeout: 2m"))
    result = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 3 and [s.outcome for s in result.stages] == ["passed", "timeout", "not-reached"]
    controller(kubes["eu-1"], clock, set())
    assert WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run().code == 0


def test_soak_is_waited_out_and_resumes_from_the_marker() -> None:
    clock = Clock()
    kubes = clusters(clock)
    w = parse(THREE.format(mode="rollback").replace("timeout: 5m", "timeout: 5m\nsoak: 1m"))
    result = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 0
    marks = [json.loads(k.get(DEPLOYMENTS, "ns", "web")["metadata"]["annotations"][MARKER]) for k in kubes.values()]
    assert all(n["appliedAt"] - m["passedAt"] >= 60 for m, n in zip(marks, marks[1:], strict=False))


def test_a_parallel_group_runs_at_once_and_the_wave_waits_for_all() -> None:
    clock = Clock()
    kubes = clusters(clock)
    text = THREE.format(mode="rollback").replace(
        "  - {name: eu-1, context: eu-1, namespace: ns, app: web}\n"
        "  - {name: us-1, context: us-1, namespace: ns, app: web}",
        "  - parallel:\n    - {name: eu-1, context: eu-1, namespace: ns, app: web}\n"
        "    - {name: us-1, context: us-1, namespace: ns, app: web}",
    )
    w = parse(text)
    assert [len(g) for g in w.groups] == [1, 2]
    result = WaveRunner(w, CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 0 and all(image_of(k) == "web:v2" for k in kubes.values())


def test_dry_run_changes_nothing() -> None:
    clock = Clock()
    kubes = clusters(clock)
    result = WaveRunner(parse(THREE.format(mode="hold")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run(
        dry_run=True
    )
    assert result.code == 0 and "next stage staging" in result.reason
    assert all(k.writes == [] for k in kubes.values())


# ---------------------------------------------------------------- the lock


def test_lock_refuses_another_wave_and_lets_the_same_wave_take_over() -> None:
    clock = Clock()
    clock.t = 1_800_000_000.0
    k = FakeKube(clock=clock)
    first = WaveLock(k, "ns", "web", "wave-a", clock)
    first.acquire()
    with pytest.raises(WaveBusy, match=r"another wave \(wave-a\) is running for ns/web"):
        WaveLock(k, "ns", "web", "wave-b", clock).acquire()
    WaveLock(k, "ns", "web", "wave-a", clock).acquire()  # a rerun of the same wave (the first one crashed)
    clock.t += 31  # expired: another wave may go
    second = WaveLock(k, "ns", "web", "wave-b", clock)
    second.acquire()
    assert k.get(LEASES, "ns", "deliver-wave-web")["spec"]["holderIdentity"] == second.identity
    first.release()  # not the holder any more: leaves it alone
    assert k.get(LEASES, "ns", "deliver-wave-web")["spec"]["holderIdentity"] == second.identity
    second.release()
    WaveLock(k, "ns", "web", "wave-c", clock).acquire()


def test_lock_renewal_keeps_it() -> None:
    clock = Clock()
    clock.t = 1_800_000_000.0
    k = FakeKube(clock=clock)
    lock = WaveLock(k, "ns", "web", "wave-a", clock)
    lock.acquire()
    clock.t += 25
    lock.renew()
    clock.t += 25
    with pytest.raises(WaveBusy):
        WaveLock(k, "ns", "web", "wave-b", clock).acquire()
    assert k.get(LEASES, "ns", "deliver-wave-web")["spec"]["renewTime"] == micro_time(clock.t - 25)


# ---------------------------------------------------------------- the verb


def test_cli_lint_and_usage_errors(tmp_path: Path) -> None:
    kc = kubeconfig(tmp_path)
    wave = tmp_path / "wave.yaml"
    wave.write_text("wave: w\nstages: [{name: a, context: staging, namespace: n, app: x}]\n")
    run = CliRunner()
    ok = run.invoke(cli.main, ["--kubeconfig", str(kc), "wave", str(wave), "--lint"])
    assert ok.exit_code == 0, ok.output
    r = run.invoke(cli.main, ["--kubeconfig", str(kc), "wave", str(wave)])
    assert r.exit_code == 2 and "the change is missing" in r.output
    r = run.invoke(cli.main, ["--kubeconfig", str(kc), "wave", str(wave), "--image", "x:1", "--until", "zz"])
    assert r.exit_code == 2 and "no stage 'zz'" in r.output
    wave.write_text("wave: w\nstages: [{name: a, context: prod, namespace: n, app: x}]\n")
    r = run.invoke(cli.main, ["--kubeconfig", str(kc), "wave", str(wave), "--image", "x:1"])
    assert r.exit_code == 2 and "unknown context 'prod'" in r.output


def test_views_plain_lines_in_ci_and_a_live_table_on_a_terminal() -> None:
    import io

    from delivery.cli.wave import LiveWaveView, PlainView

    w = parse(THREE.format(mode="hold"))
    status = {"namespace": "ns", "name": "web", "phase": "Progressing", "step": 0, "weight": 50, "message": "m"}
    out = io.StringIO()
    plain = PlainView(w, out)
    plain(WaveEvent("staging", "Delivering", "applied web:v2"))
    plain(WaveEvent("staging", "Delivering", "m", status))
    plain(WaveEvent("staging", "Delivering", "m", status))  # unchanged: no line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "[staging] Delivering: applied web:v2" in lines[0]
    assert "[staging] ns/web: phase=Progressing step=1 weight=50%" in lines[1]
    screen = io.StringIO()
    live = LiveWaveView(w, color=False, stream=screen)
    live(WaveEvent("eu-1", "Delivering", "m", status))
    live(WaveEvent("us-1", "passed", "revision promoted"))
    live.close()
    text = screen.getvalue()
    assert "wave w" in text and "Progressing" in text and "revision promoted" in text


def test_a_wave_that_lost_its_lock_stops_before_the_next_stage() -> None:
    clock = Clock()
    clock.t = 1_800_000_000.0
    kubes = clusters(clock)
    lock = WaveLock(kubes["staging"], "ns", "web", "w1", clock)
    lock.acquire()
    clock.t += 40  # not renewed: expired, and another wave took it
    WaveLock(kubes["staging"], "ns", "web", "other", clock).acquire()
    lock.renew()
    result = WaveRunner(
        parse(THREE.format(mode="hold")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep, lock=lock
    ).run()
    assert result.code == 1 and "lost its lock" in result.reason
    assert image_of(kubes["staging"]) == "web:v1"


def given_marked(
    kubes: dict[str, FakeKube], name: str, template: dict[str, Any], record: dict[str, Any], **m: Any
) -> None:
    d = kubes[name].get(DEPLOYMENTS, "ns", "web")
    d["spec"]["template"] = copy.deepcopy(template)
    d["metadata"]["annotations"][STATE] = json.dumps(record)
    d["metadata"]["annotations"][MARKER] = Marker("w1", "w", name, revision=V2, previous=A, **m).to_json()
    kubes[name].replace(DEPLOYMENTS, "ns", "web", d)


PARALLEL = THREE.format(mode="rollback").replace(
    "  - {name: eu-1, context: eu-1, namespace: ns, app: web}\n"
    "  - {name: us-1, context: us-1, namespace: ns, app: web}",
    "  - parallel:\n    - {name: eu-1, context: eu-1, namespace: ns, app: web}\n"
    "    - {name: us-1, context: us-1, namespace: ns, app: web}",
)


def test_after_a_failure_a_delivery_going_on_in_the_group_is_aborted() -> None:
    clock = Clock()
    clock.t = 100.0
    kubes = clusters(clock)
    given_marked(kubes, "staging", TPL_V2, st("Succeeded", V2, V2), applied_at=1, passed_at=2)
    given_marked(kubes, "eu-1", TPL_A, st("RolledBack", V2, A, failedRevision=V2), applied_at=3)
    given_marked(kubes, "us-1", TPL_V2, st("Progressing", V2, A), applied_at=3)
    result = WaveRunner(parse(PARALLEL), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 1 and [s.outcome for s in result.stages] == ["rolled-back", "failed", "abort-requested"]
    annotations = kubes["us-1"].get(DEPLOYMENTS, "ns", "web")["metadata"]["annotations"]
    assert json.loads(annotations["deliver.dev/request"])["verb"] == "abort"
    assert json.loads(annotations[MARKER])["rolledBackAt"] > 0
    assert image_of(kubes["staging"]) == "web:v1"


def test_after_a_failure_a_change_not_yet_taken_up_is_written_back() -> None:
    clock = Clock()
    kubes = clusters(clock)
    given_marked(kubes, "eu-1", TPL_A, st("RolledBack", V2, A, failedRevision=V2), applied_at=3)
    given_marked(kubes, "us-1", TPL_V2, st("Idle", A, A), applied_at=3)  # its controller is behind
    result = WaveRunner(parse(PARALLEL), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 1 and [s.outcome for s in result.stages] == ["not-reached", "failed", "rolled-back"]
    assert image_of(kubes["us-1"]) == "web:v1" and kubes["staging"].writes == []


def test_locks_on_every_stage_refuse_a_wave_that_starts_elsewhere() -> None:
    clock = Clock()
    clock.t = 1_800_000_000.0
    kubes = clusters(clock)
    release = WaveLocks(parse(THREE.format(mode="hold")), kubes, "release", clock)
    release.acquire()
    assert [len(k.items(LEASES, "ns")) for k in kubes.values()] == [1, 1, 1]
    hotfix = parse("wave: hotfix\nstages: [{name: us-1, context: us-1, namespace: ns, app: web}]")
    with pytest.raises(WaveBusy, match="another wave"):
        WaveLocks(hotfix, {"us-1": kubes["us-1"]}, "hotfix", clock).acquire()
    # a wave that gets the first Lease but not the second gives the first back
    release.locks[0].release()
    two = parse(
        "wave: two\nstages: [{name: staging, context: staging, namespace: ns, app: web}, "
        "{name: eu-1, context: eu-1, namespace: ns, app: web}]"
    )
    with pytest.raises(WaveBusy):
        WaveLocks(two, {"staging": kubes["staging"], "eu-1": kubes["eu-1"]}, "two", clock).acquire()
    assert kubes["staging"].items(LEASES, "ns") == []
    release.release()
    assert all(k.items(LEASES, "ns") == [] for k in kubes.values())


def test_a_stage_deployment_deleted_mid_wave_stops_it_with_1() -> None:
    clock = Clock()
    kubes = clusters(clock)
    kubes["us-1"].delete(DEPLOYMENTS, "ns", "web")
    result = WaveRunner(parse(THREE.format(mode="rollback")), CHANGE, kubes, "w1", clock=clock, sleep=clock.sleep).run()
    assert result.code == 1 and "deployment ns/web not found" in result.reason
    assert kubes["staging"].writes == [] and kubes["eu-1"].writes == []


def test_a_manifest_change_is_written_even_when_its_images_are_there() -> None:
    other_env = copy.deepcopy(TPL_V2)
    other_env["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "slow"}]
    manifest = yaml.safe_dump({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": TPL_V2}})
    dep = deployment(other_env, st("Succeeded", templates.revision(other_env), templates.revision(other_env)))
    view = observe(Stage("a", "ns", "web"), Change(manifest=manifest), WID, dep, now=1)
    assert view.state is StageState.PENDING
    assert observe(Stage("a", "ns", "web"), CHANGE, WID, deployment(TPL_V2, st("Idle", V2, V2)), 1).state is (
        StageState.PASSED
    )
