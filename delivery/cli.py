"""The ``deliver`` command line: human lines on a terminal, machine output on stdout, exit codes CI can trust.

Exit codes: 0 ok, 1 the operation is not possible (not annotated, wrong state) or the delivery
failed, 2 usage error, 3 timeout, 4 API or authentication error.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from . import logs, spec as specmod
from .errors import DeliverError, KubeError, NotFound, StateError
from .kube import DEPLOYMENTS, Kube
from .state import read_state, send_request

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_API = 0, 1, 2, 3, 4


@dataclass
class Globals:
    kubeconfig: str | None
    context: str | None
    namespace: str

    def kube(self) -> Kube:
        try:
            return Kube.connect(self.kubeconfig, self.context)
        except DeliverError as exc:
            fail(str(exc), EXIT_API)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"deliver: {message}", err=True)
    sys.exit(code)


def _default_namespace(kubeconfig: str | None, context: str | None) -> str:
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # noqa: BLE001 - no kubeconfig: the default namespace
        return "default"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file.")
@click.option("--context", help="Kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace (default: the context's, else 'default').")
@click.pass_context
def main(ctx: click.Context, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
    """deliver: progressive delivery for plain Kubernetes Deployments."""
    if kubeconfig and ":" in kubeconfig:
        kubeconfig = kubeconfig.split(":")[0]
    ctx.obj = Globals(kubeconfig, context, namespace or _default_namespace(kubeconfig, context))


def _get(g: Globals, kube: Kube, app: str) -> dict[str, Any]:
    try:
        deployment = kube.get(DEPLOYMENTS, g.namespace, app)
    except NotFound:
        fail(f"deployment {g.namespace}/{app} not found")
    except KubeError as exc:
        fail(str(exc), EXIT_API)
    if not specmod.has_strategy(deployment):
        fail(f"deployment {g.namespace}/{app} is not managed by deliver (no {specmod.STRATEGY} annotation)")
    return deployment


def status_dict(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    problems = [f"{e.key}: {e.problem}" for e in specmod.problems(deployment)]
    try:
        state = read_state(deployment).to_dict()
    except StateError as exc:
        state = {"phase": "Unknown", "message": str(exc)}
    state.pop("failedTemplate", None)
    status = deployment.get("status") or {}
    return {
        "namespace": meta["namespace"], "name": meta["name"],
        "strategy": (meta.get("annotations") or {}).get(specmod.STRATEGY, ""),
        "valid": not problems, "problems": problems,
        "replicas": (deployment.get("spec") or {}).get("replicas", 1),
        "ready": status.get("readyReplicas", 0), "paused": bool(deployment["spec"].get("paused")),
        **state,
    }


def render_status(s: dict[str, Any]) -> str:
    lines = [f"{s['namespace']}/{s['name']}  strategy={s['strategy']}  phase={s.get('phase', 'Idle')}"
             f"  step={s.get('step', 0) + 1}  weight={s.get('weight', 0)}%  ready={s['ready']}/{s['replicas']}"]
    for problem in s["problems"]:
        lines.append(f"  invalid: {problem}")
    if s.get("message"):
        lines.append(f"  {s['message']}")
    if s.get("revision"):
        lines.append(f"  revision {s['revision']} (stable {s.get('stableRevision', '')})")
    for v in s.get("verdicts", [])[-5:]:
        lines.append(f"  step {v['step'] + 1}: {v['outcome']}: {v['summary']}")
    return "\n".join(lines)


@main.command()
@click.argument("app")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def status(g: Globals, app: str, output: str) -> None:
    """Show the delivery of APP: phase, step, weight, verdicts and any invalid annotation."""
    s = status_dict(_get(g, g.kube(), app))
    click.echo(json.dumps(s, indent=2) if output == "json" else render_status(s))


def _request(g: Globals, app: str, verb: str, allowed: tuple[str, ...]) -> None:
    kube = g.kube()
    for _ in range(5):
        deployment = _get(g, kube, app)
        phase = read_state(deployment).phase.value
        if phase not in allowed:
            fail(f"{g.namespace}/{app} is {phase}; {verb} needs one of: {', '.join(allowed)}")
        try:
            rid = send_request(kube, deployment, verb)
        except KubeError as exc:
            if exc.status == 409:
                continue
            fail(str(exc), EXIT_API)
        click.echo(f"{verb} requested for {g.namespace}/{app} (request {rid})", err=True)
        return
    fail("the deployment kept changing; try again", EXIT_API)


@main.command()
@click.argument("app")
@click.option("--full", is_flag=True, help="Skip the remaining steps: promote to 100% now.")
@click.pass_obj
def promote(g: Globals, app: str, full: bool) -> None:
    """Move APP's delivery to its next step (or, with --full, straight to 100%)."""
    _request(g, app, "promote-full" if full else "promote", ("Progressing", "Paused"))


@main.command()
@click.argument("app")
@click.pass_obj
def abort(g: Globals, app: str) -> None:
    """Stop APP's delivery and put all traffic back on the stable version now."""
    _request(g, app, "abort", ("Progressing", "Paused", "Promoting"))


@main.command()
@click.argument("app")
@click.pass_obj
def retry(g: Globals, app: str) -> None:
    """Start a rolled-back or aborted delivery of APP again."""
    _request(g, app, "retry", ("RolledBack", "Aborted"))


@main.command()
@click.option("--prometheus-url", envvar="DELIVER_PROMETHEUS_URL", help="Prometheus for metric analysis.")
@click.option("--all-namespaces/--namespaced", default=False, help="Watch every namespace (default: -n only).")
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.pass_obj
def run(g: Globals, prometheus_url: str | None, all_namespaces: bool, log_level: str) -> None:
    """Run the controller (JSON logs on stderr)."""
    from .controller import Controller
    from .reconcile import Reconciler

    logs.setup(json_lines=True, level=log_level)
    kube = g.kube()
    analyser = None
    if prometheus_url:
        from .verdicts import make_analyser

        analyser = make_analyser(kube, prometheus_url)
    controller = Controller(kube, Reconciler(kube, analyser), None if all_namespaces else g.namespace)

    def stop(signum: int, _frame: Any) -> None:
        logging.getLogger("deliver").info("signal received; finishing the current reconcile",
                                          extra={"signal": signum})
        controller.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    controller.run()


if __name__ == "__main__":
    main()
