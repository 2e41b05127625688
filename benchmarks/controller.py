"""Benchmark: what the controller costs and how fast it acts, side by side with Argo Rollouts.

Issue 13. One local control plane (the e2e one: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from the Kubernetes module, kwok nodes) runs both controllers as local
processes, each with its own client certificate so the API server's audit log tells their requests
apart:

  deliver         ``python -m delivery.cli run --all-namespaces --leader-elect`` (what the chart runs)
  argo-rollouts   the real Argo Rollouts controller, built from its Go module (e2e/binaries.py,
                  ARGO_ROLLOUTS_VERSION), with the CRDs of the same release; its defaults (10 rollout
                  workers, QPS 40, leader election on)

The same N applications for both (3 replicas each; a canary 20 -> 50 -> 100 % by replica ratio, no
router, each step held ``--step`` seconds): annotated Deployments in namespace ``bench-deliver``,
equivalent Rollouts in ``bench-argo`` (setWeight 20, pause, setWeight 50, pause). Argo Rollouts has
no pod-health rollback without an analysis provider: its built-in way out of a crash-looping canary
is ``progressDeadlineAbort`` with ``progressDeadlineSeconds`` (``--argo-deadline``, default 15 s; the
value says how long Argo waits, not how fast it acts). deliver rolls back on the pods' health.

For each N both controllers are (re)started and measured:

  RSS               VmRSS of the process, sampled every 0.25 s: at rest (the end of the idle
                    window) and peak (from start through every delivery at that N)
  idle CPU          utime + stime over ``--idle`` seconds (60) at rest, all apps settled
  first action      template change -> the new template's first ReplicaSet (the controller's own
                    first act: both create one) and its first pod (kube-controller-manager makes
                    it), each as seen on a watch:
                    ``--singles`` changes one at a time, then ``--concurrent`` (100) at once
  concurrent wall   the 100 concurrent deliveries, first change -> the last one finished (all 3
                    new pods Ready, no old pod left), against one alone (median of the singles)
  rollback          ``--crash`` (20) crash-looping canaries at once: change -> the stable version's
                    3 pods Ready and no crashing pod left
  API requests      per delivery: the controller's requests (audit log, its user) during the
                    concurrent deliveries, less its idle rate over the same time, / 100; watch
                    connections held at rest (watches started less watches ended)

Targets (issue 13; met/missed at the largest N run, goals, not tests): at N = 1,000 deliver's RSS
below Argo's and under 150 MiB; idle CPU under 1 % of a core; p99 change -> first action under 1 s;
100 concurrent canaries within 1.2x the time of one; rollback p99 no slower than Argo's.

    python -m benchmarks.controller --quick          # N = 100 (a few minutes; part of make test)
    python -m benchmarks.controller                  # N = 100, 300, 1000 (make bench; ~30 min)
    python -m benchmarks.controller --sizes 300 --keep
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as a script (python benchmarks/controller.py): the repo on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import kubernetes  # noqa: F401  (only to know whether this Python has the project's packages)
    except ImportError:  # a Python without them (the machine's own): the project's venv runs it
        _venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
        if not _venv.exists():
            raise SystemExit("the project's venv is missing: run `make install` first") from None
        os.execv(str(_venv), [str(_venv), *sys.argv])

import yaml

from e2e import binaries
from e2e.cluster import BEHAVIOUR_LABEL, REPO_ROOT, Cluster, api_client

REV_LABEL = "bench.deliver.dev/rev"
APP_LABEL = "bench.deliver.dev/app"
USERS = {"deliver": "bench-deliver", "argo": "bench-argo"}
NAMESPACES = {"deliver": "bench-deliver", "argo": "bench-argo"}
CONTROLLER_NAMES = {"deliver": "deliver", "argo": f"argo-rollouts {binaries.ARGO_ROLLOUTS_VERSION}"}
REPLICAS = 3
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [bench-deliver, bench-argo]
- level: None
"""
TARGET_N = 1000
# Both peers wait on kube-controller-manager for their pods (a ReplicaSet's pods, a Deployment's
# status). With its defaults (5 ReplicaSet and 5 Deployment workers, 100 requests/s here) 100
# changes at once queue there for seconds whichever controller made them; the benchmark gives it
# headroom so that it measures the controllers, not the control plane's own controllers.
KCM_HEADROOM = [
    "--kube-api-qps=1000",
    "--kube-api-burst=2000",
    "--concurrent-replicaset-syncs=50",
    "--concurrent-deployment-syncs=50",
]


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- the apps


def _template(app: str, rev: int, crash: bool) -> dict[str, Any]:
    labels = {APP_LABEL: app, REV_LABEL: str(rev)}
    if crash:
        labels[BEHAVIOUR_LABEL] = "crashloop"
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": f"registry.invalid/bench/app:{rev}"}]},
    }


def deployment(app: str, step: float) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": app,
            "annotations": {
                "deliver.dev/strategy": "canary",
                "deliver.dev/steps": "20,50,100",
                "deliver.dev/interval": f"{step:g}s",
            },
        },
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {APP_LABEL: app}},
            "template": _template(app, 1, False),
        },
    }


def rollout(app: str, step: float, deadline: int) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": app},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {APP_LABEL: app}},
            "template": _template(app, 1, False),
            "progressDeadlineSeconds": deadline,
            "progressDeadlineAbort": True,
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 20},
                        {"pause": {"duration": f"{step:g}s"}},
                        {"setWeight": 50},
                        {"pause": {"duration": f"{step:g}s"}},
                    ]
                }
            },
        },
    }


# ---------------------------------------------------------------- what the pods say


@dataclass
class AppPods:
    ready: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # rev -> Ready pod names
    present: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # rev -> pod names


class PodWatch:
    """One watch on every benchmark pod (both namespaces): per app and template revision, which pods
    exist and are Ready, and when a revision's first pod was seen (the local time the event arrived);
    one on every ReplicaSet: when a revision's first ReplicaSet was seen (the controller's own act)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = api_client(kubeconfig)
        self.cond = threading.Condition()
        self.apps: dict[tuple[str, str], AppPods] = defaultdict(AppPods)
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.pods: dict[tuple[str, str], tuple[str, str, bool]] = {}
        self.rs_first_seen: dict[tuple[str, str, str], float] = {}  # (ns, app, rev) -> first ReplicaSet
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, name="pod-watch", daemon=True),
            threading.Thread(target=self._run_rs, name="replicaset-watch", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _apply(self, kind: str, pod: dict[str, Any], seen: float) -> None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        key = (meta["namespace"], meta["name"])
        app, rev = labels.get(APP_LABEL, ""), labels.get(REV_LABEL, "")
        old = self.pods.pop(key, None)
        if old is not None:
            pods = self.apps[(key[0], old[0])]
            pods.present[old[1]].discard(key[1])
            pods.ready[old[1]].discard(key[1])
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            return
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        self.pods[key] = (app, rev, ready)
        pods = self.apps[(key[0], app)]
        pods.present[rev].add(key[1])
        if ready:
            pods.ready[rev].add(key[1])
        self.first_seen.setdefault((key[0], app, rev), seen)

    def _rs_apply(self, kind: str, rs: dict[str, Any], seen: float) -> None:
        tpl = ((rs.get("spec") or {}).get("template") or {}).get("metadata") or {}
        found = tpl.get("labels") or {}
        if kind != "DELETED" and REV_LABEL in found:
            key = (rs["metadata"]["namespace"], found.get(APP_LABEL, ""), found[REV_LABEL])
            self.rs_first_seen.setdefault(key, seen)

    def _run(self) -> None:
        from kubernetes import client

        self._loop(client.CoreV1Api(self.api).list_pod_for_all_namespaces, REV_LABEL, self._apply, True)

    def _run_rs(self) -> None:
        from kubernetes import client

        self._loop(client.AppsV1Api(self.api).list_replica_set_for_all_namespaces, None, self._rs_apply, False)

    def _loop(
        self,
        list_fn: Callable[..., Any],
        selector: str | None,
        apply: Callable[[str, dict[str, Any], float], None],
        pods: bool,
    ) -> None:
        """List, then watch from the list's resourceVersion, ``apply`` each object (relist on errors)."""
        while not self.stop.is_set():
            try:
                listing = list_fn(label_selector=selector, _preload_content=False)
                body = json.loads(listing.data)
                now = time.monotonic()
                with self.cond:
                    if pods:
                        for key in list(self.pods):
                            self._apply("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}}, now)
                    for obj in body.get("items") or []:
                        apply("ADDED", obj, now)
                    self.cond.notify_all()
                rv = body["metadata"]["resourceVersion"]
                while not self.stop.is_set():
                    stream = list_fn(
                        label_selector=selector,
                        watch=True,
                        resource_version=rv,
                        allow_watch_bookmarks=True,
                        timeout_seconds=300,
                        _preload_content=False,
                        _request_timeout=(10, 330),
                    )
                    for line in stream:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            raise RuntimeError(str(event))
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] == "BOOKMARK":
                            continue
                        with self.cond:
                            apply(event["type"], event["object"], time.monotonic())
                            self.cond.notify_all()
            except Exception as exc:  # a relist recovers; the benchmark's waits time out otherwise
                if not self.stop.is_set():
                    _log(f"{'pod' if pods else 'ReplicaSet'} watch: {exc!r}; relisting")
                    time.sleep(0.5)

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.cond.wait(min(left, 1.0))

    def settled(self, ns: str, app: str, rev: str) -> bool:
        """All replicas of ``rev`` Ready and no pod of any other revision (the caller holds cond)."""
        pods = self.apps[(ns, app)]
        others = any(names for r, names in pods.present.items() if r != rev)
        return len(pods.ready[rev]) >= REPLICAS and not others

    def all_settled(self, ns: str, revs: dict[str, str]) -> bool:
        return all(self.settled(ns, app, rev) for app, rev in revs.items())


# ---------------------------------------------------------------- the controllers


@dataclass
class Usage:
    """Samples of one process: RSS (KiB) and CPU seconds."""

    peak_kib: int = 0
    last_kib: int = 0


class ControllerRun:
    """One controller process, with an RSS sampler."""

    def __init__(self, kind: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        self.usage = Usage()
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def rss_kib(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        while not self.stop.wait(0.25):
            rss = self.rss_kib()
            if rss:
                self.usage.last_kib = rss
                self.usage.peak_kib = max(self.usage.peak_kib, rss)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.stop.set()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_controller(kind: str, cluster: Cluster, extra: list[str]) -> ControllerRun:
    kubeconfig = cluster.run_dir / f"{USERS[kind]}.kubeconfig"
    log_path = cluster.log_dir / f"{kind}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if kind == "deliver":
        argv = [
            sys.executable,
            "-m",
            "delivery.cli",
            "--kubeconfig",
            str(kubeconfig),
            "run",
            "--all-namespaces",
            "--leader-elect",
            "--lease-namespace",
            "deliver-system",
            "--metrics-addr",
            "127.0.0.1:0",
            *extra,
        ]
    else:
        argv = [
            str(binaries.argo_rollouts_path()),
            "--kubeconfig",
            str(kubeconfig),
            "--metricsPort",
            "0",
            "--healthzPort",
            "0",
            *extra,
        ]
        env["POD_NAMESPACE"] = "argo-rollouts"
    return ControllerRun(kind, argv, env, log_path)


# ---------------------------------------------------------------- the audit log


class Audit:
    """Counts one user's requests in the API server's audit log between two offsets."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, start: int, end: int | None = None) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(end - start)
        for line in data.splitlines():
            if line.strip():
                yield json.loads(line)

    def requests(self, user: str, start: int, end: int) -> int:
        """Requests made: every finished non-watch request, and every watch started."""
        count = 0
        for e in self.events(start, end):
            if (e.get("user") or {}).get("username") != user:
                continue
            watch = e.get("verb") == "watch"
            if (watch and e.get("stage") == "ResponseStarted") or (not watch and e.get("stage") == "ResponseComplete"):
                count += 1
        return count

    def watches_held(self, user: str, start: int, end: int) -> int:
        started = ended = 0
        for e in self.events(start, end):
            if (e.get("user") or {}).get("username") != user or e.get("verb") != "watch":
                continue
            if e.get("stage") == "ResponseStarted":
                started += 1
            elif e.get("stage") in ("ResponseComplete", "Panic"):
                ended += 1
        return started - ended


# ---------------------------------------------------------------- one run


@dataclass
class Figures:
    """One controller at one N."""

    rss_rest_mib: float = 0.0
    rss_peak_mib: float = 0.0
    idle_cpu_s: float = 0.0
    idle_requests_per_min: float = 0.0
    watches: int = 0
    first_single: list[float] = field(default_factory=list)  # change -> first new pod
    first_concurrent: list[float] = field(default_factory=list)
    rs_single: list[float] = field(default_factory=list)  # change -> first new ReplicaSet
    rs_concurrent: list[float] = field(default_factory=list)
    single_wall: list[float] = field(default_factory=list)
    concurrent_wall: float = 0.0
    rollback: list[float] = field(default_factory=list)
    requests_per_delivery: float = 0.0
    concurrent_cpu_s: float = 0.0  # the controller's CPU seconds over the 100 deliveries
    machine_busy: float = 0.0  # share of the machine's CPU time in use meanwhile (all processes)
    failed: list[str] = field(default_factory=list)


@dataclass
class Deliveries:
    """What one batch of template changes took, each from its own change (seconds)."""

    first_pod: list[float]
    first_rs: list[float]
    ends: list[float]  # to finished (all new pods Ready, no old pod) or to rolled back
    wall: float  # from the first change to the last one finished (NaN: not all finished)


def machine_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else math.nan


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (p99 of 100 samples is the 99th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = REPO_ROOT / "run" / "bench-controller"
        largest = max(args.sizes)
        pods = 2 * largest * REPLICAS + 2 * args.concurrent * REPLICAS
        policy = REPO_ROOT / "run" / "bench-controller-audit.yaml"
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text(AUDIT_POLICY)
        self.cluster = Cluster(
            self.run_dir,
            nodes=max(2, math.ceil(pods / 900)),
            max_pods=1000,
            audit_policy=policy,
            clients={user: f"/O=system:masters/CN={user}" for user in USERS.values()},
            kcm_args=KCM_HEADROOM,
        )
        self.apps = 0
        self.revs: dict[str, dict[str, int]] = {kind: {} for kind in USERS}  # newest template revision
        self.serving: dict[str, dict[str, int]] = {kind: {} for kind in USERS}  # the revision that should run
        self.results: dict[int, dict[str, Figures]] = {}
        self.pool = ThreadPoolExecutor(8)

    # -- set-up --

    def setup(self) -> None:
        missing = [name for name, path in binaries.locate().all().items() if not path.exists()]
        if missing:
            raise SystemExit(f"missing binaries {missing}: run `make install` first")
        binaries.build_argo_rollouts()
        if self.cluster.run_dir.exists():
            self.cluster.down()
        self.cluster.up(timeout=300)
        self.api = api_client(self.cluster.kubeconfig)
        self.audit = Audit(self.cluster.log_dir / "audit.log")
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        for ns in (*NAMESPACES.values(), "argo-rollouts", "deliver-system"):
            core.create_namespace(cast(Any, {"metadata": {"name": ns}}))
        ext = client.ApiextensionsV1Api(self.api)
        for path in binaries.argo_rollouts_crds():
            ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            crd = ext.read_custom_resource_definition("rollouts.argoproj.io")
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            time.sleep(0.5)
        self.watch = PodWatch(self.cluster.kubeconfig)
        self.watch.start()

    def grow(self, n: int) -> None:
        """Create apps ``self.apps..n-1`` of both kinds (Rollouts get their pods once Argo runs)."""
        from kubernetes import client

        apps = client.AppsV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)
        names = [f"app-{i:04d}" for i in range(self.apps, n)]
        started = time.monotonic()

        def make(name: str) -> None:
            apps.create_namespaced_deployment(NAMESPACES["deliver"], cast(Any, deployment(name, self.args.step)))
            custom.create_namespaced_custom_object(
                "argoproj.io",
                "v1alpha1",
                NAMESPACES["argo"],
                "rollouts",
                rollout(name, self.args.step, self.args.argo_deadline),
            )

        list(self.pool.map(make, names))
        for name in names:
            for kind in USERS:
                self.revs[kind][name] = self.serving[kind][name] = 1
        self.apps = n
        _log(f"{len(names)} Deployments and {len(names)} Rollouts created in {time.monotonic() - started:.1f}s")
        self.watch.wait(
            lambda: self.watch.all_settled(NAMESPACES["deliver"], self._revs("deliver")),
            600,
            f"{n} Deployments' pods Ready",
        )
        _log(f"{n} Deployments' pods Ready after {time.monotonic() - started:.1f}s")

    def _revs(self, kind: str) -> dict[str, str]:
        return {app: str(rev) for app, rev in self.serving[kind].items()}

    # -- measuring --

    def settle(self, runs: dict[str, ControllerRun]) -> None:
        """Wait until every app of both kinds is settled and both controllers are quiet."""
        started = time.monotonic()
        for kind in USERS:
            revs = self._revs(kind)
            self.watch.wait(partial(self.watch.all_settled, NAMESPACES[kind], revs), 900, f"{kind}'s apps settled")
        for run in runs.values():  # quiet: under 5 % of a core over 5 s, or 2 minutes passed
            limit = time.monotonic() + 120
            while time.monotonic() < limit:
                before = run.cpu_seconds()
                time.sleep(5)
                if run.cpu_seconds() - before < 0.25:
                    break
        _log(f"settled in {time.monotonic() - started:.1f}s")

    def change(self, kind: str, app: str, crash: bool = False) -> tuple[str, float]:
        """A new pod template for one app; returns (its revision, time of the change)."""
        from kubernetes import client

        rev = self.revs[kind][app] + 1
        self.revs[kind][app] = rev
        template = _template(app, rev, crash)
        if not crash:  # a merge patch keeps labels it does not name: an earlier crash's must go
            template["metadata"]["labels"][BEHAVIOUR_LABEL] = None
        patch = {"spec": {"template": template}}
        ns = NAMESPACES[kind]
        at = time.monotonic()
        if kind == "deliver":
            client.AppsV1Api(self.api).patch_namespaced_deployment(app, ns, patch)
        else:
            client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
                "argoproj.io", "v1alpha1", ns, "rollouts", app, patch
            )
        return str(rev), at

    def deliveries(self, kind: str, apps: list[str], crash: bool, fig: Figures) -> Deliveries:
        """Change ``apps`` at once and wait until each finished (or rolled back)."""
        ns = NAMESPACES[kind]
        old = {app: str(self.serving[kind][app]) for app in apps}
        changed = list(self.pool.map(lambda a: (a, *self.change(kind, a, crash)), apps))
        t0 = min(at for _, _, at in changed)
        done: dict[str, float] = {}
        timeout = 300 + 3 * self.args.step + (self.args.argo_deadline if crash else 0)

        def finished() -> bool:
            for app, rev, _ in changed:
                if app in done:
                    continue
                target = old[app] if crash else rev
                if self.watch.settled(ns, app, target) and (ns, app, rev) in self.watch.first_seen:
                    done[app] = time.monotonic()
            return len(done) == len(changed)

        try:
            self.watch.wait(finished, timeout, f"{kind}: {len(apps)} {'rollbacks' if crash else 'deliveries'}")
        except TimeoutError as exc:
            fig.failed.append(str(exc))
        for app, rev, _ in changed:
            if not crash and app in done:
                self.serving[kind][app] = int(rev)
        with self.watch.cond:
            pods, sets = self.watch.first_seen, self.watch.rs_first_seen
            return Deliveries(
                first_pod=[pods[(ns, app, rev)] - at for app, rev, at in changed if (ns, app, rev) in pods],
                first_rs=[sets[(ns, app, rev)] - at for app, rev, at in changed if (ns, app, rev) in sets],
                ends=[done[app] - at for app, _, at in changed if app in done],
                wall=(max(done.values()) - t0) if len(done) == len(changed) else math.nan,
            )

    def measure(self, n: int) -> None:
        _log(f"N = {n}: starting both controllers")
        extra = {"deliver": self.args.deliver_args.split(), "argo": self.args.argo_args.split()}
        runs = {kind: start_controller(kind, self.cluster, extra[kind]) for kind in USERS}
        figs = {kind: Figures() for kind in USERS}
        start_offset = self.audit.offset()
        try:
            self.settle(runs)
            before = {k: r.cpu_seconds() for k, r in runs.items()}
            a0 = self.audit.offset()
            _log(f"idle for {self.args.idle:g}s")
            time.sleep(self.args.idle)
            a1 = self.audit.offset()
            for kind, run in runs.items():
                fig = figs[kind]
                fig.idle_cpu_s = run.cpu_seconds() - before[kind]
                fig.rss_rest_mib = run.usage.last_kib / 1024
                fig.idle_requests_per_min = self.audit.requests(USERS[kind], a0, a1) * 60 / self.args.idle
                fig.watches = self.audit.watches_held(USERS[kind], start_offset, a1)
            for kind in USERS:
                self.scenarios(kind, runs[kind], figs[kind], n)
            for kind, run in runs.items():
                figs[kind].rss_peak_mib = run.usage.peak_kib / 1024
                if not run.alive():
                    figs[kind].failed.append(f"{kind} controller exited (code {run.proc.returncode})")
        finally:
            for run in runs.values():
                run.close()
        self.results[n] = figs
        print(render_size(n, figs, self.args), flush=True)

    def scenarios(self, kind: str, run: ControllerRun, fig: Figures, n: int) -> None:
        apps = sorted(self.revs[kind])
        _log(f"{kind}: {self.args.singles} deliveries one at a time")
        for app in apps[: self.args.singles]:
            one = self.deliveries(kind, [app], False, fig)
            fig.first_single += one.first_pod
            fig.rs_single += one.first_rs
            fig.single_wall += one.ends
        concurrent = apps[: min(self.args.concurrent, n)]
        _log(f"{kind}: {len(concurrent)} deliveries at once")
        a0 = self.audit.offset()
        started = time.monotonic()
        cpu0, machine0 = run.cpu_seconds(), machine_cpu()
        many = self.deliveries(kind, concurrent, False, fig)
        took = time.monotonic() - started
        fig.concurrent_cpu_s = run.cpu_seconds() - cpu0
        fig.machine_busy = busy_share(machine0, machine_cpu())
        a1 = self.audit.offset()
        fig.first_concurrent = many.first_pod
        fig.rs_concurrent = many.first_rs
        fig.concurrent_wall = many.wall
        made = self.audit.requests(USERS[kind], a0, a1)
        fig.requests_per_delivery = max(0.0, made - fig.idle_requests_per_min * took / 60) / len(concurrent)
        crashing = apps[len(apps) - min(self.args.crash, n) :]
        _log(f"{kind}: {len(crashing)} crash-looping canaries at once")
        fig.rollback = self.deliveries(kind, crashing, True, fig).ends

    def close(self) -> None:
        if hasattr(self, "watch"):
            self.watch.stop.set()
        if not self.args.keep:
            self.cluster.down()


# ---------------------------------------------------------------- the table


def _s(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def rows(args: argparse.Namespace) -> list[tuple[str, Callable[[Figures], str]]]:
    """The table's rows: a label and how to show one controller's figure."""
    c = args.concurrent
    return [
        ("RSS at rest / peak (MiB)", lambda f: f"{f.rss_rest_mib:.0f} / {f.rss_peak_mib:.0f}"),
        (
            f"CPU seconds over {args.idle:g} s idle",
            lambda f: f"{f.idle_cpu_s:.2f} ({100 * f.idle_cpu_s / args.idle:.2f} % of a core)",
        ),
        (
            "change -> first new ReplicaSet, 1 at a time: p50 / p99 (s)",
            lambda f: f"{_s(pct(f.rs_single, 0.5))} / {_s(pct(f.rs_single, 0.99))}",
        ),
        (
            f"change -> first new ReplicaSet, {c} at once: p50 / p99 (s)",
            lambda f: f"{_s(pct(f.rs_concurrent, 0.5))} / {_s(pct(f.rs_concurrent, 0.99))}",
        ),
        (
            "change -> first new pod, 1 at a time: p50 / p99 (s)",
            lambda f: f"{_s(pct(f.first_single, 0.5))} / {_s(pct(f.first_single, 0.99))}",
        ),
        (
            f"change -> first new pod, {c} at once: p50 / p99 (s)",
            lambda f: f"{_s(pct(f.first_concurrent, 0.5))} / {_s(pct(f.first_concurrent, 0.99))}",
        ),
        (
            f"{c} canaries at once vs one alone (s, ratio)",
            lambda f: (
                f"{_s(f.concurrent_wall)} vs {_s(statistics.median(f.single_wall) if f.single_wall else math.nan)}"
                f" ({_s(_ratio(f))}x)"
            ),
        ),
        (
            f"crash-looping canary -> stable restored, {args.crash} at once: p50 / p99 (s)",
            lambda f: f"{_s(pct(f.rollback, 0.5))} / {_s(pct(f.rollback, 0.99))}",
        ),
        (
            f"CPU seconds for the {c} at once (machine busy meanwhile)",
            lambda f: f"{f.concurrent_cpu_s:.1f} ({100 * f.machine_busy:.0f} %)",
        ),
        ("API requests per delivery", lambda f: f"{f.requests_per_delivery:.1f}"),
        ("API requests per minute at rest", lambda f: f"{f.idle_requests_per_min:.1f}"),
        ("watch connections held", lambda f: str(f.watches)),
    ]


def render_size(n: int, figs: dict[str, Figures], args: argparse.Namespace) -> str:
    d, a = figs["deliver"], figs["argo"]
    table = rows(args)
    width = max(len(label) for label, _ in table) + 2
    cols = [CONTROLLER_NAMES["deliver"], CONTROLLER_NAMES["argo"]]
    lines = [
        f"N = {n} apps x {REPLICAS} replicas; canary 20 -> 50 -> 100 % by replica ratio, {args.step:g} s per step"
        f" (Argo: progressDeadlineSeconds {args.argo_deadline}, progressDeadlineAbort)",
        f"{'':{width}}{cols[0]:<34}{cols[1]}",
    ]
    for label, cell in table:
        lines.append(f"{label:{width}}{cell(d):<34}{cell(a)}")
    for kind, f in figs.items():
        for problem in f.failed:
            lines.append(f"  !! {kind}: {problem}")
    return "\n".join(lines)


def _ratio(f: Figures) -> float:
    if not f.single_wall or math.isnan(f.concurrent_wall):
        return math.nan
    return f.concurrent_wall / statistics.median(f.single_wall)


def targets(n: int, figs: dict[str, Figures], args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    d, a = figs["deliver"], figs["argo"]
    rollback_d, rollback_a = pct(d.rollback, 0.99), pct(a.rollback, 0.99)
    first_p99 = max(pct(d.rs_single, 0.99), pct(d.rs_concurrent, 0.99))
    return [
        (
            "RSS below Argo's and under 150 MiB (at rest and peak)",
            d.rss_rest_mib < a.rss_rest_mib and d.rss_peak_mib < a.rss_peak_mib and d.rss_peak_mib < 150,
            f"{d.rss_rest_mib:.0f}/{d.rss_peak_mib:.0f} MiB vs {a.rss_rest_mib:.0f}/{a.rss_peak_mib:.0f}",
        ),
        (
            "idle CPU under 1 % of a core",
            d.idle_cpu_s / args.idle < 0.01,
            f"{100 * d.idle_cpu_s / args.idle:.2f} %",
        ),
        ("p99 change -> first action (new ReplicaSet) under 1 s", first_p99 < 1.0, f"{_s(first_p99)} s"),
        (f"{args.concurrent} concurrent canaries within 1.2x of one", _ratio(d) <= 1.2, f"{_s(_ratio(d))}x"),
        (
            "rollback p99 no slower than Argo's",
            rollback_d <= rollback_a,
            f"{_s(rollback_d)} s vs {_s(rollback_a)} s",
        ),
    ]


def render_targets(n: int, figs: dict[str, Figures], args: argparse.Namespace) -> str:
    note = "" if n >= TARGET_N else f" (measured at N = {n}; the targets are set for N = {TARGET_N})"
    lines = [f"targets for deliver{note}:"]
    for label, met, value in targets(n, figs, args):
        lines.append(f"  {label:58}{value:34}{'met' if met else 'MISSED'}")
    return "\n".join(lines)


def markdown(path: Path) -> str:
    """The figures of a run (its JSON file) as one Markdown table, every N side by side."""
    data = json.loads(path.read_text())
    args = argparse.Namespace(**data["args"])
    results = {int(n): {k: Figures(**f) for k, f in figs.items()} for n, figs in data["results"].items()}
    sizes = sorted(results)
    head = ["", *[f"N={n} {CONTROLLER_NAMES[k]}" for n in sizes for k in ("deliver", "argo")]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, cell in rows(args):
        shown = label.replace("->", "→")
        lines.append(
            "| " + " | ".join([shown, *[cell(results[n][k]) for n in sizes for k in ("deliver", "argo")]]) + " |"
        )
    largest = max(sizes)
    lines += ["", f"Targets at N = {largest} ({data['machine']}):", ""]
    for label, met, value in targets(largest, results[largest], args):
        lines.append(f"- {label}: {value}, **{'met' if met else 'missed'}**")
    return "\n".join(lines)


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.controller", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 only (part of make test)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300, 1000])
    parser.add_argument("--step", type=float, default=5.0, help="seconds each canary step is held")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window")
    parser.add_argument("--singles", type=int, default=5, help="deliveries one at a time, per N")
    parser.add_argument("--concurrent", type=int, default=100, help="deliveries at once, per N")
    parser.add_argument("--crash", type=int, default=20, help="crash-looping canaries at once, per N")
    parser.add_argument("--argo-deadline", type=int, default=15, help="Argo's progressDeadlineSeconds")
    parser.add_argument("--keep", action="store_true", help="leave the cluster up (run/bench-controller)")
    parser.add_argument("--deliver-args", default="", help="more flags for deliver run (experiments)")
    parser.add_argument("--argo-args", default="", help="more flags for the Argo Rollouts controller (experiments)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "run" / "bench-controller.json")
    parser.add_argument("--markdown", type=Path, help="print a run's JSON figures as Markdown and exit")
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(args.markdown))
        return 0
    if args.quick:
        args.sizes = [100]
        args.singles = min(args.singles, 3)
    counts = (args.singles, args.concurrent, args.crash)
    if any(n < 1 for n in args.sizes) or args.step <= 0 or args.idle <= 0 or min(counts) < 1:
        parser.error("sizes, --step, --idle, --singles, --concurrent and --crash must be positive")
    args.sizes = sorted(set(args.sizes))
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C: the controllers and the cluster are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    bench = Bench(args)
    _log(f"machine: {machine()}")
    try:
        bench.setup()
        for n in args.sizes:
            bench.grow(n)
            bench.measure(n)
    finally:
        bench.close()
    largest = max(bench.results)
    print(render_targets(largest, bench.results[largest], args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": machine(),
                "argo_rollouts": binaries.ARGO_ROLLOUTS_VERSION,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "results": {n: {k: asdict(f) for k, f in figs.items()} for n, figs in bench.results.items()},
            },
            indent=1,
        )
    )
    _log(f"done in {time.monotonic() - started:.0f}s; figures in {args.json}")
    failed = any(f.failed for figs in bench.results.values() for f in figs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
