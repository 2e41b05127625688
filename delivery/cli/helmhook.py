"""``deliver helm-hook``: the Helm hook that makes ``helm install/upgrade`` wait for deliver's verdict
(a Job running ``deliver gate``), printed for a chart's templates/ (docs/helm.md)."""

from __future__ import annotations

import sys

import click
import yaml

from delivery import __version__
from delivery.cli.params import Duration, Image, ObjectName
from delivery.integrations.helmhook import manifests

DEFAULT_IMAGE = f"ghcr.io/deliver-dev/deliver:{__version__}"


def _one_line(value: str | None, param: click.Parameter, ctx: click.Context) -> str | None:
    """An image, or a Helm expression giving one (``{{ .Values.image }}``): one non-empty line."""
    if value is not None and (not value.strip() or "\n" in value or "\r" in value):
        raise click.BadParameter(f"{value!r} is not an image reference or a Helm expression", ctx, param)
    return value


@click.command("helm-hook")
@click.argument("app", type=ObjectName())
@click.option(
    "--image",
    type=Image(),
    default=DEFAULT_IMAGE,
    show_default=True,
    help="The deliver image the hook's Job runs (the controller's image).",
)
@click.option(
    "--timeout",
    type=Duration(minimum=1),
    default="10m",
    show_default=True,
    help="How long the gate waits; give helm a longer --timeout.",
)
@click.option("--name", type=ObjectName(), default=None, help="Name of the hook's objects (default deliver-gate-APP).")
@click.option(
    "--pin-image",
    default=None,
    callback=lambda ctx, param, value: _one_line(value, param, ctx),
    help="Gate the template that runs this container image (`deliver gate --image`), e.g. "
    "'{{ .Values.image }}' in a chart.",
)
def helm_hook(app: str, image: str, timeout: float, name: str | None, pin_image: str | None) -> None:
    """Print a Helm post-install/post-upgrade hook for Deployment APP: a Job running `deliver gate APP`
    (with a ServiceAccount and a Role that may only read Deployments), to put in the chart's templates/.
    `helm upgrade` then fails when deliver rolls the change back, and `--rollback-on-failure` rolls the
    release back; Helm's --wait alone skips a paused Deployment."""
    hook = manifests(app, image, timeout, name or "", pin_image or "")
    sys.stdout.write(yaml.safe_dump_all(hook, sort_keys=False))
