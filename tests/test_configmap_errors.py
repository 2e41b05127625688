"""A transient API error reading deliver.dev/analysis-config is not an invalid annotation (issue 10
defect 12): the pass is retried soon, no InvalidAnnotation Warning; a ConfigMap that really is
missing stays an invalid annotation."""

from __future__ import annotations

from delivery.errors import KubeError
from delivery.kube.client import CONFIGMAPS
from tests.fixture import Fixture

V1, V2 = "web:v1", "web:v2"
CHECKS = {"analysis": "checkout", "analysis_config": "web-analysis"}


def configmap() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-analysis"},
        "data": {"checkout.total": "sum(rate(x[1m]))", "checkout.errors": "sum(rate(y[1m]))"},
    }


def mid_delivery() -> Fixture:
    f = Fixture()
    f.kube.put(CONFIGMAPS, configmap())
    f.given_deployment("canary", V1, replicas=3, steps="20,50,100", interval="30s", **CHECKS)
    f.given_delivered()
    f.when_template_changes(V2)
    f.when_reconciled()
    assert f.record()["phase"] == "Progressing"
    return f


def test_a_transient_configmap_read_error_is_retried_not_an_invalid_annotation() -> None:
    f = mid_delivery()
    f.kube.fail_next(KubeError("503 etcdserver: leader changed", status=503), verb="get", resource=CONFIGMAPS)

    outcome = f.when_reconciled()

    assert f.events("InvalidAnnotation") == [], "the annotation is fine; the API was not"
    assert outcome.requeue_after is not None and outcome.requeue_after <= 5.0, "retried soon"
    assert outcome.phase != "Invalid"
    f.crashing.add(V2)  # the next pass works as usual: a crash-looping canary is rolled back
    f.cluster()
    f.when_settled()
    assert f.record()["phase"] == "RolledBack"


def test_a_missing_configmap_is_still_an_invalid_annotation() -> None:
    f = mid_delivery()
    f.kube.remove(CONFIGMAPS, "web-analysis")

    outcome = f.when_reconciled()

    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/analysis-config" in warning["message"] and outcome.phase == "Invalid"
