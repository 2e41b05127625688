"""The controller's timings in one place: how long it waits, retries and re-reads, and why.

``Settings`` holds one frozen dataclass per concern; every field is in seconds and documented with
the reason for its default. The engine's classes take a ``Settings`` (``Settings()`` when none is
given) and read their timings from it; ``deliver run`` builds one from its flags (``--lease-duration``,
``--renew-deadline``, ``--retry-period``, ``--prometheus-timeout``, ``--shutdown-grace``). Only the
controller process's timings live here: the gate's and the wave's are their own (their flags), and
size caps (bytes, counts) stay with the code they bound.

Part of the ground: imports nothing of deliver's. (After kopf's ``OperatorSettings``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Queue:
    """The work queue and the workers that take keys from it (``delivery/engine/controller.py``)."""

    first: float = 3600.0
    """Seconds a key queued *first* (a user's change of the template) goes ahead of "now": any key
    due now waits behind it. An hour is far more than any requeue delay a pass asks for."""

    poll: float = 0.5
    """Seconds a worker waits for a due key before it looks at the stop flag again: a shutdown is
    seen within half a second, at two wake-ups a second per idle worker."""

    follower_retry: float = 2.0
    """Seconds before a key taken while this replica is not the leader is queued again: the Lease's
    default ``retry_period`` (a fixed value, not ``--retry-period``), so a replica that becomes leader
    finds its keys due within about one round."""

    follower_pause: float = 0.5
    """Seconds a worker of a replica that is not the leader rests after putting a key back, so
    followers do not spin through their queue."""


@dataclass(frozen=True)
class Watches:
    """The informers' list + watch of each resource (``Informer``) and the periodic resync."""

    timeout: int = 240
    """Seconds a watch asks the API server to keep its stream open (``timeoutSeconds``; whole
    seconds), then the informer watches again from its resourceVersion. Well below the API server's
    own limit (``--min-request-timeout``, 30 min), so a stream that died silently is replaced within
    minutes (the client's read timeout is 30 s longer)."""

    backoff: float = 0.5
    """Seconds before the first relist after a failed list or watch; doubled on each failure in a row
    and reset by a list that succeeds. Short: most failures are one dropped connection."""

    max_backoff: float = 30.0
    """Seconds the doubled relist backoff stops growing at: an API server that is down for minutes
    is tried twice a minute, not hammered and not forgotten."""

    resync: float = 300.0
    """Seconds between passes of every managed Deployment whatever the watches say: a backstop for
    a missed event, cheap since reads come from the cache."""


@dataclass(frozen=True)
class Passes:
    """When a pass of one Deployment is run again (``delivery/engine/reconcile.py``, ``Controller``)."""

    route_recheck: float = 5.0
    """Seconds between passes while a delivery behind a router is open: routes are not watched, so
    a route changed by someone else is seen (and set back) within this."""

    spec_retry: float = 2.0
    """Seconds before a pass whose spec could not be read (an API error reading its analysis
    ConfigMap) is tried again: a transient error, worth a quick retry."""

    analysis_wait: float = 2.0
    """Seconds between passes while an analysis runs in the pool: each pass still checks health, so
    a crash-looping new version is rolled back within this even before the verdict is in."""

    record_retry: float = 60.0
    """Seconds before a pass whose record could not be used (unreadable, or its write rejected with
    422) is tried again: it waits for a person to fix the record or the annotations, not for time."""

    race_retry: float = 0.2
    """Seconds before a pass whose action lost a race (409, or 422 from a guarded template write) is
    tried again: at once, nearly, with what the cluster says now."""

    action_retry: float = 2.0
    """Seconds before a pass whose action failed on the API server or a router is tried again."""

    error_retry: float = 5.0
    """Seconds before a pass is tried again after an error of deliver's own (an action that failed
    otherwise, a pass that raised a ``DeliverError``)."""

    leadership_lost_retry: float = 2.0
    """Seconds before a pass cut short by the loss of the Lease is queued again: the Lease's
    ``retry_period``; the next leader (maybe this replica again) takes it from the record."""

    crash_retry: float = 10.0
    """Seconds before a pass that crashed (a bug) is tried again: often enough to recover from a
    transient cause, seldom enough not to flood the log with the same traceback."""


@dataclass(frozen=True)
class HoldPolicy:
    """Who holds a template change: the watch on deliver's MutatingAdmissionPolicy (``HoldWatch``)."""

    recheck: float = 30.0
    """Seconds between re-reads of the policy and its binding: a backstop for a broken watch, and the
    only look where the API does not exist (yet; it may appear after an upgrade)."""


@dataclass(frozen=True)
class Hooks:
    """Calls of a Deployment's hooks (``delivery/integrations/hooks.py``); ``hook-timeout`` is the tenant's."""

    budget: float = 90.0
    """Seconds all attempts of one hook call may take: three attempts of the longest hook-timeout
    (60 s) would not fit, so a slow hook gets fewer attempts, never an unbounded call."""

    backoff: float = 0.5
    """Seconds before the second attempt; doubled for each one after (0.5 s, 1 s for three attempts)."""

    max_backoff: float = 30.0
    """Seconds the doubled backoff between attempts stops growing at."""


@dataclass(frozen=True)
class Notifications:
    """Notifications of phase changes (``delivery/integrations/notify.py``)."""

    timeout: float = 5.0
    """Seconds one attempt to post a notification may take in all (one wall-clock deadline): a
    receiver slower than that is retried, not waited for, so a sender thread is soon free again."""

    backoff: float = 1.0
    """Seconds before the second attempt of a notification; doubled for each one after. A retry
    waits in the queue, not in a sender thread."""

    max_backoff: float = 60.0
    """Seconds the doubled backoff between attempts stops growing at."""

    drop_log_every: float = 10.0
    """Seconds between log lines about one namespace's dropped notifications (each line says how
    many were dropped since): a tenant that floods its own queue does not flood the log."""

    drain: float = 5.0
    """Seconds, at most, what is queued gets to be sent at shutdown (less if ``Shutdown.grace`` is
    less); the Kubernetes Events remain either way."""


@dataclass(frozen=True)
class Leadership:
    """Leader election on a Lease (``delivery/engine/leader.py``); ``deliver run --lease-duration``,
    ``--renew-deadline``, ``--retry-period``. Must be ordered: lease > renew deadline > retry period."""

    lease_duration: float = 15.0
    """Seconds a Lease is valid after its last renewal: how long other candidates wait before they
    take it over from a leader that vanished (client-go's default)."""

    renew_deadline: float = 10.0
    """Seconds a leader keeps acting without a successful renewal; shorter than the Lease, so it
    stops before another replica may take over (client-go's default)."""

    retry_period: float = 2.0
    """Seconds between attempts to take or renew the Lease; a few fit in the renew deadline, so one
    failed renewal does not cost the lead (client-go's default)."""

    stop_wait: float = 5.0
    """Seconds the shutdown waits for the election thread to finish its round: more than a
    retry period and one API request."""


@dataclass(frozen=True)
class Analysis:
    """Metric analysis against Prometheus (``delivery/engine/verdicts.py``)."""

    prometheus_timeout: float = 10.0
    """Seconds one Prometheus query may take, retries included (``--prometheus-timeout``): a slow
    Prometheus makes the check inconclusive rather than hold the analysis pool."""


@dataclass(frozen=True)
class Shutdown:
    """The end of ``deliver run`` (SIGTERM, SIGINT)."""

    grace: float = 30.0
    """Seconds to wait for the writes under way before the Lease is released (``--shutdown-grace``):
    a write takes far less; the pod's terminationGracePeriodSeconds (30 in the chart) bounds it anyway."""

    poll: float = 0.05
    """Seconds between looks at whether the workers finished their writes."""


@dataclass(frozen=True)
class Settings:
    """Every timing of the controller, grouped by concern; ``Settings()`` is the defaults."""

    queue: Queue = field(default_factory=Queue)
    watches: Watches = field(default_factory=Watches)
    passes: Passes = field(default_factory=Passes)
    hold_policy: HoldPolicy = field(default_factory=HoldPolicy)
    hooks: Hooks = field(default_factory=Hooks)
    notifications: Notifications = field(default_factory=Notifications)
    leadership: Leadership = field(default_factory=Leadership)
    analysis: Analysis = field(default_factory=Analysis)
    shutdown: Shutdown = field(default_factory=Shutdown)


__all__ = [
    "Analysis",
    "HoldPolicy",
    "Hooks",
    "Leadership",
    "Notifications",
    "Passes",
    "Queue",
    "Settings",
    "Shutdown",
    "Watches",
]
