"""A Helm hook that makes ``helm install/upgrade`` wait for deliver's verdict (docs/helm.md).

Helm 4's ``--wait`` does not wait for a paused Deployment (helm.sh/helm/v4 ``pkg/kube/statuswait.go``
skips it; the legacy checker counts it ready), and in the policy hold mode the API server pauses a
managed Deployment in the very write Helm makes. So ``--wait`` alone returns before deliver decides,
and ``--rollback-on-failure`` never sees a rolled-back change. Helm does wait for its hooks: a
``post-install,post-upgrade`` Job that runs ``deliver gate APP`` ends when the delivery does, and
fails (so the Helm command fails, and ``--rollback-on-failure`` rolls the release back) exactly when
deliver rolled the change back, aborted it or refused it.

``manifests`` are that Job and the least it needs to run: a ServiceAccount and a Role that may only
read and watch Deployments in the release's namespace (what ``deliver gate`` reads), each a hook
created before the Job and deleted when the next one is created or the Job succeeded.
"""

from __future__ import annotations

import math
from typing import Any

HOOK_EVENTS = "post-install,post-upgrade"
GRACE = 60  # seconds the Job may run past the gate's own timeout before Kubernetes stops it


def _hook(weight: int) -> dict[str, str]:
    return {
        "helm.sh/hook": HOOK_EVENTS,
        "helm.sh/hook-weight": str(weight),
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }


def manifests(app: str, image: str, timeout: float, name: str = "", pin_image: str = "") -> list[dict[str, Any]]:
    """The ServiceAccount, Role, RoleBinding and Job of the gate hook for Deployment ``app``.

    ``timeout`` (seconds) is the gate's; the Job's deadline adds ``GRACE``. With ``pin_image`` the
    gate reports the template that runs that image however late it starts (``deliver gate --image``).
    No namespace: Helm creates them in the release's namespace, which the gate reads from the pod."""
    name = name or f"deliver-gate-{app}"[:63].rstrip("-")

    def labels() -> dict[str, str]:  # a copy each time: the YAML has no anchors
        return {"app.kubernetes.io/name": "deliver-gate", "app.kubernetes.io/component": "helm-hook"}

    def meta(weight: int) -> dict[str, Any]:
        return {"name": name, "labels": labels(), "annotations": _hook(weight)}

    seconds = max(1, math.ceil(timeout))
    args = ["gate", app, "--namespace", "$(POD_NAMESPACE)", "--timeout", f"{seconds}s"]
    if pin_image:
        args += ["--image", pin_image]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(-10),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(-10),
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(-5),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name}],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta(0),
            "spec": {
                "backoffLimit": 0,  # one answer: a failed gate is the verdict, not a flake to retry
                "activeDeadlineSeconds": seconds + GRACE,
                "template": {
                    "metadata": {"labels": labels()},
                    "spec": {
                        "serviceAccountName": name,
                        "restartPolicy": "Never",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "gate",
                                "image": image,
                                "command": ["deliver"],
                                "args": args,
                                "env": [
                                    {
                                        "name": "POD_NAMESPACE",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                    },
                                    {"name": "NO_COLOR", "value": "1"},
                                ],
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "64Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]
