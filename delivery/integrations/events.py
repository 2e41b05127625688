"""Kubernetes Events on the Deployment (Normal/Warning, CamelCase reasons)."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from typing import Any

from delivery.errors import KubeError
from delivery.kube.client import EVENTS, Kube
from strategies.reasons import EventReason

log = logging.getLogger("deliver.events")
COMPONENT = "deliver"


def post_event(kube: Kube, deployment: dict[str, Any], type_: str, reason: EventReason, message: str) -> None:
    """Post a Kubernetes Event on the Deployment; a failure to post is logged, never raised."""
    meta = deployment["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": type_,
        "reason": reason.value,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.create(EVENTS, meta["namespace"], body)
    except KubeError as exc:  # an event is never worth failing a reconcile for
        log.warning("event not recorded", extra={"reason": reason.value, "error": str(exc)})
