"""Namespace confinement (issue 24): every series selector of a built-in or custom query is bound
to the Deployment's namespace; a query that names another namespace, or matches ``namespace`` by
regex or negation, is a spec error (offline too) and never reaches Prometheus."""

from __future__ import annotations

import re

import pytest

from delivery.analysis.checks import TEMPLATES, CheckSpec, parse_checks
from delivery.analysis.prometheus import Sample, Series
from delivery.analysis.promql import confine, selectors
from delivery.analysis.providers import MetricProvider
from delivery.analysis.runner import Analyser, AnalysisTarget
from delivery.cli.lint import lint_documents
from delivery.errors import QueryNotConfined, SpecError
from delivery.kube.client import CONFIGMAPS
from tests.fixture import Fixture

CHECKS = {"analysis": "checkout", "analysis_config": "web-analysis"}
TARGET = AnalysisTarget("shop", "web", "canaryhash", "basehash", "web-canary", "web-stable")
_SELECTOR_NS = re.compile(r'namespace="([^"]*)"')


class Recorder(MetricProvider):
    """Answers nothing; keeps every query it is asked."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def instant(self, query: str, at: float) -> tuple[Sample, ...]:
        self.seen.append(query)
        return ()

    def range(self, query: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        self.seen.append(query)
        return ()


def every_selector_bound(query: str, namespace: str) -> bool:
    """Each selector of ``query`` already carries namespace="<namespace>": binding adds nothing."""
    return confine(query, namespace) == query and selectors(query) > 0


def test_a_custom_query_without_namespace_is_bound_to_the_deployments() -> None:
    spec = CheckSpec(
        "checkout",
        "errors",
        None,
        {
            "total": 'sum(increase(checkout_total{pod_template_hash="{hash}"}[{window}]))',
            "errors": 'sum(increase({__name__=~".+_failed_total",pod_template_hash="{hash}"}[{window}]))',
        },
    )
    provider = Recorder()
    result = Analyser(provider).run([spec], TARGET, 1700000000.0, 1700000090.0)
    assert result.outcome == "inconclusive"  # no data, and never a pass
    assert provider.seen, "the queries were sent"
    for q in provider.seen:
        assert every_selector_bound(q, "shop"), q
        assert set(_SELECTOR_NS.findall(q)) == {"shop"}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_builtin_query_carries_the_namespace(template: str) -> None:
    for query in TEMPLATES[template].values():
        assert 'namespace="{namespace}"' in query, f"{template}: {query}"


def test_builtin_envoy_queries_reach_prometheus_bound_to_the_namespace() -> None:
    [check] = parse_checks({"deliver.dev/analysis": "error-rate", "deliver.dev/analysis-metrics": "envoy"})
    provider = Recorder()
    Analyser(provider).run([check], TARGET, 1700000000.0, 1700000090.0)
    assert provider.seen
    for q in provider.seen:
        assert 'envoy_cluster_name="web-' in q and every_selector_bound(q, "shop"), q


def _custom(total: str) -> dict[str, str]:
    return {
        "deliver.dev/analysis": "checkout",
        "deliver.dev/analysis-config": "web-analysis",
    }, {"checkout.total": total, "checkout.errors": "sum(rate(y[1m]))"}


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('sum(rate(x{namespace="other"}[1m]))', 'names namespace "other"'),
        ('sum(rate(x{namespace=~"shop|other"}[1m]))', '=~ matcher on "namespace"'),
        ('sum(rate(x{namespace!="shop"}[1m]))', '!= matcher on "namespace"'),
        ('sum(rate(x{namespace!~"kube-.*"}[1m]))', '!~ matcher on "namespace"'),
        ('sum(rate({"namespace"="other",__name__="x"}[1m]))', 'names namespace "other"'),
        ('sum(rate(x{a="1" or namespace="other"}[1m]))', 'names namespace "other"'),
        ("sum(info(x))", "info() reads series"),
        ('sum(rate(x{a="\\q"}[1m]))', "cannot read the string"),
    ],
)
def test_a_query_that_escapes_its_namespace_is_a_spec_error(query: str, says: str) -> None:
    annotations, data = _custom(query)
    with pytest.raises(SpecError, match=re.escape(says)) as err:
        parse_checks(annotations, lambda name: data)
    assert "checkout.total" in err.value.key
    assert 'namespace="{namespace}"' in str(err.value) or "namespace" not in says


def test_the_namespace_placeholder_is_the_way_to_name_it() -> None:
    annotations, data = _custom('sum(rate(x{namespace="{namespace}"}[{window}]))')
    [check] = parse_checks(annotations, lambda name: data)
    provider = Recorder()
    Analyser(provider).run([check], TARGET, 1700000000.0, 1700000090.0)
    assert provider.seen and all(every_selector_bound(q, "shop") for q in provider.seen)


def test_an_escaping_query_changes_nothing_and_warns() -> None:
    def configmap(total: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-analysis"},
            "data": {"checkout.total": total, "checkout.errors": "sum(rate(y[1m]))"},
        }

    f = Fixture()
    f.kube.put(CONFIGMAPS, configmap("sum(rate(x[1m]))"))
    f.given_deployment("canary", "web:v1", replicas=3, steps="20,50,100", interval="30s", **CHECKS)
    f.given_delivered()
    f.kube.put(CONFIGMAPS, configmap('sum(rate(x{namespace="other"}[1m]))'))
    f.when_template_changes("web:v2")

    outcome = f.when_reconciled()

    [warning] = f.events("InvalidAnnotation", "Warning")
    assert 'names namespace "other"' in warning["message"] and outcome.phase == "Invalid"
    assert f.record().get("phase") != "Progressing", "no step of the delivery was taken"


def test_lint_checks_the_queries_of_a_configmap_in_the_same_files() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "deliver.dev/strategy": "canary",
                "deliver.dev/steps": "20,50,100",
                "deliver.dev/analysis": "checkout",
                "deliver.dev/analysis-config": "web-analysis",
            },
        },
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}}},
    }
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-analysis"},
        "data": {"checkout.total": 'sum(rate(x{namespace=~".*"}[1m]))', "checkout.errors": "sum(rate(y[1m]))"},
    }
    [found] = lint_documents([deployment, cm], "app.yaml")
    assert not found["valid"]
    assert any("=~ matcher" in p["problem"] for p in found["problems"]), found["problems"]
    # without the ConfigMap in the files, its name is all lint can check
    [alone] = lint_documents([deployment], "app.yaml")
    assert alone["valid"], alone["problems"]


def test_confine_refuses_a_bad_namespace_argument() -> None:
    with pytest.raises(QueryNotConfined):
        confine("x", 'shop"} or {a="')
