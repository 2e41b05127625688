"""The ``deliver`` command line (also installed as the kubectl plugin ``kubectl-deliver``).

Machine output (``-o json|yaml``, tables, status) goes to stdout; messages go to stderr. Colour and
the rich live view only on a terminal, never with NO_COLOR or ``--no-color``.

Exit codes: 0 ok / promoted, 1 the operation is not possible (not annotated, wrong state, invalid
annotations) or the delivery failed, 2 usage error, 3 timeout, 4 API or authentication error.

One module per concern; imports run one way, from the verbs to ``context`` and ``params``:

    context        Globals (the flags given before or after a verb), common options, messages, exits
    params         typed flag values: Duration, RequestTimeout, ListenAddress, REVISION
    view           status (once or --watch) and get
    requests       promote, abort, retry, pause, resume: write an operator request
    request_rules  check_request: may this request be sent now (pure)
    undo           undo and previous_revision (pure)
    lint           lint and lint_documents (pure, offline)
    gate           the gate verb (the waiting is delivery.gate)
    version        client, controller and cluster versions and the hold mode
    run            the controller's wiring
    installcheck   check-install: the controller leads and may list Deployments (the chart's helm test)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from delivery import __version__, output
from delivery.cli import gate, helmhook, holdpolicy, installcheck, lint, requests, run, undo, version, view
from delivery.cli.context import Globals, connection_options, first_path
from delivery.cli.lint import lint_documents
from delivery.cli.params import Duration
from delivery.cli.request_rules import check_request
from delivery.cli.undo import previous_revision
from delivery.cli.view import render_status
from delivery.gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE

__all__ = [
    "main",
    "Globals",
    "Duration",
    "check_request",
    "previous_revision",
    "lint_documents",
    "render_status",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_TIMEOUT",
    "EXIT_API",
]


PLUGIN = "kubectl-deliver"  # the kubectl plugin's executable: kubectl runs it for `kubectl deliver`


def program_name(argv0: str) -> str | None:
    """How the help names the command: ``kubectl deliver`` when run as the kubectl plugin, else None
    (click's own guess: ``deliver``, ``python -m delivery.cli``)."""
    base = os.path.basename(argv0)
    base = base.removesuffix(".exe").removesuffix("-script.py")
    return "kubectl deliver" if base == PLUGIN else None


class Deliver(click.Group):
    """The ``deliver`` group; its usage lines read ``kubectl deliver ...`` when kubectl runs it."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("prog_name") is None and len(args) < 2:  # (prog_name is main's second parameter)
            kwargs["prog_name"] = program_name(sys.argv[0] if sys.argv else "")
        return super().main(*args, **kwargs)


def _connection(f: Any) -> Any:
    for option in reversed(connection_options(lambda _attr: {})):
        f = option(f)
    return f


@click.group(cls=Deliver, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file.")
@click.option("--context", help="Kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace (default: the context's, else 'default').")
@click.option("-o", "--output", "output_format", type=click.Choice(output.FORMATS), help="table, json or yaml.")
@click.option("--no-color", is_flag=True, default=False, help="No colour (also: NO_COLOR=1).")
@_connection
@click.version_option(version=__version__, prog_name="deliver")
@click.pass_context
def main(
    ctx: click.Context,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    output_format: str | None,
    no_color: bool,
    as_user: str | None,
    as_groups: tuple[str, ...],
    request_timeout: float | None,
) -> None:
    """deliver: progressive delivery for plain Kubernetes Deployments.

    \b
    Exit codes: 0 ok/promoted, 1 not possible or delivery failed, 2 usage,
    3 timeout, 4 API or authentication error.
    """
    ctx.obj = Globals(
        first_path(kubeconfig),
        context,
        namespace,
        output_format or "table",
        no_color,
        as_user=as_user,
        as_groups=as_groups,
        request_timeout=request_timeout,
    )


for command in (
    view.status,
    view.get_cmd,
    *requests.COMMANDS,
    undo.undo,
    lint.lint,
    gate.gate,
    run.run,
    holdpolicy.hold_policy,
    helmhook.helm_hook,
    installcheck.check_install,
    version.version,
):
    main.add_command(command)

# deliver wave (issue 15): one change through several clusters, stage by stage
from delivery.cli.wave import wave as _wave  # noqa: E402

main.add_command(_wave)

# deliver dashboard (issue 16): a live local web page of the deliveries
from delivery.cli.dashboard import dashboard as _dashboard  # noqa: E402

main.add_command(_dashboard)
