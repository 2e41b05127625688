"""``deliver run``: wire the controller together (API client, analysis, leader election, metrics) and run it."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import click

from .. import logs
from .context import Globals, common, fail
from .params import Duration, ListenAddress


@click.command()
@click.option("--prometheus-url", envvar="DELIVER_PROMETHEUS_URL", help="Prometheus for metric analysis.")
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
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@common
@click.pass_obj
def run(
    g: Globals,
    prometheus_url: str | None,
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
    log_level: str,
) -> None:
    """Run the controller (JSON logs on stderr)."""
    # Imported here: only the controller needs them (prometheus_client, threads), not every verb.
    from ..background import AnalysisPool
    from ..cache import Cache, CachedKube
    from ..controller import Controller
    from ..hooks import HookPool
    from ..leader import Fenced, LeaderElector, ServerClock
    from ..metrics import KubeAuthorizer, Metrics, Server, auth_mode
    from ..reconcile import Reconciler

    if leader_elect and not (lease_duration > renew_deadline > retry_period > 0):
        raise click.UsageError("need --lease-duration > --renew-deadline > --retry-period > 0")
    logs.setup(json_lines=True, level=log_level)
    log = logging.getLogger("deliver")
    kube = g.kube()
    analyser = None
    if prometheus_url:
        from ..verdicts import make_analyser

        analyser = make_analyser(kube, prometheus_url, on_query=lambda ns, name, ok: metrics.count_query(ns, name, ok))

    elector: LeaderElector | None = None
    server_clock = ServerClock()  # step times from the API server's clock (see leader.ServerClock)
    if leader_elect:
        try:
            elector = LeaderElector(
                kube,
                lease_namespace or os.environ.get("POD_NAMESPACE") or g.namespace,
                lease_name,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                server_clock=server_clock,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    is_leader: Callable[[], bool] = elector.is_leader if elector else (lambda: True)
    holder: dict[str, Controller] = {}
    metrics = Metrics(
        is_leader=is_leader,
        watch_restarts=lambda: holder["c"].watch_restarts if "c" in holder else 0,
        synced=lambda: bool(holder.get("c") and holder["c"].synced),
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
    notifier = _notifier(notify_webhooks, notify_slacks, metrics.registry)
    # Hook calls too: a slow hook delays only its own Deployment's gate (delivery/hooks.py).
    hook_pool = HookPool(workers, on_done=lambda key: holder["c"].queue.add(key), secret=notifier.secret)
    # The engine reads Deployments, ReplicaSets, pods, Services and PodDisruptionBudgets from the
    # informers' stores (delivery/cache.py); writes and everything else go to the API server.
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
            )
            if elector
            else Reconciler(reads, analyser, pool=pool, analysis_every=every, notifier=notifier, hook_pool=hook_pool)
        ),
        None if all_namespaces else g.namespace,
        is_leader=is_leader,
        on_outcome=metrics.observe,
        workers=workers,
        cache=cache,
    )
    holder["c"] = controller

    server = None
    if metrics_addr is not None:
        try:
            mode = auth_mode(metrics_auth, metrics_addr[0])
            auth = KubeAuthorizer(kube) if mode == "kubernetes" else None
            server = Server(metrics, *metrics_addr, auth=auth).start()
        except OSError as exc:
            fail(f"cannot serve metrics on {metrics_addr[0]}:{metrics_addr[1]}: {exc}")
        host, port = server.address
        log.info("serving /metrics, /healthz, /readyz", extra={"address": f"{host}:{port}", "metrics_auth": mode})

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
    deadline = time.monotonic() + shutdown_grace
    while controller.busy.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.shutdown()
    hook_pool.shutdown()
    notifier.drain(min(shutdown_grace, 5.0))  # what is queued gets a moment; the Events remain either way
    notifier.stop()
    if elector is not None:
        elector.stop()
        elector.release()
    if server is not None:
        server.stop()
    log.info("controller exited")
    logging.shutdown()
    os._exit(0)  # informer threads may sit in a blocking read; do not wait for them


def _notifier(webhooks: tuple[str, ...], slacks: tuple[str, ...], registry: Any) -> Any:
    """The notification sender: cluster-wide targets from the flags, the HMAC secret from the environment."""
    from ..errors import SpecError
    from ..notify import SECRET_ENV, Notifier, Target
    from ..spec import webhook_url

    targets = []
    for flag, urls, fmt in (("--notify-webhook", webhooks, "json"), ("--notify-slack", slacks, "slack")):
        for url in urls:
            try:
                targets.append(Target(webhook_url(flag, url), fmt))
            except SpecError as err:
                raise click.BadParameter(err.problem, param_hint=flag) from None
    secret = os.environ.get(SECRET_ENV, "").encode() or None
    return Notifier(tuple(targets), secret=secret, registry=registry)
