"""``deliver version``: the client's version, the controller's (read from its Deployment), the
cluster's (``GET /version``) and the hold mode; ``--client``: the client's only, offline."""

from __future__ import annotations

import sys
from typing import Any

import click

from delivery import __version__
from delivery.cli.context import Globals, common, print_result
from delivery.cli.view import hold_mode
from delivery.errors import DeliverError, Forbidden, KubeError
from delivery.gate import EXIT_API
from delivery.kube.client import DEPLOYMENTS, Kube

# The labels the chart puts on the controller's Deployment (charts/deliver/templates/_helpers.tpl)
CONTROLLER = "app.kubernetes.io/name=deliver,app.kubernetes.io/component=controller"
READ_AT_MOST = 10  # controller Deployments listed (one per namespaced install)

JSON = dict[str, Any]


def unknown(reason: str) -> JSON:
    return {"version": "unknown", "reason": reason}


def cluster_version(kube: Kube) -> JSON:
    """The API server's ``/version`` (readable by everyone: system:public-info-viewer)."""
    try:
        found = kube.request("GET", "/version")
    except KubeError as exc:
        return unknown(str(exc))
    return {"version": str(found.get("gitVersion") or "unknown"), "platform": str(found.get("platform") or "")}


def controller_versions(kube: Kube, namespace: str | None, fallback: str) -> list[JSON]:
    """Each deliver controller's Deployment (the chart's labels) in ``namespace`` (None: every namespace,
    then ``fallback`` when that is forbidden): its version, image and readiness."""
    where = f"namespace {namespace}" if namespace else "any namespace"
    try:
        found = kube.list(DEPLOYMENTS, namespace, selector=CONTROLLER, limit=READ_AT_MOST)
    except Forbidden as exc:
        if namespace is not None:
            return [unknown(f"you may not list Deployments in {where}: {exc}")]
        return controller_versions(kube, fallback, fallback)
    except KubeError as exc:
        return [unknown(f"cannot list Deployments in {where}: {exc}")]
    items = found.get("items") or []
    if not items:
        return [
            unknown(
                f"no Deployment labelled {CONTROLLER} in {where} "
                "(give --controller-namespace where the chart is installed)"
            )
        ]
    return [_controller(d) for d in items]


def _controller(deployment: JSON) -> JSON:
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == "controller"), containers[0])
    image = str(container.get("image") or "")
    label = str((meta.get("labels") or {}).get("app.kubernetes.io/version") or "")
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    wanted = spec.get("replicas")
    return {
        "version": image_tag(image) or label or "unknown",
        "deployment": f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        "image": image,
        "ready": f"{ready}/{1 if wanted is None else wanted}",
    }


def image_tag(image: str) -> str:
    """The tag of ``registry:5000/deliver:0.1.0`` (``0.1.0``); empty for a digest or no tag."""
    if "@" in image:
        return ""
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else ""


@click.command()
@click.option("--client", "client_only", is_flag=True, help="The client's version only (no cluster is read).")
@click.option(
    "--controller-namespace",
    metavar="NS",
    help="Where the controller is installed (default: looked for in every namespace, else -n's).",
)
@common
@click.pass_obj
def version(g: Globals, client_only: bool, controller_namespace: str | None) -> None:
    """Print the versions of this client, the deliver controller and the cluster, and the hold mode.

    \b
    A part that cannot be read is "unknown" with the reason (exit 0); exit 4 when the
    cluster itself cannot be read.
    """
    data: JSON = {"client": {"version": __version__}}
    if not client_only:
        data.update(_server_side(g, controller_namespace))
    print_result(g, data, _human(data))
    sys.exit(EXIT_API if data.get("cluster", {}).get("version") == "unknown" else 0)


def _server_side(g: Globals, controller_namespace: str | None) -> JSON:
    try:
        kube = g.connect(g.kubeconfig, g.context)
    except DeliverError as exc:
        cluster = unknown(str(exc))
    else:
        cluster = cluster_version(kube)
    if cluster["version"] == "unknown":
        why = f"the cluster could not be read: {cluster['reason']}"
        return {"controllers": [unknown(why)], "cluster": cluster, "holdMode": {"mode": "unknown", "reason": why}}
    controllers = controller_versions(kube, controller_namespace, g.namespace)
    mode, why = hold_mode(kube)
    return {"controllers": controllers, "cluster": cluster, "holdMode": {"mode": mode, "reason": why}}


def _human(data: JSON) -> str:
    lines = [f"client: {data['client']['version']}"]
    for c in data.get("controllers") or []:
        if "reason" in c:
            lines.append(f"controller: unknown ({c['reason']})")
        else:
            lines.append(f"controller: {c['version']} ({c['deployment']}, image {c['image']}, {c['ready']} ready)")
    if "cluster" in data:
        cluster = data["cluster"]
        detail = cluster.get("reason") or cluster.get("platform")
        lines.append(f"cluster: {cluster['version']}" + (f" ({detail})" if detail else ""))
    if "holdMode" in data:
        lines.append(f"hold mode: {data['holdMode']['mode']} ({data['holdMode']['reason']})")
    return "\n".join(lines)
