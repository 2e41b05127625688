"""``deliver gate``: the CI step. Waits for the delivery of APP's current template; the exit code says how it ended.

The waiting itself (which revision, what counts as the end) is ``delivery.gate.wait``; this module
parses the flags, shows progress on stderr, writes the JUnit report and prints the result.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import junit, output
from ..gate import wait
from .context import Globals, common, fail, note
from .params import Duration


@click.command()
@click.argument("app")
@click.option(
    "--timeout", type=Duration(), default="15m", show_default=True, help="How long to wait (e.g. 90s, 15m, 1h)."
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write a JUnit XML report of the steps and verdicts to this file.",
)
@common
@click.pass_obj
def gate(g: Globals, app: str, timeout: float, junit_path: str | None) -> None:
    """Wait for the delivery of APP's current template; the exit code says how it ended.

    \b
    0  promoted (or nothing to deliver: the template is the stable version)
    1  rolled back, aborted, refused (invalid annotations, not managed) or superseded
    2  usage error
    3  timed out (the delivery may still be going on)
    4  API or authentication error
    """
    kube = g.kube()
    view = output.progress_view(output.is_tty(sys.stderr), output.color_wanted(g.no_color), stream=sys.stderr)

    def show(status: dict[str, Any]) -> None:
        view.update(status)

    try:
        result = wait(kube, g.namespace, app, timeout, on_status=show)
    except KeyboardInterrupt:
        view.close()
        fail("interrupted", 130)
    finally:
        view.close()
    if junit_path:
        try:
            junit.write(junit_path, result)
        except OSError as exc:
            note(f"deliver: cannot write {junit_path}: {exc}")
    data = {
        "namespace": result.namespace,
        "name": result.name,
        "revision": result.revision,
        "result": result.outcome,
        "exitCode": result.code,
        "reason": result.reason,
        "seconds": round(result.duration, 1),
        "status": result.status,
    }
    if g.machine:
        click.echo(output.dump(data, g.output))
    note(
        f"deliver gate: {result.namespace}/{result.name} revision {result.revision or '?'}: "
        f"{result.outcome} (exit {result.code}): {result.reason}"
    )
    sys.exit(result.code)
