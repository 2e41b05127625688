"""The one exception tree of deliver. Every error the engine or the CLI raises derives from DeliverError."""

from __future__ import annotations


class DeliverError(Exception):
    """Base of every deliver error."""


class SpecError(DeliverError):
    """An invalid ``deliver.dev/*`` annotation: names the key and what is wrong with it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class StateError(DeliverError):
    """The persisted rollout record cannot be read or does not allow the requested operation."""


class KubeError(DeliverError):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """404: the object does not exist."""


class Conflict(KubeError):
    """409: stale resourceVersion (optimistic concurrency) or already exists."""


class Forbidden(KubeError):
    """403: RBAC denies the verb on the resource."""


class Unauthorized(KubeError):
    """401: credentials are missing or rejected."""


class Gone(KubeError):
    """410: a watch's resourceVersion is too old; relist."""


class LeadershipLost(DeliverError):
    """This replica no longer holds the leader Lease (or did not renew it within the renew deadline):
    the write was not sent. Raised by ``leader.Fenced`` so a reconcile stops writing mid-way."""


class AnalysisError(DeliverError):
    """Metric analysis could not produce a verdict."""


class MetricsUnavailable(AnalysisError):
    """The metrics backend is unreachable, timed out or answered 5xx."""


class QueryError(AnalysisError):
    """The metrics backend rejected the query (bad PromQL, 4xx)."""


class QueryLimitExceeded(QueryError):
    """A metrics answer went over a cap (bytes read, series): the check is inconclusive, never retried."""


class QueryNotConfined(QueryError):
    """A query that could read another namespace's series (names it, or matches ``namespace`` by regex or negation)."""


class RoutingError(DeliverError):
    """A traffic router cannot apply or verify a weight (missing route, CRD or backend)."""


class WaveFileError(DeliverError):
    """A wave file (``deliver wave``) that cannot be run: every problem found, listed at once."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class WaveBusy(DeliverError):
    """Another wave holds the lock of the same app (its Lease has not expired)."""


class EgressDenied(DeliverError):
    """The operator's egress policy refused a hook or notification destination (before any packet left)."""

    def __init__(self, host: str, why: str) -> None:
        super().__init__(
            f"{host} refused by the operator's egress policy ({why}); an operator allows it with "
            f"`deliver run --egress-allow-host {host}` or `--egress-allow-cidr` (chart values egress.allowHosts, "
            "egress.allowCIDRs)"
        )
        self.host = host
        self.why = why
