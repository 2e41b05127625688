"""Releasing a Deployment: its ``deliver.dev/strategy`` was removed, so deliver hands it back as a
plain Deployment, still served. A pure function of what is left (``Leftovers``) -> the actions.

In this order: every Service deliver pinned to one pod-template-hash is unpinned (it selects the app
again); the Services deliver created are kept (a weighted route may still send traffic to
NAME-stable/NAME-canary; blue-green's active Service may be the user's entry point), except
blue-green's preview Service, which never had production traffic and is deleted; a weighted route
still declared is set to 100/0 (stable); a stable ReplicaSet held for an exact canary share is
handed back to the Deployment before deliver's own ReplicaSets go; then, in one write, the record is
removed and the Deployment unpaused (the native controller rolls out whatever the template says).
A Normal Event ``Released`` names what the user may now remove.
"""

from __future__ import annotations

from .actions import (
    Action,
    DeleteReplicaSet,
    DeleteService,
    PostEvent,
    ReleaseStable,
    RemoveRecord,
    SetWeight,
    UnpinService,
)
from .observation import Leftovers
from .reasons import EventReason


def release(left: Leftovers, route_error: str = "") -> tuple[Action, ...]:
    """The release's actions, in order, the ``Released`` Event last. The route's reset
    (``SetWeight(0)``) is the one action whose failure does not stop a release (the route is the
    user's; the Services serve the app either way): planned again with ``route_error``, the
    release's Event says the route was not reset, and why."""
    actions: list[Action] = []
    kept: list[str] = []
    for svc in left.services:
        if svc.ours and svc.name == left.preview_service:
            actions.append(DeleteService(svc.name))
            continue
        if svc.ours:
            kept.append(svc.name)
        if svc.pod_hash:
            actions.append(UnpinService(svc.name))
    route = generated = ""
    if left.route_weighted:
        actions.append(SetWeight(0))
        where = f"route {left.router.kind}/{left.router.name}"
        if route_error:
            route = f"{where} (not reset: {route_error})"
        else:
            route = f"{where} (set to 100/0: all traffic to the stable backend)"
        if left.route_kept:
            generated = f"; {left.route_kept}"
    if left.held:
        actions.append(ReleaseStable())  # stable capacity back before deliver's ReplicaSets go
    actions += [DeleteReplicaSet(name) for name in left.replicasets]
    actions.append(RemoveRecord(left.resource_version))
    actions.append(PostEvent("Normal", EventReason.RELEASED, released_message(sorted(kept), route, generated)))
    return tuple(actions)


def released_message(kept: list[str], route: str, generated: str) -> str:
    """The Released Event: what deliver left in place and the user may now remove."""
    message = "deliver.dev/strategy removed: deliver no longer holds this Deployment"
    if not kept:
        return message
    return (
        f"{message}; kept the Services deliver created ({', '.join(kept)}), now selecting every pod of "
        f"the app, since {route or 'your routes'} may still send traffic to them{generated}. Once no route "
        "or client uses them you may delete them, and the remaining deliver.dev/* annotations"
    )
