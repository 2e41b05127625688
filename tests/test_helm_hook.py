"""``deliver helm-hook``: the Helm hook Job that runs ``deliver gate`` (docs/helm.md)."""

from __future__ import annotations

from typing import Any

import yaml
from click.testing import CliRunner

from delivery.cli import main
from delivery.integrations.helmhook import GRACE, manifests


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_the_hook_is_a_job_running_the_gate_with_a_read_only_role() -> None:
    docs = by_kind(manifests("web", "registry.example/deliver:1.2", 600))
    assert sorted(docs) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    job = docs["Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["deliver"]
    assert container["args"] == ["gate", "web", "--namespace", "$(POD_NAMESPACE)", "--timeout", "600s"]
    assert container["image"] == "registry.example/deliver:1.2"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 600 + GRACE
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"] == "deliver-gate-web"
    assert docs["Role"]["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}
    ]
    assert docs["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "deliver-gate-web"}]
    # created before the Job, in Helm's hook order; none of them with a namespace (the release's)
    weights = {k: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for k, d in docs.items()}
    assert weights["ServiceAccount"] < weights["RoleBinding"] < weights["Job"]
    assert all(d["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade" for d in docs.values())
    assert not any("namespace" in d["metadata"] for d in docs.values())


def test_the_cli_prints_plain_yaml_a_chart_can_hold() -> None:
    r = CliRunner().invoke(main, ["helm-hook", "web", "--timeout", "90s", "--pin-image", "{{ .Values.image }}"])
    assert r.exit_code == 0, r.output
    assert "&id" not in r.output and "*id" not in r.output, "no YAML anchors"
    job = by_kind(list(yaml.safe_load_all(r.output)))["Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-4:] == ["--timeout", "90s", "--image", "{{ .Values.image }}"]


def test_a_bad_name_or_timeout_is_a_usage_error() -> None:
    for argv in (
        ["helm-hook", "Web"],
        ["helm-hook", "web", "--timeout", "soon"],
        ["helm-hook", "web", "--name", "a_b"],
    ):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 2, (argv, r.output)
