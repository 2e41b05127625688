"""``deliver run``: wire the controller together (API client, analysis, leader election, metrics) and run it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from delivery import logs
from delivery.cli.context import Globals, common, fail
from delivery.cli.params import Duration, ListenAddress
from delivery.settings import Analysis, Leadership, Settings, Shutdown
from strategies.observation import HoldMode


@click.command()
@click.option(
    "--prometheus-url",
    envvar="DELIVER_PROMETHEUS_URL",
    help="Prometheus for metric analysis (no user:password@: use the credential flags below).",
)
@click.option(
    "--prometheus-bearer-token-file",
    envvar="DELIVER_PROMETHEUS_BEARER_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    help="File holding a bearer token for Prometheus, re-read when it changes (e.g. a projected ServiceAccount token).",
)
@click.option("--prometheus-username", envvar="DELIVER_PROMETHEUS_USERNAME", help="Basic auth user for Prometheus.")
@click.option(
    "--prometheus-password-file",
    envvar="DELIVER_PROMETHEUS_PASSWORD_FILE",
    type=click.Path(dir_okay=False),
    help="File holding the basic auth password (with --prometheus-username), re-read when it changes.",
)
@click.option(
    "--prometheus-header",
    "prometheus_headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="Extra HTTP header sent to Prometheus, e.g. X-Scope-OrgID=tenant-a (repeatable; values are never logged).",
)
@click.option(
    "--prometheus-ca-file",
    type=click.Path(dir_okay=False),
    help="CA bundle that signs Prometheus' TLS certificate (default: the system's).",
)
@click.option("--prometheus-cert-file", type=click.Path(dir_okay=False), help="Client certificate (mutual TLS).")
@click.option("--prometheus-key-file", type=click.Path(dir_okay=False), help="Client certificate's private key.")
@click.option(
    "--prometheus-timeout",
    type=Duration(),
    default="10s",
    show_default=True,
    help="Wall-clock deadline of one Prometheus query, retries included.",
)
@click.option(
    "--prometheus-max-series",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Most series one query may return; more makes the check inconclusive.",
)
@click.option(
    "--prometheus-max-bytes",
    type=click.IntRange(1024, 1 << 30),
    default=8 << 20,
    show_default=True,
    help="Most bytes read of one Prometheus answer; more makes the check inconclusive.",
)
@click.option("--all-namespaces/--namespaced", default=False, help="Watch every namespace (default: only -n).")
@click.option(
    "--leader-elect/--no-leader-elect",
    default=False,
    show_default=True,
    help="Elect a leader through a Lease so several replicas are safe; only the leader acts.",
)
@click.option("--lease-name", default="deliver-controller", show_default=True, help="Name of the Lease.")
@click.option("--lease-namespace", default=None, help="Namespace of the Lease (default: $POD_NAMESPACE, else -n).")
@click.option("--lease-duration", type=Duration(), default="15s", show_default=True, help="How long a Lease is valid.")
@click.option(
    "--renew-deadline",
    type=Duration(),
    default="10s",
    show_default=True,
    help="The leader stops acting when it could not renew for this long.",
)
@click.option("--retry-period", type=Duration(), default="2s", show_default=True, help="Time between Lease attempts.")
@click.option(
    "--metrics-addr",
    type=ListenAddress(),
    default=":8080",
    show_default=True,
    help="HOST:PORT for /metrics, /healthz and /readyz ('0' disables).",
)
@click.option(
    "--metrics-auth",
    type=click.Choice(["auto", "none", "kubernetes"]),
    default="auto",
    show_default=True,
    help="Who may read /metrics (it names every managed namespace): 'kubernetes' asks for a bearer token "
    "the API server authenticates (TokenReview) and authorizes for get on /metrics (SubjectAccessReview); "
    "'none' serves anyone who reaches the port; 'auto' is 'kubernetes' unless the address is loopback.",
)
@click.option(
    "--shutdown-grace",
    type=Duration(),
    default="30s",
    show_default=True,
    help="On SIGTERM, how long to wait for the current write before releasing the Lease.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="Deployments reconciled at once (never one Deployment twice); also the size of the analysis pool.",
)
@click.option(
    "--scrape-interval",
    type=Duration(),
    default="15s",
    show_default=True,
    help="Prometheus's scrape interval: an analysed step's running window is looked at every twice this "
    "(unless deliver.dev/analysis-every says otherwise).",
)
@click.option(
    "--notify-webhook",
    "notify_webhooks",
    multiple=True,
    envvar="DELIVER_NOTIFY_WEBHOOK",
    help="Cluster-wide webhook for every delivery's phase changes, JSON body (repeatable; signed with the secret).",
)
@click.option(
    "--notify-slack",
    "notify_slacks",
    multiple=True,
    envvar="DELIVER_NOTIFY_SLACK",
    help="Cluster-wide Slack-compatible incoming webhook for every delivery's phase changes (repeatable).",
)
@click.option(
    "--hold-mode",
    type=click.Choice(["auto", "policy", "paused"]),
    default="auto",
    show_default=True,
    help="Who holds a template change until deliver acts: auto = the API server's MutatingAdmissionPolicy when "
    "it is installed and bound (Deployments unpaused at rest), else deliver pauses them at rest (docs/hold-modes.md).",
)
@click.option(
    "--hold-policy",
    default="deliver-hold-template-changes",
    show_default=True,
    help="Name of the MutatingAdmissionPolicy (and its binding) that holds template changes.",
)
@click.option(
    "--egress-allow-host",
    "egress_allow_hosts",
    multiple=True,
    envvar="DELIVER_EGRESS_ALLOW_HOST",
    help="Host (or *.domain) that hooks and notifications may reach even in a private or denied range "
    "(repeatable; never lifts loopback or link-local: use --egress-allow-cidr for those).",
)
@click.option(
    "--egress-allow-cidr",
    "egress_allow_cidrs",
    multiple=True,
    envvar="DELIVER_EGRESS_ALLOW_CIDR",
    help="Addresses hooks and notifications may reach whatever else says (repeatable), e.g. 10.20.0.0/16.",
)
@click.option(
    "--egress-deny-cidr",
    "egress_deny_cidrs",
    multiple=True,
    envvar="DELIVER_EGRESS_DENY_CIDR",
    help="Addresses hooks and notifications never reach unless allowed: the cluster's service and pod CIDRs "
    "(repeatable). Loopback, link-local, multicast and private ranges are denied anyway.",
)
@click.option(
    "--egress-public/--no-egress-public",
    default=True,
    show_default=True,
    help="Let hooks and notifications reach public addresses; off: only allowed hosts and CIDRs.",
)
@click.option(
    "--hook-calls-per-namespace",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Hook calls of one namespace running at once (the others wait in that namespace's queue).",
)
@click.option(
    "--notify-senders",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Threads sending notifications, serving the namespaces' queues in turn.",
)
@click.option(
    "--notify-queue-per-namespace",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Notifications of one namespace queued or being sent; more drop that namespace's oldest.",
)
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@common
@click.pass_obj
def run(
    g: Globals,
    prometheus_url: str | None,
    prometheus_bearer_token_file: str | None,
    prometheus_username: str | None,
    prometheus_password_file: str | None,
    prometheus_headers: tuple[str, ...],
    prometheus_ca_file: str | None,
    prometheus_cert_file: str | None,
    prometheus_key_file: str | None,
    prometheus_timeout: float,
    prometheus_max_series: int,
    prometheus_max_bytes: int,
    all_namespaces: bool,
    leader_elect: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    metrics_addr: tuple[str, int] | None,
    metrics_auth: str,
    shutdown_grace: float,
    workers: int,
    scrape_interval: float,
    notify_webhooks: tuple[str, ...],
    notify_slacks: tuple[str, ...],
    hold_mode: str,
    hold_policy: str,
    egress_allow_hosts: tuple[str, ...],
    egress_allow_cidrs: tuple[str, ...],
    egress_deny_cidrs: tuple[str, ...],
    egress_public: bool,
    hook_calls_per_namespace: int,
    notify_senders: int,
    notify_queue_per_namespace: int,
    log_level: str,
) -> None:
    """Run the controller (JSON logs on stderr)."""
    # Imported here: only the controller needs them (prometheus_client, threads), not every verb.
    from delivery.engine.background import AnalysisPool
    from delivery.engine.controller import Controller
    from delivery.engine.holdpolicy import HoldStatus, HoldWatch
    from delivery.engine.leader import Fenced, LeaderElector, ServerClock
    from delivery.engine.reconcile import Reconciler
    from delivery.integrations.hooks import HookPool
    from delivery.integrations.metrics import Metrics
    from delivery.kube.cache import Cache, CachedKube

    if leader_elect and not (lease_duration > renew_deadline > retry_period > 0):
        raise click.UsageError("need --lease-duration > --renew-deadline > --retry-period > 0")
    # The controller's timings (delivery/settings.py): the defaults, and what the flags set.
    settings = Settings(
        leadership=Leadership(lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period),
        analysis=Analysis(prometheus_timeout=prometheus_timeout),
        shutdown=Shutdown(grace=shutdown_grace),
    )
    logs.setup(json_lines=True, level=log_level)
    log = logging.getLogger("deliver")
    prometheus_options = _prometheus_options(
        prometheus_url,
        prometheus_bearer_token_file,
        prometheus_username,
        prometheus_password_file,
        prometheus_headers,
        prometheus_ca_file,
        prometheus_cert_file,
        prometheus_key_file,
        prometheus_max_series,
        prometheus_max_bytes,
    )
    kube = g.kube()
    analyser = _analyser(
        kube,
        prometheus_url,
        settings,
        prometheus_options,
        lambda ns, name, ok: metrics.count_query(ns, name, ok),
        log,
    )

    elector: LeaderElector | None = None
    server_clock = ServerClock()  # step times from the API server's clock (see leader.ServerClock)
    if leader_elect:
        elector = _elector(
            kube,
            lease_namespace or os.environ.get("POD_NAMESPACE") or g.namespace,
            lease_name,
            settings,
            server_clock,
        )
    is_leader: Callable[[], bool] = elector.is_leader if elector else (lambda: True)
    holder: dict[str, Controller] = {}

    def hold_changed(status: HoldStatus) -> None:
        # every managed Deployment gets a pass: those at rest are paused (or unpaused) at once
        if "c" in holder:
            holder["c"].requeue_all()

    forced = None if hold_mode == "auto" else HoldMode(hold_mode)
    hold = HoldWatch(kube, threading.Event(), hold_policy, forced, on_change=hold_changed, settings=settings)
    log.info("hold mode", extra={"mode": hold.status.mode.value, "why": hold.status.why})
    metrics = Metrics(
        is_leader=is_leader,
        watch_restarts=lambda: holder["c"].watch_restarts if "c" in holder else 0,
        synced=lambda: bool(holder.get("c") and holder["c"].synced),
        hold_mode=lambda: hold.mode().value,
    )
    if elector is not None:
        elector.on_change = lambda leading: None if leading else metrics.forget_all()
    # Analyses run in their own bounded pool, off the workers: a slow or hung Prometheus delays
    # only the verdicts, never another Deployment's pass or a health rollback.
    pool = AnalysisPool(workers, on_done=lambda key: holder["c"].queue.add(key))
    # Looks at a running window: a new sample per series lands once per scrape interval, and targets
    # are scraped at different offsets within it. A look every two intervals sees at least one fresh
    # scrape of every target, at half the queries of a look every interval (which would often re-read
    # the same samples).
    every = max(1.0, 2 * scrape_interval)
    egress = _egress(egress_allow_hosts, egress_allow_cidrs, egress_deny_cidrs, egress_public)
    log.info(
        "egress policy",
        extra={
            "allow_hosts": list(egress.allow_hosts),
            "allow_cidrs": [str(n) for n in egress.allow_cidrs],
            "deny_cidrs": [str(n) for n in egress.deny_cidrs],
            "public": egress.public,
        },
    )
    notifier = _notifier(
        notify_webhooks, notify_slacks, metrics.registry, egress, notify_senders, notify_queue_per_namespace, settings
    )
    # Hook calls too: a slow hook delays only its own Deployment's gate (delivery/integrations/hooks.py), and one
    # namespace's hooks hold at most --hook-calls-per-namespace of the pool's threads.
    hook_pool = HookPool(
        workers,
        on_done=lambda key: holder["c"].queue.add(key),
        secret=notifier.secret,
        egress=egress,
        per_namespace=hook_calls_per_namespace,
    )
    # The engine reads Deployments, ReplicaSets, pods, Services and PodDisruptionBudgets from the
    # informers' stores (delivery/kube/cache.py); writes and everything else go to the API server.
    cache = Cache(None if all_namespaces else g.namespace)
    reads = CachedKube(kube, cache)
    controller = Controller(
        kube,
        # no write once leadership is gone; times as the API server counts them
        (
            Reconciler(
                Fenced(reads, is_leader),
                analyser,
                clock=server_clock,
                pool=pool,
                analysis_every=every,
                notifier=notifier,
                hook_pool=hook_pool,
                hold_mode=hold.mode,
                settings=settings,
            )
            if elector
            else Reconciler(
                reads,
                analyser,
                pool=pool,
                analysis_every=every,
                notifier=notifier,
                hook_pool=hook_pool,
                hold_mode=hold.mode,
                settings=settings,
            )
        ),
        None if all_namespaces else g.namespace,
        is_leader=is_leader,
        on_outcome=metrics.observe,
        workers=workers,
        cache=cache,
        settings=settings,
    )
    holder["c"] = controller
    hold.stop = controller.stop
    hold.start()

    server = None if metrics_addr is None else _serve_metrics(kube, metrics, metrics_addr, metrics_auth, log)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal received; finishing the current reconcile", extra={"signal": signum})
        if elector is not None:
            elector.step_down()
        controller.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if elector is not None:
        elector.start()
    controller.run()
    # The main loop finished its last reconcile; make sure no write is still running, then let go.
    deadline = time.monotonic() + settings.shutdown.grace
    while controller.busy.is_set() and time.monotonic() < deadline:
        time.sleep(settings.shutdown.poll)
    pool.shutdown()
    hook_pool.shutdown()
    # what is queued gets a moment; the Events remain either way
    notifier.drain(min(settings.shutdown.grace, settings.notifications.drain))
    notifier.stop()
    if elector is not None:
        elector.stop()
        elector.release()
    if server is not None:
        server.stop()
    log.info("controller exited")
    logging.shutdown()
    os._exit(0)  # informer threads may sit in a blocking read; do not wait for them


def _analyser(
    kube: Any,
    url: str | None,
    settings: Settings,
    options: dict[str, Any],
    on_query: Callable[[str, str, bool], None],
    log: logging.Logger,
) -> Any:
    """The metric analysis over the Prometheus at ``url`` (None without one: no metric checks run)."""
    if not url:
        return None
    from delivery.engine.verdicts import make_analyser

    try:
        analyser = make_analyser(kube, url, on_query=on_query, settings=settings, **options)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prometheus-url") from None
    from delivery.analysis.auth import redact_url

    log.info("metric analysis on", extra={"prometheus": redact_url(url)})
    return analyser


def _elector(
    kube: Any,
    namespace: str,
    name: str,
    settings: Settings,
    server_clock: Any,
) -> Any:
    """The leader election through the Lease ``namespace/name``; a bad Lease is a usage error (exit 2)."""
    from delivery.engine.leader import LeaderElector

    try:
        return LeaderElector(
            kube,
            namespace,
            name,
            settings=settings,
            server_clock=server_clock,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _serve_metrics(kube: Any, metrics: Any, address: tuple[str, int], auth_flag: str, log: logging.Logger) -> Any:
    """The server of /metrics, /healthz and /readyz, started on ``address``; --metrics-auth decides
    who may read /metrics. An address that cannot be bound fails the command."""
    from delivery.integrations.metrics import KubeAuthorizer, Server, auth_mode

    try:
        mode = auth_mode(auth_flag, address[0])
        auth = KubeAuthorizer(kube) if mode == "kubernetes" else None
        server = Server(metrics, *address, auth=auth).start()
    except OSError as exc:
        fail(f"cannot serve metrics on {address[0]}:{address[1]}: {exc}")
    host, port = server.address
    log.info("serving /metrics, /healthz, /readyz", extra={"address": f"{host}:{port}", "metrics_auth": mode})
    return server


def _egress(hosts: tuple[str, ...], allow: tuple[str, ...], deny: tuple[str, ...], public: bool) -> Any:
    """The operator's egress policy from the flags (an environment value may hold several, space-separated)."""
    from delivery.integrations.egress import EgressPolicy

    def split(values: tuple[str, ...]) -> list[str]:
        return [part for v in values for part in v.split()]

    try:
        return EgressPolicy.parse(split(hosts), split(allow), split(deny), public)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--egress-*") from None


def _prometheus_options(
    url: str | None,
    token_file: str | None,
    username: str | None,
    password_file: str | None,
    headers: tuple[str, ...],
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    max_series: int,
    max_bytes: int,
) -> dict[str, Any]:
    """The Prometheus client's options from the flags; a bad combination is a usage error (exit 2)
    whose message never repeats a secret."""
    from pathlib import Path

    from delivery.analysis.auth import USERINFO_HINT, PrometheusAuth, has_userinfo, redact_url

    if url and has_userinfo(url):
        raise click.BadParameter(
            f"{redact_url(url)} carries credentials: {USERINFO_HINT}", param_hint="--prometheus-url"
        )
    parsed: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{name.strip() or '(empty)'}: want NAME=VALUE", param_hint="--prometheus-header")
        parsed[name.strip()] = value.strip()
    try:
        auth = PrometheusAuth(
            bearer_token_file=Path(token_file) if token_file else None,
            username=username or None,
            password_file=Path(password_file) if password_file else None,
            headers=parsed,
            ca_file=Path(ca_file) if ca_file else None,
            cert_file=Path(cert_file) if cert_file else None,
            key_file=Path(key_file) if key_file else None,
        )
        auth.verify()  # the TLS files load now, not at the first query
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for flag, path in (("--prometheus-bearer-token-file", token_file), ("--prometheus-password-file", password_file)):
        if path and not Path(path).is_file():
            raise click.BadParameter(f"{path} is not a readable file", param_hint=flag)
    return {"auth": auth, "max_series": max_series, "max_bytes": max_bytes}


def _notifier(
    webhooks: tuple[str, ...],
    slacks: tuple[str, ...],
    registry: Any,
    egress: Any,
    senders: int,
    per_namespace: int,
    settings: Settings,
) -> Any:
    """The notification sender: cluster-wide targets from the flags, the HMAC secret from the environment."""
    from delivery.errors import SpecError
    from delivery.integrations.notify import SECRET_ENV, Notifier, Target
    from delivery.spec import webhook_url

    targets = []
    for flag, urls, fmt in (("--notify-webhook", webhooks, "json"), ("--notify-slack", slacks, "slack")):
        for url in (part for u in urls for part in u.split()):
            try:
                targets.append(Target(webhook_url(flag, url), fmt))
            except SpecError as err:
                raise click.BadParameter(err.problem, param_hint=flag) from None
    secret = os.environ.get(SECRET_ENV, "").encode() or None
    return Notifier(
        tuple(targets),
        secret=secret,
        registry=registry,
        egress=egress,
        senders=senders,
        per_namespace=per_namespace,
        settings=settings,
    )
