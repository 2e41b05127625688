"""Output for the CLI: machine formats on stdout, messages on stderr, colour only when wanted.

* ``-o json|yaml`` print exactly one document on stdout; ``-o table`` prints aligned columns.
* Messages (progress, warnings, errors) go to stderr, so ``deliver ... -o json | jq`` stays clean.
* Colour and the rich live view are used only on a terminal, never when ``NO_COLOR`` is set (any
  non-empty value, https://no-color.org) or ``--no-color`` is given. Elsewhere (CI logs) progress
  is plain text, one line per event.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

from strategies.evidence import Outcome

FORMATS = ("table", "json", "yaml")


def color_wanted(no_color: bool = False, stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR or --no-color."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def dump(data: Any, fmt: str) -> str:
    """One machine-readable document (json or yaml)."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False, default=str)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
    raise ValueError(f"not a machine format: {fmt}")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned columns separated by three spaces, like kubectl; a row has one cell per header."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def age(seconds: float) -> str:
    """kubectl-style age: 45s, 12m, 3h, 5d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


PHASE_STYLE = {
    "Succeeded": "green",
    "Idle": "dim",
    "Progressing": "cyan",
    "Promoting": "cyan",
    "Paused": "yellow",
    "RollingBack": "red",
    "RolledBack": "red",
    "Aborted": "red",
    "Invalid": "red",
    "Unknown": "red",
}


# ---------------------------------------------------------------------------- events of a delivery


@dataclass
class Snapshot:
    """What a watcher compares between two reads of a delivery."""

    phase: str = ""
    step: int = 0
    weight: int = 0
    message: str = ""
    revision: str = ""
    verdicts: int = 0
    problems: tuple[str, ...] = ()


def snapshot(status: dict[str, Any]) -> Snapshot:
    return Snapshot(
        phase=str(status.get("phase", "")),
        step=int(status.get("step", 0) or 0),
        weight=int(status.get("weight", 0) or 0),
        message=str(status.get("message", "")),
        revision=str(status.get("revision", "")),
        verdicts=len(status.get("verdicts") or []),
        problems=tuple(status.get("problems") or ()),
    )


def changes(before: Snapshot | None, status: dict[str, Any]) -> list[str]:
    """Human lines describing what changed since ``before`` (every line is one event)."""
    now = snapshot(status)
    name = f"{status.get('namespace', '')}/{status.get('name', '')}"
    if before is None:
        line = f"{name}: phase={now.phase} step={now.step + 1} weight={now.weight}%" + (
            f" revision={now.revision}" if now.revision else ""
        )
        out: list[str] = [line + (f": {now.message}" if now.message else "")]
        out += [f"{name}: invalid: {p}" for p in now.problems]
        return out
    out = []
    if now.problems != before.problems:
        out += [f"{name}: invalid: {p}" for p in now.problems if p not in before.problems]
    if (now.phase, now.step, now.weight, now.revision) != (before.phase, before.step, before.weight, before.revision):
        out.append(
            f"{name}: phase={now.phase} step={now.step + 1} weight={now.weight}%"
            + (f": {now.message}" if now.message else "")
        )
    elif now.message != before.message and now.message:
        out.append(f"{name}: {now.message}")
    verdicts = status.get("verdicts") or []
    start = before.verdicts if now.verdicts >= before.verdicts else 0
    for v in verdicts[start:]:
        out.append(f"{name}: verdict step {int(v.get('step', 0)) + 1}: {v.get('outcome')}: {v.get('summary', '')}")
    return out


@dataclass
class EventPrinter:
    """Plain progress: one line per event on ``stream`` (stderr), with a UTC time stamp."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.time
    last: Snapshot | None = None

    def update(self, status: dict[str, Any]) -> list[str]:
        lines = changes(self.last, status)
        self.last = snapshot(status)
        stamp = time.strftime("%H:%M:%SZ", time.gmtime(self.clock()))
        for line in lines:
            print(f"{stamp} {line}", file=self.stream, flush=True)
        return lines

    def close(self) -> None:
        return None


class LiveView:
    """A rich live panel (terminals only): phase, step, weight, message and the latest verdicts."""

    def __init__(self, color: bool = True, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stderr, no_color=not color, highlight=False)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        self.color = color

    def update(self, status: dict[str, Any]) -> list[str]:
        self.live.update(render_rich(status))
        return []

    def close(self) -> None:
        self.live.stop()


def render_rich(status: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    phase = str(status.get("phase", ""))
    title = Text(f"{status.get('namespace')}/{status.get('name')}  ")
    title.append(phase, style=PHASE_STYLE.get(phase, ""))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("strategy", str(status.get("strategy", "")))
    grid.add_row("step", f"{int(status.get('step', 0) or 0) + 1}")
    grid.add_row("weight", f"{status.get('weight', 0)}%")
    grid.add_row("ready", f"{status.get('ready', 0)}/{status.get('replicas', 0)}")
    if status.get("revision"):
        grid.add_row("revision", f"{status['revision']} (stable {status.get('stableRevision', '')})")
    if status.get("message"):
        grid.add_row("message", str(status["message"]))
    for p in status.get("problems") or []:
        grid.add_row(Text("invalid", style="red"), p)
    for v in (status.get("verdicts") or [])[-5:]:
        style = {Outcome.PASS: "green", Outcome.FAIL: "red"}.get(v.get("outcome"), "yellow")
        grid.add_row(
            f"step {int(v.get('step', 0)) + 1}", Text(f"{v.get('outcome')}: {v.get('summary', '')}", style=style)
        )
    outer = Table.grid()
    outer.add_row(title)
    outer.add_row(grid)
    return outer


def progress_view(live: bool, color: bool, stream: TextIO | None = None) -> EventPrinter | LiveView:
    """The rich live view on a terminal, plain one-line-per-event output elsewhere."""
    stream = stream or sys.stderr
    if live:
        try:
            return LiveView(color, stream)
        except Exception:  # a broken terminal must not break the command
            pass
    return EventPrinter(stream=stream)


def lines(items: Iterable[str]) -> str:
    return "\n".join(items)
