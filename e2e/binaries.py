"""Build (once) and locate the Go binaries of the local control plane.

kube-apiserver, kube-controller-manager and kube-scheduler come from the ``k8s.io/kubernetes``
module through a wrapper module whose ``replace`` lines map every staging module to the
``v0.X.Y`` release that matches the pinned Kubernetes release (read from that release's own
go.mod). etcd comes from ``go.etcd.io/etcd/server/v3`` through a wrapper ``main``; kwok from
``sigs.k8s.io/kwok/cmd/kwok``. Everything is cached outside the repository, keyed by version:
``$DELIVER_CACHE/bin/<component>-<version>/``. A warm cache makes this a no-op.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.19.5"

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


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


def build_kube() -> None:
    out = _bin_dir("kubernetes", KUBE_VERSION)
    if all((out / c).exists() for c in KUBE_COMMANDS):
        return
    work = cache_root() / "build" / f"kubernetes-{KUBE_VERSION}"
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
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in KUBE_COMMANDS)
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
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w " + " ".join(flags), "-o", str(tmp) + "/"]
        + [f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS],
        work,
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def build_etcd() -> None:
    out = _bin_dir("etcd", ETCD_VERSION)
    if (out / "etcd").exists():
        return
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
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "etcd"), "."], work)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _go_install(module_pkg: str, version: str, component: str, binary: str) -> None:
    out = _bin_dir(component, version)
    if (out / binary).exists():
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env_bin = dict(_go_env(), GOBIN=str(tmp))
    _log(f"$ go install {module_pkg}@{version}")
    _wait(
        subprocess.Popen(
            ["go", "install", "-trimpath", "-ldflags", "-s -w", f"{module_pkg}@{version}"], cwd=tmp, env=env_bin
        ),
        f"{component} ({module_pkg}@{version})",
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def build_kwok() -> None:
    _go_install("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION, "kwok", "kwok")


def build_helm() -> None:
    _go_install("helm.sh/helm/v3/cmd/helm", HELM_VERSION, "helm", "helm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.binaries")
    parser.add_argument("--only", choices=["etcd", "kube", "kwok", "helm"], action="append")
    parser.add_argument("--print", action="store_true", help="print binary paths and exit")
    args = parser.parse_args(argv)
    if args.print:
        for name, path in locate().all().items():
            print(f"{name}\t{path}\t{'ok' if path.exists() else 'missing'}")
        print(f"helm\t{helm_path()}\t{'ok' if helm_path().exists() else 'missing'}")
        return 0
    steps = {"etcd": build_etcd, "kwok": build_kwok, "kube": build_kube, "helm": build_helm}
    started = time.monotonic()
    for name in args.only or ["etcd", "kwok", "kube", "helm"]:
        steps[name]()
    _log(f"all binaries ready in {time.monotonic() - started:.0f}s under {cache_root() / 'bin'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
