"""The ``deliver`` command line (also installed as the kubectl plugin ``kubectl-deliver``).

Machine output (``-o json|yaml``, tables, status) goes to stdout; messages go to stderr. Colour and
the rich live view only on a terminal, never with NO_COLOR or ``--no-color``.

Exit codes: 0 ok / promoted, 1 the operation is not possible (not annotated, wrong state, invalid
annotations) or the delivery failed, 2 usage error, 3 timeout, 4 API or authentication error.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from . import logs, output, templates
from . import spec as specmod
from .errors import Conflict, DeliverError, KubeError, NotFound, SpecError, StateError
from .gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, status_dict
from .kube import DEPLOYMENTS, JSON_PATCH, REPLICASETS, Kube, selector_string
from .state import read_request, read_state, send_request

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_TIMEOUT", "EXIT_API"]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


# ----------------------------------------------------------------------------- global flags


@dataclass
class Globals:
    kubeconfig: str | None = None
    context: str | None = None
    namespace_flag: str | None = None
    output: str = "table"
    no_color: bool = False
    _kube: Kube | None = field(default=None, repr=False)
    _namespace: str | None = field(default=None, repr=False)

    @property
    def namespace(self) -> str:
        if self.namespace_flag:
            return self.namespace_flag
        if self._namespace is None:
            self._namespace = _default_namespace(self.kubeconfig, self.context)
        return self._namespace

    def kube(self) -> Kube:
        if self._kube is None:
            try:
                self._kube = Kube.connect(self.kubeconfig, self.context)
            except DeliverError as exc:
                fail(str(exc), EXIT_API)
        return self._kube

    @property
    def color(self) -> bool:
        return output.color_wanted(self.no_color, sys.stdout)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"deliver: {message}", err=True)
    sys.exit(code)


def note(message: str) -> None:
    click.echo(message, err=True)


def _default_namespace(kubeconfig: str | None, context: str | None) -> str:
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig: in-cluster namespace, else default
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as fh:
                return fh.read().strip() or "default"
        except OSError:
            return "default"


def _first_path(value: str | None) -> str | None:
    if value and os.pathsep in value:
        return next((p for p in value.split(os.pathsep) if p), None)
    return value or None


def _setter(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None or value is False:
            return value
        g = ctx.find_object(Globals)
        if g is None:
            g = ctx.ensure_object(Globals)
        if attr == "kubeconfig":
            value = _first_path(value)
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file.")
@click.option("--context", help="Kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace (default: the context's, else 'default').")
@click.option("-o", "--output", type=click.Choice(output.FORMATS), default=None, help="table, json or yaml.")
@click.option("--no-color", is_flag=True, default=False, help="No colour (also: NO_COLOR=1).")
@click.version_option(package_name="deliver", prog_name="deliver")
@click.pass_context
def main(
    ctx: click.Context,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    output: str | None,
    no_color: bool,
) -> None:
    """deliver: progressive delivery for plain Kubernetes Deployments.

    \b
    Exit codes: 0 ok/promoted, 1 not possible or delivery failed, 2 usage,
    3 timeout, 4 API or authentication error.
    """
    ctx.obj = Globals(_first_path(kubeconfig), context, namespace, output or "table", no_color)


# ----------------------------------------------------------------------------- helpers


def _api(exc: KubeError) -> NoReturn:
    fail(str(exc), EXIT_API)


def _get(g: Globals, app: str, managed: bool = True) -> dict[str, Any]:
    try:
        deployment = g.kube().get(DEPLOYMENTS, g.namespace, app)
    except NotFound:
        fail(f"deployment {g.namespace}/{app} not found")
    except KubeError as exc:
        _api(exc)
    if managed and not specmod.has_strategy(deployment):
        fail(f"deployment {g.namespace}/{app} is not managed by deliver (no {specmod.STRATEGY} annotation)")
    return deployment


def _emit(g: Globals, data: Any, human: str) -> None:
    if g.output in ("json", "yaml"):
        click.echo(output.dump(data, g.output))
    elif human:
        click.echo(human)


def _colour_phase(phase: str, color: bool) -> str:
    if not color:
        return phase
    return click.style(
        phase,
        fg={"green": "green", "red": "red", "yellow": "yellow", "cyan": "cyan"}.get(
            output.PHASE_STYLE.get(phase, ""), None
        ),
    )


def render_status(s: dict[str, Any], color: bool = False) -> str:
    lines = [
        f"{s['namespace']}/{s['name']}  strategy={s['strategy']}  phase={_colour_phase(s.get('phase', 'Idle'), color)}"
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
    return "\n".join(lines)


# ----------------------------------------------------------------------------- status / get


@main.command()
@click.argument("app")
@click.option("-w", "--watch", is_flag=True, help="Keep following the delivery (Ctrl-C to stop).")
@click.option("--timeout", default=None, help="With --watch: stop after this long (e.g. 10m); exit 3.")
@common
@click.pass_obj
def status(g: Globals, app: str, watch: bool, timeout: str | None) -> None:
    """Show the delivery of APP: phase, step, weight, verdicts and any invalid annotation."""
    deployment = _get(g, app)
    s = status_dict(deployment)
    if not watch:
        _emit(g, s, render_status(s, g.color))
        return
    limit = _duration("--timeout", timeout) if timeout else None
    _watch_status(g, app, deployment, limit)


def _watch_status(g: Globals, app: str, deployment: dict[str, Any], limit: float | None) -> None:
    machine = g.output in ("json", "yaml")
    live = not machine and output.is_tty(sys.stdout)
    view: Any
    if machine:
        view = None
    elif live:
        view = output.progress_view(True, g.color, stream=sys.stdout)
    else:
        view = output.EventPrinter(stream=sys.stdout)
    deadline = time.monotonic() + limit if limit else None
    last: str | None = None

    def show(dep: dict[str, Any]) -> None:
        nonlocal last
        s = status_dict(dep)
        if machine:
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
                    _api(exc)
                fresh = _get(g, app)
                rv = fresh["metadata"]["resourceVersion"]
                show(fresh)
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.close()


@main.command(name="get")
@click.option("-A", "--all-namespaces", is_flag=True, help="List deliveries in every namespace.")
@common
@click.pass_obj
def get_cmd(g: Globals, all_namespaces: bool) -> None:
    """List the Deployments deliver manages in a namespace, with their delivery phase."""
    try:
        items = g.kube().items(DEPLOYMENTS, None if all_namespaces else g.namespace)
    except KubeError as exc:
        _api(exc)
    statuses = [status_dict(d) for d in items if specmod.has_strategy(d)]
    statuses.sort(key=lambda s: (s["namespace"], s["name"]))
    if g.output in ("json", "yaml"):
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
            _colour_phase(phase, g.color),
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


# ----------------------------------------------------------------------------- operator requests

# verb -> phases in which the planners act on it
ALLOWED: dict[str, tuple[str, ...]] = {
    "promote": ("Progressing", "Paused"),
    "promote-full": ("Progressing", "Paused"),
    "abort": ("Progressing", "Paused", "Promoting"),
    "retry": ("RolledBack", "Aborted"),
    "pause": ("Progressing",),
    "resume": ("Paused",),
}


def check_request(deployment: dict[str, Any], verb: str) -> str | None:
    """Why ``verb`` cannot be sent to this Deployment now (None: it can). Pure; reads nothing."""
    meta = deployment["metadata"]
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if not specmod.has_strategy(deployment):
        return f"deployment {name} is not managed by deliver (no {specmod.STRATEGY} annotation)"
    problems = specmod.problems(deployment)
    if problems:
        listed = "; ".join(f"{e.key}: {e.problem}" for e in problems)
        return f"deployment {name} has invalid annotations, so deliver takes no action: {listed}"
    try:
        state = read_state(deployment)
    except StateError as exc:
        return str(exc)
    phase = state.phase.value
    allowed = ALLOWED[verb]
    shown = "promote --full" if verb == "promote-full" else verb
    if phase not in allowed:
        hint = ""
        if verb in ("promote", "promote-full", "abort", "pause") and state.phase.terminal:
            hint = " (no delivery in progress)"
        return f"{name} is {phase}{hint}; `{shown}` needs one of: {', '.join(allowed)}"
    if verb == "retry" and not state.failed_template:
        return f"{name} is {phase} but has no failed revision to retry"
    if verb == "resume":
        try:
            spec = specmod.parse(deployment)
        except SpecError:
            spec = None
        steps = spec.steps if spec is not None else ()
        if 0 <= state.step < len(steps) and steps[state.step].pause:
            return (
                f"{name} is waiting at a manual gate (step {state.step + 1}); "
                f"`deliver promote {meta.get('name', '')}` passes it"
            )
    verb_pending, rid = read_request(deployment)
    if rid and rid != state.handled_request and verb != "abort":
        return (
            f"a `{verb_pending}` request for {name} has not been taken by the controller yet; "
            "try again when it has (is the controller running?)"
        )
    return None


def _request(g: Globals, app: str, verb: str, wait: bool, timeout: str) -> None:
    kube = g.kube()
    for _ in range(5):
        deployment = _get(g, app)
        problem = check_request(deployment, verb)
        if problem:
            fail(problem)
        try:
            rid = send_request(kube, deployment, verb)
        except Conflict:
            continue
        except KubeError as exc:
            _api(exc)
        shown = "promote --full" if verb == "promote-full" else verb
        note(f"{shown} requested for {g.namespace}/{app} (request {rid})")
        if wait:
            _wait_handled(g, app, rid, _duration("--timeout", timeout))
        s = status_dict(_get(g, app)) if wait else {}
        _emit(
            g, {"namespace": g.namespace, "name": app, "request": verb, "id": rid, **({"status": s} if s else {})}, ""
        )
        return
    fail("the Deployment kept changing under us; try again", EXIT_API)


def _wait_handled(g: Globals, app: str, rid: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = _get(g, app)
        try:
            state = read_state(deployment)
        except StateError as exc:
            fail(str(exc))
        if state.handled_request == rid:
            note(f"taken by the controller: {state.phase.value}: {state.message}")
            return
        time.sleep(0.5)
    fail(f"the controller did not take request {rid} within {int(timeout)}s (is it running?)", EXIT_TIMEOUT)


def _request_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--timeout", default="1m", show_default=True, help="With --wait: how long to wait.")(f)
    f = click.option("--wait", is_flag=True, help="Wait until the controller has taken the request.")(f)
    return f


@main.command()
@click.argument("app")
@click.option("--full", is_flag=True, help="Skip the remaining steps: promote to 100% now.")
@_request_options
@common
@click.pass_obj
def promote(g: Globals, app: str, full: bool, wait: bool, timeout: str) -> None:
    """Move APP's delivery to its next step (or, with --full, straight to 100%); passes manual gates."""
    _request(g, app, "promote-full" if full else "promote", wait, timeout)


@main.command()
@click.argument("app")
@_request_options
@common
@click.pass_obj
def abort(g: Globals, app: str, wait: bool, timeout: str) -> None:
    """Stop APP's delivery at any step and put all traffic back on the stable version now."""
    _request(g, app, "abort", wait, timeout)


@main.command()
@click.argument("app")
@_request_options
@common
@click.pass_obj
def retry(g: Globals, app: str, wait: bool, timeout: str) -> None:
    """Start a rolled-back or aborted delivery of APP again."""
    _request(g, app, "retry", wait, timeout)


@main.command()
@click.argument("app")
@_request_options
@common
@click.pass_obj
def pause(g: Globals, app: str, wait: bool, timeout: str) -> None:
    """Hold APP's delivery at its current step until `deliver resume` (or promote/abort)."""
    _request(g, app, "pause", wait, timeout)


@main.command()
@click.argument("app")
@_request_options
@common
@click.pass_obj
def resume(g: Globals, app: str, wait: bool, timeout: str) -> None:
    """Continue a delivery of APP paused by `deliver pause` or by an inconclusive analysis."""
    _request(g, app, "resume", wait, timeout)


# ----------------------------------------------------------------------------- undo


def previous_revision(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]], to_revision: int | None = None
) -> tuple[dict[str, Any] | None, str]:
    """The ReplicaSet to go back to and why (None and a reason when there is none). Pure.

    Candidates are the ReplicaSets the Deployment controls, newest ``deployment.kubernetes.io/revision``
    first, skipping the template the Deployment declares now and a revision deliver rolled back.
    """
    meta = deployment["metadata"]
    uid = meta.get("uid")
    current = templates.revision(deployment["spec"]["template"])
    try:
        failed = read_state(deployment).failed_revision
    except StateError:
        failed = ""
    owned = []
    for rs in replicasets:
        refs = (rs.get("metadata") or {}).get("ownerReferences") or []
        if not any(r.get("controller") and r.get("uid") == uid for r in refs):
            continue
        try:
            number = int(((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)) or 0)
        except ValueError:
            number = 0
        owned.append((number, rs))
    owned.sort(key=lambda item: -item[0])
    if to_revision is not None:
        for number, rs in owned:
            if number == to_revision:
                rev = templates.revision(rs["spec"]["template"])
                if rev == current:
                    return None, f"revision {to_revision} is the template the Deployment declares already"
                if failed and rev == failed:
                    return None, (
                        f"revision {to_revision} (template {rev}) is the one deliver rolled back; "
                        f"`deliver retry {meta.get('name', '')}` delivers it again"
                    )
                return rs, f"revision {number}"
        known = ", ".join(str(n) for n, _ in owned) or "none"
        return None, f"revision {to_revision} not found (ReplicaSet revisions kept: {known})"
    for number, rs in owned:
        rev = templates.revision(rs["spec"]["template"])
        if rev == current or (failed and rev == failed):
            continue
        return rs, f"revision {number}"
    return None, "no previous revision left to go back to (revisionHistoryLimit may have pruned it)"


@main.command()
@click.argument("app")
@click.option(
    "--to-revision",
    type=int,
    default=None,
    help="Go back to this deployment.kubernetes.io/revision instead of the previous one.",
)
@common
@click.pass_obj
def undo(g: Globals, app: str, to_revision: int | None) -> None:
    """Go back to APP's previous stable revision.

    The previous revision's pod template (from the Deployment's older ReplicaSets) is written into
    the Deployment, which deliver then delivers like any other change, with its strategy and checks.
    """
    kube = g.kube()
    for _ in range(5):
        deployment = _get(g, app)
        try:
            state = read_state(deployment)
        except StateError as exc:
            fail(str(exc))
        if not state.phase.terminal:
            fail(
                f"{g.namespace}/{app} is {state.phase.value}: a delivery is in progress; "
                f"`deliver abort {app}` puts the stable version back"
            )
        problems = specmod.problems(deployment)
        if problems:
            fail(
                f"deployment {g.namespace}/{app} has invalid annotations, so deliver takes no action: "
                + "; ".join(f"{e.key}: {e.problem}" for e in problems)
            )
        try:
            rss = kube.items(REPLICASETS, g.namespace, selector_string(deployment["spec"]["selector"]))
        except KubeError as exc:
            _api(exc)
        rs, why = previous_revision(deployment, rss, to_revision)
        if rs is None:
            fail(f"{g.namespace}/{app}: {why}")
        template = templates.without_hash(rs["spec"]["template"])
        rev = templates.revision(template)
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        try:
            kube.patch(DEPLOYMENTS, g.namespace, app, patch, content_type=JSON_PATCH)
        except KubeError as exc:
            if exc.status in (409, 422):
                continue
            _api(exc)
        note(
            f"undo: {g.namespace}/{app} goes back to {why} (template {rev}, from ReplicaSet "
            f"{rs['metadata']['name']}); deliver delivers it as a change"
        )
        _emit(
            g,
            {"namespace": g.namespace, "name": app, "revision": rev, "replicaSet": rs["metadata"]["name"], "from": why},
            "",
        )
        return
    fail("the Deployment kept changing under us; try again", EXIT_API)


# ----------------------------------------------------------------------------- lint


def lint_documents(docs: list[Any], source: str) -> list[dict[str, Any]]:
    """Every annotated Deployment in ``docs`` with its problems (and warnings). Pure, offline."""
    found: list[dict[str, Any]] = []

    def visit(doc: Any, index: int) -> None:
        if not isinstance(doc, dict):
            return
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            for item in doc.get("items") or []:
                visit(item, index)
            return
        if doc.get("kind") != "Deployment":
            return
        meta = doc.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        ours = [k for k in annotations if str(k).startswith(specmod.PREFIX)]
        tpl_annotations = (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "annotations"
        ) or {}
        warnings = []
        if any(str(k).startswith(specmod.PREFIX) for k in tpl_annotations):
            warnings.append(
                "deliver.dev/* annotations on the pod template are ignored; put them on the Deployment's metadata"
            )
        if not specmod.has_strategy(doc):
            if ours:
                warnings.append(f"has {', '.join(sorted(ours))} but no {specmod.STRATEGY}: deliver ignores it")
            if warnings:
                found.append(
                    {
                        "file": source,
                        "document": index,
                        "kind": "Deployment",
                        "name": meta.get("name", ""),
                        "namespace": meta.get("namespace", ""),
                        "valid": True,
                        "problems": [],
                        "warnings": warnings,
                    }
                )
            return
        # annotation values must be strings in a manifest; kubectl would refuse numbers and booleans
        problems = [
            {"key": str(k), "problem": f"value must be a string (quote it): {v!r}"}
            for k, v in annotations.items()
            if str(k).startswith(specmod.PREFIX) and not isinstance(v, str)
        ]
        stringified = dict(
            doc,
            metadata=dict(
                meta, annotations={str(k): str(v) if not isinstance(v, str) else v for k, v in annotations.items()}
            ),
        )
        try:
            errors = specmod.problems(stringified)
        except Exception as exc:  # a malformed manifest is a lint finding, not a crash
            errors = [SpecError(specmod.STRATEGY, f"cannot validate: {exc}")]
        for e in errors:
            if all(p["key"] != e.key for p in problems):
                problems.append({"key": e.key, "problem": e.problem})
        found.append(
            {
                "file": source,
                "document": index,
                "kind": "Deployment",
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "valid": not problems,
                "problems": problems,
                "warnings": warnings,
            }
        )

    for i, doc in enumerate(docs):
        visit(doc, i)
    return found


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@common
@click.pass_obj
def lint(g: Globals, files: tuple[str, ...]) -> None:
    """Validate the deliver.dev/* annotations of the Deployments in FILES (YAML, multi-document; - is stdin).

    Offline: no cluster is contacted. Exit 1 if any annotation is invalid (each one is listed).
    """
    import yaml

    results: list[dict[str, Any]] = []
    unreadable = False
    for path in files:
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as exc:
            fail(f"{path}: {exc.strerror or exc}", EXIT_USAGE)
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            unreadable = True
            results.append(
                {
                    "file": path,
                    "document": None,
                    "kind": "",
                    "name": "",
                    "namespace": "",
                    "valid": False,
                    "problems": [{"key": "", "problem": f"not valid YAML: {exc}"}],
                    "warnings": [],
                }
            )
            continue
        results.extend(lint_documents(docs, path))
    bad = [r for r in results if not r["valid"]]
    if g.output in ("json", "yaml"):
        click.echo(output.dump({"results": results, "valid": not bad}, g.output))
    else:
        for r in results:
            where = f"{r['file']}: Deployment {r['name']}" if r["name"] else r["file"]
            for p in r["problems"]:
                click.echo(f"{where}: {p['key'] + ': ' if p['key'] else ''}{p['problem']}")
            for w in r["warnings"]:
                note(f"{where}: warning: {w}")
        checked = sum(1 for r in results if r["kind"] == "Deployment")
        note(f"{checked} annotated Deployment(s) checked, {len(bad)} invalid")
    if bad or unreadable:
        sys.exit(EXIT_FAILED)


# ----------------------------------------------------------------------------- gate


def _duration(flag: str, value: str) -> float:
    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return specmod.parse_duration(flag, text, minimum=0, maximum=30 * 86400)
    except SpecError as exc:
        raise click.BadParameter(exc.problem, param_hint=flag) from None


@main.command()
@click.argument("app")
@click.option("--timeout", default="15m", show_default=True, help="How long to wait (e.g. 90s, 15m, 1h).")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write a JUnit XML report of the steps and verdicts to this file.",
)
@common
@click.pass_obj
def gate(g: Globals, app: str, timeout: str, junit_path: str | None) -> None:
    """Wait for the delivery of APP's current template; the exit code says how it ended.

    \b
    0  promoted (or nothing to deliver: the template is the stable version)
    1  rolled back, aborted, refused (invalid annotations, not managed) or superseded
    2  usage error
    3  timed out (the delivery may still be going on)
    4  API or authentication error
    """
    from . import gate as gatemod
    from . import junit

    seconds = _duration("--timeout", timeout)
    kube = g.kube()
    view = output.progress_view(output.is_tty(sys.stderr), output.color_wanted(g.no_color), stream=sys.stderr)
    try:
        result = gatemod.wait(kube, g.namespace, app, seconds, on_status=view.update)
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
    if g.output in ("json", "yaml"):
        click.echo(output.dump(data, g.output))
    note(
        f"deliver gate: {result.namespace}/{result.name} revision {result.revision or '?'}: "
        f"{result.outcome} (exit {result.code}): {result.reason}"
    )
    sys.exit(result.code)


# ----------------------------------------------------------------------------- run (the controller)


@main.command()
@click.option("--prometheus-url", envvar="DELIVER_PROMETHEUS_URL", help="Prometheus for metric analysis.")
@click.option("--all-namespaces/--namespaced", default=False, help="Watch every namespace (default: only -n).")
@click.option(
    "--leader-elect/--no-leader-elect",
    default=False,
    show_default=True,
    help="Elect a leader through a Lease so several replicas are safe; only the leader acts.",
)
@click.option("--lease-name", default="deliver-controller", show_default=True, help="Name of the Lease.")
@click.option("--lease-namespace", default=None, help="Namespace of the Lease (default: $POD_NAMESPACE, else -n).")
@click.option("--lease-duration", default="15s", show_default=True, help="How long a Lease is valid.")
@click.option(
    "--renew-deadline",
    default="10s",
    show_default=True,
    help="The leader stops acting when it could not renew for this long.",
)
@click.option("--retry-period", default="2s", show_default=True, help="Time between Lease attempts.")
@click.option(
    "--metrics-addr",
    default=":8080",
    show_default=True,
    help="HOST:PORT for /metrics, /healthz and /readyz ('0' disables).",
)
@click.option(
    "--shutdown-grace",
    default="30s",
    show_default=True,
    help="On SIGTERM, how long to wait for the current write before releasing the Lease.",
)
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@common
@click.pass_obj
def run(
    g: Globals,
    prometheus_url: str | None,
    all_namespaces: bool,
    leader_elect: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: str,
    renew_deadline: str,
    retry_period: str,
    metrics_addr: str,
    shutdown_grace: str,
    log_level: str,
) -> None:
    """Run the controller (JSON logs on stderr)."""
    from .controller import Controller
    from .leader import LeaderElector
    from .metrics import Metrics, Server, parse_addr
    from .reconcile import Reconciler

    durations = {
        name: _duration(f"--{name}", value)
        for name, value in (
            ("lease-duration", lease_duration),
            ("renew-deadline", renew_deadline),
            ("retry-period", retry_period),
            ("shutdown-grace", shutdown_grace),
        )
    }
    if leader_elect and not (durations["lease-duration"] > durations["renew-deadline"] > durations["retry-period"] > 0):
        raise click.UsageError("need --lease-duration > --renew-deadline > --retry-period > 0")
    try:
        addr = parse_addr(metrics_addr)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics-addr") from None
    logs.setup(json_lines=True, level=log_level)
    log = logging.getLogger("deliver")
    kube = g.kube()
    analyser = None
    if prometheus_url:
        from .verdicts import make_analyser

        analyser = make_analyser(kube, prometheus_url)

    elector: LeaderElector | None = None
    if leader_elect:
        try:
            elector = LeaderElector(
                kube,
                lease_namespace or os.environ.get("POD_NAMESPACE") or g.namespace,
                lease_name,
                lease_duration=durations["lease-duration"],
                renew_deadline=durations["renew-deadline"],
                retry_period=durations["retry-period"],
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    is_leader: Callable[[], bool] = elector.is_leader if elector else (lambda: True)
    holder: dict[str, Any] = {}
    metrics = Metrics(
        is_leader=is_leader,
        watch_restarts=lambda: holder["c"].watch_restarts if "c" in holder else 0,
        synced=lambda: bool(holder.get("c") and holder["c"].synced),
    )
    if elector is not None:
        elector.on_change = lambda leading: None if leading else metrics.forget_all()
    controller = Controller(
        kube,
        Reconciler(kube, analyser),
        None if all_namespaces else g.namespace,
        is_leader=is_leader,
        on_outcome=metrics.observe,
    )
    holder["c"] = controller

    server = None
    if addr is not None:
        try:
            server = Server(metrics, *addr).start()
        except OSError as exc:
            fail(f"cannot serve metrics on {metrics_addr}: {exc}")
        host, port = server.address
        log.info("serving /metrics, /healthz, /readyz", extra={"address": f"{host}:{port}"})

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal received; finishing the current reconcile", extra={"signal": signum})
        if elector is not None:
            elector.step_down()
        controller.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if elector is not None:
        elector.start()
    controller.run()
    # The main loop finished its last reconcile; make sure no write is still running, then let go.
    deadline = time.monotonic() + durations["shutdown-grace"]
    while controller.busy.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    if elector is not None:
        elector.stop()
        elector.release()
    if server is not None:
        server.stop()
    log.info("controller exited")
    logging.shutdown()
    os._exit(0)  # informer threads may sit in a blocking read; do not wait for them


if __name__ == "__main__":
    main()
