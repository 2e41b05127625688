"""Where one stage stands for a wave, from its Deployment alone (``observe``). Pure.

A stage is read through the gate's rules (``delivery.gate.look``, pinned to the wave's change) and
the wave's marker on the Deployment (``marker.py``): which revision the change is there, and whether
its delivery goes on, passed (and soaked), failed, or was put back by this wave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from delivery.gate import EXIT_OK, Pin, look
from delivery.wave.file import Change, Stage
from delivery.wave.marker import Marker, read_marker


class StageState(Enum):
    """Where one stage stands, as its cluster says."""

    PENDING = "Pending"  # this wave has not applied its change there
    DELIVERING = "Delivering"  # applied; the cluster's delivery goes on
    SOAKING = "Soaking"  # delivered; the soak time has not passed
    PASSED = "Passed"  # delivered (and soaked)
    FAILED = "Failed"  # rolled back, aborted, refused or held failed by the cluster's deliver
    ROLLED_BACK = "RolledBack"  # passed, then put back by this wave after a later stage failed
    UNREACHABLE = "Unreachable"  # its API server could not be read: where it stands is unknown


@dataclass(frozen=True)
class StageView:
    """One stage as observed: its state, the revision of the change there, and why."""

    stage: Stage
    state: StageState
    reason: str
    revision: str = ""
    ours: bool = False  # the marker is this wave's
    marker: Marker | None = None
    soak_left: float = 0.0
    held: bool = False  # the delivery failed and waits for an operator (auto-rollback off)
    status: dict[str, Any] = field(default_factory=dict)


def pin_of(stage: Stage, change: Change, deployment: dict[str, Any], marker: Marker | None, wid: str) -> Pin:
    if marker is not None and marker.id == wid and marker.revision and not change.manifest:
        return Pin(revision=marker.revision)
    return change.pin_for(stage, (deployment.get("spec") or {}).get("template") or {})


def observe(stage: Stage, change: Change, wid: str, deployment: dict[str, Any], now: float) -> StageView:
    """Where ``stage`` stands for the wave ``wid``, from its Deployment alone. Pure."""
    marker = read_marker(deployment)
    ours = marker is not None and marker.id == wid
    try:
        pin = pin_of(stage, change, deployment, marker, wid)
    except ValueError as exc:
        return StageView(stage, StageState.FAILED if ours else StageState.PENDING, str(exc), "", ours, marker)
    seen = look(deployment, pin)
    want, status = seen.revision, seen.status
    if ours and marker is not None and marker.rolled_back_at:
        return StageView(stage, StageState.ROLLED_BACK, "put back by this wave", want, True, marker, status=status)
    if not ours:
        # already there (delivered by someone else)? Exact for an image change; a manifest's template
        # is found by its images, which is not enough to skip writing it: it is applied (a no-op if same)
        if want and not change.manifest and seen.code == EXIT_OK:
            return StageView(
                stage, StageState.PASSED, f"already delivered: {seen.reason}", want, False, marker, status=status
            )
        return StageView(stage, StageState.PENDING, "not applied by this wave yet", want, False, marker, status=status)
    assert marker is not None
    if not want and seen.applied:  # applied; the controller has not taken it up yet
        return StageView(
            stage,
            StageState.DELIVERING,
            "waiting for the controller to start delivering the change",
            seen.target,
            True,
            marker,
            status=status,
        )
    if not want:
        return StageView(
            stage,
            StageState.FAILED,
            "the change is neither the Deployment's template nor in deliver's record (changed by someone else)",
            "",
            True,
            marker,
            status=status,
        )
    if seen.code is None:
        return StageView(stage, StageState.DELIVERING, seen.reason, want, True, marker, status=status)
    if seen.code == EXIT_OK:
        passed = marker.passed_at
        left = stage.soak - (now - passed) if passed else stage.soak
        if left > 0:
            return StageView(stage, StageState.SOAKING, seen.reason, want, True, marker, left, status=status)
        return StageView(stage, StageState.PASSED, seen.reason, want, True, marker, status=status)
    return StageView(stage, StageState.FAILED, seen.reason, want, True, marker, held=seen.held, status=status)
