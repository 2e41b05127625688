import pytest

from delivery import spec
from delivery.errors import SpecError
from strategies.spec import CanaryStep, Strategy


def deployment(annotations, strategy_type="RollingUpdate", selector=None):
    return {
        "metadata": {"name": "web", "namespace": "ns", "annotations": annotations},
        "spec": {
            "selector": selector or {"matchLabels": {"app": "web"}},
            "strategy": {"type": strategy_type},
            "template": {},
        },
    }


def test_canary_defaults_and_full_grammar():
    s = spec.parse(
        deployment(
            {
                "deliver.dev/strategy": "canary",
                "deliver.dev/steps": "10,pause,50%,100",
                "deliver.dev/interval": "1m30s",
                "deliver.dev/progress-deadline": "5m",
            }
        )
    )
    assert s.strategy is Strategy.CANARY
    assert s.steps == (CanaryStep(10), CanaryStep(pause=True), CanaryStep(50), CanaryStep(100))
    assert s.interval == 90 and s.progress_deadline == 300
    assert s.stable_service == "web-stable" and s.canary_service == "web-canary"


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("strategy", "bluegreen", "unknown strategy"),
        ("steps", "20,abc", "not a percentage"),
        ("steps", "50,20", "must increase"),
        ("steps", "20,120", "outside 1..100"),
        ("steps", "", "no empty items"),
        ("steps", "20,pause,pause,100", "two `pause` steps in a row"),
        ("interval", "5 minutes", "not a duration"),
        ("interval", "0s", "out of range"),
        ("auto-rollback", "maybe", "not a boolean"),
        ("router", "traefik/x", "unknown router kind"),
        ("router", "gateway-api", "needs the route's name"),
        ("on-inconclusive", "ignore", "not one of"),
        ("max-restarts", "-1", "out of range"),
        ("stepz", "20", "unknown key"),
    ],
)
def test_invalid_values_name_the_key(key, value, needle):
    ann = {"deliver.dev/strategy": "canary", f"deliver.dev/{key}": value}
    with pytest.raises(SpecError) as err:
        spec.parse(deployment(ann))
    assert err.value.key == f"deliver.dev/{key}"
    assert needle in err.value.problem


def test_problems_lists_every_bad_key():
    found = spec.problems(
        deployment({"deliver.dev/strategy": "canary", "deliver.dev/steps": "x", "deliver.dev/interval": "soon"})
    )
    assert {e.key for e in found} == {"deliver.dev/steps", "deliver.dev/interval"}


def test_recreate_requires_native_recreate():
    with pytest.raises(SpecError, match="Recreate"):
        spec.parse(deployment({"deliver.dev/strategy": "recreate"}))
    assert spec.parse(deployment({"deliver.dev/strategy": "recreate"}, "Recreate")).strategy is Strategy.RECREATE


def test_steps_only_for_canary_and_pause_at_below_100():
    with pytest.raises(SpecError, match="only applies to canary"):
        spec.parse(deployment({"deliver.dev/strategy": "rolling", "deliver.dev/steps": "20"}))
    with pytest.raises(SpecError, match="below 100"):
        spec.parse(deployment({"deliver.dev/strategy": "rolling", "deliver.dev/pause-at": "50,100"}))


def test_selector_that_would_match_deliver_replicasets_is_rejected():
    sel = {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}
    with pytest.raises(SpecError, match="selector"):
        spec.parse(deployment({"deliver.dev/strategy": "canary"}, selector=sel))


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1h30m", 5400), ("1500ms", 1.5)])
def test_durations(text, seconds):
    assert spec.parse_duration("k", text) == seconds


def test_names_that_would_make_invalid_objects_are_refused():
    long = deployment({"deliver.dev/strategy": "canary"})
    long["metadata"]["name"] = "a" * 60
    with pytest.raises(SpecError, match="at most 52"):
        spec.parse(long)
    dotted = deployment({"deliver.dev/strategy": "blue-green"})
    dotted["metadata"]["name"] = "my.app"
    with pytest.raises(SpecError, match="active-service"):
        spec.parse(dotted)
    dotted_rolling = deployment({"deliver.dev/strategy": "rolling"})
    dotted_rolling["metadata"]["name"] = "my.app"
    assert spec.parse(dotted_rolling).strategy is Strategy.ROLLING  # no Services needed
