"""Read-only verbs: ``deliver status`` (once or ``--watch``) and ``deliver get`` (the list)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from delivery import output
from delivery import spec as specmod
from delivery.cli.context import Globals, api_failed, common, fail, get_deployment, note, print_result
from delivery.cli.params import Duration
from delivery.errors import KubeError
from delivery.gate import EXIT_TIMEOUT, status_dict
from delivery.kube.client import DEPLOYMENTS, Kube


def colour_phase(phase: str, color: bool) -> str:
    if not color:
        return phase
    return click.style(
        phase,
        fg={"green": "green", "red": "red", "yellow": "yellow", "cyan": "cyan"}.get(
            output.PHASE_STYLE.get(phase, ""), None
        ),
    )


def render_status(s: dict[str, Any], color: bool = False) -> str:
    """``deliver status`` for people: one summary line, then problems, message, revisions, last verdicts."""
    lines = [
        f"{s['namespace']}/{s['name']}  strategy={s['strategy']}  phase={colour_phase(s.get('phase', 'Idle'), color)}"
        f"  step={int(s.get('step', 0) or 0) + 1}  weight={s.get('weight', 0)}%"
        f"  ready={s['ready']}/{s['replicas']}"
    ]
    for problem in s["problems"]:
        lines.append(f"  invalid: {problem}")
    if s.get("message"):
        lines.append(f"  {s['message']}")
    if s.get("revision"):
        lines.append(
            f"  revision {s['revision']} (stable {s.get('stableRevision', '')}, template {s.get('target', '')})"
        )
    if s.get("pendingRequest"):
        lines.append(f"  pending request: {s['pendingRequest']} (not yet taken by the controller)")
    for v in (s.get("verdicts") or [])[-5:]:
        lines.append(f"  step {int(v['step']) + 1}: {v['outcome']}: {v['summary']}")
    if s.get("running"):  # the newest look at the running window of the step being held
        lines.append(f"  step {int(s['running']['step']) + 1} now: {s['running']['summary']}")
    lines.extend(forecast_lines(s))
    return "\n".join(lines)


def forecast_lines(s: dict[str, Any]) -> list[str]:
    """Time to verdict of an open delivery's newest verdict, per check (docs/analysis.md#time-to-verdict)."""
    from delivery.analysis.forecast import Forecast

    verdicts = s.get("verdicts") or []
    if not verdicts or s.get("phase") not in ("Progressing", "Paused"):
        return []
    details = verdicts[-1].get("details") if isinstance(verdicts[-1], dict) else None
    entries = details.get("forecast") if isinstance(details, dict) else None
    lines = []
    for d in entries if isinstance(entries, list) else []:
        try:  # the record is anyone's to write: a forecast that is not one is left out
            f = Forecast.from_dict(d)
            lines.append(f"  time to verdict ({f.check}, at the last analysis): {f.text()}")
        except (AttributeError, TypeError, ValueError, OverflowError):
            continue
    return lines


def hold_mode_line(g: Globals) -> str:
    """Which hold mode the cluster's policy gives (docs/hold-modes.md), as far as the caller may read it."""
    mode, why = hold_mode(g.kube())
    return f"hold mode: {mode} ({why})"


def hold_mode(kube: Kube) -> tuple[str, str]:
    """(policy | paused | unknown, why), read as ``deliver hold-policy --check`` reads it."""
    from delivery.engine.holdpolicy import detect
    from delivery.errors import DeliverError

    try:
        found = detect(kube)
    except DeliverError as exc:
        return "unknown", str(exc)
    if "forbidden" in found.why:
        return "unknown", "you may not read MutatingAdmissionPolicies; the controller's log and /metrics say"
    return found.mode.value, found.why


@click.command()
@click.argument("app")
@click.option("-w", "--watch", is_flag=True, help="Keep following the delivery (Ctrl-C to stop).")
@click.option("--timeout", type=Duration(), default=None, help="With --watch: stop after this long (e.g. 10m); exit 3.")
@common
@click.pass_obj
def status(g: Globals, app: str, watch: bool, timeout: float | None) -> None:
    """Show the delivery of APP: phase, step, weight, verdicts and any invalid annotation."""
    deployment = get_deployment(g, app)
    s = status_dict(deployment)
    if not watch:
        print_result(g, s, render_status(s, g.color))
        note(hold_mode_line(g))
        return
    watch_status(g, app, deployment, timeout)


def watch_status(g: Globals, app: str, deployment: dict[str, Any], limit: float | None) -> None:
    """Follow APP through a watch: a live view on a terminal, a line per change otherwise, or a document
    per change with ``-o json|yaml``. Exit 3 when ``limit`` seconds pass."""
    view: output.EventPrinter | output.LiveView | None
    if g.machine:
        view = None
    elif output.is_tty(sys.stdout):
        view = output.progress_view(True, g.color, stream=sys.stdout)
    else:
        view = output.EventPrinter(stream=sys.stdout)
    deadline = time.monotonic() + limit if limit else None
    last: str | None = None

    def show(dep: dict[str, Any]) -> None:
        nonlocal last
        s = status_dict(dep)
        if view is None:
            text = json.dumps(s, separators=(",", ":")) if g.output == "json" else "---\n" + output.dump(s, "yaml")
            if text != last:
                click.echo(text)
                last = text
        else:
            view.update(s)

    kube = g.kube()
    try:
        show(deployment)
        rv = deployment["metadata"]["resourceVersion"]
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                note(f"deliver: stopped watching after {int(limit or 0)}s")
                sys.exit(EXIT_TIMEOUT)
            seconds = 30 if remaining is None else max(1, min(30, int(remaining) + 1))
            try:
                for event in kube.watch(DEPLOYMENTS, g.namespace, rv, seconds):
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if (obj.get("metadata") or {}).get("name") != app:
                        continue
                    if event.get("type") == "DELETED":
                        fail(f"deployment {g.namespace}/{app} was deleted")
                    show(obj)
            except KubeError as exc:
                if exc.status in (401, 403):
                    api_failed(exc)
                fresh = get_deployment(g, app)
                rv = fresh["metadata"]["resourceVersion"]
                show(fresh)
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.close()


@click.command(name="get")
@click.option("-A", "--all-namespaces", is_flag=True, help="List deliveries in every namespace.")
@common
@click.pass_obj
def get_cmd(g: Globals, all_namespaces: bool) -> None:
    """List the Deployments deliver manages in a namespace, with their delivery phase."""
    try:
        items: list[dict[str, Any]] = g.kube().items(DEPLOYMENTS, None if all_namespaces else g.namespace)
    except KubeError as exc:
        api_failed(exc)
    statuses = [status_dict(d) for d in items if specmod.has_strategy(d)]
    statuses.sort(key=lambda s: (s["namespace"], s["name"]))
    if g.machine:
        click.echo(output.dump({"items": statuses}, g.output))
        return
    if not statuses:
        note(f"No deliveries found in {'any namespace' if all_namespaces else 'namespace ' + g.namespace}.")
        return
    now = time.time()
    rows = []
    for s in statuses:
        phase = s.get("phase", "")
        if not s["valid"]:
            phase = "Invalid"
        row = [
            s["strategy"],
            colour_phase(phase, g.color),
            int(s.get("step", 0) or 0) + 1,
            f"{s.get('weight', 0)}%",
            f"{s['ready']}/{s['replicas']}",
            s.get("revision") or s.get("target", ""),
            output.age(now - float(s["started"])) if s.get("started") else "-",
        ]
        rows.append(([s["namespace"]] if all_namespaces else []) + [s["name"]] + row)
    headers = (["NAMESPACE"] if all_namespaces else []) + [
        "NAME",
        "STRATEGY",
        "PHASE",
        "STEP",
        "WEIGHT",
        "READY",
        "REVISION",
        "AGE",
    ]
    click.echo(output.table(rows, headers))
