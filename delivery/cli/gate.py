"""``deliver gate``: the CI step. Waits for the delivery of the change the pipeline applied; the exit code says how.

The waiting itself (which revision, what counts as the end) is ``delivery.gate.wait``; this module
parses the flags, shows progress on stderr, writes the JUnit report and prints the result.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from delivery import junit, output, yamlfile
from delivery.cli.context import Globals, common, fail, note
from delivery.cli.params import Duration, Image, TemplateRevision
from delivery.gate import Pin, manifest_pin, wait


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
@click.option("--revision", type=TemplateRevision(), help="Gate this template revision (as `deliver status` shows it).")
@click.option("--image", type=Image(), help="Gate the template that runs this container image.")
@click.option(
    "--manifest",
    type=click.File("r"),
    help="Gate the template of APP's Deployment in this manifest (the file the pipeline applied; - for stdin).",
)
@common
@click.pass_obj
def gate(
    g: Globals,
    app: str,
    timeout: float,
    junit_path: str | None,
    revision: str | None,
    image: str | None,
    manifest: Any,
) -> None:
    """Wait for the delivery of APP's change; the exit code says how it ended.

    Pin the change with --revision, --image or --manifest (at most one): the gate then reports that
    revision however late it starts, even if it was rolled back and the template put back long ago.
    Without a pin it follows APP's current template, or the failed revision if the record shows the
    template was put back after a failure.

    \b
    0  promoted (or nothing to deliver: the template is the stable version)
    1  rolled back, aborted, refused (invalid annotations, not managed) or superseded
    2  usage error
    3  timed out (the delivery may still be going on)
    4  API or authentication error
    """
    pin = _pin(app, revision, image, manifest)
    kube = g.kube()
    view = output.progress_view(output.is_tty(sys.stderr), output.color_wanted(g.no_color), stream=sys.stderr)

    def show(status: dict[str, Any]) -> None:
        view.update(status)

    try:
        result = wait(kube, g.namespace, app, timeout, on_status=show, pin=pin)
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


def _pin(app: str, revision: str | None, image: str | None, manifest: Any) -> Pin:
    given = [flag for flag, v in (("--revision", revision), ("--image", image), ("--manifest", manifest)) if v]
    if len(given) > 1:
        raise click.UsageError(f"give at most one of --revision, --image, --manifest (got {' and '.join(given)})")
    if manifest is not None:
        try:
            return manifest_pin(manifest.read(yamlfile.YAML_MAX + 1), app)
        except (ValueError, OSError) as exc:
            raise click.BadParameter(str(exc), param_hint="'--manifest'") from None
    return Pin(revision=revision or "", image=image or "")
