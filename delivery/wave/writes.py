"""Everything a wave writes to a stage's Deployment, each write at the resourceVersion read and sent
again (after a fresh read) when another writer came first:

* ``apply_change``: the change's pod template, the stage's overrides and the wave's marker in one
  JSON patch;
* ``mark``: when the stage passed, or was put back (the marker's ``passedAt`` / ``rolledBackAt``);
* ``request_abort``: deliver's abort request, as ``deliver abort`` writes it;
* ``write_back``: a previous template (``template_of``: from the Deployment's ReplicaSets, else
  deliver's record), for ``on-failure: rollback``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from delivery import templates
from delivery.engine.state import read_state, send_request
from delivery.errors import Conflict, KubeError, StateError
from delivery.kube.client import DEPLOYMENTS, JSON_PATCH, REPLICASETS, Kube, selector_string
from delivery.wave.clusters import read_stage
from delivery.wave.file import Change, Stage
from delivery.wave.marker import MARKER, Marker, read_marker

WRITE_ATTEMPTS = 5


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def apply_change(
    kube: Kube, stage: Stage, change: Change, wid: str, wave: str, clock: Callable[[], float]
) -> tuple[dict[str, Any], Marker]:
    """The change, the overrides and the marker in one write, at the resourceVersion read: the
    Deployment as written, and the marker."""
    for _ in range(WRITE_ATTEMPTS):
        deployment = read_stage(kube, stage)
        if deployment is None:
            raise StateError(f"deployment {stage.namespace}/{stage.app} disappeared")
        current = deployment["spec"]["template"]
        new = change.template_for(stage, current)
        try:
            stable = read_state(deployment).stable_revision
        except StateError:
            stable = ""
        marker = Marker(
            wid,
            wave,
            stage.name,
            revision=templates.revision(new),
            previous=stable or templates.revision(current),
            applied_at=clock(),
        )
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": new},
        ]
        for key, value in ((MARKER, marker.to_json()), *stage.overrides):
            patch.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value})
        try:
            written = kube.patch(DEPLOYMENTS, stage.namespace, stage.app, patch, content_type=JSON_PATCH)
        except KubeError as exc:
            if exc.status in (409, 422):
                continue
            raise
        return written, marker
    raise StateError(f"deployment {stage.namespace}/{stage.app} kept changing under the wave")


def mark(kube: Kube, stage: Stage, wid: str, passed: float = 0.0, rolled_back: float = 0.0) -> None:
    """Record on the wave ``wid``'s marker when the stage passed or was put back (once: a time already
    there stays). A marker that is not this wave's is left alone."""
    for _ in range(WRITE_ATTEMPTS):
        deployment = read_stage(kube, stage)
        marker = read_marker(deployment or {})
        if deployment is None or marker is None or marker.id != wid:
            return
        if (passed and marker.passed_at) or (rolled_back and marker.rolled_back_at):
            return
        new = Marker(**{**marker.__dict__, **({"passed_at": passed} if passed else {"rolled_back_at": rolled_back})})
        body = {
            "metadata": {
                "resourceVersion": deployment["metadata"]["resourceVersion"],
                "annotations": {MARKER: new.to_json()},
            }
        }
        try:
            kube.patch(DEPLOYMENTS, stage.namespace, stage.app, body)
            return
        except Conflict:
            continue


def request_abort(kube: Kube, stage: Stage, deployment: dict[str, Any]) -> None:
    """deliver's abort request (what `deliver abort` writes), written again after a lost race."""
    for _ in range(WRITE_ATTEMPTS):
        try:
            send_request(kube, deployment, "abort")
            return
        except Conflict:
            fresh = read_stage(kube, stage)
            if fresh is None:
                return
            deployment = fresh


def write_back(kube: Kube, stage: Stage, previous: str, wid: str, clock: Callable[[], float]) -> str | None:
    """Write revision ``previous``'s template back (deliver delivers it as a change), marking the
    stage put back by the wave ``wid``. None once written, else why it was not."""
    for _ in range(WRITE_ATTEMPTS):
        deployment = read_stage(kube, stage)
        if deployment is None:
            return f"deployment {stage.namespace}/{stage.app} not found"
        template = template_of(kube, deployment, previous)
        if template is None:
            return f"no ReplicaSet or record holds revision {previous} any more"
        marker = read_marker(deployment) or Marker(wid)
        marker = Marker(**{**marker.__dict__, "rolled_back_at": marker.rolled_back_at or clock()})
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": f"/metadata/annotations/{_escape(MARKER)}", "value": marker.to_json()},
        ]
        try:
            kube.patch(DEPLOYMENTS, stage.namespace, stage.app, patch, content_type=JSON_PATCH)
            return None
        except KubeError as exc:
            if exc.status in (409, 422):
                continue
            return str(exc)
    return "the Deployment kept changing under the wave"


def template_of(kube: Kube, deployment: dict[str, Any], revision: str) -> dict[str, Any] | None:
    """The pod template of ``revision``: from the Deployment's ReplicaSets, else deliver's record."""
    current = deployment["spec"]["template"]
    if templates.revision(current) == revision:
        return templates.without_hash(current)
    uid = deployment["metadata"].get("uid")
    for rs in kube.items(
        REPLICASETS, deployment["metadata"]["namespace"], selector_string(deployment["spec"]["selector"])
    ):
        refs = (rs.get("metadata") or {}).get("ownerReferences") or []
        if not any(ref.get("controller") and ref.get("uid") == uid for ref in refs):
            continue
        template = templates.without_hash(rs["spec"]["template"])
        if templates.revision(template) == revision:
            return template
    try:
        state = read_state(deployment)
    except StateError:
        return None
    for kept in (state.stable_template, state.failed_template):
        if kept and templates.revision(kept) == revision:
            return templates.without_hash(kept)
    return None
