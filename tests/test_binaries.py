"""The cache of third-party binaries (e2e/binaries.py): built once per machine, never half-trusted.

A fake ``go`` on PATH stands in for the Go toolchain: it logs each call, writes the first half of
the binary, waits ``FAKE_GO_SLEEP`` seconds, then fails (``FAKE_GO_FAIL``) or writes the rest.
Builds run in subprocesses, as two ``make test`` runs on one machine would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import binaries

REPO = Path(__file__).resolve().parents[1]

FAKE_GO = """#!/bin/sh
echo "$*" >> "$FAKE_GO_LOG"
for arg in "$@"; do last="$arg"; done
name="${last%@*}"
name="${name##*/}"
printf 'first-half;' > "$GOBIN/$name"
sleep "${FAKE_GO_SLEEP:-0}"
if [ -n "$FAKE_GO_FAIL" ]; then exit 1; fi
printf 'second-half\\n' >> "$GOBIN/$name"
chmod +x "$GOBIN/$name"
"""

WHOLE = "first-half;second-half\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    return dict(
        os.environ,
        PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        DELIVER_CACHE=str(tmp_path / "cache"),
        FAKE_GO_LOG=str(tmp_path / "go.log"),
        PYTHONPATH=str(REPO),
    )


def build_helm(env: dict[str, str], **extra: str) -> subprocess.Popen[bytes]:
    code = "from e2e.binaries import build_helm; build_helm()"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(env, **extra), start_new_session=True)


def helm(env: dict[str, str]) -> Path:
    return Path(env["DELIVER_CACHE"]) / "bin" / f"helm-{binaries.HELM_VERSION}" / "helm"


def go_calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_GO_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def leftovers(env: dict[str, str]) -> list[str]:
    return sorted(p.name for p in (Path(env["DELIVER_CACHE"]) / "bin").iterdir() if not p.name.endswith(".lock"))


def test_a_failed_build_leaves_nothing_trusted_and_the_next_run_builds_it(env: dict[str, str]) -> None:
    # Given a build that writes half the binary and fails
    failed = build_helm(env, FAKE_GO_FAIL="1")
    assert failed.wait(timeout=30) != 0
    # Then no binary is where a later run looks, and nothing half-built is left behind
    assert not helm(env).exists()
    assert leftovers(env) == []
    # When the next run builds it, it is whole
    assert build_helm(env).wait(timeout=30) == 0
    assert helm(env).read_text() == WHOLE


def test_a_killed_build_leaves_nothing_trusted(env: dict[str, str]) -> None:
    # Given a build killed (SIGKILL, no cleanup) while the half-written binary is on disk
    proc = build_helm(env, FAKE_GO_SLEEP="30")
    deadline = time.monotonic() + 20
    while not go_calls(env) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # Then nothing a later run trusts exists, and the next run rebuilds (the lock died with it)
    assert not helm(env).exists()
    assert build_helm(env).wait(timeout=30) == 0
    assert helm(env).read_text() == WHOLE
    assert leftovers(env) == [f"helm-{binaries.HELM_VERSION}"]


def test_two_runs_at_once_build_once_and_both_get_the_whole_binary(env: dict[str, str]) -> None:
    # Given two runs that need helm at the same moment, and a build that takes a while
    first = build_helm(env, FAKE_GO_SLEEP="2")
    second = build_helm(env, FAKE_GO_SLEEP="2")
    # Then both succeed, the binary is built once, and it is whole
    assert first.wait(timeout=60) == 0
    assert second.wait(timeout=60) == 0
    assert len(go_calls(env)) == 1, go_calls(env)
    assert helm(env).read_text() == WHOLE
    assert leftovers(env) == [f"helm-{binaries.HELM_VERSION}"]


def test_a_cached_binary_is_not_built_again(env: dict[str, str]) -> None:
    assert build_helm(env).wait(timeout=30) == 0
    assert build_helm(env).wait(timeout=30) == 0
    assert len(go_calls(env)) == 1


# A fake ``go`` for the k8s.io/kubernetes builds: ``mod download -json`` answers with a release go.mod
# (two staging modules), ``mod tidy`` does nothing, ``build -o DIR/ PKG...`` writes one file per
# package into DIR.
FAKE_GO_KUBE = """#!/bin/sh
echo "$*" >> "$FAKE_GO_LOG"
case "$1" in
mod)
    if [ "$2" = download ]; then printf '{"GoMod": "%s"}\\n' "$FAKE_KUBE_GOMOD"; fi ;;
build)
    while [ "$1" != -o ]; do shift; done
    out="$2"; shift 2
    for pkg in "$@"; do printf 'built\\n' > "$out${pkg##*/}"; chmod +x "$out${pkg##*/}"; done ;;
esac
"""

KUBE_GOMOD = """module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/kubectl => ./staging/src/k8s.io/kubectl
)
"""


def test_kubectl_is_built_from_the_clusters_kubernetes_release_into_its_own_cached_directory(
    env: dict[str, str], tmp_path: Path
) -> None:
    (Path(env["PATH"].split(os.pathsep)[0]) / "go").write_text(FAKE_GO_KUBE)
    gomod = tmp_path / "kubernetes.mod"
    gomod.write_text(KUBE_GOMOD)
    env = dict(env, FAKE_KUBE_GOMOD=str(gomod))
    build = "from e2e.binaries import main; raise SystemExit(main(['--only', 'kubectl']))"

    # When kubectl is built (twice: the second run finds it cached)
    for _ in range(2):
        assert subprocess.run([sys.executable, "-c", build], cwd=REPO, env=env).returncode == 0

    # Then it is kubectl-<the cluster's Kubernetes version>/kubectl, beside the other binaries, built once
    cache = Path(env["DELIVER_CACHE"])
    assert (cache / "bin" / f"kubectl-{binaries.KUBE_VERSION}" / "kubectl").read_text() == "built\n"
    assert leftovers(env) == [f"kubectl-{binaries.KUBE_VERSION}"]  # the control plane's directory untouched
    builds = [c for c in go_calls(env) if c.startswith("build ")]
    assert len(builds) == 1 and builds[0].endswith(" k8s.io/kubernetes/cmd/kubectl"), builds
    assert f"-X k8s.io/component-base/version.gitVersion={binaries.KUBE_VERSION}" in builds[0]
    assert f"mod download -json k8s.io/kubernetes@{binaries.KUBE_VERSION}" in go_calls(env)
    # from the same release's module, every staging module at its matching v0 release
    work = cache / "build" / f"kubectl-{binaries.KUBE_VERSION}"
    staging = "v0." + binaries.KUBE_VERSION.split(".", 1)[1]
    wrapper = (work / "go.mod").read_text()
    assert f"require k8s.io/kubernetes {binaries.KUBE_VERSION}" in wrapper
    assert f"k8s.io/kubectl => k8s.io/kubectl {staging}" in wrapper and "godebug default=go1.24" in wrapper
    assert '_ "k8s.io/kubernetes/cmd/kubectl"' in (work / "tools.go").read_text()


def test_print_lists_kubectl_beside_the_other_binaries(env: dict[str, str]) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "e2e.binaries", "--print"], cwd=REPO, env=env, capture_output=True, text=True
    )
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in printed.stdout.splitlines()}
    expected = Path(env["DELIVER_CACHE"]) / "bin" / f"kubectl-{binaries.KUBE_VERSION}" / "kubectl"
    assert rows["kubectl"] == [str(expected), "missing"]
    assert Path(rows["kube-apiserver"][0]).parent.parent == expected.parent.parent
