"""``deliver undo``: write an older pod template (from the Deployment's ReplicaSets) back into the Deployment."""

from __future__ import annotations

from typing import Any

import click

from delivery import spec as specmod
from delivery import templates
from delivery.cli.context import Globals, api_failed, common, fail, get_deployment, note, print_result
from delivery.cli.params import REVISION
from delivery.engine.state import read_state
from delivery.errors import KubeError, StateError
from delivery.gate import EXIT_API
from delivery.kube.client import DEPLOYMENTS, JSON_PATCH, REPLICASETS, selector_string

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
ATTEMPTS = 5  # writes lost to a concurrent change before giving up


def previous_revision(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]], to_revision: int | None = None
) -> tuple[dict[str, Any] | None, str]:
    """The ReplicaSet to go back to and why (None and a reason when there is none). Pure.

    Candidates are the ReplicaSets the Deployment controls, newest ``deployment.kubernetes.io/revision``
    first, skipping the template the Deployment declares now and a revision deliver rolled back.
    """
    meta = deployment["metadata"]
    uid = meta.get("uid")
    current = templates.revision(deployment["spec"]["template"])
    try:
        failed = read_state(deployment).failed_revision
    except StateError:
        failed = ""
    owned = []
    for rs in replicasets:
        refs = (rs.get("metadata") or {}).get("ownerReferences") or []
        held = ((rs.get("metadata") or {}).get("labels") or {}).get(templates.HELD_LABEL) == meta.get("name")
        if not any((r.get("controller") or held) and r.get("uid") == uid for r in refs):
            continue  # (held: the Deployment's, held by deliver for an exact canary share)
        try:
            number = int(((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)) or 0)
        except ValueError:
            number = 0
        owned.append((number, rs))
    owned.sort(key=lambda item: -item[0])
    if to_revision is not None:
        for number, rs in owned:
            if number == to_revision:
                rev = templates.revision(rs["spec"]["template"])
                if rev == current:
                    return None, f"revision {to_revision} is the template the Deployment declares already"
                if failed and rev == failed:
                    return None, (
                        f"revision {to_revision} (template {rev}) is the one deliver rolled back; "
                        f"`deliver retry {meta.get('name', '')}` delivers it again"
                    )
                return rs, f"revision {number}"
        known = ", ".join(str(n) for n, _ in owned) or "none"
        return None, f"revision {to_revision} not found (ReplicaSet revisions kept: {known})"
    for number, rs in owned:
        rev = templates.revision(rs["spec"]["template"])
        if rev == current or (failed and rev == failed):
            continue
        return rs, f"revision {number}"
    return None, "no previous revision left to go back to (revisionHistoryLimit may have pruned it)"


@click.command()
@click.argument("app")
@click.option(
    "--to-revision",
    type=REVISION,
    default=None,
    help="Go back to this deployment.kubernetes.io/revision (1 or more) instead of the previous one.",
)
@common
@click.pass_obj
def undo(g: Globals, app: str, to_revision: int | None) -> None:
    """Go back to APP's previous stable revision.

    The previous revision's pod template (from the Deployment's older ReplicaSets) is written into
    the Deployment, which deliver then delivers like any other change, with its strategy and checks.
    """
    kube = g.kube()
    for _ in range(ATTEMPTS):
        deployment = get_deployment(g, app)
        try:
            state = read_state(deployment)
        except StateError as exc:
            fail(str(exc))
        if not state.phase.terminal:
            fail(
                f"{g.namespace}/{app} is {state.phase.value}: a delivery is in progress; "
                f"`deliver abort {app}` puts the stable version back"
            )
        problems = specmod.problems(deployment)
        if problems:
            fail(
                f"deployment {g.namespace}/{app} has invalid annotations, so deliver takes no action: "
                + "; ".join(f"{e.key}: {e.problem}" for e in problems)
            )
        try:
            rss: list[dict[str, Any]] = kube.items(
                REPLICASETS, g.namespace, selector_string(deployment["spec"]["selector"])
            ) + kube.items(REPLICASETS, g.namespace, f"{templates.HELD_LABEL}={app}")  # held for an exact canary
        except KubeError as exc:
            api_failed(exc)
        rs, why = previous_revision(deployment, rss, to_revision)
        if rs is None:
            fail(f"{g.namespace}/{app}: {why}")
        template = templates.without_hash(rs["spec"]["template"])
        rev = templates.revision(template)
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        try:
            kube.patch(DEPLOYMENTS, g.namespace, app, patch, content_type=JSON_PATCH)
        except KubeError as exc:
            if exc.status in (409, 422):
                continue
            api_failed(exc)
        note(
            f"undo: {g.namespace}/{app} goes back to {why} (template {rev}, from ReplicaSet "
            f"{rs['metadata']['name']}); deliver delivers it as a change"
        )
        print_result(
            g,
            {"namespace": g.namespace, "name": app, "revision": rev, "replicaSet": rs["metadata"]["name"], "from": why},
            "",
        )
        return
    fail("the Deployment kept changing under us; try again", EXIT_API)
