"""Parsing deliver.dev/analysis* annotations and safe placeholder substitution."""

from __future__ import annotations

import pytest

from delivery.analysis.checks import TEMPLATES, parse_checks, render_query, validate_template
from delivery.errors import QueryError, SpecError

A = "deliver.dev/analysis"


def test_no_analysis_annotations_means_no_checks() -> None:
    assert parse_checks({"deliver.dev/strategy": "canary"}) == ()


def test_builtins_default_to_http_templates() -> None:
    er, lat = parse_checks({A: "error-rate, latency"})
    assert (er.name, er.kind, er.template) == ("error-rate", "errors", "http:error-rate")
    assert (lat.name, lat.kind, lat.template) == ("latency", "latency", "http:latency")
    assert set(er.queries) == {"total", "errors"} and set(lat.queries) == {"buckets"}
    assert er.direction == "increase" and er.critical and er.max_effect == 0.5 and er.min_samples == 1000
    assert 'pod_template_hash="{hash}"' in er.queries["total"]


def test_envoy_family() -> None:
    (er,) = parse_checks({A: "error-rate", "deliver.dev/analysis-metrics": "envoy"})
    assert er.template == "envoy:error-rate"
    assert "envoy_cluster_upstream_rq_xx" in er.queries["errors"]
    assert 'envoy_response_code_class="5"' in er.queries["errors"]


def test_per_check_options() -> None:
    (lat,) = parse_checks(
        {
            A: "latency",
            "deliver.dev/analysis.latency": (
                "direction=either, max-effect=0.2, critical=false, min-samples=500, quantile=0.95"
            ),
            "deliver.dev/analysis-alpha": "0.01",
        }
    )
    assert (lat.direction, lat.max_effect, lat.critical, lat.min_samples, lat.quantile, lat.alpha) == (
        "either",
        0.2,
        False,
        500,
        0.95,
        0.01,
    )


@pytest.mark.parametrize(
    ("annotations", "key"),
    [
        ({A: "error-rate,error-rate"}, A),
        ({A: "Error_Rate"}, A),
        ({A: ""}, A),
        ({A: "error-rate", "deliver.dev/analysis-metrics": "datadog"}, "deliver.dev/analysis-metrics"),
        ({A: "error-rate", "deliver.dev/analysis-alpha": "0"}, "deliver.dev/analysis-alpha"),
        ({A: "error-rate", "deliver.dev/analysis-alpha": "nan"}, "deliver.dev/analysis-alpha"),
        ({A: "error-rate", "deliver.dev/analysis-alpha": "lots"}, "deliver.dev/analysis-alpha"),
        ({A: "error-rate", "deliver.dev/analysis-colour": "x"}, "deliver.dev/analysis-colour"),
        ({A: "error-rate", "deliver.dev/analysis.latency": "critical=false"}, "deliver.dev/analysis.latency"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "direction=up"}, "deliver.dev/analysis.error-rate"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "max-effect=-1"}, "deliver.dev/analysis.error-rate"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "critical=maybe"}, "deliver.dev/analysis.error-rate"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "min-samples=ten"}, "deliver.dev/analysis.error-rate"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "speed=9"}, "deliver.dev/analysis.error-rate"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "critical"}, "deliver.dev/analysis.error-rate"),
        ({A: "error-rate", "deliver.dev/analysis.error-rate": "kind=latency"}, "deliver.dev/analysis.error-rate"),
        ({A: "checkout"}, A),  # custom check without a ConfigMap
        ({A: "checkout", "deliver.dev/analysis-config": "Bad Name"}, "deliver.dev/analysis-config"),
    ],
)
def test_invalid_values_raise_spec_error_naming_the_key(annotations: dict[str, str], key: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_checks(annotations)
    assert info.value.key == key
    assert info.value.problem


def test_custom_check_offline_is_validated_syntactically() -> None:
    (c,) = parse_checks(
        {A: "checkout", "deliver.dev/analysis-config": "app-analysis", "deliver.dev/analysis.checkout": "kind=latency"}
    )
    assert (c.name, c.kind, c.template, c.queries) == ("checkout", "latency", None, {})


def test_custom_check_from_configmap() -> None:
    data = {
        "checkout.kind": "errors",
        "checkout.total": 'sum(increase(checkout_total{pod_template_hash="{hash}"}[{window}]))',
        "checkout.errors": 'sum(increase(checkout_failed_total{pod_template_hash="{hash}"}[{window}]))',
    }
    seen: list[str] = []

    def cms(name: str) -> dict[str, str]:
        seen.append(name)
        return data

    (c,) = parse_checks({A: "checkout", "deliver.dev/analysis-config": "app-analysis"}, cms)
    assert seen == ["app-analysis"]
    assert c.kind == "errors" and c.queries["total"] == data["checkout.total"]


@pytest.mark.parametrize(
    "data",
    [
        {"checkout.total": "sum(x)"},  # errors query missing
        {"checkout.total": 'x{a="{hsah}"}', "checkout.errors": "y"},  # unknown placeholder
        {"checkout.total": "sum(x", "checkout.errors": "y"},  # unbalanced
        {"checkout.kind": "bytes", "checkout.total": "x", "checkout.errors": "y"},
    ],
)
def test_bad_configmap_data_raises(data: dict[str, str]) -> None:
    with pytest.raises(SpecError):
        parse_checks({A: "checkout", "deliver.dev/analysis-config": "cm"}, lambda name: data)


def test_missing_configmap_raises_spec_error() -> None:
    def cms(name: str) -> dict[str, str]:
        raise KeyError(name)

    with pytest.raises(SpecError) as info:
        parse_checks({A: "checkout", "deliver.dev/analysis-config": "cm"}, cms)
    assert info.value.key == "deliver.dev/analysis-config"


def test_render_substitutes_known_placeholders_only() -> None:
    q = render_query(
        TEMPLATES["http:error-rate"]["errors"], {"namespace": "shop", "hash": "7d9f8c6b5", "window": "93s"}
    )
    assert q == 'sum(increase(http_requests_total{namespace="shop",pod_template_hash="7d9f8c6b5",code=~"5.."}[93s]))'


@pytest.mark.parametrize(
    "value",
    ['x"}', "a\\b", "a\nb", "a{b", "a}b", 'x",job=~".+', "", " leading", "a b", "a`b", "a'b"],
)
def test_render_rejects_values_that_could_break_out(value: str) -> None:
    with pytest.raises(QueryError):
        render_query('x{pod_template_hash="{hash}"}', {"hash": value})


def test_render_requires_a_value_for_each_placeholder() -> None:
    with pytest.raises(QueryError, match="service"):
        render_query('x{envoy_cluster_name="{service}"}', {"hash": "abc"})


def test_validate_template() -> None:
    validate_template("k", 'sum(rate(x{a="{namespace}"}[{window}]))')
    with pytest.raises(SpecError):
        validate_template("k", "  ")
    with pytest.raises(SpecError, match="canary"):
        validate_template("k", 'x{a="{canary}"}')
