"""What Flux's health assessment says about objects: kstatus, the library itself, run here.

Flux's kustomize-controller (``wait``, ``healthChecks``) and helm-controller judge workloads with
kstatus (``sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute``). ``gitops/flux/kstatus`` is a
40-line Go program around that function; it is built from the Go module proxy once and cached in
``$DELIVER_CACHE/bin/kstatus-of-<hash of its sources>`` (a first build takes ~3 min on 2 cores).

    verdicts = kstatus({"at-rest": deployment_json, ...})   # {"at-rest": ("InProgress", "...")}
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from e2e.binaries import cache_root
from e2e.cluster import REPO_ROOT

SOURCE = REPO_ROOT / "gitops" / "flux" / "kstatus"


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


def kstatus(objects: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """label -> (kstatus status, message) for each object."""
    out = subprocess.run(
        [str(binary())], input=json.dumps(objects), capture_output=True, text=True, check=True, timeout=60
    )
    return {label: (v["status"], v["message"]) for label, v in json.loads(out.stdout).items()}
