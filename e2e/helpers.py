"""The one e2e helper layer, so tests read Given / When / Then.

Every e2e file takes its builders, readers and waits from here (fixtures live in e2e/conftest.py);
a test file defines only what is specific to its scenario.

Two clients reach the cluster: ``Kube`` (typed objects from the official ``kubernetes`` client, the
``kube`` fixture) and deliver's own JSON client ``delivery.kube.client.Kube`` (the ``jk`` fixture). The
readers of deliver's record (``state``, ``phase``, ``events`` ...) accept either.

    dep = make_deployment("web", replicas=3, image="example.com/web:v1")
    kube.apps.create_namespaced_deployment(namespace, dep)
    wait_for(lambda: deployment_available(kube.apps, namespace, "web"), 60, "web Available")
    rs = pods_by_rs(kube, namespace, "web")      # {replicaset name: [pods]}
    wait_phase(kube, namespace, "web", "Succeeded", ctl=controller)

Waiting idiom: anything that converges is asserted with ``wait_for`` (until it holds) or ``stays``
(that it keeps holding), each with a reason that explains a timeout. Never ``sleep`` then assert,
and never assert on a value that is still moving after reading it once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client

from delivery import templates
from delivery.engine.holdpolicy import all_manifests
from delivery.errors import KubeError, NotFound
from delivery.kube.client import (
    DEPLOYMENTS,
    EVENTS,
    MUTATING_POLICIES,
    MUTATING_POLICY_BINDINGS,
    PODS,
    REPLICASETS,
    SERVICES,
    VALIDATING_POLICIES,
    VALIDATING_POLICY_BINDINGS,
)
from delivery.kube.client import KubeClient as JsonKube
from e2e.cluster import BEHAVIOUR_LABEL, REPO_ROOT

T = TypeVar("T")

NEVER_READY = "never-ready"
CRASHLOOP = "crashloop"


@dataclass
class Kube:
    """Typed API objects for one cluster (what the ``kube`` fixture yields)."""

    api_client: client.ApiClient
    kubeconfig: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    @property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api_client)

    @property
    def networking(self) -> client.NetworkingV1Api:
        return client.NetworkingV1Api(self.api_client)

    @property
    def events(self) -> client.EventsV1Api:
        return client.EventsV1Api(self.api_client)


# ---------------------------------------------------------------------- waiting
def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "condition",
    interval: float = 0.25,
    describe: Callable[[], Any] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value.

    An API error while polling (e.g. a timeout on a loaded machine, or a 404 before the object
    exists) counts as "not yet", not as a failure.

    On timeout, fail the test with ``what``, the last value or exception, and (if given) the
    output of ``describe()`` — e.g. the Deployment's status — so the failure explains itself.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except client.ApiException as exc:
            last = f"ApiException {exc.status}: {exc.reason}"
        except (KubeError, urllib3.exceptions.HTTPError, OSError) as exc:  # a slow or busy API server
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    extra = ""
    if describe is not None:
        try:
            extra = f"\nstate: {describe()}"
        except Exception as exc:
            extra = f"\n(describe failed: {exc})"
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}{extra}")


def stays(predicate: Callable[[], Any], duration: float, what: str, interval: float = 0.25) -> None:
    """Assert ``predicate`` stays truthy for ``duration`` seconds (e.g. "still unavailable").

    It is checked at least once at the start and once at the end of the period."""
    deadline = time.monotonic() + duration
    while True:
        value = predicate()
        assert value, f"expected {what} to hold for {duration:.0f}s, but it stopped: {value!r}"
        if time.monotonic() >= deadline:
            return
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------------- builders
def make_deployment(
    name: str,
    replicas: int = 3,
    image: str = "example.com/app:v1",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    behaviour: str | None = None,
    port: int | None = 8080,
    max_surge: int | str | None = None,
    max_unavailable: int | str | None = None,
) -> client.V1Deployment:
    """A plain apps/v1 Deployment selecting ``app=<name>``.

    ``labels`` go on the Deployment and the pod template; ``annotations`` on the Deployment (where
    deliver reads ``deliver.dev/*``); ``behaviour`` (``"never-ready"`` / ``"crashloop"``) sets the
    kwok pod behaviour label on the pod template only.
    """
    pod_labels = {"app": name, **(labels or {})}
    if behaviour:
        pod_labels[BEHAVIOUR_LABEL] = behaviour
    container = client.V1Container(
        name="app",
        image=image,
        ports=[client.V1ContainerPort(container_port=port, name="http")] if port else None,
        resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"}),
    )
    strategy = None
    if max_surge is not None or max_unavailable is not None:
        strategy = client.V1DeploymentStrategy(
            type="RollingUpdate",
            rolling_update=client.V1RollingUpdateDeployment(max_surge=max_surge, max_unavailable=max_unavailable),
        )
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(
            name=name, labels={"app": name, **(labels or {})}, annotations=annotations or None
        ),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            strategy=strategy,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels),
                spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=1),
            ),
        ),
    )


def set_image(
    apps: client.AppsV1Api, namespace: str, name: str, image: str, behaviour: str | None = None, container: str = "app"
) -> None:
    """Change the container image (a new pod template); optionally switch the pod behaviour."""
    patch: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}
    if behaviour is not None:
        patch["spec"]["template"]["metadata"] = {"labels": {BEHAVIOUR_LABEL: behaviour}}
    apps.patch_namespaced_deployment(name, namespace, patch)


# ---------------------------------------------------------------------- reading state
def pod_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def deployment_available(apps: client.AppsV1Api, namespace: str, name: str, replicas: int | None = None) -> bool:
    """True when the Deployment has rolled out fully: observed, all replicas updated, ready and
    available, no old replicas left, and the Available condition is True."""
    d = apps.read_namespaced_deployment(name, namespace)
    want = d.spec.replicas if replicas is None else replicas
    st = d.status
    available = any(c.type == "Available" and c.status == "True" for c in (st.conditions or []))
    return bool(
        available
        and (st.observed_generation or 0) >= d.metadata.generation
        and (st.updated_replicas or 0) == want
        and (st.ready_replicas or 0) == want
        and (st.available_replicas or 0) == want
        and (st.replicas or 0) == want
    )


def deployment_status(apps: client.AppsV1Api, namespace: str, name: str) -> dict[str, Any]:
    """A compact status dict for failure messages."""
    d = apps.read_namespaced_deployment(name, namespace)
    st = d.status
    return {
        "generation": d.metadata.generation,
        "observed": st.observed_generation,
        "replicas": st.replicas,
        "updated": st.updated_replicas,
        "ready": st.ready_replicas,
        "available": st.available_replicas,
        "unavailable": st.unavailable_replicas,
        "conditions": [(c.type, c.status, c.reason) for c in (st.conditions or [])],
    }


def replica_sets(apps: client.AppsV1Api, namespace: str, deployment: str) -> list[client.V1ReplicaSet]:
    """ReplicaSets owned by ``deployment``, oldest revision first."""
    d = apps.read_namespaced_deployment(deployment, namespace)
    items = [
        rs
        for rs in apps.list_namespaced_replica_set(namespace).items
        if any(o.uid == d.metadata.uid for o in (rs.metadata.owner_references or []))
    ]
    return sorted(
        items, key=lambda rs: int((rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "0"))
    )


def pods_by_rs(kube: Kube, namespace: str, deployment: str) -> dict[str, list[client.V1Pod]]:
    """``{replicaset name: [its live pods]}`` for every ReplicaSet of ``deployment`` (oldest first;
    a scaled-down ReplicaSet maps to ``[]``). Pods being deleted are left out."""
    sets = replica_sets(kube.apps, namespace, deployment)
    out: dict[str, list[client.V1Pod]] = {rs.metadata.name: [] for rs in sets}
    uid_to_name = {rs.metadata.uid: rs.metadata.name for rs in sets}
    for pod in kube.core.list_namespaced_pod(namespace).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        for o in pod.metadata.owner_references or []:
            if o.uid in uid_to_name:
                out[uid_to_name[o.uid]].append(pod)
    return out


def pods_of(kube: Kube, namespace: str, deployment: str) -> list[client.V1Pod]:
    """All live pods of ``deployment`` across its ReplicaSets."""
    return [p for pods in pods_by_rs(kube, namespace, deployment).values() for p in pods]


def restart_counts(pods: list[client.V1Pod]) -> list[int]:
    return [sum(cs.restart_count for cs in (p.status.container_statuses or [])) for p in pods]


def waiting_reasons(pods: list[client.V1Pod]) -> set[str]:
    return {
        cs.state.waiting.reason
        for p in pods
        for cs in (p.status.container_statuses or [])
        if cs.state and cs.state.waiting and cs.state.waiting.reason
    }


# ---------------------------------------------------------------------- identities
def service_account_kubeconfig(
    kube: Kube, namespace: str, name: str, path: Path, expiration_seconds: int = 3600
) -> Path:
    """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name``
    with a bound token from the TokenRequest API (e.g. to run the controller under the RBAC its
    Helm chart grants). The ServiceAccount must exist."""
    import yaml

    token = kube.core.create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        ),
    ).status.token
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    user = f"system:serviceaccount:{namespace}:{name}"
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user, "namespace": namespace}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------------- a metrics target
class _MetricsHandler(BaseHTTPRequestHandler):
    body: Callable[[], str]

    def do_GET(self) -> None:  # http.server API
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        data = self.server.body().encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def metrics_server(body: Callable[[], str]) -> Iterator[str]:
    """Serve ``body()`` (Prometheus text format) at http://127.0.0.1:<port>/metrics in a thread;
    yields ``"127.0.0.1:<port>"``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    server.body = body  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- deliver's record
STATE = "deliver.dev/state"
REQUEST = "deliver.dev/request"
TERMINAL = ("Succeeded", "RolledBack", "Aborted")


def deployment(k: Kube | JsonKube, ns: str, name: str = "web") -> dict[str, Any]:
    """The Deployment as a JSON dict, through either client."""
    if isinstance(k, Kube):
        return k.api_client.sanitize_for_serialization(k.apps.read_namespaced_deployment(name, ns))  # type: ignore[no-any-return]
    return k.get(DEPLOYMENTS, ns, name)


def state(k: Kube | JsonKube, ns: str, name: str = "web") -> dict[str, Any]:
    """deliver's record on the Deployment (``{}`` before deliver has written one)."""
    raw = (deployment(k, ns, name)["metadata"].get("annotations") or {}).get(STATE)
    return json.loads(raw) if raw else {}


def phase(k: Kube | JsonKube, ns: str, name: str = "web") -> str:
    """The delivery's phase; ``Idle`` when deliver has recorded nothing (as ``deliver status`` says)."""
    return str(state(k, ns, name).get("phase") or "Idle")


def events(k: Kube | JsonKube, ns: str, reason: str) -> list[dict[str, Any]]:
    """Events in ``ns`` with this reason, as JSON dicts (``message``, ``type``, ...)."""
    if isinstance(k, Kube):
        items = k.api_client.sanitize_for_serialization(k.core.list_namespaced_event(ns))["items"]
    else:
        items = k.items(EVENTS, ns)
    return [e for e in items if e.get("reason") == reason]


def event_messages(k: Kube | JsonKube, ns: str, reason: str) -> list[str]:
    return [str(e.get("message", "")) for e in events(k, ns, reason)]


def image(k: Kube | JsonKube, ns: str, name: str = "web") -> str:
    """The image of the Deployment's template (what the Deployment says should run)."""
    return str(deployment(k, ns, name)["spec"]["template"]["spec"]["containers"][0]["image"])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def restarts(pod: dict[str, Any]) -> int:
    return sum(int(cs.get("restartCount") or 0) for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def pods_of_hash(jk: JsonKube, ns: str, pod_hash: str, app: str = "web") -> list[dict[str, Any]]:
    """Live (non-terminating) pods of ``app`` with this pod-template-hash."""
    return [
        p
        for p in jk.items(PODS, ns, f"app={app},{templates.HASH_LABEL}={pod_hash}")
        if not p["metadata"].get("deletionTimestamp")
    ]


def ready_by_hash(jk: JsonKube, ns: str, app: str = "web") -> dict[str, int]:
    """Ready (non-terminating) pods per pod-template-hash."""
    out: dict[str, int] = {}
    for pod in jk.items(PODS, ns, f"app={app}"):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        h = pod["metadata"]["labels"].get(templates.HASH_LABEL, "")
        out[h] = out.get(h, 0) + (1 if is_ready(pod) else 0)
    return out


def stable_rs(jk: JsonKube, ns: str, name: str = "web") -> dict[str, Any] | None:
    """The Deployment's own ReplicaSet with replicas (the version serving)."""
    uid = deployment(jk, ns, name)["metadata"]["uid"]
    for rs in jk.items(REPLICASETS, ns, f"app={name}"):
        refs = rs["metadata"].get("ownerReferences") or []
        if any(r.get("controller") and r["uid"] == uid for r in refs) and rs["spec"].get("replicas"):
            return rs
    return None


def stable_hash(jk: JsonKube, ns: str, name: str = "web") -> str:
    rs = stable_rs(jk, ns, name)
    return str(rs["spec"]["template"]["metadata"]["labels"][templates.HASH_LABEL]) if rs else ""


def deliver_replicasets(jk: JsonKube, ns: str, name: str = "web") -> list[dict[str, Any]]:
    """The ReplicaSets deliver created for ``name`` (canary / preview versions)."""
    return jk.items(REPLICASETS, ns, f"{templates.OWNER_LABEL}={name}")


def service_exists(jk: JsonKube, ns: str, name: str) -> bool:
    try:
        jk.get(SERVICES, ns, name)
        return True
    except NotFound:
        return False


def describe(jk: JsonKube, ns: str, name: str = "web") -> Callable[[], dict[str, Any]]:
    """A ``describe=`` for ``wait_for``: the record, Ready pods per version and the ReplicaSets."""

    def show() -> dict[str, Any]:
        st = state(jk, ns, name)
        return {
            "phase": st.get("phase"),
            "step": st.get("step"),
            "message": st.get("message"),
            "verdicts": st.get("verdicts"),
            "ready": ready_by_hash(jk, ns, name),
            "rs": [
                (r["metadata"]["name"], r["spec"]["replicas"], (r.get("status") or {}).get("readyReplicas"))
                for r in jk.items(REPLICASETS, ns)
            ],
        }

    return show


def wait_phase(
    k: Kube | JsonKube,
    ns: str,
    name: str,
    phase: str,
    timeout: float = 90,
    step: int | None = None,
    ctl: Any = None,
) -> dict[str, Any]:
    """Wait until deliver's record for ``name`` is in ``phase`` (at ``step``, if given); returns the record.

    ``ctl`` (a ControllerProcess) adds the controller's log tail to a timeout message."""

    def check() -> dict[str, Any] | None:
        s = state(k, ns, name)
        if (s.get("phase") or "Idle") == phase and (step is None or s.get("step") == step):
            return s
        return None

    def show() -> str:
        tail = "\n".join(ctl.log().splitlines()[-15:]) if ctl else ""
        return f"{state(k, ns, name)}\ncontroller log tail:\n{tail}"

    return wait_for(
        check, timeout, f"{ns}/{name} phase {phase}" + (f" step {step}" if step is not None else ""), describe=show
    )


def wait_ended(
    k: Kube | JsonKube,
    ns: str,
    name: str,
    timeout: float,
    ctl: Any = None,
    ends: tuple[str, ...] = ("RolledBack", "Succeeded", "Paused"),
) -> dict[str, Any]:
    """Wait until the delivery reaches one of ``ends``; returns the record."""

    def ended() -> dict[str, Any] | None:
        s = state(k, ns, name)
        return s if s.get("phase") in ends else None

    return wait_for(
        ended,
        timeout,
        f"the delivery of {ns}/{name} to end ({' / '.join(ends)})",
        describe=lambda: (state(k, ns, name), ctl.log()[-2000:] if ctl else ""),
    )


def wait_stable(k: Kube | JsonKube, ns: str, name: str, ctl: Any = None, timeout: float = 90) -> dict[str, Any]:
    """The controller has seen the initial rollout through: Idle with a stable revision, and the
    Deployment controller has seen deliver's last spec change (the pause): its status write would
    otherwise come after this returns (a test comparing resourceVersions would see it)."""

    def stable() -> dict[str, Any] | None:
        d = deployment(k, ns, name)
        s = state(k, ns, name)
        observed = int((d.get("status") or {}).get("observedGeneration") or 0)
        settled = observed >= int(d["metadata"].get("generation") or 0)
        return s if settled and s.get("stableRevision") and s.get("phase") in ("Idle", "Succeeded") else None

    return wait_for(
        stable, timeout, f"{name} stable", describe=lambda: (state(k, ns, name), ctl.log()[-2000:] if ctl else "")
    )


# ---------------------------------------------------------------------- given: annotated Deployments
def canary(name: str, steps: str, interval: str = "1s", replicas: int = 3, **extra: str) -> client.V1Deployment:
    """A canary Deployment at ``example.com/web:v1``; ``extra`` keys become ``deliver.dev/<key-with-dashes>``."""
    annotations = {
        "deliver.dev/strategy": "canary",
        "deliver.dev/steps": steps,
        "deliver.dev/interval": interval,
        **{f"deliver.dev/{k.replace('_', '-')}": v for k, v in extra.items()},
    }
    return make_deployment(name, replicas=replicas, image="example.com/web:v1", annotations=annotations)


def images(kube: Kube, ns: str, name: str) -> set[str]:
    """The images of the live pods of ``name`` (what really runs)."""
    return {p.spec.containers[0].image for p in pods_of(kube, ns, name)}


# ---------------------------------------------------------------------- the CLI
def deliver(
    kubeconfig: Path | str,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m delivery.cli`) as a user would; never raises on a non-zero exit."""
    full_env = dict(os.environ, NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "delivery.cli", "--kubeconfig", str(kubeconfig), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=stdin,
    )


# ---------------------------------------------------------------------- deliver's hold policy
HOLD_POLICY_KINDS = {
    "MutatingAdmissionPolicy": MUTATING_POLICIES,
    "MutatingAdmissionPolicyBinding": MUTATING_POLICY_BINDINGS,
    "ValidatingAdmissionPolicy": VALIDATING_POLICIES,
    "ValidatingAdmissionPolicyBinding": VALIDATING_POLICY_BINDINGS,
}


def install_hold_policy(jk: JsonKube) -> None:
    """What `deliver hold-policy` prints: the hold policy and the guard of rejected templates."""
    for obj in all_manifests():
        jk.create(HOLD_POLICY_KINDS[obj["kind"]], None, obj)


def uninstall_hold_policy(jk: JsonKube) -> None:
    for obj in reversed(all_manifests()):
        try:
            jk.delete(HOLD_POLICY_KINDS[obj["kind"]], None, obj["metadata"]["name"])
        except NotFound:
            pass


def sampler(fn: Any, interval: float = 0.1) -> tuple[list[Any], threading.Event]:
    """Call ``fn`` every ``interval`` seconds in a thread until the Event is set; its answers, in order."""
    samples: list[Any] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                samples.append(fn())
            except Exception:  # a transient API error is not a sample
                pass
            stop.wait(interval)

    threading.Thread(target=run, daemon=True).start()
    return samples, stop


@contextmanager
def fresh_namespace(kube: Kube, name: str, wait_gone: float = 0.0, keep: bool = False) -> Iterator[str]:
    """Namespace ``name`` (labelled as the e2e's), ready once its default ServiceAccount exists;
    deleted afterwards unless ``keep`` (an API error then is not the test's); with ``wait_gone``, up to
    that many seconds until it is gone (a controller watching every namespace would see it terminate)."""
    kube.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"e2e.deliver.dev/test": "true"}))
    )
    wait_for(
        lambda: kube.core.read_namespaced_service_account("default", name), 30, f"ServiceAccount default in {name}"
    )
    try:
        yield name
    finally:
        if not keep:
            try:
                kube.core.delete_namespace(name)
            except Exception:  # already gone, or an API server being restarted by a chaos trial
                pass
            if wait_gone:
                try:
                    wait_for(lambda: _namespace_gone(kube, name), wait_gone, f"namespace {name} deleted")
                except Exception:  # still terminating: the next run's namespace has another name
                    pass


def _namespace_gone(kube: Kube, name: str) -> bool:
    try:
        kube.core.read_namespace(name)
    except client.ApiException as exc:
        return exc.status == 404
    return False
