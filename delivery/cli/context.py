"""What every verb shares: the global flags (``Globals``), the ``common`` options, messages and exits.

Machine output (``-o json|yaml``, tables, status) goes to stdout; messages go to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from delivery import output
from delivery import spec as specmod
from delivery.cli.params import RequestTimeout, Subject
from delivery.errors import DeliverError, KubeError, NotFound
from delivery.gate import EXIT_API, EXIT_FAILED
from delivery.kube.client import DEPLOYMENTS, Impersonation, Kube, KubeClient, default_namespace


@dataclass
class Globals:
    """The flags given before or after the verb; the API client is made on first use."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace_flag: str | None = None
    output: str = "table"
    no_color: bool = False
    as_user: str | None = None  # --as
    as_groups: tuple[str, ...] = ()  # --as-group, repeatable
    request_timeout: float | None = None  # --request-timeout in seconds, 0 for none; None: the client's default
    _kube: Kube | None = field(default=None, repr=False)
    _namespace: str | None = field(default=None, repr=False)

    @property
    def namespace(self) -> str:
        if self.namespace_flag:
            return self.namespace_flag
        if self._namespace is None:
            self._namespace = default_namespace(self.kubeconfig, self.context)
        return self._namespace

    def kube(self) -> Kube:
        if self._kube is None:
            try:
                self._kube = self.connect(self.kubeconfig, self.context)
            except DeliverError as exc:
                fail(str(exc), EXIT_API)
        return self._kube

    def connect(self, kubeconfig: str | None, context: str | None) -> Kube:
        """A client for this kubeconfig and context with the flags' impersonation and request timeout
        (the wave's stages connect through it too); Unauthorized when the credentials cannot be loaded."""
        if self.request_timeout is None:  # not given: the client's default, as before the flag
            return KubeClient.connect(kubeconfig, context, impersonate=self.impersonation)
        # given: kubectl's meaning, the time one request may take (so it is not sent again after it ran out)
        timeout = self.request_timeout or None  # 0: no timeout
        return KubeClient.connect(kubeconfig, context, timeout, self.impersonation, retries=0 if timeout else None)

    @property
    def impersonation(self) -> Impersonation | None:
        """``--as`` and ``--as-group``; groups without a user are a usage error, as in kubectl."""
        if self.as_groups and not self.as_user:
            raise click.UsageError("--as-group needs --as: groups are impersonated together with a user")
        return Impersonation(self.as_user, self.as_groups) if self.as_user else None

    @property
    def color(self) -> bool:
        return output.color_wanted(self.no_color, sys.stdout)

    @property
    def machine(self) -> bool:
        """``-o json`` or ``-o yaml``: data on stdout, no human text."""
        return self.output in ("json", "yaml")


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"deliver: {message}", err=True)
    sys.exit(code)


def api_failed(exc: KubeError) -> NoReturn:
    fail(str(exc), EXIT_API)


def note(message: str) -> None:
    click.echo(message, err=True)


def print_result(g: Globals, data: Any, human: str) -> None:
    """The result of a verb on stdout: ``data`` with ``-o json|yaml``, else ``human`` (if any)."""
    if g.machine:
        click.echo(output.dump(data, g.output))
    elif human:
        click.echo(human)


def get_deployment(g: Globals, app: str, managed: bool = True) -> dict[str, Any]:
    """The Deployment APP, or exit: 1 when it is missing (or, with ``managed``, not annotated), 4 on API errors."""
    try:
        deployment = g.kube().get(DEPLOYMENTS, g.namespace, app)
    except NotFound:
        fail(f"deployment {g.namespace}/{app} not found")
    except KubeError as exc:
        api_failed(exc)
    if managed and not specmod.has_strategy(deployment):
        fail(specmod.not_managed(f"{g.namespace}/{app}"))
    return deployment


def first_path(value: str | None) -> str | None:
    """The first file of a KUBECONFIG path list (``a:b`` on POSIX)."""
    if value and os.pathsep in value:
        return next((p for p in value.split(os.pathsep) if p), None)
    return value or None


def connection_options(how: Callable[[str], dict[str, Any]]) -> list[Callable[[Any], Any]]:
    """kubectl's --as, --as-group and --request-timeout; ``how(attr)`` gives the option's keywords
    that put its value on ``Globals.attr`` (before the verb: a parameter of the group)."""
    return [
        click.option(
            "--as",
            "as_user",
            type=Subject(),
            metavar="USER",
            help="Act as this user (kubectl's impersonation; system:serviceaccount:NS:NAME for a ServiceAccount).",
            **how("as_user"),
        ),
        click.option(
            "--as-group",
            "as_groups",
            type=Subject(),
            multiple=True,
            metavar="GROUP",
            help="Act as a member of this group too (with --as). Repeatable.",
            **how("as_groups"),
        ),
        click.option(
            "--request-timeout",
            "request_timeout",
            type=RequestTimeout(),
            help="Give up on one API request after this long: 30s, 1m, or whole seconds; 0 for never "
            "(default 15s a try, tried up to 4 times).",
            **how("request_timeout"),
        ),
    ]


def _setter(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None or value is False:
            return value
        g = ctx.find_object(Globals)
        if g is None:
            g = ctx.ensure_object(Globals)
        if attr == "kubeconfig":
            value = first_path(value)
        if attr == "as_groups":  # repeatable: after the verb adds to those given before it
            value = g.as_groups + tuple(value)
        setattr(g, attr, value)
        return value

    return callback


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """The flags every verb accepts after its name too: deliver status app -n prod -o json."""
    options = [
        click.option(
            "--kubeconfig",
            expose_value=False,
            callback=_setter("kubeconfig"),
            help="Path to the kubeconfig file (default $KUBECONFIG, ~/.kube/config, in-cluster).",
        ),
        click.option("--context", expose_value=False, callback=_setter("context"), help="Kubeconfig context."),
        click.option(
            "-n",
            "--namespace",
            "namespace_flag",
            expose_value=False,
            callback=_setter("namespace_flag"),
            help="Namespace (default: the context's, else 'default').",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(output.FORMATS),
            expose_value=False,
            callback=_setter("output"),
            help="Output format: table (default), json or yaml.",
        ),
        *connection_options(lambda attr: {"expose_value": False, "callback": _setter(attr)}),
        click.option(
            "--no-color",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_setter("no_color"),
            help="No colour (also: NO_COLOR=1).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f
