"""`deliver wave` across three real local control planes at once (issue 15).

Three clusters (separate run dirs under run/, each with its own deliver controller), started in
parallel. One wave file names a stage in each (staging → eu-1 → us-1). The tests run the real CLI:

* a good image goes through all three in order, each stage starting only after the previous one
  succeeded (deliver's own records say when each delivery started and finished);
* a change that fails at stage 2 (eu-1 has no room for one more pod: a ResourceQuota, so its
  canary pod never starts and eu-1's deliver rolls it back) stops the wave: stage 3 untouched,
  stage 1 rolled back (on-failure: rollback) or kept (hold);
* the wave command killed mid-stage and run again finishes the wave without delivering anything
  twice; another wave for the same app meanwhile is refused;
* an unreachable stage stops the wave with exit 4 before anything is changed, and a stage's API
  server that goes away mid-wave stops it with 4 before the next stage; a stage whose app is not
  annotated is exit 2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e._proc import stop as stop_process
from e2e.cluster import REPO_ROOT, Cluster, api_client
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, canary, deliver, deployment, image, make_deployment, state, wait_for, wait_stable
from tests.xunit_schema import problems

pytestmark = pytest.mark.e2e

STAGES = ("staging", "eu-1", "us-1")
JENKINSFILE = REPO_ROOT / "docs" / "Jenkinsfile.wave"
MARKER = "wave.deliver.dev/stage"


@dataclass
class Site:
    """One of the three clusters: its control plane, a client and its own deliver controller."""

    name: str
    cluster: Cluster
    kube: Kube
    controller: ControllerProcess

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig


def _reap(base: Path) -> None:
    """Tear down wave clusters left by pytest sessions that died (run/wave-<pid>-<n>)."""
    for d in sorted(base.glob("wave-*")) if base.is_dir() else []:
        m = re.fullmatch(r"wave-(\d+)-\d", d.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            Cluster(d).down()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Site]]:
    base = REPO_ROOT / "run"
    _reap(base)
    clusters = [Cluster(base / f"wave-{os.getpid()}-{i}") for i in range(len(STAGES))]
    errors: list[BaseException] = []
    took: list[float] = []

    def up(c: Cluster) -> None:
        try:
            took.append(c.up())
        except BaseException as exc:  # reported below, after every start finished
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=up, args=(c,)) for c in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out: list[Site] = []
    try:
        if errors:
            raise errors[0]
        print(
            f"three control planes up in {time.monotonic() - started:.1f}s "
            f"(each {', '.join(f'{t:.0f}s' for t in took)})"
        )
        logs = tmp_path_factory.mktemp("controllers")
        for name, c in zip(STAGES, clusters, strict=True):
            ctl = ControllerProcess(c.kubeconfig, None, logs, name=f"controller-{name}")
            out.append(Site(name, c, Kube(api_client(c.kubeconfig), c.kubeconfig), ctl.start()))
        yield out
    finally:
        for s in out:
            s.controller.stop()
            print(f"---- {s.name} controller log (tail) ----\n{s.controller.log()[-1500:]}")
            s.kube.api_client.close()
        for c in clusters:
            c.down()


@pytest.fixture
def ns(sites: list[Site], request: pytest.FixtureRequest) -> Iterator[str]:
    """The same fresh namespace in all three clusters."""
    name = f"wave-{re.sub(r'[^a-z0-9]', '', request.node.name.lower())[4:16]}-{uuid.uuid4().hex[:4]}"
    for s in sites:
        s.kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    for s in sites:
        wait_for(lambda s=s: s.kube.core.read_namespaced_service_account("default", name), 30, f"SA in {s.name}")
    yield name
    for s in sites:
        try:
            s.kube.core.delete_namespace(name)
        except Exception:  # a cluster a test took down (the unreachable stage) is gone with its namespaces
            pass


def given_web_everywhere(sites: list[Site], ns: str) -> None:
    """web (canary 50,100, 1s steps, 2 replicas) at example.com/web:v1, delivered, in each cluster."""
    for s in sites:
        s.kube.apps.create_namespaced_deployment(ns, canary("web", "50,100", replicas=2, progress_deadline="5s"))
    for s in sites:
        wait_stable(s.kube, ns, "web", s.controller)


def write_wave(
    path: Path, sites: list[Site], ns: str, on_failure: str = "rollback", **overrides: dict[str, str]
) -> Path:
    stages = []
    for s in sites:
        stage: dict[str, Any] = {"name": s.name, "kubeconfig": str(s.kubeconfig), "namespace": ns, "app": "web"}
        if s.name in overrides:
            stage["overrides"] = overrides[s.name]
        stages.append(stage)
    path.write_text(
        yaml.safe_dump({"wave": "web-release", "on-failure": on_failure, "timeout": "90s", "stages": stages})
    )
    return path


def record(site: Site, ns: str) -> dict[str, Any]:
    return state(site.kube, ns, "web")


def marker(site: Site, ns: str) -> dict[str, Any]:
    raw = (deployment(site.kube, ns, "web")["metadata"].get("annotations") or {}).get(MARKER)
    return json.loads(raw) if raw else {}


def junit_results(path: Path) -> list[tuple[str, str]]:
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        out.append((case.get("name", ""), kind))
    return out


def jenkins_commands() -> list[str]:
    """The `sh` steps of docs/Jenkinsfile.wave, in order, exactly as written."""
    return re.findall(r"^\s*sh '([^']*)'\s*$", JENKINSFILE.read_text(), flags=re.M)


def wave_cmd(wave: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # each stage names its kubeconfig; the global one is not used
    return deliver(wave.parent / "unused-kubeconfig", "wave", str(wave), *args, timeout=timeout)


def test_good_image_goes_through_all_three_in_order(sites: list[Site], ns: str, tmp_path: Path) -> None:
    given_web_everywhere(sites, ns)
    before = {s.name: record(s, ns) for s in sites}
    wave = write_wave(tmp_path / "wave.yaml", sites, ns)
    report = tmp_path / "wave.xml"

    started = time.monotonic()
    r = wave_cmd(wave, "--image", "example.com/web:v2", "-o", "json", "--junit", str(report))
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    print(f"three-stage wave: {took:.1f}s wall, {[(s['name'], s['seconds']) for s in result['stages']]}")
    assert [(s["name"], s["result"]) for s in result["stages"]] == [(n, "passed") for n in STAGES]

    records = [record(s, ns) for s in sites]
    marks = [marker(s, ns) for s in sites]
    for s, rec in zip(sites, records, strict=True):
        assert rec["phase"] == "Succeeded" and rec["revision"] != before[s.name]["stableRevision"], (s.name, rec)
        assert image(s.kube, ns) == "example.com/web:v2"
    t0 = marks[0]["appliedAt"]
    for s, rec, m in zip(sites, records, marks, strict=True):
        print(
            f"  {s.name}: applied +{m['appliedAt'] - t0:.1f}s, delivery started +{rec['started'] - t0:.1f}s, "
            f"finished +{rec['finished'] - t0:.1f}s, wave saw it pass +{m['passedAt'] - t0:.1f}s"
        )
    # in order: each stage was applied only after the previous one's delivery had finished
    for prev, nxt, prev_mark, next_mark in zip(records, records[1:], marks, marks[1:], strict=False):
        assert prev["finished"] <= nxt["started"], (prev, nxt)
        assert prev_mark["passedAt"] <= next_mark["appliedAt"]
    assert problems(report.read_text()) == []  # valid for Jenkins' xUnit plugin (junit-10.xsd)
    cases = junit_results(report)
    assert [kind for _, kind in cases] == ["passed"] * 3, cases
    assert [name.split(": ")[1].split(" ")[0] for name, _ in cases] == list(STAGES)

    # the same command again: every stage has passed, nothing is delivered twice
    r = wave_cmd(wave, "--image", "example.com/web:v2")
    assert r.returncode == 0, r.stderr
    assert [record(s, ns)["started"] for s in sites] == [rec["started"] for rec in records]

    # the next build, as docs/Jenkinsfile.wave runs it: one pipeline stage per wave stage (--until)
    commands = jenkins_commands()
    assert len(commands) == 4 and all(c.startswith("deliver wave deploy/wave.yaml") for c in commands)
    workspace = tmp_path / "workspace"
    (workspace / "deploy").mkdir(parents=True)
    (workspace / "deploy" / "wave.yaml").write_text(wave.read_text())  # its kubeconfig paths are absolute
    env = dict(os.environ, IMAGE="example.com/web:v3", NO_COLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `deliver`
    seen = []
    for command in commands:
        r = subprocess.run(["bash", "-c", command], cwd=workspace, env=env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, (command, r.stderr)
        seen.append([image(s.kube, ns)[-2:] for s in sites])
    assert seen == [["v2", "v2", "v2"], ["v3", "v2", "v2"], ["v3", "v3", "v2"], ["v3", "v3", "v3"]]
    assert [kind for _, kind in junit_results(workspace / "wave-staging.xml")] == ["passed", "skipped", "skipped"]
    assert [kind for _, kind in junit_results(workspace / "wave-us.xml")] == ["passed"] * 3

    # the change as a manifest: its pod template (the API server fills in the defaults) everywhere
    doc = canary("web", "50,100", replicas=2, progress_deadline="5s")
    doc.spec.template.spec.containers[0].image = "example.com/web:v4"
    doc.spec.template.spec.containers[0].env = [client.V1EnvVar(name="MODE", value="fast")]
    manifest = tmp_path / "web.yaml"
    manifest.write_text(yaml.safe_dump(sites[0].kube.api_client.sanitize_for_serialization(doc)))
    r = wave_cmd(wave, "--manifest", str(manifest), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [s["result"] for s in json.loads(r.stdout)["stages"]] == ["passed"] * 3
    for s in sites:
        container = deployment(s.kube, ns, "web")["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "example.com/web:v4" and container["env"] == [{"name": "MODE", "value": "fast"}]
        assert record(s, ns)["phase"] == "Succeeded"


def test_a_change_that_fails_at_stage_2_stops_the_wave(sites: list[Site], ns: str, tmp_path: Path) -> None:
    given_web_everywhere(sites, ns)
    staging, eu, us = sites
    # eu-1 has room for exactly its two pods: the canary pod of any new version is refused there
    eu.kube.core.create_namespaced_resource_quota(
        ns,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="full"), spec=client.V1ResourceQuotaSpec(hard={"pods": "2"})
        ),
    )
    us_before = deployment(us.kube, ns, "web")
    staging_before = record(staging, ns)

    # on-failure: rollback
    wave = write_wave(tmp_path / "wave.yaml", sites, ns, on_failure="rollback")
    report = tmp_path / "wave.xml"
    started = time.monotonic()
    r = wave_cmd(wave, "--image", "example.com/web:v2", "-o", "json", "--junit", str(report))
    print(f"wave failing at stage 2, stage 1 rolled back: {time.monotonic() - started:.1f}s wall")
    assert r.returncode == 1, r.stderr
    result = json.loads(r.stdout)
    assert [(s["name"], s["result"]) for s in result["stages"]] == [
        ("staging", "rolled-back"),
        ("eu-1", "failed"),
        ("us-1", "not-reached"),
    ], r.stderr
    assert "stage eu-1 failed" in result["reason"] and "RolledBack" in result["reason"]
    assert record(eu, ns)["phase"] == "RolledBack" and image(eu.kube, ns) == "example.com/web:v1"
    # stage 1 put back: v1 written back and delivered again by staging's controller
    assert image(staging.kube, ns) == "example.com/web:v1"
    back = record(staging, ns)
    assert back["phase"] == "Succeeded" and back["revision"] == staging_before["stableRevision"], back
    assert marker(staging, ns)["rolledBackAt"] > 0
    # stage 3 untouched: the very same object (resourceVersion), no marker
    us_after = deployment(us.kube, ns, "web")
    assert us_after["metadata"]["resourceVersion"] == us_before["metadata"]["resourceVersion"]
    assert problems(report.read_text()) == []
    assert [kind for _, kind in junit_results(report)] == ["passed", "failure", "skipped"]

    # the same command again: the wave stands failed; nothing changes
    r = wave_cmd(wave, "--image", "example.com/web:v2")
    assert r.returncode == 1 and "stage eu-1 failed" in r.stderr, r.stderr
    assert deployment(us.kube, ns, "web")["metadata"]["resourceVersion"] == us_before["metadata"]["resourceVersion"]

    # on-failure: hold, another image: staging keeps it, eu-1 rolls it back, us-1 untouched
    wave = write_wave(tmp_path / "hold.yaml", sites, ns, on_failure="hold")
    r = wave_cmd(wave, "--image", "example.com/web:v3", "-o", "json")
    assert r.returncode == 1, r.stderr
    result = json.loads(r.stdout)
    assert [s["result"] for s in result["stages"]] == ["held", "failed", "not-reached"], r.stderr
    assert image(staging.kube, ns) == "example.com/web:v3" and record(staging, ns)["phase"] == "Succeeded"
    assert image(eu.kube, ns) == "example.com/web:v1"
    assert deployment(us.kube, ns, "web")["metadata"]["resourceVersion"] == us_before["metadata"]["resourceVersion"]


def test_killed_wave_runs_again_and_finishes(sites: list[Site], ns: str, tmp_path: Path) -> None:
    given_web_everywhere(sites, ns)
    staging, eu, us = sites
    # eu-1 holds each step 8s: long enough to kill the wave command in the middle of it
    wave = write_wave(tmp_path / "wave.yaml", sites, ns, **{"eu-1": {"interval": "8s"}})
    argv = [sys.executable, "-m", "delivery.cli", "wave", str(wave), "--image", "example.com/web:v2"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=dict(os.environ, NO_COLOR="1"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: marker(eu, ns) and record(eu, ns).get("phase") == "Progressing", 90, "eu-1 delivering")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    staging_rec, eu_rec = record(staging, ns), record(eu, ns)
    assert staging_rec["phase"] == "Succeeded" and not marker(us, ns)

    # another wave for the same app meanwhile: refused by the Lease the killed run left
    r = wave_cmd(wave, "--image", "example.com/web:v9")
    assert r.returncode == 1 and "another wave" in r.stderr, r.stderr
    assert image(staging.kube, ns) == "example.com/web:v2"

    # the same command again: goes on where the wave stands and finishes it
    r = wave_cmd(wave, "--image", "example.com/web:v2", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [s["result"] for s in json.loads(r.stdout)["stages"]] == ["passed"] * 3
    assert record(staging, ns)["started"] == staging_rec["started"]  # not delivered twice
    assert record(eu, ns)["started"] == eu_rec["started"]  # the same delivery went on
    assert record(us, ns)["phase"] == "Succeeded" and image(us.kube, ns) == "example.com/web:v2"
    assert record(eu, ns)["finished"] <= record(us, ns)["started"]


def test_unreachable_stage_stops_the_wave_with_4(sites: list[Site], ns: str, tmp_path: Path) -> None:
    given_web_everywhere(sites, ns)
    staging, eu, us = sites
    down = tmp_path / "us-1-down.kubeconfig"
    config = yaml.safe_load(us.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    down.write_text(yaml.safe_dump(config))
    wave = write_wave(tmp_path / "wave.yaml", sites, ns)
    text = yaml.safe_load(wave.read_text())
    text["stages"][2]["kubeconfig"] = str(down)
    wave.write_text(yaml.safe_dump(text))
    versions = [deployment(s.kube, ns, "web")["metadata"]["resourceVersion"] for s in sites]

    r = wave_cmd(wave, "--image", "example.com/web:v2")
    assert r.returncode == 4, r.stderr
    assert "stage us-1" in r.stderr and "nothing was changed" in r.stderr
    assert [deployment(s.kube, ns, "web")["metadata"]["resourceVersion"] for s in sites] == versions

    # an app that is not annotated: exit 2, nothing changed
    eu.kube.apps.create_namespaced_deployment(ns, make_deployment("plain", replicas=1))
    text["stages"][2]["kubeconfig"] = str(us.kubeconfig)
    text["stages"][1]["app"] = "plain"
    wave.write_text(yaml.safe_dump(text))
    r = wave_cmd(wave, "--image", "example.com/web:v2")
    assert r.returncode == 2 and "stage eu-1" in r.stderr and "not managed by deliver" in r.stderr, r.stderr

    # a dry run checks everything and changes nothing
    text["stages"][1]["app"] = "web"
    wave.write_text(yaml.safe_dump(text))
    r = wave_cmd(wave, "--image", "example.com/web:v2", "--dry-run")
    assert r.returncode == 0 and "dry run" in r.stderr, r.stderr
    assert [deployment(s.kube, ns, "web")["metadata"]["resourceVersion"] for s in sites] == versions

    # us-1's API server goes away while staging is delivering: the wave stops with 4 before eu-1
    text["stages"][0]["overrides"] = {"interval": "3s"}
    wave.write_text(yaml.safe_dump(text))
    argv = [sys.executable, "-m", "delivery.cli", "wave", str(wave), "--image", "example.com/web:v2"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=dict(os.environ, NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: marker(staging, ns), 60, "staging applied")
        apiserver = next(p for p in us.cluster.state.procs if p.name == "kube-apiserver")
        stop_process(apiserver)  # this test module's own process, by its recorded pid
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, err
    assert "stage us-1" in err and "nothing further is changed" in err, err
    assert record(staging, ns)["phase"] == "Succeeded" and image(staging.kube, ns) == "example.com/web:v2"
    assert deployment(eu.kube, ns, "web")["metadata"]["resourceVersion"] == versions[1]  # untouched
