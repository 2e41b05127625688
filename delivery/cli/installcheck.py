"""``deliver check-install``: is an installed controller leading, and may its identity list Deployments?

The chart's ``helm test`` hook runs it as the controller's own ServiceAccount (charts/deliver,
templates/tests/): the leader Lease has a holder, the holder is one of the release's pods (when the
pods may be listed) and renews the Lease within its duration, and the Deployments the controller
watches may be listed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import click

from delivery.cli.context import Globals, common, fail, print_result
from delivery.errors import Forbidden, KubeError, NotFound
from delivery.gate import EXIT_API, EXIT_FAILED
from delivery.kube.client import DEPLOYMENTS, JSON, LEASES, PODS, Kube


@dataclass(frozen=True)
class Finding:
    """One check: what was checked, whether it holds, and what was seen."""

    check: str
    ok: bool
    message: str


def _holder(lease: JSON) -> tuple[str, str]:
    spec = lease.get("spec") or {}
    return str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or "")


def leader_finding(
    kube: Kube,
    namespace: str,
    lease_name: str,
    pods: str | None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> Finding:
    """The Lease is held, by one of the pods ``pods`` selects (when given), and renewed within its duration.

    The holder's identity is its pod's name and a suffix (``POD_NAME_1a2b3c4d``, delivery.engine.leader).
    Renewal is seen as a change of ``renewTime`` between two reads, so no clock is compared with the
    API server's."""
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    where = f"Lease {namespace}/{lease_name}"
    try:
        lease = kube.get(LEASES, namespace, lease_name)
    except NotFound:
        return Finding("leader", False, f"no {where}: no replica has been elected (are the controller's pods running?)")
    holder, renewed = _holder(lease)
    if not holder:
        return Finding("leader", False, f"{where} has no holder: no replica leads")
    pod = holder.rsplit("_", 1)[0]
    if pods:
        selected = {p["metadata"]["name"]: p for p in kube.items(PODS, namespace, pods)}
        if pod not in selected:
            names = ", ".join(sorted(selected)) or "none"
            return Finding("leader", False, f"{where} is held by {holder}, not by a pod of {pods} ({names})")
        phase = (selected[pod].get("status") or {}).get("phase")
        if phase != "Running":
            return Finding("leader", False, f"{where} is held by {holder}, whose pod is {phase}, not Running")
    duration = float((lease.get("spec") or {}).get("leaseDurationSeconds") or 15)
    deadline = clock() + duration + 1
    while clock() < deadline:
        sleep(1.0)
        now_holder, now_renewed = _holder(kube.get(LEASES, namespace, lease_name))
        if now_holder != holder:
            return Finding("leader", False, f"{where} moved from {holder} to {now_holder or 'nobody'} during the check")
        if now_renewed != renewed:
            return Finding("leader", True, f"{where} is held and renewed by {holder}")
    return Finding("leader", False, f"{where} is held by {holder}, who did not renew it within {duration:g}s")


def deployments_finding(kube: Kube, namespace: str | None) -> Finding:
    """This identity may list Deployments where the controller watches them (one item asked for)."""
    where = f"namespace {namespace}" if namespace else "all namespaces"
    try:
        kube.list(DEPLOYMENTS, namespace, limit=1)
    except Forbidden as exc:
        return Finding("deployments", False, f"may not list Deployments in {where}: {exc}")
    return Finding("deployments", True, f"may list Deployments in {where}")


@click.command("check-install")
@click.option("--lease-name", default="deliver-controller", show_default=True, help="Name of the leader Lease.")
@click.option("--lease-namespace", default=None, help="Namespace of the Lease (default: $POD_NAMESPACE, else -n).")
@click.option(
    "--leader/--no-leader",
    default=True,
    show_default=True,
    help="Check that the Lease is held and renewed (off for a controller without leader election).",
)
@click.option(
    "--pods",
    "pods",
    default=None,
    metavar="SELECTOR",
    help="Label selector of the controller's pods, in the Lease's namespace: the holder must be one of them.",
)
@click.option("-A", "--all-namespaces", is_flag=True, help="Check the Deployments of every namespace (default: -n).")
@common
@click.pass_obj
def check_install(
    g: Globals, lease_name: str, lease_namespace: str | None, leader: bool, pods: str | None, all_namespaces: bool
) -> None:
    """Check a running install as this identity: the controller leads (its Lease is held by one of its
    pods and renewed) and Deployments may be listed. The chart's `helm test` runs it as the
    controller's ServiceAccount. Exit 0 when every check holds, 1 when one fails."""
    kube = g.kube()
    findings: list[Finding] = []
    try:
        if leader:
            namespace = lease_namespace or os.environ.get("POD_NAMESPACE") or g.namespace
            findings.append(leader_finding(kube, namespace, lease_name, pods))
        findings.append(deployments_finding(kube, None if all_namespaces else g.namespace))
    except KubeError as exc:
        fail(f"cannot read the cluster: {exc}", EXIT_API)
    human = "\n".join(f"{'ok' if f.ok else 'FAIL':<5}{f.check}: {f.message}" for f in findings)
    print_result(g, [asdict(f) for f in findings], human)
    if not all(f.ok for f in findings):
        raise SystemExit(EXIT_FAILED)
