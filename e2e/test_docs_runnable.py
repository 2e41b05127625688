"""The documentation's shell blocks, run as written against the local cluster.

Every ```sh block of docs/*.md, README.md and charts/deliver/README.md carries a marker on the line
before its fence (an HTML comment, invisible on GitHub):

- ``<!-- runnable -->``: the block runs as written here;
- ``<!-- not-runnable: REASON -->``: it needs what the local cluster cannot give (a registry, a
  cloud, a terminal to watch, ``make``'s minutes), and says so;
- ``<!-- file: NAME -->`` on a block of any language: its text is written to NAME in the working
  directory before the document's runnable blocks run (a manifest the doc shows, then applies).

The runnable blocks of one document run in order, each with ``bash -c 'set -euo pipefail; ...'``,
in a working directory of their own (with the files above and ``.venv`` linked to this checkout's
venv, as the README runs ``.venv/bin/deliver`` from the repository root), from the repository root
when the block names ``charts/``; KUBECONFIG a copy of the cluster's whose context namespace is a
fresh namespace; PATH the e2e kubectl and helm (e2e/binaries.py) and the venv's bin (``deliver``).

The documented values the test puts in for placeholders (``SUBSTITUTIONS``): the namespaces of the
docs (``-n deliver-system``, ``-n shop``) are the fresh namespace, ``<your registry>`` is
``registry.example.com`` and the digest ``sha256:...`` a fixed one (kwok pulls no image). kwok runs
no containers: when the chart's controller pods run on kwok, the test plays the kubelet of one of
them, as e2e/test_chart.py does: the controller runs here with that pod's name, its ServiceAccount's
token and the chart's hold mode, so the Lease's holder is that pod.

Every block of the documents in ``MUST_DECIDE`` has one of the two markers, so a new block decides.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from e2e.binaries import helm_path, kubectl_path
from e2e.cluster import REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import Kube
from e2e.test_chart import token_kubeconfig

pytestmark = pytest.mark.e2e

DOCS = sorted(
    [REPO_ROOT / "README.md", REPO_ROOT / "charts" / "deliver" / "README.md", *(REPO_ROOT / "docs").glob("*.md")]
)
MUST_DECIDE = [
    REPO_ROOT / p
    for p in (
        "README.md",
        "docs/install.md",
        "docs/cli.md",
        "docs/operations.md",
        "docs/release.md",
        "charts/deliver/README.md",
    )
]
MIN_RUNNABLE = 8
DIGEST = "sha256:" + "0123456789abcdef" * 4
SUBSTITUTIONS = {"<your registry>": "registry.example.com", "sha256:...": DIGEST}
SHELLS = {"sh", "bash", "shell"}

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_MARK = re.compile(r"^<!--\s*(runnable|not-runnable:\s*\S.*?|file:\s*\S+)\s*-->$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    language: str
    marker: str  # "runnable", "not-runnable: why", "file: NAME" or ""
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the marker on the line before it."""
    lines = doc.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        mark = _MARK.match(lines[start - 1].strip()) if start else None
        found.append(Block(doc, start + 1, m.group(1), mark.group(1) if mark else "", "\n".join(body) + "\n"))
        i += 1
    return found


def shell_blocks(doc: Path) -> list[Block]:
    return [b for b in blocks(doc) if b.language in SHELLS]


def runnable(doc: Path) -> list[Block]:
    return [b for b in shell_blocks(doc) if b.marker == "runnable"]


DOCS_WITH_RUNNABLE = [d for d in DOCS if runnable(d)]


def test_every_shell_block_decides() -> None:
    undecided = [b.where for d in MUST_DECIDE for b in shell_blocks(d) if not b.marker]
    assert not undecided, f"mark these blocks <!-- runnable --> or <!-- not-runnable: reason -->: {undecided}"
    marked = [
        b.where
        for d in DOCS
        for b in blocks(d)
        if b.marker.startswith(("runnable", "not-")) and b.language not in SHELLS
    ]
    assert not marked, f"only sh blocks run: {marked}"
    count = sum(len(runnable(d)) for d in DOCS)
    assert count >= MIN_RUNNABLE, f"{count} runnable blocks, at least {MIN_RUNNABLE} expected"


def test_the_marker_reader(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- file: web.yaml -->\n```yaml\nkind: Deployment\n```\n"
        "<!-- runnable -->\n```sh\necho hi\n```\n"
        "<!-- not-runnable: a registry -->\n```sh\nskopeo copy a b\n```\n"
        "```sh\nundecided\n```\n```\nplain\n```\n"
    )
    found = blocks(page)
    assert [(b.language, b.marker) for b in found] == [
        ("yaml", "file: web.yaml"),
        ("sh", "runnable"),
        ("sh", "not-runnable: a registry"),
        ("sh", ""),
        ("", ""),
    ]
    assert found[1].text == "echo hi\n" and found[1].line == 6


class ChartPodKubelet:
    """Plays the kubelet of one of the chart's controller pods in ``ns`` (kwok runs no containers):
    once such a pod runs, the controller runs here as that pod, with its ServiceAccount's token."""

    def __init__(self, kube: Kube, admin: Path, ns: str, work: Path) -> None:
        self.kube, self.admin, self.ns, self.work = kube, admin, ns, work
        self.controller: ControllerProcess | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ChartPodKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.controller is not None:
            self.controller.stop()

    def _loop(self) -> None:
        selector = "app.kubernetes.io/name=deliver,app.kubernetes.io/component=controller"
        while not self._stop.wait(0.5):
            try:
                pods = self.kube.core.list_namespaced_pod(self.ns, label_selector=selector).items
            except client.ApiException:
                continue
            pod = next((p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp), None)
            if pod is None:
                continue
            sa = pod.spec.service_account_name
            tr = self.kube.core.create_namespaced_service_account_token(
                sa,
                self.ns,
                client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
                ),
            )
            config = token_kubeconfig(self.admin, tr.status.token, self.ns, self.work / "pod-kubeconfig")
            args = pod.spec.containers[0].args or []
            scope = None if "--all-namespaces" in args else self.ns
            hold = [a for a in args if a.startswith(("--hold-mode=", "--hold-policy="))]  # as the chart runs it
            extra = ["--leader-elect", "--lease-namespace", self.ns, *hold]
            self.controller = ControllerProcess(
                config, scope, log_dir=self.work, extra_args=extra, env={"POD_NAME": pod.metadata.name}
            ).start()
            return

    def log(self) -> str:
        return self.controller.log()[-3000:] if self.controller else "(no controller pod ran)"


def namespaced_kubeconfig(admin: Path, ns: str, path: Path) -> Path:
    cfg = yaml.safe_load(admin.read_text())
    for ctx in cfg["contexts"]:
        ctx["context"]["namespace"] = ns
    for c in cfg["clusters"]:
        ca = c["cluster"].get("certificate-authority")
        if ca and not Path(ca).is_absolute():
            c["cluster"]["certificate-authority"] = str(admin.parent / ca)
    for u in cfg.get("users") or []:
        for key in ("client-certificate", "client-key"):
            value = u["user"].get(key)
            if value and not Path(value).is_absolute():
                u["user"][key] = str(admin.parent / value)
    path.write_text(yaml.safe_dump(cfg))
    return path


def script(block: Block, ns: str) -> str:
    text = re.sub(r"(?<=-n )(?:deliver-system|shop)\b", ns, block.text)
    for placeholder, value in SUBSTITUTIONS.items():
        text = text.replace(placeholder, value)
    return "set -euo pipefail\n" + text


@pytest.fixture
def environment(cluster: RunningCluster, namespace: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    for tool in (kubectl_path(), helm_path()):
        if not tool.exists():
            pytest.fail(f"not built: {tool} (python -m e2e.binaries)")
    home = tmp_path / "home"
    yield dict(
        os.environ,
        KUBECONFIG=str(namespaced_kubeconfig(Path(cluster.kubeconfig), namespace, tmp_path / "kubeconfig")),
        PATH=os.pathsep.join(
            [
                str(kubectl_path().parent),
                str(helm_path().parent),
                str(Path(sys.executable).parent),
                os.environ.get("PATH", ""),
            ]
        ),
        HOME=str(home),
        HELM_CACHE_HOME=str(home / "helm-cache"),
        HELM_CONFIG_HOME=str(home / "helm-config"),
        HELM_DATA_HOME=str(home / "helm-data"),
        NO_COLOR="1",
    )


@pytest.mark.parametrize("doc", DOCS_WITH_RUNNABLE, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_runnable_blocks_run(
    doc: Path, cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path, environment: dict[str, str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    for b in blocks(doc):
        if b.marker.startswith("file:"):
            (work / b.marker.split(":", 1)[1].strip()).write_text(b.text)
    helm_releases = []
    with ChartPodKubelet(kube, Path(cluster.kubeconfig), namespace, tmp_path) as kubelet:
        try:
            for b in runnable(doc):
                cwd = REPO_ROOT if "charts/" in b.text else work
                helm_releases += re.findall(r"helm install (\S+)", b.text)
                r = subprocess.run(
                    ["bash", "-c", script(b, namespace)], cwd=cwd, env=environment,
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert r.returncode == 0, (
                    f"{b.where} failed (exit {r.returncode}):\n{b.text}\n--- stdout\n{r.stdout}\n--- stderr\n"
                    f"{r.stderr}\n--- the chart pod's controller\n{kubelet.log()}"
                )
        finally:
            for release in helm_releases:  # cluster-wide objects (ClusterRoles, the hold policy) go too
                subprocess.run(["helm", "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s"],
                               env=environment, capture_output=True, timeout=90)  # fmt: skip
