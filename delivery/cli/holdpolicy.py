"""``deliver hold-policy``: the MutatingAdmissionPolicy that holds template changes, printed for the
team that owns admission, or checked on the cluster (docs/hold-modes.md)."""

from __future__ import annotations

import sys

import click
import yaml

from delivery.cli.context import Globals, common, fail
from delivery.engine.holdpolicy import GUARD_NAME, POLICY_NAME, all_manifests, detect
from delivery.errors import DeliverError
from delivery.gate import EXIT_API, EXIT_FAILED


@click.command("hold-policy")
@click.option("--name", default=POLICY_NAME, show_default=True, help="Name of the policy and its binding.")
@click.option(
    "--guard-name",
    default=GUARD_NAME,
    show_default=True,
    help="Name of the ValidatingAdmissionPolicy (and binding) that keeps a rejected template held.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Do not print the manifests: read the cluster and say which hold mode the controller would use "
    "(exit 0 for policy, 1 for paused).",
)
@common
@click.pass_obj
def hold_policy(g: Globals, name: str, guard_name: str, check: bool) -> None:
    """Print the MutatingAdmissionPolicy and binding that pause each template change of a managed
    Deployment inside the API server (Kubernetes 1.36+), and the ValidatingAdmissionPolicy that keeps a
    rejected template held; or --check the cluster's."""
    if not check:
        sys.stdout.write(yaml.safe_dump_all(all_manifests(name, guard_name), sort_keys=False))
        return
    try:
        status = detect(g.kube(), name)
    except DeliverError as exc:
        fail(f"cannot read the cluster: {exc}", EXIT_API)
    click.echo(f"hold mode: {status.mode.value} ({status.why})")
    sys.exit(0 if status.mode.value == "policy" else EXIT_FAILED)
