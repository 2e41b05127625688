"""The operator verbs promote, abort, retry, pause and resume: each writes one request on the Deployment.

The controller takes the request on its next pass; ``--wait`` waits until it has. Whether a request
may be sent at all is decided by ``request_rules.check_request``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from delivery.cli.context import Globals, api_failed, common, fail, get_deployment, note, print_result
from delivery.cli.params import Duration
from delivery.cli.request_rules import check_request
from delivery.engine.state import read_state, send_request
from delivery.errors import Conflict, KubeError, StateError
from delivery.gate import EXIT_API, EXIT_TIMEOUT, status_dict
from strategies.requests import shown

ATTEMPTS = 5  # writes lost to a concurrent change before giving up


def send(g: Globals, app: str, verb: str, wait: bool, timeout: float) -> None:
    """Check and write the request ``verb`` for APP; with ``wait``, wait until the controller took it."""
    kube = g.kube()
    for _ in range(ATTEMPTS):
        deployment = get_deployment(g, app)
        problem = check_request(deployment, verb)
        if problem:
            fail(problem)
        try:
            rid = send_request(kube, deployment, verb)
        except Conflict:
            continue
        except KubeError as exc:
            api_failed(exc)
        note(f"{shown(verb)} requested for {g.namespace}/{app} (request {rid})")
        result: dict[str, Any] = {"namespace": g.namespace, "name": app, "request": verb, "id": rid}
        if wait:
            wait_taken(g, app, rid, timeout)
            result["status"] = status_dict(get_deployment(g, app))
        print_result(g, result, "")
        return
    fail("the Deployment kept changing under us; try again", EXIT_API)


def wait_taken(g: Globals, app: str, rid: str, timeout: float) -> None:
    """Return once the controller has taken request ``rid``; exit 3 after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = get_deployment(g, app)
        try:
            state = read_state(deployment)
        except StateError as exc:
            fail(str(exc))
        if state.handled_request == rid:
            note(f"taken by the controller: {state.phase.value}: {state.message}")
            return
        time.sleep(0.5)
    fail(f"the controller did not take request {rid} within {int(timeout)}s (is it running?)", EXIT_TIMEOUT)


def request_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--timeout", type=Duration(), default="1m", show_default=True, help="With --wait: how long to wait."
    )(f)
    f = click.option("--wait", is_flag=True, help="Wait until the controller has taken the request.")(f)
    return f


@click.command()
@click.argument("app")
@click.option("--full", is_flag=True, help="Skip the remaining steps: promote to 100% now.")
@request_options
@common
@click.pass_obj
def promote(g: Globals, app: str, full: bool, wait: bool, timeout: float) -> None:
    """Move APP's delivery to its next step (or, with --full, straight to 100%); passes a `pause` step."""
    send(g, app, "promote-full" if full else "promote", wait, timeout)


@click.command()
@click.argument("app")
@request_options
@common
@click.pass_obj
def abort(g: Globals, app: str, wait: bool, timeout: float) -> None:
    """Stop APP's delivery at any step and put all traffic back on the stable version now."""
    send(g, app, "abort", wait, timeout)


@click.command()
@click.argument("app")
@request_options
@common
@click.pass_obj
def retry(g: Globals, app: str, wait: bool, timeout: float) -> None:
    """Start a rolled-back or aborted delivery of APP again."""
    send(g, app, "retry", wait, timeout)


@click.command()
@click.argument("app")
@request_options
@common
@click.pass_obj
def pause(g: Globals, app: str, wait: bool, timeout: float) -> None:
    """Hold APP's delivery at its current step until `deliver resume` (or promote/abort)."""
    send(g, app, "pause", wait, timeout)


@click.command()
@click.argument("app")
@request_options
@common
@click.pass_obj
def resume(g: Globals, app: str, wait: bool, timeout: float) -> None:
    """Continue a delivery of APP paused by `deliver pause` or by an inconclusive analysis."""
    send(g, app, "resume", wait, timeout)


COMMANDS = (promote, abort, retry, pause, resume)
