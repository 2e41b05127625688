"""The harness itself: a real control plane, kwok pod behaviours, Prometheus and Envoy."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from e2e._proc import free_port
from e2e.cluster import api_client
from e2e.helpers import (
    CRASHLOOP,
    NEVER_READY,
    Kube,
    deployment_available,
    deployment_status,
    make_deployment,
    metrics_server,
    pod_ready,
    pods_by_rs,
    pods_of,
    replica_sets,
    restart_counts,
    service_account_kubeconfig,
    set_image,
    stays,
    wait_for,
    waiting_reasons,
)
from e2e.services import Envoy, Prometheus

pytestmark = pytest.mark.e2e


def test_plain_deployment_becomes_available_on_fake_nodes(kube: Kube, namespace: str) -> None:
    # Given a plain Deployment with 3 replicas
    kube.apps.create_namespaced_deployment(namespace, make_deployment("web", replicas=3))

    # When the control plane has had time to act
    wait_for(
        lambda: deployment_available(kube.apps, namespace, "web"),
        60,
        "web Available",
        describe=lambda: deployment_status(kube.apps, namespace, "web"),
    )

    # Then there are exactly 3 Ready pods, all on kwok's fake nodes
    pods = pods_of(kube, namespace, "web")
    assert len(pods) == 3
    assert all(pod_ready(p) for p in pods)
    fake_nodes = {n.metadata.name for n in kube.core.list_node(label_selector="type=kwok").items}
    assert len(fake_nodes) == 3
    assert {p.spec.node_name for p in pods} <= fake_nodes


def test_image_change_rolls_out_a_second_replicaset(kube: Kube, namespace: str) -> None:
    # Given web:v1 fully rolled out
    kube.apps.create_namespaced_deployment(namespace, make_deployment("web", image="example.com/web:v1"))
    wait_for(lambda: deployment_available(kube.apps, namespace, "web"), 60, "web v1 Available")
    assert len(replica_sets(kube.apps, namespace, "web")) == 1

    # When the image changes
    set_image(kube.apps, namespace, "web", "example.com/web:v2")

    # Then the Deployment controller creates a 2nd ReplicaSet and scales the old one to 0
    def rolled_out() -> bool:
        sets = replica_sets(kube.apps, namespace, "web")
        return (
            len(sets) == 2
            and sets[0].spec.replicas == 0
            and (sets[0].status.replicas or 0) == 0
            and deployment_available(kube.apps, namespace, "web")
        )

    wait_for(rolled_out, 90, "rollout to web:v2", describe=lambda: deployment_status(kube.apps, namespace, "web"))
    old, new = replica_sets(kube.apps, namespace, "web")
    assert new.spec.template.spec.containers[0].image == "example.com/web:v2"
    assert old.spec.template.spec.containers[0].image == "example.com/web:v1"
    by_rs = wait_for(
        lambda: (lambda m: m if len(m[old.metadata.name]) == 0 else None)(pods_by_rs(kube, namespace, "web")),
        30,
        "old pods gone",
    )
    assert len(by_rs[new.metadata.name]) == 3
    assert all(pod_ready(p) for p in by_rs[new.metadata.name])


def test_never_ready_pods_leave_the_deployment_unavailable(kube: Kube, namespace: str) -> None:
    # Given a Deployment whose pods never become Ready
    kube.apps.create_namespaced_deployment(namespace, make_deployment("broken", replicas=2, behaviour=NEVER_READY))

    # When its pods are running
    def running() -> bool:
        pods = pods_of(kube, namespace, "broken")
        return len(pods) == 2 and all(p.status.phase == "Running" for p in pods)

    wait_for(running, 60, "2 running pods")

    # Then the Deployment reports 2 unavailable replicas, and keeps doing so
    def unavailable() -> bool:
        st = kube.apps.read_namespaced_deployment("broken", namespace).status
        return (st.unavailable_replicas or 0) == 2 and not st.ready_replicas and not st.available_replicas

    wait_for(
        unavailable, 30, "2 unavailable replicas", describe=lambda: deployment_status(kube.apps, namespace, "broken")
    )
    stays(unavailable, 3, "2 unavailable replicas")
    assert not any(pod_ready(p) for p in pods_of(kube, namespace, "broken"))


def test_crashloop_pods_restart_in_crashloopbackoff(kube: Kube, namespace: str) -> None:
    # Given a Deployment whose container keeps crashing
    kube.apps.create_namespaced_deployment(namespace, make_deployment("crashy", replicas=1, behaviour=CRASHLOOP))

    # Then its pod shows CrashLoopBackOff with a restartCount that keeps growing
    pods = wait_for(
        lambda: [p for p in pods_of(kube, namespace, "crashy") if restart_counts([p])[0] > 0], 60, "a restarted pod"
    )
    assert "CrashLoopBackOff" in waiting_reasons(pods)
    assert not pod_ready(pods[0])
    first = restart_counts(pods)[0]
    wait_for(
        lambda: restart_counts(pods_of(kube, namespace, "crashy"))[0] > first, 20, f"restartCount to grow past {first}"
    )
    st = kube.apps.read_namespaced_deployment("crashy", namespace).status
    assert (st.unavailable_replicas or 0) == 1


def test_prometheus_scrapes_a_local_target(prometheus: Prometheus) -> None:
    # Given a process exposing a metric on 127.0.0.1
    calls = {"n": 0}

    def body() -> str:
        calls["n"] += 1
        return f'# TYPE deliver_e2e_requests_total counter\ndeliver_e2e_requests_total{{code="200"}} {calls["n"]}\n'

    with metrics_server(body) as address:
        # When Prometheus is told to scrape it
        prometheus.add_target("probe", address, {"track": "stable"})

        # Then the query API returns its series with our labels
        series = prometheus.wait_for_series('deliver_e2e_requests_total{job="probe"}', timeout=30)
        assert series[0]["metric"]["track"] == "stable"
        assert series[0]["metric"]["instance"] == address
        up = prometheus.query('up{job="probe"}')
        assert up and up[0]["value"][1] == "1"


def test_envoy_answers_on_admin_and_proxies(envoy: Envoy) -> None:
    # Given an upstream on 127.0.0.1 and Envoy with a listener routing to it
    with metrics_server(lambda: "upstream_hello 1\n") as upstream:
        host, port = upstream.split(":")
        listen = free_port()
        envoy.start(
            {
                "static_resources": {
                    "listeners": [
                        {
                            "name": "http",
                            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                            "filter_chains": [
                                {
                                    "filters": [
                                        {
                                            "name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": {
                                                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                                "http_connection_manager.v3.HttpConnectionManager",
                                                "stat_prefix": "ingress",
                                                "route_config": {
                                                    "virtual_hosts": [
                                                        {
                                                            "name": "all",
                                                            "domains": ["*"],
                                                            "routes": [
                                                                {
                                                                    "match": {"prefix": "/"},
                                                                    "route": {"cluster": "upstream"},
                                                                }
                                                            ],
                                                        }
                                                    ]
                                                },
                                                "http_filters": [
                                                    {
                                                        "name": "envoy.filters.http.router",
                                                        "typed_config": {
                                                            "@type": "type.googleapis.com/"
                                                            "envoy.extensions.filters.http.router.v3.Router"
                                                        },
                                                    }
                                                ],
                                            },
                                        }
                                    ]
                                }
                            ],
                        }
                    ],
                    "clusters": [
                        {
                            "name": "upstream",
                            "type": "STATIC",
                            "connect_timeout": "1s",
                            "load_assignment": {
                                "cluster_name": "upstream",
                                "endpoints": [
                                    {
                                        "lb_endpoints": [
                                            {
                                                "endpoint": {
                                                    "address": {
                                                        "socket_address": {"address": host, "port_value": int(port)}
                                                    }
                                                }
                                            }
                                        ]
                                    }
                                ],
                            },
                        }
                    ],
                },
            }
        )

        # Then the admin port answers, exposes Prometheus stats, and traffic flows through
        with urllib.request.urlopen(f"{envoy.admin_url}/ready", timeout=5) as resp:
            assert resp.read().decode().strip() == "LIVE"
        with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=5) as resp:
            assert resp.status == 200 and "upstream_hello" in resp.read().decode()
        stats = envoy.stats()
        assert "envoy_cluster_upstream_rq_total" in stats


def test_envoy_splits_traffic_by_weight_and_prometheus_sees_it(envoy: Envoy, prometheus: Prometheus) -> None:
    # Given two upstreams behind an Envoy splitter, all traffic on "stable"
    with metrics_server(lambda: "who 1\n# stable\n") as stable, metrics_server(lambda: "who 2\n# canary\n") as canary:
        envoy.start_splitter({"stable": stable, "canary": canary}, {"stable": 100, "canary": 0})
        prometheus.add_target("envoy", envoy.admin_address, metrics_path="/stats/prometheus")

        def hits(n: int) -> dict[str, int]:
            seen = {"stable": 0, "canary": 0}
            for _ in range(n):
                with urllib.request.urlopen(f"{envoy.url}/metrics", timeout=5) as resp:
                    seen["canary" if "canary" in resp.read().decode() else "stable"] += 1
            return seen

        assert hits(20) == {"stable": 20, "canary": 0}

        # When the split moves to 50/50, then to all-canary, without restarting Envoy
        pid = envoy.proc.pid if envoy.proc else None
        envoy.set_weights({"stable": 50, "canary": 50})
        assert envoy.weights() == {"stable": 50, "canary": 50}
        mixed = hits(60)
        envoy.set_weights({"stable": 0, "canary": 100})

        # Then traffic follows the weights, Envoy kept its pid, and Prometheus has per-cluster counts
        assert mixed["stable"] > 5 and mixed["canary"] > 5
        assert hits(20) == {"stable": 0, "canary": 20}
        assert envoy.proc is not None and envoy.proc.pid == pid
        series = prometheus.wait_for_series(
            'envoy_cluster_upstream_rq_total{job="envoy",envoy_cluster_name="canary"} > 0', timeout=30
        )
        assert series


def test_service_account_tokens_and_rbac_are_enforced(kube: Kube, namespace: str, run_dir: Path) -> None:
    # Given a ServiceAccount with no permissions and a bound token for it
    kube.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot"))
    )
    kcfg = service_account_kubeconfig(kube, namespace, "robot", run_dir / "robot.kubeconfig")
    robot = client.CoreV1Api(api_client(kcfg))

    # Then the API server authenticates it but RBAC forbids listing pods
    with pytest.raises(client.ApiException) as denied:
        robot.list_namespaced_pod(namespace)
    assert denied.value.status == 403

    # When a Role grants it, the same token works
    kube.rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    kube.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="robot-reads-pods"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="robot", namespace=namespace)],
        ),
    )
    wait_for(lambda: robot.list_namespaced_pod(namespace) is not None, 15, "RBAC grant to take effect")
