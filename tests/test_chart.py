"""The Helm chart, checked with the real helm binary (built from its Go module by e2e.binaries).

`helm lint --strict` and `helm template` for the main value combinations, and the RBAC proven
least-privilege against the code: every verb the engine calls is granted, nothing else is.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from delivery.kube.cache import CACHED
from e2e.binaries import helm_path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "deliver"
HELM = helm_path()

pytestmark = pytest.mark.skipif(not HELM.exists(), reason=f"helm not built ({HELM}); run `python -m e2e.binaries`")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check, timeout=120)


def names(key: str, message: str) -> bool:
    """The message names the value: dotted (a template's fail) or as the schema's JSON pointer."""
    return key in message or f"'/{key.replace('.', '/')}'" in message


MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def render(
    *sets: str, namespace: str = "deliver-system", api_versions: tuple[str, ...] = (), tests: bool = False
) -> list[dict[str, Any]]:
    """What `helm install` creates (with ``tests``: also the `helm test` hook's objects)."""
    args = ["template", "rel", str(CHART), "-n", namespace, *([] if tests else ["--skip-tests"])]
    for api in api_versions:
        args += ["--api-versions", api]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_helm_lint_strict() -> None:
    result = helm("lint", str(CHART), "--strict", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    result = helm(
        "lint",
        str(CHART),
        "--strict",
        "--set",
        "watch.scope=namespaced",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "routers.gatewayApi=true",
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_install_cluster_wide_with_leader_election() -> None:
    by = kinds(render("holdPolicy.install=false"))
    assert set(by) == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    }
    dep = by["Deployment"][0]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    assert args[0] == "run" and "--all-namespaces" in args and "--leader-elect" in args
    assert "--lease-namespace=deliver-system" in args and "--metrics-addr=:8080" in args
    assert "--hold-mode=auto" in args and "--hold-policy=deliver-hold-template-changes" in args
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["serviceAccountName"] == by["ServiceAccount"][0]["metadata"]["name"] == "rel-deliver"
    assert {e["name"] for e in c["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    assert any(v.get("emptyDir") is not None for v in pod["volumes"])  # /tmp on a read-only root
    svc = by["Service"][0]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    binding = next(b for b in by["ClusterRoleBinding"] if b["metadata"]["name"] == "rel-deliver")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-deliver", "namespace": "deliver-system"}]
    assert "--metrics-auth=kubernetes" in args  # /metrics names tenants: a token is asked for (issue 24)


def test_metrics_are_read_only_with_a_token_the_api_server_authorizes() -> None:
    by = kinds(render("metrics.serviceMonitor.enabled=true"))
    bindings = {b["metadata"]["name"]: b for b in by["ClusterRoleBinding"]}
    delegator = bindings["rel-deliver-deliver-system-auth-delegator"]
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"][0]["name"] == "rel-deliver"
    reader = next(r for r in by["ClusterRole"] if r["metadata"]["name"] == "rel-deliver-deliver-system-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    endpoint = by["ServiceMonitor"][0]["spec"]["endpoints"][0]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    # auth off: no binding, no token, the flag says so
    off = kinds(render("metrics.auth=none", "metrics.serviceMonitor.enabled=true"))
    assert [b["metadata"]["name"] for b in off["ClusterRoleBinding"]] == ["rel-deliver", "rel-deliver-hold-policy"]
    assert "bearerTokenFile" not in off["ServiceMonitor"][0]["spec"]["endpoints"][0]
    args = off["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--metrics-auth=none" in args
    bad = helm("template", "rel", str(CHART), "--set", "metrics.auth=open", check=False)
    assert bad.returncode != 0 and names("metrics.auth", bad.stderr)


def test_namespaced_mode_has_no_cluster_rights() -> None:
    by = kinds(
        render("watch.scope=namespaced", "watch.namespace=apps", "metrics.auth=none", namespace="deliver-system")
    )
    assert "ClusterRole" not in by and "ClusterRoleBinding" not in by
    # with /metrics behind a token (the default), the only cluster-wide binding is the token and
    # access reviews' system:auth-delegator, and the only ClusterRole the scrapers' metrics-reader
    with_auth = kinds(render("watch.scope=namespaced", "watch.namespace=apps", namespace="deliver-system"))
    assert [b["roleRef"]["name"] for b in with_auth["ClusterRoleBinding"]] == ["system:auth-delegator"]
    assert [r["metadata"]["name"] for r in with_auth["ClusterRole"]] == ["rel-deliver-deliver-system-metrics-reader"]
    roles = {r["metadata"]["name"]: r for r in by["Role"]}
    assert roles["rel-deliver"]["metadata"]["namespace"] == "apps"
    assert roles["rel-deliver-leader-election"]["metadata"]["namespace"] == "deliver-system"
    args = by["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=apps", "run"] and "--namespaced" in args
    binding = next(b for b in by["RoleBinding"] if b["metadata"]["name"] == "rel-deliver")
    assert binding["metadata"]["namespace"] == "apps"
    assert binding["subjects"][0]["namespace"] == "deliver-system"


def test_leader_election_role_is_limited_to_its_lease() -> None:
    role = next(r for r in render() if r["kind"] == "Role")
    rules = role["rules"]
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]} in rules
    named = next(r for r in rules if r.get("resourceNames"))
    assert named["resourceNames"] == ["deliver-controller"] and named["verbs"] == ["get", "update"]


def test_single_replica_without_leader_election() -> None:
    by = kinds(render("replicaCount=1", "leaderElection.enabled=false"))
    args = by["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-leader-elect" in args and "PodDisruptionBudget" not in by
    assert all("leader" not in r["metadata"]["name"] for r in by.get("Role", []))


def test_invalid_values_fail_with_a_message() -> None:
    bad = helm(
        "template", "rel", str(CHART), "--set", "replicaCount=2", "--set", "leaderElection.enabled=false", check=False
    )
    assert bad.returncode != 0 and "leaderElection" in bad.stderr
    bad = helm("template", "rel", str(CHART), "--set", "watch.scope=galaxy", check=False)
    assert bad.returncode != 0 and names("watch.scope", bad.stderr)


def test_service_monitor_and_image_values() -> None:
    by = kinds(
        render(
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prom",
            "image.repository=registry.example/deliver",
            "image.tag=1.2.3",
        )
    )
    sm = by["ServiceMonitor"][0]
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert by["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/deliver:1.2.3"


def controller(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = kinds(docs)["Deployment"][0]["spec"]["template"]["spec"]
    return pod


def test_prometheus_credentials_come_from_a_mounted_secret_never_the_url() -> None:
    pod = controller(
        render(
            "analysis.prometheusUrl=https://prometheus.monitoring.svc:9090",
            "analysis.prometheus.secretName=prom-creds",
            "analysis.prometheus.username=deliver",
            "analysis.prometheus.passwordKey=password",
            "analysis.prometheus.caKey=ca.crt",
            "analysis.prometheus.certKey=tls.crt",
            "analysis.prometheus.keyKey=tls.key",
            "analysis.prometheus.headers.X-Scope-OrgID=team-a",
            "analysis.prometheus.maxSeries=500",
        )
    )
    [c] = pod["containers"]
    d = "/etc/deliver/prometheus"
    for arg in (
        "--prometheus-username=deliver",
        f"--prometheus-password-file={d}/password",
        f"--prometheus-ca-file={d}/ca.crt",
        f"--prometheus-cert-file={d}/tls.crt",
        f"--prometheus-key-file={d}/tls.key",
        "--prometheus-header=X-Scope-OrgID=team-a",
        "--prometheus-max-series=500",
        "--prometheus-max-bytes=8388608",
        "--prometheus-timeout=10s",
    ):
        assert arg in c["args"], c["args"]
    assert {"name": "prometheus-credentials", "mountPath": d, "readOnly": True} in c["volumeMounts"]
    [vol] = [v for v in pod["volumes"] if v["name"] == "prometheus-credentials"]
    assert vol["secret"] == {"secretName": "prom-creds", "defaultMode": 0o400}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DELIVER_PROMETHEUS_URL"] == "https://prometheus.monitoring.svc:9090"


def test_prometheus_service_account_token_and_bad_combinations() -> None:
    [c] = controller(
        render("analysis.prometheusUrl=https://prom:9090", "analysis.prometheus.serviceAccountToken=true")
    )["containers"]
    assert "--prometheus-bearer-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token" in c["args"]
    assert not any(a.startswith("--prometheus") for a in controller(render())["containers"][0]["args"])
    for sets, says in (
        (["analysis.prometheus.passwordKey=pw"], "secretName"),
        (["analysis.prometheus.secretName=s", "analysis.prometheus.username=u"], "username and passwordKey"),
        (["analysis.prometheus.secretName=s", "analysis.prometheus.certKey=c"], "certKey and keyKey"),
    ):
        args = ["template", "rel", str(CHART)]
        for one in sets:
            args += ["--set", one]
        bad = helm(*args, check=False)
        assert bad.returncode != 0 and says in bad.stderr, bad.stderr


def test_an_image_digest_pins_the_image() -> None:
    digest = "sha256:" + "ab" * 32
    by = kinds(render("image.repository=registry.example/deliver", "image.tag=1.2.3", f"image.digest={digest}"))
    assert (
        by["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"registry.example/deliver@{digest}"
    )
    bad = helm("template", "rel", str(CHART), "--set", "image.digest=latest", check=False)
    assert bad.returncode != 0 and names("image.digest", bad.stderr)


# ---------------------------------------------------------------- least privilege, checked against the code

# Resource constants of delivery/kube/client.py -> (API group, plural)
RESOURCES = {
    "DEPLOYMENTS": ("apps", "deployments"),
    "REPLICASETS": ("apps", "replicasets"),
    "PODS": ("", "pods"),
    "SERVICES": ("", "services"),
    "EVENTS": ("", "events"),
    "CONFIGMAPS": ("", "configmaps"),
    "PDBS": ("policy", "poddisruptionbudgets"),
    "LEASES": ("coordination.k8s.io", "leases"),
}
METHOD_VERB = {
    "get": "get",
    "items": "list",
    "list": "list",
    "create": "create",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
    "watch": "watch",
}
ENGINE = [
    "engine/act.py",
    "engine/observe.py",
    "engine/reconcile.py",
    "integrations/events.py",
    "engine/state.py",
    "engine/controller.py",
    "engine/health.py",
    "engine/verdicts.py",
    "engine/takeover.py",
]
ROUTERS = {
    "routers.gatewayApi": {("gateway.networking.k8s.io", "httproutes", v) for v in ("get", "patch")},
    "routers.nginx": {("networking.k8s.io", "ingresses", v) for v in ("get", "create", "patch")},
    "routers.istio": {("networking.istio.io", "virtualservices", v) for v in ("get", "patch")},
    "routers.smi": {("split.smi-spec.io", "trafficsplits", v) for v in ("get", "patch")},
}


def used_by_engine() -> set[tuple[str, str, str]]:
    used: set[tuple[str, str, str]] = set()
    call = re.compile(r"kube\.(get|items|list|create|patch|replace|delete|watch)\(\s*([A-Z_]+)")
    for name in ENGINE:
        for method, const in call.findall((ROOT / "delivery" / name).read_text()):
            if const in RESOURCES:
                group, plural = RESOURCES[const]
                used.add((group, plural, METHOD_VERB[method]))
    # the informers list and watch, through a Resource variable, every resource the cache keeps
    for res in CACHED:
        used |= {(res.group, res.plural, "list"), (res.group, res.plural, "watch")}
    return used


def test_rbac_grants_exactly_what_the_engine_uses() -> None:
    used = used_by_engine()
    assert ("apps", "replicasets", "create") in used and ("", "events", "create") in used  # the scan works
    role = next(d for d in render() if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "rel-deliver")
    granted = grants(role["rules"])
    assert used - granted == set(), "the engine needs verbs the chart does not grant"
    assert granted - used == set(), "the chart grants verbs the engine never uses"


@pytest.mark.parametrize("flag", sorted(ROUTERS))
def test_each_router_adds_only_its_own_rights(flag: str) -> None:
    base = grants(
        next(d for d in render() if d["metadata"]["name"] == "rel-deliver" and d["kind"] == "ClusterRole")["rules"]
    )
    with_router = grants(
        next(
            d for d in render(f"{flag}=true") if d["metadata"]["name"] == "rel-deliver" and d["kind"] == "ClusterRole"
        )["rules"]
    )
    assert with_router - base == ROUTERS[flag]


def test_every_registered_router_has_a_value_granting_its_resources() -> None:
    """A router added to the registry (delivery/routing/kinds.py) needs its routers.* value here."""
    from delivery.routing import kinds as routers
    from delivery.routing.base import router_class

    granted = {(group, plural) for rights in ROUTERS.values() for group, plural, _ in rights}
    for kind in routers.names():
        for res in router_class(kind).resources:
            assert (res.group, res.plural) in granted, f"router {kind}: no routers.* value grants {res.plural}"


def test_the_hold_policy_is_what_deliver_hold_policy_prints() -> None:
    from delivery.engine.holdpolicy import all_manifests

    by = kinds(render(api_versions=(MAP_API,)))
    rendered = [
        *by["MutatingAdmissionPolicy"],
        *by["MutatingAdmissionPolicyBinding"],
        *by["ValidatingAdmissionPolicy"],
        *by["ValidatingAdmissionPolicyBinding"],
    ]
    assert rendered == all_manifests()
    hold = next(r for r in by["ClusterRole"] if r["metadata"]["name"] == "rel-deliver-hold-policy")
    assert grants(hold["rules"]) == {
        ("admissionregistration.k8s.io", res, verb)
        for res in ("mutatingadmissionpolicies", "mutatingadmissionpolicybindings")
        for verb in ("get", "list", "watch")
    }


def test_no_hold_policy_when_not_installed_or_paused() -> None:
    assert "MutatingAdmissionPolicy" not in kinds(render("holdPolicy.install=false", api_versions=(MAP_API,)))
    by = kinds(render("holdPolicy.mode=paused", "holdPolicy.install=false"))
    assert all(r["metadata"]["name"] != "rel-deliver-hold-policy" for r in by["ClusterRole"])
    args = by["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--hold-mode=paused" in args


# ---------------------------------------------------------------- egress (docs/security.md, "Outbound calls")


def controller_args(*sets: str) -> list[str]:
    [dep] = kinds(render(*sets))["Deployment"]
    return list(dep["spec"]["template"]["spec"]["containers"][0]["args"])


def test_egress_values_become_the_controllers_flags() -> None:
    args = controller_args(
        "egress.allowHosts={*.ci.svc,hooks.example.com}",
        "egress.allowCIDRs={10.20.0.0/16}",
        "egress.denyCIDRs={10.96.0.0/12,10.244.0.0/16}",
        "egress.public=false",
        "egress.hookCallsPerNamespace=3",
        "notifications.senders=6",
        "notifications.queuePerNamespace=20",
    )
    for flag in (
        "--egress-allow-host=*.ci.svc",
        "--egress-allow-host=hooks.example.com",
        "--egress-allow-cidr=10.20.0.0/16",
        "--egress-deny-cidr=10.96.0.0/12",
        "--egress-deny-cidr=10.244.0.0/16",
        "--no-egress-public",
        "--hook-calls-per-namespace=3",
        "--notify-senders=6",
        "--notify-queue-per-namespace=20",
    ):
        assert flag in args
    assert "--no-egress-public" not in controller_args()


def test_the_network_policy_lets_the_controller_reach_only_what_its_egress_policy_allows() -> None:
    assert "NetworkPolicy" not in kinds(render()), "opt-in: it needs the API server's addresses"
    [np] = kinds(
        render(
            "networkPolicy.enabled=true",
            "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
            "analysis.prometheusUrl=http://prometheus.monitoring.svc:9090",
            "networkPolicy.prometheus.namespaceSelector.matchLabels.team=monitoring",
            "egress.allowCIDRs={10.20.0.0/16}",
            "egress.denyCIDRs={10.96.0.0/12,fd00:10:96::/112}",
        )
    )["NetworkPolicy"]
    spec = np["spec"]
    assert spec["policyTypes"] == ["Egress"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "rel"
    api, dns, prometheus, allowed, public = spec["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}] and {p["port"] for p in api["ports"]} == {443, 6443}
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert prometheus["to"][0]["namespaceSelector"] == {"matchLabels": {"team": "monitoring"}}
    assert prometheus["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert allowed == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}
    v4, v6 = (b["ipBlock"] for b in public["to"])
    assert v4["cidr"] == "0.0.0.0/0" and v6["cidr"] == "::/0"
    for denied in ("169.254.0.0/16", "127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16", "10.96.0.0/12"):
        assert denied in v4["except"]
    for denied in ("fe80::/10", "fc00::/7", "fd00:10:96::/112"):
        assert denied in v6["except"]

    [np] = kinds(
        render("networkPolicy.enabled=true", "networkPolicy.apiServer.cidrs={10.0.0.1/32}", "egress.public=false")
    )["NetworkPolicy"]
    assert len(np["spec"]["egress"]) == 2, "API server and DNS only: no public rule, no Prometheus"


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["networkPolicy.enabled=true"], "networkPolicy.apiServer.cidrs"),
        (
            [
                "networkPolicy.enabled=true",
                "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
                "analysis.prometheusUrl=http://p:9090",
            ],
            "networkPolicy.prometheus",
        ),
    ],
)
def test_a_network_policy_without_what_it_needs_fails_with_what_to_set(sets: list[str], needle: str) -> None:
    args = ["template", "rel", str(CHART)]
    for s in sets:
        args += ["--set", s]
    result = helm(*args, check=False)
    assert result.returncode != 0 and needle in result.stderr


def test_a_namespaced_install_holds_at_rest_unless_told_the_policy_is_there() -> None:
    def args(*sets: str) -> list[str]:
        docs = render("watch.scope=namespaced", "watch.namespace=apps", *sets)
        return list(kinds(docs)["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--hold-mode=paused" in args()  # it may not read the cluster-wide policy
    assert "--hold-mode=policy" in args("holdPolicy.mode=policy")


# ---------------------------------------------------------------- values.schema.json: typos refused (issue 29)

SCHEMA = CHART / "values.schema.json"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("watch.scop=namespaced", "at '/watch': additional properties 'scop' not allowed"),
        ("replicaCount=two", "at '/replicaCount': got string, want integer"),
        ("replicaCount=-1", "at '/replicaCount': minimum"),
        ("watch.scope=galaxy", "at '/watch/scope': value must be one of 'cluster', 'namespaced'"),
        ("holdPolicy.mode=sometimes", "at '/holdPolicy/mode'"),
        ("logLevel=VERBOSE", "at '/logLevel'"),
        ("imageTag=1.2.3", "at '': additional properties 'imageTag' not allowed"),
        ("metrics.service.prot=80", "at '/metrics/service': additional properties 'prot' not allowed"),
        ("metrics.port=http", "at '/metrics/port': got string, want integer"),
        ("leaderElection.enabled=yes", "at '/leaderElection/enabled': got string, want boolean"),
        ("leaderElection.leaseDuration=15", "at '/leaderElection/leaseDuration'"),
        ("analysis.prometheusUrl=http://user:pw@prom:9090", "at '/analysis/prometheusUrl'"),
        ("egress.denyCIDRs={10.96.0.0}", "at '/egress/denyCIDRs/0'"),
        ("tests.activeDeadlineSeconds=0", "at '/tests/activeDeadlineSeconds': minimum"),
        ("routers.linkerd=true", "at '/routers': additional properties 'linkerd' not allowed"),
    ],
)
def test_typos_and_wrong_types_are_refused_naming_the_key(value: str, says: str) -> None:
    for command in (["template", "rel"], ["lint", "--strict"]):
        result = helm(*command, str(CHART), "--set", value, check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0 and says in out, out


def _walk(values: Any, schema: dict[str, Any], path: str, found: list[str], definitions: dict[str, Any]) -> None:
    """Every key of ``values`` is a property of ``schema`` with a description, and every property a key."""
    props = schema.get("properties")
    if props is None or "$ref" in schema:
        return  # a map, or a Kubernetes type: its contents are the API server's to check
    assert schema.get("additionalProperties") is False, f"{path or '(top)'}: unknown keys must be refused"
    assert isinstance(values, dict), path
    assert set(values) == set(props), f"{path or '(top)'}: values.yaml {sorted(values)} != schema {sorted(props)}"
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        sub = props[key]
        assert sub.get("description"), f"{where}: no description in the schema"
        if "$ref" in sub:
            sub = {**definitions[sub["$ref"].removeprefix("#/definitions/")], "$ref": sub["$ref"]}
        types = sub["type"] if isinstance(sub["type"], list) else [sub["type"]]
        python = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": float}
        assert any(isinstance(value, python[t]) for t in types), f"{where}: default {value!r} is not {types}"
        found.append(where)
        if isinstance(value, dict):
            _walk(value, sub, where, found, definitions)


def test_the_schema_and_values_yaml_describe_the_same_keys() -> None:
    import json

    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    found: list[str] = []
    _walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "", found, schema["definitions"])
    assert "watch.scope" in found and "analysis.prometheus.maxBytes" in found and len(found) > 120
    assert schema["properties"]["watch"]["properties"]["scope"]["enum"] == ["cluster", "namespaced"]


# the placeholders the docs use for what only the reader knows
PLACEHOLDERS = {"<your registry>": "registry.example.com", "sha256:...": "sha256:" + "0" * 64}
DOCS = [CHART / "README.md", ROOT / "docs" / "install.md", ROOT / "docs" / "operations.md"]


def documented_sets() -> list[tuple[str, list[str]]]:
    """The `--set`s of each documented helm install/upgrade (continued lines joined); other `--set`s alone."""
    found: list[tuple[str, list[str]]] = []
    for doc in DOCS:
        # transcripts of refused values (```text blocks) are not examples to follow
        text = re.sub(r"```text\n.*?```", "", doc.read_text(), flags=re.S).replace("\\\n", " ")
        for line in text.splitlines():
            sets = re.findall(r"--set\s+([^\s`\\]+)", line)
            if not sets:
                continue
            for placeholder, value in PLACEHOLDERS.items():
                sets = [s.replace(placeholder, value) for s in sets]
            if re.search(r"helm (install|upgrade)", line):
                found.append((f"{doc.name}: {line.strip()[:60]}", sets))
            else:
                found += [(f"{doc.name}: --set {s}", [s]) for s in sets if "=" in s]
    return found


def test_every_documented_set_renders() -> None:
    examples = documented_sets()
    assert len([e for e in examples if "helm install" in e[0]]) >= 4, examples
    for where, sets in examples:
        args = ["template", "deliver", str(CHART), "-n", "deliver-system"]
        for one in sets:
            args += ["--set", one]
        result = helm(*args, check=False)
        assert result.returncode == 0, f"{where}: {result.stderr}"
    # and no documented install leaves the image at the name of the local archive
    for doc in DOCS:
        for command in re.findall(r"helm install [^\n]*", doc.read_text().replace("\\\n", " ")):
            assert "image.repository=" in command and "image.digest=" in command, f"{doc.name}: {command}"


def test_kube_version_is_the_oldest_serving_every_api_used() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.21.0-0"  # policy/v1 PodDisruptionBudget, GA in 1.21
    too_old = helm("template", "rel", str(CHART), "--kube-version", "1.20.15", check=False)
    assert too_old.returncode != 0 and "kubeVersion" in too_old.stderr
    helm("template", "rel", str(CHART), "--kube-version", "v1.21.14-eks-0a1b2c")  # vendor builds too


# ---------------------------------------------------------------- helm test (templates/tests/)


def hook_pod(*sets: str) -> dict[str, Any]:
    [pod] = kinds(render(*sets, tests=True))["Pod"]
    return pod


def test_the_test_hook_runs_check_install_as_the_controllers_service_account() -> None:
    pod = hook_pod()
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["annotations"]["helm.sh/hook"] == "test"
    assert meta["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert spec["serviceAccountName"] == "rel-deliver" and spec["restartPolicy"] == "Never"
    assert 0 < spec["activeDeadlineSeconds"] <= 300
    [c] = spec["containers"]
    dep = kinds(render())["Deployment"][0]
    assert c["image"] == dep["spec"]["template"]["spec"]["containers"][0]["image"] and c["command"] == ["deliver"]
    assert c["args"] == [
        "check-install",
        "--all-namespaces",
        "--lease-name=deliver-controller",
        "--lease-namespace=deliver-system",
        "--pods=app.kubernetes.io/name=deliver,app.kubernetes.io/instance=rel,app.kubernetes.io/component=controller",
    ]
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and spec["securityContext"]["runAsNonRoot"] is True
    # not selected by the controller's Deployment (its ReplicaSet would adopt the Pod), Service or PDB
    selector = dep["spec"]["selector"]["matchLabels"]
    assert not all(meta["labels"].get(k) == v for k, v in selector.items())
    # the pods it lists are the controller's: the Deployment's pod labels match --pods
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    wanted = dict(kv.split("=") for kv in c["args"][-1].removeprefix("--pods=").split(","))
    assert all(pod_labels.get(k) == v for k, v in wanted.items())


def test_the_test_hook_has_no_rights_of_its_own() -> None:
    def rbac(*sets: str) -> list[dict[str, Any]]:
        docs = render(*sets, tests=True)
        return [d for d in docs if d["apiVersion"].startswith("rbac.") or d["kind"] == "ServiceAccount"]

    assert rbac() == rbac("tests.enabled=false")
    assert [d["kind"] for d in render(tests=True) if d["kind"] not in kinds(render())] == ["Pod"]
    assert "Pod" not in kinds(render("tests.enabled=false", tests=True))


def test_the_test_hook_follows_the_scope_and_leader_election() -> None:
    args = hook_pod("watch.scope=namespaced")["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=deliver-system", "check-install"] and "--all-namespaces" not in args
    assert any(a.startswith("--pods=") for a in args)  # the watched namespace is the release's: pods listable
    args = hook_pod("watch.scope=namespaced", "watch.namespace=apps")["spec"]["containers"][0]["args"]
    assert args[0] == "--namespace=apps" and not any(a.startswith("--pods=") for a in args)
    args = hook_pod("replicaCount=1", "leaderElection.enabled=false")["spec"]["containers"][0]["args"]
    assert args == ["check-install", "--all-namespaces", "--no-leader"]
    pod = hook_pod("tests.podLabels.team=a", "tests.activeDeadlineSeconds=60", "imagePullSecrets[0].name=reg")
    assert pod["metadata"]["labels"]["team"] == "a" and pod["spec"]["activeDeadlineSeconds"] == 60
    assert pod["spec"]["imagePullSecrets"] == [{"name": "reg"}]


def test_notes_print_the_next_commands() -> None:
    out = helm("install", "rel", str(CHART), "-n", "ds", "--dry-run=client").stdout
    notes = out[out.index("NOTES:") :]
    assert "kubectl -n ds rollout status deployment/rel-deliver" in notes
    assert "kubectl -n ds get lease deliver-controller -o jsonpath='{.spec.holderIdentity}" in notes
    assert "helm test rel -n ds --logs" in notes
    assert "kubectl annotate deployment/my-app deliver.dev/strategy=canary" in notes
    assert "push the archive to" in notes  # the default repository is only the local archive's name
    pushed = helm(
        "install", "rel", str(CHART), "-n", "ds", "--dry-run=client", "--set", "image.repository=reg.example/deliver"
    ).stdout
    assert "push the archive" not in pushed


@pytest.mark.parametrize("value", ["watch.scop=namespaced", "replicaCount=two"])
def test_helm_install_refuses_the_typos_of_issue_29(value: str) -> None:
    result = helm("install", "rel", str(CHART), "-n", "ds", "--dry-run=client", "--set", value, check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr
