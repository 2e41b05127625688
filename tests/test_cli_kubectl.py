"""kubectl's conventions in the CLI: --as/--as-group (impersonation headers on the wire),
--request-timeout (kubectl's format, on the wire), the plugin's usage line and `deliver version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from delivery import __version__, cli
from delivery.cli import program_name
from delivery.cli.context import Globals
from delivery.errors import Forbidden, KubeError, Unauthorized
from delivery.kube.client import DEPLOYMENTS, Impersonation, Kube, KubeClient
from delivery.wave.clusters import connect
from delivery.wave.file import ClusterRef
from tests.fakekube import VERSION, FakeKube

# ---------------------------------------------------------------- a local API server that records


class Recorder(ThreadingHTTPServer):
    """Answers every GET with an empty list (404 for a single object); records each request's headers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, dict[str, list[str]]]] = []  # (path, header name -> every line's value)
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        lines: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            lines.setdefault(name.lower(), []).append(value)
        self.server.seen.append((self.path, lines))
        time.sleep(self.server.delay)
        # /apis/apps/v1/namespaces/ns/deployments is a list; one more segment, an object: not found
        if self.path.split("?")[0].count("/") % 2 == 0:
            status, body = 200, {"kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}
        else:
            status, body = 404, {"kind": "Status", "reason": "NotFound", "message": "not found"}
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a request timeout)
            pass

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    s = Recorder()
    thread = threading.Thread(target=s.serve_forever, daemon=True)
    thread.start()
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def kubeconfig(server: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server.url}}],
                "users": [{"name": "admin", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": "ns"}}],
                "current-context": "local",
            }
        )
    )
    return path


def impersonated(server: Recorder) -> list[tuple[list[str], list[str]]]:
    """(Impersonate-User lines, Impersonate-Group lines) of each request the server saw."""
    return [(h.get("impersonate-user", []), h.get("impersonate-group", [])) for _, h in server.seen]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


# ---------------------------------------------------------------- impersonation


def test_the_client_sends_one_header_line_per_group(server: Recorder, kubeconfig: Path) -> None:
    kube = KubeClient.connect(str(kubeconfig), impersonate=Impersonation("jane", ("dev", "ops, qa")))
    kube.items(DEPLOYMENTS, "ns")
    # a comma inside a group is part of its name: the API server reads each line as one group
    assert impersonated(server) == [(["jane"], ["dev", "ops, qa"])]
    assert server.seen[0][1]["authorization"] == ["Bearer t0ken"]  # the caller's own credentials too


def test_a_name_no_header_can_carry_is_a_kube_error_not_a_crash(server: Recorder, kubeconfig: Path) -> None:
    """http.client sends headers as Latin-1: a name beyond it raised UnicodeEncodeError past every except."""
    kube = KubeClient.connect(str(kubeconfig), impersonate=Impersonation("\u7528\u6237"))
    with pytest.raises(KubeError, match="not Latin-1"):
        kube.items(DEPLOYMENTS, "ns")
    assert server.seen == []


def test_without_as_nothing_is_impersonated(server: Recorder, kubeconfig: Path) -> None:
    assert invoke("--kubeconfig", str(kubeconfig), "get").exit_code == 0
    assert impersonated(server) == [([], [])]


def test_as_and_as_group_reach_the_api_server_from_a_verb(server: Recorder, kubeconfig: Path) -> None:
    # before and after the verb, as every global flag; --as-group repeatable, after the verb adding to before
    r = invoke("--kubeconfig", str(kubeconfig), "--as-group", "dev", "get", "--as", "jane", "--as-group", "ops")
    assert r.exit_code == 0, r.output
    assert impersonated(server) == [(["jane"], ["dev", "ops"])]
    server.seen.clear()
    r = invoke("status", "web", "--kubeconfig", str(kubeconfig), "--as", "system:serviceaccount:ns:ci")
    assert r.exit_code == 1 and "not found" in r.output  # the server's 404 for the Deployment
    assert impersonated(server) == [(["system:serviceaccount:ns:ci"], [])]


def test_a_wave_impersonates_in_every_stage(server: Recorder, kubeconfig: Path, tmp_path: Path) -> None:
    wave = tmp_path / "wave.yaml"
    wave.write_text("wave: w\nstages: [{name: a, context: local, namespace: ns, app: web}]\n")
    r = invoke("--kubeconfig", str(kubeconfig), "wave", str(wave), "--image", "x:1", "--as", "jane", "--as-group", "g")
    assert r.exit_code == 2 and "deployment ns/web not found" in r.output  # preflight read the stage, as jane
    assert impersonated(server) and all(seen == (["jane"], ["g"]) for seen in impersonated(server))


def test_the_wave_connects_each_cluster_through_the_connector() -> None:
    made: list[tuple[str | None, str | None]] = []

    def connector(kubeconfig: str | None, context: str | None) -> Kube:
        made.append((kubeconfig, context))
        return FakeKube()

    refs = {
        "a": ClusterRef("k", "x", "https://x"),
        "b": ClusterRef("k", "x", "https://x"),
        "c": ClusterRef("", "y", ""),
    }
    kubes = connect(refs, connector)
    assert made == [("k", "x"), (None, "y")] and kubes["a"] is kubes["b"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--as-group", "dev"], "--as-group needs --as"),
        (["--as", ""], "not a user or group name"),
        (["--as", "jane\r\nX-Evil: 1"], "not a user or group name"),
        (["--as", "jane", "--as-group", " "], "not a user or group name"),
        # an HTTP header carries Latin-1 only: this one raised UnicodeEncodeError in http.client
        (["--as", "\u7528\u6237"], "not a user or group name"),
        (["--as", "jane", "--as-group", "\u00e9quipe-\u2603"], "not a user or group name"),
    ],
)
def test_bad_impersonation_is_a_usage_error(kubeconfig: Path, server: Recorder, args: list[str], words: str) -> None:
    r = invoke("--kubeconfig", str(kubeconfig), "get", *args)
    assert r.exit_code == 2 and words in r.output, r.output
    assert server.seen == []  # refused before anything is sent


# ---------------------------------------------------------------- --request-timeout


@pytest.mark.parametrize(
    "text, seconds",
    [("0", 0.0), ("30", 30.0), ("30s", 30.0), ("1m", 60.0), ("0s", 0.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_request_timeout_reads_as_kubectl_reads_it(text: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Globals] = []
    monkeypatch.setattr(Globals, "connect", lambda g, *_: seen.append(g) or FakeKube())
    assert invoke("get", "--request-timeout", text).exit_code == 0
    assert invoke("--request-timeout", text, "get").exit_code == 0
    assert [g.request_timeout for g in seen] == [seconds, seconds]


@pytest.mark.parametrize("text", ["-1", "1.5", "soon", "1d", "", "5 m", "1000h"])
@pytest.mark.parametrize("before", [True, False])
def test_a_bad_request_timeout_is_exit_2_naming_the_flag(text: str, before: bool, kubeconfig: Path) -> None:
    flag = ["--request-timeout", text]
    r = invoke(*flag, "get") if before else invoke("get", *flag)
    assert r.exit_code == 2 and "'--request-timeout'" in r.output, r.output


def test_the_timeout_given_is_the_clients(kubeconfig: Path) -> None:
    def timeout(given: float | None) -> Any:
        g = Globals(kubeconfig=str(kubeconfig), request_timeout=given)
        client = g.connect(g.kubeconfig, None)
        assert isinstance(client, KubeClient)
        return client.timeout

    assert timeout(None) == 15.0  # not given: the default, as before, and as the help says
    assert "(default 15s a try" in " ".join(invoke("get", "--help").output.split())
    assert timeout(3.0) == 3.0
    assert timeout(0.0) is None  # 0: never give up, as kubectl's "0"


def test_request_timeout_reaches_the_wire(server: Recorder, kubeconfig: Path) -> None:
    server.delay = 3.0
    started = time.monotonic()
    r = invoke("--kubeconfig", str(kubeconfig), "get", "--request-timeout", "1")
    took = time.monotonic() - started
    assert r.exit_code == 4 and "timed out" in r.output, r.output
    assert took < 2.5, took  # given up after 1s: not sent again (urllib3 would, three times)
    server.delay = 0.3
    assert invoke("--kubeconfig", str(kubeconfig), "get", "--request-timeout", "0").exit_code == 0


# ---------------------------------------------------------------- the plugin's usage line


def test_program_name() -> None:
    assert program_name("/usr/local/bin/kubectl-deliver") == "kubectl deliver"
    assert program_name("C:\\bin\\kubectl-deliver.exe".replace("\\", os.sep)) == "kubectl deliver"
    assert program_name("/usr/local/bin/deliver") is None  # click's own: deliver
    assert program_name("") is None


@pytest.mark.parametrize("command, usage", [("kubectl-deliver", "kubectl deliver"), ("deliver", "deliver")])
def test_help_names_the_command_it_was_run_as(tmp_path: Path, command: str, usage: str) -> None:
    script = tmp_path / command  # what pip's console script does: argv[0] is the script
    script.write_text(f"#!{sys.executable}\nfrom delivery.cli import main\nmain()\n")
    script.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this tree's delivery

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], capture_output=True, text=True, env=env)

    top = run("--help")
    assert top.returncode == 0 and top.stdout.startswith(f"Usage: {usage} [OPTIONS] COMMAND"), top.stdout
    assert "  version " in top.stdout
    sub = run("status", "--help")
    assert sub.returncode == 0 and sub.stdout.startswith(f"Usage: {usage} status [OPTIONS] APP"), sub.stdout
    bad = run("status")
    assert bad.returncode == 2 and f"Try '{usage} status --help' for help." in bad.stderr, bad.stderr


# ---------------------------------------------------------------- deliver version


def controller(namespace: str = "deliver-system", image: str = "ghcr.io/deliver-dev/deliver:0.1.0") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "deliver",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "deliver",
                "app.kubernetes.io/component": "controller",
                "app.kubernetes.io/version": "0.1.0",
            },
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "controller", "image": image}]}}},
        "status": {"readyReplicas": 2},
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    kube = FakeKube()
    monkeypatch.setattr(Globals, "connect", lambda self, *_: kube)
    monkeypatch.setattr(Globals, "kube", lambda self: kube)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return kube


def test_version_prints_client_controller_cluster_and_hold_mode(fake: FakeKube) -> None:
    fake.put(DEPLOYMENTS, controller())
    r = invoke("version")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        f"client: {__version__}",
        "controller: 0.1.0 (deliver-system/deliver, image ghcr.io/deliver-dev/deliver:0.1.0, 2/2 ready)",
        "cluster: v1.36.0 (linux/amd64)",
        "hold mode: paused (the API server does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy "
        "(Kubernetes 1.36+): deliver pauses managed Deployments at rest)",
    ]
    data = json.loads(invoke("version", "-o", "json").stdout)
    assert data["client"] == {"version": __version__}
    assert data["controllers"] == [
        {
            "version": "0.1.0",
            "deployment": "deliver-system/deliver",
            "image": "ghcr.io/deliver-dev/deliver:0.1.0",
            "ready": "2/2",
        }
    ]
    assert data["cluster"] == {"version": "v1.36.0", "platform": "linux/amd64"}
    assert data["holdMode"]["mode"] == "paused"
    assert yaml.safe_load(invoke("version", "-o", "yaml").stdout) == data


def test_version_of_a_controller_pinned_by_digest_is_its_label(fake: FakeKube) -> None:
    fake.put(DEPLOYMENTS, controller(image="registry:5000/deliver@sha256:" + "a" * 64))
    data = json.loads(invoke("version", "-o", "json").stdout)
    assert data["controllers"][0]["version"] == "0.1.0"  # app.kubernetes.io/version, the chart's appVersion


def test_version_with_an_unreadable_controller_says_unknown_and_why(fake: FakeKube) -> None:
    fake.fail_next(KubeError("GET /apis/apps/v1/deployments: API server unreachable: timed out"), verb="list")
    r = invoke("version")
    assert r.exit_code == 0, r.output
    assert "controller: unknown (cannot list Deployments in any namespace: GET /apis/apps/v1/deployments" in r.stdout
    assert "cluster: v1.36.0" in r.stdout


def test_version_looks_in_the_namespace_when_cluster_wide_is_forbidden(fake: FakeKube) -> None:
    fake.put(DEPLOYMENTS, controller(namespace="ns"))
    fake.fail_next(Forbidden("deployments is forbidden", status=403), verb="list")
    data = json.loads(invoke("version", "-n", "ns", "-o", "json").stdout)
    assert data["controllers"][0]["deployment"] == "ns/deliver"
    fake.fail_next(*[Forbidden("forbidden", status=403)] * 2, verb="list")
    data = json.loads(invoke("version", "-n", "ns", "-o", "json").stdout)
    assert data["controllers"] == [
        {"version": "unknown", "reason": "you may not list Deployments in namespace ns: forbidden"}
    ]


def test_version_without_a_controller_says_where_it_looked(fake: FakeKube) -> None:
    fake.put(DEPLOYMENTS, controller(namespace="elsewhere"))
    r = invoke("version", "--controller-namespace", "deliver-system")
    assert r.exit_code == 0
    assert "controller: unknown (no Deployment labelled" in r.stdout and "namespace deliver-system" in r.stdout


def test_version_when_the_cluster_cannot_be_read_exits_4(fake: FakeKube) -> None:
    fake.fail_next(KubeError("GET /version: API server unreachable: refused"), resource=VERSION)
    r = invoke("version", "-o", "json")
    assert r.exit_code == 4
    data = json.loads(r.stdout)
    assert data["client"]["version"] == __version__ and data["cluster"]["version"] == "unknown"
    assert "the cluster could not be read" in data["controllers"][0]["reason"]
    assert data["holdMode"]["mode"] == "unknown"


def test_version_when_credentials_cannot_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_credentials(*_: Any) -> Kube:
        raise Unauthorized("cannot load Kubernetes credentials: no kubeconfig")

    monkeypatch.setattr(Globals, "connect", no_credentials)
    r = invoke("version")
    assert r.exit_code == 4
    assert r.stdout.startswith(f"client: {__version__}\n") and "cannot load Kubernetes credentials" in r.stdout


def test_version_client_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Globals, "connect", lambda *_: pytest.fail("--client must not read the cluster"))
    r = invoke("version", "--client")
    assert r.exit_code == 0 and r.stdout == f"client: {__version__}\n"
    assert json.loads(invoke("version", "--client", "-o", "json").stdout) == {"client": {"version": __version__}}
