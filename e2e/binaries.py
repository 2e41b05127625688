"""Build (once) and locate the Go binaries of the local control plane.

kube-apiserver, kube-controller-manager and kube-scheduler come from the ``k8s.io/kubernetes``
module through a wrapper module whose ``replace`` lines map every staging module to the
``v0.X.Y`` release that matches the pinned Kubernetes release (read from that release's own
go.mod); kubectl comes from the same module and release (``cmd/kubectl``), built on its own into its
own directory, so the tests run the kubectl of the cluster's release rather than whatever is on
PATH, and adding it did not rebuild the control plane (the Go build cache makes it incremental).
etcd comes from ``go.etcd.io/etcd/server/v3`` through a wrapper ``main``; kwok from
``sigs.k8s.io/kwok/cmd/kwok``; argocd-lua (Argo CD's Lua sandbox, e2e/argocd.py) from
``e2e/argolua`` on gopher-lua. Everything is cached outside the repository, keyed by version:
``$DELIVER_CACHE/bin/<component>-<version>/``. A warm cache makes this a no-op.

A build never leaves something a later run trusts unless it finished: each one builds into a
fresh temporary directory beside its target and renames it into place only when every binary is
there (a directory rename is atomic), so a failed, killed or interrupted build leaves at most a
temporary directory, which the next build of that component removes. A per-component file lock
(``bin/.<component>-<version>.lock``, released by the kernel if its holder dies) makes two runs
on one machine build each component once: the second waits, then finds it built.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v4.3.2"
# The peer of benchmarks/controller.py: the newest Argo Rollouts release (v1.10.2) builds here; its
# go.mod asks for go >= 1.26.10, so its build (only) runs on the approved go1.27.3 toolchain.
ARGO_ROLLOUTS_VERSION = "v1.10.2"
ARGO_ROLLOUTS_MODULE = "github.com/argoproj/argo-rollouts"
ARGO_TOOLCHAIN = "go1.27.3"
# Argo CD's Lua sandbox for the health check and actions in gitops/argocd: e2e/argolua, a small Go
# program on the gopher-lua release Argo CD's go.mod pins (argoproj/argo-cd, util/lua/lua.go).
# Cached as argocd-lua-<gopher-lua version>-<hash of e2e/argolua>, so an edit of it rebuilds.
GOPHER_LUA_VERSION = "v1.1.2"
ARGOCD_LUA_SOURCE = Path(__file__).resolve().parent / "argolua"

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBECTL = "kubectl"  # from the same k8s.io/kubernetes release, cached as kubectl-<KUBE_VERSION>


def cache_root() -> Path:
    return Path(os.environ.get("DELIVER_CACHE", Path.home() / ".cache" / "deliver"))


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path

    def all(self) -> dict[str, Path]:
        return {
            "etcd": self.etcd,
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
            "kube-scheduler": self.kube_scheduler,
            "kwok": self.kwok,
        }


def _bin_dir(component: str, version: str) -> Path:
    return cache_root() / "bin" / f"{component}-{version}"


def locate() -> Binaries:
    kube = _bin_dir("kubernetes", KUBE_VERSION)
    return Binaries(
        etcd=_bin_dir("etcd", ETCD_VERSION) / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kwok=_bin_dir("kwok", KWOK_VERSION) / "kwok",
    )


def helm_path() -> Path:
    return _bin_dir("helm", HELM_VERSION) / "helm"


def kubectl_path() -> Path:
    """The kubectl of the cluster's Kubernetes release (``python -m e2e.binaries --only kubectl``)."""
    return _bin_dir(KUBECTL, KUBE_VERSION) / KUBECTL


def argo_rollouts_path() -> Path:
    """The Argo Rollouts controller built from its module (``python -m e2e.binaries --only argo-rollouts``)."""
    return _bin_dir("argo-rollouts", ARGO_ROLLOUTS_VERSION) / "rollouts-controller"


def argo_rollouts_crds() -> list[Path]:
    """The CRDs of the same release, copied from the module's ``manifests/crds`` beside the binary."""
    return sorted((_bin_dir("argo-rollouts", ARGO_ROLLOUTS_VERSION) / "crds").glob("*-crd.yaml"))


def argocd_lua_version() -> str:
    """The cache key of the Argo CD Lua harness: the gopher-lua release and a hash of its sources."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((ARGOCD_LUA_SOURCE / name).read_bytes())
    return f"{GOPHER_LUA_VERSION}-{digest.hexdigest()[:12]}"


def argocd_lua_path() -> Path:
    """Argo CD's Lua sandbox (``python -m e2e.binaries --only argocd-lua``; e2e/argocd.py builds it on first use)."""
    return _bin_dir("argocd-lua", argocd_lua_version()) / "argocd-lua"


def _log(msg: str) -> None:
    print(f"[binaries {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["CGO_ENABLED"] = "0"
    return env


def _wait(proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait for a build step, with a heartbeat so a person watching CI knows it is alive."""
    started = time.monotonic()
    while True:
        try:
            rc = proc.wait(timeout=60)
            break
        except subprocess.TimeoutExpired:
            _log(f"  ... still building {what} ({int(time.monotonic() - started)}s)")
    if rc != 0:
        raise SystemExit(f"build step failed (exit {rc}): {what}")
    _log(f"  done in {time.monotonic() - started:.0f}s")


def _run(cmd: list[str], cwd: Path) -> None:
    _log("$ " + " ".join(cmd))
    _wait(subprocess.Popen(cmd, cwd=cwd, env=_go_env()), f"{' '.join(cmd[:2])} in {cwd}")


def _kube_replaces(kube_gomod: str, staging_version: str) -> list[str]:
    """Map every ``k8s.io/X => ./staging/src/k8s.io/X`` of the release's go.mod to ``v0.Y.Z``."""
    names = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s*=>\s*\./staging/src/", kube_gomod, re.M)
    if not names:
        raise SystemExit("no staging replace lines found in k8s.io/kubernetes go.mod")
    return [f"\t{n} => {n} {staging_version}" for n in sorted(set(names))]


def _module_file(module: str, version: str, workdir: Path) -> str:
    """Fetch one module's go.mod through the go command (module proxy), no source download."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=workdir,
        env=_go_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r'"GoMod":\s*"([^"]+)"', out)
    if not match:
        raise SystemExit(f"go mod download gave no go.mod for {module}@{version}: {out}")
    return Path(match.group(1)).read_text()


def _complete(out: Path, binaries: tuple[str, ...]) -> bool:
    return all((out / b).is_file() for b in binaries)


@contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """Hold the build lock of one cached component (blocks while another process builds it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another run building {out.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(out: Path, binaries: tuple[str, ...], build: Callable[[Path], None]) -> None:
    """Make ``out`` hold ``binaries``: unless already there, ``build(tmp)`` them into a fresh
    temporary directory, check they are all there, and rename it to ``out`` in one step."""
    if _complete(out, binaries):
        return
    with _build_lock(out):
        if _complete(out, binaries):  # another run built it while this one waited
            return
        for stale in [out.with_name(out.name + ".tmp"), *out.parent.glob(f".{out.name}.build-*")]:
            shutil.rmtree(stale, ignore_errors=True)  # left by a build that was killed
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
        tmp.chmod(0o755)
        try:
            build(tmp)
            missing = [b for b in binaries if not (tmp / b).is_file()]
            if missing:
                raise SystemExit(f"build of {out.name} finished without {', '.join(missing)}")
            if out.exists():  # an incomplete directory (e.g. a binary removed by hand)
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def build_kube() -> None:
    _install(_bin_dir("kubernetes", KUBE_VERSION), KUBE_COMMANDS, lambda tmp: _build_kube(tmp, KUBE_COMMANDS))


def build_kubectl() -> None:
    _install(_bin_dir(KUBECTL, KUBE_VERSION), (KUBECTL,), lambda tmp: _build_kube(tmp, (KUBECTL,)))


def _build_kube(tmp: Path, commands: tuple[str, ...]) -> None:
    """Build ``k8s.io/kubernetes/cmd/<command>`` for each command into ``tmp``, through a wrapper
    module of its own (one per set of commands, so two builds never share a work directory)."""
    name = "kubernetes" if commands == KUBE_COMMANDS else "-".join(commands)
    work = cache_root() / "build" / f"{name}-{KUBE_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    staging = "v0." + KUBE_VERSION.split(".", 1)[1]
    (work / "go.mod").write_text("module deliver.dev/e2e/kubebin\n\ngo 1.24.0\n")
    _log(f"resolving k8s.io/kubernetes {KUBE_VERSION} (staging modules at {staging})")
    kube_mod = _module_file("k8s.io/kubernetes", KUBE_VERSION, work)
    go_line = re.search(r"^go (\S+)", kube_mod, re.M)
    godebug = re.search(r"^godebug (.+)$", kube_mod, re.M)
    header = f"module deliver.dev/e2e/kubebin\n\ngo {go_line.group(1) if go_line else '1.24.0'}\n"
    if godebug:
        header += f"\ngodebug {godebug.group(1)}\n"
    gomod = (
        header
        + f"\nrequire k8s.io/kubernetes {KUBE_VERSION}\n\nreplace (\n"
        + "\n".join(_kube_replaces(kube_mod, staging))
        + "\n)\n"
    )
    (work / "go.mod").write_text(gomod)
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in commands)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run(["go", "mod", "tidy"], work)
    major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
    pkgs = ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
    flags = []
    for pkg in pkgs:
        flags += [
            f"-X {pkg}.gitVersion={KUBE_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w " + " ".join(flags), "-o", str(tmp) + "/"]
        + [f"k8s.io/kubernetes/cmd/{c}" for c in commands],
        work,
    )


def build_etcd() -> None:
    _install(_bin_dir("etcd", ETCD_VERSION), ("etcd",), _build_etcd)


def _build_etcd(tmp: Path) -> None:
    work = cache_root() / "build" / f"etcd-{ETCD_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(
        f"module deliver.dev/e2e/etcdbin\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    (work / "main.go").write_text(
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _run(["go", "mod", "tidy"], work)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "etcd"), "."], work)


def _go_install(module_pkg: str, version: str, component: str, binary: str) -> None:
    def build(tmp: Path) -> None:
        _log(f"$ go install {module_pkg}@{version}")
        _wait(
            subprocess.Popen(
                ["go", "install", "-trimpath", "-ldflags", "-s -w", f"{module_pkg}@{version}"],
                cwd=tmp,
                env=dict(_go_env(), GOBIN=str(tmp)),
            ),
            f"{component} ({module_pkg}@{version})",
        )

    _install(_bin_dir(component, version), (binary,), build)


def build_kwok() -> None:
    _go_install("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION, "kwok", "kwok")


def build_helm() -> None:
    _go_install("helm.sh/helm/v4/cmd/helm", HELM_VERSION, "helm", "helm")


def build_argocd_lua() -> Path:
    """Build e2e/argolua (gopher-lua and layeh.com/gopher-json only, as its go.sum pins) once."""

    def build(tmp: Path) -> None:
        _log(f"$ go build e2e/argolua (gopher-lua {GOPHER_LUA_VERSION})")
        cmd = ["go", "build", "-mod=readonly", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "argocd-lua"), "."]
        _wait(subprocess.Popen(cmd, cwd=ARGOCD_LUA_SOURCE, env=_go_env()), "argocd-lua")

    path = argocd_lua_path()
    _install(path.parent, (path.name,), build)
    return path


def build_argo_rollouts() -> None:
    _install(
        _bin_dir("argo-rollouts", ARGO_ROLLOUTS_VERSION),
        ("rollouts-controller", "crds/rollout-crd.yaml"),
        _build_argo_rollouts,
    )


def _build_argo_rollouts(tmp: Path) -> None:
    """Build ``cmd/rollouts-controller`` inside the module's own source tree, so its own go.mod and
    its replace lines decide every dependency (no wrapper module could carry those replaces)."""
    work = cache_root() / "build" / f"argo-rollouts-{ARGO_ROLLOUTS_VERSION}"
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    env = dict(_go_env(), GOTOOLCHAIN=ARGO_TOOLCHAIN)
    scratch = Path(tempfile.mkdtemp(prefix="argo-mod-", dir=work.parent))
    try:
        (scratch / "go.mod").write_text("module deliver.dev/bench/argo\n")
        found = subprocess.run(
            ["go", "mod", "download", "-json", f"{ARGO_ROLLOUTS_MODULE}@{ARGO_ROLLOUTS_VERSION}"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    zip_path = re.search(r'"Zip":\s*"([^"]+)"', found)
    if not zip_path or not Path(zip_path.group(1)).is_file():
        raise SystemExit(f"the module proxy gave no source for {ARGO_ROLLOUTS_MODULE}@{ARGO_ROLLOUTS_VERSION}: {found}")
    _log(f"unpacking {ARGO_ROLLOUTS_MODULE}@{ARGO_ROLLOUTS_VERSION}")
    prefix = f"{ARGO_ROLLOUTS_MODULE}@{ARGO_ROLLOUTS_VERSION}/"
    with zipfile.ZipFile(zip_path.group(1)) as archive:
        for member in archive.infolist():
            if member.is_dir() or not member.filename.startswith(prefix):
                continue
            target = work / member.filename[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
    version_pkg = f"{ARGO_ROLLOUTS_MODULE}/utils/version"
    release = ARGO_ROLLOUTS_VERSION.lstrip("v")
    flags = f"-s -w -X {version_pkg}.version={release} -X {version_pkg}.buildDate=1970-01-01T00:00:00Z"
    out = str(tmp / "rollouts-controller")
    cmd = ["go", "build", "-trimpath", "-ldflags", flags, "-o", out, "./cmd/rollouts-controller"]
    _log("$ GOTOOLCHAIN=" + ARGO_TOOLCHAIN + " " + " ".join(cmd))
    _wait(subprocess.Popen(cmd, cwd=work, env=env), f"argo-rollouts {ARGO_ROLLOUTS_VERSION}")
    (tmp / "crds").mkdir()
    for crd in sorted((work / "manifests" / "crds").glob("*-crd.yaml")):
        shutil.copy(crd, tmp / "crds" / crd.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.binaries")
    parser.add_argument(
        "--only", choices=["etcd", "kube", "kwok", "helm", "kubectl", "argocd-lua", "argo-rollouts"], action="append"
    )
    parser.add_argument("--print", action="store_true", help="print binary paths and exit")
    args = parser.parse_args(argv)
    if args.print:
        for name, path in locate().all().items():
            print(f"{name}\t{path}\t{'ok' if path.exists() else 'missing'}")
        print(f"helm\t{helm_path()}\t{'ok' if helm_path().exists() else 'missing'}")
        print(f"kubectl\t{kubectl_path()}\t{'ok' if kubectl_path().exists() else 'missing'}")
        print(f"argocd-lua\t{argocd_lua_path()}\t{'ok' if argocd_lua_path().exists() else 'missing'}")
        return 0
    steps = {
        "etcd": build_etcd,
        "kwok": build_kwok,
        "kube": build_kube,
        "helm": build_helm,
        "kubectl": build_kubectl,
        "argocd-lua": build_argocd_lua,
    }
    if args.only and "argo-rollouts" in args.only:  # the benchmark's peer: only when asked for by name
        steps["argo-rollouts"] = build_argo_rollouts
    started = time.monotonic()
    for name in args.only or list(steps):
        steps[name]()
    _log(f"all binaries ready in {time.monotonic() - started:.0f}s under {cache_root() / 'bin'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
