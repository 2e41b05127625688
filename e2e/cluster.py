"""A real local Kubernetes control plane for e2e tests and the demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local processes
(binaries from ``python -m e2e.binaries``), all on 127.0.0.1, with logs and pids under a run
directory (default ``<repo>/run/cluster``, or ``$DELIVER_RUN_DIR``). kwok plays the kubelet for
three fake nodes; its Stage config (``e2e/kwok_stages.yaml``) decides how pods behave.

CLI::

    python -m e2e.cluster up          # start everything, print the kubeconfig path
    python -m e2e.cluster status      # which components run, pids, logs
    python -m e2e.cluster env         # prints: export KUBECONFIG=...
    python -m e2e.cluster down        # stop exactly the pids started, remove the run dir
    python -m e2e.cluster reap        # tear down run/e2e-<pid> clusters of dead pytest sessions
    python -m e2e.cluster prometheus-up | prometheus-down | envoy-up | envoy-down

Python::

    c = Cluster(run_dir)          # run_dir optional
    c.up()                        # idempotent when already running
    api = c.api_client()          # kubernetes.client.ApiClient for the admin identity
    c.down()
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e import _pki, _proc
from e2e._proc import Proc, StartError
from e2e.binaries import Binaries, locate

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES_FILE = Path(__file__).resolve().parent / "kwok_stages.yaml"

BEHAVIOUR_LABEL = "e2e.deliver.dev/behaviour"
"""Pod label read by the kwok stages: absent -> Ready, ``never-ready``, ``crashloop``."""

KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODE_COUNT = 3
NODE_ALLOCATABLE = {"cpu": "32", "memory": "256Gi", "pods": "110"}

# Ports: 0 means "pick a free one at start". Set e.g. DELIVER_APISERVER_PORT=6443 to pin one.
PORT_ENV = {
    "etcd-client": "DELIVER_ETCD_PORT",
    "etcd-peer": "DELIVER_ETCD_PEER_PORT",
    "apiserver": "DELIVER_APISERVER_PORT",
    "controller-manager": "DELIVER_KCM_PORT",
    "scheduler": "DELIVER_SCHEDULER_PORT",
}


def default_run_dir() -> Path:
    env = os.environ.get("DELIVER_RUN_DIR")
    return Path(env).resolve() if env else REPO_ROOT / "run" / "cluster"


def _log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# (connect, read) seconds for every request of the e2e kubernetes client. The client's default is
# no timeout at all: on a loaded machine one request whose answer never came blocked a test until
# pytest-timeout killed it after 600 s. With a timeout the request fails, and ``wait_for`` polls again.
REQUEST_TIMEOUT = (10.0, 30.0)


def api_client(kubeconfig: Path | str) -> Any:
    """A ``kubernetes.client.ApiClient`` for ``kubeconfig`` whose requests time out (``REQUEST_TIMEOUT``)
    unless a call passes its own ``_request_timeout``."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    rest = api.rest_client
    request = rest.request

    def request_with_timeout(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("_request_timeout"):
            kwargs["_request_timeout"] = REQUEST_TIMEOUT
        return request(*args, **kwargs)

    rest.request = request_with_timeout
    return api


@dataclass
class State:
    """What ``up`` started; persisted as ``state.json`` so ``down`` can stop exactly that."""

    ports: dict[str, int] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def save(self, path: Path) -> None:
        data = {"ports": self.ports, "procs": [p.to_dict() for p in self.procs]}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(
            ports={k: int(v) for k, v in data.get("ports", {}).items()},
            procs=[Proc.from_dict(p) for p in data.get("procs", [])],
        )


class Cluster:
    """The local control plane living in ``run_dir``."""

    def __init__(
        self,
        run_dir: Path | None = None,
        nodes: int = NODE_COUNT,
        max_pods: int = 110,
        audit_policy: Path | None = None,
        clients: dict[str, str] | None = None,
        kcm_args: list[str] | None = None,
    ) -> None:
        """``nodes`` kwok nodes of ``max_pods`` pods each; ``audit_policy``: the API server writes its
        audit log (``logs/audit.log``) under that policy; ``clients``: more identities, name ->
        certificate subject, each with a kubeconfig ``<name>.kubeconfig`` in the run dir (the
        controller benchmark tells controllers apart by them); ``kcm_args``: more
        kube-controller-manager flags (a later flag wins over the default one)."""
        self.run_dir = (run_dir or default_run_dir()).resolve()
        self.nodes = nodes
        self.max_pods = max_pods
        self.audit_policy = audit_policy
        self.clients = dict(clients or {})
        self.kcm_args = list(kcm_args or [])
        self.state_file = self.run_dir / "state.json"
        self.kubeconfig = self.run_dir / "kubeconfig"
        self.pki_dir = self.run_dir / "pki"
        self.log_dir = self.run_dir / "logs"

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> State:
        return State.load(self.state_file)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state.ports['apiserver']}"

    def running(self) -> bool:
        st = self.state
        return bool(st.procs) and all(p.alive() for p in st.procs) and self._apiserver_ready(st)

    def up(self, timeout: float = 180.0) -> float:
        """Start the control plane (no-op if it already runs). Returns seconds taken."""
        started = time.monotonic()
        if self.running():
            _log(f"already running; KUBECONFIG={self.kubeconfig}")
            return 0.0
        if self.state_file.exists():
            _log("stale run dir found: stopping what it recorded first")
            self.down()
        bins = locate()
        missing = [f"{n} ({p})" for n, p in bins.all().items() if not p.exists()]
        if missing:
            raise StartError(
                "missing binaries: "
                + ", ".join(missing)
                + " — build them with `python -m e2e.binaries` (or `make install`)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        state = State(ports=self._pick_ports())
        state.save(self.state_file)
        try:
            self._start_all(bins, state, deadline=started + timeout)
        except BaseException:
            _log(f"start failed; stopping what was started (logs kept in {self.log_dir})")
            for p in reversed(state.procs):
                _proc.stop(p)
            self.state_file.unlink(missing_ok=True)
            raise
        took = time.monotonic() - started
        _log(f"cluster up in {took:.1f}s; export KUBECONFIG={self.kubeconfig}")
        return took

    def down(self) -> None:
        """Stop exactly the processes recorded in the run dir, then remove the run dir."""
        from e2e.services import stop_services_in

        stop_services_in(self.run_dir)
        st = self.state
        for p in reversed(st.procs):
            if p.alive():
                _log(f"stopping {p.name} (pid {p.pid})")
            _proc.stop(p)
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)
        _log(f"down; removed {self.run_dir}")

    def status(self) -> dict[str, Any]:
        st = self.state
        return {
            "run_dir": str(self.run_dir),
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
            "apiserver_ready": self._apiserver_ready(st) if st.ports else False,
            "components": [{"name": p.name, "pid": p.pid, "alive": p.alive(), "log": p.log} for p in st.procs],
            "ports": st.ports,
            "services": _services_status(self.run_dir),
        }

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the cluster admin."""
        return api_client(self.kubeconfig)

    # ------------------------------------------------------------------ internals
    def _pick_ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        for name, env in PORT_ENV.items():
            fixed = os.environ.get(env)
            if fixed:
                port = int(fixed)
                if _proc.port_in_use(port):
                    raise StartError(f"{name}: port {port} (from ${env}) is already in use on 127.0.0.1")
            else:
                port = _proc.free_port()
                while port in ports.values():
                    port = _proc.free_port()
            ports[name] = port
        return ports

    def _start(self, state: State, name: str, argv: list[str]) -> Proc:
        proc = _proc.start(name, argv, self.log_dir / f"{name}.log", cwd=self.run_dir)
        state.procs.append(proc)
        state.save(self.state_file)
        return proc

    def _ssl_context(self, verify: bool = True) -> ssl.SSLContext:
        if verify:
            ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    def _get(self, url: str, verify: bool = True) -> tuple[int, str]:
        ctx = self._ssl_context(verify) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def _apiserver_ready(self, st: State) -> bool:
        if "apiserver" not in st.ports or not (self.pki_dir / "admin.crt").exists():
            return False
        try:
            code, body = self._get(f"https://127.0.0.1:{st.ports['apiserver']}/readyz")
        except OSError:
            return False
        return code == 200 and body.strip() == "ok"

    def _write_kubeconfig(self, path: Path, server: str, user: str, cert: Path, key: Path) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "deliver-e2e",
                    "cluster": {"server": server, "certificate-authority": str(self.pki_dir / "ca.crt")},
                }
            ],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "deliver-e2e", "context": {"cluster": "deliver-e2e", "user": user}}],
            "current-context": "deliver-e2e",
            "preferences": {},
        }
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        path.chmod(0o600)

    def _audit_flags(self) -> list[str]:
        if self.audit_policy is None:
            return []
        return [
            f"--audit-policy-file={self.audit_policy}",
            f"--audit-log-path={self.log_dir / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",
            "--audit-log-maxsize=0",
        ]

    def _start_all(self, bins: Binaries, state: State, deadline: float) -> None:
        ports = state.ports

        def remaining() -> float:
            return max(5.0, deadline - time.monotonic())

        t = time.monotonic()
        pki = _pki.make_pki(
            self.pki_dir,
            {
                "admin": "/O=system:masters/CN=deliver-admin",
                "controller-manager": "/CN=system:kube-controller-manager",
                "scheduler": "/CN=system:kube-scheduler",
                "kwok": "/O=system:masters/CN=kwok-controller",
                "front-proxy-client": "/CN=front-proxy-client",
                **self.clients,
            },
        )
        _log(f"certificates ready ({time.monotonic() - t:.1f}s)")
        server = f"https://127.0.0.1:{ports['apiserver']}"
        kcfg = {}
        for name in ("admin", "controller-manager", "scheduler", "kwok", *self.clients):
            path = self.kubeconfig if name == "admin" else self.run_dir / f"{name}.kubeconfig"
            c = pki.clients[name]
            self._write_kubeconfig(path, server, name, c.cert, c.key)
            kcfg[name] = path

        # etcd --------------------------------------------------------------
        etcd_url = f"http://127.0.0.1:{ports['etcd-client']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        etcd = self._start(
            state,
            "etcd",
            [
                str(bins.etcd),
                "--name=deliver-e2e",
                f"--data-dir={self.run_dir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=deliver-e2e={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--listen-metrics-urls=",
                "--log-level=warn",
            ],
        )
        _proc.wait_until(
            lambda: '"health":"true"' in self._get(etcd_url + "/health")[1],
            remaining(),
            etcd,
            f"etcd /health on {etcd_url}",
        )
        _log(f"etcd ready on {etcd_url}")

        # kube-apiserver ----------------------------------------------------
        apiserver = self._start(
            state,
            "kube-apiserver",
            [
                str(bins.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--requestheader-client-ca-file={pki.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.clients['front-proxy-client'].cert}",
                f"--proxy-client-key-file={pki.clients['front-proxy-client'].key}",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=false",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={_pki.SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--event-ttl=1h",
                *self._audit_flags(),
            ],
        )
        _proc.wait_until(
            lambda: self._apiserver_ready(state), remaining(), apiserver, f"kube-apiserver /readyz on {server}"
        )
        _log(f"kube-apiserver ready on {server}")

        # controller-manager, scheduler, kwok -------------------------------
        kcm = self._start(
            state,
            "kube-controller-manager",
            [
                str(bins.kube_controller_manager),
                f"--kubeconfig={kcfg['controller-manager']}",
                f"--authentication-kubeconfig={kcfg['controller-manager']}",
                f"--authorization-kubeconfig={kcfg['controller-manager']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['controller-manager']}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={_pki.SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                "--profiling=false",
                *self.kcm_args,
            ],
        )
        sched = self._start(
            state,
            "kube-scheduler",
            [
                str(bins.kube_scheduler),
                f"--kubeconfig={kcfg['scheduler']}",
                f"--authentication-kubeconfig={kcfg['scheduler']}",
                f"--authorization-kubeconfig={kcfg['scheduler']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        kwok = self._start(
            state,
            "kwok",
            [
                str(bins.kwok),
                f"--kubeconfig={kcfg['kwok']}",
                f"--config={STAGES_FILE}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION[0]}={KWOK_NODE_ANNOTATION[1]}",
                "--cidr=10.244.0.1/16",
                "--node-ip=127.0.0.1",
            ],
        )
        for proc, port in ((kcm, ports["controller-manager"]), (sched, ports["scheduler"])):
            url = f"https://127.0.0.1:{port}/healthz"
            _proc.wait_until(
                lambda u=url: self._get(u, verify=False)[0] == 200, remaining(), proc, f"{proc.name} {url}"
            )
        _log("kube-controller-manager and kube-scheduler healthy")

        # nodes, default ServiceAccount -------------------------------------
        from kubernetes import client

        api = self.api_client()
        core = client.CoreV1Api(api)
        for i in range(self.nodes):
            core.create_node(_node_body(f"kwok-node-{i}", i, self.max_pods))

        def nodes_ready() -> bool:
            nodes = core.list_node(label_selector="type=kwok").items
            return len(nodes) == self.nodes and all(
                any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])) for n in nodes
            )

        _proc.wait_until(nodes_ready, remaining(), kwok, f"{self.nodes} kwok nodes Ready")
        _log(f"{self.nodes} fake nodes Ready")

        def default_sa() -> bool:
            core.read_namespaced_service_account("default", "default")
            return True

        _proc.wait_until(default_sa, remaining(), kcm, "ServiceAccount default/default")
        api.close()
        for p in state.procs:
            if not p.alive():
                raise StartError(f"{p.name} exited during start; log: {p.log}\n{_proc.log_tail(Path(p.log))}")


def _services_status(run_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pid_file in sorted(run_dir.glob("*/pid.json")) if run_dir.is_dir() else []:
        meta = json.loads(pid_file.read_text())
        proc = Proc.from_dict(meta["proc"])
        out.append(
            {
                "name": proc.name,
                "pid": proc.pid,
                "alive": proc.alive(),
                "log": proc.log,
                **{k: v for k, v in meta.items() if k != "proc"},
            }
        )
    return out


def reap_stale(base: Path | None = None) -> list[Path]:
    """Tear down clusters left under ``<repo>/run/e2e-<pid>`` by pytest sessions that died
    (their pid no longer exists). Returns the directories removed."""
    base = base or REPO_ROOT / "run"
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for d in sorted(base.glob("e2e-*")):
        m = re.fullmatch(r"e2e-(\d+)", d.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            Cluster(d).down()
            removed.append(d)
    return removed


def _node_body(name: str, index: int, max_pods: int = 110) -> dict[str, Any]:
    allocatable = dict(NODE_ALLOCATABLE, pods=str(max_pods))
    if max_pods > 110:  # room for that many pods of the e2e apps' requests too
        allocatable.update(cpu=str(max_pods), memory=f"{max_pods * 2}Gi")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "topology.kubernetes.io/zone": f"zone-{index}",
            },
        },
        "spec": {},
        "status": {"allocatable": dict(allocatable), "capacity": dict(allocatable)},
    }


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=[
            "up",
            "down",
            "status",
            "env",
            "reap",
            "prometheus-up",
            "prometheus-down",
            "envoy-up",
            "envoy-down",
        ],
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="default: $DELIVER_RUN_DIR or <repo>/run/cluster")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    cluster = Cluster(args.run_dir)
    try:
        if args.command == "up":
            cluster.up(timeout=args.timeout)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            cluster.down()
        elif args.command == "status":
            st = cluster.status()
            print(json.dumps(st, indent=2))
            return 0 if st["components"] and all(c["alive"] for c in st["components"]) else 1
        elif args.command == "reap":
            for d in reap_stale():
                print(f"removed stale {d}")
        elif args.command == "env":
            if not cluster.kubeconfig.exists():
                print(f"no cluster in {cluster.run_dir}; run `python -m e2e.cluster up`", file=sys.stderr)
                return 1
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        else:
            from e2e import services

            if args.command == "prometheus-up":
                prom = services.Prometheus(cluster.run_dir)
                prom.start()
                print(f"prometheus {prom.url} (targets dir: {prom.targets_dir})")
            elif args.command == "prometheus-down":
                services.Prometheus(cluster.run_dir).stop()
            elif args.command == "envoy-up":
                envoy = services.Envoy(cluster.run_dir)
                envoy.start()
                print(f"envoy admin {envoy.admin_url}")
            elif args.command == "envoy-down":
                services.Envoy(cluster.run_dir).stop()
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
