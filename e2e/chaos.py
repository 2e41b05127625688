"""Chaos on the real local control plane (issue 10): faults a production cluster sees, injected
while deliveries run, and what deliver did about them.

    python -m e2e.chaos                    # the full run (`make chaos`): prints the figures table
    python -m e2e.chaos --kills 5 --invalid 100 --seed 7 --out run/chaos.md

Kinds of trial (each in its own namespace, with its own controller process):

* ``kill``: SIGKILL of the controller at seeded random instants of a delivery (canary, blue-green,
  rolling, recreate in turn), restarted 0-1 s later; every other delivery also gets an operator
  ``abort`` at a random instant while it is Progressing (it must end Aborted: applied once, not lost).
* ``apiserver``: kube-apiserver stopped and started again mid-delivery (same flags, same etcd); the
  deliveries' progress deadline (120 s) covers the control plane's restart, so a good version must
  be promoted through it.
* ``prometheus-hang`` / ``prometheus-stop``: the Prometheus deliver queries (through a proxy) accepts
  connections and never answers / refuses them, mid-analysis, for longer than a query's timeout;
  a delivery held as inconclusive (Paused) is resumed by an operator once Prometheus is back.
* ``route-deleted`` / ``crd-deleted``: the user's HTTPRoute, or the Gateway API CRD with every
  route, deleted mid-delivery and re-applied (as GitOps would) a few seconds later.
* ``invalid``: generated (hypothesis) invalid ``deliver.dev/*`` annotation sets, one after the other
  on a Deployment at rest, with a new template applied under the first: deliver must write nothing
  (the Deployment's record, spec and pause; ReplicaSets; Services; no new object). A Warning Event
  per set is expected and is the one write allowed.

Per trial: the terminal phase (stuck = none within the deadline, or not at rest), promotions (the
record entering Succeeded for the new revision; more than one is a double promotion), operator
requests sent but never applied (lost), the fewest Ready pods of both versions sampled during the
delivery (below the capacity floor, N less the Deployment's maxUnavailable, is a finding; Recreate
has none), and seconds from the last fault to at rest (converge).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from delivery.engine.state import send_request
from delivery.errors import Conflict, DeliverError
from delivery.kube.client import CONFIGMAPS, DEPLOYMENTS, PODS, REPLICASETS, SERVICES
from delivery.kube.client import KubeClient as JsonKube
from delivery.routing.gateway import HTTPROUTES
from e2e import _proc, crds
from e2e.cluster import REPO_ROOT, Cluster, api_client
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, deliver_replicasets, fresh_namespace, make_deployment, ready_by_hash, set_image, wait_for
from strategies.canary import min_available
from strategies.observation import Disruption

N = 3
TERMINAL = ("Succeeded", "Aborted", "RolledBack")
GOOD = {"deliver.dev/interval": "2s", "deliver.dev/progress-deadline": "30s"}
STRATEGIES: dict[str, tuple[dict[str, str], str | None]] = {
    "canary": ({"deliver.dev/strategy": "canary", "deliver.dev/steps": "34,67,100", **GOOD}, None),
    "blue-green": ({"deliver.dev/strategy": "blue-green", "deliver.dev/keep-warm": "2s", **GOOD}, None),
    "rolling": ({"deliver.dev/strategy": "rolling", "deliver.dev/pause-at": "34,67", **GOOD}, None),
    "recreate": ({"deliver.dev/strategy": "recreate", **GOOD}, "Recreate"),
}
CRD = "httproutes.gateway.networking.k8s.io"
# kube-apiserver restarts: kube-controller-manager re-establishes its watches after one and, on this
# shared machine, has taken about a minute to act again (create a canary's pods, scale a ReplicaSet
# down). A good version must be promoted through that, so the progress deadline covers a control-plane
# restart (as a production one should: a pod is not unhealthy because the control plane was away)
# and a rollback of the good version is a finding; the kill trials keep the short 30 s deadline.
CONTROL_PLANE_RESTART = {"deliver.dev/progress-deadline": "120s"}


def capacity_floor(strategy: str) -> int:
    """The fewest Ready pods (both versions) a good delivery of ``strategy`` may leave: N less the
    Deployment's ``maxUnavailable`` (the default 25 % of 3, rounded down: none), the floor deliver keeps
    while exact canary shares scale the stable version down; Recreate stops every old pod first."""
    if STRATEGIES[strategy][1] == "Recreate":
        return 0
    return min_available(N, Disruption())


def say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ what a trial found


@dataclass
class Trial:
    kind: str
    strategy: str
    faults: int = 0  # kills, restarts, outages injected
    phase: str = ""
    expected: str = "Succeeded"
    stuck: bool = False
    promotions: int = 0
    sent: int = 0
    lost: int = 0
    converge: float | None = None
    writes: int = 0  # invalid: sets after which deliver had written something
    floor: int = 0  # the fewest Ready pods allowed during the delivery (stable and new together)
    fewest: int | None = None  # the fewest Ready pods sampled during the delivery
    warned: int = 0  # invalid: sets answered with a Warning Event
    note: str = ""
    # The fault's proof (issue 24: a trial must not pass because its fault never happened). ``None``:
    # this kind proves nothing beyond its count; ``False``: it had to prove its fault and did not.
    injected: bool | None = None  # the fault happened (apiserver: a request failed, the pid changed; ...)
    observed: bool | None = None  # deliver met it (Prometheus: one of its queries was held unanswered)
    fault_error: str = ""  # the fault could not be injected (the exception)
    evidence: list[str] = field(default_factory=list)

    @property
    def unproven(self) -> str:
        """Why this trial's fault is not shown to have happened ("" when it is, or needs no proof)."""
        if self.fault_error:
            return f"fault not injected: {self.fault_error}"
        if self.injected is False:
            return "fault not shown to have happened"
        if self.observed is False:
            return "fault not met by deliver"
        return ""

    @property
    def wrong(self) -> bool:
        return (
            bool(self.unproven)
            or self.stuck
            or self.promotions > 1
            or self.lost > 0
            or self.writes > 0
            or self.below_floor
            or self.phase != self.expected
        )

    @property
    def below_floor(self) -> bool:
        return self.fewest is not None and self.fewest < self.floor


@dataclass
class Figures:
    trials: list[Trial] = field(default_factory=list)

    def rows(self) -> list[tuple[str, int, int, int, int, int, int, int, int, int, str, str]]:
        out = []
        for kind in dict.fromkeys(t.kind for t in self.trials):
            ts = [t for t in self.trials if t.kind == kind]
            conv = sorted(t.converge for t in ts if t.converge is not None)
            out.append(
                (
                    kind,
                    len(ts),
                    sum(t.faults for t in ts),
                    sum(t.stuck for t in ts),
                    sum(t.promotions > 1 for t in ts),
                    sum(t.sent for t in ts),
                    sum(t.lost for t in ts),
                    sum(t.writes for t in ts),
                    sum(t.below_floor for t in ts),
                    sum(bool(t.unproven) for t in ts),
                    f"{statistics.median(conv):.1f}" if conv else "-",
                    f"{conv[-1]:.1f}" if conv else "-",
                )
            )
        return out

    def table(self) -> str:
        head = (
            "| kind | trials | faults | stuck | double promotions | operator requests | lost requests | writes | "
            "below capacity floor | fault unproven | converge p50 (s) | converge max (s) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        )
        return head + "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in self.rows())

    def violations(self) -> list[Trial]:
        return [t for t in self.trials if t.wrong]


# ------------------------------------------------------------------ watching a delivery


class RecordLog:
    """Polls the Deployment's record every 0.1 s (through API restarts): each distinct record, in order;
    and the Ready pods of the app (both versions together), keeping the fewest seen."""

    def __init__(self, jk: JsonKube, ns: str) -> None:
        self.jk, self.ns = jk, ns
        self.records: list[tuple[float, dict[str, Any]]] = []
        self.fewest: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RecordLog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def _run(self) -> None:
        last: tuple[Any, ...] | None = None
        while not self.stop.is_set():
            try:
                record = record_of(self.jk, self.ns)
            except Exception:  # the API restarting: not a sample
                self.stop.wait(0.2)
                continue
            key = tuple(record.get(k) for k in ("phase", "step", "revision", "stableRevision", "handledRequest"))
            if key != last:
                self.records.append((time.monotonic(), record))
                last = key
            ready = quietly(lambda: sum(ready_by_hash(self.jk, self.ns).values()))
            if ready is not None:
                self.fewest = ready if self.fewest is None else min(self.fewest, ready)
            self.stop.wait(0.1)

    def promotions(self, revision: str) -> int:
        """Times the record entered Succeeded for ``revision``."""
        count, before = 0, ""
        for _, r in self.records:
            phase = r.get("phase", "")
            if phase == "Succeeded" and before != "Succeeded" and r.get("revision") == revision:
                count += 1
            before = phase
        return count


def record_of(jk: JsonKube, ns: str) -> dict[str, Any]:
    d = jk.get(DEPLOYMENTS, ns, "web")
    raw = (d["metadata"].get("annotations") or {}).get("deliver.dev/state")
    return dict(json.loads(raw)) if raw else {}


def send_fresh(jk: JsonKube, ns: str, verb: str, attempts: int = 5) -> str:
    """Send operator request ``verb`` as the CLI does: re-read and write again when the controller
    changed the Deployment between our read and our write (a 409 is a race, not a fault)."""
    for _ in range(attempts - 1):
        try:
            return str(send_request(jk, jk.get(DEPLOYMENTS, ns, "web"), verb))
        except Conflict:
            time.sleep(0.2)
    return str(send_request(jk, jk.get(DEPLOYMENTS, ns, "web"), verb))


def quietly(fn: Callable[[], Any], default: Any = None) -> Any:
    try:
        return fn()
    except Exception:  # the API restarting
        return default


# ------------------------------------------------------------------ the faults


class SwitchableProxy:
    """A TCP proxy in front of Prometheus: ``forward``, ``hang`` (accept and never answer) or
    ``down`` (the port refuses connections)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = _proc.free_port()
        self.mode = "forward"
        self.forwarded = 0
        self.swallowed = 0  # connections or requests held unanswered while hanging (deliver met the hang)
        self.held: list[socket.socket] = []
        self.active: list[socket.socket] = []
        self.sock: socket.socket | None = None
        self.closed = False
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        sock = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if self.mode == "hang":
                self.held.append(conn)  # read nothing, answer nothing
                self.swallowed += 1
                continue
            self.forwarded += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            self.active += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.mode == "hang":
                    self.swallowed += 1
                    continue  # a kept-alive connection hangs too: the query is swallowed, never answered
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def set(self, mode: str) -> None:
        if mode == "down":
            if self.sock is not None:
                try:  # wakes the thread blocked in accept(); close() alone leaves the port listening
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.sock.close()
                self.sock = None
            for conn in self.active:  # a stopped Prometheus drops its connections
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.active.clear()
        elif mode != "down" and self.sock is None and not self.closed:
            self._listen()
        if mode == "forward":
            for conn in self.held:
                conn.close()
            self.held.clear()
        self.mode = mode

    def close(self) -> None:
        self.closed = True
        self.set("down")
        for conn in self.held:
            conn.close()


def probe(url: str, timeout: float = 2.0) -> str:
    """One HTTP GET: "answered" (any HTTP answer), "timeout" (connected, no answer in time),
    "refused" (nothing listens) or "error: ..." — how a fault shows itself to a client."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return "answered" if sock.recv(16).startswith(b"HTTP/") else "error: not HTTP"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error: {exc}"


@dataclass(frozen=True)
class Restart:
    """What a kube-apiserver restart did, as evidence: its pids, whether a request failed while it
    was down, and how long it was unavailable."""

    down: float
    old_pid: int
    new_pid: int
    refused: bool  # a request to it failed while it was stopped
    ready_after: bool  # it answered /readyz again afterwards

    @property
    def proven(self) -> bool:
        return self.old_pid != self.new_pid and self.refused and self.ready_after

    def evidence(self) -> str:
        return (
            f"kube-apiserver pid {self.old_pid} -> {self.new_pid}, a request while down "
            f"{'failed' if self.refused else 'DID NOT fail'}, down {self.down:.1f}s"
        )


def restart_apiserver(cluster: Cluster, down_for: float = 1.0) -> Restart:
    """Stop kube-apiserver (SIGTERM, as a node drain or an upgrade would) and start it again with the
    same flags against the same etcd; returns the evidence that it really went away and came back."""
    state = cluster.state
    proc = next(p for p in state.procs if p.name == "kube-apiserver")
    header = Path(proc.log).read_text(errors="replace").splitlines()[0]
    argv = header.removeprefix("# ").split()
    started = time.monotonic()
    _proc.stop(proc)
    refused = not proc.alive() and not quietly(lambda: cluster._apiserver_ready(state), False)
    time.sleep(down_for)
    new = _proc.start(proc.name, argv, Path(proc.log), cwd=cluster.run_dir)
    state.procs = [new if p.pid == proc.pid else p for p in state.procs]
    state.save(cluster.state_file)
    _proc.wait_until(lambda: cluster._apiserver_ready(state), 60, new, "kube-apiserver /readyz after a restart")
    ready = bool(quietly(lambda: cluster._apiserver_ready(state), False))
    return Restart(time.monotonic() - started, proc.pid, new.pid, refused, ready)


def judge_prometheus_fault(trial: Trial, mode: str, probed: str, met: int) -> None:
    """The Prometheus fault's proof: a query of ours timed out (``hang``: connected, never answered)
    or was refused (``down``); and, for a hang, deliver's own queries were held by it (``met``: the
    requests the hung proxy swallowed besides the probe's). A hang deliver never queried through, or
    a proxy that still answered, proves nothing: the trial fails."""
    want = {"hang": "timeout", "down": "refused"}[mode]
    trial.injected = probed == want
    trial.evidence.append(f"probe during the outage: {probed} (want {want})")
    if mode == "hang":
        trial.observed = met > 0
        trial.evidence.append(f"deliver's requests held by the hang: {met}")


# ------------------------------------------------------------------ the runner


class Chaos:
    def __init__(
        self,
        kubeconfig: Path,
        kube: Kube,
        jk: JsonKube,
        run_dir: Path,
        seed: int,
        cluster: Cluster | None = None,
        prometheus_port: int | None = None,
    ) -> None:
        self.kubeconfig, self.kube, self.jk, self.run_dir = kubeconfig, kube, jk, run_dir
        self.rng = random.Random(seed)
        self.seed = seed
        self.cluster = cluster
        self.prometheus_port = prometheus_port
        self.figures = Figures()

    # ---- given

    @contextmanager
    def namespace(self, tag: str) -> Iterator[str]:
        with fresh_namespace(self.kube, f"chaos-{tag}-{uuid.uuid4().hex[:5]}") as name:
            yield name

    def controller(self, ns: str, prometheus_url: str | None = None) -> ControllerProcess:
        return ControllerProcess(self.kubeconfig, ns, self.run_dir / ns, prometheus_url=prometheus_url, name="ctl")

    def given(self, ns: str, strategy: str, ctl: ControllerProcess, extra: dict[str, str] | None = None) -> str:
        """The annotated Deployment at v1, held by deliver at rest; returns the stable hash."""
        annotations, native = STRATEGIES[strategy]
        body = make_deployment(
            "web", replicas=N, image="example.com/web:v1", annotations={**annotations, **(extra or {})}
        )
        if native:
            body.spec.strategy = client.V1DeploymentStrategy(type=native)
        self.kube.apps.create_namespaced_deployment(ns, body)
        if not ctl.alive():
            ctl.start()

        def held() -> str:
            r = record_of(self.jk, ns)
            h = r.get("stableHash", "")
            return h if r.get("phase") in ("Idle", "Succeeded") and ready_by_hash(self.jk, ns).get(h) == N else ""

        return str(wait_for(held, 90, f"{ns}: v1 held by deliver", describe=lambda: ctl.log()[-1500:]))

    # ---- a delivery under a fault

    def deliver(
        self,
        trial: Trial,
        ns: str,
        ctl: ControllerProcess,
        fault: Callable[[float, Trial], float],
        deadline: float = 120.0,
    ) -> Trial:
        """Apply v2, run ``fault(t0, trial)`` (returns when its last fault ended, monotonic), then wait
        until the delivery is at rest in a terminal phase."""
        trial.floor = capacity_floor(trial.strategy)
        with RecordLog(self.jk, ns) as log:
            set_image(self.kube.apps, ns, "web", "example.com/web:v2")
            t0 = time.monotonic()
            try:
                last_fault = fault(t0, trial)
            except Exception as exc:  # a fault that could not be injected fails the trial (Trial.unproven)
                trial.fault_error = f"{type(exc).__name__}: {exc}"[:300]
                trial.note = f"fault failed: {exc}"
                last_fault = time.monotonic()
            if not ctl.alive():
                ctl.start()
            at_rest = self._wait_at_rest(ns, ctl, trial, last_fault + deadline)
            trial.phase = str(quietly(lambda: record_of(self.jk, ns).get("phase", ""), ""))
            if at_rest is None:
                trial.stuck = True
                trial.note = trial.note or f"not at rest: {quietly(lambda: record_of(self.jk, ns))}"
            else:
                trial.converge = max(0.0, at_rest - last_fault)
        revision = next((r.get("revision", "") for _, r in log.records if r.get("phase") == "Progressing"), "")
        trial.fewest = log.fewest
        trial.promotions = log.promotions(revision) if revision else 0
        self.figures.trials.append(trial)
        say(
            f"{trial.kind} {trial.strategy}: {trial.phase} (expected {trial.expected}), faults {trial.faults}, "
            f"converge {trial.converge if trial.converge is None else round(trial.converge, 1)}s"
            + (f", promotions {trial.promotions}" if trial.promotions > 1 else "")
            + (f", lost {trial.lost}" if trial.lost else "")
            + f", fewest Ready {trial.fewest} (floor {trial.floor}{', BELOW' if trial.below_floor else ''})"
            + (f" [{trial.note}]" if trial.note else "")
        )
        return trial

    def _wait_at_rest(self, ns: str, ctl: ControllerProcess, trial: Trial, until: float) -> float | None:
        while time.monotonic() < until:
            if self._at_rest(ns, trial):
                return time.monotonic()
            if self._operator_resume(ns, trial):
                continue
            time.sleep(0.2)
        return None

    def _at_rest(self, ns: str, trial: Trial) -> bool:
        record = quietly(lambda: record_of(self.jk, ns), {})
        if record.get("phase") not in TERMINAL:
            return False
        ready = quietly(lambda: ready_by_hash(self.jk, ns), {})
        return (
            not quietly(lambda: [r for r in deliver_replicasets(self.jk, ns) if r["spec"].get("replicas")], [1])
            and len(ready) == 1
            and set(ready.values()) == {N}
        )

    def _operator_resume(self, ns: str, trial: Trial) -> bool:
        """Held as inconclusive (Prometheus was away): the operator resumes it, once."""
        if not trial.kind.startswith("prometheus") or trial.sent:
            return False
        record = quietly(lambda: record_of(self.jk, ns), {})
        if record.get("phase") != "Paused":
            return False
        rid = self._request(ns, "resume", trial)
        trial.note = f"held (Paused) while Prometheus was away; resumed ({rid})"
        return True

    def _request(self, ns: str, verb: str, trial: Trial) -> str:
        rid = send_fresh(self.jk, ns, verb)
        trial.sent += 1
        threading.Thread(target=self._check_applied, args=(ns, rid, trial), daemon=True).start()
        return rid

    def _check_applied(self, ns: str, rid: str, trial: Trial) -> None:
        """Lost = never recorded as handled within 60 s of being sent."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if quietly(lambda: record_of(self.jk, ns).get("handledRequest")) == rid:
                return
            time.sleep(0.2)
        trial.lost += 1

    # ---- kinds

    def kills(self, total: int) -> None:
        """``total`` SIGKILLs spread over deliveries of the four strategies, four at a time."""
        names = list(STRATEGIES)
        deliveries = max(len(names), -(-total // 3)) if total else 0
        per = [total // deliveries + (i < total % deliveries) for i in range(deliveries)]
        # every other delivery of each strategy gets an operator abort (alternating by round)
        plans = [(names[i % len(names)], k, (i + i // len(names)) % 2 == 1) for i, k in enumerate(per)]
        for batch in range(0, len(plans), 4):
            threads = [
                threading.Thread(target=self._kill_trial, args=(s, k, abort, random.Random(self.rng.random())))
                for s, k, abort in plans[batch : batch + 4]
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    def _kill_trial(self, strategy: str, kills: int, abort: bool, rng: random.Random) -> None:
        with self.namespace(f"kill-{strategy}") as ns:
            ctl = self.controller(ns)
            try:
                self.given(ns, strategy, ctl)
                trial = Trial("kill", strategy)

                def fault(t0: float, trial: Trial) -> float:
                    # each kill a random 0.3-2.5 s after the (re)start: inside the delivery; the
                    # operator's abort (every other delivery) right after a random one of them
                    abort_after = rng.randrange(kills) if abort else -1
                    for i in range(kills):
                        time.sleep(rng.uniform(0.3, 2.5))
                        ctl.kill()
                        trial.faults += 1
                        if quietly(lambda: record_of(self.jk, ns).get("phase")) in TERMINAL:
                            trial.note = "a kill after the end"
                        time.sleep(rng.uniform(0.0, 1.0))
                        if i == abort_after:
                            self._abort_if_open(ns, trial)
                        ctl.start()
                    return time.monotonic()

                self.deliver(trial, ns, ctl, fault)
            finally:
                ctl.stop()

    def _abort_if_open(self, ns: str, trial: Trial) -> None:
        """The operator aborts (sent while the controller is down: it must be applied on restart)."""
        if record_of(self.jk, ns).get("phase") in ("Progressing", "Paused"):
            trial.expected = "Aborted"
            self._request(ns, "abort", trial)
        else:
            trial.expected = "Succeeded"  # finished (or promoting) before the operator got to it

    def apiserver_restarts(self, count: int) -> None:
        if self.cluster is None:
            raise RuntimeError("restarting kube-apiserver needs the cluster this run started (not an external one)")
        for i in range(count):
            strategies = [list(STRATEGIES)[(2 * i + j) % 4] for j in range(2)]
            with self.namespace("api-a") as a, self.namespace("api-b") as b:
                ctls = {ns: self.controller(ns) for ns in (a, b)}
                try:
                    for (ns, ctl), strategy in zip(ctls.items(), strategies, strict=True):
                        self.given(ns, strategy, ctl, CONTROL_PLANE_RESTART)
                    at = self.rng.uniform(1.0, 6.0)
                    restarted: dict[str, Any] = {}
                    lock = threading.Lock()

                    def fault(
                        t0: float,
                        trial: Trial,
                        at: float = at,
                        lock: threading.Lock = lock,
                        restarted: dict[str, Any] = restarted,
                    ) -> float:
                        with lock:  # one restart shared by both deliveries
                            if "done" not in restarted:
                                time.sleep(max(0.0, t0 + at - time.monotonic()))
                                restarted["restart"] = restart_apiserver(self.cluster)  # type: ignore[arg-type]
                                restarted["done"] = time.monotonic()
                        if "restart" not in restarted:  # the other delivery's restart raised
                            raise RuntimeError("the shared kube-apiserver restart failed")
                        restart: Restart = restarted["restart"]
                        trial.faults = 1
                        trial.injected = restart.proven
                        trial.evidence.append(restart.evidence())
                        trial.note = f"apiserver down {restart.down:.1f}s"
                        return float(restarted["done"])

                    threads = [
                        threading.Thread(
                            target=self.deliver,
                            args=(Trial("apiserver", s), ns, ctl, fault),
                            kwargs={"deadline": 240.0},
                        )
                        for (ns, ctl), s in zip(ctls.items(), strategies, strict=True)
                    ]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                finally:
                    for ctl in ctls.values():
                        ctl.stop()

    def prometheus(self, mode: str, outage: float = 14.0) -> None:
        """One canary analysing a constant custom check (passes on a healthy Prometheus) while its
        Prometheus hangs (``hang``) or is away (``down``) for ``outage`` seconds mid-analysis."""
        if self.prometheus_port is None:
            raise RuntimeError("needs a Prometheus (prometheus_port)")
        proxy = SwitchableProxy(self.prometheus_port)
        kind = {"hang": "prometheus-hang", "down": "prometheus-stop"}[mode]
        try:
            with self.namespace(kind.replace("prometheus", "prom")) as ns:
                self.kube.core.create_namespaced_config_map(
                    ns,
                    client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(name="web-analysis"),
                        data={"const.kind": "errors", "const.total": "vector(100000)", "const.errors": "vector(0)"},
                    ),
                )
                ctl = self.controller(ns, prometheus_url=proxy.url)
                try:
                    extra = {
                        "deliver.dev/analysis": "const",
                        "deliver.dev/analysis-config": "web-analysis",
                        "deliver.dev/interval": "4s",
                        "deliver.dev/progress-deadline": "120s",
                    }
                    self.given(ns, "canary", ctl, extra)
                    trial = Trial(kind, "canary")

                    def fault(t0: float, trial: Trial) -> float:
                        before = proxy.forwarded
                        wait_for(lambda: proxy.forwarded > before, 60, "the analysis to query Prometheus")
                        proxy.set(mode)
                        trial.faults = 1
                        swallowed, began = proxy.swallowed, time.monotonic()
                        seen = probe(proxy.url + "/api/v1/query?query=vector(1)", timeout=2.0)
                        time.sleep(max(0.0, outage - (time.monotonic() - began)))
                        if record_of(self.jk, ns).get("phase") in ("Promoting", "Succeeded"):
                            trial.note = "promoted while Prometheus was away"
                        met = proxy.swallowed - swallowed - (1 if seen == "timeout" else 0)
                        proxy.set("forward")
                        judge_prometheus_fault(trial, mode, seen, met)
                        return time.monotonic()

                    self.deliver(trial, ns, ctl, fault, deadline=150.0)
                    if trial.note == "promoted while Prometheus was away":
                        trial.expected = "not promoted blind"
                finally:
                    ctl.stop()
        finally:
            proxy.close()

    def router(self, what: str, outage: float = 6.0) -> None:
        """A Gateway API canary whose route (``route``), or the CRD with every route (``crd``), is
        deleted mid-delivery and re-applied ``outage`` seconds later."""
        crds.install(self.kube.api_client, ["httproute"])
        custom = client.CustomObjectsApi(self.kube.api_client)
        kind = f"{what}-deleted"
        with self.namespace(kind) as ns:
            for name in ("web-stable", "web-canary"):
                self.kube.core.create_namespaced_service(
                    ns,
                    client.V1Service(
                        metadata=client.V1ObjectMeta(name=name),
                        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]),
                    ),
                )
            route = {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "web"},
                "spec": {
                    "parentRefs": [{"name": "public"}],
                    "rules": [
                        {
                            "backendRefs": [
                                {"name": "web-stable", "port": 80, "weight": 100},
                                {"name": "web-canary", "port": 80, "weight": 0},
                            ]
                        }
                    ],
                },
            }

            def apply_route() -> None:
                custom.create_namespaced_custom_object(HTTPROUTES.group, HTTPROUTES.version, ns, "httproutes", route)

            apply_route()
            ctl = self.controller(ns)
            try:
                self.given(ns, "canary", ctl, {"deliver.dev/router": "gateway-api/web", "deliver.dev/interval": "3s"})
                trial = Trial(kind, "canary")

                def fault(t0: float, trial: Trial) -> float:
                    wait_for(lambda: record_of(self.jk, ns).get("weight"), 60, "the canary's first weight")
                    ext = client.ApiextensionsV1Api(self.kube.api_client)
                    if what == "crd":
                        ext.delete_custom_resource_definition(CRD)
                        wait_for(lambda: _crd_gone(ext), 60, "the CRD deleted")
                    else:
                        custom.delete_namespaced_custom_object(
                            HTTPROUTES.group, HTTPROUTES.version, ns, "httproutes", "web"
                        )
                    trial.faults = 1
                    time.sleep(outage)
                    if what == "crd":
                        crds.install(self.kube.api_client, ["httproute"])
                    apply_route()  # GitOps re-applies the user's route (100 % stable)
                    return time.monotonic()

                self.deliver(trial, ns, ctl, fault)
            finally:
                ctl.stop()
                crds.install(self.kube.api_client, ["httproute"])

    def invalid_annotations(self, examples: int, parallel: int = 4) -> None:
        """``examples`` generated invalid annotation sets (hypothesis, seeded), applied one after the
        other to canaries at rest (``parallel`` namespaces, one controller each), a new template
        applied under the first: after each set nothing deliver writes may have changed; a Warning
        Event each is expected (the one write allowed)."""
        sets = generate_invalid_sets(examples, self.seed)
        trial = Trial("invalid", "canary", expected="")
        lock = threading.Lock()
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._invalid_part, args=(sets[i::parallel], trial, lock))
            for i in range(min(parallel, len(sets)))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        say(
            f"invalid: {trial.faults} sets in {time.monotonic() - started:.0f}s, {trial.writes} with writes, "
            f"{trial.warned} warned" + (f" [{trial.note}]" if trial.note else "")
        )
        self.figures.trials.append(trial)

    def _invalid_part(self, sets: list[dict[str, str]], trial: Trial, lock: threading.Lock) -> None:
        base = STRATEGIES["canary"][0]
        with self.namespace("invalid") as ns:
            ctl = self.controller(ns)
            try:
                self.given(ns, "canary", ctl)
                baseline = self._writes_snapshot(ns)
                previous: set[str] = set()
                for n, annotations in enumerate(sets):
                    before = self._warnings(ns)
                    patch: dict[str, str | None] = {k: base.get(k) for k in previous - set(annotations)}
                    patch.update(annotations)
                    self.kube.apps.patch_namespaced_deployment("web", ns, {"metadata": {"annotations": patch}})
                    previous = set(annotations)
                    if n == 0:
                        # a new template under invalid annotations (the user's write): it must not go out
                        set_image(self.kube.apps, ns, "web", "example.com/web:v2")
                    warned = _wait(lambda before=before: self._warnings(ns) != before, 5.0)
                    now = self._writes_snapshot(ns)
                    with lock:
                        trial.warned += warned
                        trial.faults += 1
                        if now != baseline:
                            trial.writes += 1
                            trial.note = f"changed after {annotations}: {_diff(baseline, now)}"
                    baseline = now
                image = self.jk.get(DEPLOYMENTS, ns, "web")["spec"]["template"]["spec"]["containers"][0]["image"]
                if image != "example.com/web:v2":
                    with lock:
                        trial.writes += 1
                        trial.note = f"the user's template was replaced: {image}"
            finally:
                ctl.stop()

    def _warnings(self, ns: str) -> tuple[tuple[str, int], ...]:
        evs = self.kube.core.list_namespaced_event(ns).items
        return tuple(
            sorted(
                (str(e.metadata.name), e.count or 1)
                for e in evs
                if e.type == "Warning" and e.reason == "InvalidAnnotation"
            )
        )

    def _writes_snapshot(self, ns: str) -> dict[str, Any]:
        """Everything deliver could write, as resourceVersions and fields (Events excluded: allowed)."""
        d = self.jk.get(DEPLOYMENTS, ns, "web")
        return {
            "record": (d["metadata"].get("annotations") or {}).get("deliver.dev/state"),
            "paused": d["spec"].get("paused"),
            "replicas": d["spec"].get("replicas"),
            # what deliver writes of them (labels, annotations, spec); their status is the controllers'
            "replicasets": {r["metadata"]["name"]: _written(r) for r in self.jk.items(REPLICASETS, ns)},
            "services": {s["metadata"]["name"]: _written(s) for s in self.jk.items(SERVICES, ns)},
            "configmaps": sorted(c["metadata"]["name"] for c in self.jk.items(CONFIGMAPS, ns)),
            "pods": sorted(p["metadata"]["name"] for p in self.jk.items(PODS, ns)),
        }


# ------------------------------------------------------------------ generated invalid annotation sets

BAD: dict[str, list[str]] = {
    "deliver.dev/strategy": ["Canary", "blue_green", "", "rolling-update", "canary,rolling", "bluegreen", "linear"],
    "deliver.dev/steps": ["20,abc", "0", "101", "50,20", "-5", "20,,50", "20;50", "", "1e2", "pause", "20, 50%"],
    "deliver.dev/interval": ["-1s", "abc", "0", "1x", "", "10 years", "5", "1h-"],
    "deliver.dev/progress-deadline": ["-30s", "soon", "0s", "", "1d2"],
    "deliver.dev/max-restarts": ["-1", "many", "1.5", ""],
    "deliver.dev/analysis": ["Error_Rate", "error rate", "error-rate,,latency", "UPPER", "a.b"],
    "deliver.dev/analysis-alpha": ["0", "0.9", "-1", "x", "1", "nan"],
    "deliver.dev/router": ["gateway-api", "traefik/web", "istio/", "/web", "gateway-api/Web_1"],
    "deliver.dev/keep-warm": ["-1s", "warm"],
}


def invalid_sets(base: dict[str, str] | None = None) -> Any:
    """A hypothesis strategy: 1-4 ``deliver.dev/*`` keys with values drawn from known-bad shapes and
    from random text, plus unknown keys; only sets deliver's own validator rejects are kept (on top
    of ``base``, the Deployment's valid annotations)."""
    from hypothesis import strategies as st

    from delivery import spec as specmod

    base = dict(STRATEGIES["canary"][0] if base is None else base)
    text = st.text(alphabet="abcxyz0123456789,.%-_:/ ;", min_size=0, max_size=12)
    values = {key: st.sampled_from(bad) | text for key, bad in BAD.items()}
    unknown = st.from_regex(r"[a-z]{2,10}(-[a-z]{1,6})?", fullmatch=True).map(lambda s: f"deliver.dev/{s}")
    known = st.fixed_dictionaries({}, optional=values)
    extra = st.dictionaries(unknown, text, max_size=1)
    sets = st.builds(lambda a, b: {**a, **b}, known, extra).filter(lambda d: 1 <= len(d) <= 4)

    def rejected(annotations: dict[str, str]) -> bool:
        deployment = {
            "metadata": {"name": "web", "annotations": {**base, **annotations}},
            "spec": {
                "replicas": N,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "example.com/web:v1"}]},
                },
            },
        }
        return len(specmod.problems(deployment, configmaps=lambda name: {})) > 0

    return sets.filter(rejected)


def generate_invalid_sets(count: int, seed: int) -> list[dict[str, str]]:
    """``count`` distinct invalid annotation sets from ``invalid_sets`` (seeded, reproducible)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    found: list[dict[str, str]] = []
    keys: set[str] = set()

    for round_ in range(20):

        @hseed(seed * 1000 + round_)
        @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(invalid_sets())
        def collect(annotations: dict[str, str]) -> None:
            key = json.dumps(annotations, sort_keys=True)
            if key not in keys and len(found) < count:
                keys.add(key)
                found.append(annotations)

        collect()
        if len(found) >= count:
            break
    return found


def _written(obj: dict[str, Any]) -> str:
    """What deliver could have written to a ReplicaSet or Service. A ReplicaSet's ``deliver.dev/*``
    annotations are left out: the Deployment controller copies the Deployment's annotations onto the
    ReplicaSet of its template, so the user's annotation write shows up there (kube-controller-manager's
    write, not deliver's; deliver never writes those keys on a ReplicaSet)."""
    meta = obj["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("deliver.dev/")}
    return json.dumps([meta.get("labels"), annotations, meta.get("ownerReferences"), obj.get("spec")], sort_keys=True)


def _crd_gone(ext: client.ApiextensionsV1Api) -> bool:
    try:
        ext.read_custom_resource_definition(CRD)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if quietly(check, False):
            return True
        time.sleep(0.05)
    return False


def _diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


# ------------------------------------------------------------------ make chaos


@dataclass
class Plan:
    kills: int = 50
    apiserver: int = 3
    prometheus_hang: int = 2
    prometheus_stop: int = 2
    route_deleted: int = 2
    crd_deleted: int = 2
    invalid: int = 1000


def run(chaos: Chaos, plan: Plan) -> Figures:
    steps: list[tuple[str, Callable[[], None]]] = [
        *[("kill", lambda: chaos.kills(plan.kills))] * bool(plan.kills),
        *[("apiserver", lambda: chaos.apiserver_restarts(plan.apiserver))] * bool(plan.apiserver),
        *[("prometheus-hang", lambda: chaos.prometheus("hang"))] * plan.prometheus_hang,
        *[("prometheus-stop", lambda: chaos.prometheus("down"))] * plan.prometheus_stop,
        *[("route-deleted", lambda: chaos.router("route"))] * plan.route_deleted,
        *[("crd-deleted", lambda: chaos.router("crd"))] * plan.crd_deleted,
        *[("invalid", lambda: chaos.invalid_annotations(plan.invalid))] * bool(plan.invalid),
    ]
    for name, step in steps:
        say(f"--- {name}")
        try:
            step()
        except Exception as exc:  # a trial that could not run is reported, and the run goes on
            say(f"{name}: could not run: {exc!r}")
            chaos.figures.trials.append(Trial(name, "-", stuck=True, note=f"could not run: {exc!r}"[:300]))
    return chaos.figures


def main(argv: list[str] | None = None) -> int:
    from e2e.services import Prometheus

    p = argparse.ArgumentParser(prog="python -m e2e.chaos", description=__doc__.split("\n\n")[0])
    defaults = Plan()
    for name in Plan.__dataclass_fields__:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--out", type=Path, default=None, help="also write the figures table (markdown) here")
    args = p.parse_args(argv)
    plan = Plan(**{k: getattr(args, k) for k in Plan.__dataclass_fields__})
    run_dir = REPO_ROOT / "run" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}"
    cluster = Cluster(run_dir / "cluster")
    cluster.up()
    prom = Prometheus(run_dir).start()
    api = api_client(cluster.kubeconfig)
    started = time.monotonic()
    try:
        chaos = Chaos(
            cluster.kubeconfig,
            Kube(api_client=api, kubeconfig=cluster.kubeconfig),
            JsonKube.connect(str(cluster.kubeconfig)),
            run_dir,
            args.seed,
            cluster=cluster,
            prometheus_port=prom.port,
        )
        figures = run(chaos, plan)
    finally:
        prom.stop()
        cluster.down()
    table = figures.table()
    wall = time.monotonic() - started
    print(f"\nchaos (seed {args.seed}, {wall / 60:.1f} min):\n{table}")
    bad = figures.violations()
    for t in bad:
        print(f"VIOLATION: {t}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"seed {args.seed}, {wall / 60:.1f} min\n\n{table}\n")
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DeliverError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        sys.exit(3)
