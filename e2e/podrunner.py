"""Runs, on this machine, the pods the e2e marks ``e2e.deliver.dev/behaviour: run-here``.

kwok plays the kubelet of the local cluster and runs no containers (its stages leave these pods
alone, e2e/kwok_stages.yaml). Some tests need a pod's command to really run, with the pod's own
identity: the Helm hook Job of docs/helm.md, whose container runs ``deliver gate``. ``PodRunner``
does for those pods what a kubelet would, and nothing else:

- waits until the scheduler has bound the pod to a node;
- authenticates as the pod's ServiceAccount: a token from the API server's TokenRequest (what the
  kubelet mounts), in a kubeconfig with the cluster's CA, so the pod's RBAC is what is tested;
- builds the container's environment (``value`` and ``fieldRef: metadata.namespace``/``name``),
  expands ``$(VAR)`` in its args as Kubernetes does, runs ``command`` + ``args`` (``deliver`` is this
  checkout's CLI, the entry point the image runs);
- reports the pod Running, then Succeeded or Failed with the container's exit code in the pod status,
  which the Job controller (kube-controller-manager) reads.

What it does not verify: the image itself (e2e/test_image.py runs the image's ``deliver`` on its own).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from delivery.kube.client import PODS
from delivery.kube.client import KubeClient as JsonKube
from e2e.cluster import BEHAVIOUR_LABEL

RUN_HERE = "run-here"
COMMANDS = {"deliver": [sys.executable, "-m", "delivery.cli"]}
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodRunner:
    """Runs every ``run-here`` pod of namespace ``ns`` once, in a thread each, until ``stop``."""

    def __init__(self, jk: JsonKube, kubeconfig: Path, ns: str, timeout: float = 600) -> None:
        self.jk = jk
        self.kubeconfig = kubeconfig
        self.ns = ns
        self.timeout = timeout
        self.started: set[str] = set()  # uids of the pods run
        self.exits: dict[str, int] = {}  # pod name -> exit code
        self.outputs: dict[str, str] = {}  # pod name -> what its command printed
        self._stop = threading.Event()
        self._dir = Path(tempfile.mkdtemp(prefix="podrunner-"))
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PodRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.jk.items(PODS, self.ns, f"{BEHAVIOUR_LABEL}={RUN_HERE}")
            except Exception:  # a transient API error: look again
                pods = []
            for pod in pods:
                # By uid: a pod of the same name may come back (helm test's before-hook-creation), and
                # a pod that already ran (a runner before this one) is not run again.
                uid = pod["metadata"]["uid"]
                ended = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                if uid in self.started or ended or not pod["spec"].get("nodeName"):
                    continue
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                self.started.add(uid)
                threading.Thread(target=self._run, args=(pod,), daemon=True).start()
            self._stop.wait(0.2)

    def _kubeconfig_for(self, pod: dict[str, Any]) -> Path:
        """A kubeconfig that authenticates as the pod's ServiceAccount (a bound token, as mounted)."""
        sa = pod["spec"].get("serviceAccountName") or "default"
        answer = self.jk.request(
            "POST",
            f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": 3600,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"]},
                },
            },
        )
        admin = yaml.safe_load(self.kubeconfig.read_text())
        cluster = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": sa, "user": {"token": answer["status"]["token"]}}],
            "contexts": [{"name": "pod", "context": {"cluster": "local", "user": sa, "namespace": self.ns}}],
            "current-context": "pod",
        }
        path = self._dir / f"{pod['metadata']['name']}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path

    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        fields = {"metadata.namespace": self.ns, "metadata.name": pod["metadata"]["name"]}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            else:
                path = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
                if path not in fields:
                    raise ValueError(f"the pod runner does not provide {item}")
                env[item["name"]] = fields[path]
        return env

    def _status(self, pod: dict[str, Any], phase: str, state: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        ready = phase == "Running"
        self.jk.patch(
            PODS,
            self.ns,
            pod["metadata"]["name"],
            {
                "status": {
                    "phase": phase,
                    "startTime": _now(),
                    "podIP": "10.255.0.1",
                    "conditions": [
                        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": _now()},
                        {"type": "ContainersReady", "status": "True" if ready else "False"},
                        {"type": "PodScheduled", "status": "True"},
                    ],
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": ready,
                            "restartCount": 0,
                            "started": ready,
                            "state": state,
                        }
                    ],
                }
            },
            sub="status",
        )

    def _run(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        started = _now()
        try:
            env = self._env(pod, container)
            argv = [
                *COMMANDS.get(container["command"][0], container["command"][:1]),
                *container["command"][1:],
                *(container.get("args") or []),
            ]
            argv = [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a) for a in argv]
            env = dict(os.environ, **env, KUBECONFIG=str(self._kubeconfig_for(pod)))
            self._status(pod, "Running", {"running": {"startedAt": started}})
            t0 = time.monotonic()
            r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=self.timeout)
            code, out = r.returncode, r.stdout + r.stderr
            out += f"\n[pod runner: exit {code} after {time.monotonic() - t0:.1f}s]"
        except Exception as exc:  # the pod fails, as one whose container could not start
            code, out = 128, f"[pod runner: {type(exc).__name__}: {exc}]"
        self.exits[name] = code
        self.outputs[name] = out
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": _now(),
        }
        try:
            self._status(pod, "Succeeded" if code == 0 else "Failed", {"terminated": terminated})
        except Exception:  # the Job (and its pod) was deleted meanwhile
            pass
