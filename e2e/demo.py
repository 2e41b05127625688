"""``make demo``: two live canaries through a real Envoy, one promoted and one rolled back.

Starts (all on 127.0.0.1, all stopped again at the end): the local control plane (kwok nodes),
Prometheus, two app processes standing in for the ``shop-stable`` / ``shop-canary`` Services'
pods, Envoy programmed from the ``shop`` HTTPRoute by the stand-in gateway (``e2e.dataplane``),
a load generator (200 requests/s), and the deliver controller itself (``python -m delivery.cli
run --prometheus-url ...``). Then:

1. a good version (v2) is delivered 20 -> 50 -> 100 % and promoted on real Envoy metrics;
2. a bad version (v3, whose process fails 30 % of requests) is delivered behind a longer step
   (``--bad-interval``, 2 minutes) and rolled back automatically by the error-rate analysis within
   seconds of receiving traffic: the controller looks at the running window every two scrape
   intervals (``--scrape-interval`` = Prometheus's 1 s), not only at the step's end (issue 17). The
   summary says how long v3 had traffic, the 5xx it served, and what a step-end judgment would
   have let it serve.

The live view shows each delivery's phase, step, the route's weights, the request and error
rates per version (from the clients' side) and the verdicts; a rich live table on a terminal,
plain lines otherwise (``--plain`` forces them). It exits 0 only if v2 was promoted and v3 rolled
back, and prints a summary with the timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

APP = "shop"
LOAD_RATE = 200.0
BAD_FAIL_RATE = 0.3
MIN_PERIOD = 100  # shorter traffic periods (e.g. the ~0.3 s at 100 % during promotion) are left out of the summary:
# their edges are only as exact as the 5-30 ms Envoy takes to confirm a route change

DEMO_ANNOTATIONS: dict[str, str] = {
    "deliver.dev/strategy": "canary",
    "deliver.dev/steps": "20,50,100",
    "deliver.dev/interval": "10s",
    "deliver.dev/router": f"gateway-api/{APP}",
    "deliver.dev/analysis": "error-rate",
    "deliver.dev/analysis-metrics": "envoy",
    # ~40 canary requests/s at 20 %: 200 per arm is reached within a step; an error rate that is
    # surely below 2 % passes, so a healthy canary is not held for lack of errors to compare.
    "deliver.dev/analysis.error-rate": "min-samples=200,negligible-rate=0.02",
    "deliver.dev/on-inconclusive": "extend",
    "deliver.dev/max-extensions": "5",
}


def demo_deployment(app: str = APP, interval: str = "10s", image: str | None = None) -> client.V1Deployment:
    from e2e.helpers import make_deployment

    annotations = dict(
        DEMO_ANNOTATIONS, **{"deliver.dev/interval": interval, "deliver.dev/router": f"gateway-api/{app}"}
    )
    return make_deployment(app, replicas=3, image=image or f"example.com/{app}:v1", annotations=annotations)


def demo_route(app: str = APP) -> dict[str, Any]:
    """The user's HTTPRoute: deliver's two backends on ``/``, plus an ``/admin`` rule of the user's."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {
            "parentRefs": [{"name": "demo-gateway"}],
            "hostnames": [f"{app}.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": f"{app}-admin", "port": 8080}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": f"{app}-stable", "port": 80, "weight": 100},
                        {"name": f"{app}-canary", "port": 80, "weight": 0},
                    ],
                },
            ],
        },
    }


# ---------------------------------------------------------------------- the live view
@dataclass
class Period:
    """Traffic seen while Envoy held one canary weight."""

    weight: int
    started: float
    counts: Any = None  # loadgen Counts over the period

    def line(self, stable: str, canary: str) -> str:
        c = self.counts
        if c is None or not sum(c.by_version.values()):
            return f"{self.weight:>3}%: no traffic"
        return (
            f"{self.weight:>3}% -> observed {c.share('canary') * 100:5.1f}% of "
            f"{sum(c.by_version.values())} requests on {canary} "
            f"(errors: {stable} {c.error_rate('stable') * 100:.1f}%, {canary} {c.error_rate('canary') * 100:.1f}%)"
        )


@dataclass
class Delivery:
    label: str
    image: str
    expect: str  # Succeeded | RolledBack
    started: float = 0.0
    finished: float = 0.0
    phase: str = ""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    periods: list[Period] = field(default_factory=list)
    message: str = ""
    rollback_ms: tuple[float, float] | None = None  # failed verdict -> route event, -> Envoy
    interval: float = 0.0  # seconds of its analysed step
    traffic_s: float | None = None  # seconds Envoy sent it traffic (first weight > 0 -> weight 0 again)
    canary_requests: int = 0  # requests (and 5xx) the canary answered meanwhile
    canary_5xx: int = 0

    @property
    def ok(self) -> bool:
        return self.phase == self.expect


class View:
    """Either a rich live table (terminal) or plain lines (pipes, CI)."""

    def __init__(self, plain: bool, t0: float) -> None:
        from rich.console import Console

        self.console = Console()
        self.plain = plain or not self.console.is_terminal
        self.t0 = t0
        self.live: Any = None
        self.log_lines: list[str] = []

    def __enter__(self) -> View:
        if not self.plain:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.t0:6.1f}s]"

    def event(self, text: str) -> None:
        line = f"{self.stamp()} {text}"
        self.log_lines.append(line)
        if self.plain:
            print(line, flush=True)

    def status(
        self,
        d: Delivery,
        state: dict[str, Any],
        route: tuple[int, int] | None,
        envoy: dict[str, int],
        rates: dict[str, tuple[float, float]],
        stable: str,
        canary: str,
    ) -> None:
        step = int(state.get("step", 0)) + 1
        r = f"{route[0]}/{route[1]}" if route else "?"
        e = f"{envoy.get(stable, 0)}/{envoy.get(canary, 0)}"
        traffic = "  ".join(
            f"{name} {rps:5.0f} req/s {err * 100:4.1f}% 5xx"
            for name, (rps, err) in (
                (stable, rates.get("stable", (0.0, 0.0))),
                (canary, rates.get("canary", (0.0, 0.0))),
            )
        )
        if self.plain:
            print(
                f"{self.stamp()} {d.label:<3} {state.get('phase', '?'):<11} step {step}/3  "
                f"route {r:<6} envoy {e:<6} {traffic}",
                flush=True,
            )
            return
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"deliver demo — {d.label} ({d.image})", expand=False)
        for col in (
            "phase",
            "step",
            "route stable/canary",
            "envoy stable/canary",
            f"{stable} req/s · 5xx",
            f"{canary} req/s · 5xx",
        ):
            table.add_column(col)
        s_rps, s_err = rates.get("stable", (0.0, 0.0))
        c_rps, c_err = rates.get("canary", (0.0, 0.0))
        phase = str(state.get("phase", "?"))
        style = {"Succeeded": "green", "RolledBack": "red", "Progressing": "yellow"}.get(phase, "")
        table.add_row(
            Text(phase, style=style),
            f"{step}/3",
            r,
            e,
            f"{s_rps:.0f} · {s_err * 100:.1f}%",
            Text(f"{c_rps:.0f} · {c_err * 100:.1f}%", style="red" if c_err > 0.05 else ""),
        )
        verdicts = Table(show_header=True, expand=False, title="verdicts")
        verdicts.add_column("step")
        verdicts.add_column("outcome")
        verdicts.add_column("summary", overflow="fold", max_width=90)
        for v in d.verdicts[-6:]:
            verdicts.add_row(
                str(v["step"] + 1),
                Text(v["outcome"], style={"pass": "green", "fail": "red"}.get(v["outcome"], "yellow")),
                v["summary"],
            )
        self.live.update(Group(table, verdicts, Text("\n".join(self.log_lines[-8:]))))


# ---------------------------------------------------------------------- running it
def _state(kube: Any, ns: str) -> dict[str, Any]:
    d = kube.apps.read_namespaced_deployment(APP, ns)
    return json.loads((d.metadata.annotations or {}).get("deliver.dev/state") or "{}")


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_delivery(d: Delivery, ctx: dict[str, Any], view: View, timeout: float = 240.0) -> Delivery:
    from e2e.helpers import set_image

    kube, ns, stack, lg, router = ctx["kube"], ctx["ns"], ctx["stack"], ctx["lg"], ctx["router"]
    stable, canary = stack.stable_service, stack.canary_service
    plane = stack.plane
    before = _state(kube, ns)
    seen_verdicts = len(before.get("verdicts") or [])
    d.started = time.monotonic()
    start_wall = time.time()
    view.event(f"{d.label}: delivering {d.image} (expect {d.expect})")
    set_image(kube.apps, ns, APP, d.image)
    cuts: list[tuple[Any, Any]] = []  # (Applied, loadgen snapshot at that moment), from the watch thread
    plane.listeners.append(lambda applied: cuts.append((applied, lg.snapshot())))
    current = Period(plane.current.get(canary, 0), time.monotonic())
    period_start = lg.snapshot()
    last_counts, last_t = lg.snapshot(), time.monotonic()
    rates: dict[str, tuple[float, float]] = {}
    last_phase, last_plain = "", 0.0
    handled = 0
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = before
    while time.monotonic() < deadline:
        state = _state(kube, ns)
        phase = str(state.get("phase", ""))
        started_here = float(state.get("started", 0)) >= start_wall - 1
        # traffic rates over the last ~second
        now = time.monotonic()
        if now - last_t >= 1.0:
            snap = lg.snapshot()
            delta = snap.minus(last_counts)
            rates = {
                v: (delta.by_version.get(v, 0) / (now - last_t), delta.error_rate(v)) for v in ("stable", "canary")
            }
            last_counts, last_t = snap, now
        verdicts = list(state.get("verdicts") or [])
        for v in verdicts[seen_verdicts:]:
            d.verdicts.append(v)
            view.event(f"{d.label}: verdict step {v['step'] + 1}: {v['outcome'].upper()} — {v['summary']}")
        seen_verdicts = len(verdicts)
        # each weight Envoy took closes a traffic period at the exact moment it took it
        new_cuts = cuts[handled:]
        handled += len(new_cuts)
        for applied, snap in new_cuts:
            current.counts = snap.minus(period_start)
            d.periods.append(current)
            current, period_start = Period(applied.weights.get(canary, 0), applied.at), snap
            view.event(
                f"{d.label}: Envoy now routes {applied.weights.get(stable, 0)}/{applied.weights.get(canary, 0)} "
                f"(route change seen -> in Envoy: {applied.took * 1000:.0f} ms)"
            )
        if phase != last_phase and started_here:
            view.event(f"{d.label}: phase {phase}: {state.get('message', '')}")
            last_phase = phase
        try:
            route = router.verify_weight()
            route_pair = (100 - route, route) if route is not None else None
        except Exception:  # the view never stops the demo
            route_pair = None
        if started_here and rates and (not view.plain or now - last_plain >= 2.0):
            view.status(d, state, route_pair, plane.current, rates, stable, canary)
            last_plain = now
        if (
            started_here
            and phase in ("Succeeded", "RolledBack", "Aborted", "Paused")
            and plane.current.get(canary, 0) == 0
        ):
            break
        time.sleep(0.25)
    plane.listeners.clear()
    current.counts = lg.snapshot().minus(period_start)
    d.periods.append(current)
    for p in d.periods:  # every period the canary had a share, however short (before the filter below)
        if p.weight > 0 and p.counts is not None:
            d.canary_requests += p.counts.by_version.get("canary", 0)
            d.canary_5xx += p.counts.errors_by_version.get("canary", 0)
    d.periods = [p for p in d.periods if p.counts is not None and p.counts.total >= MIN_PERIOD]
    d.phase = str(state.get("phase", ""))
    d.message = str(state.get("message", ""))
    d.finished = time.monotonic()
    failed = [v for v in d.verdicts if v["outcome"] == "fail"]
    zero = [h for h in plane.history if h.weights.get(canary) == 0 and failed and h.seen_at >= failed[0]["at"]]
    if failed and zero:
        d.rollback_ms = ((zero[0].seen_at - failed[0]["at"]) * 1000, (zero[0].at - failed[0]["at"]) * 1000)
    routed = [h for h in plane.history if h.at >= start_wall - 1]
    first = next((h for h in routed if h.weights.get(canary, 0) > 0), None)
    if first is not None:
        off = next((h for h in routed if h.at > first.at and h.weights.get(canary, 0) == 0), None)
        d.traffic_s = (off.at - first.at) if off is not None else None
    view.event(
        f"{d.label}: finished {d.phase} in {d.finished - d.started:.1f}s "
        f"({'as expected' if d.ok else 'NOT as expected: wanted ' + d.expect})"
    )
    return d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    parser.add_argument("--interval", default="10s", help="analysis interval per step (default 10s)")
    parser.add_argument(
        "--bad-interval", default="2m", help="the interval of the bad version's steps (default 2m): it fails fast"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="default: <repo>/run/demo")
    args = parser.parse_args(argv)

    from contextlib import ExitStack

    from delivery.kube.client import KubeClient as JsonKube
    from delivery.routing.base import RouterContext, router_for
    from delivery.routing.gateway import HTTPROUTES
    from e2e import crds
    from e2e.cluster import REPO_ROOT, Cluster
    from e2e.controller import ControllerProcess
    from e2e.dataplane import LocalStack
    from e2e.helpers import Kube, deployment_available, wait_for
    from e2e.loadgen import LoadGen
    from e2e.services import Prometheus

    t0 = time.monotonic()
    run_dir = (args.run_dir or REPO_ROOT / "run" / "demo").resolve()
    ns = "deliver-demo"
    good = Delivery("v2", f"example.com/{APP}:v2", "Succeeded")
    bad = Delivery("v3", f"example.com/{APP}:v3", "RolledBack")
    from delivery.spec import parse_duration

    good.interval = parse_duration("--interval", args.interval)
    bad.interval = parse_duration("--bad-interval", args.bad_interval)
    timings: dict[str, float] = {}
    with ExitStack() as stack_:
        cluster = Cluster(run_dir)
        _log(f"starting the local control plane in {run_dir}")
        cluster.up()
        stack_.callback(cluster.down)
        timings["control plane"] = time.monotonic() - t0
        api = cluster.api_client()
        stack_.callback(api.close)
        kube = Kube(api_client=api, kubeconfig=cluster.kubeconfig)
        crds.install(api, ["httproute"])
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        wait_for(lambda: kube.core.read_namespaced_service_account("default", ns), 30, "default ServiceAccount")
        _log("starting Prometheus")
        prometheus = Prometheus(cluster.run_dir, "demo-prometheus").start()
        stack_.callback(prometheus.stop)
        jk = JsonKube.connect(str(cluster.kubeconfig))
        original_route = jk.create(HTTPROUTES, ns, demo_route(APP))
        _log("starting the stable/canary app processes, Envoy and the HTTPRoute data plane")
        work = Path(tempfile.mkdtemp(prefix="deliver-demo-", dir=cluster.run_dir))
        local = LocalStack(jk, ns, APP, work, f"{APP}-stable", f"{APP}-canary", prometheus).start()
        stack_.callback(local.stop)
        # deliver's hold policy (docs/hold-modes.md): the API server pauses each template change, so
        # at rest the Deployment stays unpaused and reads Available/Current to every tool
        from e2e.helpers import install_hold_policy

        install_hold_policy(jk)
        _log("installed deliver's MutatingAdmissionPolicy (`deliver hold-policy`): hold mode policy")
        _log("starting the deliver controller")
        ctl = ControllerProcess(
            cluster.kubeconfig,
            ns,
            work,
            prometheus_url=prometheus.url,
            extra_args=["--metrics-addr", "0", "--scrape-interval", prometheus.scrape_interval],
        ).start()
        stack_.callback(ctl.stop)
        kube.apps.create_namespaced_deployment(ns, demo_deployment(APP, interval=args.interval))
        wait_for(lambda: deployment_available(kube.apps, ns, APP), 60, f"{APP} v1 Available")
        wait_for(lambda: _state(kube, ns).get("stableHash"), 30, "deliver to record the stable version")
        timings["setup"] = time.monotonic() - t0
        _log(at_rest_line(kube, ns))
        _log(
            f"ready after {timings['setup']:.1f}s: Envoy {local.url} -> {local.stable.address} (stable), "
            f"{local.canary.address} (canary); load {LOAD_RATE:.0f} req/s"
        )
        router = router_for("gateway-api", RouterContext(jk, ns, APP, APP, local.stable_service, local.canary_service))
        lg = LoadGen(local.url)
        ctx = {"kube": kube, "ns": ns, "stack": local, "lg": lg, "router": router}
        try:
            with lg.background(rate=LOAD_RATE, max_seconds=900), View(args.plain, t0) as view:
                time.sleep(2)  # some baseline traffic in Prometheus before the first canary
                run_delivery(good, ctx, view)
                local.canary.control(fail_rate=BAD_FAIL_RATE)
                view.event(f"v3's pods (the canary process) now fail {BAD_FAIL_RATE:.0%} of requests")
                kube.apps.patch_namespaced_deployment(
                    APP, ns, {"metadata": {"annotations": {"deliver.dev/interval": args.bad_interval}}}
                )
                view.event(f"v3's steps are held {args.bad_interval} (deliver.dev/interval); watch it fail fast")
                run_delivery(bad, ctx, view)
                local.canary.control(fail_rate=0.0)
        except Exception as exc:  # report, clean up, exit non-zero
            print(f"demo failed: {exc}", file=sys.stderr)
            print(ctl.log()[-3000:], file=sys.stderr)
        _log(at_rest_line(kube, ns))
        route_after = jk.get(HTTPROUTES, ns, APP)
        admin_rule_untouched = route_untouched(original_route, route_after)
        if not admin_rule_untouched:
            print("the user's HTTPRoute changed beyond deliver's two weights", file=sys.stderr)
        total_requests = lg.snapshot().total
        _log("stopping everything the demo started")
    took = time.monotonic() - t0
    ok = good.ok and bad.ok and admin_rule_untouched
    print(
        summary(
            good,
            bad,
            took,
            timings,
            total_requests,
            local.stable_service,
            local.canary_service,
            ok,
            admin_rule_untouched,
        )
    )
    return 0 if ok else 1


def at_rest_line(kube: Any, ns: str) -> str:
    """What kubectl get / kstatus read of the Deployment now: paused or not, its conditions."""
    d = kube.apps.read_namespaced_deployment(APP, ns)
    conditions = {c.type: f"{c.status}/{c.reason}" for c in (d.status.conditions or [])}
    image = d.spec.template.spec.containers[0].image
    return (
        f"{APP}: template {image}, paused={bool(d.spec.paused)}, "
        f"READY {d.status.ready_replicas or 0}/{d.spec.replicas}, "
        f"UP-TO-DATE {d.status.updated_replicas or 0}, Available {conditions.get('Available', '-')}, "
        f"Progressing {conditions.get('Progressing', '-')}"
    )


def route_untouched(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Is ``after`` the same route as ``before`` except for the weights of the stable/canary refs?"""

    def strip(route: dict[str, Any]) -> dict[str, Any]:
        spec = json.loads(json.dumps(route["spec"]))
        for rule in spec.get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("name") in (f"{APP}-stable", f"{APP}-canary"):
                    ref.pop("weight", None)
        return {"spec": spec, "labels": route["metadata"].get("labels")}

    return strip(before) == strip(after)


def summary(
    good: Delivery,
    bad: Delivery,
    took: float,
    timings: dict[str, float],
    total: int,
    stable: str,
    canary: str,
    ok: bool,
    route_ok: bool = True,
) -> str:
    lines = ["", "=" * 78, "deliver demo summary", "=" * 78]
    for d in (good, bad):
        mark = "OK  " if d.ok else "FAIL"
        lines.append(
            f"{mark} {d.label} {d.image}: {d.phase or 'unfinished'} (expected {d.expect}) "
            f"in {d.finished - d.started:.1f}s"
        )
        for p in d.periods:
            lines.append(f"       weight {p.line(stable, canary)}")
        for v in d.verdicts:
            lines.append(f"       verdict step {v['step'] + 1}: {v['outcome']}: {v['summary']}")
        if d.traffic_s is not None and d.expect == "RolledBack":
            rate = d.canary_requests / d.traffic_s if d.traffic_s > 0 else 0.0
            lines.append(
                f"       fail fast: traffic for {d.traffic_s:.1f}s of its {d.interval:g}s step; the canary answered "
                f"{d.canary_requests} requests, {d.canary_5xx} of them 5xx (judged only at the step's end: "
                f"about {rate * d.interval * BAD_FAIL_RATE:,.0f} 5xx)"
            )
        if d.rollback_ms:
            lines.append(
                f"       failed verdict -> weight-0 patch seen {d.rollback_ms[0]:.0f} ms, "
                f"-> Envoy routing 100/0 {d.rollback_ms[1]:.0f} ms"
            )
    lines.append(
        f"HTTPRoute {APP}: "
        + (
            "only deliver's two weights changed; the /admin rule and every other field are as written"
            if route_ok
            else "CHANGED beyond the two weights"
        )
    )
    lines.append(
        f"requests sent through Envoy: {total}; setup {timings.get('setup', 0):.1f}s "
        f"(control plane {timings.get('control plane', 0):.1f}s); total {took:.1f}s"
    )
    lines.append("RESULT: " + ("both canaries behaved as expected" if ok else "a canary did NOT behave as expected"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
