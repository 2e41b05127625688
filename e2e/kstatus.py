"""What Flux's health assessment says about objects: kstatus, the library itself, run here.

Flux's kustomize-controller (``wait``, ``healthChecks``) and helm-controller judge workloads with
kstatus (``sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute``); a Kustomization's
``healthCheckExprs`` replace it for a kind with CEL expressions, evaluated by Flux's
``fluxcd/pkg/runtime/cel``. ``gitops/flux/kstatus`` is a small Go program around both; it is built
from the Go module proxy once and cached in ``$DELIVER_CACHE/bin/kstatus-of-<hash of its
sources>`` (a first build takes several minutes on 2 cores).

    kstatus({"at-rest": deployment_json, ...})    # {"at-rest": ("InProgress", "...")}
    flux_cel({"at-rest": deployment_json, ...})   # with gitops/flux/kustomization-health.yaml: {"at-rest": "Current"}
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from e2e.binaries import cache_root
from e2e.cluster import REPO_ROOT

SOURCE = REPO_ROOT / "gitops" / "flux" / "kstatus"
HEALTH = REPO_ROOT / "gitops" / "flux" / "kustomization-health.yaml"


def binary() -> Path:
    """The kstatus-of binary for the current sources, built if the cache lacks it."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    target = cache_root() / "bin" / f"kstatus-of-{digest.hexdigest()[:12]}" / "kstatus-of"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
        subprocess.run(["go", "build", "-o", str(target) + ".tmp", "."], cwd=SOURCE, env=env, check=True, timeout=900)
        os.replace(str(target) + ".tmp", target)
    return target


def health_check_exprs() -> dict[str, str]:
    """The healthCheckExprs entry for apps/v1 Deployment that deliver ships for Flux."""
    spec = yaml.safe_load(HEALTH.read_text())["spec"]
    (entry,) = [e for e in spec["healthCheckExprs"] if (e["apiVersion"], e["kind"]) == ("apps/v1", "Deployment")]
    return {k: v for k, v in entry.items() if k in ("current", "failed", "inProgress")}


def kstatus(objects: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """label -> (kstatus status, message) for each object."""
    return {label: (v["status"], v["message"]) for label, v in _run(objects).items()}


def flux_cel(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    """label -> what Flux's evaluator makes of deliver's healthCheckExprs (gitops/flux) for each object."""
    return {label: str(v["cel"]) for label, v in _run(objects, health_check_exprs()).items()}


def _run(objects: dict[str, dict[str, Any]], exprs: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        argv = [str(binary())]
        if exprs is not None:
            json.dump(exprs, f)
            f.flush()
            argv += ["-cel", f.name]
        out = subprocess.run(argv, input=json.dumps(objects), capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"kstatus-of failed: {out.stderr}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]
