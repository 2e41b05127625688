"""``deliver wave``: one change through several clusters, stage by stage (the engine: the ``delivery.wave`` package).

This module parses the flags, renders the per-stage progress (a live table on a terminal, one
line per event elsewhere), writes the JUnit report and exits with the gate's codes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click
import yaml

from delivery import output, yamlfile
from delivery.cli.context import Globals, common, fail, note
from delivery.errors import DeliverError, KubeError, WaveBusy, WaveFileError
from delivery.gate import EXIT_API, EXIT_FAILED, EXIT_USAGE
from delivery.wave.clusters import StageUnreachable, connect, preflight, where
from delivery.wave.file import Change, Wave, default_kubeconfig, load, parse_image, resolve_clusters, wave_id
from delivery.wave.lock import WaveLocks
from delivery.wave.report import WaveEvent, WaveResult, write_junit
from delivery.wave.runner import WaveRunner

if TYPE_CHECKING:
    from delivery.kube.client import Kube
    from delivery.wave.file import ClusterRef


class ContainerImage(click.ParamType[tuple[str, str], Any]):
    """``NAME=IMAGE`` (container NAME gets IMAGE) or ``IMAGE`` (the pod's only container)."""

    name = "[container=]image"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_image(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


# ---------------------------------------------------------------------------- rendering

STATE_STYLE = {
    "Pending": "dim",
    "Delivering": "cyan",
    "Soaking": "cyan",
    "Passed": "green",
    "passed": "green",
    "held": "yellow",
    "rolling-back": "yellow",
    "rolled-back": "yellow",
    "abort-requested": "red",
    "failed": "red",
    "timeout": "red",
    "api-error": "red",
    "delivering": "yellow",
    "not-reached": "dim",
}


class PlainView:
    """CI logs: one line per event, with a UTC time stamp; delivery progress only when it changed."""

    def __init__(self, wave: Wave, stream: TextIO) -> None:
        self.wave, self.stream = wave, stream
        self.last: dict[str, output.Snapshot | None] = {}
        self.lock = threading.Lock()

    def __call__(self, e: WaveEvent) -> None:
        with self.lock:
            stamp = time.strftime("%H:%M:%SZ", time.gmtime())
            if e.status is not None:
                lines = output.changes(self.last.get(e.stage), e.status)
                self.last[e.stage] = output.snapshot(e.status)
                for line in lines:
                    print(f"{stamp} [{e.stage}] {line}", file=self.stream, flush=True)
                return
            print(f"{stamp} [{e.stage}] {e.state}: {e.message}", file=self.stream, flush=True)

    def close(self) -> None:
        return None


class LiveWaveView:
    """A terminal: one row per stage, updated in place (rich)."""

    def __init__(self, wave: Wave, color: bool, stream: TextIO, labels: dict[str, str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.wave = wave
        labels = labels or {}
        self.rows: dict[str, list[str]] = {
            s.name: [labels.get(s.name, s.where), "Pending", "", ""] for s in wave.stages
        }
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.console = Console(file=stream, no_color=not color, highlight=False)
        # rich asks __rich__ on every refresh: the clock in the title ticks between events
        self.live = Live(self, console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def __rich__(self) -> Any:
        with self.lock:
            return self._table()

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"wave {self.wave.name}  ({int(time.monotonic() - self.started)}s)", title_justify="left")
        for column in ("stage", "where", "state", "delivery", "message"):
            table.add_column(column, overflow="fold")
        for group_no, group in enumerate(self.wave.groups):
            for s in group:
                where, state, delivery, message = self.rows[s.name]
                label = s.name if len(group) == 1 else f"{s.name} (∥{group_no + 1})"
                table.add_row(label, where, Text(state, style=STATE_STYLE.get(state, "")), delivery, message[:100])
        return table

    def __call__(self, e: WaveEvent) -> None:
        with self.lock:
            row = self.rows[e.stage]
            if e.status is not None:
                st = e.status
                row[2] = f"{st.get('phase', '')} step {int(st.get('step', 0) or 0) + 1} {st.get('weight', 0)}%"
                row[3] = str(st.get("message", ""))
            else:
                row[1], row[3] = e.state, e.message
        self.live.refresh()

    def close(self) -> None:
        self.live.stop()


def summary(result: WaveResult) -> str:
    rows = [(s.name, s.where, s.outcome, s.revision, f"{s.seconds:.1f}s", s.reason[:120]) for s in result.stages]
    return output.table(rows, ["STAGE", "WHERE", "RESULT", "REVISION", "TIME", "REASON"])


# ---------------------------------------------------------------------------- the verb


@click.command()
@click.argument("wave_file", metavar="WAVE_FILE", type=click.Path(dir_okay=False))
@click.option(
    "--image",
    "images",
    type=ContainerImage(),
    multiple=True,
    help="The change: CONTAINER gets IMAGE (IMAGE alone: the pod's only container). Repeatable.",
)
@click.option(
    "--manifest", type=click.File("r"), help="The change: each stage's app gets its pod template from this file."
)
@click.option("--until", "until", metavar="STAGE", help="Stop after this stage (and its parallel group) passed.")
@click.option(
    "--dry-run", is_flag=True, help="Check everything against the clusters and show the next move; change nothing."
)
@click.option("--lint", "lint_only", is_flag=True, help="Check the wave file and its kubeconfigs only (offline).")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write a JUnit XML report, one test case per stage, to this file.",
)
@common
@click.pass_obj
def wave(
    g: Globals,
    wave_file: str,
    images: tuple[tuple[str, str], ...],
    manifest: Any,
    until: str | None,
    dry_run: bool,
    lint_only: bool,
    junit_path: str | None,
) -> None:
    """Ship one change (--image or --manifest) through the stages of WAVE_FILE, in order.

    Each stage's change is delivered by that cluster's deliver controller; the wave waits for it
    with `deliver gate`'s rules and moves on only when it passed. The first failure stops the wave:
    later stages stay untouched, earlier ones are rolled back or held (the file's `on-failure`).
    Run the same command again to go on: where the wave stands is read from the clusters.

    \b
    0  every stage passed (or up to --until)
    1  a stage failed (rolled back, aborted, refused), or another wave runs for the app
    2  usage error, or the wave file, a context, a stage's app or the change is invalid
    3  a stage timed out (the delivery may still be going on; run again to go on waiting)
    4  a cluster is unreachable or denies access (nothing further is changed)
    """
    plan, refs = _load(wave_file, until, g.kubeconfig)
    if lint_only:
        _lint(g, wave_file, plan, images, manifest)
        return
    change = _change(images, manifest)
    kubes = _connect(g, wave_file, plan, change, refs)
    wid = wave_id(plan, change)
    labels = {s.name: where(s, refs[s.name]) for s in plan.stages}
    view = _view(g, plan, sys.stderr, labels, dry_run)
    note(f"wave {plan.name} ({wid}): {change.describe()} through {len(plan.stages)} stage(s)")
    lock: WaveLocks | None = None
    try:
        with _closed_on_failure(view):
            if not dry_run:
                lock = WaveLocks(plan, kubes, wid)
                lock.acquire()
                lock.start()
            runner = WaveRunner(plan, change, kubes, wid, on_event=view, lock=lock, where=labels)
            result = runner.run(until=until, dry_run=dry_run)
    finally:
        if lock is not None:
            lock.release()
    view.close()
    _report(g, result, junit_path)
    sys.exit(result.code)


def _load(wave_file: str, until: str | None, kubeconfig: str | None) -> tuple[Wave, dict[str, ClusterRef]]:
    """The wave file, checked (its stages, their clusters' kubeconfigs and --until); invalid: exit 2."""
    try:
        plan = load(wave_file)
        if until is not None and until not in {s.name for s in plan.stages}:
            raise click.BadParameter(
                f"no stage {until!r} in {wave_file} (stages: {', '.join(s.name for s in plan.stages)})",
                param_hint="'--until'",
            )
        refs = resolve_clusters(plan, default_kubeconfig(kubeconfig))
    except WaveFileError as exc:
        _invalid(exc)
    return plan, refs


def _lint(g: Globals, wave_file: str, plan: Wave, images: tuple[tuple[str, str], ...], manifest: Any) -> None:
    """``--lint``: the wave file is valid (and the change, if one is given); no cluster is asked."""
    if images or manifest is not None:
        _change(images, manifest)
    stages = len(plan.stages)
    note(f"{wave_file}: wave {plan.name}: {stages} stage(s) in {len(plan.groups)} step(s), valid")
    if g.machine:
        click.echo(output.dump({"wave": plan.name, "valid": True, "stages": [s.name for s in plan.stages]}, g.output))


def _connect(g: Globals, wave_file: str, plan: Wave, change: Change, refs: dict[str, ClusterRef]) -> dict[str, Kube]:
    """A client per stage, each stage's app checked against the change before anything is changed:
    an unreachable cluster exits 4, a problem exits 2."""
    try:
        kubes = connect(refs, g.connect)
        problems = preflight(plan, change, kubes)
    except StageUnreachable as exc:
        fail(f"{exc}; nothing was changed", EXIT_API)
    except DeliverError as exc:  # credentials that cannot be loaded
        fail(str(exc), EXIT_API)
    if problems:
        _invalid(WaveFileError(wave_file, problems))
    return kubes


def _view(g: Globals, plan: Wave, stream: TextIO, labels: dict[str, str], dry_run: bool) -> PlainView | LiveWaveView:
    """A live table on a terminal (not for a dry run), else one line per event."""
    if output.is_tty(stream) and not dry_run:
        try:
            return LiveWaveView(plan, output.color_wanted(g.no_color, stream), stream, labels)
        except Exception:  # a broken terminal must not break the command
            return PlainView(plan, stream)
    return PlainView(plan, stream)


@contextmanager
def _closed_on_failure(view: PlainView | LiveWaveView) -> Iterator[None]:
    """Another wave running, an API error or ^C: the view closes and the command exits (1, 4, 130)."""
    try:
        yield
    except WaveBusy as exc:
        view.close()
        fail(str(exc), EXIT_FAILED)
    except KubeError as exc:
        view.close()
        fail(str(exc), EXIT_API)
    except KeyboardInterrupt:
        view.close()
        fail("interrupted; run the same command again to go on", 130)


def _report(g: Globals, result: WaveResult, junit_path: str | None) -> None:
    """The wave's result: the JUnit file (if asked for), the stages' table (or -o's document), the last line."""
    if junit_path:
        try:
            write_junit(junit_path, result)
        except OSError as exc:
            note(f"deliver: cannot write {junit_path}: {exc}")
    if g.machine:
        click.echo(output.dump(result.to_dict(), g.output))
    else:
        note(summary(result))
    note(
        f"deliver wave: {result.wave} ({result.id}): {result.outcome} (exit {result.code}) "
        f"in {result.seconds:.1f}s: {result.reason}"
    )


def _invalid(exc: WaveFileError) -> NoReturn:
    for problem in exc.problems:
        note(f"{exc.source}: {problem}")
    fail(f"the wave is not valid ({len(exc.problems)} problem(s)); nothing was changed", EXIT_USAGE)


def _change(images: tuple[tuple[str, str], ...], manifest: Any) -> Change:
    if images and manifest is not None:
        raise click.UsageError("give --image or --manifest, not both")
    if manifest is not None:
        try:
            text = manifest.read(yamlfile.YAML_MAX + 1)
            yamlfile.load_all(text)  # bounded (no aliases, size and node caps): refused here, exit 2
        except OSError as exc:
            raise click.BadParameter(str(exc), param_hint="'--manifest'") from None
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"not read as YAML: {exc}", param_hint="'--manifest'") from None
        return Change(manifest=text, manifest_name=getattr(manifest, "name", "-"))
    if not images:
        raise click.UsageError("the change is missing: give --image [NAME=]IMAGE or --manifest FILE")
    names = [n for n, _ in images]
    if len(set(names)) != len(names):
        raise click.BadParameter("a container is named twice", param_hint="'--image'")
    return Change(images=tuple(images))
