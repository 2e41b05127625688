"""Typed command-line values: click converts them, and a bad one is a usage error (exit 2) naming the flag."""

from __future__ import annotations

import re
from typing import Any

import click

from delivery import duration, templates

MONTH = 30 * 86400.0


class Duration(click.ParamType[float, Any]):
    """Seconds as a float, from a duration in the Kubernetes form (``90s``, ``5m``, ``1h30m``,
    ``250ms``; ``delivery/duration.py``), the grammar of every annotation and wave file too."""

    name = "duration"

    def __init__(self, minimum: float = 0.0, maximum: float = MONTH) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)  # a default given in code
        else:
            try:
                seconds = duration.seconds(str(value))
            except duration.DurationError as exc:
                self.fail(f"{value!r} {exc}", param, ctx)
        if not self.minimum <= seconds <= self.maximum:
            self.fail(f"{value!r} is out of range ({self.minimum:g}s..{self.maximum:g}s)", param, ctx)
        return seconds


class RequestTimeout(click.ParamType[float, Any]):
    """kubectl's ``--request-timeout``: seconds per API request, ``0`` for none. As kubectl reads it
    (client-go's ``clientcmd.ParseTimeout``), a bare whole number is seconds (``30``, ``0``); anything
    else is a duration in the Kubernetes form (``30s``, ``1m``, ``0s``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)  # a default given in code
        text = str(value).strip()
        try:
            seconds = float(text) if text.isascii() and text.isdigit() else duration.seconds(text)
        except duration.DurationError:
            self.fail(
                f"{value!r} is not a request timeout: whole seconds (30), a duration (30s, 1m) or 0 for none",
                param,
                ctx,
            )
        if seconds > MONTH:
            self.fail(f"{value!r} is out of range (at most 720h; 0 for none)", param, ctx)
        return seconds


class Subject(click.ParamType[str, Any]):
    """A user or group name to act as (``--as``, ``--as-group``): sent as an HTTP header, so one line
    of printable text."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.strip() or not text.isprintable():
            self.fail(f"{value!r} is not a user or group name (empty, or a control character)", param, ctx)
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            self.fail(f"{value!r} is not a user or group name an HTTP header can carry (Latin-1 only)", param, ctx)
        return text


class ListenAddress(click.ParamType[tuple[str, int] | None, Any]):
    """``HOST:PORT`` to serve on (``:8080``, ``127.0.0.1:0``, ``[::1]:9090``); ``0``/``off`` is None (disabled)."""

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int] | None:
        if isinstance(value, tuple):
            return value
        from delivery.integrations.metrics import parse_addr  # prometheus_client: only the controller needs it

        try:
            return parse_addr(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


# deployment.kubernetes.io/revision numbers start at 1
REVISION = click.IntRange(min=1)


class TemplateRevision(click.ParamType[str, Any]):
    """deliver's pod template revision: 10 characters as ``deliver status`` shows them (target, revision)."""

    name = "revision"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not templates.is_revision(text):
            self.fail(f"{value!r} is not a template revision (10 characters, as `deliver status` shows it)", param, ctx)
        return text


class Image(click.ParamType[str, Any]):
    """A container image reference as the pod template spells it (``registry/web:1.2``)."""

    name = "image"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.strip() or text != text.strip() or any(c.isspace() for c in text):
            self.fail(f"{value!r} is not an image reference", param, ctx)
        return text


_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class ObjectName(click.ParamType[str, Any]):
    """A Kubernetes object name usable for every kind (DNS-1123 label: lowercase letters, digits, '-')."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not _OBJECT_NAME.fullmatch(text):
            self.fail(f"{value!r} is not a Kubernetes name (at most 63 lowercase letters, digits and '-')", param, ctx)
        return text
