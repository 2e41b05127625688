"""``spec.parse`` parses a valid Deployment once (issue 13: it ran one parse per key on every pass,
a fifth of the controller's CPU under load) and decides exactly as before: the same spec for a
valid set, the same first error for an invalid one."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery import spec as specmod
from delivery.errors import SpecError
from e2e.chaos import BAD, STRATEGIES

GOOD_VALUES = {
    "deliver.dev/steps": ["20,50,100", "pause,100", "10,pause,100", "match,20,100", "mirror,50,100"],
    "deliver.dev/interval": ["30s", "1m", "1500ms"],
    "deliver.dev/auto-rollback": ["true", "false"],
    "deliver.dev/max-restarts": ["0", "3"],
    "deliver.dev/router": ["gateway-api/web", "istio/web", "nginx/web"],
    "deliver.dev/match": ["header:x-canary=1", "cookie:beta=yes"],
    "deliver.dev/canary-scale": ["exact", "surge"],
    "deliver.dev/on-inconclusive": ["pause", "extend", "rollback"],
}
TEXT = st.text(alphabet="abcxyz0123456789,.%-_:/ ;", max_size=12)


def old_parse(deployment: dict[str, Any]) -> specmod.DeliverySpec:
    """``parse`` as it was: every problem first, then the parse."""
    found = specmod.problems(deployment, configmaps=lambda name: {})
    if found:
        raise found[0]
    return specmod._parse(deployment, lambda name: {})


@st.composite
def deployments(draw: Any) -> dict[str, Any]:
    base, native = STRATEGIES[draw(st.sampled_from(sorted(STRATEGIES)))]
    keys = sorted(set(BAD) | set(GOOD_VALUES))
    changes = {}
    for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        good = st.sampled_from(GOOD_VALUES.get(key, ["x"]))
        bad = st.sampled_from(BAD.get(key, [""])) | TEXT
        changes[key] = draw(good if draw(st.booleans()) else bad)
    return {
        "metadata": {"name": "web", "annotations": {**base, **changes}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": native or "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}},
        },
    }


def outcome(parse: Any, deployment: dict[str, Any]) -> Any:
    try:
        return parse(deployment)
    except SpecError as err:
        return ("error", err.key, err.problem)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments())
def test_parse_decides_as_before(deployment: dict[str, Any]) -> None:
    new = outcome(lambda d: specmod.parse(d, configmaps=lambda name: {}), deployment)
    assert new == outcome(old_parse, deployment)


def test_the_generator_makes_valid_and_invalid_sets() -> None:
    """The property above is only worth something if both kinds come up."""
    seen = {"valid": 0, "invalid": 0}

    @settings(max_examples=200, deadline=None)
    @given(deployments())
    def count(deployment: dict[str, Any]) -> None:
        seen["invalid" if isinstance(outcome(old_parse, deployment), tuple) else "valid"] += 1

    count()
    assert seen["valid"] > 10 and seen["invalid"] > 10, seen
