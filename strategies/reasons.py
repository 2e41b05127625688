"""Every Kubernetes Event reason deliver posts, in one place (the README's table is generated from
this list by hand and checked against it by tests/test_reasons.py).

Planners post most of them (PostEvent actions); the engine posts the ones about its own I/O
(invalid annotations, permissions, failed actions, release).
"""

from __future__ import annotations

from enum import StrEnum


class EventReason(StrEnum):
    # a delivery's life (Normal unless noted)
    DELIVERY_STARTED = "DeliveryStarted"
    DELIVERY_SUPERSEDED = "DeliverySuperseded"
    STEP_PASSED = "StepPassed"
    STEP_EXTENDED = "StepExtended"
    DELIVERY_HELD = "DeliveryHeld"  # scaled to zero: no pods to check, the delivery waits for replicas
    AWAITING_PROMOTION = "AwaitingPromotion"  # a manual promotion step, or blue-green without auto-promote
    PROMOTING = "Promoting"
    ACTIVE_SWITCHED = "ActiveSwitched"
    DELIVERY_SUCCEEDED = "DeliverySucceeded"
    STABLE_RESTORED = "StableRestored"
    # analysis
    ANALYSIS_PASSED = "AnalysisPassed"
    ANALYSIS_FAILED = "AnalysisFailed"  # Warning
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"  # Warning
    ANALYSIS_RUNNING = "AnalysisRunning"  # Normal: the evidence of a look at the running window of a step
    VERDICT_OUT_OF_REACH = "VerdictOutOfReach"  # Warning: a step's window cannot carry a verdict's requests
    # failures (Warning)
    DELIVERY_FAILED = "DeliveryFailed"  # failed with automatic rollback off: paused
    DELIVERY_ROLLED_BACK = "DeliveryRolledBack"
    DELIVERY_ABORTED = "DeliveryAborted"
    REVISION_PREVIOUSLY_FAILED = "RevisionPreviouslyFailed"
    # operator requests
    DELIVERY_PROMOTED = "DeliveryPromoted"
    DELIVERY_PAUSED = "DeliveryPaused"
    DELIVERY_RESUMED = "DeliveryResumed"
    DELIVERY_RETRIED = "DeliveryRetried"
    ABORT_REFUSED = "AbortRefused"  # Warning
    # the engine (Warning unless noted)
    INVALID_ANNOTATION = "InvalidAnnotation"
    ROUTER_UNAVAILABLE = "RouterUnavailable"
    PERMISSION_DENIED = "PermissionDenied"
    ACTION_FAILED = "ActionFailed"
    RECORD_REJECTED = "RecordRejected"  # the API server refused the record write (422, e.g. annotations too long)
    RELEASED = "Released"  # Normal: deliver.dev/strategy removed
    # hooks (strategies/hooks.py)
    HOOK_PASSED = "HookPassed"  # Normal: a hook answered 2xx
    HOOK_FAILED = "HookFailed"  # Warning: a hook answered non-2xx, timed out or could not be reached
    AWAITING_CONFIRMATION = "AwaitingConfirmation"  # Normal: promotion waits for the confirm-promotion hook


__all__ = ["EventReason"]
