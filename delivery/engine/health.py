"""Health of one version from its pods: readiness, restarts, CrashLoopBackOff, image pull errors."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from strategies.observation import PodHealth

IMAGE_ERRORS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}


def _ts(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def pod_health(pods: Iterable[dict[str, Any]], now: float) -> PodHealth:
    total = ready = restarts = crashloop = image_errors = terminating = 0
    oldest_unready = 0.0
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            terminating += 1  # no longer counted for either version, though it may still run
            continue
        total += 1
        status = pod.get("status") or {}
        statuses = list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])
        looping = pulling = False
        for cs in statuses:
            restarts += int(cs.get("restartCount") or 0)
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason", "")
            looping |= reason == "CrashLoopBackOff"
            pulling |= reason in IMAGE_ERRORS
        crashloop += looping
        image_errors += pulling
        if is_ready(pod):
            ready += 1
        else:
            since = _ts((pod.get("metadata") or {}).get("creationTimestamp"))
            for cond in status.get("conditions") or []:
                if cond.get("type") == "Ready" and cond.get("lastTransitionTime"):
                    since = _ts(cond["lastTransitionTime"])
            if since:
                oldest_unready = max(oldest_unready, now - since)
    return PodHealth(
        total=total,
        ready=ready,
        restarts=restarts,
        crashloop=crashloop,
        image_errors=image_errors,
        oldest_unready_age=oldest_unready,
        terminating=terminating,
    )
